//! Benchmark `map_batch`: map + touch + unmap of 512 already-populated pages. One
//! iteration is one `mmu_update` of 512 MAP entries (gfns the domain owns, from the
//! heap), one write to each page, and one `mmu_update` of 512 UNMAP entries, between two
//! serialized TSC reads. Compared with `mmap(MAP_SHARED | MAP_POPULATE)` + touch +
//! `munmap` of 512 populated memfd pages on the host.
//! Argument: `iterations=<n>` (default 2 000); prints
//! `bench map_batch median <c> p99 <c> iterations <n>`.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[path = "bench_support/mod.rs"]
mod bench_support;

use core::cell::Cell;

use guest_rt::abi::layout::PAGE_SIZE;
use guest_rt::abi::memory::map_flags;
use guest_rt::abi::{Errno, StartInfo};
use guest_rt::memory::{MapBatch, Space};
use guest_rt::test::Reporter;
use guest_rt::tsc;

guest_rt::entry!(bench_map_batch);

/// Pages per batch (the host reference maps as many).
const PAGES: u64 = 512;
/// Where the batch is mapped: lower half, far from the image, the heap and the hypervisor.
const WINDOW: u64 = 0x0000_5100_0000_0000;

fn bench_map_batch(start: &'static StartInfo) -> u32 {
    let mut reporter = Reporter::new();
    let iterations = bench_support::iterations(start);
    // The pages are populated (they are heap pages, already backed and mapped at their
    // heap addresses); the batch maps a second view of them.
    let Some((_, gfn)) = bench_support::heap_pages(start, PAGES) else {
        reporter.error(format_args!("no heap for {PAGES} pages: give the domain more memory"));
        reporter.finish()
    };
    let mut map = MapBatch::new();
    let mut unmap = MapBatch::new();
    for index in 0..PAGES {
        map.map(WINDOW + index * PAGE_SIZE, gfn + index, map_flags::WRITABLE | map_flags::NO_EXECUTE);
        unmap.unmap(WINDOW + index * PAGE_SIZE);
    }
    let failure: Cell<Option<(&str, Errno)>> = Cell::new(None);
    let result = tsc::bench(bench_support::warmup(iterations), iterations, || {
        if let Err(errno) = map.apply(Space::INITIAL).result {
            failure.set(Some(("map", errno)));
            return;
        }
        for index in 0..PAGES {
            // SAFETY: the window page was just mapped writable; no Rust reference covers it.
            unsafe { ((WINDOW + index * PAGE_SIZE) as *mut u8).write_volatile(1) };
        }
        if let Err(errno) = unmap.apply(Space::INITIAL).result {
            failure.set(Some(("unmap", errno)));
        }
    });
    if let Some((what, errno)) = failure.get() {
        // A failed batch would make every later iteration meaningless (and a failed map
        // means the touches would have faulted): no line, an error.
        reporter.error(format_args!("{what} batch failed: {errno}"));
        reporter.finish()
    }
    bench_support::report(&mut reporter, "map_batch", result);
    reporter.finish()
}
