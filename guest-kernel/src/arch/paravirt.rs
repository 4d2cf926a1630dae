//! The ringfence paravirtual platform: each [`Arch`] operation is a hypercall (through
//! guest-rt) or, where ABI 0.1 has no hypercall, the software state the hypervisor will
//! later share with us.
//!
//! * console: `console_io(WRITE)`;
//! * interrupts: a virtual interrupt flag. ABI 0.1 delivers no events, so it is kept
//!   here; with the shared-info page it becomes `vcpu_info.upcall_mask`, still a plain
//!   store and never `cli`/`sti` (which fault in ring 3);
//! * idle: `sched_op(YIELD)` (there is nothing to block on yet);
//! * timer: the TSC (unprivileged; the vcpu-time-info page will scale it to ns);
//! * shutdown/crash: `sched_op(SHUTDOWN, POWEROFF|CRASH, code)`.

use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};

use guest_rt::abi::layout::PAGE_SIZE;
use guest_rt::hypercall::HYPERVISOR;

use super::{Arch, BootInfo};

/// The ringfence PV platform.
pub struct Paravirt {
    /// The virtual interrupt flag (the domain starts with RFLAGS.IF = 1).
    interrupts_enabled: AtomicBool,
}

impl Paravirt {
    /// The platform as the domain starts: interrupts enabled.
    pub const fn new() -> Self {
        Self { interrupts_enabled: AtomicBool::new(true) }
    }
}

impl Default for Paravirt {
    fn default() -> Self {
        Self::new()
    }
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
        // ABI 0.1 publishes no TSC frequency; the vcpu-time-info page will.
        None
    }

    fn shutdown(&self, code: u32) -> ! {
        HYPERVISOR.poweroff(code)
    }

    fn crash(&self, code: u32) -> ! {
        HYPERVISOR.crash(code)
    }
}
