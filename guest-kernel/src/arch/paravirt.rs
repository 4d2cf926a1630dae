//! The ringfence paravirtual platform (ABI 0.2): each [`Arch`] operation is a hypercall
//! (through guest-rt) or software state the hypervisor does not need to see.
//!
//! * console: `console_io(WRITE)`;
//! * interrupts: a virtual interrupt flag. ABI 0.2 delivers no asynchronous events (the
//!   shared-info page reserves `vcpu_info.upcall_mask` for the events ABI), so it is kept
//!   here — a plain store either way, never `cli`/`sti`, which fault in ring 3;
//! * idle: `sched_op(YIELD)` (there is nothing to block on yet);
//! * timer: the TSC (unprivileged; the shared-info time fields are reserved in 0.2);
//! * shutdown/crash: `sched_op(SHUTDOWN, POWEROFF|CRASH, code)`;
//! * exceptions and system calls: guest-rt's trap entry, registered with
//!   `set_trap_table` and `callback_op` ([`traps`]);
//! * kernel pages: heap pages mapped by gfn with `mmu_update` ([`pages`]);
//! * user processes: an address space from `address_space_op`, entered with `iret`
//!   through guest-rt's `user::run` ([`process`]).

use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};

use guest_rt::abi::layout::PAGE_SIZE;
use guest_rt::abi::Errno;
use guest_rt::hypercall::HYPERVISOR;

use super::{Arch, ArchError, BootInfo, ExceptionHandlers, SyscallDispatcher, UserExit, UserImage};

mod pages;
mod process;
mod traps;

/// The ringfence PV platform.
pub struct Paravirt {
    /// The virtual interrupt flag (the domain starts with RFLAGS.IF = 1).
    interrupts_enabled: AtomicBool,
    /// The trap table and system-call callback are registered.
    handlers_installed: AtomicBool,
}

impl Paravirt {
    /// The platform as the domain starts: interrupts enabled, no exception handlers.
    pub const fn new() -> Self {
        Self { interrupts_enabled: AtomicBool::new(true), handlers_installed: AtomicBool::new(false) }
    }
}

impl Default for Paravirt {
    fn default() -> Self {
        Self::new()
    }
}

/// An [`ArchError`] for a failed hypercall.
fn failed(operation: &'static str) -> impl Fn(Errno) -> ArchError {
    move |errno| ArchError { operation, code: -errno.0 }
}

impl Arch for Paravirt {
    fn describe(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        out.write_str("paravirtualized on ringfence, hypervisor ABI ")?;
        match HYPERVISOR.version() {
            Ok(version) => write!(out, "{version}")?,
            Err(errno) => write!(out, "unknown (-{errno})")?,
        }
        match HYPERVISOR.features() {
            Ok(bits) => write!(out, ", features {bits:#x}"),
            Err(errno) => write!(out, ", features unknown (-{errno})"),
        }
    }

    fn boot_info(&self) -> BootInfo {
        let start = guest_rt::start_info();
        BootInfo {
            domain_id: Some(start.domain_id),
            memory_bytes: start.nr_pages * PAGE_SIZE,
            command_line: start.cmd_line(),
        }
    }

    fn console_write(&self, bytes: &[u8]) {
        // Nowhere to report a console error but the console.
        let _ = HYPERVISOR.console_write(bytes);
    }

    fn interrupts_enabled(&self) -> bool {
        self.interrupts_enabled.load(Ordering::Acquire)
    }

    fn enable_interrupts(&self) {
        self.interrupts_enabled.store(true, Ordering::Release);
    }

    fn disable_interrupts(&self) -> bool {
        self.interrupts_enabled.swap(false, Ordering::AcqRel)
    }

    fn idle(&self) {
        let _ = HYPERVISOR.yield_now();
    }

    fn timer_read(&self) -> u64 {
        guest_rt::tsc::rdtsc_serialized()
    }

    fn timer_frequency_hint(&self) -> Option<u64> {
        // ABI 0.2 publishes no TSC frequency; the time fields of shared info will.
        None
    }

    fn shutdown(&self, code: u32) -> ! {
        HYPERVISOR.poweroff(code)
    }

    fn crash(&self, code: u32) -> ! {
        HYPERVISOR.crash(code)
    }

    fn install_exception_handlers<H: ExceptionHandlers<Self>>(&self) -> Result<(), ArchError> {
        traps::install::<H>()?;
        self.handlers_installed.store(true, Ordering::Release);
        Ok(())
    }

    fn breakpoint(&self) {
        traps::breakpoint();
    }

    fn map_zeroed_page(&self, address: u64) -> Result<(), ArchError> {
        pages::map_zeroed(address)
    }

    fn unmap_pages(&self, addresses: &[u64]) -> Result<(), ArchError> {
        pages::unmap(addresses)
    }

    fn run_user(&self, image: &UserImage<'_>, syscalls: &mut SyscallDispatcher<'_>) -> Result<UserExit, ArchError> {
        // Without the trap entry a system call would be a #UD nobody handles, and an
        // exception would kill the domain.
        if !self.handlers_installed.load(Ordering::Acquire) {
            return Err(ArchError { operation: "run_user before install_exception_handlers", code: -Errno::EINVAL.0 });
        }
        process::run(image, syscalls)
    }

    fn copy_from_user(&self, address: u64, buffer: &mut [u8]) -> Result<(), ArchError> {
        process::copy_from_user(address, buffer)
    }
}
