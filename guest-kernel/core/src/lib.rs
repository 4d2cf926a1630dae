//! guest-kernel's core: everything of the kernel that does not depend on where it runs.
//!
//! The kernel runs on two platforms from one source: natively (ring 0 on a PC) and
//! paravirtualized on ringfence (its sensitive operations replaced by hypercalls). What
//! differs between them lives behind guest-kernel's `arch` interface; what is here is the
//! same on both and never names a platform, so it is compiled and tested on the host.
//!
//! The core speaks the Linux x86-64 system-call ABI, the subset static programs (busybox,
//! Rust programs built for musl) need:
//!
//! * [`command_line`]: the kernel command line (options, and init's command as
//!   percent-encoded words);
//! * [`linux`]: the ABI's numbers (from Linux's UAPI through `linux-raw-sys`) and the
//!   kernel's error type;
//! * [`descriptors`]: a process's file-descriptor table (`dup2`, `fcntl`, close-on-exec);
//! * [`fs`]: the in-memory file system (inodes, directories, path resolution with
//!   symbolic links) and the initramfs (`cpio` newc) unpacked into it at boot;
//! * [`files`]: the file system calls (`read`, `openat`, `pipe2`, `getdents64`, `ioctl`,
//!   `poll`...) over open files, pipes, the console terminal, `/dev` and `/proc`;
//! * [`exec`]: what `execve` does before it touches an address space: validating a
//!   static ELF64 program into a load plan, and laying out its initial stack (argv, envp,
//!   auxv) as Linux does;
//! * [`memory`]: a process's regions (`brk`, `mmap`, `munmap`, `mprotect`, demand-paging
//!   decisions, per-process accounting);
//! * [`pipe`]: the bounded byte buffer behind a pipe;
//! * [`process_tree`]: parents, zombies, orphans given to init, `wait4`'s selection,
//!   process groups and sessions, and the bound on processes;
//! * [`signal`]: dispositions, masks, pending signals, what delivery means, and `wait4`'s
//!   status words;
//! * [`tty`]: the console's line discipline (editing, echo, Ctrl-C/Ctrl-D, raw mode);
//! * [`user_memory`]: the one door for user pointers: values, paths, `argv` arrays, with
//!   EFAULT, ENAMETOOLONG and E2BIG as Linux gives them.
//!
//! Every value from a user process is an allegation: these modules take lengths, offsets
//! and counts from untrusted bytes and check each before use, answering with an errno
//! rather than panicking.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod command_line;
pub mod descriptors;
pub mod exec;
pub mod files;
pub mod fs;
pub mod linux;
pub mod memory;
pub mod pipe;
pub mod process_tree;
pub mod signal;
pub mod tty;
pub mod user_memory;
pub mod vdso;
