//! A new domain's virtual layout after its image (SPEC.md §3.2): guard, start-info page,
//! guard, shared-info page, guard, initial stack, guard, the module and a guard when
//! the domain has one, then every remaining page as "free".

use crate::domain::image::LoadPlan;
use core::fmt;
use hypercall_abi::layout::{is_guest_range, INITIAL_STACK_PAGES, PAGE_SIZE};

/// Where everything after the image goes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct DomainLayout {
    /// The read-only start-info page.
    pub start_info: u64,
    /// The shared-info page (a hypervisor frame, not a gfn).
    pub shared_info: u64,
    /// The stack's lowest byte.
    pub stack_bottom: u64,
    /// One past the stack's highest byte.
    pub stack_top: u64,
    /// The module's first page; 0 when the domain has no module.
    pub module_start: u64,
    /// Pages of the module (0: none).
    pub module_pages: u64,
    /// The first page of the free region (the guest's to map as it likes).
    pub free_start: u64,
    /// Its length in pages.
    pub free_pages: u64,
}

impl DomainLayout {
    /// Pages of domain memory (gfns) every layout uses besides the image and the free
    /// region: start info and stack. The shared-info page is not domain memory.
    pub const FIXED_PAGES: u64 = 1 + INITIAL_STACK_PAGES;
    /// Virtual pages after the image besides the free region and the module: four guards,
    /// start info, shared info and the stack.
    const FIXED_VIRTUAL_PAGES: u64 = 4 + 1 + DomainLayout::FIXED_PAGES;

    /// Pages of domain memory (gfns) besides the image and the free region: start info,
    /// stack and module.
    pub const fn reserved_pages(&self) -> u64 {
        DomainLayout::FIXED_PAGES + self.module_pages
    }
}

/// Why a layout cannot be made.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // Each variant's doc names its fields.
pub enum LayoutError {
    /// The image, start info, stack and module need more pages than the domain has.
    TooLittleMemory { needed_pages: u64, memory_pages: u64, module_pages: u64 },
    /// The region after the image would leave the lower half of the address space.
    CrossesLowerHalfEnd { image_end: u64 },
    /// The region after the image would run past the top of the address space.
    PastAddressSpaceEnd { image_end: u64 },
    /// The region after the image is not guest memory for another reason.
    NotGuestMemory { image_end: u64 },
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TooLittleMemory { needed_pages, memory_pages, module_pages: 0 } => write!(
                f,
                "needs at least {needed_pages} pages (image, start info, stack) but the domain has {memory_pages}; raise mem="
            ),
            Self::TooLittleMemory { needed_pages, memory_pages, module_pages } => write!(
                f,
                "needs at least {needed_pages} pages (image, start info, stack and a {module_pages}-page module) but the domain has {memory_pages}; raise mem= or give a smaller module"
            ),
            Self::CrossesLowerHalfEnd { image_end } => write!(
                f,
                "image ends at {image_end:#x}: its start info, stack and free memory would cross the end of the lower half; link it lower"
            ),
            Self::PastAddressSpaceEnd { image_end } => write!(
                f,
                "image ends at {image_end:#x}: its start info, stack and free memory would run past the top of the address space; link it lower or lower mem="
            ),
            Self::NotGuestMemory { image_end } => {
                write!(f, "image ends at {image_end:#x}: the memory after it is not guest memory")
            }
        }
    }
}

/// Plans the layout after `load`'s image for a domain of `memory_pages` pages with a boot
/// module of `module_bytes` bytes (0: no module). All arithmetic is checked; a layout that
/// would leave guest memory is refused, never wrapped.
pub fn plan(load: &LoadPlan, memory_pages: u64, module_bytes: u64) -> Result<DomainLayout, LayoutError> {
    let module_pages = module_bytes.div_ceil(PAGE_SIZE);
    let needed_pages =
        load.image_pages.checked_add(DomainLayout::FIXED_PAGES).and_then(|pages| pages.checked_add(module_pages));
    let needed_pages = match needed_pages {
        Some(needed_pages) if needed_pages <= memory_pages => needed_pages,
        // An overflowing need is more than any domain has.
        _ => {
            return Err(LayoutError::TooLittleMemory {
                needed_pages: needed_pages.unwrap_or(u64::MAX),
                memory_pages,
                module_pages,
            })
        }
    };
    let free_pages = memory_pages - needed_pages;
    let image_end = load.image_end;
    // image_end | guard | start info | guard | shared info | guard | stack | guard
    //   [| module | guard] | free ...
    let past_end = LayoutError::PastAddressSpaceEnd { image_end };
    let module_virtual_pages = if module_pages == 0 { 0 } else { module_pages + 1 };
    let fixed_bytes =
        (DomainLayout::FIXED_VIRTUAL_PAGES + module_virtual_pages).checked_mul(PAGE_SIZE).ok_or(past_end)?;
    let region_bytes =
        free_pages.checked_mul(PAGE_SIZE).and_then(|free_bytes| free_bytes.checked_add(fixed_bytes)).ok_or(past_end)?;
    // free_start must be an address (even with no free pages), and the region's last byte
    // must not wrap; the region may end exactly at 2^64.
    image_end.checked_add(fixed_bytes).ok_or(past_end)?;
    image_end.checked_add(region_bytes - 1).ok_or(past_end)?;
    if !is_guest_range(image_end, region_bytes) {
        let image_in_lower_half = image_end.wrapping_sub(1) >> 47 == 0;
        return Err(if image_in_lower_half {
            LayoutError::CrossesLowerHalfEnd { image_end }
        } else {
            LayoutError::NotGuestMemory { image_end }
        });
    }
    let start_info = image_end + PAGE_SIZE;
    let shared_info = start_info + 2 * PAGE_SIZE;
    let stack_bottom = shared_info + 2 * PAGE_SIZE;
    let stack_top = stack_bottom + INITIAL_STACK_PAGES * PAGE_SIZE;
    let (module_start, free_start) = match module_pages {
        0 => (0, stack_top + PAGE_SIZE),
        pages => (stack_top + PAGE_SIZE, stack_top + (pages + 2) * PAGE_SIZE),
    };
    Ok(DomainLayout {
        start_info,
        shared_info,
        stack_bottom,
        stack_top,
        module_start,
        module_pages,
        free_start,
        free_pages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use hypercall_abi::ABI_VERSION;

    fn load_plan(image_start: u64, image_pages: u64) -> LoadPlan {
        LoadPlan {
            entry: image_start,
            segments: Vec::new(),
            abi: ABI_VERSION,
            image_start,
            image_end: image_start + image_pages * PAGE_SIZE,
            image_pages,
        }
    }

    #[test]
    fn ordinary_layout() {
        let load = load_plan(0xffff_ffff_8000_0000, 6);
        let layout = plan(&load, 1024, 0).unwrap();
        let image_end = 0xffff_ffff_8000_6000;
        assert_eq!(layout.start_info, image_end + 0x1000);
        assert_eq!(layout.shared_info, image_end + 0x3000);
        assert_eq!(layout.stack_bottom, image_end + 0x5000);
        assert_eq!(layout.stack_top, layout.stack_bottom + INITIAL_STACK_PAGES * 0x1000);
        assert_eq!(layout.free_start, layout.stack_top + 0x1000);
        assert_eq!(layout.free_pages, 1024 - 6 - 1 - INITIAL_STACK_PAGES);
    }

    #[test]
    fn memory_must_cover_image_start_info_and_stack() {
        let load = load_plan(0x40_0000, 10);
        let exact = 10 + 1 + INITIAL_STACK_PAGES;
        assert_eq!(plan(&load, exact, 0).unwrap().free_pages, 0);
        assert_eq!(
            plan(&load, exact - 1, 0),
            Err(LayoutError::TooLittleMemory { needed_pages: exact, memory_pages: exact - 1, module_pages: 0 })
        );
        assert_eq!(
            plan(&load, 0, 0),
            Err(LayoutError::TooLittleMemory { needed_pages: exact, memory_pages: 0, module_pages: 0 })
        );
        let mut huge = load_plan(0x40_0000, 1);
        huge.image_pages = u64::MAX;
        assert!(matches!(plan(&huge, u64::MAX, 0), Err(LayoutError::TooLittleMemory { .. })));
    }

    #[test]
    fn top_of_the_lower_half() {
        let lower_end = 0x0000_8000_0000_0000;
        // Region after the image: 3 guards + start info + stack + free pages.
        let free = 100;
        let region = (4 + 2 + INITIAL_STACK_PAGES + free) * PAGE_SIZE;
        let memory = 4 + 1 + INITIAL_STACK_PAGES + free;
        let fits = load_plan(lower_end - region - 4 * PAGE_SIZE, 4);
        let layout = plan(&fits, memory, 0).unwrap();
        assert_eq!(layout.free_start + free * PAGE_SIZE, lower_end, "ends exactly at the end of the lower half");
        let one_page_more = load_plan(lower_end - region - 3 * PAGE_SIZE, 4);
        assert_eq!(
            plan(&one_page_more, memory, 0),
            Err(LayoutError::CrossesLowerHalfEnd { image_end: lower_end - region + PAGE_SIZE })
        );
        assert!(plan(&one_page_more, memory, 0).unwrap_err().to_string().contains("lower half"));
    }

    #[test]
    fn top_of_the_address_space() {
        let free = 10;
        let region = (4 + 2 + INITIAL_STACK_PAGES + free) * PAGE_SIZE;
        let memory = 2 + 1 + INITIAL_STACK_PAGES + free;
        // The region ends at 2^64 exactly: representable as a length, so accepted.
        let image_end = 0u64.wrapping_sub(region);
        let fits = load_plan(image_end - 2 * PAGE_SIZE, 2);
        let layout = plan(&fits, memory, 0).unwrap();
        assert_eq!(layout.free_start, 0u64.wrapping_sub(free * PAGE_SIZE));
        // One page higher wraps: refused with a reason, no wrapped addresses.
        let too_high = load_plan(image_end - PAGE_SIZE, 2);
        assert_eq!(
            plan(&too_high, memory, 0),
            Err(LayoutError::PastAddressSpaceEnd { image_end: image_end + PAGE_SIZE })
        );
        // Absurd memory sizes overflow the byte count: same error, no panic.
        let top = load_plan(0xffff_ffff_8000_0000, 1);
        assert!(matches!(plan(&top, u64::MAX, 0), Err(LayoutError::PastAddressSpaceEnd { .. })));
        assert!(matches!(plan(&top, 1 << 60, 0), Err(LayoutError::PastAddressSpaceEnd { .. })));
    }

    #[test]
    fn free_region_of_zero_pages_at_the_very_top_is_refused() {
        // With no free pages the region ends at 2^64, but free_start would be 2^64 itself:
        // not an address, so the layout is refused rather than wrapped to 0.
        let memory = 1 + 1 + INITIAL_STACK_PAGES;
        let region = (4 + 2 + INITIAL_STACK_PAGES) * PAGE_SIZE;
        let image_end = 0u64.wrapping_sub(region);
        let load = load_plan(image_end - PAGE_SIZE, 1);
        assert_eq!(plan(&load, memory, 0), Err(LayoutError::PastAddressSpaceEnd { image_end }));
        // One free page more memory makes it fit (the free page is the last page).
        let layout = plan(&load, memory + 1, 0);
        assert_eq!(layout, Err(LayoutError::PastAddressSpaceEnd { image_end }), "the extra page itself lies past 2^64");
        let lower = load_plan(image_end - 2 * PAGE_SIZE, 1);
        assert_eq!(plan(&lower, memory + 1, 0).unwrap().free_start, 0u64.wrapping_sub(PAGE_SIZE));
    }

    #[test]
    fn a_module_goes_between_the_stack_and_the_free_region_with_guard_pages() {
        let load = load_plan(0x40_0000, 6);
        let without = plan(&load, 1024, 0).unwrap();
        assert_eq!((without.module_start, without.module_pages), (0, 0));
        let layout = plan(&load, 1024, 3 * PAGE_SIZE + 1).unwrap();
        assert_eq!(layout.module_pages, 4, "a partial last page is a whole page");
        assert_eq!(layout.module_start, layout.stack_top + PAGE_SIZE, "the stack's guard page before it");
        assert_eq!(layout.free_start, layout.module_start + 5 * PAGE_SIZE, "its own guard page after it");
        assert_eq!(layout.free_pages, without.free_pages - 4, "the free region gives the module its pages");
        assert_eq!(layout.reserved_pages(), DomainLayout::FIXED_PAGES + 4);
        let (start_info, stack_top) = (layout.start_info, layout.stack_top);
        assert_eq!((start_info, stack_top), (without.start_info, without.stack_top), "nothing before it moves");
        assert_eq!(plan(&load, 1024, PAGE_SIZE).unwrap().module_pages, 1);
    }

    #[test]
    fn a_module_must_fit_in_memory() {
        let load = load_plan(0x40_0000, 10);
        let exact = 10 + 1 + INITIAL_STACK_PAGES + 3;
        assert_eq!(plan(&load, exact, 3 * PAGE_SIZE).unwrap().free_pages, 0);
        let error = plan(&load, exact, 3 * PAGE_SIZE + 1).unwrap_err();
        assert_eq!(
            error,
            LayoutError::TooLittleMemory { needed_pages: exact + 1, memory_pages: exact, module_pages: 4 }
        );
        assert_eq!(
            error.to_string(),
            format!(
                "needs at least {} pages (image, start info, stack and a 4-page module) but the domain has {exact}; raise mem= or give a smaller module",
                exact + 1
            )
        );
        assert!(matches!(plan(&load, u64::MAX, u64::MAX), Err(LayoutError::PastAddressSpaceEnd { .. })));
        assert!(matches!(plan(&load, 1000, u64::MAX), Err(LayoutError::TooLittleMemory { .. })));
    }

    #[test]
    fn a_module_counts_toward_the_end_of_the_lower_half() {
        let lower_end = 0x0000_8000_0000_0000;
        let free = 10;
        let module_pages = 3;
        let region = (4 + 2 + INITIAL_STACK_PAGES + module_pages + 1 + free) * PAGE_SIZE;
        let memory = 4 + 1 + INITIAL_STACK_PAGES + module_pages + free;
        let fits = load_plan(lower_end - region - 4 * PAGE_SIZE, 4);
        let layout = plan(&fits, memory, module_pages * PAGE_SIZE).unwrap();
        assert_eq!(layout.free_start + free * PAGE_SIZE, lower_end);
        let higher = load_plan(lower_end - region - 3 * PAGE_SIZE, 4);
        assert!(matches!(
            plan(&higher, memory, module_pages * PAGE_SIZE),
            Err(LayoutError::CrossesLowerHalfEnd { .. })
        ));
    }

    #[test]
    fn image_ending_at_the_end_of_the_lower_half() {
        let load = load_plan(0x0000_8000_0000_0000 - PAGE_SIZE, 1);
        assert_eq!(plan(&load, 100, 0), Err(LayoutError::CrossesLowerHalfEnd { image_end: 0x0000_8000_0000_0000 }));
    }
}
