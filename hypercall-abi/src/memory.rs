//! Memory hypercalls (SPEC.md §12): pseudo-physical frames (gfns) and their reservation,
//! address-space objects, and batched map / unmap / protect of gfns at virtual
//! addresses. Guests never see machine frames or page tables.

use crate::address::{Gfn, GuestVirtualAddress};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Largest number of entries one batched call processes. A longer batch is not an
/// error: the call processes this many, reports how many completed, and the guest
/// issues the rest again. This bounds the work of every hypercall.
pub const BATCH_MAX: u64 = 1024;

/// Pages in a 2 MiB page (extent order 9).
pub const LARGE_PAGE_PAGES: u64 = 512;
/// Bytes in a 2 MiB page.
pub const LARGE_PAGE_SIZE: u64 = LARGE_PAGE_PAGES * 4096;
/// Extent order of a 2 MiB extent.
pub const LARGE_PAGE_ORDER: u64 = 9;

/// Sub-commands of `memory_op` (RDI).
pub mod memory_cmd {
    /// `memory_op(CURRENT_RESERVATION)`: number of populated gfns.
    pub const CURRENT_RESERVATION: u64 = 0;
    /// `memory_op(MAXIMUM_RESERVATION)`: the quota fixed at creation, in pages.
    pub const MAXIMUM_RESERVATION: u64 = 1;
    /// `memory_op(INCREASE_RESERVATION, gfns, count, order)`: populates `count` extents
    /// of `1 << order` pages (order 0 or 9) with zeroed frames and writes the first gfn
    /// of each to the u64 array `gfns`. Returns the number of extents populated.
    pub const INCREASE_RESERVATION: u64 = 2;
    /// `memory_op(DECREASE_RESERVATION, gfns, count, order)`: releases the extents whose
    /// first gfns are in `gfns`; every mapping of them is removed from every address
    /// space first. Returns the number of extents released.
    pub const DECREASE_RESERVATION: u64 = 3;
    /// `memory_op(MAXIMUM_GFN)`: one past the highest gfn this domain may ever have.
    pub const MAXIMUM_GFN: u64 = 4;
}

/// Sub-commands of `address_space_op` (RDI). Handles are small non-negative integers;
/// the initial address space is handle [`INITIAL_SPACE`].
pub mod space_cmd {
    /// `address_space_op(CREATE)`: a new empty space; returns its handle.
    pub const CREATE: u64 = 0;
    /// `address_space_op(DESTROY, handle)`: frees the space's page tables (not the
    /// gfns mapped in it). `-EBUSY` while it is the kernel or user root.
    pub const DESTROY: u64 = 1;
    /// `address_space_op(SWITCH, kernel, user)`: installs `kernel` as the guest-kernel
    /// root (now) and `user` ([`super::NO_SPACE`] for none) as the guest-user root.
    pub const SWITCH: u64 = 2;
    /// `address_space_op(FLUSH_VA, handle, va)`: TLB flush of one page.
    pub const FLUSH_VA: u64 = 3;
    /// `address_space_op(FLUSH_ALL, handle)`: TLB flush of the whole space.
    pub const FLUSH_ALL: u64 = 4;
    /// `address_space_op(QUERY, handle, va)`: returns `gfn << 12 | map flags` of the page
    /// containing `va` (for a 2 MiB mapping, the gfn of that 4 KiB part and
    /// [`super::map_flags::LARGE`]), or `-ENOENT`.
    pub const QUERY: u64 = 5;
}

/// The initial address space the hypervisor built the domain in.
pub const INITIAL_SPACE: u64 = 0;
/// "No address space" in `SWITCH`'s user argument.
pub const NO_SPACE: u64 = u64::MAX;
/// Most address spaces one domain may hold at once.
pub const SPACES_MAX: u64 = 64;

/// Operations of one [`MapEntry`].
pub mod map_op {
    /// Map `gfn` at `virtual_address` with `flags`; `-EEXIST` if anything is mapped
    /// in the range.
    pub const MAP: u32 = 0;
    /// Remove the mapping at `virtual_address` (`gfn` ignored, MUST be 0).
    pub const UNMAP: u32 = 1;
    /// Change the flags of the mapping at `virtual_address` (`gfn` ignored, MUST be 0;
    /// LARGE must match the existing mapping).
    pub const PROTECT: u32 = 2;
}

/// Mapping flags ([`MapEntry::flags`] and the low 12 bits of a QUERY result).
pub mod map_flags {
    /// Writable.
    pub const WRITABLE: u32 = 1 << 0;
    /// Reachable from guest-user mode (otherwise guest-kernel only).
    pub const USER: u32 = 1 << 1;
    /// Not executable.
    pub const NO_EXECUTE: u32 = 1 << 2;
    /// A 2 MiB page: VA and gfn aligned to 2 MiB / 512, and the 512 gfns one extent of
    /// order 9.
    pub const LARGE: u32 = 1 << 3;
    /// Write-through caching instead of write-back: the only other cache attribute a
    /// guest may choose for its RAM.
    pub const WRITE_THROUGH: u32 = 1 << 4;
    /// Every bit this version defines; any other bit is `-EINVAL`.
    pub const ALL: u32 = WRITABLE | USER | NO_EXECUTE | LARGE | WRITE_THROUGH;
}

/// One entry of `mmu_update(handle, entries, count, done)`.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct MapEntry {
    /// Page-aligned (2 MiB-aligned with LARGE) canonical guest virtual address.
    pub virtual_address: GuestVirtualAddress,
    /// The domain's own populated gfn (MAP only).
    pub gfn: Gfn,
    /// [`map_op`] value.
    pub op: u32,
    /// [`map_flags`] bits.
    pub flags: u32,
}

const _: () = {
    assert!(core::mem::size_of::<MapEntry>() == 24);
    assert!(core::mem::offset_of!(MapEntry, op) == 16);
    assert!(core::mem::offset_of!(MapEntry, flags) == 20);
};

/// Splits a successful QUERY result into `(gfn, map flags)`.
pub const fn split_query(result: u64) -> (Gfn, u32) {
    (Gfn(result >> 12), (result & 0xfff) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_splits_gfn_from_the_low_twelve_flag_bits() {
        // SPEC.md §12: `gfn << 12 | map_flags`.
        let flags = map_flags::WRITABLE | map_flags::LARGE;
        assert_eq!(split_query(0x1234 << 12 | u64::from(flags)), (Gfn(0x1234), flags));
        assert_eq!(split_query(u64::MAX), (Gfn(u64::MAX >> 12), 0xfff));
        assert_eq!(split_query(0x1000), (Gfn(1), 0));
    }
}
