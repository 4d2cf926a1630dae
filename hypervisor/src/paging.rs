//! Guest address spaces: 4-level x86_64 page tables that only the hypervisor writes.

use crate::frame_allocator::{Frame, FrameSource};
use bitflags::bitflags;
use core::fmt;
use hypercall_abi::layout::{is_canonical, HYPERVISOR_END, HYPERVISOR_START, PAGE_SIZE};

bitflags! {
    /// Bits of a page-table entry (Intel SDM vol. 3, 4.5).
    #[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
    pub struct PageFlags: u64 {
        const PRESENT = 1 << 0;
        const WRITABLE = 1 << 1;
        const USER = 1 << 2;
        const WRITE_THROUGH = 1 << 3;
        const NO_CACHE = 1 << 4;
        const ACCESSED = 1 << 5;
        const DIRTY = 1 << 6;
        /// Page-size bit in level-3 and level-2 entries (1 GiB / 2 MiB pages). In a level-1
        /// entry the same bit is PAT, which `map` never sets.
        const HUGE = 1 << 7;
        const GLOBAL = 1 << 8;
        const NO_EXECUTE = 1 << 63;
    }
}

/// Physical-address bits of a page-table entry that points to a 4 KiB frame or a table.
pub const ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;
/// Address bits of a level-3 entry mapping a 1 GiB page.
const HUGE_1G_MASK: u64 = 0x000f_ffff_c000_0000;
/// Address bits of a level-2 entry mapping a 2 MiB page.
const HUGE_2M_MASK: u64 = 0x000f_ffff_ffe0_0000;

/// Entries per table.
const ENTRIES: usize = 512;
/// Flags of every intermediate entry: as permissive as possible, so the leaf alone
/// decides what the guest may do (the CPU ANDs writable/user across levels).
const INTERMEDIATE: u64 = PageFlags::PRESENT.bits() | PageFlags::WRITABLE.bits() | PageFlags::USER.bits();

/// First PML4 slot of the hypervisor's range (256).
pub const HYPERVISOR_FIRST_SLOT: usize = pml4_index(HYPERVISOR_START);
/// One past the last PML4 slot of the hypervisor's range (272).
pub const HYPERVISOR_END_SLOT: usize = HYPERVISOR_FIRST_SLOT + ((HYPERVISOR_END - HYPERVISOR_START) >> 39) as usize;

const _: () = assert!(HYPERVISOR_FIRST_SLOT == 256 && HYPERVISOR_END_SLOT == 272);

const fn pml4_index(virtual_address: u64) -> usize {
    ((virtual_address >> 39) & 511) as usize
}

/// Index into the table at `level` (4 = PML4 .. 1 = page table) for `virtual_address`.
const fn table_index(virtual_address: u64, level: u32) -> usize {
    ((virtual_address >> (12 + 9 * (level - 1))) & 511) as usize
}

const fn is_hypervisor_address(virtual_address: u64) -> bool {
    virtual_address >= HYPERVISOR_START && virtual_address < HYPERVISOR_END
}

const fn is_guest_slot(slot: usize) -> bool {
    slot < HYPERVISOR_FIRST_SLOT || slot >= HYPERVISOR_END_SLOT
}

/// Access to physical frames, implemented by the machine shell (through its direct map)
/// and by a fake in host tests. Callers keep `offset + length <= 4096` and `index < 512`.
pub trait FrameMemory {
    /// Reads entry `index` of the page table in `table`.
    fn read_entry(&self, table: Frame, index: usize) -> u64;
    /// Writes entry `index` of the page table in `table`.
    fn write_entry(&mut self, table: Frame, index: usize, value: u64);
    /// Fills `frame` with zeros.
    fn zero(&mut self, frame: Frame);
    /// Copies `buffer.len()` bytes starting at `offset` in `frame` into `buffer`.
    fn read(&self, frame: Frame, offset: usize, buffer: &mut [u8]);
    /// Copies `bytes` into `frame` starting at `offset`.
    fn write(&mut self, frame: Frame, offset: usize, bytes: &[u8]);
}

/// Why a mapping was refused. Nothing was mapped.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum MapError {
    /// The virtual address is not canonical.
    NonCanonical,
    /// The virtual address is in the hypervisor's reserved range.
    HypervisorRange,
    /// The virtual address is not page aligned.
    Unaligned,
    /// Something is already mapped there.
    AlreadyMapped,
    /// No frame for a page table.
    OutOfFrames,
    /// The frame lies beyond what a page-table entry can address (2^52 bytes).
    FrameOutOfRange,
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NonCanonical => "virtual address is not canonical",
            Self::HypervisorRange => "virtual address is in the hypervisor's reserved range",
            Self::Unaligned => "virtual address is not page aligned",
            Self::AlreadyMapped => "virtual address is already mapped",
            Self::OutOfFrames => "out of memory for page tables",
            Self::FrameOutOfRange => "frame is beyond the physical address width",
        })
    }
}

/// One guest address space. The hypervisor's PML4 slots 256..272 are shared with the
/// hypervisor's own tables (copied at creation) and never modified, followed or freed here.
#[derive(Debug)]
pub struct AddressSpace {
    root: Frame,
    table_frames: u64,
}

impl AddressSpace {
    /// Allocates an empty address space whose hypervisor slots are copies of
    /// `hypervisor_root`'s entries 256..272. The hypervisor must populate all sixteen of
    /// those slots before creating spaces: later changes to its PML4 are not propagated.
    pub fn new(memory: &mut impl FrameMemory, frames: &mut impl FrameSource, hypervisor_root: Frame) -> Result<Self, MapError> {
        let root = frames.allocate().ok_or(MapError::OutOfFrames)?;
        memory.zero(root);
        for slot in HYPERVISOR_FIRST_SLOT..HYPERVISOR_END_SLOT {
            let entry = memory.read_entry(hypervisor_root, slot);
            memory.write_entry(root, slot, entry);
        }
        Ok(Self { root, table_frames: 1 })
    }

    /// The PML4 frame (what CR3 gets).
    pub fn root(&self) -> Frame {
        self.root
    }

    /// Page-table frames this space owns, root included.
    pub fn table_frames(&self) -> u64 {
        self.table_frames
    }

    /// Maps the 4 KiB page at `virtual_address` to `frame` with `flags` (PRESENT is always
    /// added; HUGE, which is PAT in a leaf, is always removed). Missing intermediate tables
    /// are created and linked immediately, so if a later allocation fails they are still
    /// owned by this space and `destroy` frees them: nothing leaks and nothing half-mapped
    /// is visible (the leaf is written last).
    pub fn map(
        &mut self,
        memory: &mut impl FrameMemory,
        frames: &mut impl FrameSource,
        virtual_address: u64,
        frame: Frame,
        flags: PageFlags,
    ) -> Result<(), MapError> {
        if !is_canonical(virtual_address) {
            return Err(MapError::NonCanonical);
        }
        if is_hypervisor_address(virtual_address) {
            return Err(MapError::HypervisorRange);
        }
        if !virtual_address.is_multiple_of(PAGE_SIZE) {
            return Err(MapError::Unaligned);
        }
        if frame.number() > (ADDRESS_MASK >> 12) {
            return Err(MapError::FrameOutOfRange);
        }
        let mut table = self.root;
        for level in [4, 3, 2] {
            let index = table_index(virtual_address, level);
            let entry = memory.read_entry(table, index);
            if entry & PageFlags::PRESENT.bits() == 0 {
                let new_table = frames.allocate().ok_or(MapError::OutOfFrames)?;
                memory.zero(new_table);
                self.table_frames += 1;
                memory.write_entry(table, index, new_table.address() | INTERMEDIATE);
                table = new_table;
            } else if level != 4 && entry & PageFlags::HUGE.bits() != 0 {
                return Err(MapError::AlreadyMapped);
            } else {
                table = Frame::containing(entry & ADDRESS_MASK);
            }
        }
        let index = table_index(virtual_address, 1);
        if memory.read_entry(table, index) & PageFlags::PRESENT.bits() != 0 {
            return Err(MapError::AlreadyMapped);
        }
        let leaf_flags = (flags | PageFlags::PRESENT) - PageFlags::HUGE;
        memory.write_entry(table, index, frame.address() | leaf_flags.bits());
        Ok(())
    }

    /// The frame and effective flags of the page containing `virtual_address`: WRITABLE and
    /// USER only if every level grants them, NO_EXECUTE if any level sets it. Inside a huge
    /// page the 4 KiB frame that contains the address is returned (HUGE stays set in the
    /// flags). `None` for non-canonical, hypervisor-range and unmapped addresses.
    pub fn translate(&self, memory: &impl FrameMemory, virtual_address: u64) -> Option<(Frame, PageFlags)> {
        if !is_canonical(virtual_address) || is_hypervisor_address(virtual_address) {
            return None;
        }
        let mut writable = true;
        let mut user = true;
        let mut no_execute = false;
        let mut table = self.root;
        for level in [4, 3, 2, 1] {
            let entry = memory.read_entry(table, table_index(virtual_address, level));
            if entry & PageFlags::PRESENT.bits() == 0 {
                return None;
            }
            let flags = PageFlags::from_bits_truncate(entry);
            writable &= flags.contains(PageFlags::WRITABLE);
            user &= flags.contains(PageFlags::USER);
            no_execute |= flags.contains(PageFlags::NO_EXECUTE);
            let huge = (level == 3 || level == 2) && flags.contains(PageFlags::HUGE);
            let frame = if huge {
                let (mask, pages_inside) = if level == 3 { (HUGE_1G_MASK, 0x3ffff) } else { (HUGE_2M_MASK, 0x1ff) };
                Frame::from_number(((entry & mask) >> 12) + ((virtual_address >> 12) & pages_inside))
            } else {
                Frame::containing(entry & ADDRESS_MASK)
            };
            if level == 1 || huge {
                let mut effective = flags;
                effective.set(PageFlags::WRITABLE, writable);
                effective.set(PageFlags::USER, user);
                effective.set(PageFlags::NO_EXECUTE, no_execute);
                return Some((frame, effective));
            }
            table = frame;
        }
        None
    }

    /// Removes the 4 KiB mapping at the page-aligned `virtual_address` and returns its frame
    /// (the caller flushes the TLB and decides what happens to the frame). `None` if nothing
    /// is mapped there, the address is not a guest page address, or it lies inside a huge page.
    /// Tables emptied by this stay allocated until `destroy`.
    pub fn unmap(&mut self, memory: &mut impl FrameMemory, virtual_address: u64) -> Option<Frame> {
        if !is_canonical(virtual_address) || is_hypervisor_address(virtual_address) || !virtual_address.is_multiple_of(PAGE_SIZE) {
            return None;
        }
        let mut table = self.root;
        for level in [4, 3, 2] {
            let entry = memory.read_entry(table, table_index(virtual_address, level));
            if entry & PageFlags::PRESENT.bits() == 0 || (level != 4 && entry & PageFlags::HUGE.bits() != 0) {
                return None;
            }
            table = Frame::containing(entry & ADDRESS_MASK);
        }
        let index = table_index(virtual_address, 1);
        let entry = memory.read_entry(table, index);
        if entry & PageFlags::PRESENT.bits() == 0 {
            return None;
        }
        memory.write_entry(table, index, 0);
        Some(Frame::containing(entry & ADDRESS_MASK))
    }

    /// Frees every page-table frame of the guest slots (0..256, 272..512) and the root.
    /// Leaf frames (the guest's data) and the shared hypervisor slots are left alone.
    pub fn destroy(self, memory: &mut impl FrameMemory, frames: &mut impl FrameSource) {
        for slot in (0..ENTRIES).filter(|&slot| is_guest_slot(slot)) {
            let entry = memory.read_entry(self.root, slot);
            if entry & PageFlags::PRESENT.bits() != 0 {
                free_table(memory, frames, Frame::containing(entry & ADDRESS_MASK), 3);
            }
        }
        frames.free(self.root);
    }
}

/// Frees the table at `level` (3..=1) and every table below it. Huge-page entries and
/// level-1 entries point to data frames, which are not ours to free.
fn free_table(memory: &mut impl FrameMemory, frames: &mut impl FrameSource, table: Frame, level: u32) {
    if level > 1 {
        for index in 0..ENTRIES {
            let entry = memory.read_entry(table, index);
            if entry & PageFlags::PRESENT.bits() != 0 && entry & PageFlags::HUGE.bits() == 0 {
                free_table(memory, frames, Frame::containing(entry & ADDRESS_MASK), level - 1);
            }
        }
    }
    frames.free(table);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{TestFrames, TestMemory};

    const RW_USER: PageFlags = PageFlags::WRITABLE.union(PageFlags::USER);

    /// A hypervisor PML4 whose slots 256..272 point at a marker table, plus one guest-slot
    /// entry that must not be copied.
    fn setup() -> (TestMemory, TestFrames, Frame) {
        let mut memory = TestMemory::default();
        let hypervisor_root = Frame::from_number(0x10);
        memory.zero(hypervisor_root);
        for slot in HYPERVISOR_FIRST_SLOT..HYPERVISOR_END_SLOT {
            memory.write_entry(hypervisor_root, slot, 0x20_000 | (slot as u64 * 0x1000) | 3);
        }
        memory.write_entry(hypervisor_root, 0, 0x99_000 | 3);
        (memory, TestFrames::new(), hypervisor_root)
    }

    #[test]
    fn new_copies_only_the_hypervisor_slots() {
        let (mut memory, mut frames, hypervisor_root) = setup();
        let space = AddressSpace::new(&mut memory, &mut frames, hypervisor_root).unwrap();
        assert_eq!(space.table_frames(), 1);
        for slot in 0..ENTRIES {
            let expected = if is_guest_slot(slot) { 0 } else { memory.read_entry(hypervisor_root, slot) };
            assert_eq!(memory.read_entry(space.root(), slot), expected, "slot {slot}");
        }
        space.destroy(&mut memory, &mut frames);
        assert!(frames.outstanding.is_empty());
    }

    #[test]
    fn map_translate_unmap_round_trip() {
        let (mut memory, mut frames, hypervisor_root) = setup();
        let mut space = AddressSpace::new(&mut memory, &mut frames, hypervisor_root).unwrap();
        let data = Frame::from_number(0x5000);
        let address = 0xffff_ffff_8000_1000;
        space.map(&mut memory, &mut frames, address, data, RW_USER | PageFlags::NO_EXECUTE).unwrap();
        assert_eq!(space.table_frames(), 4);
        let (frame, flags) = space.translate(&memory, address).unwrap();
        assert_eq!(frame, data);
        assert!(flags.contains(PageFlags::PRESENT | PageFlags::WRITABLE | PageFlags::USER | PageFlags::NO_EXECUTE));
        assert_eq!(space.translate(&memory, address + 0xfff).map(|(frame, _)| frame), Some(data));
        assert_eq!(space.translate(&memory, address + 0x1000), None);
        assert_eq!(space.translate(&memory, address - 1), None);
        // A neighbour in the same page table costs no new tables.
        space.map(&mut memory, &mut frames, address + 0x1000, Frame::from_number(0x5001), PageFlags::USER).unwrap();
        assert_eq!(space.table_frames(), 4);
        let (_, flags) = space.translate(&memory, address + 0x1000).unwrap();
        assert!(!flags.contains(PageFlags::WRITABLE) && !flags.contains(PageFlags::NO_EXECUTE));

        assert_eq!(space.unmap(&mut memory, address), Some(data));
        assert_eq!(space.unmap(&mut memory, address), None);
        assert_eq!(space.translate(&memory, address), None);
        let before = frames.outstanding.len();
        space.destroy(&mut memory, &mut frames);
        assert_eq!(before - frames.outstanding.len(), 4, "root + three tables freed");
        assert!(frames.outstanding.is_empty());
    }

    #[test]
    fn map_refuses_bad_addresses_and_overlaps() {
        let (mut memory, mut frames, hypervisor_root) = setup();
        let mut space = AddressSpace::new(&mut memory, &mut frames, hypervisor_root).unwrap();
        let frame = Frame::from_number(0x5000);
        let mut map = |address| space.map(&mut memory, &mut frames, address, frame, RW_USER);
        assert_eq!(map(0x0000_8000_0000_0000), Err(MapError::NonCanonical));
        assert_eq!(map(HYPERVISOR_START), Err(MapError::HypervisorRange));
        assert_eq!(map(HYPERVISOR_END - 0x1000), Err(MapError::HypervisorRange));
        assert_eq!(map(0x1001), Err(MapError::Unaligned));
        assert_eq!(map(HYPERVISOR_END), Ok(()));
        assert_eq!(map(HYPERVISOR_END), Err(MapError::AlreadyMapped));
        assert_eq!(map(0), Ok(()));
        assert_eq!(map(0xffff_ffff_ffff_f000), Ok(()));
        assert_eq!(
            space.map(&mut memory, &mut frames, 0x2000, Frame::from_number(1 << 40), RW_USER),
            Err(MapError::FrameOutOfRange)
        );
        assert_eq!(space.translate(&memory, 0x2000), None);
        assert!(MapError::HypervisorRange.to_string().contains("hypervisor"));
        space.destroy(&mut memory, &mut frames);
        assert!(frames.outstanding.is_empty());
    }

    #[test]
    fn translate_never_follows_hypervisor_slots() {
        let (mut memory, mut frames, hypervisor_root) = setup();
        let mut space = AddressSpace::new(&mut memory, &mut frames, hypervisor_root).unwrap();
        // The copied hypervisor entries point at frames TestMemory has never seen: following
        // them would panic in the fake.
        assert_eq!(space.translate(&memory, HYPERVISOR_START), None);
        assert_eq!(space.translate(&memory, HYPERVISOR_END - 1), None);
        assert_eq!(space.translate(&memory, 0x0000_8000_0000_0000), None);
        assert_eq!(space.unmap(&mut memory, HYPERVISOR_START), None);
        space.destroy(&mut memory, &mut frames);
        assert!(frames.outstanding.is_empty());
    }

    #[test]
    fn effective_flags_combine_levels_and_huge_pages_resolve() {
        let (mut memory, mut frames, hypervisor_root) = setup();
        let mut space = AddressSpace::new(&mut memory, &mut frames, hypervisor_root).unwrap();
        let address = 0x4000_0000; // PML4 0, PDPT 1
        space.map(&mut memory, &mut frames, address, Frame::from_number(0x7000), RW_USER).unwrap();
        // Make the PDPT entry read-only and NX by hand: the leaf alone is RW and executable.
        let pml4_entry = memory.read_entry(space.root(), 0);
        let pdpt = Frame::containing(pml4_entry & ADDRESS_MASK);
        let pdpt_entry = memory.read_entry(pdpt, 1);
        memory.write_entry(pdpt, 1, (pdpt_entry & !PageFlags::WRITABLE.bits()) | PageFlags::NO_EXECUTE.bits());
        let (_, flags) = space.translate(&memory, address).unwrap();
        assert!(!flags.contains(PageFlags::WRITABLE));
        assert!(flags.contains(PageFlags::NO_EXECUTE | PageFlags::USER));

        // A 2 MiB page at PDPT 2 / PD 3 and a 1 GiB page at PDPT 5, written by hand.
        let pd = frames.allocate().unwrap();
        memory.zero(pd);
        memory.write_entry(pdpt, 2, pd.address() | INTERMEDIATE);
        memory.write_entry(pd, 3, 0x4000_0000 | INTERMEDIATE | PageFlags::HUGE.bits());
        memory.write_entry(pdpt, 5, 0x8000_0000 | INTERMEDIATE | PageFlags::HUGE.bits());
        let two_meg = 0x8000_0000 + 3 * 0x20_0000 + 0x5123;
        let (frame, flags) = space.translate(&memory, two_meg).unwrap();
        assert_eq!(frame, Frame::containing(0x4000_0000 + 0x5000));
        assert!(flags.contains(PageFlags::HUGE | PageFlags::WRITABLE));
        let one_gig = 5 * 0x4000_0000 + 0x1234_5678;
        assert_eq!(space.translate(&memory, one_gig).unwrap().0, Frame::containing(0x8000_0000 + 0x1234_5000));
        // Mapping or unmapping inside a huge page is refused.
        assert_eq!(space.map(&mut memory, &mut frames, one_gig & !0xfff, Frame::from_number(1), RW_USER), Err(MapError::AlreadyMapped));
        assert_eq!(space.unmap(&mut memory, two_meg & !0xfff), None);
        // destroy must free the hand-made PD (it is a table) but not the huge pages.
        let before = frames.outstanding.len();
        space.destroy(&mut memory, &mut frames);
        assert_eq!(before - frames.outstanding.len(), 5);
        assert!(frames.outstanding.is_empty());
    }

    #[test]
    fn out_of_frames_leaks_nothing_at_every_point() {
        for allowed in 0..5 {
            let (mut memory, _, hypervisor_root) = setup();
            let mut frames = TestFrames::limited(allowed);
            let space = AddressSpace::new(&mut memory, &mut frames, hypervisor_root);
            let Ok(mut space) = space else {
                assert_eq!(allowed, 0);
                assert!(frames.outstanding.is_empty());
                continue;
            };
            let result = space.map(&mut memory, &mut frames, 0x1234_5000, Frame::from_number(0x9999), RW_USER);
            if allowed < 4 {
                assert_eq!(result, Err(MapError::OutOfFrames));
                assert_eq!(space.translate(&memory, 0x1234_5000), None);
            } else {
                assert_eq!(result, Ok(()));
            }
            assert_eq!(space.table_frames(), frames.outstanding.len() as u64);
            space.destroy(&mut memory, &mut frames);
            assert!(frames.outstanding.is_empty(), "leak with {allowed} frames");
        }
    }

    #[test]
    fn destroy_leaves_data_frames_and_accounts_many_tables() {
        let (mut memory, mut frames, hypervisor_root) = setup();
        let mut space = AddressSpace::new(&mut memory, &mut frames, hypervisor_root).unwrap();
        let data: Vec<Frame> = (0..6).map(|_| frames.allocate().unwrap()).collect();
        let addresses = [0, 0x20_0000, 0x4000_0000, 0x80_0000_0000, HYPERVISOR_END, 0xffff_ffff_ffff_f000];
        for (address, frame) in addresses.iter().zip(&data) {
            space.map(&mut memory, &mut frames, *address, *frame, RW_USER).unwrap();
        }
        let tables = space.table_frames();
        assert_eq!(frames.outstanding.len() as u64, tables + 6);
        space.destroy(&mut memory, &mut frames);
        assert_eq!(frames.outstanding.len(), 6, "only the data frames remain");
        for frame in data {
            assert!(frames.outstanding.contains(&frame));
        }
    }
}
