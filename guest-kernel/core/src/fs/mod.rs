//! Files: the initramfs format and the file system built from it.

pub mod cpio;
