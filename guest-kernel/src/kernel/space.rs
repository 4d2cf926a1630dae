//! A process's user address space: the platform's handle, the regions (core's VMAs) and
//! the kernel's own record of every page it mapped there. The record is the truth the
//! kernel acts on: the platform is told each change ([`PageUpdate`]) and never asked
//! what is mapped.
//!
//! Pages are mapped lazily: a region is only a promise until a fault (or the kernel's own
//! access to user memory, [`crate::kernel::user_access`]) needs a page. After `fork` both
//! spaces hold the same frames read-only; the first write copies (copy-on-write).

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use guest_kernel_core::exec::program::Protection;
use guest_kernel_core::memory::faults::{self, FaultAction, Mapping};
use guest_kernel_core::memory::regions::{Access as RegionAccess, Regions};

use super::frames::Frames;
use crate::arch::machine::{Access, AddressSpace, Frame, Machine, MachineError, PageAccess, PageUpdate, PAGE_SIZE};

/// One mapped page.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// The frame behind it.
    pub frame: Frame,
    /// What the platform's mapping allows now (a COW page is mapped read-only in a
    /// writable region).
    pub access: PageAccess,
}

/// How a fault (or a kernel access on a process's behalf) ended.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// The page is mapped as the access needs.
    Mapped,
    /// The access is not allowed: SIGSEGV (or EFAULT in a system call).
    Refused,
    /// No frame could be had: the process is out of memory.
    OutOfMemory,
    /// The platform refused a change it should have accepted.
    Platform(MachineError),
}

/// A user address space.
pub struct Space {
    handle: AddressSpace,
    /// The regions: what may be mapped.
    pub regions: Regions,
    pages: BTreeMap<u64, Page>,
}

const fn page_access(protection: Protection) -> PageAccess {
    PageAccess { writable: protection.write, executable: protection.execute }
}

fn region_access(access: Access) -> RegionAccess {
    match access {
        Access::Read => RegionAccess::Read,
        Access::Write => RegionAccess::Write,
        Access::Execute => RegionAccess::Execute,
    }
}

impl Space {
    /// A new empty space with `regions`.
    pub fn create<M: Machine>(machine: &M, regions: Regions) -> Result<Space, MachineError> {
        Ok(Space { handle: machine.create_space()?, regions, pages: BTreeMap::new() })
    }

    /// The platform's handle.
    pub const fn handle(&self) -> AddressSpace {
        self.handle
    }

    /// Pages mapped (resident).
    pub fn resident_pages(&self) -> usize {
        self.pages.len()
    }

    /// The page at page-aligned `address`, if mapped.
    pub fn page(&self, address: u64) -> Option<Page> {
        self.pages.get(&address).copied()
    }

    fn apply<M: Machine>(&self, machine: &M, update: PageUpdate) -> Result<(), MachineError> {
        machine.update_space(self.handle, &[update]).map_err(|(_, error)| error)
    }

    /// Maps `frame` (whose holder this space becomes) at `address` with `access`.
    pub fn map<M: Machine>(
        &mut self,
        machine: &M,
        address: u64,
        frame: Frame,
        access: PageAccess,
    ) -> Result<(), MachineError> {
        self.apply(machine, PageUpdate::Map { address, frame, access })?;
        self.pages.insert(address, Page { frame, access });
        Ok(())
    }

    /// Makes `access` to `address` possible the way a fault would: maps a zeroed page,
    /// copies a shared one, or re-enables writing. Pages already mapped as needed are left.
    pub fn resolve<M: Machine>(
        &mut self,
        machine: &M,
        frames: &mut Frames,
        address: u64,
        access: Access,
    ) -> Resolution {
        let page_address = address & !(PAGE_SIZE - 1);
        let mapping = match self.pages.get(&page_address) {
            None => Mapping::Absent,
            Some(page) => {
                let enough = match access {
                    Access::Read => true,
                    Access::Write => page.access.writable,
                    Access::Execute => page.access.executable,
                };
                if enough && self.regions.allows(address, region_access(access)) {
                    return Resolution::Mapped;
                }
                Mapping::Present {
                    frame: page.frame.0,
                    writable: page.access.writable,
                    holders: frames.holders(page.frame),
                }
            }
        };
        let action = faults::decide(&self.regions, address, region_access(access), mapping);
        match action {
            FaultAction::Segfault => Resolution::Refused,
            FaultAction::MapZeroed(protection) => {
                let Some(frame) = frames.allocate() else { return Resolution::OutOfMemory };
                if let Err(error) = self.map(machine, page_address, frame, page_access(protection)) {
                    let _ = frames.release(frame);
                    return Resolution::Platform(error);
                }
                Resolution::Mapped
            }
            FaultAction::CopyOnWrite { frame, protection } => {
                let Some(copy) = frames.duplicate(Frame(frame)) else { return Resolution::OutOfMemory };
                let access = page_access(protection);
                let swap = [
                    PageUpdate::Unmap { address: page_address },
                    PageUpdate::Map { address: page_address, frame: copy, access },
                ];
                if let Err((done, error)) = machine.update_space(self.handle, &swap) {
                    let _ = frames.release(copy);
                    if done == 1 {
                        // The old mapping is gone: this space no longer holds it.
                        self.pages.remove(&page_address);
                        let _ = frames.release(Frame(frame));
                    }
                    return Resolution::Platform(error);
                }
                self.pages.insert(page_address, Page { frame: copy, access });
                let _ = frames.release(Frame(frame));
                Resolution::Mapped
            }
            FaultAction::MakeWritable(protection) => {
                let access = page_access(protection);
                if let Err(error) = self.apply(machine, PageUpdate::Protect { address: page_address, access }) {
                    return Resolution::Platform(error);
                }
                if let Some(page) = self.pages.get_mut(&page_address) {
                    page.access = access;
                }
                Resolution::Mapped
            }
        }
    }

    /// Unmaps every page in `[start, end)` and releases its frame.
    pub fn unmap_range<M: Machine>(
        &mut self,
        machine: &M,
        frames: &mut Frames,
        start: u64,
        end: u64,
    ) -> Result<(), MachineError> {
        let addresses: Vec<u64> = self.pages.range(start..end).map(|(&address, _)| address).collect();
        for chunk in addresses.chunks(64) {
            let updates: Vec<PageUpdate> = chunk.iter().map(|&address| PageUpdate::Unmap { address }).collect();
            let result = machine.update_space(self.handle, &updates);
            let done = match result {
                Ok(()) => chunk.len(),
                Err((done, _)) => done,
            };
            for address in &chunk[..done] {
                if let Some(page) = self.pages.remove(address) {
                    let _ = frames.release(page.frame);
                }
            }
            result.map_err(|(_, error)| error)?;
        }
        Ok(())
    }

    /// After `mprotect` of `[start, end)`: every mapped page there takes its region's
    /// access (a shared page stays read-only until its copy-on-write fault).
    pub fn reprotect<M: Machine>(
        &mut self,
        machine: &M,
        frames: &Frames,
        start: u64,
        end: u64,
    ) -> Result<(), MachineError> {
        let mut updates = Vec::new();
        for (&address, page) in self.pages.range_mut(start..end) {
            let Some(region) = self.regions.find(address) else { continue };
            let mut access = page_access(region.protection);
            if frames.holders(page.frame) > 1 {
                access.writable = false;
            }
            if access != page.access {
                page.access = access;
                updates.push(PageUpdate::Protect { address, access });
            }
        }
        for chunk in updates.chunks(64) {
            machine.update_space(self.handle, chunk).map_err(|(_, error)| error)?;
        }
        Ok(())
    }

    /// A copy for `fork`: the same regions, every page shared read-only in both (the
    /// first write in either copies it).
    pub fn fork<M: Machine>(&mut self, machine: &M, frames: &mut Frames) -> Result<Space, MachineError> {
        let mut child = Space::create(machine, self.regions.clone())?;
        let mut parent_updates = Vec::new();
        let mut child_updates = Vec::with_capacity(self.pages.len());
        for (&address, page) in self.pages.iter_mut() {
            if page.access.writable {
                page.access.writable = false;
                parent_updates.push(PageUpdate::Protect { address, access: page.access });
            }
            child_updates.push((address, *page));
        }
        for chunk in parent_updates.chunks(64) {
            if let Err((_, error)) = machine.update_space(self.handle, chunk) {
                child.destroy(machine, frames);
                return Err(error);
            }
        }
        for chunk in child_updates.chunks(64) {
            let updates: Vec<PageUpdate> = chunk
                .iter()
                .map(|&(address, page)| PageUpdate::Map { address, frame: page.frame, access: page.access })
                .collect();
            let result = machine.update_space(child.handle, &updates);
            let done = match result {
                Ok(()) => chunk.len(),
                Err((done, _)) => done,
            };
            for &(address, page) in &chunk[..done] {
                if frames.share(page.frame).is_ok() {
                    child.pages.insert(address, page);
                }
            }
            if let Err((_, error)) = result {
                child.destroy(machine, frames);
                return Err(error);
            }
        }
        Ok(child)
    }

    /// Takes the space down: the platform's space is destroyed and every frame released.
    pub fn destroy<M: Machine>(mut self, machine: &M, frames: &mut Frames) {
        // Destroying the space removes its mappings; frames are released after, so none
        // is reused while still mapped. A space the platform refuses to destroy keeps its
        // frames (leaked rather than reused while mapped).
        if machine.destroy_space(self.handle).is_ok() {
            for (_, page) in core::mem::take(&mut self.pages) {
                let _ = frames.release(page.frame);
            }
        }
    }
}
