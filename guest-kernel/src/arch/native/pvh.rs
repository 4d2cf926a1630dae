//! The PVH start info (`struct hvm_start_info`, Xen's public `arch-x86/hvm/start_info.h`):
//! the memory map, the command line and the boot modules, read once at boot through the
//! boot tables' window on the first GiB, and copied: the loader's structures are not kept.

use super::paging::{virtual_address, BOOT_WINDOW};
use super::ranges::{Full, Range, RangeSet};

const MAGIC: u32 = 0x336e_c578;
/// The E820 type of usable RAM.
const RAM: u32 = 1;
/// Bounds on what a loader hands over, so a broken one cannot make boot loop for ever.
const MAX_MEMORY_MAP_ENTRIES: u32 = 128;
/// Bytes of the command line kept (more is an error, not a silent cut).
pub const COMMAND_LINE_BYTES: usize = 4096;

#[derive(Copy, Clone)]
#[repr(C)]
struct StartInfo {
    magic: u32,
    version: u32,
    flags: u32,
    module_count: u32,
    module_list: u64,
    command_line: u64,
    rsdp: u64,
    memory_map: u64,
    memory_map_entries: u32,
    reserved: u32,
}

#[derive(Copy, Clone)]
#[repr(C)]
struct ModuleEntry {
    address: u64,
    size: u64,
    command_line: u64,
    reserved: u64,
}

#[derive(Copy, Clone)]
#[repr(C)]
struct MemoryMapEntry {
    address: u64,
    size: u64,
    kind: u32,
    reserved: u32,
}

/// What the loader said.
pub struct BootInfo {
    /// Usable RAM.
    pub ram: RangeSet,
    /// The first module (the initramfs), if the loader passed any.
    pub initramfs: Option<Range>,
    /// How many modules there were (only the first is used).
    pub modules: u32,
}

/// Reads a `T` at `physical`, which must lie in the boot window.
fn read<T: Copy>(physical: u64) -> Result<T, &'static str> {
    let end = physical.checked_add(core::mem::size_of::<T>() as u64);
    if physical == 0 || end.is_none_or(|end| end > BOOT_WINDOW) {
        return Err("the PVH start info points outside the first GiB");
    }
    // SAFETY: inside the first GiB, which the boot tables map at its direct-map address
    // (checked above); the loader's structures are plain data nobody writes while the
    // kernel boots, and unaligned reads are allowed.
    Ok(unsafe { core::ptr::read_unaligned(virtual_address(physical) as *const T) })
}

/// Reads the start info at `physical` (EBX at entry), copying the command line into
/// `command_line` (NUL-terminated there; its length is returned with the rest).
pub fn read_boot_info(
    physical: u64,
    command_line: &mut [u8; COMMAND_LINE_BYTES],
) -> Result<(BootInfo, usize), &'static str> {
    let info: StartInfo = read(physical)?;
    if info.magic != MAGIC {
        return Err("no PVH start info (wrong magic): boot with a PVH loader such as QEMU's -kernel");
    }
    if info.version < 1 || info.memory_map == 0 || info.memory_map_entries == 0 {
        return Err("the PVH start info has no memory map (a version 0 loader)");
    }
    if info.memory_map_entries > MAX_MEMORY_MAP_ENTRIES {
        return Err("the PVH memory map is implausibly long");
    }
    let mut ram = RangeSet::new();
    for index in 0..u64::from(info.memory_map_entries) {
        let entry: MemoryMapEntry = read(info.memory_map + index * core::mem::size_of::<MemoryMapEntry>() as u64)?;
        if entry.kind == RAM {
            let end = entry.address.saturating_add(entry.size);
            ram.add(Range::new(entry.address, end)).map_err(|Full| "the PVH memory map has too many pieces")?;
        }
    }
    let initramfs = if info.module_count > 0 {
        let module: ModuleEntry = read(info.module_list)?;
        let range = Range::new(module.address, module.address.saturating_add(module.size));
        if !range.is_empty() && !ram.contains(range) {
            return Err("the initramfs module does not lie in RAM");
        }
        Some(range)
    } else {
        None
    };
    let mut length = 0;
    if info.command_line != 0 {
        loop {
            let byte: u8 = read(info.command_line + length as u64)?;
            if byte == 0 {
                break;
            }
            if length == COMMAND_LINE_BYTES - 1 {
                return Err("the kernel command line is longer than 4095 bytes");
            }
            // Percent-encoding keeps the command line ASCII; anything else is shown as '?'.
            command_line[length] = if byte.is_ascii() { byte } else { b'?' };
            length += 1;
        }
    }
    Ok((BootInfo { ram, initramfs, modules: info.module_count }, length))
}
