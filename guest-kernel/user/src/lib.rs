//! guest-kernel's userland: what its test programs share, and the programs themselves.
//!
//! Each test program checks one area of the kernel and prints a line per case, `ok
//! <program>.<case>` or `FAIL <program>.<case>: <why>`, then exits 0 only if every case
//! passed. They are built into one executable, `kernel-test` (as busybox builds its
//! applets into one): the initramfs links `/bin/test-<program>` to it, and it runs the
//! program its name or first argument names. One executable instead of fifteen keeps the
//! initramfs, which the kernel holds in memory, small: Rust's standard library is most of
//! each program's size.
//!
//! `lmbench` (and `lmbench-true`, the program its `fork exec` row runs) measures the
//! latency of the same Linux system interface on guest-kernel and on Linux, for `cargo
//! xtask bench --kernel`; its rows are in [`lmbench`].
//!
//! The programs are single-threaded, so `fork` in them is as safe as in C.

pub mod check;
pub mod lmbench;
pub mod process;
pub mod programs;
pub mod signals;
pub mod syscall;
