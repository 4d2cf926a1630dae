//! Benchmark `page_fault`: a demand fault. One iteration is a write to an unmapped page
//! of a window in guest-kernel mode → #PF bounced to guest-rt's trap entry → the handler
//! maps the page's gfn with one `mmu_update`, zeroes the page → `iret` → the write
//! completes; all of it between two serialized TSC reads. The window's pages are then
//! unmapped with one batched `mmu_update` per round, outside the timed region. Compared
//! with a host minor fault on fresh anonymous memory (which the kernel zeroes too).
//! Argument: `iterations=<n>` (default 2 000); prints
//! `bench page_fault median <c> p99 <c> iterations <n>`.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[path = "bench_support/mod.rs"]
mod bench_support;

extern crate alloc;

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use guest_rt::abi::layout::PAGE_SIZE;
use guest_rt::abi::memory::map_flags;
use guest_rt::abi::trap::{page_fault, vector};
use guest_rt::abi::StartInfo;
use guest_rt::memory::{self, MapBatch, Space};
use guest_rt::println;
use guest_rt::test::Reporter;
use guest_rt::trap::{self, TrapAction, TrapContext};
use guest_rt::tsc;

guest_rt::entry!(bench_page_fault);

/// Where the demand-faulted window lives: lower half, far from the image, the heap and
/// the hypervisor.
const WINDOW: u64 = 0x0000_5000_0000_0000;
/// Pages faulted in per round; a round's worth of frames comes from the heap.
const WINDOW_PAGES: u64 = 256;

/// gfn backing window page 0 (window page i is gfn + i); set before the first fault.
static POOL_GFN: AtomicU64 = AtomicU64::new(0);
/// Faults the handler could not resolve (it then ends the domain, so this stays 0 in a
/// report that gets printed; kept for the check).
static FAULTS: AtomicU64 = AtomicU64::new(0);

fn on_page_fault(context: &mut TrapContext) -> TrapAction {
    let address = context.fault_address();
    let page = address & !(PAGE_SIZE - 1);
    let index = page.wrapping_sub(WINDOW) / PAGE_SIZE;
    if address < WINDOW || index >= WINDOW_PAGES || context.error_code() & page_fault::PRESENT != 0 {
        println!("bench page_fault: unexpected {}", trap::ShowFrame(&context.frame));
        guest_rt::hypercall::crash(trap::UNHANDLED_CRASH_CODE);
    }
    let gfn = POOL_GFN.load(Ordering::Relaxed) + index;
    if let Err(errno) = memory::map_page(Space::INITIAL, page, gfn, map_flags::WRITABLE | map_flags::NO_EXECUTE) {
        println!("bench page_fault: mapping {page:#x} -> gfn {gfn} failed: {errno}");
        guest_rt::hypercall::crash(trap::UNHANDLED_CRASH_CODE);
    }
    // SAFETY: the page was just mapped writable at `page` in the loaded root, and nothing
    // else refers to it: the faulting write resumes after this.
    unsafe { core::ptr::write_bytes(page as *mut u8, 0, PAGE_SIZE as usize) };
    FAULTS.fetch_add(1, Ordering::Relaxed);
    TrapAction::Resume
}

/// One timed demand fault per window page, up to `count` of them, each sample pushed to
/// `samples` (if given); then the whole window unmapped in one batch.
fn round(count: u64, samples: Option<&mut Vec<u64>>, unmap: &mut MapBatch) -> Result<(), guest_rt::abi::Errno> {
    let mut samples = samples;
    for index in 0..count {
        let address = (WINDOW + index * PAGE_SIZE) as *mut u64;
        let start = tsc::rdtsc_serialized();
        // SAFETY: the window is unmapped; the #PF handler maps a fresh frame there and the
        // write then completes. No Rust reference covers the window.
        unsafe { address.write_volatile(index) };
        let end = tsc::rdtsc_serialized();
        if let Some(samples) = samples.as_mut() {
            samples.push(end.wrapping_sub(start));
        }
    }
    unmap.clear();
    for index in 0..count {
        unmap.unmap(WINDOW + index * PAGE_SIZE);
    }
    unmap.apply(Space::INITIAL).result
}

fn bench_page_fault(start: &'static StartInfo) -> u32 {
    let mut reporter = Reporter::new();
    let iterations = bench_support::iterations(start);
    let Some((_, gfn)) = bench_support::heap_pages(start, WINDOW_PAGES) else {
        reporter.error(format_args!("no heap for {WINDOW_PAGES} pool pages: give the domain more memory"));
        reporter.finish()
    };
    POOL_GFN.store(gfn, Ordering::Relaxed);
    let mut samples = Vec::new();
    let mut unmap = MapBatch::new();
    if samples.try_reserve_exact(iterations).is_err() {
        reporter.error(format_args!("no heap for {iterations} samples: give the domain more memory"));
        reporter.finish()
    }
    if reporter.expect_ok(trap::install(), "install the trap entry").is_none()
        || reporter.expect_ok(trap::set_handler(vector::PAGE_FAULT, on_page_fault), "#PF handler").is_none()
    {
        reporter.finish()
    }
    // Warm-up: fault in the window's page tables, the handler's code and the hypervisor's
    // paths; the page tables stay when the leaves are unmapped.
    if let Err(errno) = round(bench_support::warmup(iterations) as u64, None, &mut unmap) {
        reporter.error(format_args!("unmapping the warm-up window: {errno}"));
        reporter.finish()
    }
    while samples.len() < iterations {
        let count = WINDOW_PAGES.min((iterations - samples.len()) as u64);
        if let Err(errno) = round(count, Some(&mut samples), &mut unmap) {
            reporter.error(format_args!("unmapping the window: {errno}"));
            reporter.finish()
        }
    }
    bench_support::report(&mut reporter, "page_fault", Ok(tsc::summarize(&mut samples)));
    reporter.expect_eq(
        FAULTS.load(Ordering::Relaxed),
        (bench_support::warmup(iterations) + iterations) as u64,
        "one fault per touch",
    );
    reporter.finish()
}
