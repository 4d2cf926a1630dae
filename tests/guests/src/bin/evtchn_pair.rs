//! Conformance: event channels between two domains (SPEC.md §17). Both domains run this
//! guest with the same sub-case and `peer=<the other's id>`; the lower id leads.
//!
//! * `wrong_domain` — the leader allocates a port naming itself and one naming the peer;
//!   the peer binds its own (the rendezvous) but binding the other is `-EPERM`, and a
//!   second bind of the rendezvous port is `-EINVAL`; nothing changes on the leader's side.
//! * `peer_death` — the leader blocks until its end of the channel changes; the peer
//!   powers off; the death must wake the leader and leave its end UNBOUND naming the dead
//!   peer (a watchdog timer turns a missed wake-up into a failure, not a hang).
//! * `pingpong` — `rounds=<n>` strict ping-pong round trips; each side counts every event
//!   and must see exactly one per round (none lost, none duplicated).
#![cfg_attr(target_os = "none", no_std, no_main)]

mod events_support;

use conformance_guests::argument;
use conformance_guests::words;
use conformance_guests::Accel;
use events_support::{connect, count, count_on, wait_count, Micros};
use guest_rt::abi::event::status;
use guest_rt::abi::{Errno, StartInfo};
use guest_rt::events::{self, Port, SELF};
use guest_rt::hypercall::HYPERVISOR;
use guest_rt::println;
use guest_rt::test::Reporter;
use guest_rt::time;

guest_rt::entry!(evtchn_pair);

const SECOND: u64 = 1_000_000_000;

fn wrong_domain(reporter: &mut Reporter, start: &StartInfo, peer: u64, leader: bool) {
    let watchdog = time::now() + 60 * SECOND;
    let _ = time::set_timer(watchdog);
    if leader {
        let Some(own) = reporter.expect_ok(Port::alloc_unbound(SELF), "alloc_unbound(SELF)") else { return };
        reporter.expect_eq(own.number(), 1, "the first port");
        let port = match connect(start, peer, 2) {
            Ok(port) => port,
            Err(why) => return reporter.fail(why),
        };
        count_on(port);
        events::irq_enable();
        // The peer says it tried everything.
        reporter.check(wait_count(port, 1, watchdog), "the peer's done event");
        let found = own.status().map(|found| (found.state, found.remote_domain));
        reporter.expect_eq(
            found,
            Ok((status::UNBOUND, u64::from(start.domain_id))),
            "the self-named port is untouched",
        );
        let found = port.status().map(|found| (found.state, found.remote_domain, found.remote_port));
        reporter.expect_eq(found, Ok((status::INTERDOMAIN, peer, 1)), "the rendezvous port");
        reporter.expect_ok(own.close(), "close own");
        reporter.expect_ok(port.close(), "close rendezvous");
    } else {
        let port = match connect(start, peer, 2) {
            Ok(port) => port,
            Err(why) => return reporter.fail(why),
        };
        reporter.expect_eq(port.number(), 1, "the peer's first port");
        reporter.expect_errno(
            Port::bind_interdomain(peer, 1),
            Errno::EPERM,
            "binding a port that names another domain",
        );
        reporter.expect_errno(Port::bind_interdomain(peer, 2), Errno::EINVAL, "binding the rendezvous port twice");
        reporter.expect_errno(Port::bind_interdomain(peer, 3), Errno::EINVAL, "binding a port the peer never opened");
        reporter.expect_ok(port.send(), "done event");
        // The leader closes its end after checking; wait for that so it is not our death
        // that changes its ports.
        let closed = events::wait_until(|| {
            port.status().map_or(true, |found| found.state != status::INTERDOMAIN) || time::now() >= watchdog
        });
        reporter.expect_ok(closed, "wait for the leader's close");
        let found = port.status().map(|found| (found.state, found.remote_domain));
        reporter.expect_eq(found, Ok((status::UNBOUND, peer)), "our end after the leader closed its own");
        reporter.expect_ok(port.close(), "close");
    }
    let _ = time::cancel_timer();
}

fn peer_death(reporter: &mut Reporter, start: &StartInfo, peer: u64, leader: bool) {
    let accel = Accel::detect();
    let port = match connect(start, peer, 1) {
        Ok(port) => port,
        Err(why) => return reporter.fail(why),
    };
    count_on(port);
    let watchdog = time::now() + accel.pick(20, 60) * SECOND;
    reporter.expect_ok(time::set_timer(watchdog), "watchdog timer");
    if leader {
        reporter.expect_ok(port.send(), "tell the peer we are about to block");
        let blocked_at = time::now();
        let mut blocks = 0u32;
        let waited = events::wait_until(|| {
            blocks += 1;
            port.status().map_or(true, |found| found.state != status::INTERDOMAIN) || time::now() >= watchdog
        });
        reporter.expect_ok(waited, "block");
        let woke_at = time::now();
        reporter.check(woke_at < watchdog, "woken by the peer's death, not by the watchdog");
        let found = port.status().map(|found| (found.state, found.remote_domain));
        reporter.expect_eq(found, Ok((status::UNBOUND, peer)), "our end after the peer died");
        reporter.expect_errno(port.send(), Errno::EINVAL, "send to a dead peer");
        println!("evtchn_pair: woken {} after blocking, {} checks", Micros(woke_at - blocked_at), blocks);
        reporter.expect_ok(port.close(), "close");
    } else {
        events::irq_enable();
        reporter.check(wait_count(port, 1, watchdog), "the leader's about-to-block event");
        // Let the leader reach its block (yield goes to the next runnable domain).
        for _ in 0..3 {
            let _ = HYPERVISOR.yield_now();
        }
        println!("evtchn_pair: powering off with the channel open");
    }
    let _ = time::cancel_timer();
}

fn pingpong(reporter: &mut Reporter, start: &StartInfo, peer: u64, leader: bool, rounds: u64) {
    let port = match connect(start, peer, 1) {
        Ok(port) => port,
        Err(why) => return reporter.fail(why),
    };
    count_on(port);
    let started = time::now();
    let watchdog = started + 420 * SECOND;
    reporter.expect_ok(time::set_timer(watchdog), "watchdog timer");
    events::irq_enable();
    for round in 0..rounds {
        if leader {
            if port.send().is_err() || !wait_count(port, round + 1, watchdog) {
                return reporter.fail(format_args!("round {round}: no pong (lost event?); {} counted", count(port)));
            }
            let seen = count(port);
            if seen != round + 1 {
                return reporter.fail(format_args!("round {round}: {seen} pongs counted, expected {}", round + 1));
            }
        } else {
            if !wait_count(port, round + 1, watchdog) {
                return reporter.fail(format_args!("round {round}: no ping (lost event?); {} counted", count(port)));
            }
            // Checked before the pong: after it the leader may already have sent the next ping.
            let seen = count(port);
            if seen != round + 1 {
                return reporter.fail(format_args!("round {round}: {seen} pings counted, expected {}", round + 1));
            }
            if port.send().is_err() {
                return reporter.fail(format_args!("round {round}: send refused"));
            }
        }
    }
    let took = time::now() - started;
    if leader {
        // Close only after counting: the peer's last check then sees no more events.
        reporter.expect_eq(count(port), rounds, "pongs received");
        reporter.expect_ok(port.close(), "close");
    } else {
        let closed = events::wait_until(|| {
            port.status().map_or(true, |found| found.state != status::INTERDOMAIN) || time::now() >= watchdog
        });
        reporter.expect_ok(closed, "wait for the leader's close");
        reporter.expect_eq(count(port), rounds, "pings received");
        reporter.expect_ok(port.close(), "close");
    }
    reporter.expect_eq(events::stats().unhandled, 0, "events without a handler");
    println!(
        "evtchn_pair: {rounds} round trips, {} events counted here, {} per round trip",
        count(port),
        Micros(took / rounds.max(1))
    );
    let _ = time::cancel_timer();
}

fn evtchn_pair(start: &'static StartInfo) -> u32 {
    let mut reporter = Reporter::new();
    if !events_support::init(&mut reporter) {
        reporter.finish()
    }
    let Some(peer) = argument(start, "peer") else {
        reporter.error("missing peer=<domain id>");
        reporter.finish()
    };
    let leader = u64::from(start.domain_id) < peer;
    match words(start).next() {
        Some("wrong_domain") => wrong_domain(&mut reporter, start, peer, leader),
        Some("peer_death") => peer_death(&mut reporter, start, peer, leader),
        Some("pingpong") => {
            let rounds = argument(start, "rounds").unwrap_or(10_000);
            pingpong(&mut reporter, start, peer, leader, rounds)
        }
        other => reporter.error(format_args!("unknown sub-case {other:?}")),
    }
    reporter.finish()
}
