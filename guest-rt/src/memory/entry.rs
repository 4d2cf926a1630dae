//! The three kinds of `mmu_update` entry.

use hypercall_abi::memory::{map_op, MapEntry};
use hypercall_abi::{Gfn, GuestVirtualAddress};

/// A `MAP` entry: `gfn` at `virtual_address` with [`map_flags`](hypercall_abi::memory::map_flags) `flags`.
pub const fn map_entry(virtual_address: u64, gfn: u64, flags: u32) -> MapEntry {
    MapEntry { virtual_address: GuestVirtualAddress(virtual_address), gfn: Gfn(gfn), op: map_op::MAP, flags }
}

/// An `UNMAP` entry for the page at `virtual_address` (`LARGE` in `flags` for a 2 MiB
/// mapping; other flags are ignored by the hypervisor but must still be valid bits).
pub const fn unmap_entry(virtual_address: u64, flags: u32) -> MapEntry {
    MapEntry { virtual_address: GuestVirtualAddress(virtual_address), gfn: Gfn(0), op: map_op::UNMAP, flags }
}

/// A `PROTECT` entry: new `flags` for the mapping at `virtual_address`.
pub const fn protect_entry(virtual_address: u64, flags: u32) -> MapEntry {
    MapEntry { virtual_address: GuestVirtualAddress(virtual_address), gfn: Gfn(0), op: map_op::PROTECT, flags }
}
