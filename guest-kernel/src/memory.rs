//! Demand-paged kernel memory: a window of kernel virtual addresses where nothing is
//! mapped until it is touched. The page-fault handler gives a faulting address inside the
//! window a fresh zeroed page ([`handle_page_fault`]); any other fault is not the
//! window's to fix.

extern crate alloc;

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::arch::{Access, Arch, FaultResolution, PageFault, PAGE_SIZE};
use crate::console::kprintln;

/// The window's first address: in the kernel half, far from the image (top 2 GiB) and
/// outside the range ringfence reserves for itself (PML4 slots 256-271).
pub const WINDOW_START: u64 = 0xffff_c900_0000_0000;
/// The window's size in pages.
pub const WINDOW_PAGES: u64 = 64;

/// Faults resolved by mapping a page.
static FAULTS: AtomicU64 = AtomicU64::new(0);

/// True if `address` is inside the window.
pub fn in_window(address: u64) -> bool {
    (WINDOW_START..WINDOW_START + WINDOW_PAGES * PAGE_SIZE).contains(&address)
}

/// The core's page-fault policy: a kernel read or write of an unmapped window page gets
/// a fresh zeroed page; everything else is unhandled.
pub fn handle_page_fault<A: Arch>(arch: &A, fault: &PageFault) -> FaultResolution {
    if fault.user || fault.present || fault.access == Access::Execute || !in_window(fault.address) {
        return FaultResolution::Unhandled;
    }
    let page = fault.address & !(PAGE_SIZE - 1);
    match arch.map_zeroed_page(page) {
        Ok(()) => {
            FAULTS.fetch_add(1, Ordering::Relaxed);
            FaultResolution::Retry
        }
        Err(error) => {
            kprintln!("guest-kernel: demand paging: page {page:#x}: {error}");
            FaultResolution::Unhandled
        }
    }
}

/// Faults resolved so far.
pub fn faults() -> u64 {
    FAULTS.load(Ordering::Relaxed)
}

/// Reads the u64 at a window address (a fault maps it).
fn peek(address: u64) -> u64 {
    debug_assert!(in_window(address) && address.is_multiple_of(8));
    // SAFETY: callers pass aligned window addresses: mapped, or unmapped and mapped by the
    // page-fault handler before the read completes. No Rust reference covers the window.
    unsafe { core::ptr::read_volatile(address as *const u64) }
}

/// Writes the u64 at a window address (a fault maps it).
fn poke(address: u64, value: u64) {
    debug_assert!(in_window(address) && address.is_multiple_of(8));
    // SAFETY: as for `peek`; the window's pages are writable.
    unsafe { core::ptr::write_volatile(address as *mut u64, value) }
}

/// A value unique to page `index`.
fn pattern(index: u64) -> u64 {
    0x5eed_0000_0000_0000 | index.wrapping_mul(0x9e37_79b9)
}

/// Touches every window page (each read faults once and finds zero), writes and reads
/// back a pattern, unmaps them in one call, and checks that a touch after the unmap faults
/// again and finds a fresh page.
pub fn demand_paging_check<A: Arch>(arch: &A) -> bool {
    let first_fault = faults();
    let addresses: Vec<u64> =
        (0..WINDOW_PAGES).map(|index| WINDOW_START + index * PAGE_SIZE + (index % (PAGE_SIZE / 64)) * 64).collect();
    let mut zeroed = true;
    for (index, &address) in addresses.iter().enumerate() {
        zeroed &= peek(address) == 0;
        poke(address, pattern(index as u64));
    }
    let kept = addresses.iter().enumerate().all(|(index, &address)| peek(address) == pattern(index as u64));
    let touch_faults = faults() - first_fault;
    let pages: Vec<u64> = addresses.iter().map(|address| address & !(PAGE_SIZE - 1)).collect();
    let unmapped = arch.unmap_pages(&pages);
    let mut refault_ok = false;
    if unmapped.is_ok() {
        let before = faults();
        refault_ok = peek(addresses[0]) == 0 && faults() == before + 1 && arch.unmap_pages(&pages[..1]).is_ok();
    }
    let ok = zeroed && kept && touch_faults == WINDOW_PAGES && unmapped.is_ok() && refault_ok;
    kprintln!(
        "guest-kernel: demand paging: {} pages at {WINDOW_START:#x}: {touch_faults} faults, each mapped a zeroed page ({}), contents {}",
        WINDOW_PAGES,
        if zeroed { "yes" } else { "NO" },
        if kept { "kept" } else { "LOST" }
    );
    match unmapped {
        Ok(()) => kprintln!(
            "guest-kernel: demand paging: unmapped in one batch; a touch after that faults again and finds a fresh page: {} ({})",
            if refault_ok { "yes" } else { "NO" },
            if ok { "ok" } else { "WRONG" }
        ),
        Err(error) => kprintln!("guest-kernel: demand paging: unmap: {error} (WRONG)"),
    }
    ok
}
