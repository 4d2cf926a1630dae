//! The kernel heap, the global allocator: every byte of free RAM, through the direct map.
//! Free RAM comes in a few ranges (around the kernel image, the initramfs, firmware
//! holes), each its own `linked_list_allocator` heap; a block is freed into the range it
//! lies in. Frames the kernel maps into user space are heap pages too, which is what
//! [`contains_page`] checks.

use super::paging::DIRECT_MAP_BASE;
use super::ranges::RangeSet;
use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{self, NonNull};
use linked_list_allocator::Heap;
use spin::Mutex;

/// Most ranges the heap spans; a PC's RAM has a handful of pieces.
const MAX_REGIONS: usize = 16;
/// Ranges smaller than this are left out (not worth a heap of their own).
const MIN_REGION: u64 = 64 << 10;

struct Region {
    /// Direct-map addresses.
    start: u64,
    end: u64,
    heap: Heap,
}

struct Regions {
    regions: [Option<Region>; MAX_REGIONS],
    bytes: u64,
}

// SAFETY: the heaps hold raw pointers into the direct map, which every context of the
// one processor can use; every access goes through the mutex.
unsafe impl Send for Regions {}

/// The global allocator.
pub struct KernelHeap(Mutex<Regions>);

#[global_allocator]
static HEAP: KernelHeap = KernelHeap(Mutex::new(Regions { regions: [const { None }; MAX_REGIONS], bytes: 0 }));

// SAFETY: each block comes from one region's heap and goes back to the heap whose range
// holds its address; the ranges are disjoint and fixed once `init` ran.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let mut regions = self.0.lock();
        for region in regions.regions.iter_mut().flatten() {
            if let Ok(block) = region.heap.allocate_first_fit(layout) {
                return block.as_ptr();
            }
        }
        ptr::null_mut()
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        let mut regions = self.0.lock();
        let address = block as u64;
        let owner = regions.regions.iter_mut().flatten().find(|region| region.start <= address && address < region.end);
        if let (Some(region), Some(block)) = (owner, NonNull::new(block)) {
            // SAFETY: the caller allocated `block` with `layout` from this allocator, and
            // the region whose range holds it is the heap that handed it out.
            unsafe { region.heap.deallocate(block, layout) };
        }
    }
}

/// Gives the allocator the physical ranges of `free` (page-aligned, each inside RAM that
/// the direct map covers and that nothing else uses). Ranges past [`MAX_REGIONS`], and
/// small ones, are left unused; returns the bytes handed over.
///
/// # Safety
/// Called once, before the first allocation; the memory of `free` must be mapped
/// read-write in the direct map and used by nothing else for the rest of the run.
pub unsafe fn init(free: &RangeSet) -> u64 {
    let mut regions = HEAP.0.lock();
    let mut ranges: [_; MAX_REGIONS] = [None; MAX_REGIONS];
    // The largest ranges first, so that the allocator tries them first too.
    let mut sorted = free.clone();
    for slot in &mut ranges {
        let Some(&largest) = sorted.ranges().iter().max_by_key(|range| range.size()) else { break };
        if largest.size() < MIN_REGION || sorted.remove(largest).is_err() {
            break;
        }
        *slot = Some(largest);
    }
    let mut bytes = 0;
    for (slot, range) in regions.regions.iter_mut().zip(ranges) {
        let Some(range) = range else { break };
        let start = DIRECT_MAP_BASE + range.start;
        // SAFETY: the caller guarantees the range is free RAM, mapped read-write at its
        // direct-map address for the rest of the run; the heap takes it over whole.
        let heap = unsafe { Heap::new(start as *mut u8, range.size() as usize) };
        *slot = Some(Region { start, end: start + range.size(), heap });
        bytes += range.size();
    }
    regions.bytes = bytes;
    bytes
}

/// True if `address` is a page-aligned address of a heap page.
pub fn contains_page(address: u64) -> bool {
    let regions = HEAP.0.lock();
    address.is_multiple_of(4096)
        && regions
            .regions
            .iter()
            .flatten()
            .any(|region| region.start <= address && address.checked_add(4096).is_some_and(|end| end <= region.end))
}

/// The heap's size and what is in use, in bytes.
pub fn usage() -> (u64, u64) {
    let regions = HEAP.0.lock();
    let used = regions.regions.iter().flatten().map(|region| region.heap.used() as u64).sum();
    (regions.bytes, used)
}
