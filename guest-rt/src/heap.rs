//! The guest heap: a first-fit linked-list allocator over the domain's free region
//! (`StartInfo::free_start`, `free_pages`), installed as the global allocator inside a
//! domain so guests can use `alloc` (`Vec`, `Box`, `String`).

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{self, NonNull};

use hypercall_abi::layout::PAGE_SIZE;
use hypercall_abi::StartInfo;
use linked_list_allocator::Heap;
use spin::Mutex;

/// A [`GlobalAlloc`] over one contiguous region, empty until [`GuestHeap::init`].
pub struct GuestHeap {
    heap: Mutex<Heap>,
}

impl GuestHeap {
    /// A heap with no memory: every allocation fails until [`GuestHeap::init`].
    pub const fn empty() -> Self {
        Self { heap: Mutex::new(Heap::empty()) }
    }

    /// Hands `[start, start + size)` to the heap.
    ///
    /// # Safety
    ///
    /// The region must be valid for reads and writes, unused by anything else for the rest
    /// of the program, and this heap must not have been initialized before.
    pub unsafe fn init(&self, start: *mut u8, size: usize) {
        // SAFETY: the caller guarantees an exclusive, writable, not-yet-used region.
        unsafe { self.heap.lock().init(start, size) }
    }

    /// Bytes handed to the heap.
    pub fn size(&self) -> usize {
        self.heap.lock().size()
    }

    /// Bytes currently allocated.
    pub fn used(&self) -> usize {
        self.heap.lock().used()
    }

    /// The end of the memory handed to the heap (0 before [`GuestHeap::init`]).
    pub fn top(&self) -> usize {
        self.heap.lock().top() as usize
    }

    /// Hands the `bytes` that follow [`GuestHeap::top`] to the heap too (a guest that
    /// populated and mapped more memory there, e.g. with `INCREASE_RESERVATION`).
    ///
    /// # Safety
    ///
    /// The heap must be initialized, and `[top, top + bytes)` valid for reads and writes
    /// and unused by anything else for the rest of the program.
    pub unsafe fn extend(&self, bytes: usize) {
        // SAFETY: the caller guarantees the memory after the top is the heap's now.
        unsafe { self.heap.lock().extend(bytes) }
    }
}

impl Default for GuestHeap {
    fn default() -> Self {
        Self::empty()
    }
}

// SAFETY: `Heap::allocate_first_fit` returns blocks inside the region it was given, of at
// least `layout.size()` bytes at `layout.align()`, never handing out a block twice; the
// mutex serializes access; failure is reported as null, as `GlobalAlloc` requires.
unsafe impl GlobalAlloc for GuestHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.heap.lock().allocate_first_fit(layout) {
            Ok(block) => block.as_ptr(),
            Err(()) => ptr::null_mut(),
        }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        if let Some(block) = NonNull::new(block) {
            // SAFETY: `GlobalAlloc` callers pass a block this allocator returned for
            // `layout`, which is what `deallocate` requires.
            unsafe { self.heap.lock().deallocate(block, layout) }
        }
    }
}

/// The global allocator of a domain; the start code of `entry!` initializes it.
#[cfg(target_os = "none")]
#[global_allocator]
pub static HEAP: GuestHeap = GuestHeap::empty();

/// Gives the domain's free region (`free_start`, `free_pages`) to the global heap; does
/// nothing outside a domain or if the region is empty.
///
/// # Safety
///
/// `start_info` must be this domain's start-info page from the hypervisor (its free region
/// mapped read-write and unused), and this must run only once.
pub unsafe fn init_from_start_info(start_info: &StartInfo) {
    #[cfg(target_os = "none")]
    if start_info.free_start.0 != 0 && start_info.free_pages != 0 {
        let size = start_info.free_pages.saturating_mul(PAGE_SIZE) as usize;
        // SAFETY: the hypervisor maps `free_pages` pages at `free_start` read-write for
        // this domain alone; nothing else uses them, and the caller runs this once.
        unsafe { HEAP.init(start_info.free_start.0 as *mut u8, size) };
    }
    #[cfg(not(target_os = "none"))]
    let _ = (start_info, PAGE_SIZE);
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec;

    #[test]
    fn allocates_inside_the_region_and_reuses_freed_memory() {
        let mut region = vec![0u64; 1024];
        let start = region.as_mut_ptr() as *mut u8;
        let size = region.len() * 8;
        let heap = GuestHeap::empty();
        let layout = Layout::from_size_align(100, 16).unwrap();
        // SAFETY: an empty heap refuses every allocation.
        assert!(unsafe { heap.alloc(layout) }.is_null());
        // SAFETY: `region` is ours, unused and outlives `heap`.
        unsafe { heap.init(start, size) };
        assert_eq!(heap.size(), size);
        // SAFETY: a valid non-zero layout.
        let block = unsafe { heap.alloc(layout) };
        assert!(!block.is_null());
        assert_eq!(block as usize % 16, 0);
        assert!(block as usize >= start as usize && block as usize + 100 <= start as usize + size);
        assert!(heap.used() >= 100);
        // SAFETY: `block` came from this heap with `layout`.
        unsafe { heap.dealloc(block, layout) };
        assert_eq!(heap.used(), 0);
        let too_big = Layout::from_size_align(size * 2, 8).unwrap();
        // SAFETY: a valid layout; the answer is null.
        assert!(unsafe { heap.alloc(too_big) }.is_null());
    }

    #[test]
    fn extending_hands_the_memory_after_the_top_to_the_heap() {
        let mut region = vec![0u64; 1024];
        let start = region.as_mut_ptr() as *mut u8;
        let heap = GuestHeap::empty();
        // SAFETY: `region` is ours, unused and outlives `heap`; the heap gets its first half.
        unsafe { heap.init(start, 4096) };
        assert_eq!(heap.top(), start as usize + 4096);
        let big = Layout::from_size_align(6000, 8).unwrap();
        // SAFETY: a valid layout; it does not fit yet.
        assert!(unsafe { heap.alloc(big) }.is_null());
        // SAFETY: the second half of `region` follows the top and is unused.
        unsafe { heap.extend(4096) };
        assert_eq!((heap.size(), heap.top()), (8192, start as usize + 8192));
        // SAFETY: a valid layout.
        let block = unsafe { heap.alloc(big) };
        assert!(!block.is_null() && block as usize + 6000 <= start as usize + 8192);
    }
}
