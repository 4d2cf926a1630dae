//! The boot archive (QEMU -initrd): a ustar file whose regular members are guest images.
//!
//! The archive is untrusted input. Before `tar-no-std` reads it, every header is checked
//! here (checksum, size, type, payload inside the file, end marker), because that crate
//! panics on some malformed archives and silently stops at others. Member names are taken
//! from the header blocks directly so they borrow from the archive.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use tar_no_std::TarArchiveRef;

const BLOCK: usize = 512;
const NAME_FIELD: core::ops::Range<usize> = 0..100;
const SIZE_FIELD: core::ops::Range<usize> = 124..136;
const CHECKSUM_FIELD: core::ops::Range<usize> = 148..156;
const TYPE_FLAG: usize = 156;
const MAGIC_FIELD: core::ops::Range<usize> = 257..263;
const VERSION_FIELD: core::ops::Range<usize> = 263..265;
const PREFIX_FIELD: core::ops::Range<usize> = 345..500;

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
    TooShort {
        length: usize,
    },
    BadChecksum {
        offset: usize,
    },
    BadSize {
        offset: usize,
    },
    UnsupportedType {
        offset: usize,
        type_flag: u8,
    },
    DirectoryWithData {
        offset: usize,
    },
    PrefixedName {
        offset: usize,
    },
    NameNotUtf8 {
        offset: usize,
    },
    EmptyName {
        offset: usize,
    },
    Truncated {
        name: String,
    },
    MissingEnd,
    DuplicateName(String),
    NoMembers,
    /// `tar-no-std` read the archive differently from the checks here; refused to be safe.
    Inconsistent,
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
            Self::Inconsistent => f.write_str("the archive's structure is ambiguous; rewrite it as a plain ustar archive"),
        }
    }
}

/// One header as checked here.
struct Header<'a> {
    offset: usize,
    name: &'a str,
    size: usize,
    regular: bool,
}

/// The regular-file members of `archive`, in archive order; directories are skipped.
pub fn members(archive: &[u8]) -> Result<Vec<Member<'_>>, ArchiveError> {
    if archive.is_empty() {
        return Err(ArchiveError::Empty);
    }
    // A trailing partial block cannot belong to the archive (loaders may pad the module).
    let archive = &archive[..archive.len() - archive.len() % BLOCK];
    let headers = walk(archive)?;

    let tar = TarArchiveRef::new(archive).map_err(|_| ArchiveError::TooShort { length: archive.len() })?;
    let mut entries = tar.entries();
    let mut members: Vec<Member<'_>> = Vec::new();
    for header in headers.iter().filter(|header| header.regular) {
        let expected = &archive[header.offset + BLOCK..header.offset + BLOCK + header.size];
        let entry = entries.next().ok_or(ArchiveError::Inconsistent)?;
        let data = entry.data();
        if data.as_ptr() != expected.as_ptr() || data.len() != expected.len() {
            return Err(ArchiveError::Inconsistent);
        }
        // Old tars mark directories as regular files whose name ends in '/'.
        if header.name.ends_with('/') {
            continue;
        }
        if members.iter().any(|member| member.name == header.name) {
            return Err(ArchiveError::DuplicateName(header.name.to_string()));
        }
        members.push(Member { name: header.name, bytes: data });
    }
    if entries.next().is_some() {
        return Err(ArchiveError::Inconsistent);
    }
    if members.is_empty() {
        return Err(ArchiveError::NoMembers);
    }
    Ok(members)
}

/// Checks every header up to the end marker.
fn walk(archive: &[u8]) -> Result<Vec<Header<'_>>, ArchiveError> {
    if archive.len() < 3 * BLOCK {
        return Err(ArchiveError::TooShort { length: archive.len() });
    }
    let mut headers = Vec::new();
    let mut offset = 0;
    loop {
        let Some(block) = archive.get(offset..offset + BLOCK) else {
            return Err(ArchiveError::MissingEnd);
        };
        if block.iter().all(|&byte| byte == 0) {
            let second = archive.get(offset + BLOCK..offset + 2 * BLOCK);
            return match second {
                Some(second) if second.iter().all(|&byte| byte == 0) => Ok(headers),
                _ => Err(ArchiveError::MissingEnd),
            };
        }
        let header = check_header(block, offset)?;
        let payload_blocks = header.size.div_ceil(BLOCK);
        let next = payload_blocks
            .checked_mul(BLOCK)
            .and_then(|bytes| bytes.checked_add(offset + BLOCK))
            .filter(|&next| next <= archive.len())
            .ok_or_else(|| ArchiveError::Truncated { name: header.name.to_string() })?;
        headers.push(header);
        offset = next;
    }
}

fn check_header(block: &[u8], offset: usize) -> Result<Header<'_>, ArchiveError> {
    let stored = parse_octal(&block[CHECKSUM_FIELD], true).ok_or(ArchiveError::BadChecksum { offset })?;
    let computed: u64 = block
        .iter()
        .enumerate()
        .map(|(index, &byte)| if CHECKSUM_FIELD.contains(&index) { u64::from(b' ') } else { u64::from(byte) })
        .sum();
    if stored != computed {
        return Err(ArchiveError::BadChecksum { offset });
    }
    // The same reading of the size field as tar-no-std (digits up to the first NUL or
    // space), but refusing what it would misread, such as an empty field or a '+'.
    let size = parse_octal(&block[SIZE_FIELD], false).ok_or(ArchiveError::BadSize { offset })?;
    let size = usize::try_from(size).map_err(|_| ArchiveError::BadSize { offset })?;
    let type_flag = block[TYPE_FLAG];
    let regular = match type_flag {
        b'0' | 0 => true,
        b'5' if size == 0 => false,
        b'5' => return Err(ArchiveError::DirectoryWithData { offset }),
        other => return Err(ArchiveError::UnsupportedType { offset, type_flag: other }),
    };
    let is_posix_ustar = &block[MAGIC_FIELD] == b"ustar\0" && &block[VERSION_FIELD] == b"00";
    if is_posix_ustar && block[PREFIX_FIELD.start] != 0 {
        return Err(ArchiveError::PrefixedName { offset });
    }
    let raw_name = &block[NAME_FIELD];
    let raw_name = &raw_name[..raw_name.iter().position(|&byte| byte == 0).unwrap_or(raw_name.len())];
    let mut name = core::str::from_utf8(raw_name).map_err(|_| ArchiveError::NameNotUtf8 { offset })?;
    while let Some(rest) = name.strip_prefix("./") {
        name = rest;
    }
    if name.is_empty() && regular {
        return Err(ArchiveError::EmptyName { offset });
    }
    Ok(Header { offset, name, size, regular })
}

/// An octal field: digits, then NUL/space padding. With `leading_spaces`, spaces before
/// the digits are allowed too (old tars right-align the checksum that way).
fn parse_octal(field: &[u8], leading_spaces: bool) -> Option<u64> {
    let start = if leading_spaces { field.iter().position(|&byte| byte != b' ')? } else { 0 };
    let field = &field[start..];
    let end = field.iter().position(|&byte| byte == 0 || byte == b' ').unwrap_or(field.len());
    let digits = &field[..end];
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |value, &digit| {
        if !(b'0'..=b'7').contains(&digit) {
            return None;
        }
        value.checked_mul(8)?.checked_add(u64::from(digit - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        // A zero block followed by a non-zero block (tar-no-std 0.3 panics on this).
        let mut broken = bytes.clone();
        broken[3072] = 1;
        assert_eq!(members(&broken), Err(ArchiveError::MissingEnd));
    }

    #[test]
    fn header_field_errors() {
        let good = archive(&[("a", b"data")]);

        let mut bad_size = good.clone();
        bad_size[SIZE_FIELD].copy_from_slice(b"+0000000004\0");
        fix_checksum(&mut bad_size[..512]);
        assert_eq!(members(&bad_size), Err(ArchiveError::BadSize { offset: 0 }));

        let mut symlink = good.clone();
        symlink[TYPE_FLAG] = b'2';
        fix_checksum(&mut symlink[..512]);
        assert_eq!(members(&symlink), Err(ArchiveError::UnsupportedType { offset: 0, type_flag: b'2' }));

        let mut pax = good.clone();
        pax[TYPE_FLAG] = b'x';
        fix_checksum(&mut pax[..512]);
        assert!(members(&pax).unwrap_err().to_string().contains("type 'x'"));

        let mut directory = good.clone();
        directory[TYPE_FLAG] = b'5';
        fix_checksum(&mut directory[..512]);
        assert_eq!(members(&directory), Err(ArchiveError::DirectoryWithData { offset: 0 }));

        let mut prefixed = good.clone();
        prefixed[PREFIX_FIELD.start] = b'p';
        fix_checksum(&mut prefixed[..512]);
        assert_eq!(members(&prefixed), Err(ArchiveError::PrefixedName { offset: 0 }));

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
    fn octal_fields() {
        assert_eq!(parse_octal(b"0000644\0", false), Some(0o644));
        assert_eq!(parse_octal(b" 12345\0 ", true), Some(0o12345));
        assert_eq!(parse_octal(b" 12345\0 ", false), None, "sizes never start with a space");
        assert_eq!(parse_octal(b"00000000017 ", false), Some(0o17));
        assert_eq!(parse_octal(b"\0\0\0", true), None);
        assert_eq!(parse_octal(b"   ", true), None);
        assert_eq!(parse_octal(b"0008", false), None);
        assert_eq!(parse_octal(b"77777777777777777777777", false), None, "overflow");
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
}
