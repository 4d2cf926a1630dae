//! Opening and closing: `openat` (and `open`, `creat`), `close`, `dup`, `dup2`, `dup3`,
//! `fcntl`, `pipe2` (and `pipe`).
//!
//! `openat` honours `O_CREAT` (through a dangling symbolic link too, as Linux creates
//! its target), `O_EXCL`, `O_TRUNC`, `O_APPEND`, `O_NONBLOCK`, `O_DIRECTORY`,
//! `O_NOFOLLOW`, `O_CLOEXEC` and `O_PATH`; `O_TMPFILE` is EOPNOTSUPP. Device nodes open
//! their driver by number (`/dev/null`, `/dev/zero`, `/dev/console`, `/dev/tty`); other
//! devices, named pipes and sockets have none here (ENXIO). `/proc` files open
//! read-only (EACCES for writing) with their bytes made at open.

use linux_raw_sys::general as uapi;

use super::caller::{descriptor, flags, Caller, DirectoryArgument, WORKING_DIRECTORY};
use super::namespace::{Location, View};
use super::open_file::{share, Access, Cursor, Device, FileRef, Node, OpenFile};
use super::outcome::{done, CallResult};
use super::world::Files;
use crate::descriptors::DescriptorCommand;
use crate::fs::path::{resolve, resolve_parent, Follow, Namespace, SYMLINK_LIMIT};
use crate::fs::tree::NewNode;
use crate::fs::FileType;
use crate::linux::Errno;
use crate::pipe::CAPACITY;
use alloc::vec::Vec;

/// `open(path, flags, mode)`.
pub fn open(files: &mut Files, caller: &mut Caller<'_>, path: u64, flags: u64, mode: u64) -> CallResult {
    openat(files, caller, WORKING_DIRECTORY, path, flags, mode)
}

/// `creat(path, mode)`: `open` with `O_CREAT | O_WRONLY | O_TRUNC`.
pub fn creat(files: &mut Files, caller: &mut Caller<'_>, path: u64, mode: u64) -> CallResult {
    open(files, caller, path, u64::from(uapi::O_CREAT | uapi::O_WRONLY | uapi::O_TRUNC), mode)
}

/// What `O_CREAT` found or made.
enum Found {
    Existing(Location),
    Created(Location),
}

/// Finds the file an `O_CREAT` open names or creates it: a dangling symbolic link's
/// target is created (unless `O_EXCL` or `O_NOFOLLOW`, which refuse a link).
fn find_or_create(
    files: &mut Files,
    caller: &Caller<'_>,
    start: Location,
    path: &[u8],
    open_flags: u32,
    permissions: u32,
) -> Result<Found, Errno> {
    let mut start = start;
    let mut path: Vec<u8> = path.to_vec();
    for _ in 0..=SYMLINK_LIMIT {
        let view = files.view(caller.processes, caller.pid);
        let (parent, name, trailing_slash) = resolve_parent(&view, start, &path)?;
        match view.lookup(parent, name) {
            Ok(existing) => {
                if open_flags & uapi::O_EXCL != 0 {
                    return Err(Errno::EEXIST);
                }
                match view.kind(existing)? {
                    FileType::Symlink if open_flags & uapi::O_NOFOLLOW != 0 => return Err(Errno::ELOOP),
                    FileType::Symlink => {
                        path = view.link_target(existing)?.into_owned();
                        start = parent;
                        continue;
                    }
                    FileType::Directory => return Err(Errno::EISDIR),
                    _ if trailing_slash => return Err(Errno::ENOTDIR),
                    _ => return Ok(Found::Existing(existing)),
                }
            }
            Err(Errno::ENOENT) => {
                if trailing_slash {
                    return Err(Errno::EISDIR);
                }
                let Location::Inode(parent) = parent else { return Err(Errno::EACCES) };
                let name = name.to_vec();
                let id = files.fs.create(parent, &name, NewNode::File, permissions)?;
                return Ok(Found::Created(Location::Inode(id)));
            }
            Err(error) => return Err(error),
        }
    }
    Err(Errno::ELOOP)
}

/// `openat(dirfd, path, flags, mode)`.
pub fn openat(
    files: &mut Files,
    caller: &mut Caller<'_>,
    directory: u64,
    path: u64,
    flags_argument: u64,
    mode: u64,
) -> CallResult {
    let open_flags = flags(flags_argument);
    if open_flags & uapi::O_TMPFILE == uapi::O_TMPFILE {
        return Err(Errno::EOPNOTSUPP);
    }
    let path_only = open_flags & uapi::O_PATH != 0;
    let access = if path_only {
        Access::Path
    } else {
        match open_flags & uapi::O_ACCMODE {
            uapi::O_RDONLY => Access::Read,
            uapi::O_WRONLY => Access::Write,
            uapi::O_RDWR => Access::ReadWrite,
            _ => return Err(Errno::EINVAL),
        }
    };
    let create = !path_only && open_flags & uapi::O_CREAT != 0;
    if create && open_flags & uapi::O_DIRECTORY != 0 {
        return Err(Errno::EINVAL);
    }
    let path = caller.path(path, false)?;
    if caller.process.descriptors().is_full() {
        return Err(Errno::EMFILE);
    }
    let start = caller.start(files, DirectoryArgument::new(directory), &path)?;
    let (location, created) = if create {
        let permissions = flags(mode) & 0o7777 & !caller.process.umask();
        match find_or_create(files, caller, start, &path, open_flags, permissions)? {
            Found::Existing(location) => (location, false),
            Found::Created(location) => (location, true),
        }
    } else {
        let follow = if open_flags & uapi::O_NOFOLLOW != 0 { Follow::No } else { Follow::Yes };
        (resolve(&files.view(caller.processes, caller.pid), start, &path, follow)?, false)
    };
    let node = open_node(files, caller, location, access, open_flags, created)?;
    let file = share(OpenFile::new(node, access, open_flags));
    let close_on_exec = open_flags & uapi::O_CLOEXEC != 0;
    match caller.process.descriptors_mut().insert(file.clone(), close_on_exec) {
        Ok(descriptor) => done(descriptor),
        Err(error) => {
            files.release(file);
            Err(error)
        }
    }
}

/// The open file for `location`, holding what it refers to.
fn open_node(
    files: &mut Files,
    caller: &Caller<'_>,
    location: Location,
    access: Access,
    open_flags: u32,
    created: bool,
) -> Result<Node, Errno> {
    let view: View<'_> = files.view(caller.processes, caller.pid);
    let kind = view.kind(location)?;
    if open_flags & uapi::O_DIRECTORY != 0 && kind != FileType::Directory {
        return Err(Errno::ENOTDIR);
    }
    if access == Access::Path {
        files.hold(location)?;
        return Ok(Node::Path(location));
    }
    match (location, kind) {
        (_, FileType::Symlink) => Err(Errno::ELOOP),
        (_, FileType::Directory) => {
            if access.writes() {
                return Err(Errno::EISDIR);
            }
            files.hold(location)?;
            Ok(Node::Directory { location, cursor: Cursor::default() })
        }
        (Location::Inode(inode), FileType::Regular) => {
            if open_flags & uapi::O_TRUNC != 0 && access.writes() && !created {
                files.fs.truncate(inode, 0)?;
            }
            files.fs.hold(inode)?;
            Ok(Node::Regular { inode, offset: 0 })
        }
        (Location::Inode(inode), FileType::CharDevice) => {
            let device = Device::from_number(files.fs.metadata(inode)?.rdev)?;
            files.fs.hold(inode)?;
            Ok(Node::Device { inode, device })
        }
        (Location::Inode(_), _) => Err(Errno::ENXIO),
        (Location::Proc(node), _) => {
            if access.writes() {
                return Err(Errno::EACCES);
            }
            let metadata = node.metadata(caller.processes, files.now_ns())?;
            let bytes = node.contents(caller.processes, &files.proc_context())?;
            Ok(Node::Generated { bytes, metadata, offset: 0 })
        }
    }
}

/// `close(fd)`.
pub fn close(files: &mut Files, caller: &mut Caller<'_>, fd: u64) -> CallResult {
    let file = caller.process.descriptors_mut().remove(descriptor(fd))?;
    files.release(file);
    done(0u64)
}

/// `dup(fd)`.
pub fn dup(_files: &mut Files, caller: &mut Caller<'_>, fd: u64) -> CallResult {
    done(caller.process.descriptors_mut().duplicate(descriptor(fd))?)
}

/// `dup2(oldfd, newfd)`: closes what `newfd` named; `oldfd == newfd` only checks it.
pub fn dup2(files: &mut Files, caller: &mut Caller<'_>, old: u64, new: u64) -> CallResult {
    let (old, new) = (descriptor(old), descriptor(new));
    if let Some(replaced) = caller.process.descriptors_mut().duplicate_to(old, new, false, true)? {
        files.release(replaced);
    }
    done(new)
}

/// `dup3(oldfd, newfd, flags)`: `flags` is 0 or `O_CLOEXEC`; EINVAL if `oldfd == newfd`.
pub fn dup3(files: &mut Files, caller: &mut Caller<'_>, old: u64, new: u64, flags_argument: u64) -> CallResult {
    let dup_flags = flags(flags_argument);
    if dup_flags & !uapi::O_CLOEXEC != 0 {
        return Err(Errno::EINVAL);
    }
    let (old, new) = (descriptor(old), descriptor(new));
    let close_on_exec = dup_flags & uapi::O_CLOEXEC != 0;
    if let Some(replaced) = caller.process.descriptors_mut().duplicate_to(old, new, close_on_exec, false)? {
        files.release(replaced);
    }
    done(new)
}

/// `fcntl(fd, cmd, arg)`: `F_DUPFD`, `F_DUPFD_CLOEXEC`, `F_GETFD`, `F_SETFD`, `F_GETFL`,
/// `F_SETFL` (`O_APPEND` and `O_NONBLOCK` change; other flags are kept, as Linux ignores
/// them), `F_GETPIPE_SZ`, and `F_SETPIPE_SZ` (a pipe holds [`CAPACITY`] bytes: a request
/// up to that answers it, a larger one is EPERM). Anything else (record locks, owners)
/// is EINVAL.
pub fn fcntl(_files: &mut Files, caller: &mut Caller<'_>, fd: u64, command: u64, argument: u64) -> CallResult {
    let fd = descriptor(fd);
    let command = u64::from(flags(command));
    if let Some(command) = DescriptorCommand::new(command, argument) {
        return done(caller.process.descriptors_mut().command(fd, command)?);
    }
    let file = caller.file(fd)?;
    let mut open = file.borrow_mut();
    match command as u32 {
        uapi::F_GETFL => done(open.status_flags()),
        uapi::F_SETFL => {
            open.set_status_flags(flags(argument));
            done(0u64)
        }
        uapi::F_GETPIPE_SZ | uapi::F_SETPIPE_SZ => {
            if !matches!(open.node, Node::PipeReader(_) | Node::PipeWriter(_)) {
                return Err(Errno::EBADF);
            }
            if command as u32 == uapi::F_SETPIPE_SZ && argument > CAPACITY as u64 {
                return Err(Errno::EPERM);
            }
            done(CAPACITY as u64)
        }
        _ => Err(Errno::EINVAL),
    }
}

/// `pipe2(fds, flags)`: `flags` is `O_CLOEXEC` and/or `O_NONBLOCK` (packet mode,
/// `O_DIRECT`, is not supported: EINVAL). ENFILE past the kernel's pipe bound.
pub fn pipe2(files: &mut Files, caller: &mut Caller<'_>, address: u64, flags_argument: u64) -> CallResult {
    let pipe_flags = flags(flags_argument);
    if pipe_flags & !(uapi::O_CLOEXEC | uapi::O_NONBLOCK) != 0 {
        return Err(Errno::EINVAL);
    }
    let close_on_exec = pipe_flags & uapi::O_CLOEXEC != 0;
    let pipe = files.new_pipe()?;
    let reader = share(OpenFile::new(Node::PipeReader(pipe.clone()), Access::Read, pipe_flags));
    let writer = share(OpenFile::new(Node::PipeWriter(pipe), Access::Write, pipe_flags));
    install_pair(files, caller, address, [reader, writer], close_on_exec)
}

/// Gives the caller two new open files (`pipe2`, `socketpair`): the lowest free
/// descriptors, their numbers written as two `int`s at `address`. On any failure (EMFILE,
/// EFAULT) neither stays installed and both are released.
pub(crate) fn install_pair(
    files: &mut Files,
    caller: &mut Caller<'_>,
    address: u64,
    [first, second]: [FileRef; 2],
    close_on_exec: bool,
) -> CallResult {
    let descriptors = caller.process.descriptors_mut();
    let installed = descriptors.insert(first.clone(), close_on_exec).and_then(|first_end| {
        match descriptors.insert(second.clone(), close_on_exec) {
            Ok(second_end) => Ok((first_end, second_end)),
            Err(error) => {
                let _ = descriptors.remove(first_end);
                Err(error)
            }
        }
    });
    let written = installed.and_then(|(first_end, second_end)| {
        let ends = [first_end as i32, second_end as i32];
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&ends[0].to_le_bytes());
        bytes[4..].copy_from_slice(&ends[1].to_le_bytes());
        caller.memory.write(address, &bytes).inspect_err(|_| {
            let descriptors = caller.process.descriptors_mut();
            let _ = descriptors.remove(first_end);
            let _ = descriptors.remove(second_end);
        })
    });
    match written {
        Ok(()) => done(0u64),
        Err(error) => {
            files.release(first);
            files.release(second);
            Err(error)
        }
    }
}

/// `pipe(fds)`.
pub fn pipe(files: &mut Files, caller: &mut Caller<'_>, address: u64) -> CallResult {
    pipe2(files, caller, address, 0)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{World, BAD, BUFFER, STRINGS, STRINGS2};
    use super::*;
    use crate::linux::layouts::Stat;
    use crate::user_memory::read_value;
    use uapi::*;

    fn mode_of(world: &mut World, path: &[u8]) -> u32 {
        let path = world.string(STRINGS, path);
        world.ok(__NR_stat, &[path, BUFFER]);
        read_value::<Stat>(&world.memory, BUFFER).unwrap().mode
    }

    #[test]
    fn files_open_read_and_close() {
        let mut world = World::new();
        let fd = world.open(b"/etc/motd", O_RDONLY);
        assert_eq!(fd, 0, "the lowest free descriptor");
        assert_eq!(world.read(fd, 3), b"hel");
        assert_eq!(world.read(fd, 100), b"lo\n", "the offset moved");
        assert_eq!(world.read(fd, 100), b"", "end of file");
        assert_eq!(world.ok(__NR_close, &[fd]), 0);
        assert_eq!(world.error(__NR_read, &[fd, BUFFER, 1]), Errno::EBADF);
        assert_eq!(world.error(__NR_close, &[fd]), Errno::EBADF);
        let etc = world.open(b"/etc", O_RDONLY | O_DIRECTORY);
        let relative = world.string(STRINGS2, b"motd");
        let fd = world.ok(__NR_openat, &[etc, relative, 0, 0]);
        assert_eq!(world.read(fd, 5), b"hello", "relative to the directory descriptor");
        let at_cwd = WORKING_DIRECTORY;
        assert_eq!(world.error(__NR_openat, &[at_cwd, relative, 0, 0]), Errno::ENOENT, "relative to the root");
        let file = world.open(b"/etc/motd", O_RDONLY);
        let relative = world.string(STRINGS2, b"motd");
        assert_eq!(world.error(__NR_openat, &[file, relative, 0, 0]), Errno::ENOTDIR);
        assert_eq!(world.error(__NR_openat, &[99, relative, 0, 0]), Errno::EBADF);
        let absolute = world.string(STRINGS, b"/etc/motd");
        assert!(world.ok(__NR_openat, &[99, absolute, 0, 0]) > 0, "an absolute path ignores dirfd");
    }

    #[test]
    fn opening_reports_linux_errors() {
        let mut world = World::new();
        let open_error = |world: &mut World, path: &[u8], flags: u32| {
            let path = world.string(STRINGS, path);
            world.error(__NR_open, &[path, u64::from(flags), 0o644])
        };
        assert_eq!(open_error(&mut world, b"/nope", O_RDONLY), Errno::ENOENT);
        assert_eq!(open_error(&mut world, b"/etc/motd/x", O_RDONLY), Errno::ENOTDIR);
        assert_eq!(open_error(&mut world, b"/etc/motd", O_RDONLY | O_DIRECTORY), Errno::ENOTDIR);
        assert_eq!(open_error(&mut world, b"/etc", O_WRONLY), Errno::EISDIR);
        assert_eq!(open_error(&mut world, b"/etc", O_RDWR | O_CREAT), Errno::EISDIR);
        assert_eq!(open_error(&mut world, b"/etc/motd", O_RDONLY | O_CREAT | O_EXCL), Errno::EEXIST);
        assert_eq!(open_error(&mut world, b"/bin/sh", O_RDONLY | O_NOFOLLOW), Errno::ELOOP);
        assert_eq!(open_error(&mut world, b"/etc/motd", 3), Errno::EINVAL, "access mode 3");
        assert_eq!(open_error(&mut world, b"/tmp", O_TMPFILE | O_RDWR), Errno::EOPNOTSUPP);
        assert_eq!(open_error(&mut world, b"/tmp/x", O_CREAT | O_DIRECTORY), Errno::EINVAL);
        assert_eq!(open_error(&mut world, b"", O_RDONLY), Errno::ENOENT);
        assert_eq!(open_error(&mut world, b"/tmp/new/", O_CREAT | O_WRONLY), Errno::EISDIR);
        assert_eq!(world.error(__NR_open, &[BAD, 0, 0]), Errno::EFAULT);
        let fs = world.files.fs();
        assert!(fs.lookup(fs.lookup(crate::fs::tree::ROOT, b"tmp").unwrap(), b"new").is_err(), "nothing made");
    }

    #[test]
    fn creating_honours_umask_excl_trunc_and_append() {
        let mut world = World::new();
        let fd = world.open(b"/tmp/new", O_CREAT | O_WRONLY | O_EXCL);
        assert_eq!(mode_of(&mut world, b"/tmp/new"), S_IFREG | 0o644 & !0o022);
        world.write(fd, b"0123456789");
        world.ok(__NR_umask, &[0o077]);
        world.open(b"/tmp/private", O_CREAT | O_WRONLY);
        assert_eq!(mode_of(&mut world, b"/tmp/private"), S_IFREG | 0o600);
        let append = world.open(b"/tmp/new", O_WRONLY | O_APPEND);
        let other = world.open(b"/tmp/new", O_WRONLY);
        world.write(other, b"ab");
        world.write(append, b"END");
        let reader = world.open(b"/tmp/new", O_RDONLY);
        assert_eq!(world.read(reader, 100), b"ab23456789END", "O_APPEND writes at the end, others at their offset");
        world.open(b"/tmp/new", O_RDONLY | O_TRUNC);
        let reader = world.open(b"/tmp/new", O_RDONLY);
        assert_eq!(world.read(reader, 100).len(), 13, "O_TRUNC without write access leaves the file");
        world.open(b"/tmp/new", O_WRONLY | O_TRUNC);
        assert_eq!(world.read(reader, 100), b"", "truncated");
    }

    #[test]
    fn creating_through_a_dangling_link_makes_its_target() {
        let mut world = World::new();
        let target = world.string(STRINGS, b"made");
        let link = world.string(STRINGS2, b"/tmp/link");
        world.ok(__NR_symlink, &[target, link]);
        let fd = world.open(b"/tmp/link", O_CREAT | O_WRONLY);
        world.write(fd, b"via link");
        let reader = world.open(b"/tmp/made", O_RDONLY);
        assert_eq!(world.read(reader, 100), b"via link");
        let path = world.string(STRINGS, b"/tmp/link");
        assert_eq!(world.error(__NR_open, &[path, u64::from(O_CREAT | O_EXCL | O_WRONLY), 0]), Errno::EEXIST);
    }

    #[test]
    fn a_full_table_creates_nothing() {
        let mut world = World::new();
        let path = world.string(STRINGS, b"/etc/motd");
        while world.call(__NR_open, &[path, 0, 0]).is_ok() {}
        assert_eq!(world.error(__NR_open, &[path, 0, 0]), Errno::EMFILE);
        let new = world.string(STRINGS, b"/tmp/never");
        assert_eq!(world.error(__NR_open, &[new, u64::from(O_CREAT | O_WRONLY), 0o644]), Errno::EMFILE);
        let tmp = world.files.fs().lookup(crate::fs::tree::ROOT, b"tmp").unwrap();
        assert_eq!(world.files.fs().lookup(tmp, b"never"), Err(Errno::ENOENT));
    }

    #[test]
    fn duplicates_share_the_offset() {
        let mut world = World::new();
        let fd = world.open(b"/etc/motd", O_RDONLY);
        let copy = world.ok(__NR_dup, &[fd]);
        assert_eq!(world.read(fd, 2), b"he");
        assert_eq!(world.read(copy, 2), b"ll", "one open file description");
        assert_eq!(world.ok(__NR_dup2, &[fd, 9]), 9);
        assert_eq!(world.read(9, 2), b"o\n");
        assert_eq!(world.ok(__NR_dup2, &[fd, fd]), fd, "dup2 to itself");
        assert_eq!(world.error(__NR_dup2, &[42, 3]), Errno::EBADF);
        assert_eq!(world.error(__NR_dup3, &[fd, fd, 0]), Errno::EINVAL);
        assert_eq!(world.error(__NR_dup3, &[fd, 5, u64::from(O_NONBLOCK)]), Errno::EINVAL);
        assert_eq!(world.ok(__NR_dup3, &[fd, 5, u64::from(O_CLOEXEC)]), 5);
        assert_eq!(world.ok(__NR_fcntl, &[5, u64::from(F_GETFD)]), u64::from(FD_CLOEXEC));
        let reopened = world.open(b"/etc/motd", O_RDONLY);
        world.ok(__NR_dup2, &[reopened, fd]);
        assert_eq!(world.read(fd, 5), b"hello", "dup2 replaced it with the new file");
        assert_eq!(world.read(copy, 5), b"", "the old description lives on in its other descriptors");
        assert_eq!(world.ok(__NR_dup, &[fd | 0xffff_ffff_0000_0000]), 3, "only the low 32 bits name the descriptor");
    }

    #[test]
    fn fcntl_reads_and_sets_flags() {
        let mut world = World::new();
        let fd = world.open(b"/etc/motd", O_RDONLY | O_APPEND);
        let flags = world.ok(__NR_fcntl, &[fd, u64::from(F_GETFL)]) as u32;
        assert_eq!(flags & O_ACCMODE, O_RDONLY);
        assert_ne!(flags & O_APPEND, 0);
        world.ok(__NR_fcntl, &[fd, u64::from(F_SETFL), u64::from(O_NONBLOCK | O_RDWR)]);
        let flags = world.ok(__NR_fcntl, &[fd, u64::from(F_GETFL)]) as u32;
        assert_eq!(flags & (O_APPEND | O_NONBLOCK | O_ACCMODE), O_NONBLOCK, "the access mode cannot change");
        assert_eq!(world.ok(__NR_fcntl, &[fd, u64::from(F_DUPFD_CLOEXEC), 20]), 20);
        assert_eq!(world.ok(__NR_fcntl, &[20, u64::from(F_GETFD)]), u64::from(FD_CLOEXEC));
        assert_eq!(world.ok(__NR_fcntl, &[fd, u64::from(F_DUPFD), 20]), 21);
        assert_eq!(world.error(__NR_fcntl, &[fd, u64::from(F_SETLK), 0]), Errno::EINVAL);
        assert_eq!(world.error(__NR_fcntl, &[77, u64::from(F_GETFL)]), Errno::EBADF);
        assert_eq!(world.error(__NR_fcntl, &[fd, u64::from(F_GETPIPE_SZ)]), Errno::EBADF, "not a pipe");
        let (read_end, _) = world.pipe(0);
        assert_eq!(world.ok(__NR_fcntl, &[read_end, u64::from(F_GETPIPE_SZ)]), CAPACITY as u64);
        assert_eq!(world.ok(__NR_fcntl, &[read_end, u64::from(F_SETPIPE_SZ), 4096]), CAPACITY as u64);
        assert_eq!(world.error(__NR_fcntl, &[read_end, u64::from(F_SETPIPE_SZ), 1 << 20]), Errno::EPERM);
    }

    #[test]
    fn exec_closes_close_on_exec_descriptors_and_fork_shares_the_rest() {
        let mut world = World::new();
        let kept = world.open(b"/etc/motd", O_RDONLY);
        let dropped = world.open(b"/etc/motd", O_RDONLY | O_CLOEXEC);
        let (read_end, write_end) = world.pipe(O_CLOEXEC);
        let mut child = world.process.fork(&mut world.files);
        assert_eq!(world.read(kept, 2), b"he");
        child.exec(&mut world.files);
        core::mem::swap(&mut world.process, &mut child);
        assert_eq!(world.read(kept, 2), b"ll", "the child shares the parent's offset");
        for fd in [dropped, read_end, write_end] {
            assert_eq!(world.error(__NR_read, &[fd, BUFFER, 1]), Errno::EBADF, "closed by exec");
        }
        core::mem::swap(&mut world.process, &mut child);
        assert_eq!(world.write(write_end, b"x"), 1, "the parent's pipe is still open");
        child.exit(&mut world.files);
        assert_eq!(world.read(read_end, 8), b"x");
    }

    #[test]
    fn pipes_are_made_with_flags_and_cleaned_up_on_failure() {
        let mut world = World::new();
        assert_eq!(world.error(__NR_pipe2, &[STRINGS2, u64::from(O_DIRECT)]), Errno::EINVAL);
        assert_eq!(world.error(__NR_pipe, &[BAD]), Errno::EFAULT);
        assert_eq!(world.files.pipes(), 0, "a pipe that could not be returned is gone");
        assert!(world.process.descriptors().iter().next().is_none(), "and so are its descriptors");
        let (read_end, write_end) = world.pipe(O_NONBLOCK | O_CLOEXEC);
        assert_eq!((read_end, write_end), (0, 1));
        assert_eq!(world.error(__NR_read, &[read_end, BUFFER, 1]), Errno::EAGAIN);
        assert_eq!(world.ok(__NR_fcntl, &[write_end, u64::from(F_GETFD)]), u64::from(FD_CLOEXEC));
        let flags = world.ok(__NR_fcntl, &[write_end, u64::from(F_GETFL)]) as u32;
        assert_eq!(flags & (O_ACCMODE | O_NONBLOCK), O_WRONLY | O_NONBLOCK);
        world.ok(__NR_close, &[read_end]);
        world.ok(__NR_close, &[write_end]);
        assert_eq!(world.files.pipes(), 0);
        for _ in 0..8 {
            world.pipe(0);
        }
        assert_eq!(world.error(__NR_pipe, &[STRINGS2]), Errno::ENFILE, "the kernel's pipe bound");
    }

    #[test]
    fn devices_open_their_drivers() {
        let mut world = World::new();
        let null = world.open(b"/dev/null", O_RDWR);
        assert_eq!(world.read(null, 10), b"");
        assert_eq!(world.ok(__NR_write, &[null, BAD, 1000]), 1000, "writes vanish without being read");
        let zero = world.open(b"/dev/zero", O_RDONLY);
        world.put(BUFFER, &[7; 16]);
        assert_eq!(world.read(zero, 16), [0; 16]);
        let tmp = world.files.fs().lookup(crate::fs::tree::ROOT, b"tmp").unwrap();
        let fs = world.files.fs_mut();
        fs.create(tmp, b"fifo", crate::fs::tree::NewNode::Special(crate::fs::FileType::Fifo, (0, 0)), 0o644).unwrap();
        fs.create(tmp, b"disk", crate::fs::tree::NewNode::Special(crate::fs::FileType::CharDevice, (8, 0)), 0o644)
            .unwrap();
        for path in [&b"/tmp/fifo"[..], b"/tmp/disk"] {
            let path = world.string(STRINGS, path);
            assert_eq!(world.error(__NR_open, &[path, 0, 0]), Errno::ENXIO);
        }
    }
}
