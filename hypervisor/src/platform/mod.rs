//! What the policy needs from the machine: the privileged operations, devices and
//! console the library cannot do itself. The binary implements it on the CPU
//! (`arch::x86_64`); host tests implement it with a recording fake.

use crate::mm::domain_memory::Tlb;
use crate::mm::frames::Frame;
use crate::mm::paging::FrameMemory;
use core::fmt;

#[cfg(test)]
pub(crate) mod fake;

/// The machine under the system. TLB maintenance for the loaded root is the supertrait.
pub trait Platform: Tlb {
    /// How frames are read and written (the direct map on the machine).
    type Memory: FrameMemory;
    /// One domain's saved x87/SSE/AVX registers.
    type ExtendedState;

    /// The time-stamp counter.
    fn read_tsc(&mut self) -> u64;
    /// Makes `root` the loaded page-table root (CR3); it must carry the hypervisor's
    /// own mappings.
    fn load_root(&mut self, root: Frame);
    /// Loads the FS and GS bases a guest runs with.
    fn write_segment_bases(&mut self, fs: u64, gs: u64);
    /// Extended state in its architectural initial form, for a new domain.
    fn new_extended_state(&mut self) -> Self::ExtendedState;
    /// Saves the CPU's extended state into `area`.
    fn save_extended_state(&mut self, area: &mut Self::ExtendedState);
    /// Loads `area` into the CPU.
    fn restore_extended_state(&mut self, area: &mut Self::ExtendedState);
    /// Writes domain `domain`'s console output.
    fn console_write(&mut self, domain: u32, bytes: &[u8]);
    /// The next byte console input received, if any.
    fn console_receive(&mut self) -> Option<u8>;
    /// The TSC deadline the one-shot timer is armed for, if it is armed.
    fn timer_armed(&self) -> Option<u64>;
    /// Arms the one-shot timer for `deadline_tsc`.
    fn arm_timer(&mut self, deadline_tsc: u64);
    /// Acknowledges the interrupt being handled.
    fn end_of_interrupt(&mut self);
    /// The address the last page fault reported (CR2).
    fn fault_address(&mut self) -> u64;
    /// Where `syscall` enters the hypervisor (LSTAR).
    fn hypercall_entry_address(&self) -> u64;
    /// Prints one hypervisor line; the platform ends it.
    fn print_line(&mut self, line: fmt::Arguments<'_>);
    /// Writes trace records to the trace port (SPEC.md §22); bytes the port cannot take
    /// are lost, never waited for forever.
    fn trace_write(&mut self, bytes: &[u8]);
}

/// Prints one hypervisor line through a [`Platform`].
macro_rules! say {
    ($platform:expr, $($argument:tt)*) => {
        $crate::platform::Platform::print_line(&mut $platform, format_args!($($argument)*))
    };
}
pub(crate) use say;
