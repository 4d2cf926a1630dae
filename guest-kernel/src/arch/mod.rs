//! The architecture boundary: every sensitive operation the kernel performs — console
//! output, interrupt enable/disable, idling, shutdown, reading the timer, learning about
//! the machine it booted on — goes through [`Arch`], and nothing outside this module
//! executes a privileged instruction or a hypercall.
//!
//! Implementations:
//! * [`paravirt`]: ringfence PV, every operation a hypercall (or a shared-memory store
//!   once the ABI has a shared-info page), via guest-rt. This is the one built today.
//! * native: bare hardware (serial port I/O, `cli`/`sti`, `hlt`, ACPI/debug-exit
//!   shutdown). Not written yet — it comes with a later issue, and needs only a second
//!   `impl Arch` plus its own entry, panic handler and heap setup (guest-rt's today); the
//!   rest of the kernel is generic over this trait already.

use core::fmt;

pub mod paravirt;

/// What the kernel learns about its machine at boot, however the platform delivers it.
#[derive(Copy, Clone, Debug)]
pub struct BootInfo {
    /// The domain (PV) or `None` (native).
    pub domain_id: Option<u32>,
    /// Memory the kernel owns, in bytes.
    pub memory_bytes: u64,
    /// The kernel's command line.
    pub command_line: &'static str,
}

/// The operations a kernel cannot perform itself on every platform.
pub trait Arch: Sync {
    /// Describes the platform for the boot banner (e.g. "paravirtualized on ringfence,
    /// hypervisor ABI 0.1, features 0x3").
    fn describe(&self, out: &mut dyn fmt::Write) -> fmt::Result;

    /// Boot information.
    fn boot_info(&self) -> BootInfo;

    /// Writes raw bytes to the console.
    fn console_write(&self, bytes: &[u8]);

    /// Whether interrupts (virtual or real) are enabled.
    fn interrupts_enabled(&self) -> bool;

    /// Enables interrupts.
    fn enable_interrupts(&self);

    /// Disables interrupts; returns whether they were enabled before.
    fn disable_interrupts(&self) -> bool;

    /// Waits until something may have happened (an interrupt, another domain's turn).
    fn idle(&self);

    /// A monotonic timer, in cycles of [`Arch::timer_frequency_hint`] (if known).
    fn timer_read(&self) -> u64;

    /// Timer ticks per second if the platform says so.
    fn timer_frequency_hint(&self) -> Option<u64>;

    /// Powers the machine (or domain) off with `code`.
    fn shutdown(&self, code: u32) -> !;

    /// Stops after a fatal kernel error, reporting `code`.
    fn crash(&self, code: u32) -> !;
}

/// The platform this build runs on.
pub type Platform = paravirt::Paravirt;

static PLATFORM: Platform = paravirt::Paravirt::new();

/// The platform's [`Arch`] implementation.
pub fn platform() -> &'static Platform {
    &PLATFORM
}

/// Disables interrupts for its lifetime, restoring the previous state on drop.
pub struct InterruptGuard<'a, A: Arch + ?Sized> {
    arch: &'a A,
    were_enabled: bool,
}

impl<'a, A: Arch + ?Sized> InterruptGuard<'a, A> {
    /// Disables interrupts on `arch`.
    pub fn new(arch: &'a A) -> Self {
        let were_enabled = arch.disable_interrupts();
        Self { arch, were_enabled }
    }
}

impl<A: Arch + ?Sized> Drop for InterruptGuard<'_, A> {
    fn drop(&mut self) {
        if self.were_enabled {
            self.arch.enable_interrupts();
        }
    }
}
