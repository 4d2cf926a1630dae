//! Conformance: the one-shot timer, VIRQ_TIMER and blocking (SPEC.md §19).
//!
//! * `deadline` — 24 timers 0.1 ms .. 50 ms ahead: the VIRQ_TIMER handler never runs
//!   before the deadline; the median lateness is within `median_us=<µs>` (default 5 ms
//!   under KVM, 10 ms under TCG) and each one within `tolerance_us=<µs>` (default 50 ms
//!   and 100 ms: a single timer is as late as the host keeps the vCPU from running), of
//!   which at most 2 of the 24 may be exceeded (host stalls; none may take 2 s).
//!   Measured on an idle host: KVM (PVM) median ≈2 ms (each delivery is a few host round
//!   trips of ~1 ms), TCG ≈3 ms; a host running four QEMUs on two cores pushed single
//!   KVM timers to 14 ms. The median, p90 and worst are printed.
//! * `past` — a deadline already passed fires on the `set_timer_op` return.
//! * `cancel` — a timer cancelled before its deadline never fires (attempts in which the
//!   host stalled the cancel past the deadline are not judged); 0 cancels.
//! * `replace` — a second `set_timer_op` replaces the first: one firing, at the second
//!   deadline.
//! * `sleep` — `time::sleep_until` returns at or after its deadline, with other events
//!   (an IPI sent to itself) arriving meanwhile; an unbound timer still wakes `block`.
#![cfg_attr(target_os = "none", no_std, no_main)]

mod events_support;

use conformance_guests::argument;
use conformance_guests::words;
use conformance_guests::Accel;
use events_support::{count, count_on, Micros};
use guest_rt::abi::event::virq;
use guest_rt::abi::StartInfo;
use guest_rt::events::{self, Port};
use guest_rt::hypercall::HYPERVISOR;
use guest_rt::println;
use guest_rt::test::Reporter;
use guest_rt::time;

guest_rt::entry!(timer);

const MILLISECOND: u64 = 1_000_000;

/// Waits (blocking) until guest-rt's timer handler has counted `firings`, or until system
/// time passes `give_up`; returns the firing count then.
fn wait_firings(firings: u64, give_up: u64) -> u64 {
    let _ = events::wait_until(|| time::timer_firings().0 >= firings || time::now() >= give_up);
    time::timer_firings().0
}

/// How late a timer may fire: the median of all of them, and any single one. A single
/// timer can be late by however long the host keeps the vCPU from running (a loaded
/// host, another QEMU on the same core); the median says what the hypervisor adds.
#[derive(Copy, Clone)]
struct Tolerance {
    median: u64,
    single: u64,
}

/// Default tolerances (µs); see the module comment for the measurements behind them.
const MEDIAN_KVM_US: u64 = 5_000;
const MEDIAN_TCG_US: u64 = 10_000;
const SINGLE_KVM_US: u64 = 50_000;
const SINGLE_TCG_US: u64 = 100_000;
/// How many of the 24 timers may exceed the single tolerance. A host that deschedules the
/// emulator makes one timer late by the length of the stall (154 ms measured under load,
/// issue 15); a hypervisor that arms late or loses a wake-up makes many late, or one never
/// fire (2 s: a failure whatever this allows).
const OUTLIERS: usize = 2;

fn deadline(reporter: &mut Reporter, tolerance: Tolerance) {
    if reporter.expect_ok(time::timer_port(), "bind VIRQ_TIMER").is_none() {
        return;
    }
    events::irq_enable();
    let deltas = [100_000u64, 500_000, 1_000_000, 2_000_000, 5_000_000, 10_000_000, 20_000_000, 50_000_000];
    let mut lateness = [0u64; 24];
    let mut samples = 0usize;
    let mut outliers = 0usize;
    for round in 0..3 {
        for &delta in &deltas {
            let (before, _) = time::timer_firings();
            let set_at = time::now();
            let deadline = set_at + delta;
            if reporter.expect_ok(time::set_timer(deadline), "set_timer").is_none() {
                return;
            }
            let firings = wait_firings(before + 1, deadline + 2_000 * MILLISECOND);
            let woke = time::now();
            let (_, fired_at) = time::timer_firings();
            if firings != before + 1 {
                reporter.fail(format_args!("timer {delta} ns ahead: {} firings, expected 1", firings - before));
                continue;
            }
            if fired_at < deadline {
                reporter.fail(format_args!("timer {delta} ns ahead fired {} ns early", deadline - fired_at));
                continue;
            }
            let late = fired_at - deadline;
            lateness[samples] = late;
            samples += 1;
            if round == 0 {
                println!(
                    "timer: {} ahead: handler ran {} late, block returned {} late",
                    Micros(delta),
                    Micros(late),
                    Micros(woke - deadline)
                );
            }
            if late > tolerance.single {
                outliers += 1;
                println!(
                    "timer: {} ahead fired {} late, beyond a single timer's tolerance {} ({outliers} of at most {OUTLIERS} allowed)",
                    Micros(delta),
                    Micros(late),
                    Micros(tolerance.single)
                );
            }
        }
    }
    // No firing without a timer.
    let (before, _) = time::timer_firings();
    let quiet_until = time::now() + 30 * MILLISECOND;
    while time::now() < quiet_until {
        let _ = HYPERVISOR.yield_now();
    }
    reporter.expect_eq(time::timer_firings().0, before, "firings with no timer set");
    let sorted = &mut lateness[..samples];
    sorted.sort_unstable();
    let at = |percent: u32| guest_rt::tsc::percentile(sorted, percent).unwrap_or(0);
    let (median, p90, worst) = (at(50), at(90), at(100));
    reporter.check(
        outliers <= OUTLIERS,
        format_args!("{outliers} timers beyond a single timer's tolerance, at most {OUTLIERS} allowed"),
    );
    reporter.check(
        median <= tolerance.median,
        format_args!("median lateness {} is within {}", Micros(median), Micros(tolerance.median)),
    );
    println!(
        "timer: {samples} timers, none early; lateness median {}, p90 {}, worst {} (tolerance: median {}, each {})",
        Micros(median),
        Micros(p90),
        Micros(worst),
        Micros(tolerance.median),
        Micros(tolerance.single)
    );
}

fn past(reporter: &mut Reporter) {
    if reporter.expect_ok(time::timer_port(), "bind VIRQ_TIMER").is_none() {
        return;
    }
    events::irq_enable();
    let now = time::now();
    reporter.expect_ok(time::set_timer(now.saturating_sub(MILLISECOND).max(1)), "set_timer(a millisecond ago)");
    reporter.expect_eq(time::timer_firings().0, 1, "firings on the set_timer_op return");
    reporter.expect_ok(time::set_timer(1), "set_timer(1 ns after boot)");
    reporter.expect_eq(time::timer_firings().0, 2, "firings for a deadline long past");
    // Masked: the event waits for irq_enable.
    events::irq_disable();
    reporter.expect_ok(time::set_timer(time::now()), "set_timer(now) with events off");
    let _ = HYPERVISOR.version();
    reporter.expect_eq(time::timer_firings().0, 2, "firings while events are off");
    events::irq_enable();
    reporter.expect_eq(time::timer_firings().0, 3, "firings once events are on");
}

/// Attempts `cancel` makes at most, and how many of them must be judged.
const CANCEL_ATTEMPTS: u32 = 10;
const CANCEL_JUDGED: u32 = 3;

/// A timer 20 ms ahead, cancelled at once, must never fire. That holds only if the cancel
/// came before the deadline: a host that stalls the emulator for 20 ms between the two
/// calls lets the timer expire first, and a cancel does not take back an expiry (SPEC.md
/// §19.4; issue 15 saw exactly that under load). So each attempt reads the system time
/// after the cancel returned: an attempt whose cancel finished before the deadline is
/// judged (no firing at all); one whose cancel came late may have fired, once, not
/// early. Attempts go on until [`CANCEL_JUDGED`] were judged.
fn cancel(reporter: &mut Reporter) {
    if reporter.expect_ok(time::timer_port(), "bind VIRQ_TIMER").is_none() {
        return;
    }
    events::irq_enable();
    let (mut judged, mut attempts) = (0, 0);
    while judged < CANCEL_JUDGED && attempts < CANCEL_ATTEMPTS {
        attempts += 1;
        let (before, _) = time::timer_firings();
        let deadline = time::now() + 20 * MILLISECOND;
        reporter.expect_ok(time::set_timer(deadline), "set_timer(+20 ms)");
        reporter.expect_ok(time::cancel_timer(), "cancel");
        let cancelled_at = time::now();
        reporter.expect_ok(time::cancel_timer(), "cancel with no timer set");
        let until = deadline + 20 * MILLISECOND;
        while time::now() < until {
            let _ = HYPERVISOR.yield_now();
        }
        let (after, fired_at) = time::timer_firings();
        if cancelled_at < deadline {
            judged += 1;
            reporter.expect_eq(after - before, 0, "firings of a timer cancelled before its deadline");
        } else {
            println!(
                "timer: attempt {attempts}: the cancel returned {} after the deadline: not judged",
                Micros(cancelled_at - deadline)
            );
            reporter.check(after - before <= 1, "a late-cancelled timer fires at most once");
            reporter.check(after == before || fired_at >= deadline, "a late-cancelled timer does not fire early");
        }
    }
    println!("timer: {judged} cancels judged in {attempts} attempts");
    reporter.check(judged == CANCEL_JUDGED, format_args!("{CANCEL_JUDGED} cancels made before their deadline"));
}

fn replace(reporter: &mut Reporter) {
    if reporter.expect_ok(time::timer_port(), "bind VIRQ_TIMER").is_none() {
        return;
    }
    events::irq_enable();
    let now = time::now();
    let late = now + 60 * MILLISECOND;
    let early = now + 10 * MILLISECOND;
    reporter.expect_ok(time::set_timer(late), "set_timer(+60 ms)");
    reporter.expect_ok(time::set_timer(early), "set_timer(+10 ms) replaces it");
    let firings = wait_firings(1, now + 2_000 * MILLISECOND);
    reporter.expect_eq(firings, 1, "firings after the second deadline");
    let (_, fired_at) = time::timer_firings();
    reporter.check(
        fired_at >= early && fired_at < late,
        format_args!("fired at +{} ns: at the replacing deadline", fired_at - now),
    );
    let until = late + 20 * MILLISECOND;
    while time::now() < until {
        let _ = HYPERVISOR.yield_now();
    }
    reporter.expect_eq(time::timer_firings().0, 1, "the replaced deadline never fires");
}

fn sleep(reporter: &mut Reporter) {
    // An unbound timer still wakes a blocked domain.
    let deadline = time::now() + 10 * MILLISECOND;
    reporter.expect_ok(time::set_timer(deadline), "set_timer with VIRQ_TIMER unbound");
    let waited = events::wait_until(|| time::now() >= deadline);
    reporter.expect_ok(waited, "block until the unbound timer's deadline");
    reporter.check(time::now() >= deadline, "woken at or after the deadline");

    let Some(ipi) = reporter.expect_ok(Port::bind_ipi(), "bind_ipi") else { return };
    count_on(ipi);
    // A domain starts with events masked; sleep_until must give back whichever state it
    // found: on here, off below.
    events::irq_enable();
    for round in 0..5u64 {
        let start = time::now();
        let deadline = start + (round + 1) * 4 * MILLISECOND;
        reporter.expect_ok(ipi.send(), "an unrelated event before sleeping");
        reporter.expect_ok(time::sleep_until(deadline), "sleep_until");
        let woke = time::now();
        reporter
            .check(woke >= deadline, format_args!("sleep_until returned {} ns early", deadline.saturating_sub(woke)));
        println!(
            "timer: slept {} for {}, returned {} late",
            Micros(woke - start),
            Micros(deadline - start),
            Micros(woke - deadline)
        );
    }
    reporter.expect_eq(count(ipi), 5, "unrelated events delivered while sleeping");
    reporter.check(!events::irqs_disabled(), "sleep_until restored the upcall flag (on)");
    events::irq_disable();
    reporter.expect_ok(time::sleep(MILLISECOND), "sleep with events off");
    reporter.check(events::irqs_disabled(), "sleep restored the upcall flag (off)");
    reporter.expect_errno(Port::bind_virq(virq::TIMER), guest_rt::abi::Errno::EEXIST, "VIRQ_TIMER is bound once");
}

fn timer(start: &'static StartInfo) -> u32 {
    let mut reporter = Reporter::new();
    if !events_support::init(&mut reporter) {
        reporter.finish()
    }
    let accel = Accel::detect();
    match words(start).next() {
        Some("deadline") => {
            let tolerance = Tolerance {
                median: argument(start, "median_us").unwrap_or(accel.pick(MEDIAN_KVM_US, MEDIAN_TCG_US)) * 1000,
                single: argument(start, "tolerance_us").unwrap_or(accel.pick(SINGLE_KVM_US, SINGLE_TCG_US)) * 1000,
            };
            deadline(&mut reporter, tolerance)
        }
        Some("past") => past(&mut reporter),
        Some("cancel") => cancel(&mut reporter),
        Some("replace") => replace(&mut reporter),
        Some("sleep") => sleep(&mut reporter),
        other => reporter.error(format_args!("unknown sub-case {other:?}")),
    }
    println!("timer: accelerator {}", accel.name());
    reporter.finish()
}
