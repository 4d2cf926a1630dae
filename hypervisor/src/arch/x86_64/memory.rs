//! Physical memory as the hypervisor sees it: a direct map of all RAM in PML4 slot 256,
//! the hypervisor's own page tables (W^X for the image), and the `FrameMemory`
//! implementation through which policy code reads and writes frames.

use hypercall_abi::layout::HYPERVISOR_START;
use hypervisor::mm::frames::{Frame, FrameAllocator};
use hypervisor::mm::paging::{FrameMemory, PageFlags};
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::structures::paging::PhysFrame;
use x86_64::PhysAddr;

/// Where physical address 0 appears in every address space.
pub const DIRECT_MAP_BASE: u64 = HYPERVISOR_START;
const PAGE: u64 = 4096;
const LARGE_PAGE: u64 = 2 << 20;
const GIGABYTE: u64 = 1 << 30;
/// The hypervisor's direct map lives in PML4 slot 256; the whole reserved range is
/// slots 256..272.
const DIRECT_MAP_SLOT: usize = 256;

extern "C" {
    static __text_start: u8;
    static __text_end: u8;
    static __rodata_start: u8;
    static __rodata_end: u8;
    static __image_end: u8;
}

fn symbol_address(symbol: *const u8) -> u64 {
    symbol as u64
}

/// Physical address → its address in the direct map.
pub fn virtual_address(physical: u64) -> u64 {
    DIRECT_MAP_BASE + physical
}

/// Frames reached through the direct map.
pub struct DirectMap;

fn frame_pointer(frame: Frame) -> *mut u8 {
    virtual_address(frame.address()) as *mut u8
}

// SAFETY: the library names only frames the allocator handed out and frames its page
// tables point to (FrameMemory's contract). Boot gives the allocator RAM from the PVH
// memory map above 1 MiB and below `ram_end`, all inside the direct map, and reserves
// the image, the start info and the boot modules before the first allocation; the heap's
// late region is allocated and never freed. So every frame is mapped RAM no Rust
// reference points into.
unsafe impl FrameMemory for DirectMap {
    fn read_entry(&self, table: Frame, index: usize) -> u64 {
        assert!(index < 512, "page-table index {index} out of range");
        // SAFETY: `table` is a RAM frame inside the direct map and index < 512 keeps the
        // access inside it; entries are plain u64s, aligned.
        unsafe { frame_pointer(table).cast::<u64>().add(index).read_volatile() }
    }

    fn write_entry(&mut self, table: Frame, index: usize, value: u64) {
        assert!(index < 512, "page-table index {index} out of range");
        // SAFETY: as in read_entry; page-table frames are owned by the hypervisor and never
        // mapped into a guest, so no guest can race this store.
        unsafe { frame_pointer(table).cast::<u64>().add(index).write_volatile(value) }
    }

    fn zero(&mut self, frame: Frame) {
        // Eight 8-byte stores per loop step rather than memset's `rep stosq`: an emulator
        // (TCG) runs each rep step as a loop iteration of its own, which made zeroing the
        // largest part of building a domain (~1.5k cycles a warm frame, ~0.85k this way); on
        // hardware the two are alike for 4 KiB.
        // SAFETY: a whole RAM frame inside the direct map, owned by the caller: the loop
        // writes exactly its 4096 bytes (64 steps of 64) and touches nothing else.
        unsafe {
            core::arch::asm!(
                "2:",
                "mov qword ptr [{pointer}], {zero}",
                "mov qword ptr [{pointer} + 8], {zero}",
                "mov qword ptr [{pointer} + 16], {zero}",
                "mov qword ptr [{pointer} + 24], {zero}",
                "mov qword ptr [{pointer} + 32], {zero}",
                "mov qword ptr [{pointer} + 40], {zero}",
                "mov qword ptr [{pointer} + 48], {zero}",
                "mov qword ptr [{pointer} + 56], {zero}",
                "add {pointer}, 64",
                "dec {steps:e}",
                "jnz 2b",
                pointer = inout(reg) frame_pointer(frame) => _,
                steps = inout(reg) (PAGE / 64) as u32 => _,
                zero = in(reg) 0u64,
                options(nostack),
            );
        }
    }

    fn read(&self, frame: Frame, offset: usize, buffer: &mut [u8]) {
        assert!(offset.checked_add(buffer.len()).is_some_and(|end| end <= PAGE as usize));
        // SAFETY: the range lies inside one RAM frame of the direct map (asserted above);
        // `buffer` is hypervisor memory, so the two cannot overlap. A guest may write the
        // frame concurrently only on another CPU, and there is one CPU.
        unsafe { core::ptr::copy_nonoverlapping(frame_pointer(frame).add(offset), buffer.as_mut_ptr(), buffer.len()) }
    }

    fn write(&mut self, frame: Frame, offset: usize, bytes: &[u8]) {
        assert!(offset.checked_add(bytes.len()).is_some_and(|end| end <= PAGE as usize));
        // SAFETY: as in `read`, with the direction reversed.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), frame_pointer(frame).add(offset), bytes.len()) }
    }
}

/// Reads `buffer.len()` bytes of physical memory at `physical` (firmware tables).
///
/// # Safety
/// The range must be mapped at its direct-map address and nothing may write it while it
/// is read.
pub unsafe fn read_physical(physical: u64, buffer: &mut [u8]) {
    // SAFETY: forwarded to the caller; `buffer` is hypervisor memory, so the two do not
    // overlap.
    unsafe { core::ptr::copy_nonoverlapping(virtual_address(physical) as *const u8, buffer.as_mut_ptr(), buffer.len()) }
}

/// A physical range as a byte slice through the direct map.
///
/// # Safety
/// The range must be RAM inside the direct map that nothing writes while the slice lives.
pub unsafe fn physical_slice(physical: u64, length: usize) -> &'static [u8] {
    // SAFETY: forwarded to the caller.
    unsafe { core::slice::from_raw_parts(virtual_address(physical) as *const u8, length) }
}

/// Builds the hypervisor's page tables — slot 256 maps physical `[0, ram_end)`: the
/// image's text read-only and executable, its rodata read-only, everything else
/// read-write and no-execute — and switches to them, which also drops the boot
/// identity map. Returns the root, whose slots 256..272 every guest space copies.
pub fn install_hypervisor_tables(frames: &mut FrameAllocator, ram_end: u64, global: bool) -> Frame {
    let mut memory = DirectMap;
    let mut allocate = || {
        let frame = frames.allocate().expect("memory for the hypervisor's page tables");
        DirectMap.zero(frame);
        frame
    };
    let global_flag = if global { PageFlags::GLOBAL } else { PageFlags::empty() };
    let table_flags = (PageFlags::PRESENT | PageFlags::WRITABLE).bits();
    let data_flags = PageFlags::PRESENT | PageFlags::WRITABLE | PageFlags::NO_EXECUTE | global_flag;

    let image_base = DIRECT_MAP_BASE;
    // Addresses of linker-script symbols; nothing is dereferenced.
    let (text_start, text_end, rodata_start, rodata_end, image_end) = (
        symbol_address(&raw const __text_start),
        symbol_address(&raw const __text_end),
        symbol_address(&raw const __rodata_start),
        symbol_address(&raw const __rodata_end),
        symbol_address(&raw const __image_end),
    );
    // 4-KiB granularity where the image lives, 2-MiB pages beyond it.
    let fine_end = (image_end - image_base).div_ceil(LARGE_PAGE) * LARGE_PAGE;

    let root = allocate();
    let directory_pointer = allocate();
    memory.write_entry(root, DIRECT_MAP_SLOT, directory_pointer.address() | table_flags);
    let mut physical = 0;
    while physical < ram_end {
        let gigabyte = (physical / GIGABYTE) as usize;
        let directory = allocate();
        memory.write_entry(directory_pointer, gigabyte, directory.address() | table_flags);
        for slot in 0..512 {
            let start = physical + slot as u64 * LARGE_PAGE;
            if start >= ram_end {
                break;
            }
            if start < fine_end {
                let table = allocate();
                memory.write_entry(directory, slot, table.address() | table_flags);
                for index in 0..512 {
                    let page = start + index as u64 * PAGE;
                    let virtual_page = image_base + page;
                    let flags = if virtual_page >= text_start && virtual_page < text_end {
                        PageFlags::PRESENT | global_flag
                    } else if virtual_page >= rodata_start && virtual_page < rodata_end {
                        PageFlags::PRESENT | PageFlags::NO_EXECUTE | global_flag
                    } else {
                        data_flags
                    };
                    memory.write_entry(table, index, page | flags.bits());
                }
            } else {
                memory.write_entry(directory, slot, start | (data_flags | PageFlags::HUGE).bits());
            }
        }
        physical += GIGABYTE;
    }
    let frame = PhysFrame::containing_address(PhysAddr::new(root.address()));
    // SAFETY: the new tables map everything the hypervisor touches at the same virtual
    // addresses as the boot tables did (image, stacks, heap, direct map of RAM); only
    // the identity map of low memory disappears, and nothing uses it after boot.s.
    unsafe { Cr3::write(frame, Cr3Flags::empty()) };
    root
}
