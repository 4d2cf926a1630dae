//! The two kinds of address that cross the boundary (SPEC.md §3, §12.1): a guest virtual
//! address and a guest frame number. Distinct types so one is never passed as the other;
//! transparent over u64, so they have the layout the boundary structs and registers use.

use crate::layout::{is_canonical, HYPERVISOR_END, HYPERVISOR_START, PAGE_SIZE};
use core::fmt;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// A guest virtual address, in the domain's current address space.
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(transparent)]
pub struct GuestVirtualAddress(pub u64);

impl GuestVirtualAddress {
    /// True if the address is canonical (48-bit).
    pub const fn is_canonical(self) -> bool {
        is_canonical(self.0)
    }

    /// True if the address is inside the hypervisor's reserved range (SPEC.md §3).
    pub const fn is_in_hypervisor_range(self) -> bool {
        self.0 >= HYPERVISOR_START && self.0 < HYPERVISOR_END
    }

    /// True if the address is at the start of a page.
    pub const fn is_page_aligned(self) -> bool {
        self.0 & (PAGE_SIZE - 1) == 0
    }
}

impl fmt::Display for GuestVirtualAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// Formats the inner u64, flags and all, so reports that print frames with `{:#x}` read
/// exactly as they did when the field was a bare u64.
impl fmt::LowerHex for GuestVirtualAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}

/// A guest frame number: the index of a page of the domain's pseudo-physical memory
/// (never a machine frame, which a guest does not see).
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(transparent)]
pub struct Gfn(pub u64);

impl Gfn {
    /// The gfn `count` pages further on, if that does not overflow.
    pub const fn checked_add(self, count: u64) -> Option<Gfn> {
        match self.0.checked_add(count) {
            Some(gfn) => Some(Gfn(gfn)),
            None => None,
        }
    }
}

impl fmt::Display for Gfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gfn {:#x}", self.0)
    }
}

const _: () = {
    assert!(core::mem::size_of::<GuestVirtualAddress>() == 8);
    assert!(core::mem::align_of::<GuestVirtualAddress>() == 8);
    assert!(core::mem::size_of::<Gfn>() == 8);
    assert!(core::mem::align_of::<Gfn>() == 8);
};

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::FromBytes;

    #[test]
    fn addresses_classify() {
        assert!(GuestVirtualAddress(0x7fff_ffff_f000).is_canonical());
        assert!(!GuestVirtualAddress(0x8000_0000_0000).is_canonical());
        assert!(GuestVirtualAddress(HYPERVISOR_START).is_in_hypervisor_range());
        assert!(!GuestVirtualAddress(HYPERVISOR_END).is_in_hypervisor_range());
        assert!(GuestVirtualAddress(0x2000).is_page_aligned());
        assert!(!GuestVirtualAddress(0x2008).is_page_aligned());
        assert_eq!(GuestVirtualAddress(0x1000).to_string(), "0x1000");
        assert_eq!(format!("{:#018x}", GuestVirtualAddress(0x1000)), format!("{:#018x}", 0x1000_u64));
    }

    #[test]
    fn gfns_add_and_read_as_u64() {
        assert_eq!(Gfn(5).checked_add(3), Some(Gfn(8)));
        assert_eq!(Gfn(u64::MAX).checked_add(1), None);
        assert_eq!(Gfn(0x12).to_string(), "gfn 0x12");
        // Same bytes as the u64 the boundary carries.
        let bytes = 0x1234_u64.to_le_bytes();
        assert_eq!(Gfn::read_from_bytes(&bytes), Ok(Gfn(0x1234)));
        assert_eq!(GuestVirtualAddress::read_from_bytes(&bytes), Ok(GuestVirtualAddress(0x1234)));
    }
}
