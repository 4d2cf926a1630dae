//! The one tree paths walk: the in-memory file system with `/proc` mounted on its `/proc`
//! directory.
//!
//! A [`Location`] is a node of either. Walking into the mount point lands on `/proc`'s
//! root, and `..` from there climbs back into the file system, so `/proc/../bin` and a
//! symbolic link into `/proc` resolve as on Linux; the walk itself is
//! [`crate::fs::path::resolve`].

use alloc::borrow::Cow;
use alloc::vec::Vec;

use super::proc::{ProcNode, ProcessInfo};
use crate::fs::path::{Namespace, PATH_MAX};
use crate::fs::tree::{FileSystem, InodeId, Metadata, ROOT};
use crate::fs::FileType;
use crate::linux::Errno;
use crate::process_tree::Pid;

/// A node of the tree.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// An inode of the file system (never the mount point itself: that is `/proc`).
    Inode(InodeId),
    /// A node of `/proc`.
    Proc(ProcNode),
}

/// The tree as one calling process sees it (`/proc/self` is the caller).
pub(crate) struct View<'a> {
    /// The file system.
    pub fs: &'a FileSystem,
    /// The directory `/proc` is mounted on.
    pub mount: InodeId,
    /// The kernel's processes.
    pub processes: &'a dyn ProcessInfo,
    /// The calling process.
    pub caller: Pid,
}

impl View<'_> {
    fn enter(&self, id: InodeId) -> Location {
        if id == self.mount {
            Location::Proc(ProcNode::Root)
        } else {
            Location::Inode(id)
        }
    }

    /// What `stat` says of `location`.
    pub fn metadata(&self, location: Location, now_ns: u64) -> Result<Metadata, Errno> {
        match location {
            Location::Inode(id) => self.fs.metadata(id),
            Location::Proc(node) => node.metadata(self.processes, now_ns),
        }
    }

    /// The absolute path of directory `location` (`getcwd`): ENOENT if it was removed,
    /// ENAMETOOLONG past `PATH_MAX`.
    pub fn path_of(&self, location: Location) -> Result<Vec<u8>, Errno> {
        let (mut id, tail) = match location {
            Location::Inode(id) => (id, Vec::new()),
            Location::Proc(node) => (self.mount, node.path().into_bytes()),
        };
        // Names from the bottom up, joined in reverse at the end.
        let mut names: Vec<&[u8]> = Vec::new();
        let mut length = tail.len();
        while id != ROOT {
            let parent = self.fs.lookup(id, b"..")?;
            let name = self.fs.name_of(parent, id).ok_or(Errno::ENOENT)?;
            length += name.len() + 1;
            if length >= PATH_MAX {
                return Err(Errno::ENAMETOOLONG);
            }
            names.push(name);
            id = parent;
        }
        let mut path = Vec::with_capacity(length + 1);
        for name in names.iter().rev() {
            path.push(b'/');
            path.extend_from_slice(name);
        }
        path.extend_from_slice(&tail);
        if path.is_empty() {
            path.push(b'/');
        }
        Ok(path)
    }
}

impl Namespace for View<'_> {
    type Node = Location;

    fn root(&self) -> Location {
        Location::Inode(ROOT)
    }

    fn lookup(&self, directory: Location, name: &[u8]) -> Result<Location, Errno> {
        match directory {
            Location::Inode(id) => self.fs.lookup(id, name).map(|child| self.enter(child)),
            Location::Proc(ProcNode::Root) if name == b".." => self.fs.lookup(self.mount, b"..").map(Location::Inode),
            Location::Proc(node) => node.lookup(name, self.processes).map(Location::Proc),
        }
    }

    fn kind(&self, node: Location) -> Result<FileType, Errno> {
        match node {
            Location::Inode(id) => self.fs.kind(id),
            Location::Proc(node) => node.kind(self.processes),
        }
    }

    fn link_target(&self, node: Location) -> Result<Cow<'_, [u8]>, Errno> {
        match node {
            Location::Inode(id) => self.fs.link_target(id).map(Cow::Borrowed),
            Location::Proc(node) => node.link_target(self.caller),
        }
    }
}
