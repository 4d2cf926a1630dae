//! The machine shell: everything that touches hardware. Policy lives in the library
//! (`hypervisor::*`); these modules are the unsafe edge it runs on.

#[macro_use]
pub mod console;
pub mod apic;
pub mod boot;
pub mod cpu;
pub mod descriptors;
pub mod entry;
pub mod exit_device;
pub mod extended_state;
pub mod heap;
pub mod ioapic;
pub mod memory;
pub mod mmio;
pub mod pit;
pub mod platform;
pub mod pvh;
pub mod rtc;
pub mod start;
