//! The domain's free region and the conversion between its addresses and gfns.

use hypercall_abi::layout::PAGE_SIZE;
use hypercall_abi::StartInfo;

/// The domain's free region (`StartInfo::free_start`, `free_pages`, `free_gfn`): its
/// gfns are contiguous, so a virtual address there and its gfn convert by offset.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct FreeRegion {
    /// First virtual address.
    pub start: u64,
    /// Pages mapped at `start`.
    pub pages: u64,
    /// The gfn mapped at `start`.
    pub gfn: u64,
}

impl FreeRegion {
    /// The free region `start` describes.
    pub const fn of(start: &StartInfo) -> Self {
        Self { start: start.free_start.0, pages: start.free_pages, gfn: start.free_gfn.0 }
    }

    /// The gfn backing `virtual_address`, if the address is inside the region.
    pub const fn gfn_of(&self, virtual_address: u64) -> Option<u64> {
        if virtual_address < self.start || (virtual_address - self.start) / PAGE_SIZE >= self.pages {
            return None;
        }
        Some(self.gfn + (virtual_address - self.start) / PAGE_SIZE)
    }

    /// The virtual address the region maps `gfn` at, if the gfn is one of the region's.
    pub const fn address_of(&self, gfn: u64) -> Option<u64> {
        if gfn < self.gfn || gfn - self.gfn >= self.pages {
            return None;
        }
        Some(self.start + (gfn - self.gfn) * PAGE_SIZE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_region_converts_both_ways() {
        let region = FreeRegion { start: 0x40_0000, pages: 10, gfn: 100 };
        assert_eq!(region.gfn_of(0x40_0000), Some(100));
        assert_eq!(region.gfn_of(0x40_9fff), Some(109));
        assert_eq!(region.gfn_of(0x40_a000), None);
        assert_eq!(region.gfn_of(0x3f_ffff), None);
        assert_eq!(region.address_of(105), Some(0x40_5000));
        assert_eq!(region.address_of(110), None);
        assert_eq!(region.address_of(99), None);
    }
}
