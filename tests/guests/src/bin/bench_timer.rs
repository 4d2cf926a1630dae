//! Benchmark `timer`: how late a one-shot timer wakes a blocked domain. Each iteration
//! reads the system time, sets the timer a little ahead (`ahead_us=<µs>`; default 1 ms
//! under TCG, 5 ms under KVM, where the `set_timer_op` and `BLOCK` hypercalls before the
//! sleep take ~1 ms each on a PVM host) and waits for the deadline with `BLOCK`
//! (VIRQ_TIMER bound, events on: `set_timer` + `events::wait_until`, what
//! `time::sleep_until` does); after the wake-up, the VIRQ_TIMER upcall and the `iret`, it
//! reads the system time again. The sample is the time past the deadline, in TSC cycles
//! (converted with the time info's own scale factor). Compared with how late
//! `clock_nanosleep(TIMER_ABSTIME)` returns on the host. Argument: `iterations=<n>`;
//! prints `bench timer median <c> p99 <c> iterations <n>` (cycles late).
//!
//! An iteration whose deadline had already passed when `set_timer_op` returned never
//! blocks, so it says nothing about waking up: it is left out of the samples and counted,
//! and more than a tenth of those is an error (`ahead_us` too small for this host).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[path = "bench_support/mod.rs"]
mod bench_support;
#[path = "events_support/mod.rs"]
mod events_support;

extern crate alloc;

use alloc::vec::Vec;

use conformance_guests::argument;
use conformance_guests::Accel;
use events_support::Micros;
use guest_rt::abi::StartInfo;
use guest_rt::events;
use guest_rt::println;
use guest_rt::test::Reporter;
use guest_rt::{time, tsc};

guest_rt::entry!(bench_timer);

const MICROSECOND: u64 = 1_000;

fn bench_timer(start: &'static StartInfo) -> u32 {
    let mut reporter = Reporter::new();
    let iterations = bench_support::iterations(start);
    let warmup = bench_support::warmup(iterations);
    let accel = Accel::detect();
    let ahead = argument(start, "ahead_us").unwrap_or(accel.pick(5_000, 1_000)) * MICROSECOND;
    if !events_support::init(&mut reporter) || reporter.expect_ok(time::timer_port(), "bind VIRQ_TIMER").is_none() {
        reporter.finish()
    }
    events::irq_enable();
    let mut samples = Vec::new();
    if samples.try_reserve_exact(iterations).is_err() {
        reporter.error("no heap for the samples: give the domain more memory");
        reporter.finish()
    }
    let mut early = 0u64;
    let mut armed_late = 0usize;
    let mut worst_ns = 0u64;
    for round in 0..warmup + iterations {
        let (fired, _) = time::timer_firings();
        let deadline = time::now() + ahead;
        if reporter.expect_ok(time::set_timer(deadline), "set_timer").is_none() {
            reporter.finish()
        }
        let passed = time::now() >= deadline;
        // Ends when the VIRQ_TIMER upcall (guest-rt's counting handler) has run: a timer
        // that fired early then shows below instead of leaving the domain asleep for good.
        let waited = events::wait_until(|| time::timer_firings().0 != fired || time::now() >= deadline);
        if reporter.expect_ok(waited, "BLOCK until the timer fires").is_none() {
            reporter.finish()
        }
        let (info, now_tsc) = time::read_time(events::shared_info());
        let woke = info.system_time_at(now_tsc);
        if woke < deadline {
            early += 1;
            continue;
        }
        if passed {
            armed_late += 1;
            continue;
        }
        if round >= warmup {
            worst_ns = worst_ns.max(woke - deadline);
            samples.push(bench_support::cycles_of_nanoseconds(woke - deadline, &info));
        }
    }
    reporter.expect_eq(early, 0, "timers that fired before their deadline");
    reporter.check(
        armed_late <= (warmup + iterations) / 10,
        format_args!("{armed_late} deadlines passed before the domain could block: ahead_us too small"),
    );
    println!(
        "bench: timer: {} ahead ({}), worst {} late, {armed_late} deadlines passed before blocking (left out)",
        Micros(ahead),
        accel.name(),
        Micros(worst_ns)
    );
    bench_support::report(&mut reporter, "timer", Ok(tsc::summarize(&mut samples)));
    reporter.finish()
}
