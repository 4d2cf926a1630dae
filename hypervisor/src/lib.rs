//! The hypervisor's pure logic: everything that needs no hardware, tested on the host.
//!
//! The machine shell (`main.rs`, `machine/`) implements the small traits defined here
//! (`FrameMemory`, `FrameSource`) with unsafe code; nothing in this library is unsafe.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod archive;
pub mod boot;
pub mod command_line;
pub mod console_input;
pub mod dispatch;
pub mod domain_builder;
pub mod domain_memory;
pub mod event_channel;
pub mod frame_allocator;
pub mod guest_memory;
pub mod image;
pub mod input_focus;
pub mod layout;
pub mod memory_ops;
pub mod outcome;
pub mod paging;
pub mod platform;
pub mod time;
pub mod upcall;

// Owned by the lead (dispatch and machine-facing state):
pub mod bounce;
pub mod exception;
pub mod hypercall;
pub mod scheduler;
pub mod system;
pub mod trap_frame;
pub mod vcpu;
pub mod wakeups;

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod system_tests;

pub use frame_allocator::{Frame, FrameAllocator, FrameSource};
pub use paging::{AddressSpace, FrameMemory, PageFlags};
