//! Time-stamp counter helpers for benchmarks: a serialized `rdtsc` and a `bench` helper
//! that reports the median and 99th percentile of per-iteration cycle counts.

extern crate alloc;

use alloc::collections::TryReserveError;
use alloc::vec::Vec;
#[cfg(target_arch = "x86_64")]
use core::sync::atomic::{compiler_fence, Ordering};

/// Reads the TSC after all earlier instructions completed (`lfence; rdtsc`), so the read
/// is not hoisted above the work being measured.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub fn rdtsc_serialized() -> u64 {
    // `lfence` stays asm: `_mm_lfence` needs SSE2, which this soft-float target leaves
    // off, so it would be an out-of-line call. Without `nomem` the asm is also a compiler
    // barrier: the measured code's memory accesses stay on their side of it.
    // SAFETY: `lfence` is unprivileged, writes no register and leaves the flags alone.
    unsafe { core::arch::asm!("lfence", options(nostack, preserves_flags)) };
    // SAFETY: `rdtsc` is unprivileged (the hypervisor does not set CR4.TSD).
    let tsc = unsafe { core::arch::x86_64::_rdtsc() };
    // The intrinsic touches no memory the compiler knows of, so it could drift past the
    // measured code's later accesses; the fence keeps them after the read.
    compiler_fence(Ordering::SeqCst);
    tsc
}

/// Summary of one benchmark, in cycles.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Fastest iteration.
    pub min: u64,
    /// 50th percentile (nearest rank: the lower middle for an even count).
    pub median: u64,
    /// 99th percentile (nearest rank).
    pub p99: u64,
    /// Slowest iteration.
    pub max: u64,
    /// Iterations measured.
    pub iterations: usize,
}

/// The `percent`-th percentile of `sorted` by the nearest-rank method: the smallest value
/// such that at least `percent`% of the samples are no larger. `None` if empty.
pub fn percentile(sorted: &[u64], percent: u32) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let percent = u64::from(percent.min(100));
    let count = sorted.len() as u64;
    let rank = (percent * count).div_ceil(100).max(1);
    Some(sorted[(rank - 1) as usize])
}

/// Sorts `samples` and summarizes them; `None` if empty.
pub fn summarize(samples: &mut [u64]) -> Option<Summary> {
    samples.sort_unstable();
    Some(Summary {
        min: *samples.first()?,
        median: percentile(samples, 50)?,
        p99: percentile(samples, 99)?,
        max: *samples.last()?,
        iterations: samples.len(),
    })
}

/// Runs `work` `warmup` times unmeasured, then `iterations` times, each between two reads
/// of `clock`; summarizes the differences. The sample buffer comes from the heap before
/// the first iteration (an error if it cannot).
pub fn bench_with_clock(
    mut clock: impl FnMut() -> u64,
    warmup: usize,
    iterations: usize,
    mut work: impl FnMut(),
) -> Result<Option<Summary>, TryReserveError> {
    let mut samples = Vec::new();
    samples.try_reserve_exact(iterations)?;
    for _ in 0..warmup {
        work();
    }
    for _ in 0..iterations {
        let start = clock();
        work();
        let end = clock();
        samples.push(end.wrapping_sub(start));
    }
    Ok(summarize(&mut samples))
}

/// [`bench_with_clock`] with [`rdtsc_serialized`]: cycles per iteration of `work`.
#[cfg(target_arch = "x86_64")]
pub fn bench(warmup: usize, iterations: usize, work: impl FnMut()) -> Result<Option<Summary>, TryReserveError> {
    bench_with_clock(rdtsc_serialized, warmup, iterations, work)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec;

    #[test]
    fn nearest_rank_percentiles() {
        let sorted: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&sorted, 50), Some(50));
        assert_eq!(percentile(&sorted, 99), Some(99));
        assert_eq!(percentile(&sorted, 100), Some(100));
        assert_eq!(percentile(&sorted, 0), Some(1));
        assert_eq!(percentile(&[7], 99), Some(7));
        assert_eq!(percentile(&[1, 2, 3, 4], 50), Some(2));
        assert_eq!(percentile(&[1, 2, 3], 50), Some(2));
        assert_eq!(percentile(&[], 50), None);
        let thousand: Vec<u64> = (0..1000).collect();
        assert_eq!(percentile(&thousand, 99), Some(989));
    }

    #[test]
    fn summary_sorts_first() {
        let mut samples = vec![5, 1, 4, 2, 3];
        let summary = summarize(&mut samples).unwrap();
        assert_eq!(summary, Summary { min: 1, median: 3, p99: 5, max: 5, iterations: 5 });
        assert_eq!(summarize(&mut []), None);
    }

    #[test]
    fn bench_measures_only_the_measured_iterations() {
        let mut now = 0u64;
        let mut calls = 0usize;
        let work_cost = core::cell::Cell::new(0u64);
        let summary = bench_with_clock(
            || {
                now += work_cost.get();
                work_cost.set(0);
                now
            },
            10,
            200,
            || {
                calls += 1;
                // Iteration k (counting warm-up) costs k cycles; one outlier.
                work_cost.set(if calls == 150 { 1_000_000 } else { calls as u64 });
            },
        )
        .unwrap()
        .unwrap();
        assert_eq!(calls, 210);
        assert_eq!(summary.iterations, 200);
        assert_eq!(summary.min, 11);
        assert_eq!(summary.max, 1_000_000);
        assert_eq!(summary.median, 110);
        assert_eq!(summary.p99, 209);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn rdtsc_moves_forward() {
        let first = rdtsc_serialized();
        let second = rdtsc_serialized();
        assert!(second >= first);
    }
}
