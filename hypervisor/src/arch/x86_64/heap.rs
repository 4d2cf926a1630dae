//! The hypervisor's own heap, in two regions. The early region is fixed in .bss so it
//! exists before the frame allocator does; once RAM is known, a larger late region is
//! carved out of it (never competing with domains for frames afterwards), since per-domain
//! tables grow with domain count and size. Neither region needs zeroing: the allocator
//! hands out uninitialised memory anyway, and first-touch cost is real on some hosts.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicUsize, Ordering};
use linked_list_allocator::LockedHeap;

const EARLY_SIZE: usize = 1 << 20;
/// Size of the late region taken from RAM at boot.
pub const LATE_SIZE: u64 = 16 << 20;

#[repr(C, align(4096))]
struct HeapArea([u8; EARLY_SIZE]);

static mut EARLY_AREA: HeapArea = HeapArea([0; EARLY_SIZE]);

struct TwoRegions {
    early: LockedHeap,
    late: LockedHeap,
    /// Bounds of the late region (0..0 until it exists), for `dealloc` to route by address.
    late_start: AtomicUsize,
    late_end: AtomicUsize,
}

impl TwoRegions {
    fn owns_late(&self, pointer: *mut u8) -> bool {
        let address = pointer as usize;
        address >= self.late_start.load(Ordering::Relaxed) && address < self.late_end.load(Ordering::Relaxed)
    }
}

// SAFETY: both regions are LockedHeaps (each a correct GlobalAlloc); every pointer is
// returned to the heap that produced it, decided by the late region's address range,
// which is fixed once set and disjoint from the early region.
unsafe impl GlobalAlloc for TwoRegions {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if self.late_end.load(Ordering::Relaxed) != 0 {
            // SAFETY: forwarded with the caller's guarantees.
            let pointer = unsafe { self.late.alloc(layout) };
            if !pointer.is_null() {
                return pointer;
            }
        }
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { self.early.alloc(layout) }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        if self.owns_late(pointer) {
            // SAFETY: the pointer came from the late heap (it lies in its region).
            unsafe { self.late.dealloc(pointer, layout) }
        } else {
            // SAFETY: the pointer came from the early heap (the only other source).
            unsafe { self.early.dealloc(pointer, layout) }
        }
    }
}

#[global_allocator]
static ALLOCATOR: TwoRegions = TwoRegions {
    early: LockedHeap::empty(),
    late: LockedHeap::empty(),
    late_start: AtomicUsize::new(0),
    late_end: AtomicUsize::new(0),
};

/// Hands the early region to the allocator. Called once, first thing on the boot path.
pub fn init() {
    // SAFETY: called once before any allocation; EARLY_AREA is used by nothing else, and
    // the allocator takes exclusive ownership of it for the life of the hypervisor.
    unsafe {
        let start = (&raw mut EARLY_AREA).cast::<u8>();
        ALLOCATOR.early.lock().init(start, EARLY_SIZE);
    }
}

/// Adds the late region at `start` (a direct-map address) of [`LATE_SIZE`] bytes.
///
/// # Safety
/// The memory must be mapped read-write, reserved in the frame allocator so nothing else
/// ever uses it, and this must be called at most once.
pub unsafe fn add_late_region(start: *mut u8) {
    // SAFETY: the caller guarantees exclusive, mapped memory of LATE_SIZE bytes.
    unsafe { ALLOCATOR.late.lock().init(start, LATE_SIZE as usize) };
    ALLOCATOR.late_start.store(start as usize, Ordering::Relaxed);
    ALLOCATOR.late_end.store(start as usize + LATE_SIZE as usize, Ordering::Relaxed);
}
