//! The ABI-version ELF note every guest image carries (SPEC.md §9.4).

use crate::AbiVersion;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Note name, NUL included: `"ringfence\0"`.
pub const NOTE_NAME: &[u8; 10] = b"ringfence\0";
/// Note type of the ABI-version note.
pub const NOTE_TYPE_ABI_VERSION: u32 = 1;
/// Section the note lives in (and the PT_NOTE segment that covers it).
pub const NOTE_SECTION: &str = ".note.ringfence";

/// Descriptor of the ABI-version note.
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct AbiNoteDescriptor {
    /// ABI major the image was built against.
    pub major: u16,
    /// ABI minor the image was built against.
    pub minor: u16,
    /// Zero.
    pub reserved: u32,
}

/// The whole note as it sits in the image: ELF note header, padded name, descriptor.
#[derive(Copy, Clone, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, align(4))]
pub struct AbiNote {
    /// `NOTE_NAME.len()`.
    pub name_size: u32,
    /// `size_of::<AbiNoteDescriptor>()`.
    pub descriptor_size: u32,
    /// [`NOTE_TYPE_ABI_VERSION`].
    pub note_type: u32,
    /// [`NOTE_NAME`] padded with NULs to a multiple of 4.
    pub name: [u8; 12],
    /// The version.
    pub descriptor: AbiNoteDescriptor,
}

impl AbiNote {
    /// The note for `version`.
    pub const fn new(version: AbiVersion) -> Self {
        let mut name = [0u8; 12];
        let mut index = 0;
        while index < NOTE_NAME.len() {
            name[index] = NOTE_NAME[index];
            index += 1;
        }
        Self {
            name_size: NOTE_NAME.len() as u32,
            descriptor_size: core::mem::size_of::<AbiNoteDescriptor>() as u32,
            note_type: NOTE_TYPE_ABI_VERSION,
            name,
            descriptor: AbiNoteDescriptor { major: version.major, minor: version.minor, reserved: 0 },
        }
    }

    /// The note for the version this crate describes.
    pub const CURRENT: AbiNote = AbiNote::new(crate::ABI_VERSION);
}

impl AbiNoteDescriptor {
    /// Reads a descriptor of exactly the right size.
    pub fn parse(bytes: &[u8]) -> Option<AbiVersion> {
        let descriptor = AbiNoteDescriptor::read_from_bytes(bytes).ok()?;
        Some(AbiVersion { major: descriptor.major, minor: descriptor.minor })
    }
}

const _: () = {
    assert!(core::mem::size_of::<AbiNote>() == 32);
    assert!(core::mem::offset_of!(AbiNote, name) == 12);
    assert!(core::mem::offset_of!(AbiNote, descriptor) == 24);
    assert!(core::mem::size_of::<AbiNoteDescriptor>() == 8);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn note_bytes() {
        let note = AbiNote::new(AbiVersion { major: 2, minor: 7 });
        let bytes = note.as_bytes();
        assert_eq!(&bytes[0..4], &10u32.to_le_bytes());
        assert_eq!(&bytes[4..8], &8u32.to_le_bytes());
        assert_eq!(&bytes[8..12], &1u32.to_le_bytes());
        assert_eq!(&bytes[12..22], b"ringfence\0");
        assert_eq!(&bytes[22..24], &[0, 0]);
        assert_eq!(AbiNoteDescriptor::parse(&bytes[24..32]), Some(AbiVersion { major: 2, minor: 7 }));
        assert_eq!(AbiNoteDescriptor::parse(&bytes[24..31]), None);
    }
}
