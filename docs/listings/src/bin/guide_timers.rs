//! Guide chapter 4: time and timers. System time is read from the shared-info page without
//! a hypercall; a one-shot timer wakes a blocked domain.
#![cfg_attr(target_os = "none", no_std, no_main)]

use guest_rt::abi::{Errno, StartInfo};
use guest_rt::events;
use guest_rt::println;
use guest_rt::time;

guest_rt::entry!(timers);

const MILLISECOND: u64 = 1_000_000;

fn timers(_start: &'static StartInfo) -> u32 {
    match run() {
        Ok(()) => 0,
        Err(errno) => {
            println!("timers: {errno:?}");
            1
        }
    }
}

fn run() -> Result<(), Errno> {
    // ANCHOR: now
    let first = time::now();
    let second = time::now();
    println!("system time {first} ns, then {second} ns: monotonic {}", second >= first);
    println!("wallclock: {} UTC", time::wallclock().date());
    // ANCHOR_END: now

    // ANCHOR: block
    events::init()?;
    let port = time::timer_port()?; // binds VIRQ_TIMER, with guest-rt's counting handler
    println!("VIRQ_TIMER on port {}", port.number());
    let deadline = time::now() + 20 * MILLISECOND;
    time::set_timer(deadline)?;
    // Sleep until the handler has counted one firing; `wait_until` checks with events
    // off, so the wake-up cannot slip in between the check and the block.
    events::wait_until(|| time::timer_firings().0 >= 1)?;
    let (firings, fired_at) = time::timer_firings();
    println!("timer fired {firings} time(s), not early: {}", fired_at >= deadline);
    // ANCHOR_END: block

    // ANCHOR: sleep
    for milliseconds in [1, 5, 10] {
        let before = time::now();
        time::sleep(milliseconds * MILLISECOND)?;
        let slept = time::now() - before;
        println!("sleep({milliseconds} ms) slept at least that long: {}", slept >= milliseconds * MILLISECOND);
    }
    // ANCHOR_END: sleep

    // ANCHOR: cancel
    let (before, _) = time::timer_firings();
    let deadline = time::now() + 5 * MILLISECOND;
    time::set_timer(deadline)?;
    time::cancel_timer()?;
    // Stay awake past the cancelled deadline (yielding, not blocking: nothing would wake us).
    while time::now() < deadline + 20 * MILLISECOND {
        guest_rt::hypercall::yield_now()?;
    }
    println!("a cancelled timer never fires: {} new firings", time::timer_firings().0 - before);
    Ok(())
    // ANCHOR_END: cancel
}
