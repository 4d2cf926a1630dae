//! [`ParavirtMachine`]: the kernel's [`Machine`] on ringfence (ABI 0.3). Every operation is
//! a hypercall through guest-rt, a plain access to the shared-info page, or the entry's asm
//! ([`super::entry`]); the list is in the crate documentation.

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use guest_rt::abi::hypercall::{callback_cmd, features, version_cmd};
use guest_rt::abi::trap::{callback_type, trap_flags, vector, TrapTableEntry, KERNEL_SS};
use guest_rt::abi::{Errno, GuestVirtualAddress, StartInfo};
use guest_rt::hypercall::HYPERVISOR;
use guest_rt::time;

use super::entry::{self, EVENT_STACK};
use super::error::machine_error as failed;
use super::extended_state::Format;
use super::{frames, initramfs, interrupts, spaces, user_run};
use crate::arch::machine::{
    AddressSpace, BootInfo, ClockParameters, Machine, MachineError, PageUpdate, Trap, UserContext, PAGE_SIZE,
};

/// The features this machine needs (SPEC.md §6.1).
const REQUIRED_FEATURES: u64 = features::CONSOLE_WRITE
    | features::TRAPS
    | features::MEMORY
    | features::SEGMENT_BASES
    | features::EXTENDED_STATE
    | features::EVENTS
    | features::TIME
    | features::TIMERS
    | features::CONSOLE_READ;

/// The paravirtual machine. There is one ([`ParavirtMachine::start`]); everything it
/// keeps is in the statics of its modules, since the entry's asm and the upcall reach them
/// without a reference.
pub struct ParavirtMachine {
    /// The hypervisor's `version(ABI_VERSION)` and `version(FEATURES)`.
    version: AtomicU64,
    features: AtomicU64,
    /// Pages added to the heap at start (quota above the initial memory).
    grown_pages: AtomicU64,
}

static MACHINE: ParavirtMachine =
    ParavirtMachine { version: AtomicU64::new(0), features: AtomicU64::new(0), grown_pages: AtomicU64::new(0) };
/// Set once [`ParavirtMachine::start`] has completed.
static READY: AtomicBool = AtomicBool::new(false);

impl ParavirtMachine {
    /// Sets the machine up, once: checks the hypervisor's features, grows the heap to the
    /// quota, binds the timer and console interrupts, and points every exception vector,
    /// the system-call callback and the event callback at the entry, with events from
    /// guest-user mode on the entry's own stack. Events stay masked (the kernel runs
    /// masked). A call after one that succeeded returns the same machine; one after a
    /// failure tries again (and fails again where the first one got: a port bound twice
    /// is `-EEXIST`).
    pub fn start() -> Result<&'static Self, MachineError> {
        if READY.load(Ordering::Acquire) {
            return Ok(&MACHINE);
        }
        let version =
            HYPERVISOR.version_op(version_cmd::ABI_VERSION).map_err(|errno| failed("version(ABI_VERSION)", errno))?;
        let bits = HYPERVISOR.features().map_err(|errno| failed("version(FEATURES)", errno))?;
        if bits & REQUIRED_FEATURES != REQUIRED_FEATURES {
            return Err(failed(
                "version(FEATURES) (events, timers, traps, memory or console input missing)",
                Errno::ENOSYS,
            ));
        }
        MACHINE.version.store(version, Ordering::Release);
        MACHINE.features.store(bits, Ordering::Release);
        // More memory is a bonus: a domain without it still runs.
        if let Err(error) = frames::grow() {
            guest_rt::println!(
                "guest-kernel: memory beyond the initial {} pages not added: {error}",
                guest_rt::start_info().nr_pages
            );
        }
        MACHINE.grown_pages.store(frames::heap_region().pages - guest_rt::start_info().free_pages, Ordering::Release);
        let format = Format::detect();
        entry::configure(guest_rt::start_info().shared_info_address.0, format);
        interrupts::bind().map_err(|(operation, errno)| failed(operation, errno))?;
        install_entry()?;
        READY.store(true, Ordering::Release);
        Ok(&MACHINE)
    }
}

/// Registers the entry: trap table (vectors 0–31; user mode may raise 3 with `int3`, as
/// natively), `stack_switch`, the system-call callback and the event callback.
fn install_entry() -> Result<(), MachineError> {
    let mut table = [TrapTableEntry::default(); vector::FIRST_SOFTWARE as usize];
    for (index, slot) in table.iter_mut().enumerate() {
        let number = index as u8;
        let flags = if number == vector::BREAKPOINT { trap_flags::USER_MAY_RAISE } else { 0 };
        let handler = GuestVirtualAddress(entry::address());
        *slot = TrapTableEntry { vector: number, flags, reserved: [0; 6], handler };
    }
    // SAFETY: every handler is the entry, which follows the exception-frame protocol.
    unsafe { HYPERVISOR.set_trap_table(&table) }.map_err(|errno| failed("set_trap_table", errno))?;
    // SAFETY: the event stack is used by nothing but the hypervisor's frames and the entry.
    unsafe { HYPERVISOR.stack_switch(KERNEL_SS, EVENT_STACK.top()) }.map_err(|errno| failed("stack_switch", errno))?;
    // SAFETY: the entry handles SYSCALL_VECTOR frames from guest-user mode.
    unsafe { HYPERVISOR.callback_op(callback_cmd::REGISTER, callback_type::SYSCALL, entry::address()) }
        .map_err(|errno| failed("callback_op(SYSCALL)", errno))?;
    // SAFETY: the entry handles EVENT_VECTOR frames from either mode.
    unsafe { HYPERVISOR.set_callbacks(entry::address(), 0) }.map_err(|errno| failed("set_callbacks", errno))?;
    Ok(())
}

impl Machine for ParavirtMachine {
    fn describe(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        let version = self.version.load(Ordering::Acquire);
        write!(
            out,
            "paravirtualized on ringfence, hypervisor ABI {}.{}, features {:#x}, extended state {}",
            version >> 16,
            version & 0xffff,
            self.features.load(Ordering::Acquire),
            entry::format()
        )?;
        match self.grown_pages.load(Ordering::Acquire) {
            0 => Ok(()),
            pages => write!(out, ", {pages} pages added up to the quota"),
        }
    }

    fn boot_info(&self) -> BootInfo {
        let start: &'static StartInfo = guest_rt::start_info();
        BootInfo {
            domain_id: Some(start.domain_id),
            memory_bytes: (start.nr_pages + self.grown_pages.load(Ordering::Acquire)) * PAGE_SIZE,
            command_line: start.cmd_line(),
            initramfs: initramfs::initramfs(),
        }
    }

    fn console_write(&self, bytes: &[u8]) {
        // The hypervisor's console is made of lines it ends itself (SPEC.md §15) and
        // shows a carriage return as an escape: the tty's CR LF goes out as LF.
        let mut rest = bytes;
        while let Some(at) = rest.windows(2).position(|pair| pair == b"\r\n") {
            // Nowhere to report a console error but the console.
            let _ = HYPERVISOR.console_write(&rest[..at]);
            rest = &rest[at + 1..];
        }
        let _ = HYPERVISOR.console_write(rest);
    }

    fn console_read(&self, buffer: &mut [u8]) -> usize {
        interrupts::console_read(buffer)
    }

    fn now_ns(&self) -> u64 {
        time::now()
    }

    fn clock_parameters(&self) -> ClockParameters {
        // `now` is this record's formula (SPEC.md §19.2); the TSC read with it is not needed.
        let (info, _) = time::read_time(guest_rt::events::shared_info());
        ClockParameters::from_pvclock(info.tsc_timestamp, info.system_time, info.mul, info.shift)
    }

    fn wallclock_at_boot_ns(&self) -> Option<u64> {
        let clock = time::boot_wallclock();
        let nanoseconds =
            clock.seconds.saturating_mul(time::NANOSECONDS_PER_SECOND).saturating_add(u64::from(clock.nanoseconds));
        // Both fields are 0 when the hypervisor had no RTC (SPEC.md §19.3).
        (nanoseconds != 0).then_some(nanoseconds)
    }

    fn set_timer(&self, deadline_ns: u64) {
        interrupts::set_timer(deadline_ns);
    }

    fn idle(&self) {
        interrupts::idle();
    }

    fn shutdown(&self, code: u32) -> ! {
        HYPERVISOR.poweroff(code)
    }

    fn crash(&self, code: u32) -> ! {
        HYPERVISOR.crash(code)
    }

    fn create_space(&self) -> Result<AddressSpace, MachineError> {
        spaces::create()
    }

    fn destroy_space(&self, space: AddressSpace) -> Result<(), MachineError> {
        spaces::destroy(space)
    }

    fn update_space(&self, space: AddressSpace, updates: &[PageUpdate]) -> Result<(), (usize, MachineError)> {
        spaces::update(space, updates)
    }

    fn enter_user(&self, space: AddressSpace, context: &mut UserContext) -> Trap {
        user_run::enter_user(space, context)
    }

    fn save_extended(&self, context: &mut UserContext) {
        user_run::save_extended(context);
    }
}
