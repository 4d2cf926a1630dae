//! The in-memory file system: inodes in a table, directories as sorted maps of names,
//! file contents in memory. The initramfs is unpacked into it and it stays writable.
//!
//! Everyone is root here (the kernel has one user), so permission bits are kept and
//! reported but not enforced, except that `execve` needs an execute bit (checked by exec).
//! An inode lives while a directory entry or an open file holds it: [`FileSystem::hold`]
//! and [`FileSystem::release`] count open files, so an unlinked file stays readable
//! through a descriptor, as on Linux. Space is bounded by a byte budget given at creation
//! (ENOSPC past it), so a process cannot take the kernel's memory through files.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use super::file_type::{FileType, PERMISSION_MASK};
use crate::linux::Errno;

/// An inode's number (its index in the table; reused after the inode is freed).
pub type InodeId = usize;

/// The longest name of one directory entry (Linux's `NAME_MAX`).
pub const NAME_MAX: usize = linux_raw_sys::general::NAME_MAX as usize;

/// Bytes an inode costs against the budget besides its contents.
const INODE_COST: u64 = 128;

/// What an inode is.
#[derive(Clone, Debug)]
enum Content {
    File(Vec<u8>),
    Directory {
        entries: BTreeMap<Vec<u8>, InodeId>,
        parent: InodeId,
    },
    Symlink(Vec<u8>),
    /// A device or FIFO node: the kernel's drivers give it meaning.
    Special {
        kind: FileType,
        rdev: (u32, u32),
    },
}

#[derive(Clone, Debug)]
struct Inode {
    content: Content,
    permissions: u32,
    uid: u32,
    gid: u32,
    links: u32,
    open: u32,
    modified_ns: u64,
    changed_ns: u64,
}

impl Inode {
    fn kind(&self) -> FileType {
        match &self.content {
            Content::File(_) => FileType::Regular,
            Content::Directory { .. } => FileType::Directory,
            Content::Symlink(_) => FileType::Symlink,
            Content::Special { kind, .. } => *kind,
        }
    }

    fn size(&self) -> u64 {
        match &self.content {
            Content::File(bytes) | Content::Symlink(bytes) => bytes.len() as u64,
            Content::Directory { entries, .. } => entries.len() as u64,
            Content::Special { .. } => 0,
        }
    }
}

/// What `stat` reports of an inode.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Metadata {
    /// Inode number (its id plus one: 0 is not a valid inode number for user space).
    pub inode: u64,
    /// The kind of file.
    pub kind: FileType,
    /// Permission bits.
    pub permissions: u32,
    /// Hard links.
    pub links: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes (entries for a directory).
    pub size: u64,
    /// Device number of a device node.
    pub rdev: (u32, u32),
    /// Last modification, ns since 1970.
    pub modified_ns: u64,
    /// Last status change, ns since 1970.
    pub changed_ns: u64,
}

impl Metadata {
    /// The full mode: type bits and permission bits.
    pub fn mode(&self) -> u32 {
        self.kind.mode_bits() | self.permissions
    }
}

/// A directory entry as `getdents64` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryEntry {
    /// Its name.
    pub name: Vec<u8>,
    /// The inode it names.
    pub inode: InodeId,
    /// The inode's kind.
    pub kind: FileType,
}

/// What a new inode is to be.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum NewNode<'a> {
    /// An empty regular file.
    File,
    /// A regular file with these contents (unpacking the initramfs).
    FileWith(&'a [u8]),
    /// An empty directory.
    Directory,
    /// A symbolic link to this target.
    Symlink(&'a [u8]),
    /// A device or FIFO node.
    Special(FileType, (u32, u32)),
}

/// The file system.
pub struct FileSystem {
    inodes: Vec<Option<Inode>>,
    free: Vec<InodeId>,
    used: u64,
    budget: u64,
    now_ns: u64,
}

/// The root directory's inode.
pub const ROOT: InodeId = 0;

impl FileSystem {
    /// An empty file system (a root directory, mode 0755) that may hold `budget` bytes.
    pub fn new(budget: u64) -> FileSystem {
        let root = Inode {
            content: Content::Directory { entries: BTreeMap::new(), parent: ROOT },
            permissions: 0o755,
            uid: 0,
            gid: 0,
            links: 2,
            open: 0,
            modified_ns: 0,
            changed_ns: 0,
        };
        FileSystem { inodes: alloc::vec![Some(root)], free: Vec::new(), used: INODE_COST, budget, now_ns: 0 }
    }

    /// Sets the time the next changes are stamped with.
    pub fn set_now(&mut self, now_ns: u64) {
        self.now_ns = now_ns;
    }

    /// Bytes in use and the budget.
    pub fn usage(&self) -> (u64, u64) {
        (self.used, self.budget)
    }

    fn inode(&self, id: InodeId) -> Result<&Inode, Errno> {
        self.inodes.get(id).and_then(Option::as_ref).ok_or(Errno::ENOENT)
    }

    fn inode_mut(&mut self, id: InodeId) -> Result<&mut Inode, Errno> {
        self.inodes.get_mut(id).and_then(Option::as_mut).ok_or(Errno::ENOENT)
    }

    fn charge(&mut self, bytes: u64) -> Result<(), Errno> {
        let used = self.used.checked_add(bytes).filter(|&used| used <= self.budget).ok_or(Errno::ENOSPC)?;
        self.used = used;
        Ok(())
    }

    fn refund(&mut self, bytes: u64) {
        self.used = self.used.saturating_sub(bytes);
    }

    /// What `stat` says of `id`.
    pub fn metadata(&self, id: InodeId) -> Result<Metadata, Errno> {
        let inode = self.inode(id)?;
        let rdev = match inode.content {
            Content::Special { rdev, .. } => rdev,
            _ => (0, 0),
        };
        Ok(Metadata {
            inode: id as u64 + 1,
            kind: inode.kind(),
            permissions: inode.permissions,
            links: inode.links,
            uid: inode.uid,
            gid: inode.gid,
            size: inode.size(),
            rdev,
            modified_ns: inode.modified_ns,
            changed_ns: inode.changed_ns,
        })
    }

    /// Sets `id`'s permission bits (`chmod`).
    pub fn set_permissions(&mut self, id: InodeId, permissions: u32) -> Result<(), Errno> {
        let now = self.now_ns;
        let inode = self.inode_mut(id)?;
        inode.permissions = permissions & PERMISSION_MASK;
        inode.changed_ns = now;
        Ok(())
    }

    /// Sets `id`'s owner and group (`chown`).
    pub fn set_owner(&mut self, id: InodeId, uid: u32, gid: u32) -> Result<(), Errno> {
        let now = self.now_ns;
        let inode = self.inode_mut(id)?;
        inode.uid = uid;
        inode.gid = gid;
        inode.changed_ns = now;
        Ok(())
    }

    /// The kind of `id`.
    pub fn kind(&self, id: InodeId) -> Result<FileType, Errno> {
        Ok(self.inode(id)?.kind())
    }

    /// The entry `name` of directory `directory` (`.` and `..` included).
    pub fn lookup(&self, directory: InodeId, name: &[u8]) -> Result<InodeId, Errno> {
        let Content::Directory { entries, parent } = &self.inode(directory)?.content else {
            return Err(Errno::ENOTDIR);
        };
        match name {
            b"." => Ok(directory),
            b".." => Ok(*parent),
            _ if name.len() > NAME_MAX => Err(Errno::ENAMETOOLONG),
            _ => entries.get(name).copied().ok_or(Errno::ENOENT),
        }
    }

    /// A symbolic link's target.
    pub fn link_target(&self, id: InodeId) -> Result<&[u8], Errno> {
        match &self.inode(id)?.content {
            Content::Symlink(target) => Ok(target),
            _ => Err(Errno::EINVAL),
        }
    }

    fn check_new_name(name: &[u8]) -> Result<(), Errno> {
        if name.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0) {
            return Err(Errno::EEXIST);
        }
        Ok(())
    }

    /// Creates `name` in `directory`; EEXIST if the name is taken.
    pub fn create(
        &mut self,
        directory: InodeId,
        name: &[u8],
        node: NewNode<'_>,
        permissions: u32,
    ) -> Result<InodeId, Errno> {
        Self::check_new_name(name)?;
        match self.lookup(directory, name) {
            Ok(_) => return Err(Errno::EEXIST),
            Err(Errno::ENOENT) => {}
            Err(error) => return Err(error),
        }
        let (content, links, size) = match node {
            NewNode::File => (Content::File(Vec::new()), 1, 0),
            NewNode::FileWith(bytes) => (Content::File(Vec::new()), 1, bytes.len()),
            NewNode::Directory => (Content::Directory { entries: BTreeMap::new(), parent: directory }, 2, 0),
            NewNode::Symlink(target) => (Content::Symlink(Vec::new()), 1, target.len()),
            NewNode::Special(kind, rdev) => (Content::Special { kind, rdev }, 1, 0),
        };
        let cost = INODE_COST + name.len() as u64 + size as u64;
        self.charge(cost)?;
        let mut content = content;
        let filled = match (&mut content, node) {
            (Content::File(bytes), NewNode::FileWith(data)) | (Content::Symlink(bytes), NewNode::Symlink(data)) => {
                bytes.try_reserve_exact(data.len()).map(|()| bytes.extend_from_slice(data))
            }
            _ => Ok(()),
        };
        if filled.is_err() {
            self.refund(cost);
            return Err(Errno::ENOMEM);
        }
        let now = self.now_ns;
        let inode = Inode {
            content,
            permissions: permissions & PERMISSION_MASK,
            uid: 0,
            gid: 0,
            links,
            open: 0,
            modified_ns: now,
            changed_ns: now,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.inodes[id] = Some(inode);
                id
            }
            None => {
                self.inodes.push(Some(inode));
                self.inodes.len() - 1
            }
        };
        let is_directory = matches!(node, NewNode::Directory);
        let parent = self.inode_mut(directory)?;
        if let Content::Directory { entries, .. } = &mut parent.content {
            entries.insert(name.to_vec(), id);
        }
        if is_directory {
            parent.links += 1;
        }
        parent.modified_ns = now;
        parent.changed_ns = now;
        Ok(id)
    }

    /// Another name for an existing non-directory (`link`).
    pub fn link(&mut self, target: InodeId, directory: InodeId, name: &[u8]) -> Result<(), Errno> {
        if self.kind(target)? == FileType::Directory {
            return Err(Errno::EPERM);
        }
        Self::check_new_name(name)?;
        if self.lookup(directory, name).is_ok() {
            return Err(Errno::EEXIST);
        }
        self.charge(name.len() as u64)?;
        let now = self.now_ns;
        if let Content::Directory { entries, .. } = &mut self.inode_mut(directory)?.content {
            entries.insert(name.to_vec(), target);
        }
        let inode = self.inode_mut(target)?;
        inode.links += 1;
        inode.changed_ns = now;
        Ok(())
    }

    /// Removes the entry `name` from `directory`: a non-directory (`unlink`, EISDIR for a
    /// directory) or an empty directory (`rmdir`: ENOTDIR for anything else, ENOTEMPTY).
    pub fn remove(&mut self, directory: InodeId, name: &[u8], want_directory: bool) -> Result<(), Errno> {
        if name == b"." || name == b".." {
            return Err(if want_directory { Errno::EINVAL } else { Errno::EISDIR });
        }
        let id = self.lookup(directory, name)?;
        let inode = self.inode(id)?;
        match (&inode.content, want_directory) {
            (Content::Directory { entries, .. }, true) if !entries.is_empty() => return Err(Errno::ENOTEMPTY),
            (Content::Directory { .. }, true) => {}
            (Content::Directory { .. }, false) => return Err(Errno::EISDIR),
            (_, true) => return Err(Errno::ENOTDIR),
            (_, false) => {}
        }
        let now = self.now_ns;
        let parent = self.inode_mut(directory)?;
        if let Content::Directory { entries, .. } = &mut parent.content {
            entries.remove(name);
        }
        if want_directory {
            parent.links -= 1;
        }
        parent.modified_ns = now;
        parent.changed_ns = now;
        self.refund(name.len() as u64);
        let inode = self.inode_mut(id)?;
        inode.links = if want_directory { 0 } else { inode.links - 1 };
        inode.changed_ns = now;
        self.free_if_unused(id);
        Ok(())
    }

    /// Moves `old_name` in `old_directory` to `new_name` in `new_directory`, replacing what
    /// is there if the kinds allow (a file over a file, a directory over an empty one).
    pub fn rename(
        &mut self,
        old_directory: InodeId,
        old_name: &[u8],
        new_directory: InodeId,
        new_name: &[u8],
    ) -> Result<(), Errno> {
        if matches!(old_name, b"." | b"..") || matches!(new_name, b"." | b"..") {
            return Err(Errno::EBUSY);
        }
        let moving = self.lookup(old_directory, old_name)?;
        Self::check_new_name(new_name).map_err(|_| Errno::EINVAL)?;
        let moving_directory = self.kind(moving)? == FileType::Directory;
        if moving_directory && self.is_ancestor(moving, new_directory)? {
            return Err(Errno::EINVAL);
        }
        match self.lookup(new_directory, new_name) {
            Ok(existing) if existing == moving => return Ok(()),
            Ok(existing) => {
                let existing_directory = self.kind(existing)? == FileType::Directory;
                match (moving_directory, existing_directory) {
                    (true, false) => return Err(Errno::ENOTDIR),
                    (false, true) => return Err(Errno::EISDIR),
                    _ => self.remove(new_directory, new_name, existing_directory)?,
                }
            }
            Err(Errno::ENOENT) => {}
            Err(error) => return Err(error),
        }
        self.charge(new_name.len() as u64)?;
        let now = self.now_ns;
        if let Content::Directory { entries, .. } = &mut self.inode_mut(old_directory)?.content {
            entries.remove(old_name);
        }
        self.refund(old_name.len() as u64);
        if let Content::Directory { entries, .. } = &mut self.inode_mut(new_directory)?.content {
            entries.insert(new_name.to_vec(), moving);
        }
        if moving_directory {
            if let Content::Directory { parent, .. } = &mut self.inode_mut(moving)?.content {
                *parent = new_directory;
            }
            self.inode_mut(old_directory)?.links -= 1;
            self.inode_mut(new_directory)?.links += 1;
        }
        for id in [old_directory, new_directory, moving] {
            let inode = self.inode_mut(id)?;
            inode.changed_ns = now;
            if id != moving {
                inode.modified_ns = now;
            }
        }
        Ok(())
    }

    /// Whether `ancestor` is `id` or one of the directories above it.
    fn is_ancestor(&self, ancestor: InodeId, mut id: InodeId) -> Result<bool, Errno> {
        loop {
            if id == ancestor {
                return Ok(true);
            }
            let Content::Directory { parent, .. } = &self.inode(id)?.content else {
                return Ok(false);
            };
            if id == ROOT {
                return Ok(false);
            }
            id = *parent;
        }
    }

    /// An open file now refers to `id`.
    pub fn hold(&mut self, id: InodeId) -> Result<(), Errno> {
        self.inode_mut(id)?.open += 1;
        Ok(())
    }

    /// An open file of `id` is closed; frees the inode if nothing else holds it.
    pub fn release(&mut self, id: InodeId) {
        if let Ok(inode) = self.inode_mut(id) {
            inode.open = inode.open.saturating_sub(1);
            self.free_if_unused(id);
        }
    }

    fn free_if_unused(&mut self, id: InodeId) {
        let Ok(inode) = self.inode(id) else { return };
        if inode.links > 0 || inode.open > 0 || id == ROOT {
            return;
        }
        let size = match &inode.content {
            Content::File(bytes) | Content::Symlink(bytes) => bytes.len() as u64,
            _ => 0,
        };
        self.inodes[id] = None;
        self.free.push(id);
        self.refund(INODE_COST + size);
    }

    /// Copies bytes of regular file `id` from `offset` into `into`; the count (0 at or past
    /// the end).
    pub fn read(&self, id: InodeId, offset: u64, into: &mut [u8]) -> Result<usize, Errno> {
        match &self.inode(id)?.content {
            Content::File(bytes) => {
                let Ok(start) = usize::try_from(offset) else { return Ok(0) };
                let available = bytes.get(start..).unwrap_or(&[]);
                let count = available.len().min(into.len());
                into[..count].copy_from_slice(&available[..count]);
                Ok(count)
            }
            Content::Directory { .. } => Err(Errno::EISDIR),
            _ => Err(Errno::EINVAL),
        }
    }

    /// Writes `from` into regular file `id` at `offset`, growing it (zero-filled) as needed.
    pub fn write(&mut self, id: InodeId, offset: u64, from: &[u8]) -> Result<usize, Errno> {
        let end = offset.checked_add(from.len() as u64).ok_or(Errno::EFBIG)?;
        let end = usize::try_from(end).map_err(|_| Errno::EFBIG)?;
        let current = self.inode(id)?.size();
        if !matches!(self.inode(id)?.content, Content::File(_)) {
            return Err(if self.kind(id)? == FileType::Directory { Errno::EISDIR } else { Errno::EINVAL });
        }
        let growth = (end as u64).saturating_sub(current);
        self.charge(growth)?;
        let now = self.now_ns;
        let inode = self.inode_mut(id)?;
        let Content::File(bytes) = &mut inode.content else { return Err(Errno::EINVAL) };
        if end > bytes.len() && bytes.try_reserve(end - bytes.len()).is_err() {
            self.refund(growth);
            return Err(Errno::ENOMEM);
        }
        if end > bytes.len() {
            bytes.resize(end, 0);
        }
        let start = end - from.len();
        bytes[start..end].copy_from_slice(from);
        inode.modified_ns = now;
        inode.changed_ns = now;
        Ok(from.len())
    }

    /// Sets regular file `id`'s length (`truncate`, `O_TRUNC`).
    pub fn truncate(&mut self, id: InodeId, length: u64) -> Result<(), Errno> {
        let length = usize::try_from(length).map_err(|_| Errno::EFBIG)?;
        let current = self.inode(id)?.size();
        match self.inode(id)?.content {
            Content::File(_) => {}
            Content::Directory { .. } => return Err(Errno::EISDIR),
            _ => return Err(Errno::EINVAL),
        }
        if length as u64 > current {
            self.charge(length as u64 - current)?;
        } else {
            self.refund(current - length as u64);
        }
        let now = self.now_ns;
        let inode = self.inode_mut(id)?;
        if let Content::File(bytes) = &mut inode.content {
            if length > bytes.len() && bytes.try_reserve(length - bytes.len()).is_err() {
                return Err(Errno::ENOMEM);
            }
            bytes.resize(length, 0);
            bytes.shrink_to(length.max(64));
        }
        inode.modified_ns = now;
        inode.changed_ns = now;
        Ok(())
    }

    /// The whole contents of regular file `id` (for reads that copy straight to user
    /// memory, and for `execve`).
    pub fn contents(&self, id: InodeId) -> Result<&[u8], Errno> {
        match &self.inode(id)?.content {
            Content::File(bytes) => Ok(bytes),
            Content::Directory { .. } => Err(Errno::EISDIR),
            _ => Err(Errno::EINVAL),
        }
    }

    /// Sets `id`'s modification time (`utimensat`, `touch`).
    pub fn set_modified(&mut self, id: InodeId, modified_ns: u64) -> Result<(), Errno> {
        let now = self.now_ns;
        let inode = self.inode_mut(id)?;
        inode.modified_ns = modified_ns;
        inode.changed_ns = now;
        Ok(())
    }

    /// A name under which `directory` holds `child` (`getcwd` walks up with it); `None`
    /// if it holds none.
    pub fn name_of(&self, directory: InodeId, child: InodeId) -> Option<&[u8]> {
        let Content::Directory { entries, .. } = &self.inode(directory).ok()?.content else { return None };
        entries.iter().find(|(_, id)| **id == child).map(|(name, _)| name.as_slice())
    }

    /// The first entry of `directory` after the name `after` in name order (the first of
    /// all for `None`), `.` and `..` excluded. A directory listing resumes by name, so
    /// entries removed meanwhile (`rm -r` deleting as it reads) do not make it skip others.
    pub fn entry_after(&self, directory: InodeId, after: Option<&[u8]>) -> Result<Option<DirectoryEntry>, Errno> {
        use core::ops::Bound;
        let Content::Directory { entries, .. } = &self.inode(directory)?.content else {
            return Err(Errno::ENOTDIR);
        };
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let next = entries.range::<[u8], _>((start, Bound::Unbounded)).next();
        next.map(|(name, &inode)| Ok(DirectoryEntry { name: name.clone(), inode, kind: self.kind(inode)? })).transpose()
    }

    /// The directory entry at `position` of `directory` (0 is `.`, 1 is `..`, then the
    /// names in order); `None` past the last. A position stays meaningful while the
    /// directory is unchanged; entries added or removed meanwhile may be seen or not.
    pub fn entry_at(&self, directory: InodeId, position: usize) -> Result<Option<DirectoryEntry>, Errno> {
        let Content::Directory { entries, parent } = &self.inode(directory)?.content else {
            return Err(Errno::ENOTDIR);
        };
        let entry = match position {
            0 => Some((b".".to_vec(), directory)),
            1 => Some((b"..".to_vec(), *parent)),
            _ => entries.iter().nth(position - 2).map(|(name, id)| (name.clone(), *id)),
        };
        entry.map(|(name, inode)| Ok(DirectoryEntry { name, inode, kind: self.kind(inode)? })).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fs() -> FileSystem {
        FileSystem::new(1 << 20)
    }

    #[test]
    fn files_are_created_written_read_and_stated() {
        let mut fs = fs();
        fs.set_now(5);
        let bin = fs.create(ROOT, b"bin", NewNode::Directory, 0o755).unwrap();
        let file = fs.create(bin, b"hello", NewNode::FileWith(b"hi\n"), 0o100_644).unwrap();
        assert_eq!(fs.lookup(ROOT, b"bin"), Ok(bin));
        assert_eq!(fs.lookup(bin, b".."), Ok(ROOT));
        assert_eq!(fs.lookup(ROOT, b".."), Ok(ROOT), "the root is its own parent");
        let mut buffer = [0u8; 16];
        assert_eq!(fs.read(file, 0, &mut buffer), Ok(3));
        assert_eq!(&buffer[..3], b"hi\n");
        assert_eq!(fs.write(file, 5, b"yo"), Ok(2));
        assert_eq!(fs.read(file, 0, &mut buffer), Ok(7));
        assert_eq!(&buffer[..7], b"hi\n\0\0yo", "a write past the end fills the gap with zeros");
        assert_eq!(fs.read(file, 100, &mut buffer), Ok(0));
        let metadata = fs.metadata(file).unwrap();
        assert_eq!(
            (metadata.kind, metadata.size, metadata.links, metadata.permissions),
            (FileType::Regular, 7, 1, 0o644)
        );
        assert_eq!(metadata.mode(), 0o100_644);
        assert_eq!(metadata.modified_ns, 5);
        assert_eq!(fs.metadata(ROOT).unwrap().links, 3, "root: ., its entry for itself, bin/..");
        assert_eq!(fs.create(bin, b"hello", NewNode::File, 0o644), Err(Errno::EEXIST));
        assert_eq!(fs.create(file, b"x", NewNode::File, 0o644), Err(Errno::ENOTDIR));
        assert_eq!(fs.create(ROOT, &[b'a'; 256], NewNode::File, 0o644), Err(Errno::ENAMETOOLONG));
        assert_eq!(fs.write(bin, 0, b"x"), Err(Errno::EISDIR));
        assert_eq!(fs.read(bin, 0, &mut buffer), Err(Errno::EISDIR));
    }

    #[test]
    fn unlinked_files_live_while_open() {
        let mut fs = fs();
        let file = fs.create(ROOT, b"tmp", NewNode::FileWith(b"data"), 0o644).unwrap();
        fs.hold(file).unwrap();
        fs.remove(ROOT, b"tmp", false).unwrap();
        assert_eq!(fs.lookup(ROOT, b"tmp"), Err(Errno::ENOENT));
        let mut buffer = [0u8; 4];
        assert_eq!(fs.read(file, 0, &mut buffer), Ok(4), "still readable through the open file");
        let before = fs.usage().0;
        fs.release(file);
        assert!(fs.usage().0 < before, "freed on the last close");
        assert_eq!(fs.metadata(file), Err(Errno::ENOENT));
    }

    #[test]
    fn removing_follows_unlink_and_rmdir_rules() {
        let mut fs = fs();
        let directory = fs.create(ROOT, b"d", NewNode::Directory, 0o755).unwrap();
        fs.create(directory, b"f", NewNode::File, 0o644).unwrap();
        assert_eq!(fs.remove(ROOT, b"d", false), Err(Errno::EISDIR));
        assert_eq!(fs.remove(ROOT, b"d", true), Err(Errno::ENOTEMPTY));
        assert_eq!(fs.remove(directory, b"f", true), Err(Errno::ENOTDIR));
        assert_eq!(fs.remove(directory, b".", true), Err(Errno::EINVAL));
        assert_eq!(fs.remove(directory, b"nope", false), Err(Errno::ENOENT));
        fs.remove(directory, b"f", false).unwrap();
        fs.remove(ROOT, b"d", true).unwrap();
        assert_eq!(fs.metadata(ROOT).unwrap().links, 2);
        assert_eq!(fs.usage().0, INODE_COST, "everything given back");
    }

    #[test]
    fn hard_links_share_an_inode() {
        let mut fs = fs();
        let file = fs.create(ROOT, b"a", NewNode::FileWith(b"x"), 0o644).unwrap();
        fs.link(file, ROOT, b"b").unwrap();
        assert_eq!(fs.metadata(file).unwrap().links, 2);
        fs.remove(ROOT, b"a", false).unwrap();
        assert_eq!(fs.lookup(ROOT, b"b"), Ok(file));
        let directory = fs.create(ROOT, b"d", NewNode::Directory, 0o755).unwrap();
        assert_eq!(fs.link(directory, ROOT, b"e"), Err(Errno::EPERM));
    }

    #[test]
    fn rename_moves_and_replaces_as_linux_does() {
        let mut fs = fs();
        let a = fs.create(ROOT, b"a", NewNode::Directory, 0o755).unwrap();
        let b = fs.create(ROOT, b"b", NewNode::Directory, 0o755).unwrap();
        let file = fs.create(a, b"f", NewNode::FileWith(b"1"), 0o644).unwrap();
        fs.create(b, b"g", NewNode::FileWith(b"2"), 0o644).unwrap();
        fs.rename(a, b"f", b, b"g").unwrap();
        assert_eq!(fs.lookup(b, b"g"), Ok(file), "replaced");
        assert_eq!(fs.lookup(a, b"f"), Err(Errno::ENOENT));
        assert_eq!(fs.rename(ROOT, b"a", a, b"inside"), Err(Errno::EINVAL), "into itself");
        assert_eq!(fs.rename(ROOT, b"a", b, b"g"), Err(Errno::ENOTDIR), "a directory over a file");
        assert_eq!(fs.rename(b, b"g", ROOT, b"a"), Err(Errno::EISDIR), "a file over a directory");
        fs.rename(ROOT, b"a", b, b"moved").unwrap();
        assert_eq!(fs.lookup(a, b".."), Ok(b));
        assert_eq!(fs.metadata(b).unwrap().links, 3);
        assert_eq!(fs.metadata(ROOT).unwrap().links, 3);
        fs.rename(b, b"g", b, b"g").unwrap();
        assert_eq!(fs.lookup(b, b"g"), Ok(file), "renaming onto itself changes nothing");
    }

    #[test]
    fn the_budget_bounds_what_files_hold() {
        let mut fs = FileSystem::new(4096);
        let file = fs.create(ROOT, b"big", NewNode::File, 0o644).unwrap();
        assert_eq!(fs.write(file, 0, &[1u8; 8192]), Err(Errno::ENOSPC));
        assert_eq!(fs.write(file, u64::MAX - 1, b"ab"), Err(Errno::EFBIG));
        assert!(fs.write(file, 0, &[1u8; 2048]).is_ok());
        fs.truncate(file, 0).unwrap();
        assert!(fs.write(file, 0, &[1u8; 3000]).is_ok(), "truncation gave the space back");
        assert_eq!(fs.create(ROOT, b"x", NewNode::FileWith(&[0u8; 4096]), 0o644), Err(Errno::ENOSPC));
    }

    #[test]
    fn entries_are_listed_with_dot_and_dotdot_first() {
        let mut fs = fs();
        fs.create(ROOT, b"zeta", NewNode::File, 0o644).unwrap();
        fs.create(ROOT, b"alpha", NewNode::Directory, 0o755).unwrap();
        fs.create(ROOT, b"null", NewNode::Special(FileType::CharDevice, (1, 3)), 0o666).unwrap();
        let names: Vec<(Vec<u8>, FileType)> =
            (0..).map_while(|position| fs.entry_at(ROOT, position).unwrap()).map(|e| (e.name, e.kind)).collect();
        assert_eq!(
            names,
            [
                (b".".to_vec(), FileType::Directory),
                (b"..".to_vec(), FileType::Directory),
                (b"alpha".to_vec(), FileType::Directory),
                (b"null".to_vec(), FileType::CharDevice),
                (b"zeta".to_vec(), FileType::Regular),
            ]
        );
        let null = fs.lookup(ROOT, b"null").unwrap();
        assert_eq!(fs.metadata(null).unwrap().rdev, (1, 3));
        let after = |name: Option<&[u8]>| fs.entry_after(ROOT, name).unwrap().map(|entry| entry.name);
        assert_eq!(after(None), Some(b"alpha".to_vec()));
        assert_eq!(after(Some(b"alpha")), Some(b"null".to_vec()));
        assert_eq!(after(Some(b"m")), Some(b"null".to_vec()), "resuming after a removed name");
        assert_eq!(after(Some(b"zeta")), None);
        assert_eq!(fs.name_of(ROOT, null), Some(&b"null"[..]));
        assert_eq!(fs.name_of(ROOT, ROOT), None);
    }

    #[test]
    fn contents_and_times_are_reachable() {
        let mut fs = fs();
        let file = fs.create(ROOT, b"f", NewNode::FileWith(b"abc"), 0o644).unwrap();
        assert_eq!(fs.contents(file), Ok(&b"abc"[..]));
        assert_eq!(fs.contents(ROOT), Err(Errno::EISDIR));
        fs.set_now(9);
        fs.set_modified(file, 3).unwrap();
        let metadata = fs.metadata(file).unwrap();
        assert_eq!((metadata.modified_ns, metadata.changed_ns), (3, 9));
    }
}
