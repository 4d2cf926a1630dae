//! Path resolution: from a path and a working directory to an inode, as Linux's
//! `path_lookup` does for the cases a single-root file system has.
//!
//! Absolute paths start at the root, relative ones at the working directory; `.` and `..`
//! are directory entries; repeated slashes are one; a symbolic link in the middle of a
//! path is always followed, the last one only when the caller asks (`stat` does, `lstat`
//! does not), and a trailing slash demands a directory (and follows a final link). More
//! than [`SYMLINK_LIMIT`] links on one walk is ELOOP; paths longer than [`PATH_MAX`]
//! ENAMETOOLONG; an empty path ENOENT.
//!
//! The walk is written once, over a [`Namespace`]: the file system alone, or the file
//! system with other trees mounted in it (`/proc`).

use alloc::borrow::Cow;
use alloc::vec::Vec;

use super::tree::{FileSystem, InodeId, ROOT};
use super::FileType;
use crate::linux::Errno;

/// A tree of named nodes that paths walk.
pub trait Namespace {
    /// A node of the tree.
    type Node: Copy + PartialEq;

    /// Where absolute paths start.
    fn root(&self) -> Self::Node;

    /// The entry `name` of `directory` (`.` and `..` included); ENOTDIR if `directory`
    /// is not one.
    fn lookup(&self, directory: Self::Node, name: &[u8]) -> Result<Self::Node, Errno>;

    /// The kind of `node`.
    fn kind(&self, node: Self::Node) -> Result<FileType, Errno>;

    /// A symbolic link's target (EINVAL for anything else).
    fn link_target(&self, node: Self::Node) -> Result<Cow<'_, [u8]>, Errno>;
}

impl Namespace for FileSystem {
    type Node = InodeId;

    fn root(&self) -> InodeId {
        ROOT
    }

    fn lookup(&self, directory: InodeId, name: &[u8]) -> Result<InodeId, Errno> {
        FileSystem::lookup(self, directory, name)
    }

    fn kind(&self, node: InodeId) -> Result<FileType, Errno> {
        FileSystem::kind(self, node)
    }

    fn link_target(&self, node: InodeId) -> Result<Cow<'_, [u8]>, Errno> {
        FileSystem::link_target(self, node).map(Cow::Borrowed)
    }
}

/// The longest path, NUL included (Linux's `PATH_MAX`).
pub const PATH_MAX: usize = linux_raw_sys::general::PATH_MAX as usize;

/// Symbolic links followed in one resolution before ELOOP (Linux's limit).
pub const SYMLINK_LIMIT: usize = 40;

/// Whether the last component's symbolic link is followed.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Follow {
    /// Follow it (`open`, `stat`, `execve`).
    Yes,
    /// Name the link itself (`lstat`, `readlink`, `unlink`).
    No,
}

/// Resolves `path` from `cwd`.
pub fn resolve<N: Namespace + ?Sized>(fs: &N, cwd: N::Node, path: &[u8], follow: Follow) -> Result<N::Node, Errno> {
    check_length(path)?;
    let mut pending: Vec<u8> = path.to_vec();
    let mut current = if path.starts_with(b"/") { fs.root() } else { cwd };
    let mut links = 0;
    let mut position = 0;
    loop {
        while pending.get(position) == Some(&b'/') {
            position += 1;
        }
        if position == pending.len() {
            // The path ended (perhaps after a trailing slash, which lookup of the
            // previous component already required to be a directory).
            return Ok(current);
        }
        let end = pending[position..].iter().position(|&byte| byte == b'/').map_or(pending.len(), |at| position + at);
        let trailing_slash = end < pending.len();
        let is_last = pending[end..].iter().all(|&byte| byte == b'/');
        let next = fs.lookup(current, &pending[position..end])?;
        let kind = fs.kind(next)?;
        if kind == FileType::Symlink && (!is_last || trailing_slash || follow == Follow::Yes) {
            links += 1;
            if links > SYMLINK_LIMIT {
                return Err(Errno::ELOOP);
            }
            let target = fs.link_target(next)?;
            if target.is_empty() {
                return Err(Errno::ENOENT);
            }
            let mut rewritten = Vec::with_capacity(target.len() + 1 + pending.len() - end);
            rewritten.extend_from_slice(&target);
            rewritten.extend_from_slice(&pending[end..]);
            check_length(&rewritten)?;
            if target.starts_with(b"/") {
                current = fs.root();
            }
            pending = rewritten;
            position = 0;
            continue;
        }
        if trailing_slash && is_last && kind != FileType::Directory {
            return Err(Errno::ENOTDIR);
        }
        current = next;
        position = end;
    }
}

/// Where `path`'s last component would go: its directory (resolved, following links),
/// the last component's name, and whether the path ended in a slash. The root's own
/// path (`/`) gives the root and `.`.
pub fn resolve_parent<'p, N: Namespace + ?Sized>(
    fs: &N,
    cwd: N::Node,
    path: &'p [u8],
) -> Result<(N::Node, &'p [u8], bool), Errno> {
    check_length(path)?;
    let trimmed_length = path.iter().rposition(|&byte| byte != b'/').map_or(0, |at| at + 1);
    let trailing_slash = trimmed_length < path.len();
    let trimmed = &path[..trimmed_length];
    if trimmed.is_empty() {
        return Ok((fs.root(), b".", trailing_slash));
    }
    let (parent_path, name): (&[u8], &[u8]) = match trimmed.iter().rposition(|&byte| byte == b'/') {
        Some(at) => (if at == 0 { b"/" } else { &trimmed[..at] }, &trimmed[at + 1..]),
        None => (b".", trimmed),
    };
    let directory = resolve(fs, cwd, parent_path, Follow::Yes)?;
    if fs.kind(directory)? != FileType::Directory {
        return Err(Errno::ENOTDIR);
    }
    Ok((directory, name, trailing_slash))
}

fn check_length(path: &[u8]) -> Result<(), Errno> {
    match path.len() {
        0 => Err(Errno::ENOENT),
        length if length >= PATH_MAX => Err(Errno::ENAMETOOLONG),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::tree::NewNode;

    /// /bin/busybox, /bin/sh -> busybox, /usr/bin -> /bin, /etc/rc, /loop -> loop,
    /// /dir-link -> bin/
    fn tree() -> (FileSystem, InodeId, InodeId) {
        let mut fs = FileSystem::new(1 << 20);
        let bin = fs.create(ROOT, b"bin", NewNode::Directory, 0o755).unwrap();
        let busybox = fs.create(bin, b"busybox", NewNode::FileWith(b"\x7fELF"), 0o755).unwrap();
        fs.create(bin, b"sh", NewNode::Symlink(b"busybox"), 0o777).unwrap();
        let usr = fs.create(ROOT, b"usr", NewNode::Directory, 0o755).unwrap();
        fs.create(usr, b"bin", NewNode::Symlink(b"/bin"), 0o777).unwrap();
        let etc = fs.create(ROOT, b"etc", NewNode::Directory, 0o755).unwrap();
        fs.create(etc, b"rc", NewNode::FileWith(b"echo"), 0o755).unwrap();
        fs.create(ROOT, b"loop", NewNode::Symlink(b"loop"), 0o777).unwrap();
        fs.create(ROOT, b"dir-link", NewNode::Symlink(b"bin/"), 0o777).unwrap();
        (fs, bin, busybox)
    }

    #[test]
    fn paths_resolve_through_dots_slashes_and_links() {
        let (fs, bin, busybox) = tree();
        for path in [&b"/bin/busybox"[..], b"//bin///busybox", b"/bin/./busybox", b"/etc/../bin/busybox", b"/bin/sh"] {
            assert_eq!(resolve(&fs, ROOT, path, Follow::Yes), Ok(busybox), "{}", String::from_utf8_lossy(path));
        }
        assert_eq!(resolve(&fs, bin, b"sh", Follow::Yes), Ok(busybox), "relative to the working directory");
        assert_eq!(resolve(&fs, bin, b"../usr/bin/sh", Follow::Yes), Ok(busybox), "a link to an absolute path");
        assert_eq!(resolve(&fs, ROOT, b"/..", Follow::Yes), Ok(ROOT));
        assert_eq!(resolve(&fs, ROOT, b"/dir-link/busybox", Follow::Yes), Ok(busybox));
        let link = resolve(&fs, ROOT, b"/bin/sh", Follow::No).unwrap();
        assert_eq!(fs.kind(link), Ok(FileType::Symlink), "lstat names the link");
        assert_eq!(resolve(&fs, ROOT, b"/usr/bin/", Follow::No), Ok(bin), "a trailing slash follows the last link");
    }

    #[test]
    fn bad_paths_get_linux_errors() {
        let (fs, _, _) = tree();
        assert_eq!(resolve(&fs, ROOT, b"", Follow::Yes), Err(Errno::ENOENT));
        assert_eq!(resolve(&fs, ROOT, b"/nope", Follow::Yes), Err(Errno::ENOENT));
        assert_eq!(resolve(&fs, ROOT, b"/bin/busybox/x", Follow::Yes), Err(Errno::ENOTDIR));
        assert_eq!(resolve(&fs, ROOT, b"/bin/busybox/", Follow::Yes), Err(Errno::ENOTDIR));
        assert_eq!(resolve(&fs, ROOT, b"/loop", Follow::Yes), Err(Errno::ELOOP));
        assert!(resolve(&fs, ROOT, b"/loop", Follow::No).is_ok());
        let long = alloc::vec![b'a'; PATH_MAX];
        assert_eq!(resolve(&fs, ROOT, &long, Follow::Yes), Err(Errno::ENAMETOOLONG));
        let mut name = b"/".to_vec();
        name.extend([b'n'; 256]);
        assert_eq!(resolve(&fs, ROOT, &name, Follow::Yes), Err(Errno::ENAMETOOLONG));
    }

    #[test]
    fn parents_are_found_for_creating_and_removing() {
        let (fs, bin, _) = tree();
        assert_eq!(resolve_parent(&fs, ROOT, b"/bin/new"), Ok((bin, &b"new"[..], false)));
        assert_eq!(resolve_parent(&fs, bin, b"new/"), Ok((bin, &b"new"[..], true)));
        assert_eq!(resolve_parent(&fs, ROOT, b"/usr/bin/x"), Ok((bin, &b"x"[..], false)), "links in the parent");
        assert_eq!(resolve_parent(&fs, ROOT, b"top"), Ok((ROOT, &b"top"[..], false)));
        assert_eq!(resolve_parent(&fs, ROOT, b"/"), Ok((ROOT, &b"."[..], true)));
        assert_eq!(resolve_parent(&fs, ROOT, b"/nope/x"), Err(Errno::ENOENT));
        assert_eq!(resolve_parent(&fs, ROOT, b"/bin/busybox/x"), Err(Errno::ENOTDIR));
    }
}
