//! Writing cpio archives in the "newc" format (magic `070701`), which guest-kernel unpacks
//! as its initramfs (`guest_kernel_core::fs::cpio` reads it; the tests here check the two
//! agree).
//!
//! Each member: the magic and thirteen 8-digit upper-case hexadecimal fields (inode, mode,
//! uid, gid, link count, mtime, size, the archive's device, the file's device, name size
//! with its NUL, checksum 0), the NUL-terminated path padded to 4 bytes, the data padded to
//! 4 bytes; `TRAILER!!!` ends the archive. Every member is owned by root with modification
//! time 0, so the same inputs give the same bytes.

use crate::{Error, Result};

/// What a member is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Directory,
    /// A regular file with these contents.
    File(Vec<u8>),
    /// A symbolic link to this target.
    Symlink(String),
}

/// One member: its path (relative, `bin/sh`), kind and permission bits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// The path inside the archive, without a leading `/`.
    pub path: String,
    /// What it is.
    pub kind: Kind,
    /// Permission bits (with set-id and sticky bits), 0o7777 at most.
    pub permissions: u32,
}

impl Node {
    /// A directory.
    pub fn directory(path: &str, permissions: u32) -> Node {
        Node { path: path.to_string(), kind: Kind::Directory, permissions }
    }

    /// A regular file.
    pub fn file(path: &str, contents: Vec<u8>, permissions: u32) -> Node {
        Node { path: path.to_string(), kind: Kind::File(contents), permissions }
    }

    /// A symbolic link (permissions 0777, as Linux gives every link).
    pub fn symlink(path: &str, target: &str) -> Node {
        Node { path: path.to_string(), kind: Kind::Symlink(target.to_string()), permissions: 0o777 }
    }

    fn mode(&self) -> u32 {
        let kind = match self.kind {
            Kind::Directory => 0o040_000,
            Kind::File(_) => 0o100_000,
            Kind::Symlink(_) => 0o120_000,
        };
        kind | self.permissions
    }

    fn data(&self) -> &[u8] {
        match &self.kind {
            Kind::Directory => &[],
            Kind::File(contents) => contents,
            Kind::Symlink(target) => target.as_bytes(),
        }
    }
}

const TRAILER: &str = "TRAILER!!!";

fn pad4(archive: &mut Vec<u8>) {
    while !archive.len().is_multiple_of(4) {
        archive.push(0);
    }
}

fn append(archive: &mut Vec<u8>, inode: u32, mode: u32, links: u32, path: &str, data: &[u8]) -> Result<()> {
    let size = u32::try_from(data.len())
        .map_err(|_| Error::failed(format!("initramfs member {path} is {} bytes, over cpio's 4 GiB", data.len())))?;
    let name_size = u32::try_from(path.len() + 1).map_err(|_| Error::failed(format!("path too long: {path}")))?;
    archive.extend_from_slice(b"070701");
    for field in [inode, mode, 0, 0, links, 0, size, 0, 0, 0, 0, name_size, 0] {
        archive.extend_from_slice(format!("{field:08X}").as_bytes());
    }
    archive.extend_from_slice(path.as_bytes());
    archive.push(0);
    pad4(archive);
    archive.extend_from_slice(data);
    pad4(archive);
    Ok(())
}

/// Checks that `path` can name a member: relative, no empty, `.` or `..` component, no NUL.
fn check_path(path: &str) -> Result<()> {
    let bad = path.is_empty()
        || path.starts_with('/')
        || path.contains('\0')
        || path.split('/').any(|part| part.is_empty() || part == "." || part == "..")
        || path == TRAILER;
    if bad {
        return Err(Error::failed(format!("{path:?} cannot be an initramfs path (relative, no empty, . or .. parts)")));
    }
    Ok(())
}

/// The archive of `nodes`, in order (a directory must come before what it holds, which
/// guest-kernel does not need but Linux's unpacker does for permissions).
pub fn write(nodes: &[Node]) -> Result<Vec<u8>> {
    let mut archive = Vec::new();
    let mut paths = std::collections::BTreeSet::new();
    for (index, node) in nodes.iter().enumerate() {
        check_path(&node.path)?;
        if node.permissions > 0o7777 {
            return Err(Error::failed(format!("{}: permissions {:o} are not mode bits", node.path, node.permissions)));
        }
        if !paths.insert(node.path.as_str()) {
            return Err(Error::failed(format!("{} is in the initramfs twice", node.path)));
        }
        let links = if node.kind == Kind::Directory { 2 } else { 1 };
        let inode = u32::try_from(index + 1).map_err(|_| Error::failed("too many initramfs members"))?;
        append(&mut archive, inode, node.mode(), links, &node.path, node.data())?;
    }
    append(&mut archive, 0, 0, 1, TRAILER, &[])?;
    Ok(archive)
}

#[cfg(test)]
mod tests {
    use super::*;
    use guest_kernel_core::fs::cpio::Archive;
    use guest_kernel_core::fs::initramfs::unpack;
    use guest_kernel_core::fs::path::{resolve, Follow};
    use guest_kernel_core::fs::tree::{FileSystem, ROOT};
    use guest_kernel_core::fs::FileType;

    fn sample() -> Vec<Node> {
        vec![
            Node::directory("bin", 0o755),
            Node::file("bin/busybox", b"\x7fELF five".to_vec(), 0o755),
            Node::symlink("bin/sh", "/bin/busybox"),
            Node::directory("tmp", 0o1777),
            Node::file("etc-empty", Vec::new(), 0o644),
            Node::file("odd", vec![7; 13], 0o600),
        ]
    }

    #[test]
    fn the_kernels_reader_reads_back_what_was_written() {
        let bytes = write(&sample()).unwrap();
        assert_eq!(bytes.len() % 4, 0);
        let entries: Vec<_> = Archive::new(&bytes).collect::<std::result::Result<_, _>>().unwrap();
        assert_eq!(entries.len(), sample().len(), "the trailer ends the archive");
        for (entry, node) in entries.iter().zip(sample()) {
            assert_eq!(entry.path, node.path.as_bytes());
            assert_eq!(entry.data, node.data());
            assert_eq!(entry.permissions(), node.permissions);
            assert_eq!((entry.uid, entry.gid, entry.mtime), (0, 0, 0));
            let kind = match node.kind {
                Kind::Directory => FileType::Directory,
                Kind::File(_) => FileType::Regular,
                Kind::Symlink(_) => FileType::Symlink,
            };
            assert_eq!(entry.kind(), Some(kind), "{}", node.path);
        }
    }

    #[test]
    fn the_kernels_unpacker_builds_the_tree() {
        let bytes = write(&sample()).unwrap();
        let mut fs = FileSystem::new(1 << 20);
        let unpacked = unpack(&mut fs, &bytes).unwrap();
        assert_eq!(unpacked.members, sample().len());
        let sh = resolve(&fs, ROOT, b"/bin/sh", Follow::Yes).unwrap();
        let mut contents = [0u8; 16];
        let count = fs.read(sh, 0, &mut contents).unwrap();
        assert_eq!(&contents[..count], b"\x7fELF five", "the link leads to busybox");
        let tmp = resolve(&fs, ROOT, b"/tmp", Follow::Yes).unwrap();
        assert_eq!(fs.metadata(tmp).unwrap().permissions, 0o1777);
    }

    #[test]
    fn the_same_nodes_give_the_same_bytes() {
        assert_eq!(write(&sample()).unwrap(), write(&sample()).unwrap());
        // The header as `cpio -H newc` writes it: magic, then upper-case hexadecimal.
        let bytes = write(&[Node::file("abc", b"xyz".to_vec(), 0o644)]).unwrap();
        assert_eq!(&bytes[..6 + 16], b"07070100000001000081A4");
        assert_eq!(&bytes[110..120], b"abc\0\0\0xyz\0", "path and data each padded to 4 bytes");
    }

    #[test]
    fn bad_members_are_refused() {
        for path in ["", "/bin", "a//b", "a/./b", "../x", "a/..", "TRAILER!!!", "nul\0"] {
            assert!(write(&[Node::directory(path, 0o755)]).is_err(), "{path:?}");
        }
        assert!(write(&[Node::directory("a", 0o10000)]).is_err());
        let twice = write(&[Node::directory("a", 0o755), Node::file("a", Vec::new(), 0o644)]);
        assert_eq!(twice.unwrap_err().message, "a is in the initramfs twice");
    }
}
