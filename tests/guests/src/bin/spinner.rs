//! Conformance: fairness among hostile domains (SPEC.md §20.1). Each copy keeps events
//! masked, never yields or blocks, and counts loop iterations while system time runs from
//! `from_ms=<ms>` to `until_ms=<ms>` = `from_ms` + 2000 after the hypervisor booted; it
//! waits for `from_ms` by spinning too. `from_ms` defaults to 1500 under TCG and 12000
//! under KVM, where on a PVM host each new domain's first run costs about a second of
//! first-touch faults (8 domains have all started after about 9 s). All copies run the same loop, so the
//! counts are in proportion to the CPU time each got in the window; the runner compares
//! them across domains. A copy that starts after `from_ms` (a very slow boot) says so and
//! fails rather than report a short count.
#![cfg_attr(target_os = "none", no_std, no_main)]

mod events_support;

use conformance_guests::argument;
use events_support::Accel;
use guest_rt::abi::StartInfo;
use guest_rt::println;
use guest_rt::test::Reporter;
use guest_rt::time;

guest_rt::entry!(spinner);

const MILLISECOND: u64 = 1_000_000;

fn spinner(start: &'static StartInfo) -> u32 {
    let mut reporter = Reporter::new();
    let from_ms = argument(start, "from_ms").unwrap_or(Accel::detect().pick(12_000, 1_500));
    let from = from_ms * MILLISECOND;
    let until = argument(start, "until_ms").unwrap_or(from_ms + 2_000) * MILLISECOND;
    let arrived = time::now();
    if arrived >= from {
        reporter.fail(format_args!(
            "started {} ms into the run, after the window opened at {} ms",
            arrived / MILLISECOND,
            from / MILLISECOND
        ));
        reporter.finish()
    }
    while time::now() < from {
        core::hint::spin_loop();
    }
    let mut iterations = 0u64;
    let mut gaps = 0u64;
    let mut previous = time::now();
    while previous < until {
        let now = time::now();
        // A jump of over a millisecond between two reads is a slice this domain lost.
        if now - previous > MILLISECOND {
            gaps += 1;
        }
        previous = now;
        iterations += 1;
    }
    println!("spinner: {iterations} iterations in the window, {gaps} slices lost");
    reporter.finish()
}
