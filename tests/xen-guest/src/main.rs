//! The hypervisor rows of `cargo xtask bench`, measured on Xen: a 64-bit PV guest booted as
//! dom0 by Debian's Xen under the same QEMU. Same method as tests/guests' bench_support
//! (warm-up of a tenth, each iteration between two `lfence; rdtsc`, nearest-rank median
//! and p99), same `bench <name> median <c> p99 <c> iterations <n>` lines, on Xen's console.
#![no_std]
#![no_main]

mod xen;

use core::fmt::Write;

/// Measured iterations per row (bench_support's default).
const ITERATIONS: usize = 2_000;

/// bench_support's warm-up: a tenth, at least 1, at most 100.
const WARMUP: usize = 100;

static mut SAMPLES: [u64; ITERATIONS] = [0; ITERATIONS];

/// Reads the TSC after all earlier instructions completed, like guest-rt's `rdtsc_serialized`.
#[inline(always)]
fn rdtsc_serialized() -> u64 {
    // SAFETY: `lfence` and `rdtsc` are unprivileged (Xen leaves CR4.TSD clear for PV guests).
    unsafe {
        core::arch::asm!("lfence", options(nostack, preserves_flags));
        core::arch::x86_64::_rdtsc()
    }
}

/// Median, p99 (nearest rank), min and max of one row, in cycles.
struct Summary {
    median: u64,
    p99: u64,
    min: u64,
    max: u64,
}

fn rank(sorted: &[u64], percent: usize) -> u64 {
    let index = (percent * sorted.len()).div_ceil(100).max(1) - 1;
    sorted[index]
}

fn bench(mut work: impl FnMut()) -> Summary {
    for _ in 0..WARMUP {
        work();
    }
    // SAFETY: one vCPU, no interrupts delivered to this guest: nothing else touches SAMPLES.
    let samples = unsafe { &mut *core::ptr::addr_of_mut!(SAMPLES) };
    for sample in samples.iter_mut() {
        let start = rdtsc_serialized();
        work();
        let end = rdtsc_serialized();
        *sample = end.wrapping_sub(start);
    }
    samples.sort_unstable();
    Summary { median: rank(samples, 50), p99: rank(samples, 99), min: samples[0], max: samples[ITERATIONS - 1] }
}

fn report(name: &str, summary: &Summary) {
    let _ =
        writeln!(xen::Console, "bench {name} median {} p99 {} iterations {ITERATIONS}", summary.median, summary.p99);
    let _ = writeln!(xen::Console, "bench: {name} min {} max {}", summary.min, summary.max);
}

/// Called by the entry stub with Xen's start_info.
#[no_mangle]
extern "C" fn xen_main(start: *const xen::StartInfo) -> ! {
    let _ = writeln!(xen::Console, "xen-guest: the ringfence bench rows on Xen");
    // SAFETY: Xen hands a PV guest a mapped start_info page in RSI.
    let start = unsafe { &*start };
    let time = xen::TimeInfo::map(start.shared_info);

    let null = bench(|| {
        core::hint::black_box(xen::version());
    });
    report("null_hypercall", &null);

    let first = time.now();
    let now = bench(|| {
        core::hint::black_box(time.now());
    });
    if time.now() <= first {
        let _ = writeln!(xen::Console, "xen-guest: error: system time did not advance");
    }
    report("time_now", &now);
    let floor = bench(|| {});
    let bare = bench(|| {
        core::hint::black_box(rdtsc_serialized());
    });
    let _ = writeln!(
        xen::Console,
        "bench: time_now harness floor median {} min {}; with one bare TSC read median {} min {}",
        floor.median,
        floor.min,
        bare.median,
        bare.min
    );
    let _ = writeln!(xen::Console, "xen-guest: done");
    xen::power_off()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    let _ = writeln!(xen::Console, "xen-guest: panic: {info}");
    xen::power_off()
}
