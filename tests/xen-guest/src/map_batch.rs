//! `map_batch`: ringfence's bench_map_batch. One iteration is one `mmu_update` of 512
//! entries mapping frames this domain owns, a write to each page, one `mmu_update` of 512
//! entries unmapping them and the TLB flush a PV kernel needs after unmapping (Xen leaves
//! it to the guest; ringfence's unmap includes it). `map_batch_noflush` is the same
//! without the flush: the stale translations then make the next iteration's touches cheaper.

use core::cell::Cell;

use crate::harness;
use crate::paging::{self, Paging, Window};

/// Pages per batch.
const PAGES: usize = 512;

#[repr(C, align(4096))]
struct Pages([[u8; 4096]; PAGES]);

static mut BATCH_PAGES: Pages = Pages([[0; 4096]; PAGES]);
static mut WINDOW: Window<PAGES> = Window::empty();

fn measure(name: &str, window: &Window<PAGES>, flush: bool) {
    let failure: Cell<Option<&str>> = Cell::new(None);
    let summary = harness::bench(|| {
        if paging::mmu_update(&window.map) != 0 {
            failure.set(Some("map batch failed"));
            return;
        }
        for index in 0..PAGES {
            // SAFETY: the page was just mapped writable; no Rust reference covers it.
            unsafe { (window.page(index) as *mut u8).write_volatile(1) };
        }
        if paging::mmu_update(&window.unmap) != 0 {
            failure.set(Some("unmap batch failed"));
        }
        if flush && paging::flush_tlb() != 0 {
            failure.set(Some("TLB flush failed"));
        }
    });
    match failure.get() {
        Some(problem) => harness::error(name, format_args!("{problem}")),
        None => harness::report(name, &summary),
    }
}

pub fn run(paging: Paging) {
    let base = core::ptr::addr_of_mut!(BATCH_PAGES) as u64;
    // SAFETY: this row is the window's only user, and the reference ends with it.
    let window = unsafe { &mut *core::ptr::addr_of_mut!(WINDOW) };
    if let Err(problem) = window.take(paging, base) {
        harness::error("map_batch", format_args!("{problem}"));
        return;
    }
    measure("map_batch", window, true);
    // The flushed row ran last: the translations are gone, as before it.
    measure("map_batch_noflush", window, false);
}
