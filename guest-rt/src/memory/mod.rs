//! Memory hypercalls (SPEC.md §12) with types: gfn reservation (`memory_op`), address
//! spaces (`address_space_op`) as [`Space`] handles, and batched map / unmap / protect
//! (`mmu_update`) through [`MapBatch`], which re-issues a batch the hypervisor cut at
//! [`BATCH_MAX`](hypercall_abi::memory::BATCH_MAX) entries so callers see one call for any length.
//!
//! The methods extend [`Hypercalls`](crate::hypercall::Hypercalls) (so host tests drive
//! them with a fake); the free functions below use the real hypervisor.

use hypercall_abi::memory::MapEntry;
use hypercall_abi::{Errno, Gfn};

use crate::hypercall::HYPERVISOR;

mod batch;
mod entry;
mod free_region;
mod hypercalls;
mod space;

pub use batch::MapBatch;
pub use entry::{map_entry, protect_entry, unmap_entry};
pub use free_region::FreeRegion;
pub use hypercalls::BatchResult;
pub use space::Space;

/// Populated gfns of this domain.
pub fn current_reservation() -> Result<u64, Errno> {
    HYPERVISOR.current_reservation()
}

/// This domain's quota in pages.
pub fn maximum_reservation() -> Result<u64, Errno> {
    HYPERVISOR.maximum_reservation()
}

/// One past the highest gfn this domain may have.
pub fn maximum_gfn() -> Result<u64, Errno> {
    HYPERVISOR.maximum_gfn()
}

/// See [`Hypercalls::increase_reservation`](crate::hypercall::Hypercalls::increase_reservation).
pub fn increase_reservation(gfns: &mut [u64], order: u64) -> Result<usize, Errno> {
    HYPERVISOR.increase_reservation(gfns, order)
}

/// See [`Hypercalls::decrease_reservation`](crate::hypercall::Hypercalls::decrease_reservation).
pub fn decrease_reservation(gfns: &[u64], order: u64) -> Result<usize, Errno> {
    HYPERVISOR.decrease_reservation(gfns, order)
}

/// A new empty address space.
pub fn create_space() -> Result<Space, Errno> {
    HYPERVISOR.create_space()
}

/// Destroys `space`.
pub fn destroy_space(space: Space) -> Result<(), Errno> {
    HYPERVISOR.destroy_space(space)
}

/// Installs new kernel and user roots.
pub fn switch_space(kernel: Space, user: Option<Space>) -> Result<(), Errno> {
    HYPERVISOR.switch_space(kernel, user)
}

/// `(gfn, flags)` of the page containing `virtual_address` in `space`.
pub fn query(space: Space, virtual_address: u64) -> Result<(Gfn, u32), Errno> {
    HYPERVISOR.query(space, virtual_address)
}

/// Applies `entries` to `space` (see
/// [`Hypercalls::mmu_update`](crate::hypercall::Hypercalls::mmu_update)).
pub fn mmu_update(space: Space, entries: &[MapEntry]) -> BatchResult {
    HYPERVISOR.mmu_update(space, entries)
}

/// Maps one page.
pub fn map_page(space: Space, virtual_address: u64, gfn: u64, flags: u32) -> Result<(), Errno> {
    HYPERVISOR.map_page(space, virtual_address, gfn, flags)
}

/// Unmaps one 4 KiB page.
pub fn unmap_page(space: Space, virtual_address: u64) -> Result<(), Errno> {
    HYPERVISOR.unmap_page(space, virtual_address)
}

/// Changes the flags of one mapping.
pub fn protect_page(space: Space, virtual_address: u64, flags: u32) -> Result<(), Errno> {
    HYPERVISOR.protect_page(space, virtual_address, flags)
}

/// TLB flush of all of `space`.
pub fn flush_all(space: Space) -> Result<(), Errno> {
    HYPERVISOR.flush_all(space)
}

/// TLB flush of one page of `space`.
pub fn flush_va(space: Space, virtual_address: u64) -> Result<(), Errno> {
    HYPERVISOR.flush_va(space, virtual_address)
}
