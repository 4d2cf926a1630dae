//! Malformed ELF shapes beyond `image`'s own tests: sizes and offsets that overflow,
//! segments that wrap or overlap, and notes whose sizes lie. Each is refused with its
//! reason — never a panic, never a plan built on a wrong reading.

use crate::domain::image::tests::{abi_note_bytes, load, note_segment, raw_note, TestImage, TEXT};
use crate::domain::image::{validate, ImageError};
use elf::abi::PF_X;
use hypercall_abi::note::{NOTE_NAME, NOTE_TYPE_ABI_VERSION};
use hypercall_abi::ABI_VERSION;

/// Byte offset of program header `index`'s field at `field` in a built image.
fn phdr_field(index: usize, field: usize) -> usize {
    64 + 56 * index + field
}

fn put_u64(bytes: &mut [u8], at: usize, value: u64) {
    bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

#[test]
fn offset_plus_size_overflow_is_outside_the_file() {
    // p_offset small and p_filesz (and p_memsz) u64::MAX: the sum overflows.
    let mut bytes = TestImage::valid().build();
    put_u64(&mut bytes, phdr_field(1, 8), 1);
    put_u64(&mut bytes, phdr_field(1, 32), u64::MAX);
    put_u64(&mut bytes, phdr_field(1, 40), u64::MAX);
    assert_eq!(validate(&bytes, ABI_VERSION), Err(ImageError::SegmentOutsideFile { virtual_start: TEXT + 0x2000 }));
    // A note segment the same way.
    let mut bytes = TestImage::valid().build();
    put_u64(&mut bytes, phdr_field(3, 8), 16);
    put_u64(&mut bytes, phdr_field(3, 32), u64::MAX - 8);
    assert_eq!(validate(&bytes, ABI_VERSION), Err(ImageError::NoteOutsideFile));
    // A program header table whose size overflows nothing but the file.
    let mut bytes = TestImage::valid().build();
    bytes[56..58].copy_from_slice(&u16::MAX.to_le_bytes()); // e_phnum
    assert_eq!(validate(&bytes, ABI_VERSION), Err(ImageError::ProgramHeadersOutsideFile));
}

#[test]
fn wrapping_segments_are_not_guest_memory() {
    for (vaddr, memsz) in [(TEXT, u64::MAX), (TEXT + 0x2000, u64::MAX - TEXT), (!0xfff, 0x1001)] {
        let mut image = TestImage::valid();
        image.segments[1].vaddr = vaddr;
        image.segments[1].memsz = memsz;
        assert_eq!(
            image.check(),
            Err(ImageError::NotGuestMemory { virtual_start: vaddr, memory_size: memsz }),
            "{vaddr:#x} + {memsz:#x}"
        );
    }
}

#[test]
fn overlapping_segments_are_refused() {
    // The same start; one inside another; one ending inside the next.
    for (vaddr, memsz) in [(TEXT, 0x100), (TEXT + 0x1000, 0x10), (TEXT + 0x2000 - 0x100, 0x1000)] {
        let mut image = TestImage::valid();
        image.segments[1].vaddr = vaddr;
        image.segments[1].memsz = memsz;
        image.segments[1].bytes.truncate(memsz as usize);
        let error = image.check().unwrap_err();
        assert!(matches!(error, ImageError::SegmentsSharePage { .. }), "{vaddr:#x}: {error:?}");
    }
    // Two copies of the text segment.
    let mut image = TestImage::valid();
    image.segments.insert(1, load(TEXT, 0x1800, PF_X | 4, &[0x90; 16]));
    assert_eq!(image.check(), Err(ImageError::SegmentsSharePage { first: TEXT, second: TEXT }));
}

/// The ABI note with its header's sizes replaced.
fn lying_note(name_size: u32, descriptor_size: u32) -> Vec<u8> {
    let mut note = abi_note_bytes(ABI_VERSION);
    note[0..4].copy_from_slice(&name_size.to_le_bytes());
    note[4..8].copy_from_slice(&descriptor_size.to_le_bytes());
    note
}

#[test]
fn notes_whose_sizes_lie_are_never_read_as_the_abi_note() {
    let good = abi_note_bytes(ABI_VERSION);
    let truncated_header = good[..6].to_vec();
    let shapes: [(&str, Vec<Vec<u8>>); 7] = [
        ("name size u32::MAX", vec![lying_note(u32::MAX, 8)]),
        ("descriptor size u32::MAX", vec![lying_note(10, u32::MAX)]),
        ("both u32::MAX", vec![lying_note(u32::MAX, u32::MAX)]),
        ("name past the segment", vec![lying_note(200, 8)]),
        ("descriptor past the segment", vec![lying_note(10, 4096)]),
        ("a header cut short", vec![truncated_header]),
        ("a bad note first, then the good one", vec![lying_note(u32::MAX - 3, 0), good.clone()]),
    ];
    for (what, notes) in shapes {
        let mut image = TestImage::valid();
        let parts: Vec<&[u8]> = notes.iter().map(Vec::as_slice).collect();
        image.segments[3] = note_segment(&parts);
        match image.check() {
            // The iterator stops at the first note it cannot frame: nothing after it counts.
            Err(ImageError::MissingAbiNote | ImageError::MalformedAbiNote { .. }) => {}
            other => panic!("{what}: {other:?}"),
        }
    }
    // A name that is the ABI note's but one byte longer, or of another type, is not it.
    let mut long_name = NOTE_NAME.to_vec();
    long_name.insert(long_name.len() - 1, b'x');
    for note in [raw_note(&long_name, NOTE_TYPE_ABI_VERSION, &good[20..]), raw_note(NOTE_NAME, 2, &good[20..])] {
        let mut image = TestImage::valid();
        image.segments[3] = note_segment(&[&note]);
        assert_eq!(image.check(), Err(ImageError::MissingAbiNote));
    }
}

#[test]
fn an_eight_byte_note_alignment_never_misreads_the_version() {
    // 4-byte-padded notes in a segment claiming 8-byte alignment: either the note is
    // found as written or it is not found — never a different version.
    let mut image = TestImage::valid();
    image.segments[3].align = 8;
    match image.check() {
        Ok(plan) => assert_eq!(plan.abi, ABI_VERSION),
        Err(error) => assert!(matches!(error, ImageError::MissingAbiNote | ImageError::MalformedAbiNote { .. })),
    }
    let other = raw_note(b"GNU\0", 3, &[0xaa; 20]);
    let mut image = TestImage::valid();
    image.segments[3] = note_segment(&[&other, &abi_note_bytes(ABI_VERSION), &other]);
    assert_eq!(image.check().map(|plan| plan.abi), Ok(ABI_VERSION), "other notes around it are skipped");
}
