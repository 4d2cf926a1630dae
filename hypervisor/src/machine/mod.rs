//! The machine shell: everything that touches hardware. Policy lives in the library
//! (`hypervisor::*`); these modules are the unsafe edge it runs on.

#[macro_use]
pub mod console;
// The time and interrupt-controller modules below carry `allow(dead_code)` until
// system.rs calls them (issue 4, wired by the lead); drop the allows then.
#[allow(dead_code)]
pub mod apic;
pub mod boot;
pub mod cpu;
pub mod descriptors;
pub mod entry;
pub mod exit_device;
pub mod extended_state;
pub mod heap;
#[allow(dead_code)]
pub mod ioapic;
pub mod memory;
#[allow(dead_code)]
pub mod mmio;
#[allow(dead_code)]
pub mod pit;
pub mod pvh;
#[allow(dead_code)]
pub mod rtc;
