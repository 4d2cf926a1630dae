//! The initramfs: a cpio archive in the "newc" format (SVR4 portable ASCII, magic
//! `070701`, or `070702` with a checksum field), as Linux unpacks at boot and as
//! `cpio -H newc` writes.
//!
//! Each member is a 110-byte header of thirteen 8-digit hexadecimal fields after the magic,
//! then the path (its length, NUL included, is a header field), padded to 4 bytes, then
//! the data, padded to 4 bytes. The member named `TRAILER!!!` ends the archive. The
//! archive is not trusted: every length is checked against what is left, and a damaged
//! archive is an error naming the offset, never a panic or a read past its end.

use core::fmt;

use super::file_type::{FileType, PERMISSION_MASK};

const HEADER_LEN: usize = 110;
const FIELD_LEN: usize = 8;
const TRAILER: &[u8] = b"TRAILER!!!";

/// One member of the archive, borrowing its path and data from the archive's bytes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The path as stored (no NUL), often relative (`bin/sh`, `.`).
    pub path: &'a [u8],
    /// Type and permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds since 1970.
    pub mtime: u32,
    /// Device major and minor number, for device files.
    pub rdev: (u32, u32),
    /// The contents (a symlink's target for a symlink).
    pub data: &'a [u8],
}

impl Entry<'_> {
    /// What kind of file this member is, if its mode names one.
    pub fn kind(&self) -> Option<FileType> {
        FileType::from_mode(self.mode)
    }

    /// Permission bits (with set-id and sticky bits).
    pub const fn permissions(&self) -> u32 {
        self.mode & PERMISSION_MASK
    }
}

/// What is wrong with an archive, and where (byte offset of the member's header).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum CpioError {
    /// The archive ends inside a member (header, path or data).
    Truncated {
        /// Offset of the member.
        offset: usize,
    },
    /// The member does not start with `070701` or `070702` (old binary and odc cpio are
    /// not supported).
    BadMagic {
        /// Offset of the member.
        offset: usize,
    },
    /// A header field is not 8 hexadecimal digits.
    BadField {
        /// Offset of the member.
        offset: usize,
        /// The field's name.
        field: &'static str,
    },
    /// The path is empty or not NUL-terminated where its length says.
    BadPath {
        /// Offset of the member.
        offset: usize,
    },
    /// The bytes ended without a `TRAILER!!!` member.
    MissingTrailer,
}

impl fmt::Display for CpioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CpioError::Truncated { offset } => write!(f, "cpio member at byte {offset} is cut short"),
            CpioError::BadMagic { offset } => {
                write!(
                    f,
                    "cpio member at byte {offset} is not in newc format (magic 070701); build it with `cpio -H newc`"
                )
            }
            CpioError::BadField { offset, field } => {
                write!(f, "cpio member at byte {offset}: field {field} is not 8 hexadecimal digits")
            }
            CpioError::BadPath { offset } => write!(f, "cpio member at byte {offset}: path is empty or not terminated"),
            CpioError::MissingTrailer => f.write_str("cpio archive has no TRAILER!!! member"),
        }
    }
}

/// The members of a newc archive, in order; ends after the trailer, or at the first error.
pub struct Archive<'a> {
    bytes: &'a [u8],
    offset: usize,
    finished: bool,
}

impl<'a> Archive<'a> {
    /// Reads `bytes` as a newc archive (nothing is checked until iteration).
    pub const fn new(bytes: &'a [u8]) -> Archive<'a> {
        Archive { bytes, offset: 0, finished: false }
    }

    fn member(&self) -> Result<(Option<Entry<'a>>, usize), CpioError> {
        let offset = self.offset;
        let header = self.bytes.get(offset..).filter(|rest| rest.len() >= HEADER_LEN);
        let Some(header) = header else {
            return Err(if offset >= self.bytes.len() {
                CpioError::MissingTrailer
            } else {
                CpioError::Truncated { offset }
            });
        };
        if &header[..6] != b"070701" && &header[..6] != b"070702" {
            return Err(CpioError::BadMagic { offset });
        }
        let field = |index: usize, name: &'static str| -> Result<u32, CpioError> {
            let start = 6 + index * FIELD_LEN;
            parse_hex(&header[start..start + FIELD_LEN]).ok_or(CpioError::BadField { offset, field: name })
        };
        let mode = field(1, "mode")?;
        let uid = field(2, "uid")?;
        let gid = field(3, "gid")?;
        let mtime = field(5, "mtime")?;
        let file_size = field(6, "filesize")? as usize;
        let rdev = (field(9, "rdevmajor")?, field(10, "rdevminor")?);
        let name_size = field(11, "namesize")? as usize;
        // Fields 0 (ino), 4 (nlink), 7 and 8 (the archive's own device) and 12 (check)
        // must be well-formed but carry nothing the file system keeps.
        for (index, name) in [(0, "ino"), (4, "nlink"), (7, "devmajor"), (8, "devminor"), (12, "check")] {
            field(index, name)?;
        }

        let name_start = offset + HEADER_LEN;
        let name_end = name_start.checked_add(name_size).ok_or(CpioError::Truncated { offset })?;
        let name = self.bytes.get(name_start..name_end).ok_or(CpioError::Truncated { offset })?;
        let path = match name.split_last() {
            Some((0, path)) if !path.is_empty() && !path.contains(&0) => path,
            _ => return Err(CpioError::BadPath { offset }),
        };
        let data_start = align4(name_end).ok_or(CpioError::Truncated { offset })?;
        let data_end = data_start.checked_add(file_size).ok_or(CpioError::Truncated { offset })?;
        let data = self.bytes.get(data_start..data_end).ok_or(CpioError::Truncated { offset })?;
        // The last member's padding may be missing; past it there is nothing to read.
        let next = align4(data_end).ok_or(CpioError::Truncated { offset })?;
        if path == TRAILER {
            return Ok((None, next));
        }
        Ok((Some(Entry { path, mode, uid, gid, mtime, rdev, data }), next))
    }
}

impl<'a> Iterator for Archive<'a> {
    type Item = Result<Entry<'a>, CpioError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        match self.member() {
            Ok((Some(entry), next)) => {
                self.offset = next;
                Some(Ok(entry))
            }
            Ok((None, _)) => {
                self.finished = true;
                None
            }
            Err(error) => {
                self.finished = true;
                Some(Err(error))
            }
        }
    }
}

fn align4(value: usize) -> Option<usize> {
    value.checked_add(3).map(|value| value & !3)
}

fn parse_hex(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |value, &digit| {
        let nibble = (digit as char).to_digit(16)?;
        Some(value << 4 | nibble)
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// Appends one newc member as `cpio -H newc` writes it.
    pub(crate) fn member(archive: &mut Vec<u8>, path: &str, mode: u32, data: &[u8]) {
        let fields = [1, mode, 1000, 100, 1, 1_700_000_000, data.len() as u32, 0, 0, 1, 3, path.len() as u32 + 1, 0];
        archive.extend_from_slice(b"070701");
        for field in fields {
            archive.extend_from_slice(format!("{field:08X}").as_bytes());
        }
        archive.extend_from_slice(path.as_bytes());
        archive.push(0);
        while !archive.len().is_multiple_of(4) {
            archive.push(0);
        }
        archive.extend_from_slice(data);
        while !archive.len().is_multiple_of(4) {
            archive.push(0);
        }
    }

    fn sample() -> Vec<u8> {
        let mut archive = Vec::new();
        member(&mut archive, ".", 0o040_755, b"");
        member(&mut archive, "bin", 0o040_755, b"");
        member(&mut archive, "bin/sh", 0o100_755, b"\x7fELF...");
        member(&mut archive, "bin/ls", 0o120_777, b"sh");
        member(&mut archive, "TRAILER!!!", 0, b"");
        archive
    }

    #[test]
    fn members_are_read_in_order_with_their_fields() {
        let archive = sample();
        let entries: Vec<Entry<'_>> = Archive::new(&archive).collect::<Result<_, _>>().unwrap();
        let paths: Vec<&[u8]> = entries.iter().map(|entry| entry.path).collect();
        assert_eq!(paths, [&b"."[..], b"bin", b"bin/sh", b"bin/ls"]);
        let sh = entries[2];
        assert_eq!(sh.kind(), Some(FileType::Regular));
        assert_eq!(sh.permissions(), 0o755);
        assert_eq!(sh.data, b"\x7fELF...");
        assert_eq!((sh.uid, sh.gid, sh.mtime, sh.rdev), (1000, 100, 1_700_000_000, (1, 3)));
        assert_eq!(entries[3].kind(), Some(FileType::Symlink));
        assert_eq!(entries[3].data, b"sh");
        assert_eq!(entries[0].kind(), Some(FileType::Directory));
    }

    #[test]
    fn bytes_after_the_trailer_are_ignored() {
        let mut archive = sample();
        archive.extend_from_slice(&[0; 512]);
        assert_eq!(Archive::new(&archive).count(), 4);
    }

    #[test]
    fn every_truncation_is_an_error_never_a_panic() {
        let archive = sample();
        for length in 0..archive.len() {
            let result: Result<Vec<_>, _> = Archive::new(&archive[..length]).collect();
            assert!(result.is_err(), "truncated to {length} bytes was accepted");
        }
    }

    #[test]
    fn damaged_headers_are_named() {
        let mut archive = sample();
        archive[0] = b'1';
        assert_eq!(Archive::new(&archive).next(), Some(Err(CpioError::BadMagic { offset: 0 })));

        let mut archive = sample();
        archive[6 + 8] = b'g'; // first digit of mode
        assert_eq!(Archive::new(&archive).next(), Some(Err(CpioError::BadField { offset: 0, field: "mode" })));

        let mut archive = Vec::new();
        member(&mut archive, "x", 0o100_644, b"");
        let name_size = 6 + 11 * 8;
        archive[name_size..name_size + 8].copy_from_slice(b"FFFFFFFF");
        assert_eq!(Archive::new(&archive).next(), Some(Err(CpioError::Truncated { offset: 0 })));

        assert_eq!(Archive::new(b"").next(), Some(Err(CpioError::MissingTrailer)));
    }

    #[test]
    fn a_path_must_be_terminated_where_its_size_says() {
        let mut archive = Vec::new();
        member(&mut archive, "abc", 0o100_644, b"");
        archive[HEADER_LEN + 3] = b'd'; // overwrite the NUL
        assert_eq!(Archive::new(&archive).next(), Some(Err(CpioError::BadPath { offset: 0 })));
    }
}
