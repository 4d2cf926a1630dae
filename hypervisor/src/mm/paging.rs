//! Guest address spaces: 4-level x86_64 page tables that only the hypervisor writes.

use crate::mm::frames::{Frame, FrameSource};
use bitflags::bitflags;
use core::cell::Cell;
use core::fmt;
use hypercall_abi::layout::{is_canonical, HYPERVISOR_END, HYPERVISOR_START, PAGE_SIZE};
use hypercall_abi::memory::{map_flags as guest, LARGE_PAGE_SIZE};

bitflags! {
    /// Bits of a page-table entry (Intel SDM vol. 3, 4.5).
    #[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
    pub struct PageFlags: u64 {
        /// P.
        const PRESENT = 1 << 0;
        /// R/W.
        const WRITABLE = 1 << 1;
        /// U/S.
        const USER = 1 << 2;
        /// PWT.
        const WRITE_THROUGH = 1 << 3;
        /// PCD.
        const NO_CACHE = 1 << 4;
        /// A.
        const ACCESSED = 1 << 5;
        /// D.
        const DIRTY = 1 << 6;
        /// Page-size bit in level-3 and level-2 entries (1 GiB / 2 MiB pages). In a level-1
        /// entry the same bit is PAT, which `map` never sets.
        const HUGE = 1 << 7;
        /// G.
        const GLOBAL = 1 << 8;
        /// Available-to-software bit 9: the guest's own "user" flag (`map_flags::USER`).
        /// Both guest modes run in ring 3, so the hardware USER bit is always set on guest
        /// pages; this bit records what the guest asked for so QUERY can report it and the
        /// space can count kernel-only leaves.
        const GUEST_USER = 1 << 9;
        /// XD.
        const NO_EXECUTE = 1 << 63;
    }
}

/// The only bits a leaf entry ever carries: no PCD/PAT (guest RAM is write-back or
/// write-through), no GLOBAL (guest pages must go with every CR3 write), no A/D presets.
const LEAF_BITS: PageFlags = PageFlags::PRESENT
    .union(PageFlags::WRITABLE)
    .union(PageFlags::USER)
    .union(PageFlags::WRITE_THROUGH)
    .union(PageFlags::GUEST_USER)
    .union(PageFlags::NO_EXECUTE);

impl PageFlags {
    /// Leaf flags for a guest mapping with `map_flags` (hypercall-abi `map_flags`): present
    /// and hardware-user always, the guest's USER as [`PageFlags::GUEST_USER`]. LARGE is a
    /// property of the mapping call, not of these flags.
    pub fn from_guest(map_flags: u32) -> Self {
        let mut flags = Self::PRESENT | Self::USER;
        flags.set(Self::WRITABLE, map_flags & guest::WRITABLE != 0);
        flags.set(Self::GUEST_USER, map_flags & guest::USER != 0);
        flags.set(Self::NO_EXECUTE, map_flags & guest::NO_EXECUTE != 0);
        flags.set(Self::WRITE_THROUGH, map_flags & guest::WRITE_THROUGH != 0);
        flags
    }

    /// The guest-visible `map_flags` of a leaf with these flags (LARGE from HUGE).
    pub fn to_guest(self) -> u32 {
        let pairs = [
            (Self::WRITABLE, guest::WRITABLE),
            (Self::GUEST_USER, guest::USER),
            (Self::NO_EXECUTE, guest::NO_EXECUTE),
            (Self::HUGE, guest::LARGE),
            (Self::WRITE_THROUGH, guest::WRITE_THROUGH),
        ];
        pairs.iter().filter(|(bit, _)| self.contains(*bit)).fold(0, |bits, (_, flag)| bits | flag)
    }
}

/// Size of one leaf mapping.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PageSize {
    /// 4 KiB, a level-1 entry.
    Small,
    /// 2 MiB, a level-2 entry with the page-size bit.
    Large,
}

impl PageSize {
    /// Bytes covered.
    pub const fn bytes(self) -> u64 {
        match self {
            Self::Small => PAGE_SIZE,
            Self::Large => LARGE_PAGE_SIZE,
        }
    }

    /// 4 KiB frames covered.
    pub const fn frames(self) -> u64 {
        self.bytes() / PAGE_SIZE
    }
}

/// One leaf mapping: its first frame, its leaf-entry flags and its size.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// The first frame.
    pub frame: Frame,
    /// The leaf entry's flags.
    pub flags: PageFlags,
    /// 4 KiB or 2 MiB.
    pub size: PageSize,
}

impl Leaf {
    /// True if the guest did not grant guest-user access.
    pub fn is_kernel_only(&self) -> bool {
        !self.flags.contains(PageFlags::GUEST_USER)
    }

    /// True if the leaf maps any frame of `first..first + count`.
    fn overlaps(&self, first: u64, count: u64) -> bool {
        let start = self.frame.number();
        start < first.saturating_add(count) && first < start.saturating_add(self.size.frames())
    }

    fn decode(entry: u64, size: PageSize) -> Self {
        let mask = match size {
            PageSize::Small => ADDRESS_MASK,
            PageSize::Large => HUGE_2M_MASK,
        };
        Self {
            frame: Frame::containing(entry & mask),
            flags: PageFlags::from_bits_truncate(entry) & (LEAF_BITS | PageFlags::HUGE),
            size,
        }
    }
}

/// Encodes a leaf entry (flags sanitized to [`LEAF_BITS`]).
fn leaf_entry(frame: Frame, flags: PageFlags, size: PageSize) -> u64 {
    let mut bits = (flags | PageFlags::PRESENT) & LEAF_BITS;
    if size == PageSize::Large {
        bits |= PageFlags::HUGE;
    }
    frame.address() | bits.bits()
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

/// The page table entry `index` of `table` points to, if it is present and not a
/// large page: how the machine walks its own tables without naming frames itself.
pub fn next_table(memory: &impl FrameMemory, table: Frame, index: usize) -> Option<Frame> {
    let entry = memory.read_entry(table, index);
    let present = entry & PageFlags::PRESENT.bits() != 0;
    (present && entry & PageFlags::HUGE.bits() == 0).then(|| Frame::containing(entry & ADDRESS_MASK))
}

const fn is_guest_slot(slot: usize) -> bool {
    slot < HYPERVISOR_FIRST_SLOT || slot >= HYPERVISOR_END_SLOT
}

/// Access to physical frames, implemented by the machine (through its direct map) and
/// by a fake in host tests. Callers keep `offset + length <= 4096` and `index < 512`.
///
/// # Safety
///
/// The library calls these methods with every frame it can name: frames its
/// [`FrameAllocator`](crate::mm::frames::FrameAllocator) handed out and frames that
/// page-table entries written through this memory point to (only the library constructs
/// a [`Frame`] from a number). An implementation must make every method sound for all
/// of them: each such frame is RAM it can reach, and no Rust reference points into it
/// (the frames given to the allocator exclude the hypervisor image, its heap and stacks,
/// and everything else Rust code owns).
#[allow(unsafe_code)]
pub unsafe trait FrameMemory {
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
///
/// The space owns its page-table frames only; the frames its leaves point at belong to
/// whoever mapped them (the domain's p2m, or the hypervisor for the shared-info page).
#[derive(Debug)]
pub struct AddressSpace {
    root: Frame,
    table_frames: u64,
    /// Leaves without [`PageFlags::GUEST_USER`]: a space with any cannot be a user root.
    kernel_only_leaves: u64,
    /// The last two pages [`AddressSpace::translate`] found, the most recent first: their
    /// page addresses and results. A bounce writes its frame and `iret` reads one back,
    /// bounce after bounce, and each software walk is ~100 instructions; two, because a
    /// kernel may return from a stack other than the one it was entered on (guest-kernel
    /// enters on its `stack_switch` stack and returns from its scheduler's), and one entry
    /// then missed twice per system call. Exact while the tables are unchanged, and they
    /// change only through `&mut self` (the table frames are private and never
    /// guest-mapped): an unmap or protect forgets the pages it changes, a bulk removal
    /// forgets both, and a map changes no page that could be remembered.
    recent_translations: Cell<[Option<(u64, Frame, PageFlags)>; 2]>,
}

/// Why a guarded unmap or protect changed nothing.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Guarded {
    /// The guard refused the leaf that maps the address.
    Refused,
    /// No leaf of the size asked for starts at the address.
    Missing,
}

/// Where a leaf entry lives: the table, the index in it and the size it maps.
struct Slot {
    table: Frame,
    index: usize,
    size: PageSize,
}

/// Checks a guest virtual address for a mapping of `size`.
fn check_address(virtual_address: u64, size: PageSize) -> Result<(), MapError> {
    if !is_canonical(virtual_address) {
        return Err(MapError::NonCanonical);
    }
    if is_hypervisor_address(virtual_address) {
        return Err(MapError::HypervisorRange);
    }
    if !virtual_address.is_multiple_of(size.bytes()) {
        return Err(MapError::Unaligned);
    }
    Ok(())
}

impl AddressSpace {
    /// Allocates an empty address space whose hypervisor slots are copies of
    /// `hypervisor_root`'s entries 256..272. The hypervisor must populate all sixteen of
    /// those slots before creating spaces: later changes to its PML4 are not propagated.
    pub fn new(
        memory: &mut impl FrameMemory,
        frames: &mut impl FrameSource,
        hypervisor_root: Frame,
    ) -> Result<Self, MapError> {
        let root = frames.allocate().ok_or(MapError::OutOfFrames)?;
        memory.zero(root);
        for slot in HYPERVISOR_FIRST_SLOT..HYPERVISOR_END_SLOT {
            let entry = memory.read_entry(hypervisor_root, slot);
            memory.write_entry(root, slot, entry);
        }
        Ok(Self { root, table_frames: 1, kernel_only_leaves: 0, recent_translations: Cell::new([None; 2]) })
    }

    /// The PML4 frame (what CR3 gets).
    pub fn root(&self) -> Frame {
        self.root
    }

    /// Page-table frames this space owns, root included.
    pub fn table_frames(&self) -> u64 {
        self.table_frames
    }

    /// Leaves mapped without the guest's USER flag.
    pub fn kernel_only_leaves(&self) -> u64 {
        self.kernel_only_leaves
    }

    /// Maps the 4 KiB page at `virtual_address` to `frame` with `flags` (PRESENT is always
    /// added; bits outside the leaf set, such as PAT, PCD and GLOBAL, are dropped). Missing
    /// intermediate tables are created and linked immediately, so if a later allocation
    /// fails they are still owned by this space and `destroy` frees them: nothing leaks and
    /// nothing half-mapped is visible (the leaf is written last).
    pub fn map(
        &mut self,
        memory: &mut impl FrameMemory,
        frames: &mut impl FrameSource,
        virtual_address: u64,
        frame: Frame,
        flags: PageFlags,
    ) -> Result<(), MapError> {
        self.map_sized(memory, frames, virtual_address, frame, flags, PageSize::Small)
    }

    /// Maps a 4 KiB or 2 MiB page. A 2 MiB page needs a 2 MiB-aligned address and a
    /// 512-aligned first frame (else `Unaligned`) and nothing mapped under it (else
    /// `AlreadyMapped`); an empty page table left under it is freed and replaced.
    pub fn map_sized(
        &mut self,
        memory: &mut impl FrameMemory,
        frames: &mut impl FrameSource,
        virtual_address: u64,
        frame: Frame,
        flags: PageFlags,
        size: PageSize,
    ) -> Result<(), MapError> {
        // The remembered translations stay exact: this only fills entries that were not
        // present (new tables, the new leaf) or replaces a table with no present entry,
        // under which no translation can have been found. Forgetting them here made every
        // entry of an `mmu_update` batch walk four levels to read the next request.
        check_address(virtual_address, size)?;
        if !frame.number().is_multiple_of(size.frames()) {
            return Err(MapError::Unaligned);
        }
        if frame.number() > (ADDRESS_MASK >> 12) {
            return Err(MapError::FrameOutOfRange);
        }
        let levels: &[u32] = match size {
            PageSize::Small => &[4, 3, 2],
            PageSize::Large => &[4, 3],
        };
        let table = self.walk_creating(memory, frames, virtual_address, levels)?;
        let level = if size == PageSize::Small { 1 } else { 2 };
        let index = table_index(virtual_address, level);
        let entry = memory.read_entry(table, index);
        if entry & PageFlags::PRESENT.bits() != 0 {
            let is_table = level == 2 && entry & PageFlags::HUGE.bits() == 0;
            if !is_table || !self.free_if_empty(memory, frames, Frame::containing(entry & ADDRESS_MASK)) {
                return Err(MapError::AlreadyMapped);
            }
        }
        memory.write_entry(table, index, leaf_entry(frame, flags, size));
        self.count_leaf(flags);
        Ok(())
    }

    /// Follows (and creates) the tables at `levels` and returns the table below the last.
    fn walk_creating(
        &mut self,
        memory: &mut impl FrameMemory,
        frames: &mut impl FrameSource,
        virtual_address: u64,
        levels: &[u32],
    ) -> Result<Frame, MapError> {
        let mut table = self.root;
        for &level in levels {
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
        Ok(table)
    }

    /// Frees the page table `table` if no entry in it is present (it is about to be
    /// replaced by a 2 MiB leaf). Returns whether it was freed.
    fn free_if_empty(&mut self, memory: &mut impl FrameMemory, frames: &mut impl FrameSource, table: Frame) -> bool {
        if (0..ENTRIES).any(|index| memory.read_entry(table, index) & PageFlags::PRESENT.bits() != 0) {
            return false;
        }
        frames.free(table);
        self.table_frames -= 1;
        true
    }

    fn count_leaf(&mut self, flags: PageFlags) {
        if !flags.contains(PageFlags::GUEST_USER) {
            self.kernel_only_leaves += 1;
        }
    }

    fn uncount_leaf(&mut self, flags: PageFlags) {
        if !flags.contains(PageFlags::GUEST_USER) {
            self.kernel_only_leaves -= 1;
        }
    }

    /// The frame and effective flags of the page containing `virtual_address`: WRITABLE and
    /// USER only if every level grants them, NO_EXECUTE if any level sets it. Inside a huge
    /// page the 4 KiB frame that contains the address is returned (HUGE stays set in the
    /// flags). `None` for non-canonical, hypervisor-range and unmapped addresses.
    pub fn translate(&self, memory: &impl FrameMemory, virtual_address: u64) -> Option<(Frame, PageFlags)> {
        let page = virtual_address & !(PAGE_SIZE - 1);
        let [newest, older] = self.recent_translations.get();
        if let Some((cached, frame, flags)) = newest {
            if cached == page {
                return Some((frame, flags));
            }
        }
        if let Some((cached, frame, flags)) = older {
            if cached == page {
                self.recent_translations.set([older, newest]);
                return Some((frame, flags));
            }
        }
        let found = self.walk(memory, virtual_address);
        if let Some((frame, flags)) = found {
            self.recent_translations.set([Some((page, frame, flags)), newest]);
        }
        found
    }

    /// Forgets [`Self::translate`]'s remembered results: a bulk removal, which may change
    /// any page, calls this before touching a table (an unmap or protect forgets only its
    /// own pages, [`Self::forget_translations_in`]; a map changes none).
    fn forget_translation(&self) {
        self.recent_translations.set([None; 2]);
    }

    /// Forgets the remembered translations of pages inside the leaf of `size` at
    /// `virtual_address` (an unmap or a protect changes only those); the others stay
    /// exact.
    fn forget_translations_in(&self, virtual_address: u64, size: PageSize) {
        let bytes = size.bytes();
        let start = virtual_address & !(bytes - 1);
        let keep =
            |entry: Option<(u64, Frame, PageFlags)>| entry.filter(|&(page, _, _)| page.wrapping_sub(start) >= bytes);
        let [newest, older] = self.recent_translations.get();
        self.recent_translations.set([keep(newest), keep(older)]);
    }

    /// [`Self::translate`]'s table walk.
    fn walk(&self, memory: &impl FrameMemory, virtual_address: u64) -> Option<(Frame, PageFlags)> {
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

    /// The slot of the leaf entry that maps `virtual_address` (any address inside the
    /// page), if a 4 KiB or 2 MiB leaf maps it. 1 GiB leaves are never made here and are
    /// not reported.
    fn leaf_slot(&self, memory: &impl FrameMemory, virtual_address: u64) -> Option<Slot> {
        if !is_canonical(virtual_address) || is_hypervisor_address(virtual_address) {
            return None;
        }
        let mut table = self.root;
        for level in [4, 3, 2, 1] {
            let index = table_index(virtual_address, level);
            let entry = memory.read_entry(table, index);
            if entry & PageFlags::PRESENT.bits() == 0 {
                return None;
            }
            let huge = level != 4 && level != 1 && entry & PageFlags::HUGE.bits() != 0;
            match (level, huge) {
                (1, _) => return Some(Slot { table, index, size: PageSize::Small }),
                (2, true) => return Some(Slot { table, index, size: PageSize::Large }),
                (_, true) => return None,
                _ => table = Frame::containing(entry & ADDRESS_MASK),
            }
        }
        None
    }

    /// The leaf that maps `virtual_address` (4 KiB or 2 MiB), with its first frame.
    pub fn leaf(&self, memory: &impl FrameMemory, virtual_address: u64) -> Option<Leaf> {
        let slot = self.leaf_slot(memory, virtual_address)?;
        Some(Leaf::decode(memory.read_entry(slot.table, slot.index), slot.size))
    }

    /// Removes the leaf of `size` at `virtual_address` and returns what was there (the
    /// caller flushes the TLB and decides what happens to the frames). `None` if no leaf of
    /// that size starts there. Tables emptied by this stay allocated until `destroy`.
    pub fn unmap_sized(&mut self, memory: &mut impl FrameMemory, virtual_address: u64, size: PageSize) -> Option<Leaf> {
        self.unmap_sized_unless(memory, virtual_address, size, |_| false).ok()
    }

    /// [`Self::unmap_sized`], unless `refuse` says no to the leaf that maps
    /// `virtual_address` now (of either size): the check and the change share one walk.
    pub fn unmap_sized_unless(
        &mut self,
        memory: &mut impl FrameMemory,
        virtual_address: u64,
        size: PageSize,
        refuse: impl FnOnce(&Leaf) -> bool,
    ) -> Result<Leaf, Guarded> {
        let (slot, leaf) = self.guarded_leaf(memory, virtual_address, size, refuse)?;
        memory.write_entry(slot.table, slot.index, 0);
        self.uncount_leaf(leaf.flags);
        Ok(leaf)
    }

    /// The leaf of exactly `size` that starts at `virtual_address` and its slot, unless
    /// `refuse` says no to the leaf that maps the address now (of either size). The caller
    /// is about to change that leaf, so the remembered translations inside it are
    /// forgotten first.
    #[inline(always)]
    fn guarded_leaf(
        &mut self,
        memory: &impl FrameMemory,
        virtual_address: u64,
        size: PageSize,
        refuse: impl FnOnce(&Leaf) -> bool,
    ) -> Result<(Slot, Leaf), Guarded> {
        self.forget_translations_in(virtual_address, size);
        let slot = self.leaf_slot(memory, virtual_address).ok_or(Guarded::Missing)?;
        let leaf = Leaf::decode(memory.read_entry(slot.table, slot.index), slot.size);
        if refuse(&leaf) {
            return Err(Guarded::Refused);
        }
        if check_address(virtual_address, size).is_err() || slot.size != size {
            return Err(Guarded::Missing);
        }
        Ok((slot, leaf))
    }

    /// Removes the 4 KiB mapping at the page-aligned `virtual_address` and returns its
    /// frame; `None` if nothing is mapped there, the address is not a guest page address,
    /// or it lies inside a huge page.
    pub fn unmap(&mut self, memory: &mut impl FrameMemory, virtual_address: u64) -> Option<Frame> {
        self.unmap_sized(memory, virtual_address, PageSize::Small).map(|leaf| leaf.frame)
    }

    /// Replaces the flags of the leaf of `size` at `virtual_address` (same frame) and
    /// returns the leaf as it was; `None` if no leaf of that size starts there.
    pub fn protect(
        &mut self,
        memory: &mut impl FrameMemory,
        virtual_address: u64,
        size: PageSize,
        flags: PageFlags,
    ) -> Option<Leaf> {
        self.protect_unless(memory, virtual_address, size, flags, |_| false).ok()
    }

    /// [`Self::protect`], unless `refuse` says no to the leaf that maps `virtual_address`
    /// now (of either size): the check and the change share one walk.
    pub fn protect_unless(
        &mut self,
        memory: &mut impl FrameMemory,
        virtual_address: u64,
        size: PageSize,
        flags: PageFlags,
        refuse: impl FnOnce(&Leaf) -> bool,
    ) -> Result<Leaf, Guarded> {
        let (slot, old) = self.guarded_leaf(memory, virtual_address, size, refuse)?;
        memory.write_entry(slot.table, slot.index, leaf_entry(old.frame, flags, size));
        self.uncount_leaf(old.flags);
        self.count_leaf(flags);
        Ok(old)
    }

    /// Removes every leaf that maps any frame of `first..first + count`, calling
    /// `removed(virtual_address, leaf)` for each. A 2 MiB leaf that covers any of them goes
    /// whole. Work is bounded by the tables this space owns (each is read once).
    pub fn remove_frames(
        &mut self,
        memory: &mut impl FrameMemory,
        first: Frame,
        count: u64,
        removed: &mut impl FnMut(u64, Leaf),
    ) {
        self.remove_leaves(memory, &mut |leaf| leaf.overlaps(first.number(), count), removed);
    }

    /// Removes every 4 KiB and 2 MiB leaf for which `doomed(leaf)` is true, calling
    /// `removed(virtual_address, leaf)` for each. One pass over the tables this space
    /// owns (each is read once), however many leaves or frames are involved: releasing a
    /// whole batch of gfns costs one walk, not one walk per gfn.
    pub fn remove_leaves(
        &mut self,
        memory: &mut impl FrameMemory,
        doomed: &mut impl FnMut(&Leaf) -> bool,
        removed: &mut impl FnMut(u64, Leaf),
    ) {
        for slot in 0..ENTRIES {
            self.remove_leaves_in_slot(memory, slot, doomed, removed);
        }
    }

    /// [`AddressSpace::remove_leaves`] for the tables under root slot `slot` alone, so a
    /// long walk can stop between slots and go on later. Returns whether there were any
    /// (the hypervisor's slots have none here).
    pub fn remove_leaves_in_slot(
        &mut self,
        memory: &mut impl FrameMemory,
        slot: usize,
        doomed: &mut impl FnMut(&Leaf) -> bool,
        removed: &mut impl FnMut(u64, Leaf),
    ) -> bool {
        self.forget_translation();
        if !is_guest_slot(slot) {
            return false;
        }
        let entry = memory.read_entry(self.root, slot);
        if entry & PageFlags::PRESENT.bits() == 0 {
            return false;
        }
        let mut kernel_only: u64 = 0;
        let base = sign_extend((slot as u64) << 39);
        let table = Frame::containing(entry & ADDRESS_MASK);
        remove_below(memory, table, 3, base, doomed, &mut |address, leaf| {
            kernel_only += u64::from(leaf.is_kernel_only());
            removed(address, leaf);
        });
        self.kernel_only_leaves -= kernel_only;
        true
    }

    /// Frees every page-table frame of the guest slots (0..256, 272..512) and the root.
    /// Leaf frames (the guest's data) and the shared hypervisor slots are left alone.
    pub fn destroy(self, memory: &mut impl FrameMemory, frames: &mut impl FrameSource) {
        self.destroy_reporting(memory, frames, &mut |_| {});
    }

    /// [`AddressSpace::destroy`], calling `leaves` for every 4 KiB and 2 MiB leaf first
    /// found, so the owner of the mapped frames can drop its mapping counts.
    pub fn destroy_reporting(
        self,
        memory: &mut impl FrameMemory,
        frames: &mut impl FrameSource,
        leaves: &mut impl FnMut(Leaf),
    ) {
        for slot in (0..ENTRIES).filter(|&slot| is_guest_slot(slot)) {
            let entry = memory.read_entry(self.root, slot);
            if entry & PageFlags::PRESENT.bits() != 0 {
                free_table(memory, frames, Frame::containing(entry & ADDRESS_MASK), 3, leaves);
            }
        }
        frames.free(self.root);
    }
}

/// Makes a 48-bit address canonical.
const fn sign_extend(address: u64) -> u64 {
    if address & (1 << 47) != 0 {
        address | 0xffff_0000_0000_0000
    } else {
        address
    }
}

/// The walk of [`AddressSpace::remove_leaves`] below the root: `table` is at `level`
/// (3..=1) and maps from `base`.
fn remove_below(
    memory: &mut impl FrameMemory,
    table: Frame,
    level: u32,
    base: u64,
    doomed: &mut impl FnMut(&Leaf) -> bool,
    removed: &mut impl FnMut(u64, Leaf),
) {
    let span = 1u64 << (12 + 9 * (level - 1));
    for index in 0..ENTRIES {
        let entry = memory.read_entry(table, index);
        if entry & PageFlags::PRESENT.bits() == 0 {
            continue;
        }
        let address = base + index as u64 * span;
        let huge = level != 1 && entry & PageFlags::HUGE.bits() != 0;
        let size = match (level, huge) {
            (1, _) => PageSize::Small,
            (2, true) => PageSize::Large,
            (_, true) => continue, // 1 GiB leaves are never made here
            _ => {
                remove_below(memory, Frame::containing(entry & ADDRESS_MASK), level - 1, address, doomed, removed);
                continue;
            }
        };
        let leaf = Leaf::decode(entry, size);
        if doomed(&leaf) {
            memory.write_entry(table, index, 0);
            removed(address, leaf);
        }
    }
}

/// Frees the table at `level` (3..=1) and every table below it, reporting leaves. Huge
/// entries and level-1 entries point to data frames, which are not ours to free.
fn free_table(
    memory: &mut impl FrameMemory,
    frames: &mut impl FrameSource,
    table: Frame,
    level: u32,
    leaves: &mut impl FnMut(Leaf),
) {
    for index in 0..ENTRIES {
        let entry = memory.read_entry(table, index);
        if entry & PageFlags::PRESENT.bits() == 0 {
            continue;
        }
        let huge = entry & PageFlags::HUGE.bits() != 0;
        match (level, huge) {
            (1, _) => leaves(Leaf::decode(entry, PageSize::Small)),
            (2, true) => leaves(Leaf::decode(entry, PageSize::Large)),
            (_, true) => {}
            _ => free_table(memory, frames, Frame::containing(entry & ADDRESS_MASK), level - 1, leaves),
        }
    }
    frames.free(table);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::fakes::{TestFrames, TestMemory};

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

    const GUEST_RW: u32 = guest::WRITABLE | guest::USER;

    #[test]
    fn guest_flags_translate_both_ways() {
        let flags = PageFlags::from_guest(guest::ALL);
        assert!(flags.contains(PageFlags::PRESENT | PageFlags::USER | PageFlags::WRITABLE | PageFlags::GUEST_USER));
        assert!(flags.contains(PageFlags::NO_EXECUTE | PageFlags::WRITE_THROUGH));
        assert!(!flags.intersects(PageFlags::HUGE | PageFlags::GLOBAL | PageFlags::NO_CACHE));
        assert_eq!(flags.to_guest(), guest::ALL & !guest::LARGE);
        let kernel_read_only = PageFlags::from_guest(0);
        assert_eq!(kernel_read_only, PageFlags::PRESENT | PageFlags::USER, "hardware USER even for kernel-only pages");
        assert_eq!(kernel_read_only.to_guest(), 0);
        assert_eq!((kernel_read_only | PageFlags::HUGE).to_guest(), guest::LARGE);
    }

    #[test]
    fn translate_follows_every_table_change_after_a_lookup() {
        let (mut memory, mut frames, hypervisor_root) = setup();
        let mut space = AddressSpace::new(&mut memory, &mut frames, hypervisor_root).unwrap();
        let rw = PageFlags::from_guest(GUEST_RW);
        let read_only = PageFlags::from_guest(guest::USER);
        let (first, second) = (Frame::from_number(0x71), Frame::from_number(0x72));
        space.map(&mut memory, &mut frames, 0x5000, first, rw).unwrap();
        assert_eq!(space.translate(&memory, 0x5008).map(|(frame, _)| frame), Some(first));
        let writable = |space: &AddressSpace, memory: &TestMemory| {
            space.translate(memory, 0x5010).map(|(_, flags)| flags.contains(PageFlags::WRITABLE))
        };
        assert_eq!(writable(&space, &memory), Some(true), "the same page again, from the last lookup");
        space.protect(&mut memory, 0x5000, PageSize::Small, read_only).unwrap();
        assert_eq!(writable(&space, &memory), Some(false), "protect");
        assert_eq!(space.unmap(&mut memory, 0x5000), Some(first));
        assert_eq!(space.translate(&memory, 0x5000), None, "unmap");
        space.map(&mut memory, &mut frames, 0x5000, second, rw).unwrap();
        assert_eq!(space.translate(&memory, 0x5fff).map(|(frame, _)| frame), Some(second), "map");
        space.remove_frames(&mut memory, second, 1, &mut |_, _| {});
        assert_eq!(space.translate(&memory, 0x5000), None, "remove_frames");
        space.map(&mut memory, &mut frames, 0x5000, first, rw).unwrap();
        assert_eq!(space.translate(&memory, 0x6000), None, "another page is walked, not taken from the last");
        assert_eq!(space.translate(&memory, 0x5000).map(|(frame, _)| frame), Some(first));
        space.destroy(&mut memory, &mut frames);
    }

    /// Two pages used in turn (a kernel entered on one stack, returning from another)
    /// are both remembered, and an unmap of either forgets it.
    #[test]
    fn translate_remembers_two_pages_and_forgets_what_changes() {
        let (mut memory, mut frames, hypervisor_root) = setup();
        let mut space = AddressSpace::new(&mut memory, &mut frames, hypervisor_root).unwrap();
        let rw = PageFlags::from_guest(GUEST_RW);
        let (first, second, third) = (Frame::from_number(0x71), Frame::from_number(0x72), Frame::from_number(0x73));
        space.map(&mut memory, &mut frames, 0x5000, first, rw).unwrap();
        space.map(&mut memory, &mut frames, 0x9000, second, rw).unwrap();
        space.map(&mut memory, &mut frames, 0xd000, third, rw).unwrap();
        let frame_at = |space: &AddressSpace, memory: &TestMemory, address| {
            space.translate(memory, address).map(|(frame, _)| frame)
        };
        for _ in 0..3 {
            assert_eq!(frame_at(&space, &memory, 0x5010), Some(first));
            assert_eq!(frame_at(&space, &memory, 0x9010), Some(second));
        }
        assert_eq!(frame_at(&space, &memory, 0xd000), Some(third), "a third page is walked");
        assert_eq!(frame_at(&space, &memory, 0x5000), Some(first), "and the oldest walked again");
        // The older of the two remembered pages changes: its answer may not survive.
        assert_eq!(frame_at(&space, &memory, 0xd000), Some(third));
        assert_eq!(space.unmap(&mut memory, 0x5000), Some(first));
        assert_eq!(space.translate(&memory, 0x5000), None, "unmap of the older remembered page");
        assert_eq!(frame_at(&space, &memory, 0xd000), Some(third));
        space.destroy(&mut memory, &mut frames);
    }

    /// Whatever the order of maps, unmaps, protects and bulk removals, of 4 KiB and 2 MiB
    /// pages, a remembered translation is never stale: `translate` always answers what a
    /// fresh walk of the tables answers (a map keeps what is remembered, an unmap or
    /// protect forgets only its own pages).
    #[test]
    fn remembered_translations_always_match_the_tables() {
        use proptest::prelude::*;
        #[derive(Clone, Debug)]
        enum Op {
            Map(u64, u64, bool),
            MapLarge(u64, bool),
            Unmap(u64),
            UnmapLarge(u64),
            Protect(u64, bool),
            RemoveFrame(u64),
            Translate(u64),
        }
        // Two 2 MiB regions, eight pages in each: maps collide, large maps replace tables.
        let page = (0u64..2, 0u64..8).prop_map(|(region, page)| 0x4000_0000 + region * 0x20_0000 + page * 0x1000);
        let region = (0u64..2).prop_map(|region| 0x4000_0000 + region * 0x20_0000);
        let op = prop_oneof![
            (page.clone(), 0x100u64..0x108, any::<bool>()).prop_map(|(va, frame, rw)| Op::Map(va, frame, rw)),
            (region.clone(), any::<bool>()).prop_map(|(va, rw)| Op::MapLarge(va, rw)),
            page.clone().prop_map(Op::Unmap),
            region.prop_map(Op::UnmapLarge),
            (page.clone(), any::<bool>()).prop_map(|(va, rw)| Op::Protect(va, rw)),
            (0x100u64..0x108).prop_map(Op::RemoveFrame),
            page.clone().prop_map(Op::Translate),
            (page, 0u64..0x1000).prop_map(|(va, offset)| Op::Translate(va + offset)),
        ];
        let config = ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() };
        proptest!(config, |(ops in proptest::collection::vec(op, 1..60))| {
            let (mut memory, mut frames, hypervisor_root) = setup();
            let mut space = AddressSpace::new(&mut memory, &mut frames, hypervisor_root).unwrap();
            let flags = |rw: bool| PageFlags::from_guest(if rw { GUEST_RW } else { guest::USER });
            let probes = (0..2u64).flat_map(|region| (0..8u64).map(move |page| 0x4000_0000 + region * 0x20_0000 + page * 0x1000));
            for op in ops {
                match op {
                    Op::Map(va, frame, rw) => {
                        let _ = space.map_sized(&mut memory, &mut frames, va, Frame::from_number(frame), flags(rw), PageSize::Small);
                    }
                    Op::MapLarge(va, rw) => {
                        let _ = space.map_sized(&mut memory, &mut frames, va, Frame::from_number(0x4_0000), flags(rw), PageSize::Large);
                    }
                    Op::Unmap(va) => { let _ = space.unmap_sized(&mut memory, va, PageSize::Small); }
                    Op::UnmapLarge(va) => { let _ = space.unmap_sized(&mut memory, va, PageSize::Large); }
                    Op::Protect(va, rw) => { let _ = space.protect(&mut memory, va, PageSize::Small, flags(rw)); }
                    Op::RemoveFrame(frame) => space.remove_frames(&mut memory, Frame::from_number(frame), 1, &mut |_, _| {}),
                    Op::Translate(va) => {
                        prop_assert_eq!(space.translate(&memory, va), space.walk(&memory, va), "translate {:#x}", va);
                    }
                }
                for va in probes.clone() {
                    prop_assert_eq!(space.translate(&memory, va), space.walk(&memory, va), "probe {:#x}", va);
                }
            }
            space.destroy(&mut memory, &mut frames);
        });
    }

    #[test]
    fn leaves_never_carry_pat_pcd_or_global() {
        let (mut memory, mut frames, hypervisor_root) = setup();
        let mut space = AddressSpace::new(&mut memory, &mut frames, hypervisor_root).unwrap();
        let everything = PageFlags::all();
        space.map(&mut memory, &mut frames, 0x1000, Frame::from_number(0x77), everything).unwrap();
        let leaf = space.leaf(&memory, 0x1000).unwrap();
        assert_eq!(leaf.flags, LEAF_BITS);
        space.destroy(&mut memory, &mut frames);
        assert!(frames.outstanding.is_empty());
    }

    #[test]
    fn large_pages_map_query_protect_unmap() {
        let (mut memory, mut frames, hypervisor_root) = setup();
        let mut space = AddressSpace::new(&mut memory, &mut frames, hypervisor_root).unwrap();
        let block = Frame::from_number(0x4_0000);
        let address = 0xffff_ffff_8020_0000;
        let flags = PageFlags::from_guest(GUEST_RW);
        let map = |space: &mut AddressSpace, memory: &mut TestMemory, frames: &mut TestFrames, address, frame| {
            space.map_sized(memory, frames, address, frame, flags, PageSize::Large)
        };
        assert_eq!(map(&mut space, &mut memory, &mut frames, address + 0x1000, block), Err(MapError::Unaligned));
        assert_eq!(
            map(&mut space, &mut memory, &mut frames, address, Frame::from_number(0x4_0001)),
            Err(MapError::Unaligned)
        );
        assert_eq!(map(&mut space, &mut memory, &mut frames, HYPERVISOR_START, block), Err(MapError::HypervisorRange));
        map(&mut space, &mut memory, &mut frames, address, block).unwrap();
        assert_eq!(space.table_frames(), 3, "root, PDPT, PD: no page table");
        assert_eq!(space.kernel_only_leaves(), 0);
        let (frame, effective) = space.translate(&memory, address + 0x3456).unwrap();
        assert_eq!(frame, Frame::from_number(0x4_0003));
        assert_eq!(effective.to_guest(), GUEST_RW | guest::LARGE);
        // Nothing 4 KiB under it, no second 2 MiB leaf over it.
        assert_eq!(
            space.map(&mut memory, &mut frames, address + 0x5000, Frame::from_number(1), flags),
            Err(MapError::AlreadyMapped)
        );
        assert_eq!(map(&mut space, &mut memory, &mut frames, address, block), Err(MapError::AlreadyMapped));
        // Size must match for unmap and protect.
        assert_eq!(space.unmap(&mut memory, address), None);
        assert_eq!(space.protect(&mut memory, address, PageSize::Small, flags), None);
        let old =
            space.protect(&mut memory, address, PageSize::Large, PageFlags::from_guest(guest::NO_EXECUTE)).unwrap();
        assert_eq!(old, Leaf { frame: block, flags: flags | PageFlags::HUGE, size: PageSize::Large });
        assert_eq!(space.kernel_only_leaves(), 1);
        assert_eq!(
            space.leaf(&memory, address + 0x1f_ffff).unwrap().flags.to_guest(),
            guest::NO_EXECUTE | guest::LARGE
        );
        let removed = space.unmap_sized(&mut memory, address, PageSize::Large).unwrap();
        assert_eq!((removed.frame, removed.size), (block, PageSize::Large));
        assert_eq!(space.kernel_only_leaves(), 0);
        assert_eq!(space.translate(&memory, address), None);
        assert_eq!(space.unmap_sized(&mut memory, address, PageSize::Large), None);
        space.destroy(&mut memory, &mut frames);
        assert!(frames.outstanding.is_empty());
    }

    #[test]
    fn a_large_page_replaces_an_emptied_page_table_only() {
        let (mut memory, mut frames, hypervisor_root) = setup();
        let mut space = AddressSpace::new(&mut memory, &mut frames, hypervisor_root).unwrap();
        let flags = PageFlags::from_guest(GUEST_RW);
        space.map(&mut memory, &mut frames, 0x20_3000, Frame::from_number(5), flags).unwrap();
        assert_eq!(space.table_frames(), 4);
        let large = |space: &mut AddressSpace, memory: &mut TestMemory, frames: &mut TestFrames| {
            space.map_sized(memory, frames, 0x20_0000, Frame::from_number(0x200), flags, PageSize::Large)
        };
        assert_eq!(large(&mut space, &mut memory, &mut frames), Err(MapError::AlreadyMapped));
        space.unmap(&mut memory, 0x20_3000).unwrap();
        large(&mut space, &mut memory, &mut frames).unwrap();
        assert_eq!(space.table_frames(), 3, "the empty page table was freed");
        assert_eq!(frames.outstanding.len(), 3);
        space.destroy(&mut memory, &mut frames);
        assert!(frames.outstanding.is_empty());
    }

    #[test]
    fn kernel_only_leaves_are_counted_through_every_change() {
        let (mut memory, mut frames, hypervisor_root) = setup();
        let mut space = AddressSpace::new(&mut memory, &mut frames, hypervisor_root).unwrap();
        let kernel = PageFlags::from_guest(guest::WRITABLE);
        let user = PageFlags::from_guest(GUEST_RW);
        space.map(&mut memory, &mut frames, 0x1000, Frame::from_number(1), kernel).unwrap();
        space.map(&mut memory, &mut frames, 0x2000, Frame::from_number(2), user).unwrap();
        assert_eq!(space.kernel_only_leaves(), 1);
        space.protect(&mut memory, 0x1000, PageSize::Small, user).unwrap();
        assert_eq!(space.kernel_only_leaves(), 0);
        space.protect(&mut memory, 0x2000, PageSize::Small, kernel).unwrap();
        space.protect(&mut memory, 0x2000, PageSize::Small, kernel).unwrap();
        assert_eq!(space.kernel_only_leaves(), 1);
        space.remove_frames(&mut memory, Frame::from_number(2), 1, &mut |_, _| {});
        assert_eq!(space.kernel_only_leaves(), 0);
        space.destroy(&mut memory, &mut frames);
        assert!(frames.outstanding.is_empty());
    }

    #[test]
    fn remove_frames_finds_every_alias_and_covering_large_leaf() {
        let (mut memory, mut frames, hypervisor_root) = setup();
        let mut space = AddressSpace::new(&mut memory, &mut frames, hypervisor_root).unwrap();
        let flags = PageFlags::from_guest(GUEST_RW);
        let target = Frame::from_number(0x1234);
        let aliases = [0x1000, 0x7fff_ffff_f000, 0xffff_ffff_ffff_f000, HYPERVISOR_END, 0x40_0000];
        for address in aliases {
            space.map(&mut memory, &mut frames, address, target, flags).unwrap();
        }
        space.map(&mut memory, &mut frames, 0x2000, Frame::from_number(0x1235), flags).unwrap();
        space
            .map_sized(&mut memory, &mut frames, 0x6000_0000, Frame::from_number(0x1200), flags, PageSize::Large)
            .unwrap();
        space
            .map_sized(&mut memory, &mut frames, 0x6020_0000, Frame::from_number(0x1400), flags, PageSize::Large)
            .unwrap();
        let mut removed = Vec::new();
        space
            .remove_frames(&mut memory, target, 1, &mut |address, leaf| removed.push((address, leaf.frame, leaf.size)));
        removed.sort();
        let mut expected: Vec<_> = aliases.iter().map(|&address| (address, target, PageSize::Small)).collect();
        expected.push((0x6000_0000, Frame::from_number(0x1200), PageSize::Large));
        expected.sort();
        assert_eq!(removed, expected);
        assert_eq!(space.translate(&memory, 0x2000).unwrap().0, Frame::from_number(0x1235), "neighbours stay");
        assert!(space.translate(&memory, 0x6020_0000).is_some());
        for address in aliases {
            assert_eq!(space.translate(&memory, address), None);
        }
        let mut reported = Vec::new();
        space.destroy_reporting(&mut memory, &mut frames, &mut |leaf| reported.push((leaf.frame, leaf.size)));
        reported.sort();
        assert_eq!(
            reported,
            [(Frame::from_number(0x1235), PageSize::Small), (Frame::from_number(0x1400), PageSize::Large)]
        );
        assert!(frames.outstanding.is_empty());
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
        assert_eq!(
            space.map(&mut memory, &mut frames, one_gig & !0xfff, Frame::from_number(1), RW_USER),
            Err(MapError::AlreadyMapped)
        );
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

    #[test]
    fn next_table_follows_present_tables_only() {
        let mut memory = TestMemory::default();
        let table = Frame::from_number(0x10);
        memory.zero(table);
        let flags = PageFlags::PRESENT | PageFlags::WRITABLE | PageFlags::USER | PageFlags::NO_EXECUTE;
        memory.write_entry(table, 1, 0x5_6000 | flags.bits());
        memory.write_entry(table, 2, 0x5_7000 | PageFlags::WRITABLE.bits());
        memory.write_entry(table, 3, 0x20_0000 | (flags | PageFlags::HUGE).bits());
        assert_eq!(next_table(&memory, table, 1), Some(Frame::from_number(0x56)), "flag bits are not address");
        assert_eq!(next_table(&memory, table, 2), None, "not present");
        assert_eq!(next_table(&memory, table, 3), None, "a large page is no table");
        assert_eq!(next_table(&memory, table, 4), None, "empty");
    }

    #[test]
    fn overlaps_is_half_open() {
        let leaf = Leaf { frame: Frame::from_number(0x200), flags: PageFlags::PRESENT, size: PageSize::Large };
        assert!(leaf.overlaps(0x3ff, 1));
        assert!(!leaf.overlaps(0x400, 1), "the frame after the block");
        assert!(leaf.overlaps(0x100, 0x101));
        assert!(!leaf.overlaps(0x100, 0x100), "the range ends where the block starts");
    }

    #[test]
    fn highest_frame_maps_and_one_above_is_refused() {
        let (mut memory, mut frames, hypervisor_root) = setup();
        let mut space = AddressSpace::new(&mut memory, &mut frames, hypervisor_root).unwrap();
        let highest = Frame::from_number(ADDRESS_MASK >> 12);
        space.map(&mut memory, &mut frames, 0x1000, highest, RW_USER).unwrap();
        assert_eq!(space.leaf(&memory, 0x1000).unwrap().frame, highest);
        assert_eq!(
            space.map(&mut memory, &mut frames, 0x2000, Frame::from_number((ADDRESS_MASK >> 12) + 1), RW_USER),
            Err(MapError::FrameOutOfRange)
        );
        space.destroy(&mut memory, &mut frames);
    }

    /// A space with a 4 KiB page at 0x1000 and a hand-written 1 GiB leaf at 1 GiB whose
    /// "frame" holds what would look like a 2 MiB leaf if it were walked as a table.
    fn space_with_gigabyte_leaf() -> (TestMemory, TestFrames, AddressSpace) {
        let (mut memory, mut frames, hypervisor_root) = setup();
        let mut space = AddressSpace::new(&mut memory, &mut frames, hypervisor_root).unwrap();
        space.map(&mut memory, &mut frames, 0x1000, Frame::from_number(0x77), RW_USER).unwrap();
        let pdpt = next_table(&memory, space.root, 0).unwrap();
        let leaf = (PageFlags::PRESENT | PageFlags::HUGE | PageFlags::USER).bits();
        memory.write_entry(pdpt, 1, 0x4000_0000 | leaf);
        memory.write_entry(Frame::from_number(0x4_0000), 0, 0x20_0000 | leaf);
        (memory, frames, space)
    }

    #[test]
    fn gigabyte_leaves_are_neither_reported_nor_walked() {
        let (memory, _frames, space) = space_with_gigabyte_leaf();
        assert_eq!(space.leaf(&memory, 0x4000_0000), None);
        assert_eq!(space.leaf(&memory, 0x1000).unwrap().frame, Frame::from_number(0x77));
        assert_eq!(space.leaf(&memory, 0x0001_0000_0000_1000), None, "non-canonical alias of 0x1000");
    }

    #[test]
    fn removing_leaves_skips_gigabyte_leaves() {
        let (mut memory, _frames, mut space) = space_with_gigabyte_leaf();
        let mut seen = Vec::new();
        assert!(space.remove_leaves_in_slot(&mut memory, 0, &mut |_| true, &mut |address, _| seen.push(address)));
        assert_eq!(seen, [0x1000]);
        assert_ne!(memory.read_entry(Frame::from_number(0x4_0000), 0), 0, "the 1 GiB page's contents untouched");
    }
}
