//! The boot archive (QEMU -initrd): a ustar file whose regular members are guest images.
//!
//! The archive is untrusted input, read by one parser: `tar-no-std`, which validates the
//! whole structure before anything is read (every header's checksum, type flag and size,
//! every payload inside the archive, the end marker), so its iterators cannot run off the
//! data. On top of that reading, this module decides what a *boot* archive may hold:
//! regular files (the images) and empty directories, short names, no duplicates.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use tar_no_std::{CorruptDataError, PosixHeader, TarArchiveRef, TypeFlag};

const BLOCK: usize = 512;

/// One guest image in the archive.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Member<'a> {
    /// The member's name with any leading "./" removed.
    pub name: &'a str,
    /// Its contents.
    pub bytes: &'a [u8],
}

/// Why the archive cannot be used. Offsets are byte offsets of the header block.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // Each variant's meaning is its Display line below (one place for each fact).
pub enum ArchiveError {
    Empty,
    TooShort { length: usize },
    BadChecksum { offset: usize },
    BadSize { offset: usize },
    UnsupportedType { offset: usize, type_flag: u8 },
    DirectoryWithData { offset: usize },
    PrefixedName { offset: usize },
    NameNotUtf8 { offset: usize },
    EmptyName { offset: usize },
    Truncated { name: String },
    MissingEnd,
    DuplicateName(String),
    NoMembers,
}

impl fmt::Display for ArchiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("the archive is empty (0 bytes)"),
            Self::TooShort { length } => write!(f, "{length} bytes is too short for a tar archive"),
            Self::BadChecksum { offset } => {
                write!(f, "header at byte {offset} has a bad checksum (not a tar archive, or corrupt)")
            }
            Self::BadSize { offset } => write!(f, "header at byte {offset} has an unreadable size field"),
            Self::UnsupportedType { offset, type_flag } => write!(
                f,
                "member at byte {offset} has type '{}'; only regular files and directories are supported (write a plain ustar archive)",
                type_flag.escape_ascii()
            ),
            Self::DirectoryWithData { offset } => write!(f, "directory entry at byte {offset} claims to carry data"),
            Self::PrefixedName { offset } => {
                write!(f, "member at byte {offset} has a name longer than 100 bytes (ustar prefix); use short image names")
            }
            Self::NameNotUtf8 { offset } => write!(f, "member name at byte {offset} is not UTF-8"),
            Self::EmptyName { offset } => write!(f, "member at byte {offset} has an empty name"),
            Self::Truncated { name } => write!(f, "member '{name}' runs past the end of the archive (truncated?)"),
            Self::MissingEnd => f.write_str("the archive has no end marker (two zero blocks); it is truncated or corrupt"),
            Self::DuplicateName(name) => write!(f, "two members are named '{name}'"),
            Self::NoMembers => f.write_str("the archive contains no guest images"),
        }
    }
}

/// The regular-file members of `archive`, in archive order; directories are skipped.
pub fn members(archive: &[u8]) -> Result<Vec<Member<'_>>, ArchiveError> {
    if archive.is_empty() {
        return Err(ArchiveError::Empty);
    }
    // A trailing partial block cannot belong to the archive (loaders may pad the module).
    let archive = &archive[..archive.len() - archive.len() % BLOCK];
    let tar = TarArchiveRef::new(archive).map_err(|error| corrupt(archive, error))?;
    let mut members: Vec<Member<'_>> = Vec::new();
    for (block_index, header) in tar.headers() {
        let offset = block_index * BLOCK;
        let Some(member) = member(archive, offset, header)? else { continue };
        if members.iter().any(|other| other.name == member.name) {
            return Err(ArchiveError::DuplicateName(member.name.to_string()));
        }
        members.push(member);
    }
    if members.is_empty() {
        return Err(ArchiveError::NoMembers);
    }
    Ok(members)
}

/// What a boot archive makes of one validated header: an image, nothing (a directory),
/// or a refusal.
fn member<'a>(archive: &'a [u8], offset: usize, header: &'a PosixHeader) -> Result<Option<Member<'a>>, ArchiveError> {
    let type_flag = archive.get(offset + TYPE_FLAG).copied().unwrap_or(0);
    let size = header.size.as_number::<usize>().map_err(|_| ArchiveError::BadSize { offset });
    match header.typeflag.try_to_type_flag() {
        Ok(TypeFlag::REGTYPE | TypeFlag::AREGTYPE) => {}
        // The crate skips no payload for a directory, so a size would make its data
        // blocks read as headers: refused rather than guessed at.
        Ok(TypeFlag::DIRTYPE) if size == Ok(0) => return Ok(None),
        Ok(TypeFlag::DIRTYPE) => return Err(ArchiveError::DirectoryWithData { offset }),
        _ => return Err(ArchiveError::UnsupportedType { offset, type_flag }),
    }
    let is_posix_ustar = header.magic.as_str() == Ok("ustar") && header.version.as_str() == Ok("00");
    if is_posix_ustar && !header.prefix.is_empty() {
        return Err(ArchiveError::PrefixedName { offset });
    }
    let mut name = header.name.as_str().map_err(|_| ArchiveError::NameNotUtf8 { offset })?;
    while let Some(rest) = name.strip_prefix("./") {
        name = rest;
    }
    // Old tars mark directories as regular files whose name ends in '/'.
    if name.ends_with('/') {
        return Ok(None);
    }
    if name.is_empty() {
        return Err(ArchiveError::EmptyName { offset });
    }
    // Validation put the payload inside the archive; `get` keeps that a checked fact.
    let start = offset + BLOCK;
    let bytes = archive
        .get(start..start.saturating_add(size?))
        .ok_or_else(|| ArchiveError::Truncated { name: name.to_string() })?;
    Ok(Some(Member { name, bytes }))
}

/// The reason `tar-no-std` refused `archive`, in this module's words.
fn corrupt(archive: &[u8], error: CorruptDataError) -> ArchiveError {
    let offset = |block_index: usize| block_index * BLOCK;
    match error {
        CorruptDataError::EmptyArchive => ArchiveError::Empty,
        CorruptDataError::InvalidBlockSize | CorruptDataError::TooShort { .. } => {
            ArchiveError::TooShort { length: archive.len() }
        }
        CorruptDataError::InvalidChecksum { block_index } => ArchiveError::BadChecksum { offset: offset(block_index) },
        CorruptDataError::InvalidTypeFlag { block_index } => ArchiveError::UnsupportedType {
            offset: offset(block_index),
            type_flag: archive.get(offset(block_index) + TYPE_FLAG).copied().unwrap_or(0),
        },
        CorruptDataError::InvalidPayloadSize { block_index } => ArchiveError::BadSize { offset: offset(block_index) },
        CorruptDataError::PayloadExtendsBeyondArchive { block_index } => {
            let field = archive.get(offset(block_index)..offset(block_index) + 100).unwrap_or_default();
            let field = &field[..field.iter().position(|&byte| byte == 0).unwrap_or(field.len())];
            let name = String::from_utf8_lossy(field);
            ArchiveError::Truncated { name: name.trim_start_matches("./").to_string() }
        }
        CorruptDataError::MissingTerminator => ArchiveError::MissingEnd,
    }
}

/// Offset of the type flag in a header block (for reports of an unknown type).
const TYPE_FLAG: usize = 156;

#[cfg(test)]
mod tests {
    use super::*;

    // Header fields the tests corrupt (POSIX ustar).
    const NAME_FIELD: core::ops::Range<usize> = 0..100;
    const SIZE_FIELD: core::ops::Range<usize> = 124..136;
    const CHECKSUM_FIELD: core::ops::Range<usize> = 148..156;
    const VERSION_FIELD: core::ops::Range<usize> = 263..265;
    const PREFIX_FIELD: core::ops::Range<usize> = 345..500;

    fn header(path: &str, size: u64, kind: tar::EntryType) -> tar::Header {
        let mut header = tar::Header::new_ustar();
        header.set_path(path).unwrap();
        header.set_size(size);
        header.set_mode(0o644);
        header.set_entry_type(kind);
        header.set_cksum();
        header
    }

    fn archive(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, bytes) in files {
            builder.append(&header(name, bytes.len() as u64, tar::EntryType::Regular), *bytes).unwrap();
        }
        builder.into_inner().unwrap()
    }

    /// Rewrites the header checksum after a test mutates a header block.
    fn fix_checksum(block: &mut [u8]) {
        block[CHECKSUM_FIELD].fill(b' ');
        let sum: u64 = block.iter().map(|&byte| u64::from(byte)).sum();
        let text = format!("{sum:06o}\0 ");
        block[CHECKSUM_FIELD].copy_from_slice(text.as_bytes());
    }

    #[test]
    fn members_in_order_with_exact_bytes() {
        let big: Vec<u8> = (0..1500u32).map(|value| value as u8).collect();
        let bytes = archive(&[("hello", b"hi there"), ("guest-kernel", &big), ("empty", b"")]);
        let members = members(&bytes).unwrap();
        assert_eq!(members.len(), 3);
        assert_eq!(members[0], Member { name: "hello", bytes: b"hi there" });
        assert_eq!(members[1].name, "guest-kernel");
        assert_eq!(members[1].bytes, big.as_slice());
        assert_eq!(members[2].bytes, b"");
    }

    #[test]
    fn directories_skipped_and_dot_slash_trimmed() {
        let mut builder = tar::Builder::new(Vec::new());
        builder.append(&header("./", 0, tar::EntryType::Directory), &[][..]).unwrap();
        builder.append(&header("./guest", 3, tar::EntryType::Regular), &b"abc"[..]).unwrap();
        builder.append(&header("dir/", 0, tar::EntryType::Directory), &[][..]).unwrap();
        builder.append(&header("dir/other", 1, tar::EntryType::Regular), &b"z"[..]).unwrap();
        let mut bytes = builder.into_inner().unwrap();
        bytes.extend_from_slice(&[0; 100]); // a loader's padding after the archive
        let members = members(&bytes).unwrap();
        let names: Vec<&str> = members.iter().map(|member| member.name).collect();
        assert_eq!(names, ["guest", "dir/other"]);
    }

    #[test]
    fn empty_and_garbage_are_clear_errors() {
        assert_eq!(members(&[]), Err(ArchiveError::Empty));
        assert_eq!(members(&[1; 600]), Err(ArchiveError::TooShort { length: 512 }));
        assert_eq!(members(&[0; 1024 * 3]), Err(ArchiveError::NoMembers));
        let garbage: Vec<u8> = (0..4096u32).map(|value| (value * 7 + 3) as u8).collect();
        assert_eq!(members(&garbage), Err(ArchiveError::BadChecksum { offset: 0 }));
        let mut elf_like = vec![0u8; 4096];
        elf_like[..4].copy_from_slice(b"\x7fELF");
        assert_eq!(members(&elf_like), Err(ArchiveError::BadChecksum { offset: 0 }));
        assert!(ArchiveError::NoMembers.to_string().contains("no guest images"));
    }

    #[test]
    fn truncation_and_missing_end_marker() {
        // Header at 0, payload 512..2560 (four blocks), end marker 2560..3584.
        let bytes = archive(&[("a", &[5; 2000])]);
        assert!(bytes.len() >= 3584);
        assert_eq!(members(&bytes[..2048]), Err(ArchiveError::Truncated { name: "a".into() }));
        assert_eq!(members(&bytes[..2560]), Err(ArchiveError::MissingEnd), "payload complete, no marker");
        assert_eq!(members(&bytes[..3072]), Err(ArchiveError::MissingEnd), "only one zero block");
        assert_eq!(members(&bytes[..3584]).map(|members| members.len()), Ok(1));
        // A zero block followed by a non-zero block (tar-no-std 0.3 panicked on this).
        let mut broken = bytes.clone();
        broken[3072] = 1;
        assert_eq!(members(&broken), Err(ArchiveError::MissingEnd));
    }

    #[test]
    fn header_field_errors() {
        let good = archive(&[("a", b"data")]);

        let mut bad_size = good.clone();
        bad_size[SIZE_FIELD].copy_from_slice(b"0000000000z\0");
        fix_checksum(&mut bad_size[..512]);
        assert_eq!(members(&bad_size), Err(ArchiveError::BadSize { offset: 0 }));

        // A symlink as tar writes one (no data), then one that claims data: a link has no
        // payload, so its "data" block is read as the next header and fails its checksum.
        let mut builder = tar::Builder::new(Vec::new());
        builder.append(&header("link", 0, tar::EntryType::Symlink), &[][..]).unwrap();
        let symlink = builder.into_inner().unwrap();
        assert_eq!(members(&symlink), Err(ArchiveError::UnsupportedType { offset: 0, type_flag: b'2' }));
        let mut with_data = good.clone();
        with_data[TYPE_FLAG] = b'2';
        fix_checksum(&mut with_data[..512]);
        assert_eq!(members(&with_data), Err(ArchiveError::BadChecksum { offset: 512 }));

        let mut unknown = good.clone();
        unknown[TYPE_FLAG] = b'Z';
        fix_checksum(&mut unknown[..512]);
        assert_eq!(members(&unknown), Err(ArchiveError::UnsupportedType { offset: 0, type_flag: b'Z' }));

        let mut pax = good.clone();
        pax[TYPE_FLAG] = b'x';
        fix_checksum(&mut pax[..512]);
        assert!(members(&pax).unwrap_err().to_string().contains("type 'x'"));

        // A directory has no payload either: data after it reads as a bad header, and a
        // size with no data after it is refused by name.
        let mut directory = good.clone();
        directory[TYPE_FLAG] = b'5';
        fix_checksum(&mut directory[..512]);
        assert_eq!(members(&directory), Err(ArchiveError::BadChecksum { offset: 512 }));
        let mut sized = directory[..512].to_vec();
        sized.extend_from_slice(&[0; 1024]);
        assert_eq!(members(&sized), Err(ArchiveError::DirectoryWithData { offset: 0 }));

        let mut prefixed = good.clone();
        prefixed[PREFIX_FIELD.start] = b'p';
        fix_checksum(&mut prefixed[..512]);
        assert_eq!(members(&prefixed), Err(ArchiveError::PrefixedName { offset: 0 }));
        // Only a POSIX header (magic "ustar" and version "00") has a prefix field; in any
        // other those bytes are something else and the name stands alone.
        let mut other_version = prefixed.clone();
        other_version[VERSION_FIELD].copy_from_slice(b" \0");
        fix_checksum(&mut other_version[..512]);
        assert_eq!(members(&other_version).map(|found| found[0].name), Ok("a"));

        let mut not_utf8 = good.clone();
        not_utf8[0] = 0xff;
        fix_checksum(&mut not_utf8[..512]);
        assert_eq!(members(&not_utf8), Err(ArchiveError::NameNotUtf8 { offset: 0 }));

        let mut dot_only = good.clone();
        dot_only[NAME_FIELD].fill(0);
        dot_only[..2].copy_from_slice(b"./");
        fix_checksum(&mut dot_only[..512]);
        assert_eq!(members(&dot_only), Err(ArchiveError::EmptyName { offset: 0 }));

        let mut corrupt = good.clone();
        corrupt[10] ^= 1;
        assert_eq!(members(&corrupt), Err(ArchiveError::BadChecksum { offset: 0 }));
    }

    #[test]
    fn duplicate_names_are_refused() {
        let bytes = archive(&[("guest", b"1"), ("./guest", b"2")]);
        assert_eq!(members(&bytes), Err(ArchiveError::DuplicateName("guest".into())));
    }

    #[test]
    fn corruptions_never_panic() {
        let good = archive(&[("a", &[1; 600]), ("b", b"x")]);
        for index in 0..good.len() {
            for value in [0u8, 0xff, b'0', b'7', b' '] {
                let mut bytes = good.clone();
                bytes[index] = value;
                if index < 512 {
                    fix_checksum(&mut bytes[..512]);
                }
                let _ = members(&bytes);
            }
        }
        for length in 0..good.len() {
            let _ = members(&good[..length]);
        }
    }

    #[test]
    fn random_corruptions_never_panic() {
        // Several bytes at once, checksums fixed or not: whatever the parser makes of
        // them, the answer is a list or a reason.
        let good = archive(&[("a", &[1; 600]), ("b", b"x"), ("c", &[2; 1100])]);
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..5_000 {
            let mut bytes = good.clone();
            for _ in 0..1 + next() % 8 {
                let index = (next() % bytes.len() as u64) as usize;
                bytes[index] = next() as u8;
            }
            if next() % 2 == 0 {
                for block in bytes.chunks_mut(512).filter(|block| block.iter().any(|&byte| byte != 0)) {
                    fix_checksum(block);
                }
            }
            let length = bytes.len() - (next() % 700) as usize;
            let _ = members(&bytes[..length]);
        }
    }
}
