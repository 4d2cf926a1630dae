//! The platform value: what [`Arch`](crate::arch::interface::Arch) operations are called
//! on, and the one instance a domain has (its exception handlers need it too).

use core::sync::atomic::AtomicBool;

/// The ringfence PV platform.
pub struct Paravirt {
    /// The trap table and system-call callback are registered.
    pub(super) handlers_installed: AtomicBool,
    /// VIRQ_CONSOLE is bound (so input wakes `Arch::idle`).
    pub(super) console_bound: AtomicBool,
}

impl Paravirt {
    /// The platform as the domain starts: events masked, no handlers.
    pub const fn new() -> Self {
        Self { handlers_installed: AtomicBool::new(false), console_bound: AtomicBool::new(false) }
    }
}

impl Default for Paravirt {
    fn default() -> Self {
        Self::new()
    }
}

static INSTANCE: Paravirt = Paravirt::new();

/// This domain's platform.
pub fn instance() -> &'static Paravirt {
    &INSTANCE
}
