//! Benchmark `event_channel`: an interdomain ping-pong between two domains on the one CPU.
//! `cargo xtask bench` boots two domains of this guest, each with `peer=<the other's id>`
//! and the same `iterations=<n>`. They connect one interdomain channel (the lower id
//! allocates port 1 naming the peer, the higher binds it). Then the lower id, the
//! measurer, times `iterations` round trips after a warm-up: TSC → `SEND` → `POLL` on
//! its port until the reply is pending → TSC. The other domain `POLL`s for each ping and
//! answers with a `SEND`. So one round trip is two sends, two polls and two domain
//! switches; compared with a one-byte pipe ping-pong between two host processes on one
//! CPU. Prints (measurer only) `bench event_channel median <c> p99 <c> iterations <n>`.
//!
//! `POLL` (without deadline) with events masked rather than `BLOCK` and an upcall: like a blocking `read`,
//! it sleeps until this one port is pending and returns without an event frame and its
//! `iret`, so a round trip costs two hypercalls fewer on each side. The domains never
//! register an upcall entry.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[path = "bench_support/mod.rs"]
mod bench_support;
#[path = "events_support/mod.rs"]
mod events_support;

use guest_rt::abi::StartInfo;
use guest_rt::events::{self, Port};
use guest_rt::println;
use guest_rt::test::Reporter;
use guest_rt::tsc;

guest_rt::entry!(bench_event_channel);

/// The port the measurer allocates for the peer to bind (its first).
const RENDEZVOUS: u32 = 1;

/// Waits until `port` is pending and takes the event (clears the pending bit); false if
/// a POLL was refused. The pending bit is tested before the first POLL because an event
/// sent before this domain got here is already there. The POLL has no deadline: a timed
/// one costs a clock read in the guest and a deadline set, armed and cancelled in the
/// hypervisor on every wait (~2k cycles each, measured), which is not the event path the
/// row measures; an event that never comes ends the run at `cargo xtask bench`'s timeout
/// for the guest, reported as such.
fn take_event(port: Port) -> bool {
    loop {
        if port.clear_pending() {
            return true;
        }
        if events::poll(&[port], 0).is_err() {
            return false;
        }
    }
}

fn bench_event_channel(start: &'static StartInfo) -> u32 {
    let mut reporter = Reporter::new();
    let iterations = bench_support::iterations(start);
    let warmup = bench_support::warmup(iterations);
    let Some(peer) = bench_support::peer(start) else {
        reporter.error("missing peer=<domain id>");
        reporter.finish()
    };
    let measurer = u64::from(start.domain_id) < peer;
    let port = match events_support::connect(start, peer, RENDEZVOUS) {
        Ok(port) => port,
        Err(why) => {
            reporter.fail(why);
            reporter.finish()
        }
    };
    let mut lost = None;
    if measurer {
        let mut round = 0usize;
        let result = tsc::bench(warmup, iterations, || {
            // After a lost event every later round would wait out the patience too.
            if lost.is_none() && (port.send().is_err() || !take_event(port)) {
                lost = Some(round);
            }
            round += 1;
        });
        if let Some(round) = lost {
            reporter.fail(format_args!("round {round}: no reply from domain {peer} (send refused or event lost)"));
        } else {
            bench_support::report(&mut reporter, "event_channel", result);
        }
    } else {
        for round in 0..warmup + iterations {
            if !take_event(port) || port.send().is_err() {
                lost = Some(round);
                break;
            }
        }
        match lost {
            Some(round) => {
                reporter.fail(format_args!("round {round}: no ping from domain {peer}, or the reply was refused"))
            }
            None => println!("bench: event_channel: answered {} pings of domain {peer}", warmup + iterations),
        }
    }
    // Strict ping-pong: nothing may be left over (an event duplicated by the hypervisor).
    // The measurer looks only after its last reply, which the peer sent after its last
    // wait; the peer sees its last ping taken.
    reporter.check(!port.is_pending(), "an event pending after the last round");
    reporter.finish()
}
