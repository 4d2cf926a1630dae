//! The virtual interrupt flag (SPEC.md §18.1): the upcall mask in `vcpu_info[0]`.

use core::sync::atomic::{compiler_fence, Ordering};

use super::shared_info::{shared_info, SharedInfoPage};
use crate::hypercall::{HypercallInterface, Hypercalls, HYPERVISOR};

/// Turns event delivery off (upcall mask = 1): a plain store, no hypercall.
pub fn irq_disable() {
    shared_info().set_upcall_mask(1);
    // Keep the critical section's accesses after the store.
    compiler_fence(Ordering::SeqCst);
}

/// Turns event delivery on (upcall mask = 0); if an event is already pending, makes one
/// cheap hypercall (`version`) so the hypervisor delivers it before this returns.
pub fn irq_enable() {
    enable_on(shared_info(), &HYPERVISOR);
}

fn enable_on<I: HypercallInterface>(page: SharedInfoPage, hypercalls: &Hypercalls<I>) {
    // Keep the critical section's accesses before the store.
    compiler_fence(Ordering::SeqCst);
    page.set_upcall_mask(0);
    // The store must come before the load of `upcall_pending` in program order (SPEC.md
    // §18.1); a compiler barrier keeps it there. No memory fence is needed: the
    // hypervisor reads the mask and sets `upcall_pending` only on this vCPU's CPU,
    // between two of its instructions, and a CPU sees its own earlier store. So an event
    // raised before the store is seen by the load, and one raised after it came through
    // a hypervisor entry whose return, with the mask already clear, delivered it.
    compiler_fence(Ordering::SeqCst);
    if page.upcall_pending() != 0 {
        let _ = hypercalls.version_op(hypercall_abi::hypercall::version_cmd::ABI_VERSION);
    }
}

/// True if event delivery is off.
pub fn irqs_disabled() -> bool {
    shared_info().upcall_mask() != 0
}

/// The saved state of the virtual interrupt flag ([`irq_save`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct IrqState {
    mask: u8,
}

impl IrqState {
    /// True if events were off.
    pub fn was_disabled(self) -> bool {
        self.mask != 0
    }
}

/// Turns event delivery off and returns the previous state for [`irq_restore`].
pub fn irq_save() -> IrqState {
    let page = shared_info();
    let mask = page.upcall_mask();
    page.set_upcall_mask(1);
    compiler_fence(Ordering::SeqCst);
    IrqState { mask }
}

/// Restores the state [`irq_save`] returned (enabling delivers anything pending).
pub fn irq_restore(state: IrqState) {
    if state.was_disabled() {
        irq_disable();
    } else {
        irq_enable();
    }
}

/// Events off from [`IrqGuard::new`] until the guard is dropped (then as before).
#[must_use = "events are back on when the guard is dropped"]
pub struct IrqGuard {
    saved: IrqState,
}

impl IrqGuard {
    /// Saves the state and turns events off.
    pub fn new() -> Self {
        Self { saved: irq_save() }
    }
}

impl Default for IrqGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for IrqGuard {
    fn drop(&mut self) {
        irq_restore(self.saved);
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::events::shared_info::fixture::page;
    use crate::fake::Fake;
    use hypercall_abi::Hypercall;

    #[test]
    fn enabling_calls_the_hypervisor_only_when_something_is_pending() {
        let (_info, page) = page();
        let fake = Fake::default();
        page.set_upcall_mask(1);
        enable_on(page, &Hypercalls::new(&fake));
        assert_eq!(page.upcall_mask(), 0);
        assert!(fake.calls.borrow().is_empty());
        page.set_upcall_mask(1);
        page.set_upcall_pending(1);
        enable_on(page, &Hypercalls::new(&fake));
        let calls = fake.calls.borrow();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].number, Hypercall::VERSION.0);
    }
}
