//! A recording machine for host tests of the system.

use crate::mm::fakes::TestMemory;
use crate::mm::frames::Frame;

/// A recording machine for host tests of the system: the TSC is whatever the test sets,
/// hypervisor lines and console output are collected, and every privileged operation is
/// remembered instead of done.
#[derive(Default)]
pub struct FakePlatform {
    pub tsc: u64,
    pub lines: Vec<String>,
    pub console: Vec<(u32, Vec<u8>)>,
    pub input: std::collections::VecDeque<u8>,
    pub roots: Vec<Frame>,
    pub armed: Option<u64>,
    /// Times the timer was armed.
    pub arms: usize,
    pub segment_bases: Option<(u64, u64)>,
    pub fault_address: u64,
    pub interrupts_ended: usize,
    pub flushes: usize,
    /// Extended-state saves and restores, by area id.
    pub saved: Vec<u32>,
    pub restored: Vec<u32>,
    /// Bytes written to the trace port.
    pub trace: Vec<u8>,
    next_area: u32,
}

impl FakePlatform {
    /// Whether a hypervisor line contains `text`.
    pub fn said(&self, text: &str) -> bool {
        self.lines.iter().any(|line| line.contains(text))
    }
}

impl crate::mm::domain_memory::Tlb for FakePlatform {
    fn flush_page(&mut self, _: u64) {
        self.flushes += 1;
    }

    fn flush_all(&mut self) {
        self.flushes += 1;
    }
}

impl crate::platform::Platform for FakePlatform {
    type Memory = TestMemory;
    type ExtendedState = u32;

    fn read_tsc(&mut self) -> u64 {
        self.tsc
    }

    fn load_root(&mut self, root: Frame) {
        self.roots.push(root);
    }

    fn write_segment_bases(&mut self, fs: u64, gs: u64) {
        self.segment_bases = Some((fs, gs));
    }

    fn new_extended_state(&mut self) -> u32 {
        self.next_area += 1;
        self.next_area
    }

    fn save_extended_state(&mut self, area: &mut u32) {
        self.saved.push(*area);
    }

    fn restore_extended_state(&mut self, area: &mut u32) {
        self.restored.push(*area);
    }

    fn console_write(&mut self, domain: u32, bytes: &[u8]) {
        self.console.push((domain, bytes.to_vec()));
    }

    fn console_receive(&mut self) -> Option<u8> {
        self.input.pop_front()
    }

    fn timer_armed(&self) -> Option<u64> {
        self.armed
    }

    fn arm_timer(&mut self, deadline_tsc: u64) {
        self.armed = Some(deadline_tsc);
        self.arms += 1;
    }

    fn end_of_interrupt(&mut self) {
        self.interrupts_ended += 1;
    }

    fn fault_address(&mut self) -> u64 {
        self.fault_address
    }

    fn hypercall_entry_address(&self) -> u64 {
        0xffff_8000_0010_0000
    }

    fn print_line(&mut self, line: std::fmt::Arguments<'_>) {
        self.lines.push(line.to_string());
    }

    fn trace_write(&mut self, bytes: &[u8]) {
        self.trace.extend_from_slice(bytes);
    }
}
