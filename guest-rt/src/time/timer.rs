//! The domain's one-shot timer (SPEC.md §19.4) and sleeping on it.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use hypercall_abi::event::virq;
use hypercall_abi::Errno;

use super::system_time::now;
use crate::events::{self, Port};
use crate::hypercall::HYPERVISOR;

/// `set_timer_op(deadline_ns)`: the domain's timer fires at absolute system time
/// `deadline_ns` (at once if that has passed), raising VIRQ_TIMER and waking the domain.
/// Replaces any earlier deadline. A deadline of 0 cancels; use [`cancel_timer`].
pub fn set_timer(deadline_ns: u64) -> Result<(), Errno> {
    HYPERVISOR.set_timer_op(deadline_ns).map(drop)
}

/// Cancels the domain's timer.
pub fn cancel_timer() -> Result<(), Errno> {
    HYPERVISOR.set_timer_op(0).map(drop)
}

/// 0 = not bound yet.
static TIMER_PORT: AtomicU32 = AtomicU32::new(0);
static TIMER_FIRINGS: AtomicU64 = AtomicU64::new(0);
static TIMER_FIRED_AT: AtomicU64 = AtomicU64::new(0);

fn on_timer(_: Port) {
    TIMER_FIRED_AT.store(now(), Ordering::Relaxed);
    TIMER_FIRINGS.fetch_add(1, Ordering::Release);
}

/// The VIRQ_TIMER port guest-rt bound (binding it, and its counting handler, on first
/// use). A domain that binds VIRQ_TIMER itself gets `-EEXIST` here.
pub fn timer_port() -> Result<Port, Errno> {
    let bound = TIMER_PORT.load(Ordering::Acquire);
    if bound != 0 {
        return Ok(Port::from_raw(bound));
    }
    let port = Port::bind_virq(virq::TIMER)?;
    events::set_handler(port, on_timer);
    TIMER_PORT.store(port.number(), Ordering::Release);
    Ok(port)
}

/// Timer events guest-rt's VIRQ_TIMER handler has seen, and the system time it saw the
/// last one at.
pub fn timer_firings() -> (u64, u64) {
    (TIMER_FIRINGS.load(Ordering::Acquire), TIMER_FIRED_AT.load(Ordering::Relaxed))
}

/// Sleeps until system time `deadline_ns`: arms the timer, binds VIRQ_TIMER (once) and
/// blocks until the time has come, whatever other events wake the domain meanwhile.
/// Requires [`events::init`] (the upcall entry). The upcall flag is as before on return.
pub fn sleep_until(deadline_ns: u64) -> Result<(), Errno> {
    timer_port()?;
    set_timer(deadline_ns)?;
    let mut armed_firings = TIMER_FIRINGS.load(Ordering::Acquire);
    let mut result = Ok(());
    events::wait_until(|| {
        if now() >= deadline_ns {
            return true;
        }
        // A timer that fired before the deadline (or was replaced by someone else's)
        // would leave us asleep for good: arm it again.
        let firings = TIMER_FIRINGS.load(Ordering::Acquire);
        if firings != armed_firings {
            armed_firings = firings;
            if let Err(errno) = set_timer(deadline_ns) {
                result = Err(errno);
                return true;
            }
        }
        false
    })?;
    result
}

/// Sleeps for `nanoseconds` (see [`sleep_until`]).
pub fn sleep(nanoseconds: u64) -> Result<(), Errno> {
    sleep_until(now().saturating_add(nanoseconds))
}
