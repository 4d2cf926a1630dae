//! Fresh kernel pages mapped at chosen addresses. A page comes from the heap, which lies
//! in the domain's free region, so its gfn is known by offset (no hypercall); the gfn is
//! then mapped a second time, at the requested address, with `mmu_update` — the way a
//! native kernel maps a page of its direct map somewhere else. Unmapping asks the
//! hypervisor which gfns it removes (QUERY, batched in a multicall), unmaps in one batch
//! and gives the pages back to the heap.

extern crate alloc;

use alloc::alloc::{alloc_zeroed, dealloc, Layout};
use core::sync::atomic::{AtomicU64, Ordering};

use guest_rt::abi::layout::PAGE_SIZE;
use guest_rt::abi::memory::{map_flags, split_query};
use guest_rt::abi::multicall::MULTICALL_MAX;
use guest_rt::abi::Errno;
use guest_rt::memory::{self, FreeRegion, MapBatch, Space};
use guest_rt::multicall::Multicall;

use super::error::failed;
use crate::arch::interface::ArchError;

/// How many pages [`map_zeroed`] can have mapped at once.
const SLOTS: usize = 512;

/// Addresses [`map_zeroed`] has mapped (0 = free slot). Only these may be unmapped and
/// their gfns' heap pages freed: freeing a page this module did not allocate would
/// corrupt the heap. Lock-free, because a page-fault handler maps pages.
static MAPPED: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];

fn page_layout() -> Layout {
    Layout::from_size_align(PAGE_SIZE as usize, PAGE_SIZE as usize).expect("a page is a valid layout")
}

fn error(operation: &'static str, errno: Errno) -> ArchError {
    failed(operation)(errno)
}

/// A zeroed heap page and its gfn.
pub(super) fn allocate() -> Result<(u64, u64), ArchError> {
    // SAFETY: the layout has a non-zero size.
    let page = unsafe { alloc_zeroed(page_layout()) } as u64;
    if page == 0 {
        return Err(error("page allocation", Errno::ENOMEM));
    }
    match FreeRegion::of(guest_rt::start_info()).gfn_of(page) {
        Some(gfn) => Ok((page, gfn)),
        None => {
            // SAFETY: allocated just above with this layout and not shared.
            unsafe { free(page) };
            Err(error("page outside the free region", Errno::EINVAL))
        }
    }
}

/// Gives a page from [`allocate`] back to the heap.
///
/// # Safety
///
/// `page` came from [`allocate`], is not freed yet, and no mapping of its gfn other than
/// the heap's own remains.
pub(super) unsafe fn free(page: u64) {
    // SAFETY: the caller guarantees `page` was allocated with this layout and is unused.
    unsafe { dealloc(page as *mut u8, page_layout()) }
}

/// Maps a fresh zeroed page at `address` in the kernel root.
pub(super) fn map_zeroed(address: u64) -> Result<(), ArchError> {
    if !address.is_multiple_of(PAGE_SIZE) || address == 0 {
        return Err(error("map (address)", Errno::EINVAL));
    }
    if MAPPED.iter().any(|slot| slot.load(Ordering::Acquire) == address) {
        return Err(error("map", Errno::EEXIST));
    }
    let slot = MAPPED
        .iter()
        .find(|slot| slot.compare_exchange(0, address, Ordering::AcqRel, Ordering::Acquire).is_ok())
        .ok_or(error("map (slots)", Errno::ENOMEM))?;
    let result = allocate().and_then(|(page, gfn)| {
        memory::map_page(Space::INITIAL, address, gfn, map_flags::WRITABLE | map_flags::NO_EXECUTE).map_err(|errno| {
            // SAFETY: just allocated; the map failed, so the heap holds the only mapping.
            unsafe { free(page) };
            error("mmu_update(MAP)", errno)
        })
    });
    if result.is_err() {
        slot.store(0, Ordering::Release);
    }
    result
}

/// Unmaps pages [`map_zeroed`] mapped and frees them: per [`MULTICALL_MAX`] pages, one
/// multicall of QUERYs for their gfns and one `mmu_update` of UNMAPs.
pub(super) fn unmap(addresses: &[u64]) -> Result<(), ArchError> {
    let region = FreeRegion::of(guest_rt::start_info());
    for chunk in addresses.chunks(MULTICALL_MAX as usize) {
        let mut slots = [0usize; MULTICALL_MAX as usize];
        for (index, &address) in chunk.iter().enumerate() {
            slots[index] = MAPPED
                .iter()
                .position(|slot| address != 0 && slot.load(Ordering::Acquire) == address)
                .ok_or(error("unmap (not a zeroed page)", Errno::EINVAL))?;
        }
        let mut queries = Multicall::new();
        for &address in chunk {
            queries.query(Space::INITIAL, address);
        }
        queries.call().map_err(failed("multicall(QUERY)"))?;
        let mut pages = [0u64; MULTICALL_MAX as usize];
        let mut batch = MapBatch::new();
        for (index, &address) in chunk.iter().enumerate() {
            let queried = queries.result(index).unwrap_or(Err(Errno::EINVAL)).map_err(failed("QUERY"))?;
            let (gfn, _) = split_query(queried);
            pages[index] = region.address_of(gfn.0).ok_or(error("unmap (gfn not a heap page)", Errno::EINVAL))?;
            batch.unmap(address);
        }
        let applied = batch.apply(Space::INITIAL);
        for index in 0..applied.done {
            // SAFETY: the slot proves `map_zeroed` mapped this address with a page from
            // `allocate`, and the hypervisor reports the gfn mapped there now; that
            // mapping is gone, so only the heap's own remains.
            unsafe { free(pages[index]) };
            MAPPED[slots[index]].store(0, Ordering::Release);
        }
        applied.result.map_err(failed("mmu_update(UNMAP)"))?;
    }
    Ok(())
}
