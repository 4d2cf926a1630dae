//! The hypervisor's own heap: a fixed region in .bss, so it exists before the frame
//! allocator does and never competes with domains for frames.

use linked_list_allocator::LockedHeap;

const HEAP_SIZE: usize = 1 << 20;

#[repr(C, align(4096))]
struct HeapArea([u8; HEAP_SIZE]);

static mut HEAP_AREA: HeapArea = HeapArea([0; HEAP_SIZE]);

#[global_allocator]
static ALLOCATOR: LockedHeap = LockedHeap::empty();

/// Hands the region to the allocator. Called once, first thing on the boot path.
pub fn init() {
    // SAFETY: called once before any allocation; HEAP_AREA is used by nothing else, and
    // the allocator takes exclusive ownership of it for the life of the hypervisor.
    unsafe {
        let start = (&raw mut HEAP_AREA).cast::<u8>();
        ALLOCATOR.lock().init(start, HEAP_SIZE);
    }
}
