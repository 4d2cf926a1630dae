//! [`MapBatch`]: entries collected for one logical `mmu_update`.

extern crate alloc;

use alloc::vec::Vec;

use hypercall_abi::memory::{map_flags, MapEntry};

use super::entry::{map_entry, protect_entry, unmap_entry};
use super::hypercalls::BatchResult;
use super::space::Space;
use crate::hypercall::HYPERVISOR;

/// A list of [`MapEntry`]s applied in order by one logical `mmu_update`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapBatch {
    entries: Vec<MapEntry>,
}

impl MapBatch {
    /// An empty batch.
    pub const fn new() -> Self {
        Self { entries: Vec::new() }
    }

    /// Adds a `MAP` of `gfn` at `virtual_address`.
    pub fn map(&mut self, virtual_address: u64, gfn: u64, flags: u32) -> &mut Self {
        self.entries.push(map_entry(virtual_address, gfn, flags));
        self
    }

    /// Adds an `UNMAP` of a 4 KiB mapping at `virtual_address`.
    pub fn unmap(&mut self, virtual_address: u64) -> &mut Self {
        self.entries.push(unmap_entry(virtual_address, 0));
        self
    }

    /// Adds an `UNMAP` of a 2 MiB mapping at `virtual_address`.
    pub fn unmap_large(&mut self, virtual_address: u64) -> &mut Self {
        self.entries.push(unmap_entry(virtual_address, map_flags::LARGE));
        self
    }

    /// Adds a `PROTECT` of the mapping at `virtual_address` to `flags`.
    pub fn protect(&mut self, virtual_address: u64, flags: u32) -> &mut Self {
        self.entries.push(protect_entry(virtual_address, flags));
        self
    }

    /// Adds any entry, valid or not.
    pub fn push(&mut self, entry: MapEntry) -> &mut Self {
        self.entries.push(entry);
        self
    }

    /// The entries so far.
    pub fn entries(&self) -> &[MapEntry] {
        &self.entries
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if the batch has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Removes every entry (keeps the allocation).
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Applies the batch to `space` on the real hypervisor.
    pub fn apply(&self, space: Space) -> BatchResult {
        HYPERVISOR.mmu_update(space, &self.entries)
    }
}
