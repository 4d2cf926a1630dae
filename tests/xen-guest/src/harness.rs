//! The timing loop of tests/guests' bench_support: warm-up, each iteration between two
//! `lfence; rdtsc`, nearest-rank median and p99, the same report lines.

use core::fmt::Write;
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::xen;

/// Measured iterations per row without an `iterations=<n>` argument (bench_support's default).
const DEFAULT_ITERATIONS: usize = 2_000;

/// The most iterations a row may be given (the sample buffer's size).
pub const MAX_ITERATIONS: usize = 100_000;

static ITERATIONS: AtomicUsize = AtomicUsize::new(DEFAULT_ITERATIONS);

static mut SAMPLES: [u64; MAX_ITERATIONS] = [0; MAX_ITERATIONS];

/// Takes `iterations=<n>` (1 <= n <= [`MAX_ITERATIONS`]) from Xen's command line for this
/// domain, as the ringfence guests take it from theirs; false if it is there but invalid.
pub fn configure(command_line: &[u8]) -> bool {
    let text = core::str::from_utf8(command_line.split(|&byte| byte == 0).next().unwrap_or(&[])).unwrap_or("");
    for word in text.split_ascii_whitespace() {
        if let Some(value) = word.strip_prefix("iterations=") {
            match value.parse::<usize>() {
                Ok(count) if (1..=MAX_ITERATIONS).contains(&count) => ITERATIONS.store(count, Ordering::Relaxed),
                _ => return false,
            }
        }
    }
    true
}

/// Measured iterations per row.
pub fn iterations() -> usize {
    ITERATIONS.load(Ordering::Relaxed)
}

/// bench_support's warm-up: a tenth, at least 1, at most 100.
pub fn warmup() -> usize {
    (iterations() / 10).clamp(1, 100)
}

/// The sample buffer, [`iterations`] long.
pub fn samples() -> &'static mut [u64] {
    // SAFETY: one vCPU and no handler touches SAMPLES: one user at a time, each row's
    // use ending before the next row starts.
    let all = unsafe { &mut *core::ptr::addr_of_mut!(SAMPLES) };
    &mut all[..iterations()]
}

/// Reads the TSC after all earlier instructions completed, like guest-rt's `rdtsc_serialized`.
#[inline(always)]
pub fn rdtsc_serialized() -> u64 {
    // SAFETY: `lfence` and `rdtsc` are unprivileged (Xen leaves CR4.TSD clear for PV guests).
    unsafe {
        core::arch::asm!("lfence", options(nostack, preserves_flags));
        core::arch::x86_64::_rdtsc()
    }
}

/// Median, p99 (nearest rank), min and max of one row, in cycles.
pub struct Summary {
    pub median: u64,
    pub p99: u64,
    pub min: u64,
    pub max: u64,
    pub iterations: usize,
}

fn rank(sorted: &[u64], percent: usize) -> u64 {
    let index = (percent * sorted.len()).div_ceil(100).max(1) - 1;
    sorted[index]
}

/// Sorts `samples` (at least one) and summarizes them.
pub fn summarize(samples: &mut [u64]) -> Summary {
    samples.sort_unstable();
    Summary {
        median: rank(samples, 50),
        p99: rank(samples, 99),
        min: samples[0],
        max: samples[samples.len() - 1],
        iterations: samples.len(),
    }
}

/// [`warmup`] unmeasured runs of `work`, then [`iterations`] timed ones.
pub fn bench(mut work: impl FnMut()) -> Summary {
    for _ in 0..warmup() {
        work();
    }
    let samples = samples();
    for sample in samples.iter_mut() {
        let start = rdtsc_serialized();
        work();
        let end = rdtsc_serialized();
        *sample = end.wrapping_sub(start);
    }
    summarize(samples)
}

/// The `bench <name> median <c> p99 <c> iterations <n>` line and the extremes.
pub fn report(name: &str, summary: &Summary) {
    let _ = writeln!(
        xen::Console,
        "bench {name} median {} p99 {} iterations {}",
        summary.median,
        summary.p99,
        summary.iterations
    );
    let _ = writeln!(xen::Console, "bench: {name} min {} max {}", summary.min, summary.max);
}

/// A row that could not be measured: no bench line, an error line instead.
pub fn error(name: &str, what: core::fmt::Arguments) {
    let _ = writeln!(xen::Console, "xen-guest: error: {name}: {what}");
}
