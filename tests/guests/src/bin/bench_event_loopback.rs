//! Benchmark `event_loopback`: an event channel whose two ends are in this one domain
//! (SPEC.md §17.1: `ALLOC_UNBOUND(DOMAIN_SELF)`, then `BIND_INTERDOMAIN(DOMAIN_SELF, it)`),
//! so no domain switch is involved: what the event path itself costs. One iteration is
//! the shape of Xen's loopback figure (SEND + POLL, twice): `SEND` on the first end,
//! `POLL` on the second until it is pending and take the event, then the same from the
//! second end back to the first. Four hypercalls per iteration, timed between serialized
//! TSC reads. Prints `bench event_loopback median <c> p99 <c> iterations <n>`.
//!
//! Events stay masked (no upcall entry is registered): `POLL` returns as soon as its port
//! is pending, without an event frame.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[path = "bench_support/mod.rs"]
mod bench_support;

use guest_rt::abi::StartInfo;
use guest_rt::events::{self, Port, SELF};
use guest_rt::test::Reporter;
use guest_rt::tsc;

guest_rt::entry!(bench_event_loopback);

/// `SEND` on `from`, then `POLL` on `to` (at once: the send made it pending; no timeout,
/// so an event that never came would hang the run, which the bench's timeout reports)
/// and take the event. False if a call was refused or `to` was not pending after the poll.
fn pass(from: Port, to: Port) -> bool {
    from.send().is_ok() && events::poll(&[to], 0).is_ok() && to.clear_pending()
}

fn bench_event_loopback(start: &'static StartInfo) -> u32 {
    let mut reporter = Reporter::new();
    let iterations = bench_support::iterations(start);
    let warmup = bench_support::warmup(iterations);
    let Some(first) = reporter.expect_ok(Port::alloc_unbound(SELF), "alloc_unbound(DOMAIN_SELF)") else {
        reporter.finish()
    };
    let Some(second) =
        reporter.expect_ok(Port::bind_interdomain(SELF, first.number()), "bind_interdomain(DOMAIN_SELF, first)")
    else {
        reporter.finish()
    };
    let mut lost = None;
    let mut round = 0usize;
    let result = tsc::bench(warmup, iterations, || {
        if lost.is_none() && !(pass(first, second) && pass(second, first)) {
            lost = Some(round);
        }
        round += 1;
    });
    match lost {
        Some(round) => reporter.fail(format_args!("round {round}: a send was refused or its event was not pending")),
        None => bench_support::report(&mut reporter, "event_loopback", result),
    }
    reporter.check(!first.is_pending() && !second.is_pending(), "an event pending after the last round");
    reporter.finish()
}
