//! Unit tests of [`DomainMemory`] details the model test (mm/model_tests.rs) cannot see:
//! which TLB flushes happen, the frame bookkeeping of the page-table quota, the state of
//! a preempted release, and where large blocks land in machine memory.

use crate::mm::domain_memory::{DomainMemory, MemoryError, Preemption, Tlb};
use crate::mm::fakes::{TestFrames, TestMemory};
use crate::mm::frames::{Frame, FrameSource};
use crate::mm::paging::{FrameMemory, PageSize};
use hypercall_abi::memory::{map_flags, INITIAL_SPACE, LARGE_PAGE_PAGES};
use std::collections::BTreeSet;

const RW: u32 = map_flags::WRITABLE | map_flags::USER;
const LARGE_BYTES: u64 = LARGE_PAGE_PAGES * 4096;

/// Records every flush; `due_in` says after how many calls to `due` a preemption is due
/// (`None`: never).
#[derive(Default)]
struct Machine {
    pages: Vec<u64>,
    all: u32,
    due_in: Option<u32>,
}

impl Tlb for Machine {
    fn flush_page(&mut self, virtual_address: u64) {
        self.pages.push(virtual_address);
    }
    fn flush_all(&mut self) {
        self.all += 1;
    }
}

impl Preemption for Machine {
    fn due(&mut self) -> bool {
        match &mut self.due_in {
            Some(0) => true,
            Some(calls) => {
                *calls -= 1;
                false
            }
            None => false,
        }
    }
}

fn domain(memory: &mut TestMemory, frames: &mut impl FrameSource, max_pages: u64) -> DomainMemory {
    let hypervisor_root = Frame::from_number(1);
    memory.zero(hypervisor_root);
    DomainMemory::new(memory, frames, hypervisor_root, max_pages).unwrap()
}

#[test]
fn live_spaces_counts_created_and_destroyed() {
    let (mut memory, mut frames) = (TestMemory::default(), TestFrames::new());
    let mut domain = domain(&mut memory, &mut frames, 16);
    assert_eq!(domain.live_spaces(), 1);
    assert_eq!(domain.create_space(&mut memory, &mut frames), Ok(1));
    assert_eq!(domain.create_space(&mut memory, &mut frames), Ok(2));
    assert_eq!(domain.live_spaces(), 3);
    domain.destroy_space(&mut memory, &mut frames, 1).unwrap();
    assert_eq!(domain.live_spaces(), 2);
    domain.destroy(&mut memory, &mut frames);
    assert!(frames.outstanding.is_empty());
}

#[test]
fn only_a_large_map_in_the_loaded_root_flushes() {
    let (mut memory, mut frames) = (TestMemory::default(), TestFrames::new());
    let mut domain = domain(&mut memory, &mut frames, 2 * LARGE_PAGE_PAGES);
    let block = domain.populate(&mut memory, &mut frames, PageSize::Large).unwrap();
    let small = domain.populate(&mut memory, &mut frames, PageSize::Small).unwrap();
    let other = domain.create_space(&mut memory, &mut frames).unwrap();
    let mut machine = Machine::default();
    domain.map(&mut memory, &mut frames, &mut machine, INITIAL_SPACE, 0x1000, small, RW).unwrap();
    domain.map(&mut memory, &mut frames, &mut machine, other, 0x4000_0000, block, RW | map_flags::LARGE).unwrap();
    assert_eq!((machine.pages.len(), machine.all), (0, 0), "a 4 KiB map, and a 2 MiB map in a space not loaded");
    domain
        .map(&mut memory, &mut frames, &mut machine, INITIAL_SPACE, 0x4000_0000, block, RW | map_flags::LARGE)
        .unwrap();
    assert_eq!(machine.pages, [0x4000_0000]);
    assert_eq!(machine.all, 0);
}

#[test]
fn flush_reaches_only_the_loaded_root() {
    let (mut memory, mut frames) = (TestMemory::default(), TestFrames::new());
    let mut domain = domain(&mut memory, &mut frames, 16);
    let other = domain.create_space(&mut memory, &mut frames).unwrap();
    let mut machine = Machine::default();
    domain.flush(&mut machine, other, None).unwrap();
    domain.flush(&mut machine, other, Some(0x1000)).unwrap();
    assert_eq!((machine.pages.len(), machine.all), (0, 0));
    domain.flush(&mut machine, INITIAL_SPACE, None).unwrap();
    domain.flush(&mut machine, INITIAL_SPACE, Some(0x1000)).unwrap();
    assert_eq!((machine.pages, machine.all), (vec![0x1000], 1));
    assert_eq!(domain.flush(&mut Machine::default(), 9, None), Err(MemoryError::NoSuchSpace));
}

#[test]
fn release_flushes_what_it_unmaps_from_the_loaded_root() {
    let (mut memory, mut frames) = (TestMemory::default(), TestFrames::new());
    let mut domain = domain(&mut memory, &mut frames, 16);
    let gfn = domain.populate(&mut memory, &mut frames, PageSize::Small).unwrap();
    let mut machine = Machine::default();
    domain.map(&mut memory, &mut frames, &mut machine, INITIAL_SPACE, 0x7000, gfn, RW).unwrap();
    domain.release(&mut memory, &mut frames, &mut machine, gfn, PageSize::Small).unwrap();
    assert_eq!(machine.pages, [0x7000]);
    assert_eq!(domain.gfn_frame(gfn), None);
}

#[test]
fn a_preempted_release_is_in_progress_until_it_finishes() {
    let (mut memory, mut frames) = (TestMemory::default(), TestFrames::new());
    let mut domain = domain(&mut memory, &mut frames, 16);
    let gfn = domain.populate(&mut memory, &mut frames, PageSize::Small).unwrap();
    let mut machine = Machine::default();
    // Two root slots hold tables: the walk can stop after the first.
    for address in [0x1000, 0x80_0000_1000] {
        domain.map(&mut memory, &mut frames, &mut machine, INITIAL_SPACE, address, gfn, RW).unwrap();
    }
    assert!(!domain.release_in_progress());
    domain.mark_for_release(gfn, PageSize::Small).unwrap();
    machine.due_in = Some(0);
    assert!(!domain.release_marked_preemptibly(&mut memory, &mut frames, &mut machine));
    assert!(domain.release_in_progress());
    assert!(domain.gfn_frame(gfn).is_some(), "freed only when the walk is done");
    machine.due_in = None;
    assert!(domain.release_marked_preemptibly(&mut memory, &mut frames, &mut machine));
    assert!(!domain.release_in_progress());
    assert_eq!(domain.gfn_frame(gfn), None);
}

/// A released gfn no longer counts as doomed in its block: a 2 MiB leaf later made of
/// that block survives the release of a gfn in another block.
#[test]
fn released_gfns_leave_their_block_undoomed() {
    let (mut memory, mut frames) = (TestMemory::default(), TestFrames::new());
    let mut domain = domain(&mut memory, &mut frames, 2 * LARGE_PAGE_PAGES);
    let mut tlb = Machine::default();
    let first = domain.populate(&mut memory, &mut frames, PageSize::Small).unwrap();
    domain.map(&mut memory, &mut frames, &mut tlb, INITIAL_SPACE, 0x1000, first, RW).unwrap();
    domain.release(&mut memory, &mut frames, &mut tlb, first, PageSize::Small).unwrap();
    let block = domain.populate(&mut memory, &mut frames, PageSize::Large).unwrap();
    assert_eq!(block, first, "the same block again");
    domain.map(&mut memory, &mut frames, &mut tlb, INITIAL_SPACE, 0x4000_0000, block, RW | map_flags::LARGE).unwrap();
    let other = domain.populate(&mut memory, &mut frames, PageSize::Small).unwrap();
    assert_eq!(other, LARGE_PAGE_PAGES);
    domain.map(&mut memory, &mut frames, &mut tlb, INITIAL_SPACE, 0x2000, other, RW).unwrap();
    domain.release(&mut memory, &mut frames, &mut tlb, other, PageSize::Small).unwrap();
    assert_eq!(domain.query(&memory, INITIAL_SPACE, 0x4000_0000), Ok(block << 12 | u64::from(RW | map_flags::LARGE)));
    assert_eq!(domain.mapping_count(block), 1);
}

#[test]
fn a_large_block_is_zeroed_whole() {
    let (mut memory, mut frames) = (TestMemory::default(), TestFrames::new());
    let mut domain = domain(&mut memory, &mut frames, LARGE_PAGE_PAGES);
    // TestFrames hands out the first 512-aligned block above what it gave so far: 0x200.
    for number in 0x200..0x400 {
        memory.write(Frame::from_number(number), 0, &[0xff; 8]);
    }
    let block = domain.populate(&mut memory, &mut frames, PageSize::Large).unwrap();
    for gfn in block..block + LARGE_PAGE_PAGES {
        let frame = domain.gfn_frame(gfn).unwrap();
        assert_eq!(frame, Frame::from_number(0x200 + gfn));
        let mut bytes = [0xee; 8];
        memory.read(frame, 0, &mut bytes);
        assert_eq!(bytes, [0; 8], "gfn {gfn}");
    }
}

/// Small frames from 0x100 up, and one given 2 MiB block; records what is freed.
struct FixedBlock {
    next: u64,
    block: Frame,
    freed: BTreeSet<u64>,
}

impl FrameSource for FixedBlock {
    fn allocate(&mut self) -> Option<Frame> {
        self.next += 1;
        Some(Frame::from_number(self.next))
    }
    fn allocate_large(&mut self) -> Option<Frame> {
        Some(self.block)
    }
    fn free(&mut self, frame: Frame) {
        assert!(self.freed.insert(frame.number()), "double free of {frame:?}");
    }
}

#[test]
fn a_block_high_in_machine_memory_is_used() {
    let mut memory = TestMemory::default();
    let block = Frame::from_number(0x100_0000);
    let mut frames = FixedBlock { next: 0x100, block, freed: BTreeSet::new() };
    let mut domain = domain(&mut memory, &mut frames, LARGE_PAGE_PAGES);
    assert_eq!(domain.populate(&mut memory, &mut frames, PageSize::Large), Ok(0));
    assert_eq!(domain.gfn_frame(511), Some(Frame::from_number(0x100_01ff)));
}

#[test]
fn a_block_past_the_gfn_table_range_is_given_back_whole() {
    let mut memory = TestMemory::default();
    // Its last frame is u32::MAX, which the p2m cannot hold.
    let first = u64::from(u32::MAX) + 1 - LARGE_PAGE_PAGES;
    let mut frames = FixedBlock { next: 0x100, block: Frame::from_number(first), freed: BTreeSet::new() };
    let mut domain = domain(&mut memory, &mut frames, LARGE_PAGE_PAGES);
    assert_eq!(domain.populate(&mut memory, &mut frames, PageSize::Large), Err(MemoryError::NoMemory));
    assert_eq!(frames.freed, (first..first + LARGE_PAGE_PAGES).collect());
    assert_eq!(domain.populated_pages(), 0);
}

/// A 2 MiB map over an empty page table frees that table - also when the table quota is
/// used up, since freeing never needs quota.
#[test]
fn a_large_map_frees_the_empty_table_it_replaces_at_a_full_quota() {
    let (mut memory, mut frames) = (TestMemory::default(), TestFrames::new());
    let mut domain = domain(&mut memory, &mut frames, LARGE_PAGE_PAGES);
    let block = domain.populate(&mut memory, &mut frames, PageSize::Large).unwrap();
    let mut tlb = Machine::default();
    let base = 0x4000_0000;
    let mut region = 0;
    while domain.table_frames() < domain.table_limit() {
        let address = base + region * LARGE_BYTES;
        domain.map(&mut memory, &mut frames, &mut tlb, INITIAL_SPACE, address, block, RW).unwrap();
        region += 1;
    }
    assert_eq!(domain.table_frames(), domain.table_limit());
    domain.unmap(&mut memory, &mut tlb, INITIAL_SPACE, base, false).unwrap();
    let outstanding = frames.outstanding.len();
    domain.map(&mut memory, &mut frames, &mut tlb, INITIAL_SPACE, base, block, RW | map_flags::LARGE).unwrap();
    assert_eq!(frames.outstanding.len(), outstanding - 1, "the empty page table is freed");
    assert_eq!(domain.table_frames(), domain.table_limit() - 1);
    domain.destroy(&mut memory, &mut frames);
    assert!(frames.outstanding.is_empty());
}
