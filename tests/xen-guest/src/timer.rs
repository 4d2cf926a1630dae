//! `timer`: ringfence's bench_timer. VIRQ_TIMER bound and unmasked, an event upcall
//! registered, the periodic timer stopped; each iteration reads the system time, arms
//! the one-shot timer 1 ms ahead (`set_timer_op`) and BLOCKs until the upcall has counted
//! the firing; after the wake-up, the upcall and its `iret`, it reads the time again.
//! The sample is the time past the deadline in TSC cycles (the time info's own scale
//! inverted). An iteration whose deadline passed before it could block is left out and
//! counted (more than a tenth of them is an error), as is one that woke early (an error).

use core::fmt::Write;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::events::{self, VIRQ_TIMER};
use crate::harness;
use crate::traps;
use crate::xen::{self, SharedInfo};

/// How far ahead each timer is armed (TCG: ringfence's default there).
const AHEAD_NS: u64 = 1_000_000;

static TIMER_PORT: AtomicU32 = AtomicU32::new(u32::MAX);
static FIRINGS: AtomicU64 = AtomicU64::new(0);

/// Called by the event-upcall entry: takes the timer's event if it is pending.
pub extern "C" fn on_event(_: u64) {
    let shared = xen::shared();
    shared.take_upcall();
    let port = TIMER_PORT.load(Ordering::Relaxed);
    if port != u32::MAX && shared.take_pending(port) {
        FIRINGS.fetch_add(1, Ordering::Relaxed);
    }
}

/// Blocks until `done` holds, with upcalls masked around the check so a firing between
/// the check and BLOCK is not slept through (BLOCK unmasks and checks atomically).
fn wait_until(shared: SharedInfo, done: impl Fn() -> bool) -> Result<(), i64> {
    loop {
        shared.mask_upcalls(true);
        if done() {
            shared.mask_upcalls(false);
            return Ok(());
        }
        events::block()?;
    }
}

pub fn run(shared: SharedInfo) {
    let (warmup, iterations) = (harness::warmup(), harness::iterations());
    let time = shared.time();
    let port = match events::stop_periodic_timer().and_then(|()| events::bind_virq(VIRQ_TIMER)) {
        Ok(port) => port,
        Err(error) => {
            harness::error("timer", format_args!("VIRQ_TIMER setup refused: {error}"));
            return;
        }
    };
    TIMER_PORT.store(port, Ordering::Relaxed);
    traps::set_event_callback();
    shared.mask_port(port, false);
    shared.mask_upcalls(false);
    let samples = harness::samples();
    let mut filled = 0;
    let (mut early, mut armed_late, mut worst_ns) = (0u64, 0usize, 0u64);
    for round in 0..warmup + iterations {
        let fired = FIRINGS.load(Ordering::Relaxed);
        let deadline = time.now() + AHEAD_NS;
        if let Err(error) = events::set_timer(deadline) {
            harness::error("timer", format_args!("set_timer_op refused: {error}"));
            return;
        }
        let passed = time.now() >= deadline;
        if let Err(error) = wait_until(shared, || FIRINGS.load(Ordering::Relaxed) != fired || time.now() >= deadline) {
            harness::error("timer", format_args!("BLOCK refused: {error}"));
            return;
        }
        let (woke, scale) = time.now_scaled();
        if woke < deadline {
            early += 1;
            continue;
        }
        if passed {
            armed_late += 1;
            continue;
        }
        if round >= warmup && filled < iterations {
            worst_ns = worst_ns.max(woke - deadline);
            samples[filled] = scale.cycles_of(woke - deadline);
            filled += 1;
        }
    }
    let _ = writeln!(
        xen::Console,
        "bench: timer: {} us ahead, worst {} us late, {armed_late} deadlines passed before blocking (left out)",
        AHEAD_NS / 1_000,
        worst_ns / 1_000
    );
    if early != 0 || armed_late > (warmup + iterations) / 10 || filled == 0 {
        harness::error("timer", format_args!("{early} woke early, {armed_late} armed too late, {filled} samples"));
        return;
    }
    harness::report("timer", &harness::summarize(&mut samples[..filled]));
}
