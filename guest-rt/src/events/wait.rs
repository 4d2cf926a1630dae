//! Sleeping until an event (SPEC.md §20.2–§20.3): `sched_op(BLOCK)`, `sched_op(POLL)`, and
//! a wait for a condition that cannot miss its wake-up.

use hypercall_abi::Errno;

use super::interrupt_flag::{irq_disable, irq_restore, irq_save};
use super::port::Port;
use crate::hypercall::HYPERVISOR;

/// `sched_op(BLOCK)`: turns events on and sleeps until one is pending (at once if one
/// is); the upcall has run when this returns, and events are on.
pub fn block() -> Result<(), Errno> {
    HYPERVISOR.block()
}

/// `sched_op(POLL)`: sleeps until one of `ports` is pending or the absolute system time
/// `timeout_ns` passes (0 = none), without changing the upcall mask. Returns `Ok` either
/// way: check [`Port::is_pending`].
pub fn poll(ports: &[Port], timeout_ns: u64) -> Result<(), Errno> {
    // SAFETY: Port is a transparent u32, so the slice is the u32 array POLL reads.
    unsafe { HYPERVISOR.poll_raw(ports.as_ptr() as u64, ports.len() as u64, timeout_ns) }.map(drop)
}

/// Waits with [`block`] until `condition` holds, checking it with events off so a wake-up
/// cannot be missed between the check and the sleep; restores the flag's state at the end.
pub fn wait_until(mut condition: impl FnMut() -> bool) -> Result<(), Errno> {
    let saved = irq_save();
    loop {
        if condition() {
            irq_restore(saved);
            return Ok(());
        }
        if let Err(errno) = block() {
            irq_restore(saved);
            return Err(errno);
        }
        irq_disable();
    }
}
