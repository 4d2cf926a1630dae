//! Static ELF64 programs: checked, then described as a load plan.
//!
//! The kernel runs static x86-64 executables, fixed-address (`ET_EXEC`) or
//! position-independent (`ET_DYN` without an interpreter: static-PIE, as Rust's musl
//! target and `gcc -static-pie` produce). A dynamically linked program names an
//! interpreter (`PT_INTERP`), which this kernel has no loader for: that is ENOEXEC, with
//! the reason. Every offset and size in the file is checked against the file and the user
//! address range before the plan is returned, so mapping it cannot read past the file or
//! map outside user space.

use alloc::vec::Vec;
use core::fmt;
use elf::abi;
use elf::endian::LittleEndian;
use elf::file::Class;
use elf::ElfBytes;

use crate::linux::Errno;

/// Size of a page.
pub const PAGE_SIZE: u64 = 4096;

/// Access a loaded segment allows.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Protection {
    /// Readable.
    pub read: bool,
    /// Writable.
    pub write: bool,
    /// Executable.
    pub execute: bool,
}

impl Protection {
    fn from_flags(flags: u32) -> Protection {
        Protection { read: flags & abi::PF_R != 0, write: flags & abi::PF_W != 0, execute: flags & abi::PF_X != 0 }
    }
}

/// One `PT_LOAD` segment, relocated by the program's load bias.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Where the segment's first byte goes.
    pub address: u64,
    /// Bytes it occupies in memory (the part past `file_size` is zero).
    pub memory_size: u64,
    /// Where its bytes are in the file.
    pub file_offset: u64,
    /// How many bytes come from the file.
    pub file_size: u64,
    /// Its access.
    pub protection: Protection,
}

impl Segment {
    /// One past its last byte in memory.
    pub const fn end(&self) -> u64 {
        self.address + self.memory_size
    }
}

/// A checked program: what to map and where to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    /// The entry point (relocated).
    pub entry: u64,
    /// The load bias added to every address (0 for `ET_EXEC`).
    pub bias: u64,
    /// The loadable segments, in file order, non-overlapping.
    pub segments: Vec<Segment>,
    /// Where the program headers are in memory, for `AT_PHDR` (libc finds its TLS
    /// template there).
    pub program_headers: u64,
    /// Size of one program header, for `AT_PHENT`.
    pub program_header_size: u16,
    /// Number of program headers, for `AT_PHNUM`.
    pub program_header_count: u16,
    /// The program asked for an executable stack (`PT_GNU_STACK` with X, or no
    /// `PT_GNU_STACK` at all, as Linux reads it).
    pub executable_stack: bool,
    /// One past the highest segment byte: where the program break starts (page-aligned up).
    pub break_start: u64,
}

/// Why a file is not a program this kernel runs (every case is ENOEXEC to user space).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ProgramError {
    /// Not an ELF file, or an ELF file whose headers do not parse.
    NotElf,
    /// ELF, but not 64-bit little-endian x86-64.
    WrongMachine,
    /// Neither an executable nor a position-independent executable.
    WrongType,
    /// Dynamically linked: names an interpreter.
    Dynamic,
    /// No `PT_LOAD` segment, or the entry point outside every segment.
    NothingToRun,
    /// A segment is larger in the file than in memory, outside the file, misaligned,
    /// outside user space, or overlapping another.
    BadSegment,
}

impl ProgramError {
    /// The errno `execve` returns for it.
    pub const fn errno(self) -> Errno {
        Errno::ENOEXEC
    }
}

impl fmt::Display for ProgramError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProgramError::NotElf => "not an ELF file",
            ProgramError::WrongMachine => "not a 64-bit little-endian x86-64 ELF file",
            ProgramError::WrongType => "not an executable (ET_EXEC or static-PIE ET_DYN)",
            ProgramError::Dynamic => "dynamically linked (has an interpreter); link it statically",
            ProgramError::NothingToRun => "no loadable segment holds the entry point",
            ProgramError::BadSegment => "a loadable segment is malformed or outside user space",
        })
    }
}

/// Checks `file` and plans its loading. `pie_base` (page-aligned) is where a
/// position-independent program's address 0 goes; `user_limit` is one past the highest
/// user address.
pub fn plan(file: &[u8], pie_base: u64, user_limit: u64) -> Result<Program, ProgramError> {
    let elf = ElfBytes::<LittleEndian>::minimal_parse(file).map_err(|_| {
        if file.starts_with(b"\x7fELF") {
            ProgramError::WrongMachine
        } else {
            ProgramError::NotElf
        }
    })?;
    let header = elf.ehdr;
    if header.class != Class::ELF64 || header.e_machine != abi::EM_X86_64 {
        return Err(ProgramError::WrongMachine);
    }
    let bias = match header.e_type {
        abi::ET_EXEC => 0,
        abi::ET_DYN if pie_base.is_multiple_of(PAGE_SIZE) => pie_base,
        _ => return Err(ProgramError::WrongType),
    };
    let table = elf.segments().ok_or(ProgramError::NothingToRun)?;

    let mut segments: Vec<Segment> = Vec::new();
    let mut program_headers = None;
    let mut executable_stack = true;
    for header in table.iter() {
        match header.p_type {
            abi::PT_INTERP => return Err(ProgramError::Dynamic),
            abi::PT_GNU_STACK => executable_stack = header.p_flags & abi::PF_X != 0,
            abi::PT_PHDR => program_headers = Some(header.p_vaddr.checked_add(bias).ok_or(ProgramError::BadSegment)?),
            abi::PT_LOAD if header.p_memsz > 0 => {
                let segment = checked_segment(&header, bias, file.len() as u64, user_limit)?;
                if segments.iter().any(|other| segment.address < other.end() && other.address < segment.end()) {
                    return Err(ProgramError::BadSegment);
                }
                segments.push(segment);
            }
            _ => {}
        }
    }
    if segments.is_empty() {
        return Err(ProgramError::NothingToRun);
    }
    let entry = header.e_entry.checked_add(bias).ok_or(ProgramError::NothingToRun)?;
    if !segments.iter().any(|segment| segment.protection.execute && segment.address <= entry && entry < segment.end()) {
        return Err(ProgramError::NothingToRun);
    }
    // Without PT_PHDR, the headers are wherever the segment holding that file range puts
    // them (as Linux computes AT_PHDR).
    let table_size = u64::from(header.e_phentsize) * u64::from(header.e_phnum);
    let program_headers = match program_headers {
        Some(address) => address,
        None => segments
            .iter()
            .find(|segment| {
                segment.file_offset <= header.e_phoff
                    && header.e_phoff + table_size <= segment.file_offset + segment.file_size
            })
            .map(|segment| segment.address + (header.e_phoff - segment.file_offset))
            .unwrap_or(0),
    };
    let highest = segments.iter().map(Segment::end).max().unwrap_or(0);
    let break_start = highest.checked_next_multiple_of(PAGE_SIZE).ok_or(ProgramError::BadSegment)?;
    Ok(Program {
        entry,
        bias,
        segments,
        program_headers,
        program_header_size: header.e_phentsize,
        program_header_count: header.e_phnum,
        executable_stack,
        break_start,
    })
}

fn checked_segment(
    header: &elf::segment::ProgramHeader,
    bias: u64,
    file_len: u64,
    user_limit: u64,
) -> Result<Segment, ProgramError> {
    let bad = ProgramError::BadSegment;
    let address = header.p_vaddr.checked_add(bias).ok_or(bad)?;
    let end = address.checked_add(header.p_memsz).ok_or(bad)?;
    let file_end = header.p_offset.checked_add(header.p_filesz).ok_or(bad)?;
    let aligned = address % PAGE_SIZE == header.p_offset % PAGE_SIZE;
    if header.p_filesz > header.p_memsz || file_end > file_len || !aligned || address < PAGE_SIZE || end > user_limit {
        return Err(bad);
    }
    Ok(Segment {
        address,
        memory_size: header.p_memsz,
        file_offset: header.p_offset,
        file_size: header.p_filesz,
        protection: Protection::from_flags(header.p_flags),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const USER_LIMIT: u64 = 0x0000_8000_0000_0000;

    /// A program header as the builder writes it.
    #[derive(Copy, Clone)]
    pub(crate) struct Header {
        pub kind: u32,
        pub flags: u32,
        pub offset: u64,
        pub address: u64,
        pub file_size: u64,
        pub memory_size: u64,
    }

    pub(crate) fn load(flags: u32, offset: u64, address: u64, file_size: u64, memory_size: u64) -> Header {
        Header { kind: abi::PT_LOAD, flags, offset, address, file_size, memory_size }
    }

    /// An ELF64 x86-64 file with these program headers right after the file header,
    /// padded to `size` bytes.
    pub(crate) fn elf_file(kind: u16, entry: u64, headers: &[Header], size: usize) -> Vec<u8> {
        let mut file = Vec::new();
        file.extend_from_slice(b"\x7fELF\x02\x01\x01\x00");
        file.extend_from_slice(&[0; 8]);
        file.extend_from_slice(&kind.to_le_bytes());
        file.extend_from_slice(&abi::EM_X86_64.to_le_bytes());
        file.extend_from_slice(&1u32.to_le_bytes());
        file.extend_from_slice(&entry.to_le_bytes());
        file.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
        file.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
        file.extend_from_slice(&0u32.to_le_bytes()); // e_flags
        file.extend_from_slice(&64u16.to_le_bytes()); // e_ehsize
        file.extend_from_slice(&56u16.to_le_bytes()); // e_phentsize
        file.extend_from_slice(&(headers.len() as u16).to_le_bytes());
        file.extend_from_slice(&64u16.to_le_bytes()); // e_shentsize
        file.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
        file.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
        for header in headers {
            file.extend_from_slice(&header.kind.to_le_bytes());
            file.extend_from_slice(&header.flags.to_le_bytes());
            file.extend_from_slice(&header.offset.to_le_bytes());
            file.extend_from_slice(&header.address.to_le_bytes());
            file.extend_from_slice(&header.address.to_le_bytes());
            file.extend_from_slice(&header.file_size.to_le_bytes());
            file.extend_from_slice(&header.memory_size.to_le_bytes());
            file.extend_from_slice(&PAGE_SIZE.to_le_bytes());
        }
        file.resize(size.max(file.len()), 0xcc);
        file
    }

    const RX: u32 = abi::PF_R | abi::PF_X;
    const RW: u32 = abi::PF_R | abi::PF_W;

    fn static_exec() -> Vec<u8> {
        elf_file(
            abi::ET_EXEC,
            0x401000,
            &[
                load(abi::PF_R, 0, 0x400000, 0x200, 0x200),
                load(RX, 0x1000, 0x401000, 0x800, 0x800),
                load(RW, 0x2000, 0x402000, 0x100, 0x3000),
            ],
            0x2100,
        )
    }

    #[test]
    fn a_static_executable_is_planned_as_written() {
        let program = plan(&static_exec(), 0x5555_0000_0000, USER_LIMIT).unwrap();
        assert_eq!(program.entry, 0x401000);
        assert_eq!(program.bias, 0);
        assert_eq!(program.segments.len(), 3);
        assert_eq!(program.segments[2].file_size, 0x100);
        assert_eq!(program.segments[2].memory_size, 0x3000);
        assert!(program.segments[1].protection.execute && !program.segments[1].protection.write);
        assert_eq!(program.program_headers, 0x400040, "AT_PHDR from the segment holding the headers");
        assert_eq!(program.program_header_count, 3);
        assert_eq!(program.break_start, 0x405000);
        assert!(program.executable_stack, "no PT_GNU_STACK means an executable stack, as on Linux");
    }

    #[test]
    fn a_static_pie_is_moved_to_the_base() {
        let file = elf_file(
            abi::ET_DYN,
            0x1000,
            &[
                load(RX, 0, 0, 0x1800, 0x1800),
                Header { kind: abi::PT_GNU_STACK, flags: RW, offset: 0, address: 0, file_size: 0, memory_size: 0 },
            ],
            0x1800,
        );
        // A PIE's first segment may sit at 0 before relocation.
        let program = plan(&file, 0x5555_0000_0000, USER_LIMIT).unwrap();
        assert_eq!(program.entry, 0x5555_0000_1000);
        assert_eq!(program.segments[0].address, 0x5555_0000_0000);
        assert!(!program.executable_stack);
        assert_eq!(plan(&file, 0x5555_0000_0010, USER_LIMIT), Err(ProgramError::WrongType), "unaligned base");
    }

    #[test]
    fn dynamic_and_foreign_files_are_refused() {
        let mut headers = [load(RX, 0, 0x400000, 0x100, 0x100); 2];
        headers[1].kind = abi::PT_INTERP;
        assert_eq!(plan(&elf_file(abi::ET_EXEC, 0x400000, &headers, 0x100), 0, USER_LIMIT), Err(ProgramError::Dynamic));
        assert_eq!(plan(b"#!/bin/sh\necho hi\n", 0, USER_LIMIT), Err(ProgramError::NotElf));
        let mut file = static_exec();
        file[18] = 0x3e + 1; // e_machine
        assert_eq!(plan(&file, 0, USER_LIMIT), Err(ProgramError::WrongMachine));
        let mut file = static_exec();
        file[4] = 1; // 32-bit class
        assert!(matches!(plan(&file, 0, USER_LIMIT), Err(ProgramError::WrongMachine | ProgramError::NotElf)));
        let mut file = static_exec();
        file[16] = 1; // ET_REL
        assert_eq!(plan(&file, 0, USER_LIMIT), Err(ProgramError::WrongType));
        assert_eq!(ProgramError::Dynamic.errno(), Errno::ENOEXEC);
    }

    #[test]
    fn every_bad_segment_is_refused() {
        let cases = [
            load(RX, 0x1000, 0x401000, 0x900, 0x800),          // file larger than memory
            load(RX, 0x2000, 0x401000, 0x800, 0x800),          // offset and address not congruent
            load(RX, 0x1000, 0x401000, 0x10_0000, 0x10_0000),  // past the end of the file
            load(RX, 0x1000, 0x7fff_ffff_f000, 0x800, 0x2000), // past the user limit
            load(RX, 0x1000, 0x1000 - 0x1000, 0x800, 0x800),   // at address 0
            load(RX, 0x1000, u64::MAX - 0xfff, 0x800, 0x2000), // wraps
        ];
        for (index, bad) in cases.iter().enumerate() {
            let file = elf_file(abi::ET_EXEC, 0x401000, &[load(RX, 0x1000, 0x401000, 0x800, 0x800), *bad], 0x2000);
            assert_eq!(plan(&file, 0, USER_LIMIT), Err(ProgramError::BadSegment), "case {index}");
        }
        let overlapping = elf_file(
            abi::ET_EXEC,
            0x401000,
            &[load(RX, 0x1000, 0x401000, 0x800, 0x800), load(RW, 0x1400, 0x401400, 0x100, 0x100)],
            0x2000,
        );
        assert_eq!(plan(&overlapping, 0, USER_LIMIT), Err(ProgramError::BadSegment));
    }

    #[test]
    fn the_entry_must_be_in_an_executable_segment() {
        let file = elf_file(abi::ET_EXEC, 0x402000, &[load(RX, 0x1000, 0x401000, 0x800, 0x800)], 0x2000);
        assert_eq!(plan(&file, 0, USER_LIMIT), Err(ProgramError::NothingToRun));
        let file = elf_file(abi::ET_EXEC, 0x401000, &[load(RW, 0x1000, 0x401000, 0x800, 0x800)], 0x2000);
        assert_eq!(plan(&file, 0, USER_LIMIT), Err(ProgramError::NothingToRun));
    }

    #[test]
    fn every_truncation_of_a_program_is_refused_without_panicking() {
        let file = static_exec();
        for length in 0..file.len() {
            assert!(plan(&file[..length], 0, USER_LIMIT).is_err(), "accepted {length} bytes");
        }
    }
}
