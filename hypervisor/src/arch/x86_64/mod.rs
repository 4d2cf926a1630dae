//! The x86_64 machine: every instruction and line of assembly the hypervisor runs, the
//! descriptor tables, the APIC/PIT/RTC/serial drivers (console and trace port), CR3 and the TLB, and the boot
//! steps that set them up. `platform::Machine` is the library's `Platform` on it.

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
pub mod trace_port;
