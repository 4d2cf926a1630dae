//! Files: the initramfs format and the in-memory file system built from it.

pub mod cpio;
pub mod file_type;
pub mod initramfs;
pub mod path;
pub mod tree;

pub use file_type::FileType;
