//! An open file description: what `open`, `pipe2`, `socketpair` and the console give a
//! process, shared by every descriptor `dup` and `fork` make of it (so they share its
//! offset and status flags, as on Linux). Close-on-exec is not here: it belongs to the
//! descriptor ([`crate::descriptors`]).

use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;
use linux_raw_sys::general as uapi;

use super::namespace::Location;
use super::outcome::PipeId;
use super::socket_end::SocketEnd;
use crate::fs::tree::{InodeId, Metadata};
use crate::linux::Errno;
use crate::pipe::Pipe;

/// An open file description, shared by the descriptors that name it. The kernel is
/// single-threaded, so sharing is an `Rc`; the last holder gives it to
/// [`super::Files::release`].
pub type FileRef = Rc<RefCell<OpenFile>>;

/// A pipe shared by its two ends.
pub(crate) type SharedPipe = Rc<RefCell<PipeState>>;

/// A pipe and its number.
pub(crate) struct PipeState {
    /// Its number, for [`super::Event`]s.
    pub id: PipeId,
    /// Its buffer and open ends.
    pub pipe: Pipe,
}

/// How a file was opened (`O_ACCMODE`, or `O_PATH`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// `O_RDONLY`.
    Read,
    /// `O_WRONLY`.
    Write,
    /// `O_RDWR`.
    ReadWrite,
    /// `O_PATH`: a name for `*at` calls, `fstat` and `fchdir`, no reading or writing.
    Path,
}

impl Access {
    /// Whether `read` is allowed.
    pub const fn reads(self) -> bool {
        matches!(self, Access::Read | Access::ReadWrite)
    }

    /// Whether `write` is allowed.
    pub const fn writes(self) -> bool {
        matches!(self, Access::Write | Access::ReadWrite)
    }

    const fn flags(self) -> u32 {
        match self {
            Access::Read => uapi::O_RDONLY,
            Access::Write => uapi::O_WRONLY,
            Access::ReadWrite => uapi::O_RDWR,
            Access::Path => uapi::O_PATH,
        }
    }
}

/// The devices `/dev` holds, by device number.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Device {
    /// `/dev/null` (1, 3): reads end at once, writes vanish.
    Null,
    /// `/dev/zero` (1, 5): reads give zeros, writes vanish.
    Zero,
    /// `/dev/console` (5, 1) and `/dev/tty` (5, 0): the console terminal.
    Console,
}

impl Device {
    /// `/dev/null`'s device number.
    pub const NULL: (u32, u32) = (1, 3);
    /// `/dev/zero`'s device number.
    pub const ZERO: (u32, u32) = (1, 5);
    /// `/dev/tty`'s device number (the caller's terminal: here always the console).
    pub const TTY: (u32, u32) = (5, 0);
    /// `/dev/console`'s device number.
    pub const CONSOLE: (u32, u32) = (5, 1);

    /// The device a character device number names; ENXIO for one this kernel has no
    /// driver for.
    pub fn from_number(number: (u32, u32)) -> Result<Device, Errno> {
        match number {
            Device::NULL => Ok(Device::Null),
            Device::ZERO => Ok(Device::Zero),
            Device::TTY | Device::CONSOLE => Ok(Device::Console),
            _ => Err(Errno::ENXIO),
        }
    }
}

/// Where a directory listing (`getdents64`) stands: `.` and `..` come first, then the
/// names in order, resumed after the last name returned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Cursor {
    /// Entries returned so far, `.` and `..` included (the next entry's `d_off`).
    pub returned: u64,
    /// The last name returned after `.` and `..`, or `None` before the first.
    pub after: Option<Vec<u8>>,
}

/// What an open file is.
pub(crate) enum Node {
    /// A regular file and the offset of the next read or write.
    Regular {
        /// Its inode (held open).
        inode: InodeId,
        /// The offset.
        offset: u64,
    },
    /// A directory and its listing position.
    Directory {
        /// The directory (an inode held open, or a `/proc` directory).
        location: Location,
        /// Where `getdents64` continues.
        cursor: Cursor,
    },
    /// A device node.
    Device {
        /// Its inode (held open).
        inode: InodeId,
        /// The device.
        device: Device,
    },
    /// The read end of a pipe.
    PipeReader(SharedPipe),
    /// The write end of a pipe.
    PipeWriter(SharedPipe),
    /// One end of a socket pair.
    Socket(SocketEnd),
    /// A `/proc` file: its bytes as made at open, and the read offset.
    Generated {
        /// The bytes.
        bytes: Vec<u8>,
        /// What `fstat` says (taken at open: the process may be gone since).
        metadata: Metadata,
        /// The offset.
        offset: u64,
    },
    /// An `O_PATH` descriptor (inode held open).
    Path(Location),
}

/// An open file description.
pub struct OpenFile {
    pub(crate) node: Node,
    pub(crate) access: Access,
    pub(crate) append: bool,
    pub(crate) nonblocking: bool,
}

impl OpenFile {
    pub(crate) fn new(node: Node, access: Access, flags: u32) -> OpenFile {
        OpenFile { node, access, append: flags & uapi::O_APPEND != 0, nonblocking: flags & uapi::O_NONBLOCK != 0 }
    }

    /// How it was opened.
    pub const fn access(&self) -> Access {
        self.access
    }

    /// `F_GETFL`: the access mode and status flags. Like Linux on 64-bit machines, every
    /// file is `O_LARGEFILE`.
    pub fn status_flags(&self) -> u32 {
        let mut flags = self.access.flags() | uapi::O_LARGEFILE;
        if self.append {
            flags |= uapi::O_APPEND;
        }
        if self.nonblocking {
            flags |= uapi::O_NONBLOCK;
        }
        flags
    }

    /// `F_SETFL`: takes `O_APPEND` and `O_NONBLOCK` from `flags`.
    pub fn set_status_flags(&mut self, flags: u32) {
        self.append = flags & uapi::O_APPEND != 0;
        self.nonblocking = flags & uapi::O_NONBLOCK != 0;
    }

    /// Whether this is the console terminal.
    pub const fn is_console(&self) -> bool {
        matches!(self.node, Node::Device { device: Device::Console, .. })
    }
}

/// Makes a shared open file.
pub(crate) fn share(file: OpenFile) -> FileRef {
    Rc::new(RefCell::new(file))
}
