//! Benchmark `time_now`: `guest_rt::time::now()` — the seqlocked read of the vCPU time info
//! in the shared-info page, `rdtsc` and the scaling (SPEC.md §19.2), no hypercall —
//! between two serialized TSC reads. Compared with `clock_gettime(CLOCK_MONOTONIC)` on
//! the host, which does the same in the vDSO. Argument: `iterations=<n>`; prints
//! `bench time_now median <c> p99 <c> iterations <n>`.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[path = "bench_support/mod.rs"]
mod bench_support;

use guest_rt::abi::StartInfo;
use guest_rt::println;
use guest_rt::test::Reporter;
use guest_rt::{time, tsc};

guest_rt::entry!(bench_time);

fn bench_time(start: &'static StartInfo) -> u32 {
    let mut reporter = Reporter::new();
    let iterations = bench_support::iterations(start);
    let first = time::now();
    // black_box: the reading must happen, every time, although nothing uses it.
    let result = tsc::bench(bench_support::warmup(iterations), iterations, || {
        core::hint::black_box(time::now());
    });
    reporter.check(time::now() > first, "system time advanced during the benchmark");
    bench_support::report(&mut reporter, "time_now", result);
    let floor = tsc::bench(bench_support::warmup(iterations), iterations, || {});
    let bare = tsc::bench(bench_support::warmup(iterations), iterations, || {
        core::hint::black_box(tsc::rdtsc_serialized());
    });
    match (floor, bare) {
        (Ok(Some(floor)), Ok(Some(bare))) => println!(
            "bench: time_now harness floor median {} min {}; with one bare TSC read median {} min {}",
            floor.median, floor.min, bare.median, bare.min
        ),
        (Ok(_), Ok(_)) => reporter.error("no harness-floor iterations measured"),
        _ => reporter.error("no heap for the harness-floor samples: give the domain more memory"),
    }
    reporter.finish()
}
