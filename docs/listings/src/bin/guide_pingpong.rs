//! Guide chapter 8: two domains talking. Boot this guest twice; domain 1 opens an event
//! channel for domain 2, domain 2 binds it, and they bounce an event back and forth.
#![cfg_attr(target_os = "none", no_std, no_main)]

use core::sync::atomic::{AtomicU64, Ordering};

use guest_rt::abi::event::status;
use guest_rt::abi::{Errno, StartInfo};
use guest_rt::events::{self, Port};
use guest_rt::hypercall;
use guest_rt::println;
use guest_rt::time;

guest_rt::entry!(pingpong);

const ROUNDS: u64 = 5;
/// The port domain 1 allocates first: the rendezvous both sides know in advance.
const RENDEZVOUS: u32 = 1;
const SECOND: u64 = 1_000_000_000;

// ANCHOR: handler
static RECEIVED: AtomicU64 = AtomicU64::new(0);

fn on_event(_: Port) {
    RECEIVED.fetch_add(1, Ordering::AcqRel);
}

/// Blocks until `count` events have arrived (or `give_up` passes; a timer armed for it
/// wakes the block).
fn wait_for(count: u64, give_up: u64) -> Result<bool, Errno> {
    events::wait_until(|| RECEIVED.load(Ordering::Acquire) >= count || time::now() >= give_up)?;
    Ok(RECEIVED.load(Ordering::Acquire) >= count)
}
// ANCHOR_END: handler

fn pingpong(start: &'static StartInfo) -> u32 {
    match run(start) {
        Ok(()) => 0,
        Err(errno) => {
            println!("pingpong: {errno:?}");
            1
        }
    }
}

// ANCHOR: connect
/// Domain 1 allocates an unbound port that only domain 2 may bind and waits until it
/// is bound; domain 2 binds it, retrying while domain 1 has not allocated it yet. Both
/// give up at `give_up` (system time) with `ESRCH`: the peer is not there.
fn connect(me: u32, peer: u64, give_up: u64) -> Result<Port, Errno> {
    if me == 1 {
        let port = Port::alloc_unbound(peer)?;
        while port.status()?.state != status::INTERDOMAIN {
            if time::now() >= give_up {
                return Err(Errno::ESRCH);
            }
            hypercall::yield_now()?;
        }
        Ok(port)
    } else {
        loop {
            match Port::bind_interdomain(peer, RENDEZVOUS) {
                Err(Errno::EINVAL) if time::now() < give_up => hypercall::yield_now()?, // not allocated yet
                bound => return bound,
            }
        }
    }
}
// ANCHOR_END: connect

fn run(start: &'static StartInfo) -> Result<(), Errno> {
    // ANCHOR: roles
    let me = start.domain_id;
    let peer = if me == 1 { 2 } else { 1 };
    let give_up = time::now() + 30 * SECOND;
    let port = connect(me, peer, give_up)?; // first, so that domain 1's port is number 1
    events::init()?;
    time::timer_port()?;
    time::set_timer(give_up)?; // a watchdog: a lost event ends the wait, not the world
    events::set_handler(port, on_event);
    events::irq_enable();
    println!("connected to d{peer} through local port {}", port.number());
    // ANCHOR_END: roles

    // ANCHOR: rounds
    for round in 1..=ROUNDS {
        if me == 1 {
            port.send()?;
            if !wait_for(round, give_up)? {
                println!("no pong in round {round}");
                return Err(Errno::ESRCH);
            }
            println!("ping {round} answered");
        } else {
            if !wait_for(round, give_up)? {
                println!("no ping in round {round}");
                return Err(Errno::ESRCH);
            }
            port.send()?;
        }
    }
    time::cancel_timer()?;
    println!("{} events received", RECEIVED.load(Ordering::Acquire));
    // ANCHOR_END: rounds

    // ANCHOR: close
    if me == 2 {
        // Stay until domain 1 has closed its end: our death would also close it.
        events::wait_until(|| port.status().map_or(true, |found| found.state != status::INTERDOMAIN))?;
    }
    port.close()?;
    Ok(())
    // ANCHOR_END: close
}
