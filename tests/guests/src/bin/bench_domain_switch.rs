//! Benchmark `domain_switch`: `sched_op(YIELD)` between two domains on the one CPU.
//! `cargo xtask bench` boots two domains of this guest, each with `peer=<the other's id>`
//! and the same `iterations=<n>`; both do nothing but yield. The lower id, the measurer,
//! times each of its yields between two serialized TSC reads: its YIELD switches to the
//! peer, whose own YIELD (the two are alone, so the queue is just them) switches back.
//! One sample is therefore a round trip of two yields and two switches, and the row is
//! **half** of it: the cost of one switch, YIELD included. Compared with half a
//! `sched_yield` round trip of two host processes pinned to one CPU. Prints (measurer
//! only) `bench domain_switch median <c> p99 <c> iterations <n>`, per switch.
//!
//! The peer makes as many yields as the measurer plus a margin: the measurer's yield k
//! returns only after the peer's yield k, so a peer that stopped early would leave the
//! last samples without a switch; yields after the measurer ended are alone and return
//! at once.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[path = "bench_support/mod.rs"]
mod bench_support;

use guest_rt::abi::StartInfo;
use guest_rt::hypercall::HYPERVISOR;
use guest_rt::println;
use guest_rt::test::Reporter;
use guest_rt::tsc::{self, Summary};

guest_rt::entry!(bench_domain_switch);

/// Yields the peer makes beyond the measurer's.
const PEER_MARGIN: usize = 10;

/// A round-trip summary as a per-switch one: every sample halved (halving keeps the
/// order, so the percentiles of the halves are the halves of the percentiles).
fn per_switch(round_trip: Summary) -> Summary {
    Summary {
        min: round_trip.min / 2,
        median: round_trip.median / 2,
        p99: round_trip.p99 / 2,
        max: round_trip.max / 2,
        iterations: round_trip.iterations,
    }
}

fn bench_domain_switch(start: &'static StartInfo) -> u32 {
    let mut reporter = Reporter::new();
    let iterations = bench_support::iterations(start);
    let warmup = bench_support::warmup(iterations);
    let Some(peer) = bench_support::peer(start) else {
        reporter.error("missing peer=<domain id>");
        reporter.finish()
    };
    let mut refused = 0u64;
    if u64::from(start.domain_id) < peer {
        // The warm-up also covers the peer's start: its first instructions run inside
        // the measurer's first yield.
        let result = tsc::bench(warmup, iterations, || {
            if HYPERVISOR.yield_now().is_err() {
                refused += 1;
            }
        });
        if refused == 0 {
            bench_support::report(&mut reporter, "domain_switch", result.map(|summary| summary.map(per_switch)));
        }
    } else {
        for _ in 0..warmup + iterations + PEER_MARGIN {
            if HYPERVISOR.yield_now().is_err() {
                refused += 1;
            }
        }
        println!("bench: domain_switch: yielded {} times beside domain {peer}", warmup + iterations + PEER_MARGIN);
    }
    reporter.expect_eq(refused, 0, "yields refused");
    reporter.finish()
}
