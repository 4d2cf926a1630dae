//! The ringfence paravirtual platform (ABI 0.3).
//!
//! [`ParavirtMachine`] is the kernel's [`Machine`](super::machine::Machine) here (the list of
//! its operations is in the crate documentation):
//!
//! * [`machine`]: starting it and the trait's methods;
//! * [`entry`]: the asm into guest-user mode and the one entry every event comes back
//!   through, with the stack events from user mode land on;
//! * [`user_run`]: what a run checks and installs first, and what ended it;
//! * [`interrupts`]: upcalls, the timer, console input, `idle`;
//! * [`spaces`]: user address spaces and their pages; [`frames`]: heap pages as gfns;
//! * [`extended_state`]: XSAVE or FXSAVE, and making a saved area safe to restore;
//! * [`initramfs`]: the archive the domain was started with;
//! * [`boot`](mod@boot): the entry point around the kernel's main function ([`run_kernel`]).
//!
//! The older [`Arch`] implementation, [`Paravirt`], serves the kernel this crate runs today
//! (the demo in [`crate::kernel`]); it goes when that kernel is replaced by one on
//! [`Machine`](super::machine::Machine):
//!
//! * console: `console_io(WRITE)`; input with `console_io(READ)`, woken by VIRQ_CONSOLE;
//! * interrupts: the virtual interrupt flag is the shared-info upcall mask — a plain
//!   store either way, never `cli`/`sti`, which fault in ring 3; the upcall entry is
//!   registered with `set_callbacks` (guest-rt's `events::init`);
//! * idle: `set_timer_op` one tick ahead, then `sched_op(BLOCK)`: the domain sleeps until
//!   an event or the tick;
//! * timer: system time in ns from the shared-info time info (no hypercall), and the
//!   wallclock the hypervisor read from the RTC;
//! * shutdown/crash: `sched_op(SHUTDOWN, POWEROFF|CRASH)`;
//! * exceptions and system calls: guest-rt's trap entry, registered with
//!   `set_trap_table` and `callback_op` ([`traps`]);
//! * kernel pages: heap pages mapped by gfn with `mmu_update` ([`pages`]);
//! * user processes: an address space from `address_space_op`, entered with `iret`
//!   through guest-rt's `user::run` ([`process`]);
//! * entry: guest-rt's start code (start info, heap, panic handler) around the kernel's
//!   main function ([`boot!`]).
//!
//! The two never run in one domain: each registers its own trap entry.

use core::fmt;
use core::sync::atomic::Ordering;

use guest_rt::abi::event::virq;
use guest_rt::abi::layout::PAGE_SIZE;
use guest_rt::abi::Errno;
use guest_rt::events::{self, Port};
use guest_rt::hypercall::HYPERVISOR;
use guest_rt::time;

use super::interface::{Arch, ArchError, BootInfo, ExceptionHandlers, SyscallDispatcher, UserExit, UserImage};
use error::failed;

mod boot;
mod entry;
mod error;
mod extended_state;
mod frames;
mod initramfs;
mod interrupts;
mod machine;
mod pages;
mod platform;
mod process;
mod spaces;
mod traps;
mod user_run;

pub(crate) use boot::boot;
pub use boot::{run_kernel, START_FAILED_CRASH_CODE};
pub use entry::KERNEL_EXCEPTION_CRASH_CODE;
pub use machine::ParavirtMachine;
pub use platform::{instance, Paravirt};

/// How long [`Arch::idle`] sleeps at most when no event comes.
const IDLE_TICK_NS: u64 = 10_000_000;

/// VIRQ_CONSOLE only has to wake the domain; the reader drains the ring itself.
fn console_event(_port: Port) {}

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

    fn start_interrupts(&self) -> Result<(), ArchError> {
        events::init().map_err(failed("set_callbacks"))?;
        events::irq_enable();
        Ok(())
    }

    fn interrupts_enabled(&self) -> bool {
        !events::irqs_disabled()
    }

    fn enable_interrupts(&self) {
        events::irq_enable();
    }

    fn disable_interrupts(&self) -> bool {
        !events::irq_save().was_disabled()
    }

    fn idle(&self) {
        // An expired timer wakes a BLOCK even with VIRQ_TIMER unbound (SPEC.md §20.2).
        let _ = time::set_timer(time::now() + IDLE_TICK_NS);
        let _ = events::block();
    }

    fn timer_read(&self) -> u64 {
        time::now()
    }

    fn timer_frequency_hint(&self) -> Option<u64> {
        // System time is in nanoseconds.
        Some(1_000_000_000)
    }

    fn wallclock_seconds(&self) -> Option<u64> {
        let clock = time::wallclock();
        (clock.seconds != 0).then_some(clock.seconds)
    }

    fn console_read(&self, buffer: &mut [u8]) -> usize {
        if !self.console_bound.swap(true, Ordering::AcqRel) {
            match Port::bind_virq(virq::CONSOLE) {
                Ok(port) => events::set_handler(port, console_event),
                // Input still arrives; only the wake-up is lost, and idle ticks.
                Err(_) => self.console_bound.store(false, Ordering::Release),
            }
        }
        HYPERVISOR.console_read(buffer).unwrap_or(0)
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
