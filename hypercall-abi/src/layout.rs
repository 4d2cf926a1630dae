//! Address-space layout constants (SPEC.md §3).

/// Page size for every mapping the hypervisor makes for a guest in ABI 0.x.
pub const PAGE_SIZE: u64 = 4096;

/// First address of the hypervisor's reserved range: PML4 slots 256–271.
pub const HYPERVISOR_START: u64 = 0xffff_8000_0000_0000;
/// One past the last address of the hypervisor's reserved range.
pub const HYPERVISOR_END: u64 = 0xffff_8800_0000_0000;

/// Size of the stack the hypervisor maps for a new domain.
pub const INITIAL_STACK_PAGES: u64 = 16;

/// True if `address` is canonical for 48-bit virtual addresses.
pub const fn is_canonical(address: u64) -> bool {
    let upper = address >> 47;
    upper == 0 || upper == 0x1_ffff
}

/// True if the half-open range `[start, start + length)` is canonical, does not wrap, does
/// not cross the non-canonical hole and does not touch the hypervisor's range: the range a
/// guest may name as its own memory.
pub const fn is_guest_range(start: u64, length: u64) -> bool {
    if length == 0 {
        return is_canonical(start) && !(start >= HYPERVISOR_START && start < HYPERVISOR_END);
    }
    let last = match start.checked_add(length - 1) {
        Some(last) => last,
        None => return false,
    };
    if !is_canonical(start) || !is_canonical(last) {
        return false;
    }
    // Both ends canonical and no wrap: the range crosses the hole iff the halves differ.
    if (start >> 63) != (last >> 63) {
        return false;
    }
    last < HYPERVISOR_START || start >= HYPERVISOR_END
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_edges() {
        assert!(is_canonical(0));
        assert!(is_canonical(0x0000_7fff_ffff_ffff));
        assert!(!is_canonical(0x0000_8000_0000_0000));
        assert!(!is_canonical(0xffff_7fff_ffff_ffff));
        assert!(is_canonical(0xffff_8000_0000_0000));
        assert!(is_canonical(u64::MAX));
    }

    #[test]
    fn guest_ranges() {
        assert!(is_guest_range(0x1000, 0x1000));
        assert!(is_guest_range(0xffff_ffff_8000_0000, 0x1000));
        assert!(is_guest_range(HYPERVISOR_END, 1));
        assert!(!is_guest_range(HYPERVISOR_START, 1));
        assert!(!is_guest_range(HYPERVISOR_START - 1, 2));
        assert!(!is_guest_range(HYPERVISOR_END - 1, 1));
        assert!(!is_guest_range(0x0000_7fff_ffff_f000, 0x2000));
        assert!(!is_guest_range(u64::MAX, 2));
        assert!(is_guest_range(u64::MAX, 1));
        assert!(!is_guest_range(0x0000_8000_0000_0000, 0));
        // An empty range is a guest range exactly where its start address could be one.
        assert!(is_guest_range(0x1000, 0));
        assert!(is_guest_range(HYPERVISOR_END, 0));
        assert!(!is_guest_range(HYPERVISOR_START, 0));
        assert!(!is_guest_range(HYPERVISOR_END - 1, 0));
        assert!(!is_guest_range(HYPERVISOR_START - 1, 0));
        // The last page of the lower half is the guest's.
        assert!(is_guest_range(0x0000_7fff_ffff_f000, 0x1000));
        assert!(!is_guest_range(0xffff_ffff_ffff_f000, 0x2000));
        assert_eq!((PAGE_SIZE, INITIAL_STACK_PAGES), (4096, 16));
    }
}
