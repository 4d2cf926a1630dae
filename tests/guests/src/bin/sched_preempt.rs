//! Conformance: preemption (SPEC.md §20.1). Two domains, `peer=<id>`:
//!
//! * `spinner` (the lower id) connects, turns nothing on (its upcall mask stays set) and
//!   spins for `spin_ms=<ms>` (default 2000) reading the time; it watches its port's
//!   pending bit (set even while masked) for the worker's "done", and counts its own
//!   turns (events_support::Turns).
//! * `worker` binds, then computes through `work_turns=<n>` (default 5) turns of its own
//!   and sends "done".
//!
//! Without preemption the spinner keeps the CPU for its whole spin and the worker's
//! "done" comes after it (or never). With round-robin preemption the worker gets one turn
//! between two of the spinner's, so "done" must be pending by the spinner's turn
//! `work_turns` + 2 (one for each end of the count). Turns, not system time, are judged:
//! how much the worker gets done in a turn depends on the host, which turn it gets does
//! not. Gaps in the spinner's time readings and the system time at "done" are printed.
#![cfg_attr(target_os = "none", no_std, no_main)]

mod events_support;

use conformance_guests::argument;
use conformance_guests::words;
use events_support::{connect, Micros, Turns};
use guest_rt::abi::StartInfo;
use guest_rt::println;
use guest_rt::test::Reporter;
use guest_rt::time;

guest_rt::entry!(sched_preempt);

const MILLISECOND: u64 = 1_000_000;
/// A gap between two time readings longer than this was time given to someone else.
const GAP: u64 = MILLISECOND / 2;
/// Turns the worker computes through before it says "done".
const WORK_TURNS: u64 = 5;

fn spinner(reporter: &mut Reporter, start: &StartInfo, peer: u64) {
    let port = match connect(start, peer, 1) {
        Ok(port) => port,
        Err(why) => return reporter.fail(why),
    };
    let spin = argument(start, "spin_ms").unwrap_or(2000) * MILLISECOND;
    let bound = argument(start, "work_turns").unwrap_or(WORK_TURNS) + 2;
    reporter.check(guest_rt::events::irqs_disabled(), "the spinner spins with events masked");
    let mut turns = Turns::new();
    let began = time::now();
    let mut previous = began;
    let mut done_at = None;
    let (mut gaps, mut lost, mut longest_gap) = (0u64, 0u64, 0u64);
    let (mut run_started, mut longest_run) = (began, 0u64);
    loop {
        let (now, _) = turns.read();
        if now - previous > GAP {
            gaps += 1;
            lost += now - previous;
            longest_gap = longest_gap.max(now - previous);
            longest_run = longest_run.max(previous - run_started);
            run_started = now;
        }
        previous = now;
        if done_at.is_none() && port.is_pending() {
            done_at = Some((now, turns.count));
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
        Some((at, turn)) => {
            println!(
                "sched_preempt: the worker finished {} into the spin, in this domain's turn {turn}",
                Micros(at - began)
            );
            reporter.check(turn <= bound, format_args!("the worker finished by this domain's turn {bound}"));
        }
        None => reporter.fail("the worker never finished while this domain spun with events masked (no preemption?)"),
    }
    reporter.check(turns.count > 0, "the spinner was preempted (switched out and back)");
    port.clear_pending();
    reporter.expect_ok(port.close(), "close");
}

fn worker(reporter: &mut Reporter, start: &StartInfo, peer: u64) {
    let port = match connect(start, peer, 1) {
        Ok(port) => port,
        Err(why) => return reporter.fail(why),
    };
    let work_turns = argument(start, "work_turns").unwrap_or(WORK_TURNS);
    let mut turns = Turns::new();
    let began = time::now();
    let mut previous = began;
    let (mut own, mut gaps, mut longest_gap) = (0u64, 0u64, 0u64);
    while turns.count < work_turns {
        let (now, _) = turns.read();
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
        "sched_preempt: worked through {work_turns} turns: {} in {} of system time, {gaps} gaps, longest {}",
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
