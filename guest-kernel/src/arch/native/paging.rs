//! Page tables. The kernel's own: its image at its link address (text R-X, rodata R--,
//! data RW-, the stack's guard page left out), all RAM at [`DIRECT_MAP_BASE`] with 2 MiB
//! pages (read-write, never executable), device pages uncached; every kernel mapping is
//! global and supervisor-only, and nothing is mapped in the lower half. Each user
//! [`AddressSpace`] is a PML4 of its own whose upper half repeats the kernel's, so the
//! kernel runs unchanged in every space; its lower half holds only what the kernel asked
//! for with [`update`]. Tables are changed through the `x86_64` crate's mapper.

use super::heap;
use super::ranges::{Range, RangeSet};
use crate::arch::machine::{AddressSpace, MachineError, PageAccess, PageUpdate, PAGE_SIZE, USER_LIMIT};
use alloc::alloc::{alloc_zeroed, dealloc, Layout};
use alloc::collections::BTreeSet;
use spin::{Mutex, Once};
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::structures::paging::mapper::{FlagUpdateError, MapToError, UnmapError};
use x86_64::structures::paging::{
    FrameAllocator, Mapper, OffsetPageTable, Page, PageSize, PageTable, PageTableFlags as Flags, PhysFrame, Size2MiB,
    Size4KiB,
};
use x86_64::{PhysAddr, VirtAddr};

/// Where physical address 0 appears (PML4 slot 384, in every address space).
pub const DIRECT_MAP_BASE: u64 = 0xffff_c000_0000_0000;
/// The direct map's reach (PML4 slots 384–447, clear of the image in slot 511): RAM
/// beyond it is not used.
pub const DIRECT_MAP_LIMIT: u64 = 1 << 45;
/// What the boot tables map at [`DIRECT_MAP_BASE`] (and identity): the first GiB.
pub const BOOT_WINDOW: u64 = 1 << 30;
const LARGE_PAGE: u64 = 2 << 20;
/// PML4 slots of the kernel half, shared by every address space.
const KERNEL_SLOTS: core::ops::Range<usize> = 256..512;

// Linux's error numbers, negated as the paravirtual platform reports them.
const EINVAL: i64 = -22;
const EEXIST: i64 = -17;
const ENOENT: i64 = -2;
const ENOMEM: i64 = -12;
const ESRCH: i64 = -3;

extern "C" {
    static __text_start: u8;
    static __text_end: u8;
    static __rodata_start: u8;
    static __rodata_end: u8;
    static __data_start: u8;
    static __image_start: u8;
    static __image_end: u8;
    static native_stack_guard: u8;
}

/// The address of a linker or assembler symbol (never dereferenced).
fn symbol(address: *const u8) -> u64 {
    address as u64
}

/// The direct-map address of `physical`.
pub fn virtual_address(physical: u64) -> u64 {
    DIRECT_MAP_BASE + physical
}

fn page_layout() -> Layout {
    Layout::from_size_align(PAGE_SIZE as usize, PAGE_SIZE as usize).expect("a page is a valid layout")
}

/// The kernel's PML4 (physical address), set once the kernel's tables are loaded.
static KERNEL_ROOT: Once<u64> = Once::new();

/// Page-table frames at boot, before the heap: taken from free RAM the boot tables map
/// (the first GiB), zeroed.
pub struct BootFrames<'a> {
    pub free: &'a mut RangeSet,
    pub taken: u64,
}

// SAFETY: every frame handed out is removed from the free set (so it is never handed
// out again, nor given to the heap later), is RAM, and lies in the boot window.
unsafe impl FrameAllocator<Size4KiB> for BootFrames<'_> {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        let physical = self.free.take_below(PAGE_SIZE, BOOT_WINDOW)?;
        // SAFETY: a free RAM page inside the boot window, which the boot tables map
        // read-write at its direct-map address; nothing else uses it.
        unsafe { (virtual_address(physical) as *mut u8).write_bytes(0, PAGE_SIZE as usize) };
        self.taken += 1;
        Some(PhysFrame::containing_address(PhysAddr::new(physical)))
    }
}

/// Page-table frames after boot: zeroed pages of the kernel heap.
struct HeapFrames;

/// The heap pages that are page tables (physical addresses). They are heap pages like the
/// frames the kernel maps into user space, and mapping one there would hand user mode
/// the page tables: [`update`] refuses them.
static TABLES: Mutex<BTreeSet<u64>> = Mutex::new(BTreeSet::new());

// SAFETY: each frame is a fresh page-aligned heap allocation, owned by the table it
// becomes until `destroy` frees it; heap pages lie in the direct map at their physical
// address plus DIRECT_MAP_BASE.
unsafe impl FrameAllocator<Size4KiB> for HeapFrames {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        // SAFETY: the layout has a non-zero size.
        let page = unsafe { alloc_zeroed(page_layout()) } as u64;
        if page == 0 {
            return None;
        }
        let physical = page - DIRECT_MAP_BASE;
        TABLES.lock().insert(physical);
        Some(PhysFrame::containing_address(PhysAddr::new(physical)))
    }
}

/// The mapper over the table whose root is at `root` (physical).
///
/// # Safety
/// `root` must be a PML4 reachable through the direct map, and no other mapper or
/// reference to it may be in use while the result lives.
unsafe fn mapper(root: u64) -> OffsetPageTable<'static> {
    // SAFETY: forwarded to the caller.
    unsafe {
        let table = &mut *(virtual_address(root) as *mut PageTable);
        OffsetPageTable::new(table, VirtAddr::new(DIRECT_MAP_BASE))
    }
}

/// Where the kernel lies physically, from the linker script (`native_layout` in boot.s).
#[derive(Copy, Clone, Debug)]
#[repr(C)]
pub struct ImageLayout {
    /// The physical address of the image's first byte (its link address is `__image_start`).
    pub physical_base: u64,
    /// The PVH boot code and boot tables, identity-mapped.
    pub boot_start: u64,
    pub boot_end: u64,
}

impl ImageLayout {
    /// The physical memory the image occupies: the boot code and tables, and the kernel.
    pub fn physical_ranges(&self) -> [Range; 2] {
        let size = symbol(&raw const __image_end) - symbol(&raw const __image_start);
        [Range::new(self.boot_start, self.boot_end), Range::new(self.physical_base, self.physical_base + size)]
    }
}

fn cannot_map_kernel<S: PageSize>(_: MapToError<S>) -> &'static str {
    "cannot map the kernel (no free RAM below 1 GiB for its page tables)"
}

/// Builds the kernel's tables and loads them, which also drops the boot tables' identity
/// map. `ram` is the RAM the memory map lists (the direct map covers it, up to
/// [`DIRECT_MAP_LIMIT`]); table frames come from `frames`.
pub fn install_kernel_tables(
    ram: &RangeSet,
    frames: &mut BootFrames<'_>,
    layout: &ImageLayout,
) -> Result<(), &'static str> {
    let root = frames.allocate_frame().ok_or("no free RAM below 1 GiB for the kernel's page tables")?;
    let root = root.start_address().as_u64();
    // SAFETY: a zeroed frame inside the boot window (so reachable through the direct map
    // of the boot tables), referenced by nothing else yet.
    let mut mapper = unsafe { mapper(root) };
    let table_flags = Flags::PRESENT | Flags::WRITABLE;

    let image_start = symbol(&raw const __image_start);
    let (text, rodata) = (
        (symbol(&raw const __text_start), symbol(&raw const __text_end)),
        (symbol(&raw const __rodata_start), symbol(&raw const __rodata_end)),
    );
    let data_start = symbol(&raw const __data_start);
    let (image_end, guard) = (symbol(&raw const __image_end), symbol(&raw const native_stack_guard));
    let mut address = image_start;
    while address < image_end {
        let flags = if (text.0..text.1).contains(&address) {
            Flags::PRESENT | Flags::GLOBAL
        } else if (rodata.0..rodata.1).contains(&address) {
            Flags::PRESENT | Flags::NO_EXECUTE | Flags::GLOBAL
        } else if address >= data_start && address != guard {
            Flags::PRESENT | Flags::WRITABLE | Flags::NO_EXECUTE | Flags::GLOBAL
        } else {
            // The guard page, and the gaps between segments.
            address += PAGE_SIZE;
            continue;
        };
        let page = Page::<Size4KiB>::containing_address(VirtAddr::new(address));
        let frame = PhysFrame::containing_address(PhysAddr::new(address - image_start + layout.physical_base));
        // SAFETY: the image's own pages at its link address, with the permissions of its
        // segments, in tables nobody uses yet.
        unsafe { mapper.map_to_with_table_flags(page, frame, flags, table_flags, frames) }
            .map_err(cannot_map_kernel)?
            .ignore();
        address += PAGE_SIZE;
    }

    let mut mapped_until = 0;
    for range in ram.ranges() {
        let start = (range.start / LARGE_PAGE * LARGE_PAGE).max(mapped_until);
        let end = range.end.min(DIRECT_MAP_LIMIT).div_ceil(LARGE_PAGE) * LARGE_PAGE;
        let mut physical = start;
        while physical < end {
            let page = Page::<Size2MiB>::containing_address(VirtAddr::new(virtual_address(physical)));
            let frame = PhysFrame::<Size2MiB>::containing_address(PhysAddr::new(physical));
            let flags = Flags::PRESENT | Flags::WRITABLE | Flags::NO_EXECUTE | Flags::GLOBAL;
            // SAFETY: RAM (or the rest of a 2 MiB block that holds RAM) at its direct-map
            // address, never executable; the tables are not in use yet.
            unsafe { mapper.map_to_with_table_flags(page, frame, flags, table_flags, frames) }
                .map_err(cannot_map_kernel)?
                .ignore();
            physical += LARGE_PAGE;
        }
        mapped_until = mapped_until.max(end);
    }

    let frame = PhysFrame::containing_address(PhysAddr::new(root));
    // SAFETY: the new tables map everything the kernel uses from now on at the addresses
    // it uses: its image (code, data, this stack), and all RAM in the direct map (the
    // page-table frames, the heap to be, the initramfs). Only the boot tables' identity
    // map of the first GiB is gone; the descriptor tables already live in the image.
    unsafe { Cr3::write(frame, Cr3Flags::empty()) };
    KERNEL_ROOT.call_once(|| root);
    Ok(())
}

fn kernel_root() -> u64 {
    *KERNEL_ROOT.get().expect("the kernel's tables are installed at boot")
}

/// Maps the device page at `physical` uncached at its direct-map address (outside RAM,
/// where the direct map has no page) and returns that address.
pub fn map_device(physical: u64) -> Result<u64, &'static str> {
    let page = Page::<Size4KiB>::containing_address(VirtAddr::new(virtual_address(physical)));
    let frame = PhysFrame::containing_address(PhysAddr::new(physical));
    let flags =
        Flags::PRESENT | Flags::WRITABLE | Flags::NO_EXECUTE | Flags::GLOBAL | Flags::NO_CACHE | Flags::WRITE_THROUGH;
    // SAFETY: boot, one processor: nothing else uses the kernel's tables meanwhile.
    let mut mapper = unsafe { mapper(kernel_root()) };
    // SAFETY: a device page, mapped uncached where no RAM is mapped (the mapper refuses
    // an address a 2 MiB RAM page covers); the kernel's PML4 slots are shared by every
    // space, and no space exists yet.
    match unsafe {
        mapper.map_to_with_table_flags(page, frame, flags, Flags::PRESENT | Flags::WRITABLE, &mut HeapFrames)
    } {
        Ok(flush) => flush.flush(),
        Err(MapToError::PageAlreadyMapped(existing)) if existing == frame => {}
        Err(MapToError::FrameAllocationFailed) => return Err("no memory for a device page's tables"),
        Err(_) => return Err("a device page lies where RAM is mapped"),
    }
    Ok(page.start_address().as_u64())
}

/// The user address spaces that exist, by their PML4's physical address.
static SPACES: Mutex<BTreeSet<u64>> = Mutex::new(BTreeSet::new());

fn error(operation: &'static str, code: i64) -> MachineError {
    MachineError { operation, code }
}

/// A new user address space: a PML4 with the kernel's upper half and nothing below.
pub fn create() -> Result<AddressSpace, MachineError> {
    let root = HeapFrames.allocate_frame().ok_or(error("create_space", ENOMEM))?.start_address().as_u64();
    // SAFETY: both are PML4s in the direct map; the new one is fresh (no one else refers
    // to it) and only the kernel's half of the kernel's is read.
    unsafe {
        let kernel = &*(virtual_address(kernel_root()) as *const PageTable);
        let table = &mut *(virtual_address(root) as *mut PageTable);
        for slot in KERNEL_SLOTS {
            table[slot] = kernel[slot].clone();
        }
    }
    SPACES.lock().insert(root);
    Ok(AddressSpace(root))
}

fn known(space: AddressSpace) -> bool {
    SPACES.lock().contains(&space.0)
}

/// True if `space` is the one loaded in CR3.
fn live(space: AddressSpace) -> bool {
    Cr3::read().0.start_address().as_u64() == space.0
}

/// Loads `space` (if it is not loaded already); `false` if no such space exists.
pub fn activate(space: AddressSpace) -> bool {
    if !known(space) {
        return false;
    }
    if !live(space) {
        // SAFETY: a space from `create`, whose upper half is the kernel's: the kernel's
        // code, data and stack stay mapped across the switch.
        unsafe { Cr3::write(PhysFrame::containing_address(PhysAddr::new(space.0)), Cr3Flags::empty()) };
    }
    true
}

fn user_page(address: u64, operation: &'static str) -> Result<Page<Size4KiB>, MachineError> {
    if !address.is_multiple_of(PAGE_SIZE) || address >= USER_LIMIT {
        return Err(error(operation, EINVAL));
    }
    Ok(Page::containing_address(VirtAddr::new(address)))
}

fn user_flags(access: PageAccess) -> Flags {
    let mut flags = Flags::PRESENT | Flags::USER_ACCESSIBLE;
    flags.set(Flags::WRITABLE, access.writable);
    flags.set(Flags::NO_EXECUTE, !access.executable);
    flags
}

/// Applies `updates` to `space` in order (see [`crate::arch::machine::Machine::update_space`]).
pub fn update(space: AddressSpace, updates: &[PageUpdate]) -> Result<(), (usize, MachineError)> {
    if !known(space) {
        return Err((0, error("update_space (no such address space)", ESRCH)));
    }
    let flush = live(space);
    // SAFETY: the space's PML4 (known, so not destroyed); one processor and interrupts off,
    // so nothing else changes or walks these tables meanwhile (the MMU does, and is told
    // of every change below by invlpg when the space is loaded).
    let mut mapper = unsafe { mapper(space.0) };
    for (index, update) in updates.iter().enumerate() {
        let result = match *update {
            PageUpdate::Map { address, frame, access } => map(&mut mapper, address, frame.0, access, flush),
            PageUpdate::Protect { address, access } => protect(&mut mapper, address, access, flush),
            PageUpdate::Unmap { address } => unmap(&mut mapper, address, flush),
        };
        result.map_err(|error| (index, error))?;
    }
    Ok(())
}

fn map(
    mapper: &mut OffsetPageTable<'_>,
    address: u64,
    frame: u64,
    access: PageAccess,
    flush: bool,
) -> Result<(), MachineError> {
    let page = user_page(address, "map (address)")?;
    if !heap::contains_page(frame) {
        return Err(error("map (frame is not a kernel heap page)", EINVAL));
    }
    if TABLES.lock().contains(&(frame - DIRECT_MAP_BASE)) {
        return Err(error("map (frame is a page table)", EINVAL));
    }
    let frame = PhysFrame::containing_address(PhysAddr::new(frame - DIRECT_MAP_BASE));
    let tables = Flags::PRESENT | Flags::WRITABLE | Flags::USER_ACCESSIBLE;
    // SAFETY: a user page (lower half, user-accessible) mapped to a kernel heap page: the
    // kernel's own memory cannot be reached through it beyond that page, which the kernel
    // chose to share.
    match unsafe { mapper.map_to_with_table_flags(page, frame, user_flags(access), tables, &mut HeapFrames) } {
        Ok(done) if flush => done.flush(),
        Ok(done) => done.ignore(),
        Err(MapToError::PageAlreadyMapped(_)) => return Err(error("map (already mapped)", EEXIST)),
        Err(MapToError::FrameAllocationFailed) => return Err(error("map (page tables)", ENOMEM)),
        Err(MapToError::ParentEntryHugePage) => return Err(error("map (large page)", EINVAL)),
    }
    Ok(())
}

fn protect(
    mapper: &mut OffsetPageTable<'_>,
    address: u64,
    access: PageAccess,
    flush: bool,
) -> Result<(), MachineError> {
    let page = user_page(address, "protect (address)")?;
    // SAFETY: changes the permissions of a user page only.
    match unsafe { mapper.update_flags(page, user_flags(access)) } {
        Ok(done) if flush => done.flush(),
        Ok(done) => done.ignore(),
        Err(FlagUpdateError::PageNotMapped) => return Err(error("protect (not mapped)", ENOENT)),
        Err(FlagUpdateError::ParentEntryHugePage) => return Err(error("protect (large page)", EINVAL)),
    }
    Ok(())
}

fn unmap(mapper: &mut OffsetPageTable<'_>, address: u64, flush: bool) -> Result<(), MachineError> {
    let page = user_page(address, "unmap (address)")?;
    match mapper.unmap(page) {
        Ok((_, done)) if flush => done.flush(),
        Ok((_, done)) => done.ignore(),
        Err(UnmapError::PageNotMapped) => return Err(error("unmap (not mapped)", ENOENT)),
        Err(UnmapError::ParentEntryHugePage | UnmapError::InvalidFrameAddress(_)) => {
            return Err(error("unmap (large page)", EINVAL))
        }
    }
    Ok(())
}

/// Destroys `space`: frees its page tables (not the frames mapped in it). If it is
/// loaded, the kernel's own tables are loaded first.
pub fn destroy(space: AddressSpace) -> Result<(), MachineError> {
    if !SPACES.lock().remove(&space.0) {
        return Err(error("destroy_space (no such address space)", ESRCH));
    }
    if live(space) {
        // SAFETY: the kernel's tables map everything the kernel uses (every space shares
        // their upper half).
        unsafe { Cr3::write(PhysFrame::containing_address(PhysAddr::new(kernel_root())), Cr3Flags::empty()) };
    }
    // SAFETY: the space was known and is now forgotten and not loaded, so its tables are
    // this function's alone; their frames came from HeapFrames (heap pages in the direct
    // map) and are freed once each, leaves first. The upper half is the kernel's and is
    // not touched.
    unsafe { free_tables(space.0, 4, 0..256) };
    Ok(())
}

/// Frees the table at `physical` (a level-`level` table) and, below level 1, the tables
/// its entries `slots` point to.
///
/// # Safety
/// As in [`destroy`].
unsafe fn free_tables(physical: u64, level: u8, slots: core::ops::Range<usize>) {
    let table = virtual_address(physical) as *mut PageTable;
    if level > 1 {
        // SAFETY: the caller's table, in the direct map, this function's alone.
        let entries = unsafe { &*table };
        for slot in slots {
            let entry = &entries[slot];
            // User tables hold no large pages (the mapper makes none).
            if entry.flags().contains(Flags::PRESENT) && !entry.flags().contains(Flags::HUGE_PAGE) {
                // SAFETY: a table of this space's, owned by it alone.
                unsafe { free_tables(entry.addr().as_u64(), level - 1, 0..512) };
            }
        }
    }
    TABLES.lock().remove(&physical);
    // SAFETY: a heap page allocated with this layout by HeapFrames, referenced by nothing
    // any more.
    unsafe { dealloc(table.cast(), page_layout()) };
}
