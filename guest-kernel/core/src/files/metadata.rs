//! What is known about a file and changing it without opening it: the `stat` family and
//! `statx`, `access`, `readlink`, `chmod`, `chown`, `utimensat`, `truncate`, and the
//! `sync` family (the file system is memory: there is nothing to flush).
//!
//! Everyone is root (the kernel has one user), so `access` grants reading and writing
//! and grants execution where an execute bit is set or for directories, as Linux grants
//! root. Only modification times are kept: access times read as the modification time.

use linux_raw_sys::general as uapi;

use super::caller::{descriptor, flags, Caller, DirectoryArgument};
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

/// The device numbers `stat` reports for the in-memory file system, `/proc` and pipes.
const FILE_SYSTEM_DEVICE: (u32, u32) = (0, 1);
const PROC_DEVICE: (u32, u32) = (0, 2);
const PIPE_DEVICE: (u32, u32) = (0, 3);

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
        Node::PipeReader(pipe) | Node::PipeWriter(pipe) => Ok(Described {
            metadata: Metadata {
                inode: pipe.borrow().id,
                kind: FileType::Fifo,
                permissions: 0o600,
                links: 1,
                uid: 0,
                gid: 0,
                size: 0,
                rdev: (0, 0),
                modified_ns: files.now_ns(),
                changed_ns: files.now_ns(),
            },
            device: PIPE_DEVICE,
        }),
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
    newfstatat(files, caller, uapi::AT_FDCWD as u32 as u64, path, address, 0)
}

/// `lstat(path, statbuf)`.
pub fn lstat(files: &mut Files, caller: &mut Caller<'_>, path: u64, address: u64) -> CallResult {
    newfstatat(files, caller, uapi::AT_FDCWD as u32 as u64, path, address, u64::from(uapi::AT_SYMLINK_NOFOLLOW))
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
    faccessat2(files, caller, uapi::AT_FDCWD as u32 as u64, path, mode, 0)
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
    readlinkat(files, caller, uapi::AT_FDCWD as u32 as u64, path, address, size)
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
    fchmodat2(files, caller, uapi::AT_FDCWD as u32 as u64, path, mode, 0)
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
    fchownat(files, caller, uapi::AT_FDCWD as u32 as u64, path, owner, group, 0)
}

/// `lchown(path, owner, group)`.
pub fn lchown(files: &mut Files, caller: &mut Caller<'_>, path: u64, owner: u64, group: u64) -> CallResult {
    fchownat(files, caller, uapi::AT_FDCWD as u32 as u64, path, owner, group, u64::from(uapi::AT_SYMLINK_NOFOLLOW))
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
    let target = target(files, caller, uapi::AT_FDCWD as u32 as u64, path, false, Follow::Yes)?;
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

/// `fsync(fd)`, `fdatasync(fd)`, `syncfs(fd)`: nothing to write back; EINVAL for pipes
/// and the console, which cannot be synchronized, as on Linux.
pub fn fsync(_files: &mut Files, caller: &mut Caller<'_>, fd: u64) -> CallResult {
    let file = caller.file(descriptor(fd))?;
    let open = file.borrow();
    match open.node {
        Node::PipeReader(_) | Node::PipeWriter(_) => Err(Errno::EINVAL),
        Node::Path(_) => Err(Errno::EBADF),
        _ if open.is_console() => Err(Errno::EINVAL),
        _ => done(0u64),
    }
}
