//! Guest image validation: turns an untrusted ELF file into a checked load plan, or says why not.

use alloc::vec::Vec;
use core::fmt;
use elf::abi::{EM_X86_64, ET_DYN, ET_EXEC, PF_W, PF_X, PT_DYNAMIC, PT_INTERP, PT_LOAD, PT_NOTE};
use elf::endian::LittleEndian;
use elf::file::{Class, FileHeader};
use elf::note::{Note, NoteIterator};
use elf::segment::{ProgramHeader, SegmentTable};
use hypercall_abi::layout::{is_guest_range, PAGE_SIZE};
use hypercall_abi::note::{NOTE_NAME, NOTE_TYPE_ABI_VERSION};
use hypercall_abi::version::Incompatibility;
use hypercall_abi::AbiVersion;

/// Most PT_LOAD segments an image may have (a linked guest has three or four).
pub const MAX_LOAD_SEGMENTS: usize = 16;
/// Largest distance from the lowest to the highest image page: bounds the loader's work
/// whatever the image claims.
pub const MAX_IMAGE_SPAN: u64 = 1 << 30;

const ELF64_HEADER_SIZE: usize = 64;
const ELF64_PHDR_SIZE: usize = 56;

/// One PT_LOAD segment, checked.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// `p_vaddr`.
    pub virtual_start: u64,
    /// `p_memsz`: bytes in memory (past `file_size`, zeros).
    pub memory_size: u64,
    /// `p_offset`.
    pub file_offset: u64,
    /// `p_filesz`.
    pub file_size: u64,
    /// `PF_W`.
    pub writable: bool,
    /// `PF_X`.
    pub executable: bool,
}

impl Segment {
    /// Address of the segment's last byte (memory_size > 0 and no wrap are checked).
    pub fn last_address(&self) -> u64 {
        self.virtual_start + (self.memory_size - 1)
    }

    /// First page number covered.
    pub fn first_page(&self) -> u64 {
        self.virtual_start / PAGE_SIZE
    }

    /// Last page number covered.
    pub fn last_page(&self) -> u64 {
        self.last_address() / PAGE_SIZE
    }
}

/// What the loader does with a valid image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadPlan {
    /// `e_entry`, inside an executable segment.
    pub entry: u64,
    /// Sorted by address; no two share a page.
    pub segments: Vec<Segment>,
    /// ABI version from the image's note.
    pub abi: AbiVersion,
    /// Lowest segment address rounded down to a page.
    pub image_start: u64,
    /// Highest segment end rounded up to a page.
    pub image_end: u64,
    /// Distinct pages the segments cover (what the image costs in domain memory).
    pub image_pages: u64,
}

/// Why an image was refused. Display is one lowercase line, with the fix where one is known.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // Each variant's meaning is its Display line below (one place for each fact).
pub enum ImageError {
    Truncated { length: usize },
    BadMagic,
    Not64Bit,
    NotLittleEndian,
    WrongMachine(u16),
    PositionIndependent,
    NotExecutable(u16),
    BadProgramHeaderSize(u16),
    ProgramHeadersOutsideFile,
    DynamicallyLinked,
    NoLoadSegments,
    TooManyLoadSegments(usize),
    EmptySegment { virtual_start: u64 },
    FileLargerThanMemory { virtual_start: u64 },
    SegmentOutsideFile { virtual_start: u64 },
    NotGuestMemory { virtual_start: u64, memory_size: u64 },
    SegmentsSharePage { first: u64, second: u64 },
    TooLarge { span: u64 },
    ReachesTop,
    EntryNotExecutable { entry: u64 },
    NoteOutsideFile,
    MissingAbiNote,
    DuplicateAbiNote,
    MalformedAbiNote { descriptor_size: usize },
    IncompatibleAbi { image: AbiVersion, hypervisor: AbiVersion, reason: Incompatibility },
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Truncated { length } => write!(f, "file too short for an ELF header ({length} bytes)"),
            Self::BadMagic => f.write_str("not an ELF file (bad magic)"),
            Self::Not64Bit => f.write_str("not a 64-bit ELF file; build the guest for x86_64-unknown-none"),
            Self::NotLittleEndian => f.write_str("not a little-endian ELF file; build the guest for x86_64-unknown-none"),
            Self::WrongMachine(machine) => {
                write!(f, "built for machine {machine}, not x86_64 (62); build the guest for x86_64-unknown-none")
            }
            Self::PositionIndependent => f.write_str(
                "position-independent executable (ET_DYN); link guests with guest-rt/guest.ld via `cargo xtask build`",
            ),
            Self::NotExecutable(kind) => write!(f, "not an executable (ELF type {kind}, expected ET_EXEC)"),
            Self::BadProgramHeaderSize(size) => write!(f, "program header entries are {size} bytes, expected 56"),
            Self::ProgramHeadersOutsideFile => f.write_str("program header table lies outside the file (truncated image?)"),
            Self::DynamicallyLinked => {
                f.write_str("dynamically linked (PT_INTERP or PT_DYNAMIC); guests must be static, linked with guest-rt/guest.ld")
            }
            Self::NoLoadSegments => f.write_str("no loadable (PT_LOAD) segments"),
            Self::TooManyLoadSegments(count) => {
                write!(f, "{count} loadable segments; at most {MAX_LOAD_SEGMENTS} are accepted")
            }
            Self::EmptySegment { virtual_start } => write!(f, "loadable segment at {virtual_start:#x} has zero memory size"),
            Self::FileLargerThanMemory { virtual_start } => {
                write!(f, "segment at {virtual_start:#x} has more file bytes than memory bytes")
            }
            Self::SegmentOutsideFile { virtual_start } => {
                write!(f, "file bytes of the segment at {virtual_start:#x} lie outside the file (truncated image?)")
            }
            Self::NotGuestMemory { virtual_start, memory_size } => write!(
                f,
                "segment at {virtual_start:#x} ({memory_size:#x} bytes) is not guest memory (non-canonical, wraps, or in the hypervisor's range)"
            ),
            Self::SegmentsSharePage { first, second } => {
                write!(f, "segments at {first:#x} and {second:#x} overlap or share a page; align segments to 4 KiB (guest-rt/guest.ld does)")
            }
            Self::TooLarge { span } => {
                write!(f, "image spans {span:#x} bytes; at most {MAX_IMAGE_SPAN:#x} are accepted")
            }
            Self::ReachesTop => {
                f.write_str("image ends in the last page of the address space; the start-info page and stack must follow it")
            }
            Self::EntryNotExecutable { entry } => write!(f, "entry point {entry:#x} is not inside an executable segment"),
            Self::NoteOutsideFile => f.write_str("a PT_NOTE segment lies outside the file (truncated image?)"),
            Self::MissingAbiNote => {
                f.write_str("no ringfence ABI note (PT_NOTE 'ringfence' type 1); build the guest with guest-rt's entry! macro")
            }
            Self::DuplicateAbiNote => f.write_str("more than one ringfence ABI note; an image declares exactly one ABI version"),
            Self::MalformedAbiNote { descriptor_size } => {
                write!(f, "ringfence ABI note has a {descriptor_size}-byte descriptor, expected 8")
            }
            Self::IncompatibleAbi { image, hypervisor, reason } => match reason {
                Incompatibility::MajorMismatch => {
                    write!(f, "built for ABI {image} but the hypervisor offers {hypervisor} (different major)")
                }
                Incompatibility::GuestNewer => {
                    write!(f, "built for ABI {image} but the hypervisor offers {hypervisor} (needs a newer minor)")
                }
            },
        }
    }
}

/// Validates `image` for a hypervisor offering ABI `hypervisor` and plans its loading.
/// Every field of the file is treated as an allegation; all arithmetic is checked, and the
/// work is bounded by the file size and [`MAX_LOAD_SEGMENTS`].
pub fn validate(image: &[u8], hypervisor: AbiVersion) -> Result<LoadPlan, ImageError> {
    let header = parse_header(image)?;
    let program_headers = program_headers(image, &header)?;

    let mut segments = Vec::new();
    let mut note_headers = Vec::new();
    for program_header in program_headers.iter() {
        match program_header.p_type {
            PT_LOAD => {
                if segments.len() == MAX_LOAD_SEGMENTS {
                    let count = program_headers.iter().filter(|header| header.p_type == PT_LOAD).count();
                    return Err(ImageError::TooManyLoadSegments(count));
                }
                segments.push(check_segment(image, &program_header)?);
            }
            PT_NOTE => note_headers.push(program_header),
            PT_INTERP | PT_DYNAMIC => return Err(ImageError::DynamicallyLinked),
            // PT_GNU_STACK, PT_GNU_RELRO, PT_PHDR, ...: nothing for this loader to do.
            _ => {}
        }
    }
    if segments.is_empty() {
        return Err(ImageError::NoLoadSegments);
    }
    segments.sort_by_key(|segment| segment.virtual_start);
    for pair in segments.windows(2) {
        if pair[0].last_page() >= pair[1].first_page() {
            return Err(ImageError::SegmentsSharePage { first: pair[0].virtual_start, second: pair[1].virtual_start });
        }
    }

    // Sorted and disjoint: the first segment starts lowest, the last ends highest.
    let (lowest, highest) = match (segments.first(), segments.last()) {
        (Some(lowest), Some(highest)) => (lowest, highest),
        _ => return Err(ImageError::NoLoadSegments),
    };
    let image_start = lowest.first_page() * PAGE_SIZE;
    let image_end = highest
        .last_page()
        .checked_add(1)
        .and_then(|page| page.checked_mul(PAGE_SIZE))
        .ok_or(ImageError::ReachesTop)?;
    let span = image_end - image_start;
    if span > MAX_IMAGE_SPAN {
        return Err(ImageError::TooLarge { span });
    }
    let image_pages = segments.iter().map(|segment| segment.last_page() - segment.first_page() + 1).sum();

    let entry = header.e_entry;
    let entry_is_code = segments
        .iter()
        .any(|segment| segment.executable && entry >= segment.virtual_start && entry <= segment.last_address());
    if !entry_is_code {
        return Err(ImageError::EntryNotExecutable { entry });
    }

    let abi = abi_note(image, &note_headers)?;
    hypervisor.accepts(abi).map_err(|reason| ImageError::IncompatibleAbi { image: abi, hypervisor, reason })?;

    Ok(LoadPlan { entry, segments, abi, image_start, image_end, image_pages })
}

/// Checks the identification bytes ourselves (for precise errors), then lets the `elf`
/// crate decode the rest of the 64-byte header.
fn parse_header(image: &[u8]) -> Result<FileHeader<LittleEndian>, ImageError> {
    let truncated = ImageError::Truncated { length: image.len() };
    if image.len() < 4 {
        return Err(truncated);
    }
    if image[..4] != elf::abi::ELFMAGIC {
        return Err(ImageError::BadMagic);
    }
    if image.len() < ELF64_HEADER_SIZE {
        return Err(truncated);
    }
    if image[elf::abi::EI_CLASS] != elf::abi::ELFCLASS64 {
        return Err(ImageError::Not64Bit);
    }
    if image[elf::abi::EI_DATA] != elf::abi::ELFDATA2LSB {
        return Err(ImageError::NotLittleEndian);
    }
    let ident =
        elf::file::parse_ident::<LittleEndian>(&image[..elf::abi::EI_NIDENT]).map_err(|_| ImageError::BadMagic)?;
    let header =
        FileHeader::parse_tail(ident, &image[elf::abi::EI_NIDENT..ELF64_HEADER_SIZE]).map_err(|_| truncated)?;
    if header.e_machine != EM_X86_64 {
        return Err(ImageError::WrongMachine(header.e_machine));
    }
    match header.e_type {
        ET_EXEC => Ok(header),
        ET_DYN => Err(ImageError::PositionIndependent),
        other => Err(ImageError::NotExecutable(other)),
    }
}

/// The program header table, after checking it lies inside the file. Section headers are
/// never looked at: the loader does not need them, so their state cannot refuse an image.
fn program_headers<'image>(
    image: &'image [u8],
    header: &FileHeader<LittleEndian>,
) -> Result<SegmentTable<'image, LittleEndian>, ImageError> {
    if header.e_phnum == 0 {
        return Err(ImageError::NoLoadSegments);
    }
    if usize::from(header.e_phentsize) != ELF64_PHDR_SIZE {
        return Err(ImageError::BadProgramHeaderSize(header.e_phentsize));
    }
    let table_size = ELF64_PHDR_SIZE as u64 * u64::from(header.e_phnum);
    let bytes = file_range(image, header.e_phoff, table_size).ok_or(ImageError::ProgramHeadersOutsideFile)?;
    Ok(SegmentTable::new(LittleEndian, Class::ELF64, bytes))
}

/// `image[offset..offset + length]`, or `None` if any of it is outside the file.
fn file_range(image: &[u8], offset: u64, length: u64) -> Option<&[u8]> {
    let end = offset.checked_add(length)?;
    image.get(usize::try_from(offset).ok()?..usize::try_from(end).ok()?)
}

fn check_segment(image: &[u8], header: &ProgramHeader) -> Result<Segment, ImageError> {
    let virtual_start = header.p_vaddr;
    if header.p_memsz == 0 {
        return Err(ImageError::EmptySegment { virtual_start });
    }
    if header.p_filesz > header.p_memsz {
        return Err(ImageError::FileLargerThanMemory { virtual_start });
    }
    if file_range(image, header.p_offset, header.p_filesz).is_none() {
        return Err(ImageError::SegmentOutsideFile { virtual_start });
    }
    if !is_guest_range(virtual_start, header.p_memsz) {
        return Err(ImageError::NotGuestMemory { virtual_start, memory_size: header.p_memsz });
    }
    Ok(Segment {
        virtual_start,
        memory_size: header.p_memsz,
        file_offset: header.p_offset,
        file_size: header.p_filesz,
        writable: header.p_flags & PF_W != 0,
        executable: header.p_flags & PF_X != 0,
    })
}

/// Finds exactly one ringfence ABI note among the PT_NOTE segments. Other notes (build id,
/// GNU properties) are ignored.
fn abi_note(image: &[u8], note_headers: &[ProgramHeader]) -> Result<AbiVersion, ImageError> {
    let mut found = None;
    for header in note_headers {
        let bytes = file_range(image, header.p_offset, header.p_filesz).ok_or(ImageError::NoteOutsideFile)?;
        // Notes are 4-byte aligned in practice; 8 only where the segment says so.
        let align = if header.p_align == 8 { 8 } else { 4 };
        for note in NoteIterator::new(LittleEndian, Class::ELF64, align, bytes) {
            let Note::Unknown(note) = note else { continue };
            if note.name != NOTE_NAME.as_slice() || note.n_type != u64::from(NOTE_TYPE_ABI_VERSION) {
                continue;
            }
            let version = hypercall_abi::note::AbiNoteDescriptor::parse(note.desc)
                .ok_or(ImageError::MalformedAbiNote { descriptor_size: note.desc.len() })?;
            if found.replace(version).is_some() {
                return Err(ImageError::DuplicateAbiNote);
            }
        }
    }
    found.ok_or(ImageError::MissingAbiNote)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use hypercall_abi::note::AbiNote;
    use hypercall_abi::ABI_VERSION;
    use zerocopy::IntoBytes;

    pub const TEXT: u64 = 0xffff_ffff_8000_0000;

    /// One program header to emit; `bytes` go into the file and p_offset/p_filesz point at them.
    #[derive(Clone, Debug)]
    pub struct TestSegment {
        pub p_type: u32,
        pub flags: u32,
        pub vaddr: u64,
        pub memsz: u64,
        pub bytes: Vec<u8>,
        pub align: u64,
    }

    /// A tiny ELF writer: header, program headers, then each segment's bytes.
    #[derive(Clone)]
    pub struct TestImage {
        pub class: u8,
        pub data: u8,
        pub e_type: u16,
        pub machine: u16,
        pub entry: u64,
        pub segments: Vec<TestSegment>,
    }

    pub fn load(vaddr: u64, memsz: u64, flags: u32, bytes: &[u8]) -> TestSegment {
        TestSegment { p_type: PT_LOAD, flags, vaddr, memsz, bytes: bytes.to_vec(), align: 4096 }
    }

    pub fn note_segment(notes: &[&[u8]]) -> TestSegment {
        TestSegment { p_type: PT_NOTE, flags: 4, vaddr: 0, memsz: 0, bytes: notes.concat(), align: 4 }
    }

    /// An ELF note with 4-byte padding after name and descriptor.
    pub fn raw_note(name: &[u8], note_type: u32, descriptor: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&(name.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&(descriptor.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&note_type.to_le_bytes());
        bytes.extend_from_slice(name);
        bytes.resize(bytes.len().next_multiple_of(4), 0);
        bytes.extend_from_slice(descriptor);
        bytes.resize(bytes.len().next_multiple_of(4), 0);
        bytes
    }

    pub fn abi_note_bytes(version: AbiVersion) -> Vec<u8> {
        AbiNote::new(version).as_bytes().to_vec()
    }

    impl TestImage {
        /// A valid guest: text (R-X), rodata (R--), data+bss (RW-), ABI note.
        pub fn valid() -> Self {
            Self {
                class: 2,
                data: 1,
                e_type: ET_EXEC,
                machine: EM_X86_64,
                entry: TEXT + 0x10,
                segments: vec![
                    load(TEXT, 0x1800, PF_X | 4, &[0x90; 0x1800]),
                    load(TEXT + 0x2000, 0x100, 4, b"rodata"),
                    load(TEXT + 0x3000, 0x2500, PF_W | 4, &[7; 0x20]),
                    note_segment(&[&abi_note_bytes(ABI_VERSION)]),
                ],
            }
        }

        pub fn build(&self) -> Vec<u8> {
            let phnum = self.segments.len();
            let mut data_offset = (64 + 56 * phnum).next_multiple_of(16);
            let mut headers = Vec::new();
            let mut payload = Vec::new();
            for segment in &self.segments {
                let mut header = Vec::new();
                header.extend_from_slice(&segment.p_type.to_le_bytes());
                header.extend_from_slice(&segment.flags.to_le_bytes());
                header.extend_from_slice(&(data_offset as u64).to_le_bytes());
                header.extend_from_slice(&segment.vaddr.to_le_bytes());
                header.extend_from_slice(&segment.vaddr.to_le_bytes());
                header.extend_from_slice(&(segment.bytes.len() as u64).to_le_bytes());
                header.extend_from_slice(&segment.memsz.to_le_bytes());
                header.extend_from_slice(&segment.align.to_le_bytes());
                headers.extend_from_slice(&header);
                payload.extend_from_slice(&segment.bytes);
                let padded = segment.bytes.len().next_multiple_of(16);
                payload.resize(payload.len() + padded - segment.bytes.len(), 0);
                data_offset += padded;
            }
            let mut file = Vec::new();
            file.extend_from_slice(&[0x7f, b'E', b'L', b'F', self.class, self.data, 1, 0]);
            file.extend_from_slice(&[0; 8]);
            file.extend_from_slice(&self.e_type.to_le_bytes());
            file.extend_from_slice(&self.machine.to_le_bytes());
            file.extend_from_slice(&1u32.to_le_bytes());
            file.extend_from_slice(&self.entry.to_le_bytes());
            file.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
            file.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
            file.extend_from_slice(&0u32.to_le_bytes()); // e_flags
            file.extend_from_slice(&64u16.to_le_bytes()); // e_ehsize
            file.extend_from_slice(&56u16.to_le_bytes());
            file.extend_from_slice(&(phnum as u16).to_le_bytes());
            file.extend_from_slice(&[0; 6]); // shentsize, shnum, shstrndx
            assert_eq!(file.len(), 64);
            file.extend_from_slice(&headers);
            file.resize(file.len().next_multiple_of(16), 0);
            file.extend_from_slice(&payload);
            file
        }

        /// [`validate`] of the built image against this ABI version.
        pub fn check(&self) -> Result<LoadPlan, ImageError> {
            validate(&self.build(), ABI_VERSION)
        }
    }

    /// Offset of program header `index`'s field at `field_offset` in a built image.
    fn phdr_field(index: usize, field_offset: usize) -> usize {
        64 + 56 * index + field_offset
    }

    #[test]
    fn valid_image_plans() {
        let plan = TestImage::valid().check().unwrap();
        assert_eq!(plan.entry, TEXT + 0x10);
        assert_eq!(plan.abi, ABI_VERSION);
        assert_eq!(plan.segments.len(), 3);
        assert_eq!(plan.image_start, TEXT);
        assert_eq!(plan.image_end, TEXT + 0x6000);
        assert_eq!(plan.image_pages, 2 + 1 + 3);
        let data = plan.segments[2];
        assert!(data.writable && !data.executable);
        assert_eq!((data.file_size, data.memory_size), (0x20, 0x2500));
        assert!(plan.segments[0].executable && !plan.segments[0].writable);
    }

    #[test]
    fn segments_are_sorted_and_other_notes_ignored() {
        let mut image = TestImage::valid();
        image.segments.swap(0, 2);
        let build_id = raw_note(b"GNU\0", 3, &[0xab; 20]);
        let wrong_name = raw_note(b"ringfenc\0", 1, &[0; 8]);
        let mut other_type = AbiNote::new(AbiVersion { major: 9, minor: 9 });
        other_type.note_type = 2;
        image.segments[3] =
            note_segment(&[&build_id, &wrong_name, other_type.as_bytes(), &abi_note_bytes(ABI_VERSION)]);
        let plan = image.check().unwrap();
        assert!(plan.segments.windows(2).all(|pair| pair[0].virtual_start < pair[1].virtual_start));
    }

    #[test]
    fn header_errors() {
        let good = TestImage::valid().build();
        assert_eq!(validate(&good[..3], ABI_VERSION), Err(ImageError::Truncated { length: 3 }));
        assert_eq!(validate(&good[..40], ABI_VERSION), Err(ImageError::Truncated { length: 40 }));
        assert_eq!(validate(b"MZ\x90\x00 not elf at all........", ABI_VERSION), Err(ImageError::BadMagic));
        assert_eq!(validate(&[], ABI_VERSION), Err(ImageError::Truncated { length: 0 }));
        // Four bytes are enough to tell an ELF file from something else.
        assert_eq!(validate(b"MZ\x90\x00", ABI_VERSION), Err(ImageError::BadMagic));
        assert_eq!(validate(&good[..4], ABI_VERSION), Err(ImageError::Truncated { length: 4 }));
        type Mutation = fn(&mut TestImage);
        let cases: [(Mutation, ImageError); 5] = [
            (|image| image.class = 1, ImageError::Not64Bit),
            (|image| image.data = 2, ImageError::NotLittleEndian),
            (|image| image.machine = 3, ImageError::WrongMachine(3)),
            (|image| image.e_type = ET_DYN, ImageError::PositionIndependent),
            (|image| image.e_type = 1, ImageError::NotExecutable(1)),
        ];
        for (mutate, expected) in cases {
            let mut image = TestImage::valid();
            mutate(&mut image);
            assert_eq!(image.check(), Err(expected));
        }
        assert!(ImageError::PositionIndependent.to_string().contains("cargo xtask build"));
    }

    #[test]
    fn program_header_table_errors() {
        let mut bytes = TestImage::valid().build();
        bytes[54] = 55; // e_phentsize
        assert_eq!(validate(&bytes, ABI_VERSION), Err(ImageError::BadProgramHeaderSize(55)));
        let mut bytes = TestImage::valid().build();
        bytes[32..40].copy_from_slice(&u64::MAX.to_le_bytes()); // e_phoff
        assert_eq!(validate(&bytes, ABI_VERSION), Err(ImageError::ProgramHeadersOutsideFile));
        let bytes = TestImage::valid().build();
        assert_eq!(validate(&bytes[..64 + 56 * 2], ABI_VERSION), Err(ImageError::ProgramHeadersOutsideFile));
        let mut image = TestImage::valid();
        image.segments.clear();
        assert_eq!(image.check(), Err(ImageError::NoLoadSegments));
        image.segments.push(note_segment(&[&abi_note_bytes(ABI_VERSION)]));
        assert_eq!(image.check(), Err(ImageError::NoLoadSegments));
        let mut image = TestImage::valid();
        image.segments.push(TestSegment {
            p_type: PT_INTERP,
            flags: 4,
            vaddr: 0,
            memsz: 0,
            bytes: b"/lib/ld.so\0".to_vec(),
            align: 1,
        });
        assert_eq!(image.check(), Err(ImageError::DynamicallyLinked));
    }

    #[test]
    fn load_segment_count_is_bounded() {
        let mut image = TestImage::valid();
        image.segments = (0..17).map(|index| load(TEXT + index * 0x1000, 0x100, PF_X, &[0x90])).collect();
        image.segments.push(note_segment(&[&abi_note_bytes(ABI_VERSION)]));
        assert_eq!(image.check(), Err(ImageError::TooManyLoadSegments(17)));
        image.segments.remove(16);
        assert_eq!(image.check().map(|plan| plan.segments.len()), Ok(16), "16 segments are fine");
    }

    #[test]
    fn segment_errors() {
        let mut image = TestImage::valid();
        image.segments[1].memsz = 0;
        image.segments[1].bytes.clear();
        assert_eq!(image.check(), Err(ImageError::EmptySegment { virtual_start: TEXT + 0x2000 }));

        let mut image = TestImage::valid();
        image.segments[1].memsz = 2;
        assert_eq!(image.check(), Err(ImageError::FileLargerThanMemory { virtual_start: TEXT + 0x2000 }));

        let mut bytes = TestImage::valid().build();
        let offset_field = phdr_field(1, 8);
        bytes[offset_field..offset_field + 8].copy_from_slice(&(u64::MAX - 2).to_le_bytes());
        assert_eq!(validate(&bytes, ABI_VERSION), Err(ImageError::SegmentOutsideFile { virtual_start: TEXT + 0x2000 }));
        let mut bytes = TestImage::valid().build();
        let length = bytes.len() as u64;
        bytes[offset_field..offset_field + 8].copy_from_slice(&(length - 2).to_le_bytes());
        assert_eq!(validate(&bytes, ABI_VERSION), Err(ImageError::SegmentOutsideFile { virtual_start: TEXT + 0x2000 }));

        for (vaddr, memsz) in [
            (0x0000_7fff_ffff_f000, 0x2000), // runs into the hole
            (0xffff_8000_0000_0000, 0x1000), // hypervisor range
            (0xffff_87ff_ffff_f000, 0x2000), // starts inside the hypervisor range
            (0xffff_ffff_ffff_f000, 0x2000), // wraps
            (0x0000_8000_0000_0000, 0x10),   // non-canonical
        ] {
            let mut image = TestImage::valid();
            image.segments[1].vaddr = vaddr;
            image.segments[1].memsz = memsz;
            assert_eq!(
                image.check(),
                Err(ImageError::NotGuestMemory { virtual_start: vaddr, memory_size: memsz }),
                "{vaddr:#x}"
            );
        }
    }

    #[test]
    fn layout_errors() {
        let mut image = TestImage::valid();
        image.segments[1].vaddr = TEXT + 0x1800; // same page as the end of text
        assert_eq!(image.check(), Err(ImageError::SegmentsSharePage { first: TEXT, second: TEXT + 0x1800 }));

        let mut image = TestImage::valid();
        image.segments[1].vaddr = TEXT + MAX_IMAGE_SPAN;
        assert_eq!(image.check(), Err(ImageError::TooLarge { span: MAX_IMAGE_SPAN + 0x1000 }));
        image.segments[1].vaddr = TEXT + MAX_IMAGE_SPAN - 0x1000;
        image.segments.remove(2);
        assert!(image.check().is_ok(), "exactly the maximum span is fine");

        let mut image = TestImage::valid();
        image.segments[2].vaddr = 0xffff_ffff_ffff_f000;
        image.segments[2].memsz = 0x1000;
        image.segments.remove(0);
        image.segments.insert(0, load(0xffff_ffff_c000_0000, 0x10, PF_X, &[0x90]));
        image.entry = 0xffff_ffff_c000_0000;
        assert_eq!(image.check(), Err(ImageError::ReachesTop));
    }

    #[test]
    fn entry_must_be_in_executable_segment() {
        for entry in [TEXT - 1, TEXT + 0x1800, TEXT + 0x2000, TEXT + 0x3000, 0] {
            let mut image = TestImage::valid();
            image.entry = entry;
            assert_eq!(image.check(), Err(ImageError::EntryNotExecutable { entry }), "{entry:#x}");
        }
        let mut image = TestImage::valid();
        image.entry = TEXT + 0x17ff; // last byte of text (bss-like tail counts too)
        assert!(image.check().is_ok());
    }

    #[test]
    fn abi_note_errors() {
        let mut image = TestImage::valid();
        image.segments.pop();
        assert_eq!(image.check(), Err(ImageError::MissingAbiNote));
        assert!(ImageError::MissingAbiNote.to_string().contains("entry! macro"));

        let mut image = TestImage::valid();
        let note = abi_note_bytes(ABI_VERSION);
        image.segments[3] = note_segment(&[&note, &note]);
        assert_eq!(image.check(), Err(ImageError::DuplicateAbiNote));
        let mut image = TestImage::valid();
        image.segments.push(note_segment(&[&note]));
        assert_eq!(image.check(), Err(ImageError::DuplicateAbiNote), "one per PT_NOTE segment still counts twice");

        let mut image = TestImage::valid();
        let mut short = note.clone();
        short[4..8].copy_from_slice(&4u32.to_le_bytes()); // descriptor size 4
        short.truncate(28);
        image.segments[3] = note_segment(&[&short]);
        assert_eq!(image.check(), Err(ImageError::MalformedAbiNote { descriptor_size: 4 }));

        let mut bytes = TestImage::valid().build();
        let offset_field = phdr_field(3, 8);
        bytes[offset_field..offset_field + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(validate(&bytes, ABI_VERSION), Err(ImageError::NoteOutsideFile));
    }

    #[test]
    fn abi_version_is_checked() {
        let hypervisor = AbiVersion { major: 0, minor: 1 };
        let mut image = TestImage::valid();
        let newer_major = AbiVersion { major: 1, minor: 0 };
        image.segments[3] = note_segment(&[&abi_note_bytes(newer_major)]);
        let error = validate(&image.build(), hypervisor).unwrap_err();
        assert_eq!(
            error,
            ImageError::IncompatibleAbi { image: newer_major, hypervisor, reason: Incompatibility::MajorMismatch }
        );
        assert_eq!(error.to_string(), "built for ABI 1.0 but the hypervisor offers 0.1 (different major)");

        let newer_minor = AbiVersion { major: 0, minor: 2 };
        image.segments[3] = note_segment(&[&abi_note_bytes(newer_minor)]);
        let error = validate(&image.build(), hypervisor).unwrap_err();
        assert_eq!(error.to_string(), "built for ABI 0.2 but the hypervisor offers 0.1 (needs a newer minor)");

        image.segments[3] = note_segment(&[&abi_note_bytes(AbiVersion { major: 0, minor: 0 })]);
        assert_eq!(validate(&image.build(), hypervisor).unwrap().abi, AbiVersion { major: 0, minor: 0 });
    }

    #[test]
    fn every_display_is_one_line() {
        let errors = [
            ImageError::Truncated { length: 1 },
            ImageError::NotGuestMemory { virtual_start: 1, memory_size: 2 },
            ImageError::SegmentsSharePage { first: 1, second: 2 },
            ImageError::TooLarge { span: 5 },
            ImageError::ReachesTop,
            ImageError::DynamicallyLinked,
        ];
        for error in errors {
            let text = error.to_string();
            assert!(!text.contains('\n') && !text.is_empty());
            assert_eq!(text.chars().next().map(|c| c.is_lowercase()), Some(true), "{text}");
        }
    }

    #[test]
    fn garbage_never_panics() {
        // Every truncation and many single-byte corruptions of a valid image.
        let good = TestImage::valid().build();
        for length in 0..good.len() {
            let _ = validate(&good[..length], ABI_VERSION);
        }
        for index in 0..good.len().min(64 + 56 * 4 + 64) {
            for value in [0x00, 0xff, 0x80, 0x01] {
                let mut bytes = good.clone();
                bytes[index] = value;
                let _ = validate(&bytes, ABI_VERSION);
            }
        }
    }
}
