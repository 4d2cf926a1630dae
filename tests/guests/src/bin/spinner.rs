//! Conformance: fairness among hostile domains and the slice length (SPEC.md §20.1). Each
//! copy keeps events masked, never yields or blocks, and spins while system time runs from
//! `from_ms=<ms>` to `until_ms=<ms>` = `from_ms` + 2000 after the hypervisor booted; it
//! waits for `from_ms` by spinning too. `from_ms` defaults to 1500 under TCG and 12000
//! under KVM, where on a PVM host each new domain's first run costs about a second of
//! first-touch faults (8 domains have all started after about 9 s). A copy that starts
//! after `from_ms` (a very slow boot) says so and fails rather than report a short count.
//!
//! In the window it counts the turns the scheduler gives it and measures each whole run
//! in system time (events_support::Turns): what the hypervisor decides, not how much work
//! the host let the emulator do (loop iterations are printed too, for information). The
//! runner compares the turn counts across copies (round robin: equal within one or two).
//! With `slice_ms=<ms>` the copy also judges its runs against that slice: the median run
//! at least 90 % of it and at most the slice plus `median_us=<µs>` (default 5 ms under
//! KVM, 10 ms under TCG), the longest at most the slice plus `tolerance_us=<µs>` (50 ms and
//! 100 ms) — a run ends with the slice's timer interrupt, as late as timer::deadline
//! allows a timer to be.
#![cfg_attr(target_os = "none", no_std, no_main)]

mod events_support;

use conformance_guests::argument;
use events_support::{Accel, Micros, Turns};
use guest_rt::abi::StartInfo;
use guest_rt::println;
use guest_rt::test::Reporter;
use guest_rt::time;

guest_rt::entry!(spinner);

const MILLISECOND: u64 = 1_000_000;
const MICROSECOND: u64 = 1_000;

fn spinner(start: &'static StartInfo) -> u32 {
    let mut reporter = Reporter::new();
    let accel = Accel::detect();
    let from_ms = argument(start, "from_ms").unwrap_or(accel.pick(12_000, 1_500));
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
    let mut turns = Turns::new();
    let mut iterations = 0u64;
    while turns.read().0 < until {
        iterations += 1;
    }
    let (whole, median, longest) = turns.runs();
    println!(
        "spinner: {} turns, {iterations} iterations in the window; {whole} whole runs, median {}, longest {}",
        turns.count,
        Micros(median),
        Micros(longest)
    );
    if let Some(slice_ms) = argument(start, "slice_ms") {
        let slice = slice_ms * MILLISECOND;
        let median_tolerance = argument(start, "median_us").unwrap_or(accel.pick(5_000, 10_000)) * MICROSECOND;
        let single_tolerance = argument(start, "tolerance_us").unwrap_or(accel.pick(50_000, 100_000)) * MICROSECOND;
        reporter.check(whole >= 2, format_args!("{whole} whole runs in the window (at least 2 to judge)"));
        reporter.check(
            median >= slice / 10 * 9 && median <= slice + median_tolerance,
            format_args!(
                "median run {} is within 90 % of the {slice_ms} ms slice .. the slice + {}",
                Micros(median),
                Micros(median_tolerance)
            ),
        );
        reporter.check(
            longest <= slice + single_tolerance,
            format_args!(
                "longest run {} is within the {slice_ms} ms slice + {}",
                Micros(longest),
                Micros(single_tolerance)
            ),
        );
    }
    reporter.finish()
}
