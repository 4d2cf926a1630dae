//! Page faults in user space, decided: map a zeroed page (demand paging), copy a shared
//! page on write (copy-on-write after `fork`), or send SIGSEGV. And the reference counts
//! that tell a shared frame from a private one.
//!
//! After `fork`, parent and child map the same frames read-only and each frame's count
//! (kept by the process layer, which owns the frames) says how many address spaces hold it. A write fault on such a page in a writable region
//! copies it, unless the faulting space is the last holder, which simply gets write access
//! back. The decision is pure; the process layer carries it out through the platform.

use super::regions::{Access, Regions};
use crate::exec::program::Protection;

/// What the faulting page looks like in the faulting address space.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Mapping {
    /// Nothing is mapped there.
    Absent,
    /// A frame is mapped, with this write permission.
    Present {
        /// The frame.
        frame: u64,
        /// Mapped writable.
        writable: bool,
        /// How many address spaces (or caches) hold the frame: more than one means shared.
        holders: u32,
    },
}

/// What to do about a fault.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum FaultAction {
    /// Map a fresh zeroed frame with the region's access, then retry.
    MapZeroed(Protection),
    /// Copy the shared frame into a fresh one, map that with the region's access (the old
    /// frame loses a holder), then retry.
    CopyOnWrite {
        /// The shared frame.
        frame: u64,
        /// The access to map the copy with.
        protection: Protection,
    },
    /// The faulting space is the frame's only holder: map it writable again, then retry.
    MakeWritable(Protection),
    /// The access is not allowed: SIGSEGV.
    Segfault,
}

/// Decides a user-mode fault at `address` for `access`, given the regions and what is
/// mapped at the faulting page.
pub fn decide(regions: &Regions, address: u64, access: Access, mapping: Mapping) -> FaultAction {
    let Some(region) = regions.find(address) else { return FaultAction::Segfault };
    if !regions.allows(address, access) {
        return FaultAction::Segfault;
    }
    match mapping {
        Mapping::Absent => FaultAction::MapZeroed(region.protection),
        Mapping::Present { frame, writable: false, holders } if access == Access::Write => {
            if holders > 1 {
                FaultAction::CopyOnWrite { frame, protection: region.protection }
            } else {
                FaultAction::MakeWritable(region.protection)
            }
        }
        // Present with the access allowed: a fault the mapping should not have caused
        // (a stale entry after mprotect); map it again with the region's access.
        Mapping::Present { .. } => FaultAction::MakeWritable(region.protection),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::regions::Purpose;

    const RW: Protection = Protection { read: true, write: true, execute: false };
    const RX: Protection = Protection { read: true, write: false, execute: true };

    fn regions() -> Regions {
        let mut regions = Regions::new(0x8000_0000_0000, 0x7f00_0000_0000, 0x500000, 1 << 30);
        regions.insert(0x400000, 0x1000, RX, Purpose::Program).unwrap();
        regions.insert(0x401000, 0x2000, RW, Purpose::Program).unwrap();
        regions
    }

    #[test]
    fn demand_paging_and_segfaults() {
        let regions = regions();
        assert_eq!(decide(&regions, 0x401010, Access::Write, Mapping::Absent), FaultAction::MapZeroed(RW));
        assert_eq!(decide(&regions, 0x400010, Access::Write, Mapping::Absent), FaultAction::Segfault);
        assert_eq!(decide(&regions, 0x401010, Access::Execute, Mapping::Absent), FaultAction::Segfault);
        assert_eq!(decide(&regions, 0x10, Access::Read, Mapping::Absent), FaultAction::Segfault);
        assert_eq!(decide(&regions, 0x403000, Access::Read, Mapping::Absent), FaultAction::Segfault);
    }

    #[test]
    fn writes_to_shared_frames_copy_and_the_last_holder_keeps_its_frame() {
        let regions = regions();
        // fork: parent and child hold frame 77
        let shared = Mapping::Present { frame: 77, writable: false, holders: 2 };
        assert_eq!(
            decide(&regions, 0x401000, Access::Write, shared),
            FaultAction::CopyOnWrite { frame: 77, protection: RW }
        );
        // The child copied and let go; the parent is now the only holder.
        let last = Mapping::Present { frame: 77, writable: false, holders: 1 };
        assert_eq!(decide(&regions, 0x401000, Access::Write, last), FaultAction::MakeWritable(RW));
        let text = Mapping::Present { frame: 5, writable: false, holders: 4 };
        assert_eq!(decide(&regions, 0x400000, Access::Write, text), FaultAction::Segfault, "text stays read-only");
    }
}
