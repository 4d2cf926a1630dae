//! [`Caller`]: the process making a system call, as the file calls see it, and the
//! argument conventions they share (descriptor numbers, `dirfd`, paths).

use linux_raw_sys::general as uapi;

use super::namespace::Location;
use super::open_file::{FileRef, Node};
use super::proc::ProcessInfo;
use super::process_files::ProcessFiles;
use super::world::Files;
use crate::fs::FileType;
use crate::linux::Errno;
use crate::process_tree::Pid;
use crate::user_memory::{read_path, read_string, UserMemory};
use alloc::vec::Vec;

/// The calling process.
pub struct Caller<'a> {
    /// Its pid (`/proc/self`).
    pub pid: Pid,
    /// Its descriptors, working directory and umask.
    pub process: &'a mut ProcessFiles,
    /// Its memory, for pointer arguments.
    pub memory: &'a mut dyn UserMemory,
    /// The kernel's processes (`/proc`, terminal process groups).
    pub processes: &'a dyn ProcessInfo,
    /// The call is being run again because the timeout of its [`super::Wait`] passed:
    /// it completes now with what is ready.
    pub timed_out: bool,
}

/// A descriptor argument: Linux takes `unsigned int`, so only the low 32 bits count.
pub(crate) const fn descriptor(argument: u64) -> u64 {
    argument as u32 as u64
}

/// `AT_FDCWD` as a register holds it (the `*at` form of a call without `dirfd` passes it).
pub(crate) const WORKING_DIRECTORY: u64 = uapi::AT_FDCWD as u32 as u64;

/// A `dirfd` argument: an `int`, `AT_FDCWD` or a descriptor.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum DirectoryArgument {
    /// `AT_FDCWD`: the working directory.
    WorkingDirectory,
    /// A descriptor (perhaps not open, perhaps negative: EBADF when used).
    Descriptor(i32),
}

impl DirectoryArgument {
    pub(crate) const fn new(argument: u64) -> DirectoryArgument {
        let value = argument as u32 as i32;
        if value == uapi::AT_FDCWD {
            DirectoryArgument::WorkingDirectory
        } else {
            DirectoryArgument::Descriptor(value)
        }
    }
}

/// A flags argument (`int` or `unsigned int`): the low 32 bits.
pub(crate) const fn flags(argument: u64) -> u32 {
    argument as u32
}

impl Caller<'_> {
    /// The open file `descriptor` names (EBADF if none).
    pub(crate) fn file(&self, descriptor_argument: u64) -> Result<FileRef, Errno> {
        self.process.descriptors().get(descriptor(descriptor_argument)).cloned()
    }

    /// Where the file of descriptor `fd` is in the tree (for `fstat`, `fchdir`, `*at` with
    /// an empty path); `None` for pipes and sockets.
    pub(crate) fn location_of(&self, fd: i32) -> Result<Option<Location>, Errno> {
        let fd = u64::try_from(fd).map_err(|_| Errno::EBADF)?;
        let file = self.process.descriptors().get(fd)?;
        let file = file.borrow();
        Ok(match &file.node {
            Node::Regular { inode, .. } | Node::Device { inode, .. } => Some(Location::Inode(*inode)),
            Node::Directory { location, .. } | Node::Path(location) => Some(*location),
            Node::Generated { .. } | Node::PipeReader(_) | Node::PipeWriter(_) | Node::Socket(_) => None,
        })
    }

    /// Where a relative path starts: the working directory or `dirfd`'s directory
    /// (EBADF if not open, ENOTDIR if not a directory). An absolute path ignores `dirfd`.
    pub(crate) fn start(&self, files: &Files, directory: DirectoryArgument, path: &[u8]) -> Result<Location, Errno> {
        if path.starts_with(b"/") {
            return Ok(Location::Inode(crate::fs::tree::ROOT));
        }
        match directory {
            DirectoryArgument::WorkingDirectory => Ok(self.process.cwd()),
            DirectoryArgument::Descriptor(fd) => {
                let location = self.location_of(fd)?.ok_or(Errno::ENOTDIR)?;
                let view = files.view(self.processes, self.pid);
                if crate::fs::path::Namespace::kind(&view, location)? != FileType::Directory {
                    return Err(Errno::ENOTDIR);
                }
                Ok(location)
            }
        }
    }

    /// A path argument; with `empty_allowed` (`AT_EMPTY_PATH`) an empty one is allowed.
    pub(crate) fn path(&self, address: u64, empty_allowed: bool) -> Result<Vec<u8>, Errno> {
        if empty_allowed {
            read_string(&*self.memory, address, crate::fs::path::PATH_MAX, Errno::ENAMETOOLONG)
        } else {
            read_path(&*self.memory, address)
        }
    }
}
