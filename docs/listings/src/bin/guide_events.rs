//! Guide chapter 3: events. An IPI port signals this domain itself; a handler counts what
//! arrives; masking holds an event back until it is unmasked.
#![cfg_attr(target_os = "none", no_std, no_main)]

use core::sync::atomic::{AtomicU32, Ordering};

use guest_rt::abi::{Errno, StartInfo};
use guest_rt::events::{self, Port};
use guest_rt::println;

guest_rt::entry!(events_main);

// ANCHOR: handler
static RECEIVED: AtomicU32 = AtomicU32::new(0);

/// Runs in the upcall, with events off, once per pending event on the port.
fn on_event(port: Port) {
    RECEIVED.fetch_add(1, Ordering::Relaxed);
    println!("  handler: event on port {}", port.number());
}
// ANCHOR_END: handler

fn events_main(_start: &'static StartInfo) -> u32 {
    match run() {
        Ok(()) => 0,
        Err(errno) => {
            println!("events: {errno:?}");
            1
        }
    }
}

fn run() -> Result<(), Errno> {
    // ANCHOR: setup
    events::init()?; // set_callbacks: where upcalls enter
    let port = Port::bind_ipi()?;
    events::set_handler(port, on_event);
    println!("bound an IPI port: {}", port.number());
    // ANCHOR_END: setup

    // ANCHOR: off
    port.send()?;
    println!("sent with events off: pending {}, received {}", port.is_pending(), RECEIVED.load(Ordering::Relaxed));
    events::irq_enable(); // a plain store; the pending event is delivered now
    println!("after irq_enable: pending {}, received {}", port.is_pending(), RECEIVED.load(Ordering::Relaxed));
    // ANCHOR_END: off

    // ANCHOR: mask
    port.mask();
    port.send()?;
    println!("sent while masked: pending {}, received {}", port.is_pending(), RECEIVED.load(Ordering::Relaxed));
    port.unmask()?; // a hypercall: the hypervisor raises what the mask held back
    println!("after unmask: received {}", RECEIVED.load(Ordering::Relaxed));
    // ANCHOR_END: mask

    // ANCHOR: close
    port.close()?;
    println!(
        "closed; {} events were delivered, {} without a handler",
        RECEIVED.load(Ordering::Relaxed),
        events::stats().unhandled
    );
    Ok(())
    // ANCHOR_END: close
}
