//! Critical sections over any platform.

use super::interface::Arch;

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
