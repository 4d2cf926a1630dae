//! Benchmark: the null hypercall. `version(ABI_VERSION)` between two serialized TSC
//! reads, 1 000 warm-up calls, 100 000 measured (the floor: every
//! extra call is ~0.7 ms on a PVM host); prints
//! `bench null_hypercall median <c> p99 <c> iterations <n>`.
#![cfg_attr(target_os = "none", no_std, no_main)]

use guest_rt::abi::StartInfo;
use guest_rt::hypercall::HYPERVISOR;
use guest_rt::println;
use guest_rt::test::Reporter;
use guest_rt::tsc;

guest_rt::entry!(bench);

const WARMUP: usize = 1_000;
const ITERATIONS: usize = 100_000;

fn bench(_start: &'static StartInfo) -> u32 {
    let mut reporter = Reporter::new();
    let mut failures = 0u32;
    match tsc::bench(WARMUP, ITERATIONS, || {
        if HYPERVISOR.version().is_err() {
            failures += 1;
        }
    }) {
        Ok(Some(summary)) => {
            println!(
                "bench null_hypercall median {} p99 {} iterations {}",
                summary.median, summary.p99, summary.iterations
            );
            println!("bench: null_hypercall min {} max {}", summary.min, summary.max);
        }
        Ok(None) => reporter.error("no iterations measured"),
        Err(_) => reporter.error(format_args!("no heap for {ITERATIONS} samples: give the domain more memory")),
    }
    reporter.expect_eq(failures, 0, "version() failed during the benchmark");
    reporter.finish()
}
