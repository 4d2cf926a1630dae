//! Host-test fakes for physical memory and frame sources, shared by the module tests.

use crate::mm::frames::{Frame, FrameSource};
use crate::mm::paging::FrameMemory;
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

#[allow(unsafe_code)]
// SAFETY: every frame is a boxed array owned by the map; no raw memory is touched.
unsafe impl FrameMemory for TestMemory {
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
