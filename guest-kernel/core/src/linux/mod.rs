//! The Linux x86-64 user ABI as the core uses it.
//!
//! Numbers come from Linux's UAPI headers through `linux-raw-sys` (generated, not
//! retyped); this module gives them the kernel's types.

pub mod errno;
pub mod layouts;

pub use errno::Errno;
