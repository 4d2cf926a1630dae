//! What is known about a file and changing it without opening it: the `stat` family and
//! `statx`, `access`, `readlink`, `chmod`, `chown`, `utimensat`, `truncate`, and the
//! `sync` family (the file system is memory: there is nothing to flush).
//!
//! Everyone is root (the kernel has one user), so `access` grants reading and writing
//! and grants execution where an execute bit is set or for directories, as Linux grants
//! root. Only modification times are kept: access times read as the modification time.

use linux_raw_sys::general as uapi;

use super::caller::{descriptor, flags, Caller, DirectoryArgument, WORKING_DIRECTORY};
use super::namespace::Location;
use super::open_file::{FileRef, Node};
use super::outcome::{done, CallResult};
use super::world::{encode_device, Files};
use crate::fs::path::{resolve, Follow, Namespace};
use crate::fs::tree::{InodeId, Metadata};
use crate::fs::FileType;
use crate::linux::layouts::{Stat, Statx, StatxTimestamp, Timespec};
use crate::linux::Errno;
use crate::user_memory::{read_value, write_value};

/// The device numbers `stat` reports for the in-memory file system, `/proc`, pipes and
/// sockets.
const FILE_SYSTEM_DEVICE: (u32, u32) = (0, 1);
const PROC_DEVICE: (u32, u32) = (0, 2);
const PIPE_DEVICE: (u32, u32) = (0, 3);
const SOCKET_DEVICE: (u32, u32) = (0, 4);

/// Preferred I/O size.
const BLOCK_SIZE: u32 = 4096;

/// A file's metadata and the device it lives on.
struct Described {
    metadata: Metadata,
    device: (u32, u32),
}

fn describe_location(files: &Files, caller: &Caller<'_>, location: Location) -> Result<Described, Errno> {
    let view = files.view(caller.processes, caller.pid);
    let device = match location {
        Location::Inode(_) => FILE_SYSTEM_DEVICE,
        Location::Proc(_) => PROC_DEVICE,
    };
    Ok(Described { metadata: view.metadata(location, files.now_ns())?, device })
}

fn describe_file(files: &Files, caller: &Caller<'_>, file: &FileRef) -> Result<Described, Errno> {
    let open = file.borrow();
    match &open.node {
        Node::Regular { inode, .. } | Node::Device { inode, .. } => {
            Ok(Described { metadata: files.fs.metadata(*inode)?, device: FILE_SYSTEM_DEVICE })
        }
        Node::Directory { location, .. } | Node::Path(location) => describe_location(files, caller, *location),
        Node::Generated { metadata, .. } => Ok(Described { metadata: *metadata, device: PROC_DEVICE }),
        Node::PipeReader(pipe) | Node::PipeWriter(pipe) => {
            Ok(anonymous(files, pipe.borrow().id, FileType::Fifo, 0o600, PIPE_DEVICE))
        }
        // Each end is its own inode, numbered by the buffer it reads (Linux: 0777 sockets).
        Node::Socket(end) => Ok(anonymous(files, end.receive.borrow().id, FileType::Socket, 0o777, SOCKET_DEVICE)),
    }
}

/// A file with no name in the tree: a pipe or a socket, made now.
fn anonymous(files: &Files, inode: u64, kind: FileType, permissions: u32, device: (u32, u32)) -> Described {
    Described {
        metadata: Metadata {
            inode,
            kind,
            permissions,
            links: 1,
            uid: 0,
            gid: 0,
            size: 0,
            rdev: (0, 0),
            modified_ns: files.now_ns(),
            changed_ns: files.now_ns(),
        },
        device,
    }
}

/// The file a `*at` call names: `dirfd` itself for an empty path with `AT_EMPTY_PATH`
/// (any open file, pipes included), else the path resolved from `dirfd`.
enum Target {
    Location(Location),
    File(FileRef),
}

fn target(
    files: &Files,
    caller: &Caller<'_>,
    directory: u64,
    path: u64,
    empty_allowed: bool,
    follow: Follow,
) -> Result<Target, Errno> {
    let path = caller.path(path, empty_allowed)?;
    let directory = DirectoryArgument::new(directory);
    if path.is_empty() {
        return match directory {
            DirectoryArgument::WorkingDirectory => Ok(Target::Location(caller.process.cwd())),
            DirectoryArgument::Descriptor(fd) => {
                let fd = u64::try_from(fd).map_err(|_| Errno::EBADF)?;
                Ok(Target::File(caller.file(fd)?))
            }
        };
    }
    let start = caller.start(files, directory, &path)?;
    Ok(Target::Location(resolve(&files.view(caller.processes, caller.pid), start, &path, follow)?))
}

fn describe(files: &Files, caller: &Caller<'_>, target: &Target) -> Result<Described, Errno> {
    match target {
        Target::Location(location) => describe_location(files, caller, *location),
        Target::File(file) => describe_file(files, caller, file),
    }
}

fn follow_unless(stat_flags: u32, flag: u32) -> Follow {
    if stat_flags & flag != 0 {
        Follow::No
    } else {
        Follow::Yes
    }
}

fn blocks(metadata: &Metadata) -> u64 {
    match metadata.kind {
        FileType::Regular | FileType::Symlink => metadata.size.div_ceil(512),
        _ => 0,
    }
}

fn stat_of(described: &Described) -> Stat {
    let metadata = &described.metadata;
    let modified = Timespec::from_nanoseconds(metadata.modified_ns);
    Stat {
        device: u64::from(encode_device(described.device)),
        inode: metadata.inode,
        links: u64::from(metadata.links),
        mode: metadata.mode(),
        uid: metadata.uid,
        gid: metadata.gid,
        padding: 0,
        rdev: u64::from(encode_device(metadata.rdev)),
        size: metadata.size as i64,
        block_size: i64::from(BLOCK_SIZE),
        blocks: blocks(metadata) as i64,
        accessed: modified,
        modified,
        changed: Timespec::from_nanoseconds(metadata.changed_ns),
        reserved: [0; 3],
    }
}

/// `newfstatat(dirfd, path, statbuf, flags)`: `AT_SYMLINK_NOFOLLOW`, `AT_EMPTY_PATH`
/// (how libc's `fstat` asks), `AT_NO_AUTOMOUNT`.
pub fn newfstatat(
    files: &mut Files,
    caller: &mut Caller<'_>,
    directory: u64,
    path: u64,
    address: u64,
    flags_argument: u64,
) -> CallResult {
    let stat_flags = flags(flags_argument);
    if stat_flags & !(uapi::AT_SYMLINK_NOFOLLOW | uapi::AT_EMPTY_PATH | uapi::AT_NO_AUTOMOUNT) != 0 {
        return Err(Errno::EINVAL);
    }
    let follow = follow_unless(stat_flags, uapi::AT_SYMLINK_NOFOLLOW);
    let target = target(files, caller, directory, path, stat_flags & uapi::AT_EMPTY_PATH != 0, follow)?;
    let stat = stat_of(&describe(files, caller, &target)?);
    write_value(caller.memory, address, &stat)?;
    done(0u64)
}

/// `fstat(fd, statbuf)`.
pub fn fstat(files: &mut Files, caller: &mut Caller<'_>, fd: u64, address: u64) -> CallResult {
    let file = caller.file(fd)?;
    let stat = stat_of(&describe_file(files, caller, &file)?);
    write_value(caller.memory, address, &stat)?;
    done(0u64)
}

/// `stat(path, statbuf)`.
pub fn stat(files: &mut Files, caller: &mut Caller<'_>, path: u64, address: u64) -> CallResult {
    newfstatat(files, caller, WORKING_DIRECTORY, path, address, 0)
}

/// `lstat(path, statbuf)`.
pub fn lstat(files: &mut Files, caller: &mut Caller<'_>, path: u64, address: u64) -> CallResult {
    newfstatat(files, caller, WORKING_DIRECTORY, path, address, u64::from(uapi::AT_SYMLINK_NOFOLLOW))
}

fn statx_time(ns: u64) -> StatxTimestamp {
    StatxTimestamp { seconds: (ns / 1_000_000_000) as i64, nanoseconds: (ns % 1_000_000_000) as u32, reserved: 0 }
}

/// `statx(dirfd, path, flags, mask, statxbuf)`: the basic fields whatever `mask` asks
/// (Linux may return more than asked; no birth time is kept).
pub fn statx(
    files: &mut Files,
    caller: &mut Caller<'_>,
    directory: u64,
    path: u64,
    flags_argument: u64,
    mask: u64,
    address: u64,
) -> CallResult {
    let stat_flags = flags(flags_argument);
    let allowed = uapi::AT_SYMLINK_NOFOLLOW | uapi::AT_EMPTY_PATH | uapi::AT_NO_AUTOMOUNT | uapi::AT_STATX_SYNC_TYPE;
    if stat_flags & !allowed != 0
        || stat_flags & uapi::AT_STATX_SYNC_TYPE == uapi::AT_STATX_SYNC_TYPE
        || flags(mask) & uapi::STATX__RESERVED != 0
    {
        return Err(Errno::EINVAL);
    }
    let follow = follow_unless(stat_flags, uapi::AT_SYMLINK_NOFOLLOW);
    let target = target(files, caller, directory, path, stat_flags & uapi::AT_EMPTY_PATH != 0, follow)?;
    let described = describe(files, caller, &target)?;
    let metadata = &described.metadata;
    let modified = statx_time(metadata.modified_ns);
    let statx = Statx {
        mask: uapi::STATX_BASIC_STATS,
        block_size: BLOCK_SIZE,
        links: metadata.links,
        uid: metadata.uid,
        gid: metadata.gid,
        mode: metadata.mode() as u16,
        inode: metadata.inode,
        size: metadata.size,
        blocks: blocks(metadata),
        accessed: modified,
        changed: statx_time(metadata.changed_ns),
        modified,
        rdev_major: metadata.rdev.0,
        rdev_minor: metadata.rdev.1,
        device_major: described.device.0,
        device_minor: described.device.1,
        ..Statx::default()
    };
    write_value(caller.memory, address, &statx)?;
    done(0u64)
}

/// `faccessat2(dirfd, path, mode, flags)`: `mode` is `F_OK` or `R_OK | W_OK | X_OK`.
pub fn faccessat2(
    files: &mut Files,
    caller: &mut Caller<'_>,
    directory: u64,
    path: u64,
    mode: u64,
    flags_argument: u64,
) -> CallResult {
    let access_flags = flags(flags_argument);
    let mode = flags(mode);
    if mode & !(uapi::R_OK | uapi::W_OK | uapi::X_OK) != 0
        || access_flags & !(uapi::AT_EACCESS | uapi::AT_SYMLINK_NOFOLLOW | uapi::AT_EMPTY_PATH) != 0
    {
        return Err(Errno::EINVAL);
    }
    let follow = follow_unless(access_flags, uapi::AT_SYMLINK_NOFOLLOW);
    let target = target(files, caller, directory, path, access_flags & uapi::AT_EMPTY_PATH != 0, follow)?;
    let metadata = describe(files, caller, &target)?.metadata;
    let executable = metadata.kind == FileType::Directory || metadata.permissions & 0o111 != 0;
    if mode & uapi::X_OK != 0 && !executable {
        return Err(Errno::EACCES);
    }
    done(0u64)
}

/// `faccessat(dirfd, path, mode)`.
pub fn faccessat(files: &mut Files, caller: &mut Caller<'_>, directory: u64, path: u64, mode: u64) -> CallResult {
    faccessat2(files, caller, directory, path, mode, 0)
}

/// `access(path, mode)`.
pub fn access(files: &mut Files, caller: &mut Caller<'_>, path: u64, mode: u64) -> CallResult {
    faccessat2(files, caller, WORKING_DIRECTORY, path, mode, 0)
}

/// `readlinkat(dirfd, path, buf, bufsiz)`: the target, cut to `bufsiz`, without a NUL;
/// EINVAL if not a link or `bufsiz` is not positive. An empty path reads the link
/// `dirfd` names (an `O_PATH | O_NOFOLLOW` descriptor; ENOENT for anything else).
pub fn readlinkat(
    files: &mut Files,
    caller: &mut Caller<'_>,
    directory: u64,
    path: u64,
    address: u64,
    size: u64,
) -> CallResult {
    let size = size as u32 as i32;
    if size <= 0 {
        return Err(Errno::EINVAL);
    }
    let path = caller.path(path, true)?;
    let directory = DirectoryArgument::new(directory);
    let view = files.view(caller.processes, caller.pid);
    let location = if path.is_empty() {
        let location = match directory {
            DirectoryArgument::WorkingDirectory => None,
            DirectoryArgument::Descriptor(fd) => caller.location_of(fd)?,
        };
        location.filter(|&location| view.kind(location) == Ok(FileType::Symlink)).ok_or(Errno::ENOENT)?
    } else {
        resolve(&view, caller.start(files, directory, &path)?, &path, Follow::No)?
    };
    if view.kind(location)? != FileType::Symlink {
        return Err(Errno::EINVAL);
    }
    let link = view.link_target(location)?;
    let length = link.len().min(size as usize);
    caller.memory.write(address, &link[..length])?;
    done(length as u64)
}

/// `readlink(path, buf, bufsiz)`: as `readlinkat` from the working directory, but an
/// empty path is ENOENT.
pub fn readlink(files: &mut Files, caller: &mut Caller<'_>, path: u64, address: u64, size: u64) -> CallResult {
    caller.path(path, false)?;
    readlinkat(files, caller, WORKING_DIRECTORY, path, address, size)
}

/// The inode a change applies to: `/proc` cannot be changed (EPERM), nor can a pipe's
/// fixed mode and owner.
fn changeable(target: &Target) -> Result<InodeId, Errno> {
    let location = match target {
        Target::Location(location) => *location,
        Target::File(file) => {
            let open = file.borrow();
            match &open.node {
                Node::Regular { inode, .. } | Node::Device { inode, .. } => Location::Inode(*inode),
                Node::Directory { location, .. } | Node::Path(location) => *location,
                _ => return Err(Errno::EPERM),
            }
        }
    };
    match location {
        Location::Inode(id) => Ok(id),
        Location::Proc(_) => Err(Errno::EPERM),
    }
}

/// `fchmodat2(dirfd, path, mode, flags)`: permission bits (set-id and sticky included).
pub fn fchmodat2(
    files: &mut Files,
    caller: &mut Caller<'_>,
    directory: u64,
    path: u64,
    mode: u64,
    flags_argument: u64,
) -> CallResult {
    let change_flags = flags(flags_argument);
    if change_flags & !(uapi::AT_SYMLINK_NOFOLLOW | uapi::AT_EMPTY_PATH) != 0 {
        return Err(Errno::EINVAL);
    }
    let follow = follow_unless(change_flags, uapi::AT_SYMLINK_NOFOLLOW);
    let target = target(files, caller, directory, path, change_flags & uapi::AT_EMPTY_PATH != 0, follow)?;
    let id = changeable(&target)?;
    if follow == Follow::No && files.fs.kind(id)? == FileType::Symlink {
        // A link's own mode cannot be changed on Linux either.
        return Err(Errno::EOPNOTSUPP);
    }
    files.fs.set_permissions(id, flags(mode))?;
    done(0u64)
}

/// `fchmodat(dirfd, path, mode)`.
pub fn fchmodat(files: &mut Files, caller: &mut Caller<'_>, directory: u64, path: u64, mode: u64) -> CallResult {
    fchmodat2(files, caller, directory, path, mode, 0)
}

/// `chmod(path, mode)`.
pub fn chmod(files: &mut Files, caller: &mut Caller<'_>, path: u64, mode: u64) -> CallResult {
    fchmodat2(files, caller, WORKING_DIRECTORY, path, mode, 0)
}

/// `fchmod(fd, mode)`.
pub fn fchmod(files: &mut Files, caller: &mut Caller<'_>, fd: u64, mode: u64) -> CallResult {
    let target = Target::File(caller.file(fd)?);
    let id = changeable(&target)?;
    files.fs.set_permissions(id, flags(mode))?;
    done(0u64)
}

/// `fchownat(dirfd, path, owner, group, flags)`: -1 leaves an id unchanged.
pub fn fchownat(
    files: &mut Files,
    caller: &mut Caller<'_>,
    directory: u64,
    path: u64,
    owner: u64,
    group: u64,
    flags_argument: u64,
) -> CallResult {
    let change_flags = flags(flags_argument);
    if change_flags & !(uapi::AT_SYMLINK_NOFOLLOW | uapi::AT_EMPTY_PATH) != 0 {
        return Err(Errno::EINVAL);
    }
    let follow = follow_unless(change_flags, uapi::AT_SYMLINK_NOFOLLOW);
    let target = target(files, caller, directory, path, change_flags & uapi::AT_EMPTY_PATH != 0, follow)?;
    change_owner(files, &target, owner, group)
}

fn change_owner(files: &mut Files, target: &Target, owner: u64, group: u64) -> CallResult {
    let id = changeable(target)?;
    let metadata = files.fs.metadata(id)?;
    let pick = |argument: u64, current: u32| if argument as u32 == u32::MAX { current } else { argument as u32 };
    files.fs.set_owner(id, pick(owner, metadata.uid), pick(group, metadata.gid))?;
    done(0u64)
}

/// `chown(path, owner, group)`.
pub fn chown(files: &mut Files, caller: &mut Caller<'_>, path: u64, owner: u64, group: u64) -> CallResult {
    fchownat(files, caller, WORKING_DIRECTORY, path, owner, group, 0)
}

/// `lchown(path, owner, group)`.
pub fn lchown(files: &mut Files, caller: &mut Caller<'_>, path: u64, owner: u64, group: u64) -> CallResult {
    fchownat(files, caller, WORKING_DIRECTORY, path, owner, group, u64::from(uapi::AT_SYMLINK_NOFOLLOW))
}

/// `fchown(fd, owner, group)`.
pub fn fchown(files: &mut Files, caller: &mut Caller<'_>, fd: u64, owner: u64, group: u64) -> CallResult {
    let target = Target::File(caller.file(fd)?);
    change_owner(files, &target, owner, group)
}

/// `utimensat(dirfd, path, times, flags)`: a null `times` sets both times to now; each
/// entry may be `UTIME_NOW` or `UTIME_OMIT`. A null `path` changes the file `dirfd`
/// names (`futimens`). Only the modification time is kept (times before 1970 are kept as
/// 1970).
pub fn utimensat(
    files: &mut Files,
    caller: &mut Caller<'_>,
    directory: u64,
    path: u64,
    times: u64,
    flags_argument: u64,
) -> CallResult {
    let change_flags = flags(flags_argument);
    if change_flags & !(uapi::AT_SYMLINK_NOFOLLOW | uapi::AT_EMPTY_PATH) != 0 {
        return Err(Errno::EINVAL);
    }
    let modified = if times == 0 {
        Some(files.now_ns())
    } else {
        let pair: [Timespec; 2] = read_value(&*caller.memory, times)?;
        let mut chosen = [None; 2];
        for (slot, time) in chosen.iter_mut().zip(pair) {
            *slot = match time.nanoseconds {
                nanoseconds if nanoseconds == i64::from(uapi::UTIME_OMIT) => None,
                nanoseconds if nanoseconds == i64::from(uapi::UTIME_NOW) => Some(files.now_ns()),
                0..=999_999_999 => Some(
                    u64::try_from(time.seconds)
                        .unwrap_or(0)
                        .saturating_mul(1_000_000_000)
                        .saturating_add(time.nanoseconds as u64),
                ),
                _ => return Err(Errno::EINVAL),
            };
        }
        chosen[1]
    };
    let target = if path == 0 {
        match DirectoryArgument::new(directory) {
            DirectoryArgument::WorkingDirectory => return Err(Errno::EFAULT),
            DirectoryArgument::Descriptor(fd) => {
                Target::File(caller.file(u64::try_from(fd).map_err(|_| Errno::EBADF)?)?)
            }
        }
    } else {
        let follow = follow_unless(change_flags, uapi::AT_SYMLINK_NOFOLLOW);
        target(files, caller, directory, path, change_flags & uapi::AT_EMPTY_PATH != 0, follow)?
    };
    let id = changeable(&target)?;
    if let Some(modified) = modified {
        files.fs.set_modified(id, modified)?;
    }
    done(0u64)
}

/// `truncate(path, length)`.
pub fn truncate(files: &mut Files, caller: &mut Caller<'_>, path: u64, length: u64) -> CallResult {
    if (length as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    let target = target(files, caller, WORKING_DIRECTORY, path, false, Follow::Yes)?;
    let Target::Location(location) = target else { return Err(Errno::ENOENT) };
    let Location::Inode(id) = location else { return Err(Errno::EACCES) };
    files.fs.truncate(id, length)?;
    done(0u64)
}

/// `ftruncate(fd, length)`: EINVAL unless a regular file open for writing.
pub fn ftruncate(files: &mut Files, caller: &mut Caller<'_>, fd: u64, length: u64) -> CallResult {
    let file = caller.file(fd)?;
    if (length as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    let open = file.borrow();
    match open.node {
        Node::Path(_) => Err(Errno::EBADF),
        Node::Regular { inode, .. } if open.access.writes() => {
            files.fs.truncate(inode, length)?;
            done(0u64)
        }
        _ => Err(Errno::EINVAL),
    }
}

/// `sync()`: nothing to write back.
pub fn sync(_files: &mut Files, _caller: &mut Caller<'_>) -> CallResult {
    done(0u64)
}

/// `fsync(fd)`, `fdatasync(fd)`, `syncfs(fd)`: nothing to write back; EINVAL for pipes,
/// sockets and the console, which cannot be synchronized, as on Linux.
pub fn fsync(_files: &mut Files, caller: &mut Caller<'_>, fd: u64) -> CallResult {
    let file = caller.file(descriptor(fd))?;
    let open = file.borrow();
    match open.node {
        Node::PipeReader(_) | Node::PipeWriter(_) | Node::Socket(_) => Err(Errno::EINVAL),
        Node::Path(_) => Err(Errno::EBADF),
        _ if open.is_console() => Err(Errno::EINVAL),
        _ => done(0u64),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{World, BAD, BUFFER, STRINGS, STRINGS2};
    use super::*;
    use crate::user_memory::read_value;
    use uapi::*;

    fn stat_path(world: &mut World, path: &[u8]) -> Stat {
        let path = world.string(STRINGS, path);
        world.ok(__NR_stat, &[path, BUFFER]);
        read_value(&world.memory, BUFFER).unwrap()
    }

    fn stat_fd(world: &mut World, fd: u64) -> Stat {
        let empty = world.string(STRINGS2, b"");
        world.ok(__NR_newfstatat, &[fd, empty, BUFFER, u64::from(AT_EMPTY_PATH)]);
        read_value(&world.memory, BUFFER).unwrap()
    }

    #[test]
    fn stat_fills_linux_struct_stat() {
        let mut world = World::new();
        let stat = stat_path(&mut world, b"/bin/sh");
        assert_eq!(stat.mode, S_IFREG | 0o755, "stat follows the link");
        assert_eq!(stat.size, 5000);
        assert_eq!((stat.blocks, stat.block_size, stat.links), (10, 4096, 1));
        assert_eq!(stat.modified, Timespec { seconds: 1000, nanoseconds: 0 });
        assert_eq!(stat.accessed, stat.modified);
        assert_eq!(stat.device, 1);
        let path = world.string(STRINGS, b"/bin/sh");
        world.ok(__NR_lstat, &[path, BUFFER]);
        let link: Stat = read_value(&world.memory, BUFFER).unwrap();
        assert_eq!((link.mode, link.size), (S_IFLNK | 0o777, 7), "lstat names the link: its target's length");
        assert_ne!(link.inode, stat.inode);
        let directory = stat_path(&mut world, b"/");
        assert_eq!(directory.mode & S_IFMT, S_IFDIR);
        assert_eq!(directory.links, 7, "2 and the .. of bin, etc, tmp, dev, proc");
        let null = stat_path(&mut world, b"/dev/null");
        assert_eq!((null.mode, null.rdev), (S_IFCHR | 0o666, 0x103), "rdev as Linux encodes 1:3");
        let (read_end, _) = world.pipe(0);
        let pipe = stat_fd(&mut world, read_end);
        assert_eq!((pipe.mode, pipe.device), (S_IFIFO | 0o600, 3), "fstat of a pipe (libc asks with AT_EMPTY_PATH)");
        let fd = world.open(b"/etc/motd", O_RDONLY);
        world.ok(__NR_fstat, &[fd, BUFFER]);
        let by_fd: Stat = read_value(&world.memory, BUFFER).unwrap();
        assert_eq!(by_fd, stat_path(&mut world, b"/etc/motd"));
        let proc = stat_path(&mut world, b"/proc/7");
        assert_eq!((proc.mode, proc.device), (S_IFDIR | 0o555, 2));
    }

    #[test]
    fn stat_reports_bad_arguments() {
        let mut world = World::new();
        let path = world.string(STRINGS, b"/etc/motd");
        assert_eq!(world.error(__NR_stat, &[path, BAD]), Errno::EFAULT);
        assert_eq!(world.error(__NR_stat, &[BAD, BUFFER]), Errno::EFAULT);
        assert_eq!(world.error(__NR_newfstatat, &[WORKING_DIRECTORY, path, BUFFER, 0x8000_0000]), Errno::EINVAL);
        let empty = world.string(STRINGS, b"");
        assert_eq!(world.error(__NR_newfstatat, &[WORKING_DIRECTORY, empty, BUFFER, 0]), Errno::ENOENT);
        assert_eq!(world.error(__NR_newfstatat, &[55, empty, BUFFER, u64::from(AT_EMPTY_PATH)]), Errno::EBADF);
        assert_eq!(world.error(__NR_fstat, &[55, BUFFER]), Errno::EBADF);
        let missing = world.string(STRINGS, b"/etc/none");
        assert_eq!(world.error(__NR_stat, &[missing, BUFFER]), Errno::ENOENT);
        let through_file = world.string(STRINGS, b"/etc/motd/x");
        assert_eq!(world.error(__NR_stat, &[through_file, BUFFER]), Errno::ENOTDIR);
    }

    #[test]
    fn statx_agrees_with_stat() {
        let mut world = World::new();
        let stat = stat_path(&mut world, b"/bin/busybox");
        let path = world.string(STRINGS, b"/bin/busybox");
        world.ok(__NR_statx, &[WORKING_DIRECTORY, path, 0, u64::from(STATX_ALL), BUFFER]);
        let statx: Statx = read_value(&world.memory, BUFFER).unwrap();
        assert_eq!(statx.mask, STATX_BASIC_STATS);
        assert_eq!(u32::from(statx.mode), stat.mode);
        assert_eq!((statx.inode, statx.size, statx.blocks), (stat.inode, 5000, 10));
        assert_eq!(statx.modified.seconds, 1000);
        assert_eq!((statx.device_major, statx.device_minor), (0, 1));
        assert_eq!(
            world.error(__NR_statx, &[WORKING_DIRECTORY, path, 0, u64::from(STATX__RESERVED), BUFFER]),
            Errno::EINVAL
        );
        let sync = u64::from(AT_STATX_SYNC_TYPE);
        assert_eq!(world.error(__NR_statx, &[WORKING_DIRECTORY, path, sync, 0, BUFFER]), Errno::EINVAL);
    }

    #[test]
    fn access_grants_root_what_linux_grants() {
        let mut world = World::new();
        let program = world.string(STRINGS, b"/bin/sh");
        assert_eq!(world.ok(__NR_access, &[program, u64::from(R_OK | W_OK | X_OK)]), 0);
        let text = world.string(STRINGS, b"/etc/motd");
        assert_eq!(world.ok(__NR_access, &[text, u64::from(R_OK | W_OK)]), 0);
        assert_eq!(world.error(__NR_access, &[text, u64::from(X_OK)]), Errno::EACCES, "no execute bit");
        assert_eq!(world.error(__NR_access, &[text, 8]), Errno::EINVAL);
        let missing = world.string(STRINGS, b"/nope");
        assert_eq!(world.error(__NR_access, &[missing, u64::from(F_OK)]), Errno::ENOENT);
        let etc = world.string(STRINGS, b"/etc");
        assert_eq!(world.ok(__NR_faccessat2, &[WORKING_DIRECTORY, etc, u64::from(X_OK), u64::from(AT_EACCESS)]), 0);
        assert_eq!(world.error(__NR_faccessat2, &[WORKING_DIRECTORY, etc, 0, 1]), Errno::EINVAL);
    }

    #[test]
    fn modes_owners_times_and_lengths_change() {
        let mut world = World::new();
        let path = world.string(STRINGS, b"/etc/motd");
        world.ok(__NR_chmod, &[path, 0o4711]);
        assert_eq!(stat_path(&mut world, b"/etc/motd").mode, S_IFREG | 0o4711);
        let fd = world.open(b"/etc/motd", O_RDWR);
        world.ok(__NR_fchmod, &[fd, 0o600]);
        assert_eq!(stat_path(&mut world, b"/etc/motd").mode, S_IFREG | 0o600);
        let path = world.string(STRINGS, b"/etc/motd");
        world.ok(__NR_chown, &[path, 1000, u64::from(u32::MAX)]);
        let stat = stat_path(&mut world, b"/etc/motd");
        assert_eq!((stat.uid, stat.gid), (1000, 0), "-1 keeps the group");
        let link = world.string(STRINGS, b"/bin/sh");
        let nofollow = u64::from(AT_SYMLINK_NOFOLLOW);
        assert_eq!(world.error(__NR_fchmodat2, &[WORKING_DIRECTORY, link, 0o700, nofollow]), Errno::EOPNOTSUPP);
        let proc = world.string(STRINGS, b"/proc/uptime");
        assert_eq!(world.error(__NR_chmod, &[proc, 0o777]), Errno::EPERM);
        let (read_end, _) = world.pipe(0);
        assert_eq!(world.error(__NR_fchmod, &[read_end, 0o777]), Errno::EPERM);

        world.files.set_now(5_000_000_000_000);
        let path = world.string(STRINGS, b"/etc/motd");
        world.ok(__NR_utimensat, &[WORKING_DIRECTORY, path, 0, 0]);
        assert_eq!(stat_path(&mut world, b"/etc/motd").modified.seconds, 5000, "null times: now");
        let times =
            [Timespec { seconds: 0, nanoseconds: i64::from(UTIME_NOW) }, Timespec { seconds: 77, nanoseconds: 9 }];
        world.put(STRINGS2, zerocopy::IntoBytes::as_bytes(&times));
        let path = world.string(STRINGS, b"/etc/motd");
        world.ok(__NR_utimensat, &[WORKING_DIRECTORY, path, STRINGS2, 0]);
        assert_eq!(stat_path(&mut world, b"/etc/motd").modified, Timespec { seconds: 77, nanoseconds: 9 });
        let times =
            [Timespec { seconds: 0, nanoseconds: 0 }, Timespec { seconds: 0, nanoseconds: i64::from(UTIME_OMIT) }];
        world.put(STRINGS2, zerocopy::IntoBytes::as_bytes(&times));
        world.ok(__NR_utimensat, &[fd, 0, STRINGS2, 0]);
        assert_eq!(stat_path(&mut world, b"/etc/motd").modified.seconds, 77, "UTIME_OMIT keeps it (futimens)");
        let bad = [Timespec { seconds: 0, nanoseconds: 1_000_000_000 }; 2];
        world.put(STRINGS2, zerocopy::IntoBytes::as_bytes(&bad));
        assert_eq!(world.error(__NR_utimensat, &[fd, 0, STRINGS2, 0]), Errno::EINVAL);
        assert_eq!(world.error(__NR_utimensat, &[WORKING_DIRECTORY, 0, 0, 0]), Errno::EFAULT);

        let path = world.string(STRINGS, b"/etc/motd");
        world.ok(__NR_truncate, &[path, 2]);
        assert_eq!(stat_path(&mut world, b"/etc/motd").size, 2);
        world.ok(__NR_ftruncate, &[fd, 100]);
        assert_eq!(stat_path(&mut world, b"/etc/motd").size, 100);
        assert_eq!(world.error(__NR_ftruncate, &[fd, u64::MAX]), Errno::EINVAL);
        let reader = world.open(b"/etc/motd", O_RDONLY);
        assert_eq!(world.error(__NR_ftruncate, &[reader, 0]), Errno::EINVAL, "not open for writing");
        let etc = world.string(STRINGS, b"/etc");
        assert_eq!(world.error(__NR_truncate, &[etc, 0]), Errno::EISDIR);
        assert_eq!(world.ok(__NR_fsync, &[fd]), 0);
        assert_eq!(world.error(__NR_fsync, &[read_end]), Errno::EINVAL);
        assert_eq!(world.ok(__NR_sync, &[]), 0);
    }
}
