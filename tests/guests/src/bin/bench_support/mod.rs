//! Helpers shared by the bench guests (`bench_user_syscall`, `bench_page_fault`,
//! `bench_map_batch`, `bench_exception`, and the issue-4 ones: `bench_event_channel`,
//! `bench_time`, `bench_domain_switch`, `bench_timer`), included with `#[path]`: the
//! iteration count and the peer from the arguments, the one-line report `cargo xtask bench`
//! parses, page-aligned heap memory together with its gfns, and system-time nanoseconds
//! in TSC cycles.
#![allow(dead_code)]

extern crate alloc;

use alloc::collections::TryReserveError;
use core::alloc::Layout;

use guest_rt::abi::layout::PAGE_SIZE;
use guest_rt::abi::StartInfo;
use guest_rt::memory::FreeRegion;
use guest_rt::println;
use guest_rt::test::Reporter;
use guest_rt::time::TimeInfo;
use guest_rt::tsc::Summary;

/// Measured iterations when no `iterations=<n>` argument is given (the KVM default of
/// `cargo xtask bench`: every trap is ~0.7 ms on a PVM host).
pub const DEFAULT_ITERATIONS: usize = 2_000;

/// Unmeasured iterations before `iterations` measured ones: a tenth of them, at least 1
/// and at most 100 — enough to fault in the code, the page tables and the hypervisor's
/// paths, and no more than a tenth of the run's time on a PVM host, where one map-batch
/// iteration takes a large fraction of a second.
pub fn warmup(iterations: usize) -> usize {
    (iterations / 10).clamp(1, 100)
}

/// The `iterations=<n>` argument (n >= 1), else [`DEFAULT_ITERATIONS`].
pub fn iterations(start: &StartInfo) -> usize {
    conformance_guests::argument(start, "iterations")
        .filter(|&count| count >= 1)
        .map_or(DEFAULT_ITERATIONS, |count| count as usize)
}

/// The `peer=<domain id>` argument `cargo xtask bench` gives each domain of a pair.
pub fn peer(start: &StartInfo) -> Option<u64> {
    conformance_guests::argument(start, "peer")
}

/// Prints `bench <name> median <c> p99 <c> iterations <n>` (the line `cargo xtask bench`
/// reads) and a second line with the extremes, or records why there is none.
pub fn report(reporter: &mut Reporter, name: &str, result: Result<Option<Summary>, TryReserveError>) {
    match result {
        Ok(Some(summary)) => {
            println!("bench {name} median {} p99 {} iterations {}", summary.median, summary.p99, summary.iterations);
            println!("bench: {name} min {} max {}", summary.min, summary.max);
        }
        Ok(None) => reporter.error("no iterations measured"),
        Err(_) => reporter.error(format_args!("no heap for the {name} samples: give the domain more memory")),
    }
}

/// `pages` zeroed, page-aligned, contiguous pages from the heap (never freed), and the
/// gfn of the first: the heap is the free region, whose gfns are contiguous, so page `i`
/// is gfn `gfn + i`. `None` if the heap cannot give them.
pub fn heap_pages(start: &StartInfo, pages: u64) -> Option<(u64, u64)> {
    let layout = Layout::from_size_align((pages * PAGE_SIZE) as usize, PAGE_SIZE as usize).ok()?;
    // SAFETY: a non-zero-size layout (callers ask for at least one page).
    let address = unsafe { alloc::alloc::alloc_zeroed(layout) } as u64;
    if address == 0 {
        return None;
    }
    let gfn = FreeRegion::of(start).gfn_of(address)?;
    Some((address, gfn))
}

/// `nanoseconds` of system time in TSC cycles, by inverting the time info's scaling
/// (SPEC.md §19.2: ns = ((cycles << shift) * mul) >> 32), so a lateness measured with
/// `time::now()` is in the unit of every other row. Rounded down; 0 if `mul` is 0.
pub fn cycles_of_nanoseconds(nanoseconds: u64, info: &TimeInfo) -> u64 {
    if info.mul == 0 {
        return 0;
    }
    let scaled = (u128::from(nanoseconds) << 32) / u128::from(info.mul);
    let cycles =
        if info.shift >= 0 { scaled >> info.shift.unsigned_abs() } else { scaled << info.shift.unsigned_abs() };
    u64::try_from(cycles).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(mul: u32, shift: i8) -> TimeInfo {
        TimeInfo { version: 2, tsc_timestamp: 0, system_time: 0, mul, shift }
    }

    #[test]
    fn nanoseconds_become_cycles() {
        // 2 GHz: 0.5 ns per cycle (mul 2^31, shift 0), so 1 µs is 2000 cycles.
        assert_eq!(cycles_of_nanoseconds(1_000, &info(1 << 31, 0)), 2_000);
        // 1 GHz as mul 2^31, shift 1; 4 GHz as mul 2^31, shift -1.
        assert_eq!(cycles_of_nanoseconds(1_000, &info(1 << 31, 1)), 1_000);
        assert_eq!(cycles_of_nanoseconds(1_000, &info(1 << 31, -1)), 4_000);
        // The inverse of the forward scaling, to within the 2.9 cycles of the nanosecond the
        // forward scaling rounds away.
        let (mul, shift) = (((1u128 << 32) * 10 / 29) as u32, 0); // 2.9 GHz
        let nanoseconds = guest_rt::time::scale_delta(2_900_000_000, mul, shift);
        assert!(cycles_of_nanoseconds(nanoseconds, &info(mul, shift)).abs_diff(2_900_000_000) <= 3);
        assert_eq!(cycles_of_nanoseconds(5, &info(0, 0)), 0);
    }
}
