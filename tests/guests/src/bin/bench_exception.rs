//! Benchmark `exception_bounce`: `int3` in guest-kernel mode → the hypervisor bounces
//! #BP to guest-rt's trap entry → the Rust handler (which does nothing) → the `iret`
//! hypercall → the instruction after the `int3`. One iteration is that round trip
//! between two serialized TSC reads; compared with SIGTRAP delivery on the host.
//! Argument: `iterations=<n>` (default 2 000); prints
//! `bench exception_bounce median <c> p99 <c> iterations <n>`.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[path = "bench_support/mod.rs"]
mod bench_support;

use core::sync::atomic::{AtomicU64, Ordering};

use guest_rt::abi::trap::vector;
use guest_rt::abi::StartInfo;
use guest_rt::test::Reporter;
use guest_rt::trap::{self, TrapAction, TrapContext};
use guest_rt::tsc;

guest_rt::entry!(bench_exception);

static BREAKPOINTS: AtomicU64 = AtomicU64::new(0);

fn on_breakpoint(_context: &mut TrapContext) -> TrapAction {
    // int3 is a trap: the frame's rip is already after the instruction.
    BREAKPOINTS.fetch_add(1, Ordering::Relaxed);
    TrapAction::Resume
}

fn breakpoint() {
    #[cfg(target_os = "none")]
    // SAFETY: #BP has a handler that resumes after the int3 with every register intact.
    unsafe {
        core::arch::asm!("int3")
    };
}

fn bench_exception(start: &'static StartInfo) -> u32 {
    let mut reporter = Reporter::new();
    let iterations = bench_support::iterations(start);
    if reporter.expect_ok(trap::install(), "install the trap entry").is_none()
        || reporter.expect_ok(trap::set_handler(vector::BREAKPOINT, on_breakpoint), "#BP handler").is_none()
    {
        reporter.finish()
    }
    let result = tsc::bench(bench_support::warmup(iterations), iterations, breakpoint);
    bench_support::report(&mut reporter, "exception_bounce", result);
    reporter.expect_eq(
        BREAKPOINTS.load(Ordering::Relaxed),
        (bench_support::warmup(iterations) + iterations) as u64,
        "every int3 reached the handler once",
    );
    reporter.finish()
}
