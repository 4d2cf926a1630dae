//! Page-table updates the PV way: the guest names the machine address of the entry it
//! wants changed (`mmu_update`, public/xen.h) and flushes its own TLB (`mmuext_op`).
//! The bootstrap tables are walked read-only: each entry gives the next table's machine
//! frame, the machine-to-physical table Xen maps at the start of its hole gives its pfn,
//! and the bootstrap region maps pfn `n` at `n * 4096` (this image's VIRT_BASE is 0).

use crate::xen::{self, StartInfo, DOMID_SELF, HYPERVISOR_MMUEXT_OP, HYPERVISOR_MMU_UPDATE, PTE_FLAGS};

/// Xen's read-only machine-to-physical table (public/arch-x86/xen-x86_64.h).
const MACHINE_TO_PHYSICAL: u64 = 0xffff_8000_0000_0000;
const ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;
const PRESENT: u64 = 1;
const LARGE: u64 = 1 << 7;
const PAGE: u64 = 4096;
/// mmuext_op command: flush this vCPU's whole TLB.
const MMUEXT_TLB_FLUSH_LOCAL: u32 = 6;

/// One `mmu_update` request: `ptr` is the entry's machine address (low bits 0: a normal
/// page-table update), `val` its new contents.
#[repr(C)]
#[derive(Copy, Clone, Default)]
pub struct MmuUpdate {
    pub ptr: u64,
    pub val: u64,
}

#[repr(C)]
struct MmuextOp {
    cmd: u32,
    first: u64,
    second: u64,
}

/// The bootstrap page tables and pfn list Xen gave this domain.
#[derive(Copy, Clone)]
pub struct Paging {
    root: u64,
    mfn_list: u64,
}

impl Paging {
    pub fn new(start: &StartInfo) -> Paging {
        Paging { root: start.pt_base, mfn_list: start.mfn_list }
    }

    /// The machine frame behind pfn `pfn` of the bootstrap region.
    pub fn mfn_of_pfn(self, pfn: u64) -> u64 {
        // SAFETY: the pfn list is in the bootstrap region, mapped, one entry per pfn.
        unsafe { core::ptr::read_volatile((self.mfn_list as *const u64).add(pfn as usize)) }
    }

    /// Where the bootstrap region maps machine frame `mfn`.
    fn virtual_of_mfn(mfn: u64) -> u64 {
        // SAFETY: Xen maps its machine-to-physical table read-only into every PV guest.
        let pfn = unsafe { core::ptr::read_volatile((MACHINE_TO_PHYSICAL as *const u64).add(mfn as usize)) };
        pfn * PAGE
    }

    /// The machine address of the L1 entry that maps `address`, and that entry.
    pub fn leaf_entry(self, address: u64) -> Result<(u64, u64), &'static str> {
        let mut table = self.root;
        let mut leaf_table = 0;
        for level in [4, 3, 2] {
            let index = (address >> (12 + 9 * (level - 1))) & 511;
            // SAFETY: `table` is a bootstrap page table, mapped read-only in the region.
            let entry = unsafe { core::ptr::read_volatile((table as *const u64).add(index as usize)) };
            if entry & PRESENT == 0 || (level < 4 && entry & LARGE != 0) {
                return Err("the address has no 4 KiB leaf table");
            }
            leaf_table = entry & ADDRESS_MASK;
            table = Self::virtual_of_mfn(leaf_table >> 12);
        }
        let offset = ((address >> 12) & 511) * 8;
        // SAFETY: `table` is now the leaf table's view in the bootstrap region.
        let entry = unsafe { core::ptr::read_volatile((table + offset) as *const u64) };
        Ok((leaf_table + offset, entry))
    }
}

/// Applies `requests` in one `mmu_update`; Xen's result (0 = all applied).
#[inline(always)]
pub fn mmu_update(requests: &[MmuUpdate]) -> i64 {
    xen::hypercall4(HYPERVISOR_MMU_UPDATE, requests.as_ptr() as u64, requests.len() as u64, 0, u64::from(DOMID_SELF))
}

/// Flushes this vCPU's TLB: what a PV kernel does after taking mappings away.
#[inline(always)]
pub fn flush_tlb() -> i64 {
    let op = MmuextOp { cmd: MMUEXT_TLB_FLUSH_LOCAL, first: 0, second: 0 };
    xen::hypercall4(HYPERVISOR_MMUEXT_OP, core::ptr::addr_of!(op) as u64, 1, 0, u64::from(DOMID_SELF))
}

/// `N` pages of this image's bss taken out of its mapping, to be mapped back on demand:
/// each page's L1 entry (machine address) and its own frame, a request that maps it and
/// one that unmaps it.
pub struct Window<const N: usize> {
    pub base: u64,
    pub map: [MmuUpdate; N],
    pub unmap: [MmuUpdate; N],
}

impl<const N: usize> Window<N> {
    pub const fn empty() -> Window<N> {
        Window { base: 0, map: [MmuUpdate { ptr: 0, val: 0 }; N], unmap: [MmuUpdate { ptr: 0, val: 0 }; N] }
    }

    /// Takes `N` pages at `base` (page-aligned, in the bootstrap region, used by nothing
    /// else) out of the mapping, checking on the way that the walk finds each page's own
    /// frame (the pfn list's) in its leaf entry.
    pub fn take(&mut self, paging: Paging, base: u64) -> Result<(), &'static str> {
        self.base = base;
        for index in 0..N {
            let address = base + index as u64 * PAGE;
            let (slot, entry) = paging.leaf_entry(address)?;
            let mfn = paging.mfn_of_pfn(address / PAGE);
            if entry & PRESENT == 0 || (entry & ADDRESS_MASK) >> 12 != mfn {
                return Err("a window page's leaf entry is not its pfn's frame (is VIRT_BASE still 0?)");
            }
            self.map[index] = MmuUpdate { ptr: slot, val: (mfn << 12) | PTE_FLAGS };
            self.unmap[index] = MmuUpdate { ptr: slot, val: 0 };
        }
        self.unmap_first(N)
    }

    /// Unmaps the first `count` pages in one batch and flushes the TLB.
    pub fn unmap_first(&self, count: usize) -> Result<(), &'static str> {
        if mmu_update(&self.unmap[..count]) != 0 {
            return Err("mmu_update unmapping the window failed");
        }
        if flush_tlb() != 0 {
            return Err("mmuext_op TLB_FLUSH_LOCAL failed");
        }
        Ok(())
    }

    /// The address of page `index`.
    pub fn page(&self, index: usize) -> u64 {
        self.base + index as u64 * PAGE
    }
}
