//! Interrupts of the paravirtual machine: event-channel upcalls (SPEC.md §17–§18), the
//! one-shot timer (§19.4), console input (§21) and waiting (§20.2).
//!
//! The upcall mask is the interrupt flag. The kernel runs with it set; it is clear only in
//! guest-user mode (the `iret` frame carries IF = 1) and inside `sched_op(BLOCK)`, which
//! clears it as one step with going to sleep. So an upcall reaches guest-kernel mode only
//! on the return of a `BLOCK` in [`idle`], or at the first instructions of the event entry
//! (an event from guest-user mode that is not an upcall leaves the mask clear until the
//! entry sets it). There it is acknowledged and noted as unreported (in the run state);
//! the kernel hears of it as the next [`idle`] returning at once or the next run stopping
//! at once with [`Trap::Interrupt`](crate::arch::machine::Trap::Interrupt). An upcall in
//! guest-user mode ends the run with that trap directly.
//!
//! Acknowledging is guest-rt's scan of the shared-info page: every pending, unmasked port
//! is cleared; the timer's port also marks the timer as no longer armed.

use core::sync::atomic::{compiler_fence, AtomicU32, Ordering};

use guest_rt::abi::event::virq;
use guest_rt::abi::hypercall::console_cmd::WRITE_MAX;
use guest_rt::abi::Errno;
use guest_rt::events::{self, Port};
use guest_rt::hypercall::HYPERVISOR;

use super::entry;

/// The VIRQ_TIMER port (0 until [`bind`]).
static TIMER_PORT: AtomicU32 = AtomicU32::new(0);

/// Binds VIRQ_TIMER (whose port marks the timer expired) and VIRQ_CONSOLE (so input
/// wakes [`idle`] and stops user runs; [`console_read`] drains it).
pub fn bind() -> Result<(), (&'static str, Errno)> {
    let timer = Port::bind_virq(virq::TIMER).map_err(|errno| ("event_channel_op(BIND_VIRQ, TIMER)", errno))?;
    TIMER_PORT.store(timer.number(), Ordering::Release);
    Port::bind_virq(virq::CONSOLE).map_err(|errno| ("event_channel_op(BIND_VIRQ, CONSOLE)", errno))?;
    Ok(())
}

/// Clears every pending, unmasked port (and the upcall flags), noting the timer's expiry.
fn acknowledge() {
    let timer = TIMER_PORT.load(Ordering::Acquire);
    events::scan(entry::shared_info(), |port| {
        if port.number() == timer {
            entry::state().armed_deadline.store(0, Ordering::Release);
        }
    });
}

/// An upcall in guest-kernel mode (the entry returns to the interrupted code after it).
pub fn acknowledge_in_kernel() {
    acknowledge();
    entry::state().unreported.store(true, Ordering::Release);
}

/// An upcall ended a user run; the kernel is told by the trap itself.
pub fn acknowledge_from_user() {
    acknowledge();
    entry::state().unreported.store(false, Ordering::Release);
}

/// True, after acknowledging everything, if an interrupt has come that the kernel has not
/// been told of: one acknowledged in guest-kernel mode, or one pending now (raised while
/// the kernel ran masked). Clears the record: the caller tells the kernel.
pub fn take_unreported() -> bool {
    let pending = entry::shared_info().upcall_pending() != 0;
    if pending {
        acknowledge();
    }
    entry::state().unreported.swap(false, Ordering::AcqRel) || pending
}

/// `Machine::set_timer`: one `set_timer_op`, unless that deadline is armed already (a
/// kernel that re-arms its slice's end before every run pays nothing for it).
pub fn set_timer(deadline_ns: u64) {
    // 0 would cancel; a deadline in the past must fire at once, and system time is past
    // 1 ns long before any kernel runs.
    let deadline = deadline_ns.max(1);
    if entry::state().armed_deadline.load(Ordering::Acquire) == deadline {
        return;
    }
    // The hypervisor accepts every deadline (SPEC.md §19.4).
    if HYPERVISOR.set_timer_op(deadline).is_ok() {
        entry::state().armed_deadline.store(deadline, Ordering::Release);
    }
}

/// `Machine::idle`: sleeps in `sched_op(BLOCK)` until an upcall has come, with events
/// masked again on return.
pub fn idle() {
    while !take_unreported() {
        // BLOCK clears the mask and sleeps as one step, and returns at once if an event is
        // pending; the upcall is delivered on its return and acknowledged there (noted as
        // unreported). BLOCK cannot fail (SPEC.md §20.2).
        let _ = HYPERVISOR.block();
        // The upcall's `iret` cleared the mask again: the kernel runs masked.
        entry::shared_info().set_upcall_mask(1);
        compiler_fence(Ordering::SeqCst);
    }
}

/// `Machine::console_read`: `console_io(READ)`; never waits.
pub fn console_read(buffer: &mut [u8]) -> usize {
    let length = buffer.len().min(WRITE_MAX as usize);
    HYPERVISOR.console_read(&mut buffer[..length]).unwrap_or(0)
}
