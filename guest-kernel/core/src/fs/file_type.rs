//! The kinds of file, as the type bits of a Linux mode (`S_IFMT`) and as `getdents64`'s
//! `d_type` encode them.

use linux_raw_sys::general as uapi;

/// The kind of a file.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum FileType {
    /// A regular file.
    Regular,
    /// A directory.
    Directory,
    /// A symbolic link.
    Symlink,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A named pipe.
    Fifo,
    /// A socket.
    Socket,
}

const TABLE: [(FileType, u32, u32); 7] = [
    (FileType::Regular, uapi::S_IFREG, uapi::DT_REG),
    (FileType::Directory, uapi::S_IFDIR, uapi::DT_DIR),
    (FileType::Symlink, uapi::S_IFLNK, uapi::DT_LNK),
    (FileType::CharDevice, uapi::S_IFCHR, uapi::DT_CHR),
    (FileType::BlockDevice, uapi::S_IFBLK, uapi::DT_BLK),
    (FileType::Fifo, uapi::S_IFIFO, uapi::DT_FIFO),
    (FileType::Socket, uapi::S_IFSOCK, uapi::DT_SOCK),
];

/// The type bits of a mode.
pub const TYPE_MASK: u32 = uapi::S_IFMT;

/// The permission bits of a mode (with set-id and sticky bits).
pub const PERMISSION_MASK: u32 = 0o7777;

impl FileType {
    /// The type encoded in `mode`'s type bits, if Linux defines it.
    pub fn from_mode(mode: u32) -> Option<FileType> {
        TABLE.iter().find(|(_, bits, _)| *bits == mode & TYPE_MASK).map(|(kind, _, _)| *kind)
    }

    /// The type bits for a mode.
    pub fn mode_bits(self) -> u32 {
        TABLE.iter().find(|(kind, _, _)| *kind == self).map_or(0, |(_, bits, _)| *bits)
    }

    /// The `d_type` of a directory entry.
    pub fn dirent_type(self) -> u8 {
        TABLE.iter().find(|(kind, _, _)| *kind == self).map_or(0, |(_, _, dirent)| *dirent as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_dirent_types_round_trip() {
        for (kind, _, _) in TABLE {
            assert_eq!(FileType::from_mode(kind.mode_bits() | 0o644), Some(kind));
        }
        assert_eq!(FileType::from_mode(0o100_755), Some(FileType::Regular));
        assert_eq!(FileType::from_mode(0o040_755), Some(FileType::Directory));
        assert_eq!(FileType::from_mode(0o000_644), None);
        assert_eq!(FileType::Directory.dirent_type(), 4);
        assert_eq!(FileType::Regular.dirent_type(), 8);
    }
}
