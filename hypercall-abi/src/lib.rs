//! The ringfence hypercall ABI: the single source of truth shared by the hypervisor and
//! every guest. SPEC.md is the normative description; every item here names its section.
//!
//! Nothing in this crate is a Rust `enum` that crosses the boundary: values a guest
//! supplies are plain integers (newtypes with named constants), so a bad value is an
//! error the hypervisor reports, never undefined behaviour.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod address;
pub mod errno;
pub mod event;
pub mod exit;
pub mod hypercall;
pub mod layout;
pub mod memory;
pub mod multicall;
pub mod note;
pub mod shared_info;
pub mod start_info;
pub mod trace;
pub mod trap;
pub mod version;

#[cfg(test)]
mod spec_tables;

pub use address::{Gfn, GuestVirtualAddress};
pub use errno::Errno;
pub use hypercall::Hypercall;
pub use start_info::StartInfo;
pub use version::{AbiVersion, ABI_VERSION};
