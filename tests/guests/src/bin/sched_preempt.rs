//! Conformance: preemption (SPEC.md §19.3). Two domains, `peer=<id>`:
//!
//! * `spinner` (the lower id) connects, turns nothing on (its upcall mask stays set) and
//!   spins for `spin_ms=<ms>` (default 2000) reading the time; it watches its port's
//!   pending bit (set even while masked) for the worker's "done". Every gap in its time
//!   readings is a slice it lost: it reports how many and how long.
//! * `worker` binds, then computes for `work_ms=<ms>` (default 50) of its *own* running
//!   time (summing only small steps between time readings), and sends "done".
//!
//! Without preemption the spinner keeps the CPU for its whole spin and the worker's
//! "done" comes after it (or never). With it, "done" must arrive within
//! `bound_ms=<ms>` (default 1000) of the spin's start.
#![cfg_attr(target_os = "none", no_std, no_main)]

mod events_support;

use conformance_guests::argument;
use conformance_guests::words;
use events_support::{connect, Micros};
use guest_rt::abi::StartInfo;
use guest_rt::println;
use guest_rt::test::Reporter;
use guest_rt::time;

guest_rt::entry!(sched_preempt);

const MILLISECOND: u64 = 1_000_000;
/// A gap between two time readings longer than this was time given to someone else.
const GAP: u64 = MILLISECOND / 2;

fn spinner(reporter: &mut Reporter, start: &StartInfo, peer: u64) {
    let port = match connect(start, peer, 1) {
        Ok(port) => port,
        Err(why) => return reporter.fail(why),
    };
    let spin = argument(start, "spin_ms").unwrap_or(2000) * MILLISECOND;
    let bound = argument(start, "bound_ms").unwrap_or(1000) * MILLISECOND;
    reporter.check(guest_rt::events::irqs_disabled(), "the spinner spins with events masked");
    let began = time::now();
    let mut previous = began;
    let mut done_at = None;
    let (mut gaps, mut lost, mut longest_gap) = (0u64, 0u64, 0u64);
    let (mut run_started, mut longest_run) = (began, 0u64);
    loop {
        let now = time::now();
        if now - previous > GAP {
            gaps += 1;
            lost += now - previous;
            longest_gap = longest_gap.max(now - previous);
            longest_run = longest_run.max(previous - run_started);
            run_started = now;
        }
        previous = now;
        if done_at.is_none() && port.is_pending() {
            done_at = Some(now);
        }
        if now - began >= spin {
            break;
        }
    }
    longest_run = longest_run.max(previous - run_started);
    println!(
        "sched_preempt: spun {} masked; preempted {gaps} times, {} given away, longest gap {}, longest run {}",
        Micros(previous - began),
        Micros(lost),
        Micros(longest_gap),
        Micros(longest_run)
    );
    match done_at {
        Some(at) => {
            println!("sched_preempt: the worker finished {} into the spin", Micros(at - began));
            reporter.check(at - began <= bound, format_args!("the worker finished within {}", Micros(bound)));
        }
        None => reporter.fail("the worker never finished while this domain spun with events masked (no preemption?)"),
    }
    reporter.check(gaps > 0, "the spinner was preempted");
    port.clear_pending();
    reporter.expect_ok(port.close(), "close");
}

fn worker(reporter: &mut Reporter, start: &StartInfo, peer: u64) {
    let port = match connect(start, peer, 1) {
        Ok(port) => port,
        Err(why) => return reporter.fail(why),
    };
    let work = argument(start, "work_ms").unwrap_or(50) * MILLISECOND;
    let began = time::now();
    let mut previous = began;
    let (mut own, mut gaps, mut longest_gap) = (0u64, 0u64, 0u64);
    while own < work {
        let now = time::now();
        let step = now - previous;
        if step > GAP {
            gaps += 1;
            longest_gap = longest_gap.max(step);
        } else {
            own += step;
        }
        previous = now;
    }
    reporter.expect_ok(port.send(), "done");
    println!(
        "sched_preempt: worked {} in {} of system time, {gaps} gaps, longest {}",
        Micros(own),
        Micros(previous - began),
        Micros(longest_gap)
    );
    reporter.expect_ok(port.close(), "close");
}

fn sched_preempt(start: &'static StartInfo) -> u32 {
    let mut reporter = Reporter::new();
    let Some(peer) = argument(start, "peer") else {
        reporter.error("missing peer=<domain id>");
        reporter.finish()
    };
    match words(start).next() {
        Some("spinner") => spinner(&mut reporter, start, peer),
        Some("worker") => worker(&mut reporter, start, peer),
        other => reporter.error(format_args!("unknown role {other:?}")),
    }
    reporter.finish()
}
