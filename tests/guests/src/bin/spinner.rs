//! Conformance: fairness among hostile domains and the slice length (SPEC.md §20.1). Each
//! copy keeps events masked, never yields or blocks, and spins while system time runs from
//! `from_ms=<ms>` to `until_ms=<ms>` = `from_ms` + 2000 after the hypervisor booted; it
//! waits for `from_ms` by spinning too. `from_ms` defaults to 1500 under TCG and 12000
//! under KVM, where on a PVM host each new domain's first run costs about a second of
//! first-touch faults (8 domains have all started after about 9 s). A copy that starts
//! after `from_ms` (a very slow boot) says so and fails rather than report a short count.
//!
//! In the window it counts the turns the scheduler gives it and measures rounds and runs
//! in system time (events_support::Turns): what the hypervisor decides, not how much work
//! the host let the emulator do (loop iterations are printed too, for information). The
//! runner compares the turn counts across copies (round robin: equal within one or two).
//! With `slice_ms=<ms>` and `spinners=<n>` (the copies running) the copy also judges its
//! turns against that slice (SPEC.md §20.1):
//!
//! * the median round is at least `n` slices (99 %: each turn lasts a full slice; no
//!   preemption comes early) — a hypervisor that ignored `slice=` for a shorter slice fails
//!   this on any host;
//! * the longest run is at most the slice plus `tolerance_us=<µs>` (default 50 ms under
//!   KVM, 100 ms under TCG, timer::deadline's bound for a single timer: a turn ends with
//!   the slice's timer interrupt) — a hypervisor that let a spinner keep the CPU fails.
//!
//! How much longer than the slice a turn lasts is how late the host delivers the interrupt
//! (a loaded host deschedules the emulator for tens of milliseconds): not judged beyond
//! that bound.
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
    let (whole, median, longest) = turns.rounds();
    println!(
        "spinner: {} turns, {iterations} iterations in the window; {whole} whole rounds, median {}, longest run {}",
        turns.count,
        Micros(median),
        Micros(longest)
    );
    if let (Some(slice_ms), Some(spinners)) = (argument(start, "slice_ms"), argument(start, "spinners")) {
        let slice = slice_ms * MILLISECOND;
        let tolerance = argument(start, "tolerance_us").unwrap_or(accel.pick(50_000, 100_000)) * MICROSECOND;
        reporter.check(whole >= 2, format_args!("{whole} whole rounds in the window (at least 2 to judge)"));
        let shortest_round = spinners * slice / 100 * 99;
        reporter.check(
            median >= shortest_round,
            format_args!(
                "median round {} is at least {spinners} slices of {slice_ms} ms (99 %: {})",
                Micros(median),
                Micros(shortest_round)
            ),
        );
        reporter.check(
            longest <= slice + tolerance,
            format_args!("longest run {} is within the {slice_ms} ms slice + {}", Micros(longest), Micros(tolerance)),
        );
    }
    reporter.finish()
}
