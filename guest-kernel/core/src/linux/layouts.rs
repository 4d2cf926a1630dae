//! The structures the kernel writes to and reads from user memory, laid out as Linux's
//! x86-64 UAPI does. Each is our own `zerocopy` type, so it converts to and from bytes
//! without `unsafe`; each is checked at compile time, size and every field offset, against
//! the binding `linux-raw-sys` generates from Linux's headers.

use core::mem::{offset_of, size_of};
use linux_raw_sys::general as uapi;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Seconds and nanoseconds (`struct timespec`, `struct __kernel_timespec`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct Timespec {
    /// Seconds.
    pub seconds: i64,
    /// Nanoseconds, 0 to 999 999 999.
    pub nanoseconds: i64,
}

impl Timespec {
    /// The time `ns` nanoseconds after the epoch (or after boot).
    pub const fn from_nanoseconds(ns: u64) -> Timespec {
        Timespec { seconds: (ns / 1_000_000_000) as i64, nanoseconds: (ns % 1_000_000_000) as i64 }
    }

    /// The duration in nanoseconds, or `None` if a field is out of range (EINVAL).
    pub fn to_nanoseconds(self) -> Option<u64> {
        let seconds = u64::try_from(self.seconds).ok()?;
        let nanoseconds = u64::try_from(self.nanoseconds).ok().filter(|&ns| ns < 1_000_000_000)?;
        seconds.checked_mul(1_000_000_000)?.checked_add(nanoseconds)
    }
}

/// `struct stat`, as `fstat`, `newfstatat` and `stat` fill it.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct Stat {
    /// Device of the file system.
    pub device: u64,
    /// Inode number.
    pub inode: u64,
    /// Hard links.
    pub links: u64,
    /// Type and permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Padding.
    pub padding: u32,
    /// Device number of a device file.
    pub rdev: u64,
    /// Size in bytes.
    pub size: i64,
    /// Preferred I/O size.
    pub block_size: i64,
    /// 512-byte blocks allocated.
    pub blocks: i64,
    /// Last access.
    pub accessed: Timespec,
    /// Last modification.
    pub modified: Timespec,
    /// Last status change.
    pub changed: Timespec,
    /// Reserved.
    pub reserved: [i64; 3],
}

/// A time in `struct statx`.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct StatxTimestamp {
    /// Seconds since 1970.
    pub seconds: i64,
    /// Nanoseconds.
    pub nanoseconds: u32,
    /// Reserved.
    pub reserved: i32,
}

/// `struct statx`, as `statx` fills it.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct Statx {
    /// `STATX_*` bits saying which fields are filled.
    pub mask: u32,
    /// Preferred I/O size.
    pub block_size: u32,
    /// `STATX_ATTR_*` flags.
    pub attributes: u64,
    /// Hard links.
    pub links: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Type and permission bits.
    pub mode: u16,
    /// Padding.
    pub spare0: u16,
    /// Inode number.
    pub inode: u64,
    /// Size in bytes.
    pub size: u64,
    /// 512-byte blocks allocated.
    pub blocks: u64,
    /// Which `attributes` bits the file system supports.
    pub attributes_mask: u64,
    /// Last access.
    pub accessed: StatxTimestamp,
    /// Creation.
    pub born: StatxTimestamp,
    /// Last status change.
    pub changed: StatxTimestamp,
    /// Last modification.
    pub modified: StatxTimestamp,
    /// Device number of a device file: major.
    pub rdev_major: u32,
    /// Device number of a device file: minor.
    pub rdev_minor: u32,
    /// Device of the file system: major.
    pub device_major: u32,
    /// Device of the file system: minor.
    pub device_minor: u32,
    /// The rest (mount id, alignment hints), zero.
    pub spare: [u64; 14],
}

/// `struct pollfd` (`poll`, `ppoll`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct PollDescriptor {
    /// The descriptor (negative: ignored).
    pub descriptor: i32,
    /// `POLL*` events asked for.
    pub events: i16,
    /// Events that happened, written back.
    pub returned: i16,
}

/// `struct iovec` (`readv`, `writev`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct IoVector {
    /// Start of the buffer.
    pub base: u64,
    /// Its length.
    pub length: u64,
}

/// Seconds and microseconds (`struct timeval`, `select`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct Timeval {
    /// Seconds.
    pub seconds: i64,
    /// Microseconds, 0 to 999 999.
    pub microseconds: i64,
}

impl Timeval {
    /// The duration in nanoseconds, or `None` if a field is out of range (EINVAL).
    pub fn to_nanoseconds(self) -> Option<u64> {
        let seconds = u64::try_from(self.seconds).ok()?;
        let microseconds = u64::try_from(self.microseconds).ok().filter(|&us| us < 1_000_000)?;
        seconds.checked_mul(1_000_000_000)?.checked_add(microseconds * 1000)
    }
}

/// `struct sigaction` as the `rt_sigaction` system call takes it (the kernel's layout,
/// not libc's).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct SignalAction {
    /// Handler address, or 0 (default) or 1 (ignore).
    pub handler: u64,
    /// `SA_*` flags.
    pub flags: u64,
    /// Return trampoline (`SA_RESTORER`).
    pub restorer: u64,
    /// Blocked while the handler runs.
    pub mask: u64,
}

/// `struct winsize` (`TIOCGWINSZ`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct WindowSize {
    /// Rows.
    pub rows: u16,
    /// Columns.
    pub columns: u16,
    /// Width in pixels.
    pub x_pixels: u16,
    /// Height in pixels.
    pub y_pixels: u16,
}

/// `struct termios` (`TCGETS`, `TCSETS*`): the terminal's modes.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct Termios {
    /// Input modes.
    pub input: u32,
    /// Output modes.
    pub output: u32,
    /// Control modes.
    pub control: u32,
    /// Local modes (`ICANON`, `ECHO`, `ISIG`...).
    pub local: u32,
    /// Line discipline.
    pub line: u8,
    /// Control characters (`VINTR`, `VEOF`, `VERASE`...).
    pub characters: [u8; uapi::NCCS as usize],
}

/// One field of `struct utsname` (`uname`).
pub const UTS_FIELD: usize = 65;

/// `struct utsname`: six NUL-padded strings.
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct Utsname {
    /// Operating system name ("Linux" for programs that check it).
    pub system: [u8; UTS_FIELD],
    /// Host name.
    pub node: [u8; UTS_FIELD],
    /// Release.
    pub release: [u8; UTS_FIELD],
    /// Version.
    pub version: [u8; UTS_FIELD],
    /// Machine ("x86_64").
    pub machine: [u8; UTS_FIELD],
    /// Domain name.
    pub domain: [u8; UTS_FIELD],
}

impl Utsname {
    /// Fills each field from a string (cut to 64 bytes, NUL-padded).
    pub fn new(fields: [&str; 6]) -> Utsname {
        let field = |text: &str| {
            let mut bytes = [0u8; UTS_FIELD];
            let length = text.len().min(UTS_FIELD - 1);
            bytes[..length].copy_from_slice(&text.as_bytes()[..length]);
            bytes
        };
        Utsname {
            system: field(fields[0]),
            node: field(fields[1]),
            release: field(fields[2]),
            version: field(fields[3]),
            machine: field(fields[4]),
            domain: field(fields[5]),
        }
    }
}

/// Appends one `struct linux_dirent64` record to `buffer` if it fits in `capacity` bytes
/// (the caller's buffer size); returns whether it did. `next` is the `d_off` cookie that
/// resumes after this entry.
pub fn push_directory_entry(
    buffer: &mut alloc::vec::Vec<u8>,
    capacity: usize,
    inode: u64,
    next: u64,
    kind: u8,
    name: &[u8],
) -> bool {
    const HEADER: usize = offset_of!(uapi::linux_dirent64, d_name);
    let length = (HEADER + name.len() + 1).next_multiple_of(8);
    if buffer.len() + length > capacity {
        return false;
    }
    let start = buffer.len();
    buffer.extend_from_slice(&inode.to_le_bytes());
    buffer.extend_from_slice(&next.to_le_bytes());
    buffer.extend_from_slice(&(length as u16).to_le_bytes());
    buffer.push(kind);
    buffer.extend_from_slice(name);
    buffer.resize(start + length, 0);
    true
}

// Every layout agrees with Linux's, field by field.
macro_rules! same_layout {
    ($ours:ty, $linux:ty, $(($field:ident, $linux_field:ident)),* $(,)?) => {
        const _: () = assert!(size_of::<$ours>() == size_of::<$linux>());
        $(const _: () = assert!(offset_of!($ours, $field) == offset_of!($linux, $linux_field));)*
    };
}

same_layout!(Timespec, uapi::__kernel_timespec, (seconds, tv_sec), (nanoseconds, tv_nsec));
same_layout!(
    Stat,
    uapi::stat,
    (device, st_dev),
    (inode, st_ino),
    (links, st_nlink),
    (mode, st_mode),
    (uid, st_uid),
    (gid, st_gid),
    (rdev, st_rdev),
    (size, st_size),
    (block_size, st_blksize),
    (blocks, st_blocks),
    (accessed, st_atime),
    (modified, st_mtime),
    (changed, st_ctime),
);
same_layout!(StatxTimestamp, uapi::statx_timestamp, (seconds, tv_sec), (nanoseconds, tv_nsec), (reserved, __reserved));
same_layout!(
    Statx,
    uapi::statx,
    (mask, stx_mask),
    (block_size, stx_blksize),
    (attributes, stx_attributes),
    (links, stx_nlink),
    (uid, stx_uid),
    (gid, stx_gid),
    (mode, stx_mode),
    (inode, stx_ino),
    (size, stx_size),
    (blocks, stx_blocks),
    (attributes_mask, stx_attributes_mask),
    (accessed, stx_atime),
    (born, stx_btime),
    (changed, stx_ctime),
    (modified, stx_mtime),
    (rdev_major, stx_rdev_major),
    (rdev_minor, stx_rdev_minor),
    (device_major, stx_dev_major),
    (device_minor, stx_dev_minor),
    (spare, stx_mnt_id),
);
same_layout!(PollDescriptor, uapi::pollfd, (descriptor, fd), (events, events), (returned, revents));
same_layout!(IoVector, uapi::iovec, (base, iov_base), (length, iov_len));
same_layout!(Timeval, uapi::__kernel_old_timeval, (seconds, tv_sec), (microseconds, tv_usec));
same_layout!(
    SignalAction,
    uapi::kernel_sigaction,
    (handler, sa_handler_kernel),
    (flags, sa_flags),
    (restorer, sa_restorer),
    (mask, sa_mask),
);
same_layout!(
    WindowSize,
    uapi::winsize,
    (rows, ws_row),
    (columns, ws_col),
    (x_pixels, ws_xpixel),
    (y_pixels, ws_ypixel)
);
same_layout!(
    Termios,
    uapi::termios,
    (input, c_iflag),
    (output, c_oflag),
    (control, c_cflag),
    (local, c_lflag),
    (line, c_line),
    (characters, c_cc),
);
const _: () = assert!(size_of::<Utsname>() == 6 * UTS_FIELD);
const _: () = assert!(offset_of!(Stat, accessed) + 8 == offset_of!(uapi::stat, st_atime_nsec));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timespecs_convert_and_reject_bad_fields() {
        assert_eq!(Timespec::from_nanoseconds(1_500_000_000), Timespec { seconds: 1, nanoseconds: 500_000_000 });
        assert_eq!(Timespec { seconds: 2, nanoseconds: 5 }.to_nanoseconds(), Some(2_000_000_005));
        assert_eq!(Timespec { seconds: -1, nanoseconds: 0 }.to_nanoseconds(), None);
        assert_eq!(Timespec { seconds: 0, nanoseconds: 1_000_000_000 }.to_nanoseconds(), None);
        assert_eq!(Timespec { seconds: i64::MAX, nanoseconds: 0 }.to_nanoseconds(), None);
    }

    #[test]
    fn timevals_convert_and_reject_bad_fields() {
        assert_eq!(Timeval { seconds: 1, microseconds: 5 }.to_nanoseconds(), Some(1_000_005_000));
        assert_eq!(Timeval { seconds: 0, microseconds: 1_000_000 }.to_nanoseconds(), None);
        assert_eq!(Timeval { seconds: -1, microseconds: 0 }.to_nanoseconds(), None);
    }

    #[test]
    fn directory_records_are_aligned_and_bounded() {
        let mut buffer = alloc::vec::Vec::new();
        assert!(push_directory_entry(&mut buffer, 64, 7, 1, 4, b"."));
        assert_eq!(buffer.len(), 24, "19 header bytes, the name, a NUL, padded to 8");
        assert_eq!(u16::from_le_bytes([buffer[16], buffer[17]]), 24);
        assert_eq!(buffer[18], 4);
        assert_eq!(&buffer[19..21], b".\0");
        assert!(push_directory_entry(&mut buffer, 64, 8, 2, 8, b"hello"));
        assert_eq!(buffer.len(), 24 + 32);
        assert!(!push_directory_entry(&mut buffer, 64, 9, 3, 8, b"x"), "no room: nothing written");
        assert_eq!(buffer.len(), 56);
    }

    #[test]
    fn utsname_fields_are_cut_and_padded() {
        let name = Utsname::new(["Linux", "ringfence", "6.1.0-guest-kernel", "#1", "x86_64", &"d".repeat(100)]);
        assert_eq!(&name.system[..6], b"Linux\0");
        assert_eq!(name.domain[63], b'd');
        assert_eq!(name.domain[64], 0, "always NUL-terminated");
        assert_eq!(name.as_bytes().len(), 390);
    }
}
