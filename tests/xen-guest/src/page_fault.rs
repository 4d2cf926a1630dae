//! `page_fault`: a demand fault, ringfence's bench_page_fault. A write to an unmapped page
//! of a window -> Xen bounces #PF -> the handler maps the page's frame with one
//! `mmu_update` and zeroes the page -> `iret` -> the write completes; all of it between
//! two serialized TSC reads. Between rounds of up to [`PAGES`] faults the window is
//! unmapped in one batch and the TLB flushed, outside the timed region.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::harness;
use crate::paging::{self, Paging, Window};
use crate::xen;

/// Pages faulted in per round (ringfence's window).
const PAGES: usize = 256;

#[repr(C, align(4096))]
struct Pages([[u8; 4096]; PAGES]);

/// The window: bss pages of this image, unmapped before the first fault.
static mut WINDOW_PAGES: Pages = Pages([[0; 4096]; PAGES]);
static mut WINDOW: Window<PAGES> = Window::empty();
static FAULTS: AtomicU64 = AtomicU64::new(0);

fn window() -> &'static Window<PAGES> {
    // SAFETY: written only in `run` before the first fault, read-only afterwards.
    unsafe { &*core::ptr::addr_of!(WINDOW) }
}

/// Called by the #PF entry with the error code.
pub extern "C" fn on_page_fault(error: u64) {
    let address = xen::shared().cr2();
    let window = window();
    let index = (address.wrapping_sub(window.base) / 4096) as usize;
    if address < window.base || index >= PAGES || error & 1 != 0 {
        panic!("unexpected page fault at {address:#x}, error {error:#x}");
    }
    if paging::mmu_update(&window.map[index..=index]) != 0 {
        panic!("mmu_update mapping {address:#x} failed");
    }
    // SAFETY: the page was just mapped writable, and nothing refers to it: the faulting
    // write resumes after this.
    unsafe { core::ptr::write_bytes(window.page(index) as *mut u8, 0, 4096) };
    FAULTS.fetch_add(1, Ordering::Relaxed);
}

/// One timed fault per window page, up to `count`, samples from `samples[filled..]` on
/// if `timed`; then the window unmapped again.
fn round(count: usize, timed: bool, filled: usize) -> Result<(), &'static str> {
    let window = window();
    let samples = harness::samples();
    for index in 0..count {
        let address = window.page(index) as *mut u64;
        let start = harness::rdtsc_serialized();
        // SAFETY: the page is unmapped; the #PF handler maps its frame and the write then
        // completes. No Rust reference covers the window.
        unsafe { address.write_volatile(index as u64) };
        let end = harness::rdtsc_serialized();
        if timed {
            samples[filled + index] = end.wrapping_sub(start);
        }
    }
    window.unmap_first(count)
}

pub fn run(paging: Paging) {
    let (warmup, iterations) = (harness::warmup(), harness::iterations());
    let base = core::ptr::addr_of_mut!(WINDOW_PAGES) as u64;
    // SAFETY: no fault can happen yet (the window is still mapped), so nothing reads it.
    if let Err(problem) = unsafe { (*core::ptr::addr_of_mut!(WINDOW)).take(paging, base) } {
        harness::error("page_fault", format_args!("{problem}"));
        return;
    }
    if let Err(problem) = round(warmup, false, 0) {
        harness::error("page_fault", format_args!("{problem}"));
        return;
    }
    let mut filled = 0;
    while filled < iterations {
        let count = PAGES.min(iterations - filled);
        if let Err(problem) = round(count, true, filled) {
            harness::error("page_fault", format_args!("{problem}"));
            return;
        }
        filled += count;
    }
    let faults = FAULTS.load(Ordering::Relaxed);
    if faults != (warmup + iterations) as u64 {
        harness::error("page_fault", format_args!("{faults} faults for {} touches", warmup + iterations));
        return;
    }
    harness::report("page_fault", &harness::summarize(harness::samples()));
}
