//! The library's [`Platform`] on this CPU: the privileged instructions and devices the
//! policy asks for.

use super::memory::DirectMap;
use super::{apic, console, cpu, entry, extended_state, trace_port};
use core::fmt;
use hypervisor::mm::domain_memory::Tlb;
use hypervisor::mm::frames::Frame;
use hypervisor::platform::Platform;
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::structures::paging::PhysFrame;
use x86_64::{PhysAddr, VirtAddr};

/// The machine the hypervisor runs on.
pub struct Machine {
    /// How extended state is saved on this CPU.
    pub extended_state: extended_state::Method,
}

/// TLB maintenance for the loaded root (no PCID: a CR3 write flushes everything else).
impl Tlb for Machine {
    fn flush_page(&mut self, virtual_address: u64) {
        // A non-canonical address was never mapped, so there is nothing to flush.
        if let Ok(address) = VirtAddr::try_new(virtual_address) {
            x86_64::instructions::tlb::flush(address);
        }
    }

    fn flush_all(&mut self) {
        x86_64::instructions::tlb::flush_all();
    }
}

impl Platform for Machine {
    type Memory = DirectMap;
    type ExtendedState = extended_state::Area;

    fn read_tsc(&mut self) -> u64 {
        cpu::rdtsc()
    }

    fn load_root(&mut self, root: Frame) {
        let frame = PhysFrame::containing_address(PhysAddr::new(root.address()));
        // SAFETY: every root the system loads carries the hypervisor's own mappings in
        // slots 256..272 (copied from the hypervisor's root, or it is that root), so the
        // code, stack and data in use stay mapped across the switch.
        unsafe { Cr3::write(frame, Cr3Flags::empty()) };
    }

    fn write_segment_bases(&mut self, fs: u64, gs: u64) {
        cpu::write_segment_bases(fs, gs);
    }

    fn new_extended_state(&mut self) -> extended_state::Area {
        extended_state::Area::new(&self.extended_state)
    }

    fn save_extended_state(&mut self, area: &mut extended_state::Area) {
        area.save(&self.extended_state);
    }

    fn restore_extended_state(&mut self, area: &mut extended_state::Area) {
        area.restore(&self.extended_state);
    }

    fn console_write(&mut self, domain: u32, bytes: &[u8]) {
        console::write_domain(domain, bytes);
    }

    fn console_receive(&mut self) -> Option<u8> {
        console::receive()
    }

    fn timer_armed(&self) -> Option<u64> {
        apic::armed()
    }

    fn arm_timer(&mut self, deadline_tsc: u64) {
        apic::arm(deadline_tsc);
    }

    fn end_of_interrupt(&mut self) {
        apic::eoi();
    }

    fn fault_address(&mut self) -> u64 {
        cpu::fault_address()
    }

    fn hypercall_entry_address(&self) -> u64 {
        entry::hypercall_entry_address()
    }

    fn print_line(&mut self, line: fmt::Arguments<'_>) {
        console::print_hypervisor(format_args!("{line}\n"));
    }

    fn trace_write(&mut self, bytes: &[u8]) {
        trace_port::write(bytes);
    }
}
