//! Unpacking the initramfs (a newc cpio archive) into the file system at boot.
//!
//! Members are created in archive order. Paths are taken relative to the root whether
//! written `bin/sh`, `./bin/sh` or `/bin/sh`; `.` sets the root's permissions; missing
//! parent directories are created (0755), so an archive need not list them; a later member
//! of the same path replaces an earlier one (a directory stays and takes the new
//! permissions), as Linux's unpacker does. A path with a `..` component, an empty one, or
//! a type Linux does not define is refused: the archive comes from the boot loader, and
//! the kernel still checks what it unpacks.

use core::fmt;

use super::cpio::{Archive, CpioError, Entry};
use super::tree::{FileSystem, InodeId, NewNode, ROOT};
use super::FileType;
use crate::linux::Errno;

/// What was unpacked.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Unpacked {
    /// Members created (directories included).
    pub members: usize,
    /// Bytes of file contents.
    pub bytes: u64,
}

/// Why the initramfs could not be unpacked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnpackError {
    /// The archive itself is damaged.
    Archive(CpioError),
    /// A member could not be created: its path and the error.
    Member {
        /// The member's path as written in the archive.
        path: alloc::vec::Vec<u8>,
        /// Why.
        error: Errno,
    },
}

impl fmt::Display for UnpackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnpackError::Archive(error) => write!(f, "initramfs: {error}"),
            UnpackError::Member { path, error } => {
                write!(f, "initramfs: cannot create {}: {error}", alloc::string::String::from_utf8_lossy(path))
            }
        }
    }
}

/// Unpacks `archive` into `fs`.
pub fn unpack(fs: &mut FileSystem, archive: &[u8]) -> Result<Unpacked, UnpackError> {
    let mut unpacked = Unpacked::default();
    for entry in Archive::new(archive) {
        let entry = entry.map_err(UnpackError::Archive)?;
        let failed = |error| UnpackError::Member { path: entry.path.to_vec(), error };
        add(fs, &entry).map_err(failed)?;
        unpacked.members += 1;
        unpacked.bytes += entry.data.len() as u64;
    }
    Ok(unpacked)
}

fn add(fs: &mut FileSystem, entry: &Entry<'_>) -> Result<(), Errno> {
    let kind = entry.kind().ok_or(Errno::EINVAL)?;
    let components: alloc::vec::Vec<&[u8]> =
        entry.path.split(|&byte| byte == b'/').filter(|part| !part.is_empty() && *part != b".").collect();
    if components.iter().any(|part| *part == b"..") {
        return Err(Errno::EINVAL);
    }
    let Some((name, parents)) = components.split_last() else {
        // The root itself (`.` or `/`).
        return if kind == FileType::Directory {
            fs.set_permissions(ROOT, entry.permissions())
        } else {
            Err(Errno::EEXIST)
        };
    };
    let mut directory: InodeId = ROOT;
    for part in parents {
        directory = match fs.lookup(directory, part) {
            Ok(existing) if fs.kind(existing)? == FileType::Directory => existing,
            Ok(_) => return Err(Errno::ENOTDIR),
            Err(Errno::ENOENT) => fs.create(directory, part, NewNode::Directory, 0o755)?,
            Err(error) => return Err(error),
        };
    }
    if let Ok(existing) = fs.lookup(directory, name) {
        let existing_kind = fs.kind(existing)?;
        if existing_kind == FileType::Directory && kind == FileType::Directory {
            return fs.set_permissions(existing, entry.permissions());
        }
        fs.remove(directory, name, existing_kind == FileType::Directory)?;
    }
    let node = match kind {
        FileType::Regular => NewNode::FileWith(entry.data),
        FileType::Directory => NewNode::Directory,
        FileType::Symlink => NewNode::Symlink(entry.data),
        special => NewNode::Special(special, entry.rdev),
    };
    let id = fs.create(directory, name, node, entry.permissions())?;
    fs.set_owner(id, entry.uid, entry.gid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::cpio::tests::member;
    use crate::fs::path::{resolve, Follow};
    use alloc::vec::Vec;

    fn archive(members: &[(&str, u32, &[u8])]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for (path, mode, data) in members {
            member(&mut bytes, path, *mode, data);
        }
        member(&mut bytes, "TRAILER!!!", 0, b"");
        bytes
    }

    #[test]
    fn an_archive_becomes_a_tree() {
        let bytes = archive(&[
            (".", 0o040_700, b""),
            ("./bin/busybox", 0o100_755, b"\x7fELF"),
            ("bin/sh", 0o120_777, b"busybox"),
            ("/dev/null", 0o020_666, b""),
            ("etc", 0o040_755, b""),
            ("etc/rc", 0o100_644, b"old"),
            ("etc/rc", 0o100_644, b"new"),
        ]);
        let mut fs = FileSystem::new(1 << 20);
        let unpacked = unpack(&mut fs, &bytes).unwrap();
        assert_eq!(unpacked.members, 7);
        assert_eq!(fs.metadata(ROOT).unwrap().permissions, 0o700);
        let sh = resolve(&fs, ROOT, b"/bin/sh", Follow::Yes).unwrap();
        assert_eq!(fs.metadata(sh).unwrap().permissions, 0o755);
        let null = resolve(&fs, ROOT, b"/dev/null", Follow::Yes).unwrap();
        assert_eq!(fs.metadata(null).unwrap().kind, FileType::CharDevice);
        assert_eq!(fs.metadata(null).unwrap().rdev, (1, 3));
        let rc = resolve(&fs, ROOT, b"/etc/rc", Follow::Yes).unwrap();
        let mut contents = [0u8; 8];
        assert_eq!(fs.read(rc, 0, &mut contents), Ok(3));
        assert_eq!(&contents[..3], b"new", "the later member wins");
    }

    #[test]
    fn escaping_and_odd_members_are_refused() {
        let mut fs = FileSystem::new(1 << 20);
        let error = unpack(&mut fs, &archive(&[("../evil", 0o100_644, b"")])).unwrap_err();
        assert_eq!(error, UnpackError::Member { path: b"../evil".to_vec(), error: Errno::EINVAL });
        let error = unpack(&mut fs, &archive(&[("odd", 0o000_644, b"")])).unwrap_err();
        assert!(matches!(error, UnpackError::Member { error: Errno::EINVAL, .. }));
        let error = unpack(&mut fs, &archive(&[("f", 0o100_644, b""), ("f/g", 0o100_644, b"")])).unwrap_err();
        assert!(matches!(error, UnpackError::Member { error: Errno::ENOTDIR, .. }));
        assert!(matches!(unpack(&mut fs, b"garbage"), Err(UnpackError::Archive(_))));
        let mut small = FileSystem::new(1024);
        let error = unpack(&mut small, &archive(&[("big", 0o100_644, &[0u8; 4096])])).unwrap_err();
        assert!(matches!(error, UnpackError::Member { error: Errno::ENOSPC, .. }));
    }
}
