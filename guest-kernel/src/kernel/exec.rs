//! Building a new program's address space for `execve`: core plans the program and its
//! initial stack; this fills the pages and maps them in a fresh [`Space`]. Nothing of the
//! calling process changes here, so a failure leaves it running its old program.

extern crate alloc;

use alloc::vec::Vec;

use guest_kernel_core::exec::image::{fill_page, page_addresses};
use guest_kernel_core::exec::program::{plan, Program, Protection};
use guest_kernel_core::exec::stack::{build, AuxValues};
use guest_kernel_core::linux::Errno;
use guest_kernel_core::memory::regions::{Purpose, Regions};
use guest_kernel_core::user_memory::UserMemory;

use super::frames::{Frames, FRAME_BYTES};
use super::space::Space;
use super::user_access::UserAccess;
use super::vdso::{Vdso, IMAGE_ADDRESS};
use crate::arch::machine::{Machine, PageAccess, PAGE_SIZE, USER_LIMIT};

/// One past the main stack's highest byte.
pub const STACK_TOP: u64 = 0x0000_7fff_ff00_0000;
/// The main stack's size (its region; pages come on demand), as `RLIMIT_STACK` says.
pub const STACK_BYTES: u64 = 8 << 20;
/// Where a position-independent program's address 0 goes (Linux's choice too).
pub const PIE_BASE: u64 = 0x0000_5555_5555_4000;
/// The most bytes of arguments and environment strings (and their pointers) `execve`
/// takes: a quarter of the stack, as Linux allows (E2BIG past it).
pub const ARGUMENTS_MAX: usize = (STACK_BYTES / 4) as usize;
/// `mmap` without a hint searches down from here (below the stack and a guard gap).
const MMAP_TOP: u64 = STACK_TOP - STACK_BYTES - (1 << 30);

/// A program ready to run in its new space.
pub struct Loaded {
    /// Its address space.
    pub space: Space,
    /// The first instruction.
    pub entry: u64,
    /// The initial stack pointer (at `argc`).
    pub stack_pointer: u64,
}

/// Why a load failed: the errno, and whether the platform was the cause (for the log).
fn machine_errno(error: crate::arch::machine::MachineError) -> Errno {
    if error.code == -i64::from(Errno::ENOSPC.number()) {
        Errno::EAGAIN
    } else {
        Errno::ENOMEM
    }
}

/// Loads `file` (already found and checked executable) into a new space with `arguments`
/// and `environment` on its stack, and `vdso` (if the kernel has one) mapped. `quota`
/// bounds the bytes its regions may cover.
#[allow(clippy::too_many_arguments)]
pub fn load<M: Machine>(
    machine: &M,
    frames: &mut Frames,
    vdso: Option<&Vdso>,
    file: &[u8],
    path: &[u8],
    arguments: &[Vec<u8>],
    environment: &[Vec<u8>],
    random: [u8; 16],
    quota: u64,
) -> Result<Loaded, Errno> {
    let program = plan(file, PIE_BASE, USER_LIMIT).map_err(|error| error.errno())?;
    let mut regions = Regions::new(USER_LIMIT, MMAP_TOP, program.break_start, quota);
    for (start, end, protection) in segment_ranges(&program) {
        regions.insert(start, end - start, protection, Purpose::Program)?;
    }
    let stack = Protection { read: true, write: true, execute: program.executable_stack };
    regions.insert(STACK_TOP - STACK_BYTES, STACK_BYTES, stack, Purpose::Stack)?;
    if let Some(vdso) = vdso {
        vdso.plan(&mut regions)?;
    }

    let mut space = Space::create(machine, regions).map_err(machine_errno)?;
    let filled = fill(machine, frames, &mut space, &program, file, path, arguments, environment, random, vdso);
    match filled {
        Ok(stack_pointer) => Ok(Loaded { space, entry: program.entry, stack_pointer }),
        Err(error) => {
            space.destroy(machine, frames);
            Err(error)
        }
    }
}

/// The page-aligned ranges the segments cover, each with the union of the access of the
/// segments touching it (two segments may share a boundary page).
fn segment_ranges(program: &Program) -> Vec<(u64, u64, Protection)> {
    let mut ranges: Vec<(u64, u64, Protection)> = Vec::new();
    let mut pages: Vec<(u64, Protection)> = Vec::new();
    for page in page_addresses(program) {
        let mut access = Protection::default();
        for segment in &program.segments {
            if segment.address < page + PAGE_SIZE && page < segment.end() {
                access.read |= segment.protection.read;
                access.write |= segment.protection.write;
                access.execute |= segment.protection.execute;
            }
        }
        pages.push((page, access));
    }
    for (page, access) in pages {
        match ranges.last_mut() {
            Some((_, end, last)) if *end == page && *last == access => *end += PAGE_SIZE,
            _ => ranges.push((page, page + PAGE_SIZE, access)),
        }
    }
    ranges
}

#[allow(clippy::too_many_arguments)]
fn fill<M: Machine>(
    machine: &M,
    frames: &mut Frames,
    space: &mut Space,
    program: &Program,
    file: &[u8],
    path: &[u8],
    arguments: &[Vec<u8>],
    environment: &[Vec<u8>],
    random: [u8; 16],
    vdso: Option<&Vdso>,
) -> Result<u64, Errno> {
    if let Some(vdso) = vdso {
        vdso.map(machine, frames, space)?;
    }
    let mut contents = alloc::boxed::Box::new([0u8; FRAME_BYTES]);
    for page in page_addresses(program) {
        let Some(protection) = fill_page(program, file, page, &mut contents) else { continue };
        let frame = frames.allocate().ok_or(Errno::ENOMEM)?;
        if frames.write(frame, 0, &contents[..]).is_err() {
            let _ = frames.release(frame);
            return Err(Errno::ENOMEM);
        }
        let access = PageAccess { writable: protection.write, executable: protection.execute };
        if let Err(error) = space.map(machine, page, frame, access) {
            let _ = frames.release(frame);
            return Err(machine_errno(error));
        }
    }
    let aux = AuxValues {
        program_headers: program.program_headers,
        program_header_size: u64::from(program.program_header_size),
        program_header_count: u64::from(program.program_header_count),
        entry: program.entry,
        uid: 0,
        gid: 0,
        hardware_capabilities: 0,
        clock_ticks: guest_kernel_core::files::CLOCK_TICKS_PER_SECOND,
        random,
        vdso: vdso.map_or(0, |_| IMAGE_ADDRESS),
    };
    let arguments: Vec<&[u8]> = arguments.iter().map(Vec::as_slice).collect();
    let environment: Vec<&[u8]> = environment.iter().map(Vec::as_slice).collect();
    let stack = build(STACK_TOP, path, &arguments, &environment, &aux, ARGUMENTS_MAX)?;
    let mut memory = UserAccess { machine, space, frames };
    memory.write(stack.stack_pointer, &stack.bytes)?;
    Ok(stack.stack_pointer)
}
