//! Helpers shared by the issue-3 bench guests (`bench_user_syscall`, `bench_page_fault`,
//! `bench_map_batch`, `bench_exception`), included with `#[path]`: the iteration count
//! from the arguments, the one-line report `cargo xtask bench` parses, and page-aligned
//! heap memory together with its gfns.
#![allow(dead_code)]

extern crate alloc;

use alloc::collections::TryReserveError;
use core::alloc::Layout;

use guest_rt::abi::layout::PAGE_SIZE;
use guest_rt::abi::StartInfo;
use guest_rt::memory::FreeRegion;
use guest_rt::println;
use guest_rt::test::Reporter;
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
    conformance_guests::words(start)
        .find_map(|word| word.strip_prefix("iterations="))
        .and_then(conformance_guests::parse_number)
        .filter(|&count| count >= 1)
        .map_or(DEFAULT_ITERATIONS, |count| count as usize)
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
