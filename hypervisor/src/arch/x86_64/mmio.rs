//! Device registers in memory (local APIC, I/O APIC): uncached 4 KiB mappings in the
//! hypervisor's direct-map slot, and volatile 32-bit access to them.
//!
//! `memory::install_hypervisor_tables` maps only RAM (`[0, ram_end)`), and the platform
//! devices sit above it (0xfec00000, 0xfee00000 on microvm and q35 with the 512 MiB xtask
//! gives them). A device page is mapped at the same place the direct map would put it
//! (`DIRECT_MAP_BASE + physical`) so addresses stay recognisable, but uncached (PCD|PWT:
//! UC with the power-on PAT) and no-execute. The entries are added below the PML4 entry
//! of slot 256, which every guest root shares (it points at the same directory-pointer
//! table), so a page mapped after domains exist is visible in their spaces too.

use super::memory::{virtual_address, DirectMap};
use hypercall_abi::layout::HYPERVISOR_START;
use hypervisor::mm::frames::{Frame, FrameAllocator};
use hypervisor::mm::paging::{next_table, FrameMemory, PageFlags, ADDRESS_MASK};

const PAGE: u64 = 4096;

/// Maps the 4 KiB device page at `physical` (page-aligned) uncached and returns its
/// hypervisor virtual address. `root` is the hypervisor's PML4 (after
/// `install_hypervisor_tables`). A 2 MiB direct-map page covering it (RAM reaching past
/// the device, not the case on the machines xtask runs) is split so only this page
/// changes attributes. `None` if a page-table frame cannot be allocated.
pub fn map_device_page(frames: &mut FrameAllocator, root: Frame, physical: u64) -> Option<DevicePage> {
    assert!(physical.is_multiple_of(PAGE), "device page {physical:#x} is not page-aligned");
    let virtual_page = virtual_address(physical);
    let index = |level: u32| ((virtual_page >> (12 + 9 * level)) & 511) as usize;
    let table_flags = (PageFlags::PRESENT | PageFlags::WRITABLE).bits();
    let mut memory = DirectMap;
    let mut table = root;
    debug_assert_eq!(index(3), (HYPERVISOR_START >> 39) as usize & 511);
    for level in [3u32, 2, 1] {
        let entry = memory.read_entry(table, index(level));
        let next = if entry & PageFlags::PRESENT.bits() == 0 {
            let fresh = frames.allocate()?;
            memory.zero(fresh);
            memory.write_entry(table, index(level), fresh.address() | table_flags);
            fresh
        } else if entry & PageFlags::HUGE.bits() != 0 {
            // Only 2 MiB leaves exist in the direct map (level 1 here); a 1 GiB leaf would
            // be someone else's mapping, which this must not rewrite.
            assert_eq!(level, 1, "1 GiB leaf over device page {physical:#x}");
            let split = frames.allocate()?;
            let base = entry & ADDRESS_MASK & !((2 << 20) - 1);
            let small_flags = entry & !ADDRESS_MASK & !PageFlags::HUGE.bits();
            for slot in 0..512u64 {
                memory.write_entry(split, slot as usize, (base + slot * PAGE) | small_flags);
            }
            memory.write_entry(table, index(level), split.address() | table_flags);
            // INVLPG drops the 2 MiB translation even if it is global.
            x86_64::instructions::tlb::flush(x86_64::VirtAddr::new(virtual_page));
            split
        } else {
            next_table(&memory, table, index(level)).expect("a present entry that is not a leaf")
        };
        table = next;
    }
    let leaf = physical
        | (PageFlags::PRESENT
            | PageFlags::WRITABLE
            | PageFlags::NO_CACHE
            | PageFlags::WRITE_THROUGH
            | PageFlags::NO_EXECUTE)
            .bits();
    let previous = memory.read_entry(table, index(0));
    memory.write_entry(table, index(0), leaf);
    if previous & PageFlags::PRESENT.bits() != 0 {
        x86_64::instructions::tlb::flush(x86_64::VirtAddr::new(virtual_page));
    }
    Some(DevicePage(virtual_page))
}

/// A device page mapped by [`map_device_page`]: only such pages hand out registers.
#[derive(Copy, Clone, Debug)]
pub struct DevicePage(u64);

impl DevicePage {
    /// The 32-bit register at `offset`.
    pub fn register(self, offset: u64) -> Register {
        assert!(offset < PAGE && offset.is_multiple_of(4));
        Register(self.0 + offset)
    }
}

/// A 32-bit device register.
#[derive(Copy, Clone, Debug)]
pub struct Register(u64);

impl Register {
    pub fn read(self) -> u32 {
        // SAFETY: the address lies in a device page mapped uncached by `map_device_page`
        // (the only way to get a `DevicePage`, and mappings are never removed), aligned.
        unsafe { (self.0 as *const u32).read_volatile() }
    }

    pub fn write(self, value: u32) {
        // SAFETY: as in `read`; device registers have no Rust-visible aliases.
        unsafe { (self.0 as *mut u32).write_volatile(value) }
    }
}
