//! Host-test fakes for physical memory and frame sources, shared by the module tests.

use crate::frame_allocator::{Frame, FrameSource};
use crate::paging::FrameMemory;
use std::collections::{HashMap, HashSet};

/// Physical memory as a map of frames. Reading a frame that was never zeroed or written
/// panics: in these tests that means the code followed a garbage page-table entry.
#[derive(Default)]
pub struct TestMemory {
    pub frames: HashMap<Frame, Box<[u8; 4096]>>,
}

impl TestMemory {
    fn page(&self, frame: Frame) -> &[u8; 4096] {
        self.frames.get(&frame).unwrap_or_else(|| panic!("read of untouched frame {frame:?}"))
    }

    fn page_mut(&mut self, frame: Frame) -> &mut [u8; 4096] {
        self.frames.entry(frame).or_insert_with(|| Box::new([0xa5; 4096]))
    }
}

impl FrameMemory for TestMemory {
    fn read_entry(&self, table: Frame, index: usize) -> u64 {
        assert!(index < 512, "entry index {index} out of range");
        let bytes = &self.page(table)[index * 8..index * 8 + 8];
        u64::from_le_bytes(bytes.try_into().unwrap())
    }

    fn write_entry(&mut self, table: Frame, index: usize, value: u64) {
        assert!(index < 512, "entry index {index} out of range");
        self.page_mut(table)[index * 8..index * 8 + 8].copy_from_slice(&value.to_le_bytes());
    }

    fn zero(&mut self, frame: Frame) {
        self.frames.insert(frame, Box::new([0; 4096]));
    }

    fn read(&self, frame: Frame, offset: usize, buffer: &mut [u8]) {
        assert!(offset + buffer.len() <= 4096, "read past the end of a frame");
        buffer.copy_from_slice(&self.page(frame)[offset..offset + buffer.len()]);
    }

    fn write(&mut self, frame: Frame, offset: usize, bytes: &[u8]) {
        assert!(offset + bytes.len() <= 4096, "write past the end of a frame");
        self.page_mut(frame)[offset..offset + bytes.len()].copy_from_slice(bytes);
    }
}

/// A frame source that hands out fresh frame numbers, can be told to run out after a
/// number of allocations (a 2 MiB block costs 512 of them), and panics on any free that
/// breaks the `FrameSource` contract.
pub struct TestFrames {
    next: u64,
    pub outstanding: HashSet<Frame>,
    /// Allocations still allowed; `None` = unlimited.
    pub remaining: Option<u64>,
    pub allocations: u64,
}

impl TestFrames {
    pub fn new() -> Self {
        Self { next: 0x100, outstanding: HashSet::new(), remaining: None, allocations: 0 }
    }

    pub fn limited(allowed: u64) -> Self {
        Self { remaining: Some(allowed), ..Self::new() }
    }
}

impl FrameSource for TestFrames {
    fn allocate(&mut self) -> Option<Frame> {
        if let Some(remaining) = &mut self.remaining {
            if *remaining == 0 {
                return None;
            }
            *remaining -= 1;
        }
        let frame = Frame::from_number(self.next);
        self.next += 1;
        self.allocations += 1;
        self.outstanding.insert(frame);
        Some(frame)
    }

    fn allocate_large(&mut self) -> Option<Frame> {
        if let Some(remaining) = &mut self.remaining {
            if *remaining < 512 {
                return None;
            }
            *remaining -= 512;
        }
        let first = self.next.next_multiple_of(512);
        self.next = first + 512;
        self.allocations += 512;
        self.outstanding.extend((first..first + 512).map(Frame::from_number));
        Some(Frame::from_number(first))
    }

    fn free(&mut self, frame: Frame) {
        assert!(self.outstanding.remove(&frame), "free of {frame:?}, which is not outstanding");
    }
}

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
    pub segment_bases: Option<(u64, u64)>,
    pub fault_address: u64,
    pub interrupts_ended: usize,
    pub flushes: usize,
    /// Extended-state saves and restores, by area id.
    pub saved: Vec<u32>,
    pub restored: Vec<u32>,
    next_area: u32,
}

impl FakePlatform {
    /// Whether a hypervisor line contains `text`.
    pub fn said(&self, text: &str) -> bool {
        self.lines.iter().any(|line| line.contains(text))
    }
}

impl crate::domain_memory::Tlb for FakePlatform {
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
}
