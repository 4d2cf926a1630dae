//! Host-side mutations of guest images for negative tests: rewrite the ABI note's version,
//! truncate, or replace an image by deterministic garbage.

use crate::{Error, Result};
use core::mem::size_of;
use core::ops::Range;
use elf::abi::PT_NOTE;
use elf::endian::LittleEndian;
use elf::file::Class;
use elf::note::{Note, NoteIterator};
use elf::{ElfBytes, ParseError};
use hypercall_abi::note::{AbiNote, AbiNoteDescriptor, NOTE_NAME, NOTE_TYPE_ABI_VERSION};
use hypercall_abi::AbiVersion;

/// Where the ABI note's descriptor (major u16, minor u16, reserved u32) lies in `image`,
/// found the way the hypervisor's loader finds it: the ELF's PT_NOTE segments, parsed as
/// notes (4-byte aligned unless the segment says 8), the one named `ringfence` with type
/// [`NOTE_TYPE_ABI_VERSION`]. Other notes are skipped; none, several, or a descriptor of
/// the wrong size is an error.
pub fn find_descriptor(image: &[u8]) -> Result<Range<usize>> {
    let not_elf =
        |error: ParseError| Error::failed(format!("the image is not an ELF file this tool can read: {error}"));
    let file = ElfBytes::<LittleEndian>::minimal_parse(image).map_err(not_elf)?;
    let mut found = None;
    for segment in file.segments().into_iter().flatten().filter(|segment| segment.p_type == PT_NOTE) {
        let bytes = file.segment_data(&segment).map_err(not_elf)?;
        let align = if segment.p_align == 8 { 8 } else { 4 };
        for note in NoteIterator::new(LittleEndian, Class::ELF64, align, bytes) {
            let Note::Unknown(note) = note else { continue };
            if note.name != NOTE_NAME.as_slice() || note.n_type != u64::from(NOTE_TYPE_ABI_VERSION) {
                continue;
            }
            if note.desc.len() != size_of::<AbiNoteDescriptor>() {
                return Err(Error::failed(format!("the ABI note's descriptor has {} bytes, not 8", note.desc.len())));
            }
            // The descriptor is a sub-slice of `image`: its distance from the start is its offset.
            let offset = note.desc.as_ptr() as usize - image.as_ptr() as usize;
            if found.replace(offset..offset + note.desc.len()).is_some() {
                return Err(Error::failed("the image has several ringfence ABI notes"));
            }
        }
    }
    found.ok_or_else(|| Error::failed("the image has no ringfence ABI note (PT_NOTE 'ringfence' type 1)"))
}

/// The ABI version `image` declares, if it has the note.
pub fn abi_version(image: &[u8]) -> Option<AbiVersion> {
    AbiNoteDescriptor::parse(&image[find_descriptor(image).ok()?])
}

/// A copy of `image` whose ABI note declares `version`.
pub fn with_abi_version(image: &[u8], version: AbiVersion) -> Result<Vec<u8>> {
    let offset = find_descriptor(image)?.start;
    let mut copy = image.to_vec();
    copy[offset..offset + 2].copy_from_slice(&version.major.to_le_bytes());
    copy[offset + 2..offset + 4].copy_from_slice(&version.minor.to_le_bytes());
    Ok(copy)
}

/// A minimal ELF64 executable whose only content is one PT_NOTE segment holding `notes`:
/// what the tests of image handling here and in the conformance runner mutate.
pub fn elf_with_notes(notes: &[u8]) -> Vec<u8> {
    const HEADER: u16 = 64;
    const PROGRAM_HEADER: u16 = 56;
    let notes_at = u64::from(HEADER + PROGRAM_HEADER);
    let mut image = Vec::new();
    image.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0"); // ELF64, little-endian, version 1
    image.extend_from_slice(&elf::abi::ET_EXEC.to_le_bytes());
    image.extend_from_slice(&elf::abi::EM_X86_64.to_le_bytes());
    image.extend_from_slice(&1u32.to_le_bytes()); // e_version
    image.extend_from_slice(&0u64.to_le_bytes()); // e_entry
    image.extend_from_slice(&u64::from(HEADER).to_le_bytes()); // e_phoff
    image.extend_from_slice(&0u64.to_le_bytes()); // e_shoff: no section headers
    image.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    for half in [HEADER, PROGRAM_HEADER, 1, 64, 0, 0] {
        // e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx
        image.extend_from_slice(&half.to_le_bytes());
    }
    image.extend_from_slice(&PT_NOTE.to_le_bytes());
    image.extend_from_slice(&elf::abi::PF_R.to_le_bytes());
    for word in [notes_at, 0, 0, notes.len() as u64, notes.len() as u64, 4] {
        // p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_align
        image.extend_from_slice(&word.to_le_bytes());
    }
    image.extend_from_slice(notes);
    image
}

/// [`elf_with_notes`] with the ABI note of `version`.
pub fn elf_with_abi_note(version: AbiVersion) -> Vec<u8> {
    elf_with_notes(zerocopy::IntoBytes::as_bytes(&AbiNote::new(version)))
}

/// The first `length` bytes of `image` (all of it if shorter).
pub fn truncated(image: &[u8], length: usize) -> Vec<u8> {
    image[..length.min(image.len())].to_vec()
}

/// `size` bytes of deterministic noise from `seed` (splitmix64), never starting with the ELF
/// magic.
pub fn garbage(seed: u64, size: usize) -> Vec<u8> {
    let mut state = seed;
    let mut bytes = Vec::with_capacity(size + 8);
    while bytes.len() < size {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        bytes.extend_from_slice(&z.to_le_bytes());
    }
    bytes.truncate(size);
    if bytes.first() == Some(&0x7f) {
        bytes[0] = 0;
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use hypercall_abi::ABI_VERSION;
    use zerocopy::IntoBytes;

    /// A note other than the ABI note, as linkers add them (GNU build id).
    fn other_note() -> Vec<u8> {
        let mut note = Vec::new();
        for word in [4u32, 8, 3] {
            note.extend_from_slice(&word.to_le_bytes());
        }
        note.extend_from_slice(b"GNU\0");
        note.extend_from_slice(&[0xab; 8]);
        note
    }

    #[test]
    fn version_is_found_and_rewritten() {
        let abi_note = AbiNote::new(ABI_VERSION);
        let image = elf_with_notes(&[other_note(), abi_note.as_bytes().to_vec()].concat());
        assert_eq!(abi_version(&image), Some(ABI_VERSION));
        let descriptor = find_descriptor(&image).unwrap();
        assert_eq!(descriptor, 120 + other_note().len() + 24..120 + other_note().len() + 32);
        let newer = AbiVersion { major: ABI_VERSION.major + 1, minor: 7 };
        let mutated = with_abi_version(&image, newer).unwrap();
        assert_eq!(abi_version(&mutated), Some(newer));
        assert_eq!(mutated.len(), image.len());
        let changed: Vec<usize> = (0..image.len()).filter(|&i| image[i] != mutated[i]).collect();
        assert!(changed.iter().all(|&i| descriptor.contains(&i)), "{changed:?}");
    }

    #[test]
    fn the_note_counts_only_inside_a_note_segment() {
        // The note's bytes outside any PT_NOTE segment (in a byte search they looked the same).
        let mut loose = elf_with_notes(&other_note());
        loose.extend_from_slice(AbiNote::CURRENT.as_bytes());
        assert_eq!(abi_version(&loose), None);
        assert!(with_abi_version(&loose, ABI_VERSION).unwrap_err().to_string().contains("no ringfence ABI note"));
        // Raw note bytes without an ELF around them.
        let bare = AbiNote::CURRENT.as_bytes().to_vec();
        assert!(find_descriptor(&bare).unwrap_err().to_string().contains("not an ELF file"));
        assert_eq!(abi_version(&[0u8; 100]), None);
    }

    #[test]
    fn several_notes_a_wrong_size_or_a_cut_segment_are_errors() {
        let note = AbiNote::CURRENT.as_bytes().to_vec();
        let twice = elf_with_notes(&[note.clone(), note.clone()].concat());
        assert!(find_descriptor(&twice).unwrap_err().to_string().contains("several"));
        let mut short = note.clone();
        short[4] = 4; // descsz 4
        short.truncate(28);
        assert!(find_descriptor(&elf_with_notes(&short)).unwrap_err().to_string().contains("4 bytes"));
        let image = elf_with_abi_note(ABI_VERSION);
        assert!(find_descriptor(&image[..image.len() - 3]).is_err(), "segment runs past the end of the file");
    }

    #[test]
    fn truncation_and_garbage() {
        assert_eq!(truncated(b"abcdef", 3), b"abc");
        assert_eq!(truncated(b"ab", 3), b"ab");
        let noise = garbage(1, 4097);
        assert_eq!(noise.len(), 4097);
        assert_eq!(noise, garbage(1, 4097), "deterministic");
        assert_ne!(noise, garbage(2, 4097));
        assert_ne!(&noise[..4], b"\x7fELF");
        assert!(noise.iter().filter(|&&byte| byte == 0).count() < 100);
    }
}
