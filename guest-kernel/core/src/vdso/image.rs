//! The vDSO's ELF image: a position-independent shared object (`ET_DYN`, linked at 0)
//! holding the platform's machine code and what a dynamic linker or libc needs to find
//! its functions by name and version: a dynamic section with a SysV hash table
//! (`DT_HASH`), the dynamic symbols and their strings, and GNU symbol versions
//! (`DT_VERSYM`, `DT_VERDEF`: every function has version `LINUX_2.6`, as on Linux).
//! Section headers describe the same tables, so `readelf` and debuggers read it too.
//!
//! Layout (one load segment, read + execute, file offset = address):
//!
//! ```text
//! 0x000        ELF header, program headers (PT_LOAD, PT_DYNAMIC)
//! TEXT_OFFSET  the code
//! after it     .hash .dynsym .dynstr .gnu.version .gnu.version_d .dynamic .shstrtab,
//!              the section headers; zeros to the page end
//! ```
//!
//! The code is at a fixed offset because it finds the clock page, the page just below the
//! image, by its own address: [`TEXT_TO_CLOCK_PAGE`] bytes below the code's first byte.

use alloc::vec::Vec;

use elf::abi;
use elf::hash::sysv_hash;

/// Size of a page.
pub const PAGE_SIZE: usize = 4096;
/// Where the code starts in the image.
pub const TEXT_OFFSET: usize = 0x100;
/// How far below the code's first byte the clock page starts.
pub const TEXT_TO_CLOCK_PAGE: usize = TEXT_OFFSET + PAGE_SIZE;
/// The one version every function has.
pub const VERSION: &str = "LINUX_2.6";
/// The shared object's name (`DT_SONAME`).
pub const SONAME: &str = "linux-vdso.so.1";

const HEADER_BYTES: usize = 64;
const PROGRAM_HEADER_BYTES: usize = 56;
const PROGRAM_HEADERS: usize = 2;
const SECTION_HEADER_BYTES: usize = 64;
const SYMBOL_BYTES: usize = 24;
const VERDEF_BYTES: usize = 20;
const VERDAUX_BYTES: usize = 8;
const DYNAMIC_BYTES: usize = 16;

const _: () = assert!(HEADER_BYTES + PROGRAM_HEADERS * PROGRAM_HEADER_BYTES <= TEXT_OFFSET);

/// One exported function: its name and where it is in the code.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Function<'a> {
    /// The symbol's name, e.g. `__vdso_clock_gettime`.
    pub name: &'a str,
    /// Its first byte, from the code's start.
    pub offset: usize,
    /// Its length in bytes.
    pub size: usize,
}

/// Why an image could not be built (the platform's code and function list disagree).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ImageError {
    /// A function lies (partly) outside the code.
    FunctionOutsideCode,
    /// A name is empty or holds a NUL.
    BadName,
}

/// Little-endian writes into a growing buffer.
struct Writer(Vec<u8>);

impl Writer {
    fn align(&mut self, to: usize) -> usize {
        let at = self.0.len().next_multiple_of(to);
        self.0.resize(at, 0);
        at
    }
    fn bytes(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
    fn u16(&mut self, value: u16) {
        self.bytes(&value.to_le_bytes());
    }
    fn u32(&mut self, value: u32) {
        self.bytes(&value.to_le_bytes());
    }
    fn u64(&mut self, value: u64) {
        self.bytes(&value.to_le_bytes());
    }
    /// Overwrites 8 bytes at `at`.
    fn patch_u64(&mut self, at: usize, value: u64) {
        self.0[at..at + 8].copy_from_slice(&value.to_le_bytes());
    }
}

/// A string table under construction: offsets of the strings added.
struct Strings(Vec<u8>);

impl Strings {
    fn new() -> Self {
        Strings(alloc::vec![0])
    }
    fn add(&mut self, string: &str) -> u32 {
        let at = self.0.len() as u32;
        self.0.extend_from_slice(string.as_bytes());
        self.0.push(0);
        at
    }
}

/// One section header's fields.
#[derive(Copy, Clone, Default)]
struct Section {
    name: u32,
    kind: u32,
    flags: u64,
    offset: usize,
    size: usize,
    link: u32,
    info: u32,
    align: u64,
    entry_size: u64,
}

/// Section indexes (0 is the null section; the order is `sections` in [`build`]).
const TEXT: u16 = 1;
const DYNSYM: u32 = 3;
const DYNSTR: u32 = 4;
const SHSTRTAB: u16 = 8;
const SECTIONS: usize = 9;

/// The image around `code` exporting `functions`, padded to whole pages.
pub fn build(code: &[u8], functions: &[Function<'_>]) -> Result<Vec<u8>, ImageError> {
    for function in functions {
        if function.offset.checked_add(function.size).is_none_or(|end| end > code.len()) {
            return Err(ImageError::FunctionOutsideCode);
        }
        if function.name.is_empty() || function.name.contains('\0') {
            return Err(ImageError::BadName);
        }
    }
    let symbols = functions.len() + 1;
    let mut out = Writer(alloc::vec![0u8; TEXT_OFFSET]);
    out.bytes(code);
    let code_end = out.0.len();

    let mut dynstr = Strings::new();
    let soname = dynstr.add(SONAME);
    let version = dynstr.add(VERSION);
    let names: Vec<u32> = functions.iter().map(|function| dynstr.add(function.name)).collect();

    // .hash: nbucket, nchain, the buckets, then one chain link per symbol.
    let hash = out.align(8);
    let buckets = functions.len().max(1);
    let mut bucket = alloc::vec![0u32; buckets];
    let mut chain = alloc::vec![0u32; symbols];
    for (index, function) in functions.iter().enumerate() {
        let symbol = index as u32 + 1;
        let slot = sysv_hash(function.name.as_bytes()) as usize % buckets;
        // Prepend to the bucket's chain.
        chain[symbol as usize] = bucket[slot];
        bucket[slot] = symbol;
    }
    out.u32(buckets as u32);
    out.u32(symbols as u32);
    bucket.iter().chain(&chain).for_each(|&word| out.u32(word));
    let hash_end = out.0.len();

    // .dynsym: the null symbol, then the functions (global, in the code's section).
    let dynsym = out.align(8);
    out.bytes(&[0; SYMBOL_BYTES]);
    for (function, &name) in functions.iter().zip(&names) {
        out.u32(name);
        out.bytes(&[(abi::STB_GLOBAL << 4) | abi::STT_FUNC, 0]);
        out.u16(TEXT);
        out.u64((TEXT_OFFSET + function.offset) as u64);
        out.u64(function.size as u64);
    }
    let dynsym_end = out.0.len();

    let strings = out.0.len();
    out.bytes(&dynstr.0);
    let strings_end = out.0.len();

    // .gnu.version: the null symbol is local (0), every function has version 2.
    let versym = out.align(2);
    out.u16(0);
    functions.iter().for_each(|_| out.u16(2));
    let versym_end = out.0.len();

    // .gnu.version_d: the base definition (the object's own name), then LINUX_2.6.
    let verdef = out.align(8);
    for (index, (name, string)) in [(soname, SONAME), (version, VERSION)].into_iter().enumerate() {
        let last = index == 1;
        out.u16(1); // vd_version
        out.u16(if last { 0 } else { abi::VER_FLG_BASE });
        out.u16(index as u16 + 1); // vd_ndx
        out.u16(1); // vd_cnt
        out.u32(sysv_hash(string.as_bytes()));
        out.u32(VERDEF_BYTES as u32); // vd_aux: right after
        out.u32(if last { 0 } else { (VERDEF_BYTES + VERDAUX_BYTES) as u32 });
        out.u32(name); // vda_name
        out.u32(0); // vda_next
    }
    let verdef_end = out.0.len();

    let dynamic = out.align(8);
    let entries = [
        (abi::DT_HASH, hash as u64),
        (abi::DT_STRTAB, strings as u64),
        (abi::DT_SYMTAB, dynsym as u64),
        (abi::DT_STRSZ, (strings_end - strings) as u64),
        (abi::DT_SYMENT, SYMBOL_BYTES as u64),
        (abi::DT_SONAME, u64::from(soname)),
        (abi::DT_VERSYM, versym as u64),
        (abi::DT_VERDEF, verdef as u64),
        (abi::DT_VERDEFNUM, 2),
        (abi::DT_NULL, 0),
    ];
    for (tag, value) in entries {
        out.u64(tag as u64);
        out.u64(value);
    }
    let dynamic_end = out.0.len();

    let mut shstrtab = Strings::new();
    let section_names =
        [".text", ".hash", ".dynsym", ".dynstr", ".gnu.version", ".gnu.version_d", ".dynamic", ".shstrtab"]
            .map(|name| shstrtab.add(name));
    let shstrtab_at = out.0.len();
    out.bytes(&shstrtab.0);
    let shstrtab_end = out.0.len();

    let alloc = u64::from(abi::SHF_ALLOC);
    let section = |name: usize, kind, flags, range: (usize, usize), link, info, align, entry_size| Section {
        name: section_names[name],
        kind,
        flags,
        offset: range.0,
        size: range.1 - range.0,
        link,
        info,
        align,
        entry_size,
    };
    let sections: [Section; SECTIONS] = [
        Section::default(),
        section(0, abi::SHT_PROGBITS, alloc | u64::from(abi::SHF_EXECINSTR), (TEXT_OFFSET, code_end), 0, 0, 16, 0),
        section(1, abi::SHT_HASH, alloc, (hash, hash_end), DYNSYM, 0, 8, 4),
        section(2, abi::SHT_DYNSYM, alloc, (dynsym, dynsym_end), DYNSTR, 1, 8, SYMBOL_BYTES as u64),
        section(3, abi::SHT_STRTAB, alloc, (strings, strings_end), 0, 0, 1, 0),
        section(4, abi::SHT_GNU_VERSYM, alloc, (versym, versym_end), DYNSYM, 0, 2, 2),
        section(5, abi::SHT_GNU_VERDEF, alloc, (verdef, verdef_end), DYNSTR, 2, 8, 0),
        section(6, abi::SHT_DYNAMIC, alloc, (dynamic, dynamic_end), DYNSTR, 0, 8, DYNAMIC_BYTES as u64),
        section(7, abi::SHT_STRTAB, 0, (shstrtab_at, shstrtab_end), 0, 0, 1, 0),
    ];
    let section_headers = out.align(8);
    for section in sections {
        out.u32(section.name);
        out.u32(section.kind);
        out.u64(section.flags);
        out.u64(if section.flags & alloc != 0 { section.offset as u64 } else { 0 });
        out.u64(section.offset as u64);
        out.u64(section.size as u64);
        out.u32(section.link);
        out.u32(section.info);
        out.u64(section.align);
        out.u64(section.entry_size);
    }
    let image_bytes = out.align(PAGE_SIZE);

    // The headers, now that every offset is known.
    let mut head = Writer(Vec::with_capacity(TEXT_OFFSET));
    head.bytes(&[0x7f, b'E', b'L', b'F', abi::ELFCLASS64, abi::ELFDATA2LSB, abi::EV_CURRENT, abi::ELFOSABI_NONE]);
    head.bytes(&[0; 8]);
    head.u16(abi::ET_DYN);
    head.u16(abi::EM_X86_64);
    head.u32(u32::from(abi::EV_CURRENT));
    head.u64(0); // e_entry: none
    head.u64(HEADER_BYTES as u64); // e_phoff
    head.u64(0); // e_shoff, patched below
    head.u32(0); // e_flags
    head.u16(HEADER_BYTES as u16);
    head.u16(PROGRAM_HEADER_BYTES as u16);
    head.u16(PROGRAM_HEADERS as u16);
    head.u16(SECTION_HEADER_BYTES as u16);
    head.u16(SECTIONS as u16);
    head.u16(SHSTRTAB);
    head.patch_u64(0x28, section_headers as u64);
    let segments = [
        (abi::PT_LOAD, abi::PF_R | abi::PF_X, 0, image_bytes, PAGE_SIZE),
        (abi::PT_DYNAMIC, abi::PF_R, dynamic, dynamic_end - dynamic, 8),
    ];
    for (kind, flags, offset, size, align) in segments {
        head.u32(kind);
        head.u32(flags);
        head.u64(offset as u64); // p_offset
        head.u64(offset as u64); // p_vaddr
        head.u64(offset as u64); // p_paddr
        head.u64(size as u64); // p_filesz
        head.u64(size as u64); // p_memsz
        head.u64(align as u64);
    }
    out.0[..head.0.len()].copy_from_slice(&head.0);
    Ok(out.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use elf::endian::LittleEndian;
    use elf::ElfBytes;

    const CODE: [u8; 40] = [0xc3; 40];
    const FUNCTIONS: [Function<'static>; 3] = [
        Function { name: "__vdso_clock_gettime", offset: 0, size: 16 },
        Function { name: "__vdso_time", offset: 16, size: 8 },
        Function { name: "__vdso_getcpu", offset: 24, size: 16 },
    ];

    fn word(image: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(image[at..at + 8].try_into().unwrap())
    }
    fn half(image: &[u8], at: usize) -> u16 {
        u16::from_le_bytes(image[at..at + 2].try_into().unwrap())
    }
    fn quarter(image: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(image[at..at + 4].try_into().unwrap())
    }
    fn string(image: &[u8], at: usize) -> &str {
        let end = image[at..].iter().position(|&byte| byte == 0).unwrap();
        core::str::from_utf8(&image[at..at + end]).unwrap()
    }

    /// Looks `name` up as musl's static libc does (`src/internal/vdso.c`, restated from
    /// its behaviour): the load bias from PT_LOAD, the tables from PT_DYNAMIC, every
    /// symbol of the hash table's `nchain` checked for type, binding, a section, the name
    /// and, through DT_VERSYM and DT_VERDEF, the version (skipping the base definition).
    fn musl_lookup(image: &[u8], name: &str, version: &str) -> Option<usize> {
        let program_headers = word(image, 0x20) as usize;
        let (mut bias, mut dynamic) = (None, None);
        for index in 0..half(image, 0x38) as usize {
            let at = program_headers + index * half(image, 0x36) as usize;
            match quarter(image, at) {
                abi::PT_LOAD => bias = Some(word(image, at + 8) as usize - word(image, at + 16) as usize),
                abi::PT_DYNAMIC => dynamic = Some(word(image, at + 8) as usize),
                _ => {}
            }
        }
        let (bias, mut at) = (bias?, dynamic?);
        let (mut strings, mut symbols, mut hash, mut versym, mut verdef) = (None, None, None, None, None);
        loop {
            let (tag, value) = (word(image, at) as i64, bias + word(image, at + 8) as usize);
            match tag {
                abi::DT_NULL => break,
                abi::DT_STRTAB => strings = Some(value),
                abi::DT_SYMTAB => symbols = Some(value),
                abi::DT_HASH => hash = Some(value),
                abi::DT_VERSYM => versym = Some(value),
                abi::DT_VERDEF => verdef = Some(value),
                _ => {}
            }
            at += 16;
        }
        let (strings, symbols, hash) = (strings?, symbols?, hash?);
        let versym = verdef.and(versym);
        for index in 0..quarter(image, hash + 4) as usize {
            let symbol = symbols + index * SYMBOL_BYTES;
            let info = image[symbol + 4];
            let good_type = [abi::STT_NOTYPE, abi::STT_OBJECT, abi::STT_FUNC, abi::STT_COMMON].contains(&(info & 15));
            let good_binding = [abi::STB_GLOBAL, abi::STB_WEAK, abi::STB_GNU_UNIQUE].contains(&(info >> 4));
            if !good_type || !good_binding || half(image, symbol + 6) == 0 {
                continue;
            }
            if string(image, strings + quarter(image, symbol) as usize) != name {
                continue;
            }
            if let (Some(versym), Some(mut definition)) = (versym, verdef) {
                let wanted = half(image, versym + 2 * index) & 0x7fff;
                loop {
                    let flags = half(image, definition + 2);
                    if flags & abi::VER_FLG_BASE == 0 && half(image, definition + 4) & 0x7fff == wanted {
                        break;
                    }
                    match quarter(image, definition + 16) as usize {
                        0 => return None,
                        next => definition += next,
                    }
                }
                let auxiliary = definition + quarter(image, definition + 12) as usize;
                if string(image, strings + quarter(image, auxiliary) as usize) != version {
                    continue;
                }
            }
            return Some(bias + word(image, symbol + 8) as usize);
        }
        None
    }

    #[test]
    fn musl_finds_every_function_at_its_code_with_its_version() {
        let image = build(&CODE, &FUNCTIONS).unwrap();
        assert_eq!(image.len() % PAGE_SIZE, 0);
        assert_eq!(&image[TEXT_OFFSET..TEXT_OFFSET + CODE.len()], &CODE);
        for function in FUNCTIONS {
            assert_eq!(musl_lookup(&image, function.name, VERSION), Some(TEXT_OFFSET + function.offset));
            assert_eq!(musl_lookup(&image, function.name, "LINUX_2.5"), None, "another version is not this one");
        }
        assert_eq!(musl_lookup(&image, "__vdso_gettimeofday", VERSION), None);
    }

    #[test]
    fn a_general_elf_reader_sees_the_sections_symbols_hash_and_versions() {
        let image = build(&CODE, &FUNCTIONS).unwrap();
        let file = ElfBytes::<LittleEndian>::minimal_parse(&image).unwrap();
        assert_eq!((file.ehdr.e_type, file.ehdr.e_machine), (abi::ET_DYN, abi::EM_X86_64));
        let text = file.section_header_by_name(".text").unwrap().unwrap();
        assert_eq!((text.sh_addr, text.sh_size), (TEXT_OFFSET as u64, CODE.len() as u64));
        let common = file.find_common_data().unwrap();
        let (symbols, strings) = (common.dynsyms.unwrap(), common.dynsyms_strs.unwrap());
        let hash = common.sysv_hash.unwrap();
        let versions = file.symbol_version_table().unwrap().unwrap();
        for function in FUNCTIONS {
            let (index, symbol) = hash.find(function.name.as_bytes(), &symbols, &strings).unwrap().unwrap();
            assert_eq!(symbol.st_value, (TEXT_OFFSET + function.offset) as u64);
            assert_eq!(symbol.st_size, function.size as u64);
            assert_eq!(symbol.st_shndx, TEXT);
            let definition = versions.get_definition(index).unwrap().unwrap();
            assert_eq!(definition.names.map(|name| name.unwrap()).collect::<Vec<_>>(), [VERSION]);
        }
        let dynamic = file.dynamic().unwrap().unwrap();
        let soname = dynamic.iter().find(|entry| entry.d_tag == abi::DT_SONAME).unwrap().d_val();
        assert_eq!(strings.get(soname as usize).unwrap(), SONAME);
        let segments = file.segments().unwrap();
        let load = segments.iter().find(|segment| segment.p_type == abi::PT_LOAD).unwrap();
        assert_eq!((load.p_vaddr, load.p_memsz, load.p_flags), (0, image.len() as u64, abi::PF_R | abi::PF_X));
    }

    #[test]
    fn functions_outside_the_code_and_bad_names_are_refused() {
        let outside = [Function { name: "f", offset: 30, size: 11 }];
        assert_eq!(build(&CODE, &outside), Err(ImageError::FunctionOutsideCode));
        let overflow = [Function { name: "f", offset: usize::MAX, size: 2 }];
        assert_eq!(build(&CODE, &overflow), Err(ImageError::FunctionOutsideCode));
        assert_eq!(build(&CODE, &[Function { name: "a\0b", offset: 0, size: 1 }]), Err(ImageError::BadName));
        assert_eq!(build(&CODE, &[Function { name: "", offset: 0, size: 1 }]), Err(ImageError::BadName));
    }
}
