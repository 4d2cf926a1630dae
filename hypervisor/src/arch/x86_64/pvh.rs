//! The PVH boot information (`struct hvm_start_info`, Xen's public `arch-x86/hvm/start_info.h`):
//! memory map, command line and boot modules, read and validated once at boot.

use super::memory::read_physical;
use alloc::string::String;
use alloc::vec::Vec;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

const MAGIC: u32 = 0x336e_c578;
/// Bounds on what the loader hands us, so a broken loader cannot make boot loop forever.
const MAX_MEMORY_MAP_ENTRIES: u32 = 128;
const MAX_MODULES: u32 = 16;
const MAX_COMMAND_LINE: usize = 4096;

#[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
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

#[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
struct ModuleEntry {
    address: u64,
    size: u64,
    command_line: u64,
    reserved: u64,
}

#[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
struct MemoryMapEntry {
    address: u64,
    size: u64,
    kind: u32,
    reserved: u32,
}

/// E820 type of usable RAM.
pub const RAM: u32 = 1;

#[derive(Copy, Clone, Debug)]
pub struct Region {
    pub start: u64,
    pub end: u64,
    pub kind: u32,
}

#[derive(Copy, Clone, Debug)]
pub struct Module {
    pub start: u64,
    pub size: u64,
}

pub struct BootInfo {
    pub memory_map: Vec<Region>,
    pub command_line: String,
    pub modules: Vec<Module>,
    /// Physical ranges the hypervisor must not hand out (the start-info structures).
    pub start_info_range: (u64, u64),
}

/// A `T` read from physical memory.
///
/// # Safety
/// As [`read_physical`] for `size_of::<T>()` bytes at `physical`.
unsafe fn read<T: FromBytes + IntoBytes>(physical: u64) -> T {
    let mut value = T::new_zeroed();
    // SAFETY: forwarded to the caller.
    unsafe { read_physical(physical, value.as_mut_bytes()) };
    value
}

/// Reads the boot information at `physical` (from EBX at entry).
///
/// # Safety
/// `physical` must be the start-info address the PVH loader passed, and the boot tables
/// (which map the low memory the loader's structures lie in) must still be loaded.
pub unsafe fn read_boot_info(physical: u64) -> Result<BootInfo, &'static str> {
    if physical == 0 || physical >= 1 << 30 {
        return Err("no PVH start info (EBX was 0 or beyond the first GiB)");
    }
    // SAFETY: the loader's start info (like its memory map, module list and command line
    // read below) lies at the address the loader wrote, mapped by the boot tables (the
    // caller's promise); nothing writes it while the hypervisor boots.
    let info: StartInfo = unsafe { read(physical) };
    if info.magic != MAGIC {
        return Err("PVH start info has the wrong magic; boot with a PVH loader (QEMU -kernel)");
    }
    if info.version < 1 || info.memory_map == 0 {
        return Err("PVH start info has no memory map (version 0 loader)");
    }
    if info.memory_map_entries == 0 || info.memory_map_entries > MAX_MEMORY_MAP_ENTRIES {
        return Err("PVH memory map is empty or implausibly long");
    }
    let mut memory_map = Vec::new();
    for index in 0..u64::from(info.memory_map_entries) {
        // SAFETY: see above.
        let entry: MemoryMapEntry = unsafe { read(info.memory_map + index * 24) };
        if let Some(end) = entry.address.checked_add(entry.size) {
            memory_map.push(Region { start: entry.address, end, kind: entry.kind });
        }
    }
    let mut modules = Vec::new();
    if info.module_count > MAX_MODULES {
        return Err("PVH start info lists implausibly many modules");
    }
    for index in 0..u64::from(info.module_count) {
        // SAFETY: see above.
        let entry: ModuleEntry = unsafe { read(info.module_list + index * 32) };
        modules.push(Module { start: entry.address, size: entry.size });
    }
    let mut command_line = String::new();
    if info.command_line != 0 {
        let mut byte = [0u8; 1];
        for offset in 0..MAX_COMMAND_LINE as u64 {
            // SAFETY: see above.
            unsafe { read_physical(info.command_line + offset, &mut byte) };
            if byte[0] == 0 {
                break;
            }
            command_line.push(if byte[0].is_ascii() { byte[0] as char } else { '?' });
        }
    }
    Ok(BootInfo {
        memory_map,
        command_line,
        modules,
        start_info_range: (physical, physical + core::mem::size_of::<StartInfo>() as u64),
    })
}
