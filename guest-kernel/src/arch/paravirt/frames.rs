//! Frames on ringfence: the kernel heap is guest-rt's, over the domain's free region, whose
//! gfns are contiguous (SPEC.md §3.2), so a heap page's gfn follows from its address with
//! no hypercall. A [`Frame`] outside that region, or not page-aligned, is refused.
//!
//! A domain whose quota is above its initial memory (`maxmem=` > `mem=`) gets the rest at
//! start ([`grow`]): `INCREASE_RESERVATION` populates the next gfns, which continue the
//! free region's (the lowest unpopulated ones, and the free region's are the highest
//! populated), they are mapped right after its end and handed to the heap. So the region
//! stays one range of addresses and of gfns, and the conversion stays an offset.

use core::sync::atomic::{AtomicU64, Ordering};

use guest_rt::abi::memory::{map_flags, MapEntry};
use guest_rt::abi::Errno;
use guest_rt::memory::{map_entry, FreeRegion, Space};

use super::error::machine_error as failed;
use crate::arch::machine::{Frame, MachineError, PAGE_SIZE};

/// Pages [`grow`] added after the free region the domain started with.
static GROWN_PAGES: AtomicU64 = AtomicU64::new(0);

/// The heap's region now: the free region the domain started with, plus what [`grow`]
/// mapped after it.
pub fn heap_region() -> FreeRegion {
    let mut region = FreeRegion::of(guest_rt::start_info());
    region.pages += GROWN_PAGES.load(Ordering::Acquire);
    region
}

/// The gfn of `frame`, a page of the kernel heap.
pub fn gfn_of(frame: Frame) -> Result<u64, MachineError> {
    if !frame.0.is_multiple_of(PAGE_SIZE) {
        return Err(failed("frame (not page-aligned)", Errno::EINVAL));
    }
    heap_region().gfn_of(frame.0).ok_or(failed("frame (not in the kernel heap)", Errno::EINVAL))
}

/// Pages populated per `INCREASE_RESERVATION` while growing (bounded so the gfn and map
/// arrays fit on the stack).
const GROW_BATCH: usize = 128;

/// Populates the domain's reservation up to its quota and adds it to the heap. Returns
/// the pages added. Stops, keeping what it added, at the first refusal: the hypervisor
/// out of memory, a gfn that would not continue the region, an address it cannot map.
pub fn grow() -> Result<u64, MachineError> {
    let start = guest_rt::start_info();
    let populated = guest_rt::memory::current_reservation().map_err(|errno| failed("memory_op(CURRENT)", errno))?;
    let mut missing = start.max_pages.saturating_sub(populated);
    while missing > 0 {
        let region = heap_region();
        let next_gfn = region.gfn + region.pages;
        let next_address = region.start + region.pages * PAGE_SIZE;
        if !heap_ends_at(next_address) {
            // Someone else's heap, or one that was not given the whole free region.
            return Err(failed("heap growth (the heap does not end at the free region's end)", Errno::EINVAL));
        }
        let count = (missing as usize).min(GROW_BATCH);
        if next_address.checked_add(count as u64 * PAGE_SIZE).is_none() {
            return Err(failed("heap growth (no addresses left after the free region)", Errno::ENOMEM));
        }
        let mut gfns = [0u64; GROW_BATCH];
        let populated = guest_rt::memory::increase_reservation(&mut gfns[..count], 0)
            .map_err(|errno| failed("memory_op(INCREASE_RESERVATION)", errno))?;
        let gfns = &gfns[..populated];
        let contiguous = gfns.iter().enumerate().take_while(|&(index, &gfn)| gfn == next_gfn + index as u64).count();
        let mut entries = [MapEntry::default(); GROW_BATCH];
        for (index, &gfn) in gfns[..contiguous].iter().enumerate() {
            entries[index] =
                map_entry(next_address + index as u64 * PAGE_SIZE, gfn, map_flags::WRITABLE | map_flags::NO_EXECUTE);
        }
        let mapped = guest_rt::memory::mmu_update(Space::INITIAL, &entries[..contiguous]);
        if mapped.done < populated {
            // Neither mapped nor the heap's: back to the hypervisor.
            let _ = guest_rt::memory::decrease_reservation(&gfns[mapped.done..], 0);
        }
        add_to_heap(mapped.done as u64 * PAGE_SIZE);
        GROWN_PAGES.fetch_add(mapped.done as u64, Ordering::AcqRel);
        if mapped.done < count {
            return match mapped.result {
                Err(errno) => Err(failed("mmu_update(MAP) of new memory", errno)),
                Ok(()) if contiguous < populated => Err(failed("heap growth (a gfn out of order)", Errno::EINVAL)),
                Ok(()) => Err(failed("memory_op(INCREASE_RESERVATION) (fewer pages)", Errno::ENOMEM)),
            };
        }
        missing -= count as u64;
    }
    Ok(GROWN_PAGES.load(Ordering::Acquire))
}

fn heap_ends_at(address: u64) -> bool {
    #[cfg(target_os = "none")]
    return guest_rt::heap::HEAP.top() as u64 == address;
    #[cfg(not(target_os = "none"))]
    {
        let _ = address;
        false
    }
}

fn add_to_heap(bytes: u64) {
    #[cfg(target_os = "none")]
    // SAFETY: `grow` just mapped these pages read-write at the heap's top (checked by
    // `heap_ends_at`) with gfns populated for this domain and used by nothing else.
    unsafe {
        guest_rt::heap::HEAP.extend(bytes as usize)
    };
    #[cfg(not(target_os = "none"))]
    let _ = bytes;
}
