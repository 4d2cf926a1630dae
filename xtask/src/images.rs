//! Host-side mutations of guest images for negative tests: rewrite the ABI note's version,
//! truncate, or replace an image by deterministic garbage.

use crate::{Error, Result};
use hypercall_abi::note::{AbiNoteDescriptor, NOTE_NAME, NOTE_TYPE_ABI_VERSION};
use hypercall_abi::AbiVersion;

/// The bytes that open the ABI note in an image: namesz, descsz, type, padded name.
pub fn note_header() -> Vec<u8> {
    let mut header = Vec::new();
    header.extend_from_slice(&(NOTE_NAME.len() as u32).to_le_bytes());
    header.extend_from_slice(&(core::mem::size_of::<AbiNoteDescriptor>() as u32).to_le_bytes());
    header.extend_from_slice(&NOTE_TYPE_ABI_VERSION.to_le_bytes());
    header.extend_from_slice(NOTE_NAME);
    while header.len() % 4 != 0 {
        header.push(0);
    }
    header
}

/// Offset of the note's descriptor (major u16, minor u16) in `image`, if the note is there.
/// Notes are 4-byte aligned, so only aligned matches count.
pub fn find_descriptor(image: &[u8]) -> Option<usize> {
    let header = note_header();
    let descriptor_size = core::mem::size_of::<AbiNoteDescriptor>();
    (0..image.len().saturating_sub(header.len() + descriptor_size - 1))
        .step_by(4)
        .find(|&offset| image[offset..].starts_with(&header))
        .map(|offset| offset + header.len())
}

/// The ABI version `image` declares, if it has the note.
pub fn abi_version(image: &[u8]) -> Option<AbiVersion> {
    let offset = find_descriptor(image)?;
    AbiNoteDescriptor::parse(&image[offset..offset + core::mem::size_of::<AbiNoteDescriptor>()])
}

/// A copy of `image` whose ABI note declares `version`.
pub fn with_abi_version(image: &[u8], version: AbiVersion) -> Result<Vec<u8>> {
    let offset = find_descriptor(image)
        .ok_or_else(|| Error::failed("the image has no ringfence ABI note (section .note.ringfence)"))?;
    let mut copy = image.to_vec();
    copy[offset..offset + 2].copy_from_slice(&version.major.to_le_bytes());
    copy[offset + 2..offset + 4].copy_from_slice(&version.minor.to_le_bytes());
    Ok(copy)
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

    fn image_with_note_at(offset: usize, version: AbiVersion) -> Vec<u8> {
        let mut image = vec![0xcc; offset];
        image.extend_from_slice(&note_header());
        image.extend_from_slice(&version.major.to_le_bytes());
        image.extend_from_slice(&version.minor.to_le_bytes());
        image.extend_from_slice(&[0; 4]);
        image.extend_from_slice(&[0xdd; 64]);
        image
    }

    #[test]
    fn header_matches_the_abi_crate_note() {
        use hypercall_abi::note::AbiNote;
        let note = AbiNote::CURRENT;
        let mut expected = Vec::new();
        expected.extend_from_slice(&note.name_size.to_le_bytes());
        expected.extend_from_slice(&note.descriptor_size.to_le_bytes());
        expected.extend_from_slice(&note.note_type.to_le_bytes());
        expected.extend_from_slice(&note.name);
        assert_eq!(note_header(), expected);
    }

    #[test]
    fn version_is_found_and_rewritten() {
        let image = image_with_note_at(0x1a4, ABI_VERSION);
        assert_eq!(abi_version(&image), Some(ABI_VERSION));
        let newer = AbiVersion { major: ABI_VERSION.major + 1, minor: 7 };
        let mutated = with_abi_version(&image, newer).unwrap();
        assert_eq!(abi_version(&mutated), Some(newer));
        assert_eq!(mutated.len(), image.len());
        let changed: Vec<usize> = (0..image.len()).filter(|&i| image[i] != mutated[i]).collect();
        assert!(changed.iter().all(|&i| (0x1a4 + 24..0x1a4 + 28).contains(&i)), "{changed:?}");
    }

    #[test]
    fn unaligned_or_missing_note_is_not_found() {
        assert_eq!(abi_version(&image_with_note_at(0x1a5, ABI_VERSION)), None);
        assert_eq!(abi_version(&[0u8; 100]), None);
        assert!(with_abi_version(&[0u8; 100], ABI_VERSION).is_err());
        let image = image_with_note_at(8, ABI_VERSION);
        assert_eq!(abi_version(&image[..8 + 24 + 3]), None, "cut inside the descriptor");
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
