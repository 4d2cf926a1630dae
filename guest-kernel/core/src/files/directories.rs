//! Directories: listing (`getdents64`), making and removing names (`mkdir`, `unlink`,
//! `rmdir`, `rename`, `symlink`, `link`), and the working directory (`chdir`, `fchdir`,
//! `getcwd`, and `umask`, the other part of a process's file-creation context).
//!
//! `/proc` cannot be changed: making or removing a name there is EPERM (as Linux's proc
//! answers), renaming or linking between it and the file system EXDEV, and its mount
//! point cannot be removed or renamed (EBUSY).

use alloc::vec::Vec;
use linux_raw_sys::general as uapi;

use super::caller::{descriptor, flags, Caller, DirectoryArgument, WORKING_DIRECTORY};
use super::namespace::{Location, View};
use super::open_file::{Cursor, FileRef, Node};
use super::outcome::{done, CallResult};
use super::world::Files;
use crate::fs::path::{resolve, resolve_parent, Follow, Namespace};
use crate::fs::tree::{InodeId, NewNode};
use crate::fs::FileType;
use crate::linux::layouts::push_directory_entry;
use crate::linux::Errno;

/// Most bytes of directory entries one `getdents64` returns.
const LISTING_LIMIT: usize = 64 * 1024;

/// One listed entry.
struct Listed {
    name: Vec<u8>,
    inode: u64,
    kind: FileType,
}

/// The entry after `cursor` in `directory`, moving the cursor past it.
fn next_entry(view: &View<'_>, directory: Location, cursor: &mut Cursor) -> Result<Option<Listed>, Errno> {
    let listed = match cursor.returned {
        0 | 1 => {
            let name: &[u8] = if cursor.returned == 0 { b"." } else { b".." };
            let location = view.lookup(directory, name)?;
            let inode = view.metadata(location, 0)?.inode;
            Listed { name: name.to_vec(), inode, kind: FileType::Directory }
        }
        _ => {
            let after = cursor.after.as_deref();
            let entry = match directory {
                Location::Inode(id) => view.fs.entry_after(id, after)?.map(|entry| Listed {
                    inode: entry.inode as u64 + 1,
                    name: entry.name,
                    kind: entry.kind,
                }),
                Location::Proc(node) => node
                    .entry_after(after, view.processes)?
                    .map(|entry| {
                        Ok::<_, Errno>(Listed {
                            inode: entry.node.inode(),
                            kind: entry.node.kind(view.processes)?,
                            name: entry.name,
                        })
                    })
                    .transpose()?,
            };
            let Some(listed) = entry else { return Ok(None) };
            cursor.after = Some(listed.name.clone());
            listed
        }
    };
    cursor.returned += 1;
    Ok(Some(listed))
}

/// `getdents64(fd, dirp, count)`: `struct linux_dirent64` records, each `d_off` the
/// position after it. EINVAL if not even one record fits; the listing only moves on once
/// the records reached user memory.
pub fn getdents64(files: &mut Files, caller: &mut Caller<'_>, fd: u64, address: u64, count: u64) -> CallResult {
    let file = caller.file(fd)?;
    let mut open = file.borrow_mut();
    let (directory, cursor) = match &mut open.node {
        Node::Directory { location, cursor } => (*location, cursor),
        Node::Path(_) => return Err(Errno::EBADF),
        _ => return Err(Errno::ENOTDIR),
    };
    let capacity = (count as u32 as usize).min(LISTING_LIMIT);
    let view = files.view(caller.processes, caller.pid);
    let mut records = Vec::new();
    let mut next = cursor.clone();
    loop {
        let mut probe = next.clone();
        let Some(entry) = next_entry(&view, directory, &mut probe)? else { break };
        if !push_directory_entry(
            &mut records,
            capacity,
            entry.inode,
            probe.returned,
            entry.kind.dirent_type(),
            &entry.name,
        ) {
            if records.is_empty() {
                return Err(Errno::EINVAL);
            }
            break;
        }
        next = probe;
    }
    caller.memory.write(address, &records)?;
    *cursor = next;
    done(records.len() as u64)
}

/// `lseek` on a directory: `SEEK_SET` to `n` lists again from the `n`th entry (0: from
/// the start, as `rewinddir` asks); `SEEK_CUR` by 0 says where the listing is.
pub(crate) fn seek_directory(
    files: &mut Files,
    caller: &mut Caller<'_>,
    file: &FileRef,
    offset: i64,
    whence: u32,
) -> CallResult {
    let mut open = file.borrow_mut();
    let Node::Directory { location, cursor } = &mut open.node else { return Err(Errno::ENOTDIR) };
    match whence {
        uapi::SEEK_SET if offset >= 0 => {
            let view = files.view(caller.processes, caller.pid);
            let mut moved = Cursor::default();
            while moved.returned < offset as u64 && next_entry(&view, *location, &mut moved)?.is_some() {}
            *cursor = moved;
            done(cursor.returned)
        }
        uapi::SEEK_CUR if offset == 0 => done(cursor.returned),
        _ => Err(Errno::EINVAL),
    }
}

/// Where a new name goes: its directory in the file system, the name, and whether the
/// path ended in a slash. A `/proc` directory gives `in_proc` (with EEXIST if the name is
/// there).
fn parent_of(
    files: &Files,
    caller: &Caller<'_>,
    directory: DirectoryArgument,
    path: &[u8],
    in_proc: Errno,
) -> Result<(InodeId, Vec<u8>, bool), Errno> {
    let start = caller.start(files, directory, path)?;
    let view = files.view(caller.processes, caller.pid);
    let (parent, name, trailing_slash) = resolve_parent(&view, start, path)?;
    match parent {
        Location::Inode(id) => Ok((id, name.to_vec(), trailing_slash)),
        Location::Proc(_) => Err(if view.lookup(parent, name).is_ok() { Errno::EEXIST } else { in_proc }),
    }
}

/// `mkdirat(dirfd, path, mode)`: permissions `mode & 01777` less the umask.
pub fn mkdirat(files: &mut Files, caller: &mut Caller<'_>, directory: u64, path: u64, mode: u64) -> CallResult {
    let path = caller.path(path, false)?;
    let (parent, name, _) = parent_of(files, caller, DirectoryArgument::new(directory), &path, Errno::EPERM)?;
    let permissions = (flags(mode) & 0o1777) & !caller.process.umask();
    files.fs.create(parent, &name, NewNode::Directory, permissions)?;
    done(0u64)
}

/// `unlinkat(dirfd, path, flags)`: a non-directory, or with `AT_REMOVEDIR` an empty
/// directory (`rmdir`).
pub fn unlinkat(
    files: &mut Files,
    caller: &mut Caller<'_>,
    directory: u64,
    path: u64,
    flags_argument: u64,
) -> CallResult {
    let remove_flags = flags(flags_argument);
    if remove_flags & !uapi::AT_REMOVEDIR != 0 {
        return Err(Errno::EINVAL);
    }
    let want_directory = remove_flags & uapi::AT_REMOVEDIR != 0;
    let path = caller.path(path, false)?;
    if want_directory && path.iter().all(|&byte| byte == b'/') {
        return Err(Errno::EBUSY);
    }
    let (parent, name, trailing_slash) =
        parent_of(files, caller, DirectoryArgument::new(directory), &path, Errno::ENOENT).map_err(|error| {
            if error == Errno::EEXIST {
                Errno::EPERM
            } else {
                error
            }
        })?;
    if want_directory {
        match name.as_slice() {
            b"." => return Err(Errno::EINVAL),
            b".." => return Err(Errno::ENOTEMPTY),
            _ => {}
        }
    }
    let target = files.fs.lookup(parent, &name)?;
    if target == files.mount {
        return Err(if want_directory { Errno::EBUSY } else { Errno::EISDIR });
    }
    if trailing_slash && !want_directory {
        return Err(if files.fs.kind(target)? == FileType::Directory { Errno::EISDIR } else { Errno::ENOTDIR });
    }
    files.fs.remove(parent, &name, want_directory)?;
    done(0u64)
}

/// `renameat2(olddirfd, oldpath, newdirfd, newpath, flags)`: `RENAME_NOREPLACE` is
/// honoured; `RENAME_EXCHANGE` and `RENAME_WHITEOUT` are EINVAL (the file system does not
/// support them, as Linux answers for such file systems).
pub fn renameat2(
    files: &mut Files,
    caller: &mut Caller<'_>,
    old_directory: u64,
    old_path: u64,
    new_directory: u64,
    new_path: u64,
    flags_argument: u64,
) -> CallResult {
    let rename_flags = flags(flags_argument);
    if rename_flags & !uapi::RENAME_NOREPLACE != 0 {
        return Err(Errno::EINVAL);
    }
    let old_path = caller.path(old_path, false)?;
    let new_path = caller.path(new_path, false)?;
    let view = files.view(caller.processes, caller.pid);
    let old_start = caller.start(files, DirectoryArgument::new(old_directory), &old_path)?;
    let new_start = caller.start(files, DirectoryArgument::new(new_directory), &new_path)?;
    let (old_parent, old_name, old_slash) = resolve_parent(&view, old_start, &old_path)?;
    let (new_parent, new_name, new_slash) = resolve_parent(&view, new_start, &new_path)?;
    let (Location::Inode(old_parent), Location::Inode(new_parent)) = (old_parent, new_parent) else {
        let both_proc = matches!((old_parent, new_parent), (Location::Proc(_), Location::Proc(_)));
        return Err(if both_proc { Errno::EPERM } else { Errno::EXDEV });
    };
    let (old_name, new_name) = (old_name.to_vec(), new_name.to_vec());
    let moving = files.fs.lookup(old_parent, &old_name)?;
    let existing = files.fs.lookup(new_parent, &new_name).ok();
    if moving == files.mount || existing == Some(files.mount) {
        return Err(Errno::EBUSY);
    }
    if (old_slash || new_slash) && files.fs.kind(moving)? != FileType::Directory {
        return Err(Errno::ENOTDIR);
    }
    if rename_flags & uapi::RENAME_NOREPLACE != 0 && existing.is_some() {
        return Err(Errno::EEXIST);
    }
    files.fs.rename(old_parent, &old_name, new_parent, &new_name)?;
    done(0u64)
}

/// `symlinkat(target, newdirfd, linkpath)`.
pub fn symlinkat(files: &mut Files, caller: &mut Caller<'_>, target: u64, directory: u64, path: u64) -> CallResult {
    let target = caller.path(target, false)?;
    let path = caller.path(path, false)?;
    let (parent, name, trailing_slash) =
        parent_of(files, caller, DirectoryArgument::new(directory), &path, Errno::EPERM)?;
    if trailing_slash {
        return Err(if files.fs.lookup(parent, &name).is_ok() { Errno::EEXIST } else { Errno::ENOENT });
    }
    files.fs.create(parent, &name, NewNode::Symlink(&target), 0o777)?;
    done(0u64)
}

/// `linkat(olddirfd, oldpath, newdirfd, newpath, flags)`: another name for a
/// non-directory (EPERM for a directory); `AT_SYMLINK_FOLLOW` links a link's target,
/// `AT_EMPTY_PATH` the file `olddirfd` names.
pub fn linkat(
    files: &mut Files,
    caller: &mut Caller<'_>,
    old_directory: u64,
    old_path: u64,
    new_directory: u64,
    new_path: u64,
    flags_argument: u64,
) -> CallResult {
    let link_flags = flags(flags_argument);
    if link_flags & !(uapi::AT_SYMLINK_FOLLOW | uapi::AT_EMPTY_PATH) != 0 {
        return Err(Errno::EINVAL);
    }
    let old_path = caller.path(old_path, link_flags & uapi::AT_EMPTY_PATH != 0)?;
    let new_path = caller.path(new_path, false)?;
    let old_directory = DirectoryArgument::new(old_directory);
    let source = if old_path.is_empty() {
        match old_directory {
            DirectoryArgument::WorkingDirectory => Some(caller.process.cwd()),
            DirectoryArgument::Descriptor(fd) => caller.location_of(fd)?,
        }
        .ok_or(Errno::EXDEV)?
    } else {
        let follow = if link_flags & uapi::AT_SYMLINK_FOLLOW != 0 { Follow::Yes } else { Follow::No };
        let start = caller.start(files, old_directory, &old_path)?;
        resolve(&files.view(caller.processes, caller.pid), start, &old_path, follow)?
    };
    let (parent, name, trailing_slash) =
        parent_of(files, caller, DirectoryArgument::new(new_directory), &new_path, Errno::EXDEV)?;
    let Location::Inode(source) = source else { return Err(Errno::EXDEV) };
    if source == files.mount {
        return Err(Errno::EXDEV);
    }
    if trailing_slash {
        return Err(if files.fs.lookup(parent, &name).is_ok() { Errno::EEXIST } else { Errno::ENOENT });
    }
    files.fs.link(source, parent, &name)?;
    done(0u64)
}

/// `chdir(path)`.
pub fn chdir(files: &mut Files, caller: &mut Caller<'_>, path: u64) -> CallResult {
    let path = caller.path(path, false)?;
    let view = files.view(caller.processes, caller.pid);
    let location = resolve(&view, caller.process.cwd(), &path, Follow::Yes)?;
    if view.kind(location)? != FileType::Directory {
        return Err(Errno::ENOTDIR);
    }
    caller.process.set_cwd(files, location)?;
    done(0u64)
}

/// `fchdir(fd)`.
pub fn fchdir(files: &mut Files, caller: &mut Caller<'_>, fd: u64) -> CallResult {
    let fd = i32::try_from(descriptor(fd)).map_err(|_| Errno::EBADF)?;
    let location = caller.location_of(fd)?.ok_or(Errno::ENOTDIR)?;
    if files.view(caller.processes, caller.pid).kind(location)? != FileType::Directory {
        return Err(Errno::ENOTDIR);
    }
    caller.process.set_cwd(files, location)?;
    done(0u64)
}

/// `getcwd(buf, size)`: the path and its NUL; ERANGE if `size` is too small, ENOENT if
/// the working directory was removed. Returns the length with the NUL, as the system
/// call (not the libc function) does.
pub fn getcwd(files: &mut Files, caller: &mut Caller<'_>, address: u64, size: u64) -> CallResult {
    let view = files.view(caller.processes, caller.pid);
    let mut path = view.path_of(caller.process.cwd())?;
    path.push(0);
    if (path.len() as u64) > size {
        return Err(Errno::ERANGE);
    }
    caller.memory.write(address, &path)?;
    done(path.len() as u64)
}

/// `umask(mask)`: sets the file-creation mask, returns the old one.
pub fn umask(_files: &mut Files, caller: &mut Caller<'_>, mask: u64) -> CallResult {
    done(caller.process.set_umask(flags(mask) & 0o777))
}

/// `mkdir(path, mode)`.
pub fn mkdir(files: &mut Files, caller: &mut Caller<'_>, path: u64, mode: u64) -> CallResult {
    mkdirat(files, caller, WORKING_DIRECTORY, path, mode)
}

/// `rmdir(path)`.
pub fn rmdir(files: &mut Files, caller: &mut Caller<'_>, path: u64) -> CallResult {
    unlinkat(files, caller, WORKING_DIRECTORY, path, u64::from(uapi::AT_REMOVEDIR))
}

/// `unlink(path)`.
pub fn unlink(files: &mut Files, caller: &mut Caller<'_>, path: u64) -> CallResult {
    unlinkat(files, caller, WORKING_DIRECTORY, path, 0)
}

/// `rename(oldpath, newpath)`.
pub fn rename(files: &mut Files, caller: &mut Caller<'_>, old_path: u64, new_path: u64) -> CallResult {
    renameat2(files, caller, WORKING_DIRECTORY, old_path, WORKING_DIRECTORY, new_path, 0)
}

/// `renameat(olddirfd, oldpath, newdirfd, newpath)`.
pub fn renameat(
    files: &mut Files,
    caller: &mut Caller<'_>,
    old_directory: u64,
    old_path: u64,
    new_directory: u64,
    new_path: u64,
) -> CallResult {
    renameat2(files, caller, old_directory, old_path, new_directory, new_path, 0)
}

/// `link(oldpath, newpath)`.
pub fn link(files: &mut Files, caller: &mut Caller<'_>, old_path: u64, new_path: u64) -> CallResult {
    linkat(files, caller, WORKING_DIRECTORY, old_path, WORKING_DIRECTORY, new_path, 0)
}

/// `symlink(target, linkpath)`.
pub fn symlink(files: &mut Files, caller: &mut Caller<'_>, target: u64, path: u64) -> CallResult {
    symlinkat(files, caller, target, WORKING_DIRECTORY, path)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{World, BAD, BUFFER, STRINGS, STRINGS2};
    use super::*;
    use crate::linux::layouts::Stat;
    use crate::user_memory::read_value;
    use uapi::*;

    /// One `linux_dirent64` record: inode, next offset, record length, type, name.
    type Record = (u64, u64, u16, u8, Vec<u8>);

    fn records(bytes: &[u8]) -> Vec<Record> {
        let mut list = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let field = |offset: usize| u64::from_le_bytes(bytes[at + offset..at + offset + 8].try_into().unwrap());
            let length = u16::from_le_bytes([bytes[at + 16], bytes[at + 17]]);
            let name_end = bytes[at + 19..].iter().position(|&byte| byte == 0).unwrap();
            list.push((field(0), field(8), length, bytes[at + 18], bytes[at + 19..at + 19 + name_end].to_vec()));
            at += length as usize;
        }
        list
    }

    fn list(world: &mut World, fd: u64, size: u64) -> Vec<Record> {
        let length = world.ok(__NR_getdents64, &[fd, BUFFER, size]) as usize;
        records(&world.bytes(BUFFER, length))
    }

    fn names(world: &mut World, path: &[u8]) -> Vec<Vec<u8>> {
        let fd = world.open(path, O_RDONLY | O_DIRECTORY);
        let mut all = Vec::new();
        loop {
            let batch = list(world, fd, 4096);
            if batch.is_empty() {
                break;
            }
            all.extend(batch.into_iter().map(|record| record.4));
        }
        world.ok(__NR_close, &[fd]);
        all
    }

    fn inode_of(world: &mut World, path: &[u8]) -> u64 {
        let path = world.string(STRINGS, path);
        world.ok(__NR_lstat, &[path, STRINGS2 + 0x100]);
        read_value::<Stat>(&world.memory, STRINGS2 + 0x100).unwrap().inode
    }

    #[test]
    fn listings_are_linux_dirent64_records() {
        let mut world = World::new();
        let fd = world.open(b"/bin", O_RDONLY | O_DIRECTORY);
        let length = world.ok(__NR_getdents64, &[fd, BUFFER, 4096]);
        let listed = records(&world.bytes(BUFFER, length as usize));
        let (bin, root, busybox, sh) = (
            inode_of(&mut world, b"/bin"),
            inode_of(&mut world, b"/"),
            inode_of(&mut world, b"/bin/busybox"),
            inode_of(&mut world, b"/bin/sh"),
        );
        assert_eq!(
            listed,
            [
                (bin, 1, 24, DT_DIR as u8, b".".to_vec()),
                (root, 2, 24, DT_DIR as u8, b"..".to_vec()),
                (busybox, 3, 32, DT_REG as u8, b"busybox".to_vec()),
                (sh, 4, 24, DT_LNK as u8, b"sh".to_vec()),
            ],
            "19 header bytes and the name's NUL, padded to 8; d_off resumes after each"
        );
        assert_eq!(length, 104);
        assert_eq!(world.ok(__NR_getdents64, &[fd, BUFFER, 4096]), 0, "the end");
        assert_eq!(world.ok(__NR_lseek, &[fd, 0, u64::from(SEEK_SET)]), 0, "rewinddir");
        assert_eq!(list(&mut world, fd, 24).len(), 1, "a small buffer takes what fits");
        assert_eq!(world.error(__NR_getdents64, &[fd, BUFFER, 10]), Errno::EINVAL, "not even one record fits");
        assert_eq!(world.error(__NR_getdents64, &[fd, BAD, 4096]), Errno::EFAULT);
        assert_eq!(list(&mut world, fd, 4096).len(), 3, "a failed copy did not move the listing");
        world.ok(__NR_lseek, &[fd, 3, u64::from(SEEK_SET)]);
        assert_eq!(list(&mut world, fd, 4096)[0].4, b"sh", "seekdir to a d_off");
        let file = world.open(b"/etc/motd", O_RDONLY);
        assert_eq!(world.error(__NR_getdents64, &[file, BUFFER, 4096]), Errno::ENOTDIR);
        assert_eq!(world.error(__NR_read, &[fd, BUFFER, 10]), Errno::EISDIR);
    }

    #[test]
    fn removing_while_listing_skips_nothing() {
        let mut world = World::new();
        let dir = world.string(STRINGS, b"/tmp/d");
        world.ok(__NR_mkdir, &[dir, 0o755]);
        let count = 60;
        for index in 0..count {
            let path = alloc::format!("/tmp/d/file-{index:03}");
            world.open(path.as_bytes(), O_CREAT | O_WRONLY);
        }
        for fd in 0..count {
            world.ok(__NR_close, &[fd]);
        }
        let fd = world.open(b"/tmp/d", O_RDONLY | O_DIRECTORY);
        let mut removed = 0;
        loop {
            let batch = list(&mut world, fd, 200);
            if batch.is_empty() {
                break;
            }
            for (_, _, _, _, name) in batch {
                if name != b"." && name != b".." {
                    let mut path = b"/tmp/d/".to_vec();
                    path.extend_from_slice(&name);
                    let path = world.string(STRINGS, &path);
                    world.ok(__NR_unlink, &[path]);
                    removed += 1;
                }
            }
        }
        assert_eq!(removed, count, "rm -r's pattern: every entry seen once");
        let dir = world.string(STRINGS, b"/tmp/d");
        assert_eq!(world.ok(__NR_rmdir, &[dir]), 0);
    }

    #[test]
    fn making_and_removing_follow_linux_rules() {
        let mut world = World::new();
        let path = |world: &mut World, text: &[u8]| world.string(STRINGS, text);
        let dir = path(&mut world, b"/tmp/dir/");
        assert_eq!(world.ok(__NR_mkdir, &[dir, 0o777]), 0, "a trailing slash is fine for mkdir");
        let mode = {
            let dir = path(&mut world, b"/tmp/dir");
            world.ok(__NR_stat, &[dir, BUFFER]);
            read_value::<Stat>(&world.memory, BUFFER).unwrap().mode
        };
        assert_eq!(mode, S_IFDIR | 0o755, "less the umask");
        let dir = path(&mut world, b"/tmp/dir");
        assert_eq!(world.error(__NR_mkdir, &[dir, 0o755]), Errno::EEXIST);
        world.open(b"/tmp/dir/file", O_CREAT | O_WRONLY);
        let dir = path(&mut world, b"/tmp/dir");
        assert_eq!(world.error(__NR_rmdir, &[dir]), Errno::ENOTEMPTY);
        assert_eq!(world.error(__NR_unlink, &[dir]), Errno::EISDIR);
        let file = path(&mut world, b"/tmp/dir/file");
        assert_eq!(world.error(__NR_rmdir, &[file]), Errno::ENOTDIR);
        let slashed = path(&mut world, b"/tmp/dir/file/");
        assert_eq!(world.error(__NR_unlink, &[slashed]), Errno::ENOTDIR);
        let file = path(&mut world, b"/tmp/dir/file");
        assert_eq!(world.ok(__NR_unlink, &[file]), 0);
        assert_eq!(world.error(__NR_unlink, &[file]), Errno::ENOENT);
        let dot = path(&mut world, b"/tmp/dir/.");
        assert_eq!(world.error(__NR_rmdir, &[dot]), Errno::EINVAL);
        let dotdot = path(&mut world, b"/tmp/dir/..");
        assert_eq!(world.error(__NR_rmdir, &[dotdot]), Errno::ENOTEMPTY);
        let root = path(&mut world, b"/");
        assert_eq!(world.error(__NR_rmdir, &[root]), Errno::EBUSY);
        let proc = path(&mut world, b"/proc");
        assert_eq!(world.error(__NR_rmdir, &[proc]), Errno::EBUSY, "the mount point");
        let at_cwd = WORKING_DIRECTORY;
        let dir = path(&mut world, b"/tmp/dir");
        assert_eq!(world.error(__NR_unlinkat, &[at_cwd, dir, 1]), Errno::EINVAL, "unknown flag");
        assert_eq!(world.ok(__NR_unlinkat, &[at_cwd, dir, u64::from(AT_REMOVEDIR)]), 0);
        let inside = path(&mut world, b"/proc/new");
        assert_eq!(world.error(__NR_mkdir, &[inside, 0o755]), Errno::EPERM, "/proc cannot change");
        let existing = path(&mut world, b"/proc/uptime");
        assert_eq!(world.error(__NR_mkdir, &[existing, 0o755]), Errno::EEXIST);
        assert_eq!(world.error(__NR_unlink, &[existing]), Errno::EPERM);
        assert_eq!(world.error(__NR_mkdir, &[BAD, 0o755]), Errno::EFAULT);
    }

    #[test]
    fn renaming_moves_replaces_and_refuses() {
        let mut world = World::new();
        world.open(b"/tmp/a", O_CREAT | O_WRONLY);
        world.open(b"/tmp/b", O_CREAT | O_WRONLY);
        let (a, b) = (world.string(STRINGS, b"/tmp/a"), world.string(STRINGS2, b"/tmp/b"));
        let at_cwd = WORKING_DIRECTORY;
        let noreplace = u64::from(RENAME_NOREPLACE);
        assert_eq!(world.error(__NR_renameat2, &[at_cwd, a, at_cwd, b, noreplace]), Errno::EEXIST);
        assert_eq!(world.error(__NR_renameat2, &[at_cwd, a, at_cwd, b, u64::from(RENAME_EXCHANGE)]), Errno::EINVAL);
        let a_inode = inode_of(&mut world, b"/tmp/a");
        let (a, b) = (world.string(STRINGS, b"/tmp/a"), world.string(STRINGS2, b"/tmp/b"));
        assert_eq!(world.ok(__NR_rename, &[a, b]), 0);
        assert_eq!(inode_of(&mut world, b"/tmp/b"), a_inode, "replaced");
        let (b, moved) = (world.string(STRINGS, b"/tmp/b"), world.string(STRINGS2, b"/etc/moved"));
        assert_eq!(world.ok(__NR_renameat2, &[at_cwd, b, at_cwd, moved, noreplace]), 0);
        assert_eq!(names(&mut world, b"/tmp"), [&b"."[..], b".."]);
        let (moved, slashed) = (world.string(STRINGS, b"/etc/moved"), world.string(STRINGS2, b"/etc/x/"));
        assert_eq!(world.error(__NR_rename, &[moved, slashed]), Errno::ENOTDIR);
        let (proc, elsewhere) = (world.string(STRINGS, b"/proc"), world.string(STRINGS2, b"/elsewhere"));
        assert_eq!(world.error(__NR_rename, &[proc, elsewhere]), Errno::EBUSY);
        let (moved, into_proc) = (world.string(STRINGS, b"/etc/moved"), world.string(STRINGS2, b"/proc/x"));
        assert_eq!(world.error(__NR_rename, &[moved, into_proc]), Errno::EXDEV);
        let (etc, inside) = (world.string(STRINGS, b"/etc"), world.string(STRINGS2, b"/etc/sub"));
        assert_eq!(world.error(__NR_rename, &[etc, inside]), Errno::EINVAL, "into itself");
    }

    #[test]
    fn links_symbolic_and_hard() {
        let mut world = World::new();
        let (target, link) = (world.string(STRINGS, b"../etc/motd"), world.string(STRINGS2, b"/tmp/motd"));
        assert_eq!(world.ok(__NR_symlink, &[target, link]), 0);
        assert_eq!(world.error(__NR_symlink, &[target, link]), Errno::EEXIST);
        let fd = world.open(b"/tmp/motd", O_RDONLY);
        assert_eq!(world.read(fd, 5), b"hello", "relative to the link's directory");
        let link = world.string(STRINGS2, b"/tmp/motd");
        assert_eq!(world.ok(__NR_readlink, &[link, BUFFER, 100]), 11);
        assert_eq!(world.bytes(BUFFER, 11), b"../etc/motd");
        assert_eq!(world.ok(__NR_readlink, &[link, BUFFER, 4]), 4, "cut to the buffer, no NUL");
        assert_eq!(world.error(__NR_readlink, &[link, BUFFER, 0]), Errno::EINVAL);
        let file = world.string(STRINGS, b"/etc/motd");
        assert_eq!(world.error(__NR_readlink, &[file, BUFFER, 100]), Errno::EINVAL, "not a link");
        assert_eq!(world.error(__NR_readlink, &[link, BAD, 100]), Errno::EFAULT);
        let empty = world.string(STRINGS, b"");
        assert_eq!(world.error(__NR_symlink, &[empty, link]), Errno::ENOENT);
        let (file, hard) = (world.string(STRINGS, b"/etc/motd"), world.string(STRINGS2, b"/tmp/hard"));
        assert_eq!(world.ok(__NR_link, &[file, hard]), 0);
        assert_eq!(inode_of(&mut world, b"/tmp/hard"), inode_of(&mut world, b"/etc/motd"));
        let (dir, other) = (world.string(STRINGS, b"/etc"), world.string(STRINGS2, b"/tmp/etc"));
        assert_eq!(world.error(__NR_link, &[dir, other]), Errno::EPERM);
        let (proc_file, other) = (world.string(STRINGS, b"/proc/uptime"), world.string(STRINGS2, b"/tmp/up"));
        assert_eq!(world.error(__NR_link, &[proc_file, other]), Errno::EXDEV);
        let (link, follow) = (world.string(STRINGS, b"/tmp/motd"), world.string(STRINGS2, b"/tmp/followed"));
        let at_cwd = WORKING_DIRECTORY;
        world.ok(__NR_linkat, &[at_cwd, link, at_cwd, follow, u64::from(AT_SYMLINK_FOLLOW)]);
        assert_eq!(inode_of(&mut world, b"/tmp/followed"), inode_of(&mut world, b"/etc/motd"));
    }

    #[test]
    fn the_working_directory_moves_and_names_itself() {
        let mut world = World::new();
        assert_eq!(world.ok(__NR_getcwd, &[BUFFER, 100]), 2);
        assert_eq!(world.bytes(BUFFER, 2), b"/\0");
        let bin = world.string(STRINGS, b"/usr/../bin");
        assert_eq!(world.error(__NR_chdir, &[bin]), Errno::ENOENT);
        let bin = world.string(STRINGS, b"/etc/../bin");
        world.ok(__NR_chdir, &[bin]);
        assert_eq!(world.ok(__NR_getcwd, &[BUFFER, 100]), 5);
        assert_eq!(world.bytes(BUFFER, 5), b"/bin\0");
        assert_eq!(world.error(__NR_getcwd, &[BUFFER, 4]), Errno::ERANGE);
        assert_eq!(world.error(__NR_getcwd, &[BAD, 100]), Errno::EFAULT);
        let relative = world.string(STRINGS, b"sh");
        world.ok(__NR_stat, &[relative, BUFFER]);
        let file = world.string(STRINGS, b"busybox");
        assert_eq!(world.error(__NR_chdir, &[file]), Errno::ENOTDIR);
        let made = world.string(STRINGS, b"/tmp/gone");
        world.ok(__NR_mkdir, &[made, 0o755]);
        world.ok(__NR_chdir, &[made]);
        world.ok(__NR_rmdir, &[made]);
        assert_eq!(world.error(__NR_getcwd, &[BUFFER, 100]), Errno::ENOENT, "removed under us");
        let again = world.string(STRINGS, b"/tmp/again");
        world.ok(__NR_mkdir, &[again, 0o755]);
        assert_eq!(world.error(__NR_getcwd, &[BUFFER, 100]), Errno::ENOENT, "the held inode was not reused");
        let own = world.string(STRINGS, b"/proc/self");
        world.ok(__NR_chdir, &[own]);
        assert_eq!(world.ok(__NR_getcwd, &[BUFFER, 100]), 8);
        assert_eq!(world.bytes(BUFFER, 8), b"/proc/7\0");
        let etc = world.open(b"/etc", O_RDONLY | O_DIRECTORY);
        world.ok(__NR_fchdir, &[etc]);
        world.ok(__NR_getcwd, &[BUFFER, 100]);
        assert_eq!(world.bytes(BUFFER, 5), b"/etc\0");
        let file = world.open(b"/etc/motd", O_RDONLY);
        assert_eq!(world.error(__NR_fchdir, &[file]), Errno::ENOTDIR);
        assert_eq!(world.error(__NR_fchdir, &[99]), Errno::EBADF);
        assert_eq!(world.ok(__NR_umask, &[0o7777]), 0o022);
        assert_eq!(world.ok(__NR_umask, &[0o022]), 0o777, "only permission bits are kept");
    }
}
