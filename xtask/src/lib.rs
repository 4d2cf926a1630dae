//! Host-side machinery shared by `cargo xtask` and the conformance runner: where things
//! live, how they are built, how QEMU is driven, and how boot archives and test images are
//! made.

pub mod accel;
pub mod apt;
pub mod archive;
pub mod build;
pub mod busybox;
pub mod c_guests;
pub mod c_header;
pub mod cmdline;
pub mod cpio;
pub mod deb;
pub mod debian;
pub mod domain_options;
pub mod error;
pub mod gdb;
pub mod hot_paths;
pub mod images;
pub mod initramfs;
pub mod junit;
pub mod kernel_args;
pub mod lint;
pub mod linux;
pub mod lmbench;
pub mod native;
pub mod packages;
pub mod qemu;
pub mod readme;
pub mod template;
pub mod toolchain;
pub mod trace;
pub mod userland;
pub mod workspace;

pub use error::{Error, Result};
