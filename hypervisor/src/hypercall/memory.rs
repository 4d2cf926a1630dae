//! The bodies of the memory hypercalls (SPEC.md §12): `memory_op`, `address_space_op` and
//! `mmu_update`. Arguments are the guest's registers `[RDI, RSI, RDX, R10, R8, R9]`; every
//! one is hostile. Guest arrays are read and written through the checked accessor in the
//! kernel root (hypercalls come only from guest-kernel mode). Batches do at most
//! [`BATCH_MAX`] entries, whatever count the guest passes, and stop at a preemption point
//! when the machine says one is due (SPEC.md §5.5), to be resumed from where they stopped.

use crate::hypercall::guest::{empty_array, Batch};
use crate::mm::domain_memory::{DomainMemory, MemoryError};
use crate::mm::frames::FrameSource;
use crate::mm::guest_memory::{copy_from_guest, copy_to_guest};
use crate::mm::paging::{FrameMemory, PageSize};
use arrayvec::ArrayVec;
use hypercall_abi::errno::Errno;
use hypercall_abi::memory::{map_flags, map_op, memory_cmd, space_cmd, MapEntry, BATCH_MAX, LARGE_PAGE_ORDER};
use hypercall_abi::Gfn;
use zerocopy::FromBytes;

pub use crate::mm::domain_memory::{Preemption, Tlb};

/// Bytes of one gfn in a guest array.
const GFN_BYTES: u64 = 8;
/// Bytes of one [`MapEntry`].
const ENTRY_BYTES: u64 = core::mem::size_of::<MapEntry>() as u64;

/// The address of element `index` of a guest array, or `None` if it wraps.
fn element(base: u64, index: u64, size: u64) -> Option<u64> {
    index.checked_mul(size).and_then(|offset| base.checked_add(offset))
}

/// A batch's result: the number done, or the error if it stopped at its first extent.
fn stopped(done: u64, error: Errno) -> i64 {
    if done == 0 {
        error.to_return()
    } else {
        done as i64
    }
}

fn extent_size(order: u64) -> Option<PageSize> {
    match order {
        0 => Some(PageSize::Small),
        LARGE_PAGE_ORDER => Some(PageSize::Large),
        _ => None,
    }
}

fn result(outcome: Result<(), MemoryError>) -> i64 {
    outcome.map_or_else(|error| error.errno().to_return(), |()| 0)
}

/// `memory_op(cmd, a, b, c)`: reservation queries and changes; the reservation batches
/// start at extent `done` (0, or where a preemption stopped them).
pub fn memory_op(
    arguments: &[u64; 6],
    done: u64,
    domain: &mut DomainMemory,
    memory: &mut impl FrameMemory,
    frames: &mut impl FrameSource,
    machine: &mut (impl Tlb + Preemption),
) -> Batch {
    let [command, gfns, count, order, ..] = *arguments;
    let increasing = match command {
        // Quotas are at most 2^24 pages: these always fit an i64.
        memory_cmd::CURRENT_RESERVATION => return Batch::Finished(domain.populated_pages() as i64),
        memory_cmd::MAXIMUM_RESERVATION => return Batch::Finished(domain.max_pages() as i64),
        memory_cmd::MAXIMUM_GFN => return Batch::Finished(domain.maximum_gfn() as i64),
        memory_cmd::INCREASE_RESERVATION => true,
        memory_cmd::DECREASE_RESERVATION => false,
        _ => return Batch::Finished(Errno::EINVAL.to_return()),
    };
    let Some(size) = extent_size(order) else {
        return Batch::Finished(Errno::EINVAL.to_return());
    };
    if count == 0 {
        return Batch::Finished(empty_array(gfns).map_or_else(Errno::to_return, |()| 0));
    }
    if increasing {
        increase(domain, memory, frames, machine, gfns, count, done, size)
    } else {
        decrease(domain, memory, frames, machine, gfns, count, done, size)
    }
}

#[allow(clippy::too_many_arguments)] // One batch's arguments, its progress and the machine.
fn increase(
    domain: &mut DomainMemory,
    memory: &mut impl FrameMemory,
    frames: &mut impl FrameSource,
    machine: &mut (impl Tlb + Preemption),
    gfns: u64,
    count: u64,
    from: u64,
    size: PageSize,
) -> Batch {
    let total = count.min(BATCH_MAX);
    for done in from..total {
        if done > from && machine.due() {
            return Batch::Preempted(done);
        }
        let gfn = match domain.populate(memory, frames, size) {
            Ok(gfn) => gfn,
            Err(error) => return Batch::Finished(stopped(done, error.errno())),
        };
        let written = element(gfns, done, GFN_BYTES)
            .is_some_and(|address| copy_to_guest(memory, domain.kernel_space(), address, &gfn.to_le_bytes()).is_ok());
        if !written {
            // The guest cannot learn the gfn, so it could never give it back: undo.
            domain.release(memory, frames, machine, gfn, size).expect("a gfn just populated is releasable");
            return Batch::Finished(stopped(done, Errno::EFAULT));
        }
    }
    Batch::Finished(total as i64)
}

#[allow(clippy::too_many_arguments)] // One batch's arguments, its progress and the machine.
fn decrease(
    domain: &mut DomainMemory,
    memory: &mut impl FrameMemory,
    frames: &mut impl FrameSource,
    machine: &mut (impl Tlb + Preemption),
    gfns: u64,
    count: u64,
    from: u64,
    size: PageSize,
) -> Batch {
    // Every extent is read, validated and marked first, then all are released with one
    // walk of the domain's spaces: releasing them one by one would cost a walk of every
    // table of every space per mapped gfn (XSA-45 class). Reads come from the guest's
    // kernel root, which the release changes, but only after the last read. Both phases
    // stop at preemption points (SPEC.md §5.5): the marks and the walk's place are kept in
    // the domain's memory.
    if domain.release_in_progress() {
        // Marking had ended: go on with the walk. If an extent had failed, it is read and
        // refused again below with the same error: its read only sees fewer mappings, and
        // a gfn refused then is no more releasable now.
        if !domain.release_marked_preemptibly(memory, frames, machine) {
            return Batch::Preempted(from);
        }
    }
    let total = count.min(BATCH_MAX);
    let mut done = from;
    let mut failure = None;
    while done < total {
        if done > from && machine.due() {
            return Batch::Preempted(done);
        }
        let mut bytes = [0u8; GFN_BYTES as usize];
        let read = element(gfns, done, GFN_BYTES)
            .is_some_and(|address| copy_from_guest(memory, domain.kernel_space(), address, &mut bytes).is_ok());
        if !read {
            failure = Some(Errno::EFAULT);
            break;
        }
        if let Err(error) = domain.mark_for_release(u64::from_le_bytes(bytes), size) {
            failure = Some(error.errno());
            break;
        }
        done += 1;
    }
    if !domain.release_marked_preemptibly(memory, frames, machine) {
        return Batch::Preempted(done);
    }
    match failure {
        Some(error) => Batch::Finished(stopped(done, error)),
        None => Batch::Finished(done as i64),
    }
}

/// `address_space_op(cmd, a, b)`: create, destroy, switch, flush and query spaces.
pub fn address_space_op(
    arguments: &[u64; 6],
    domain: &mut DomainMemory,
    memory: &mut impl FrameMemory,
    frames: &mut impl FrameSource,
    tlb: &mut impl Tlb,
) -> i64 {
    let [command, first, second, ..] = *arguments;
    match command {
        space_cmd::CREATE => {
            domain.create_space(memory, frames).map_or_else(|error| error.errno().to_return(), |handle| handle as i64)
        }
        space_cmd::DESTROY => result(domain.destroy_space(memory, frames, first)),
        space_cmd::SWITCH => result(domain.switch(first, second)),
        space_cmd::FLUSH_VA => result(domain.flush(tlb, first, Some(second))),
        space_cmd::FLUSH_ALL => result(domain.flush(tlb, first, None)),
        // A gfn is below 2^24, so `gfn << 12 | flags` is a positive i64.
        space_cmd::QUERY => {
            domain.query(memory, first, second).map_or_else(|error| error.errno().to_return(), |value| value as i64)
        }
        _ => Errno::EINVAL.to_return(),
    }
}

/// `mmu_update(handle, entries, count, done)`: applies up to [`BATCH_MAX`] entries in
/// order from entry `from` (0, or where a preemption stopped it), stopping at the first
/// that fails; writes the number completed to `done` if it is not 0. Returns that number,
/// or the failing entry's error.
pub fn mmu_update(
    arguments: &[u64; 6],
    from: u64,
    domain: &mut DomainMemory,
    memory: &mut impl FrameMemory,
    frames: &mut impl FrameSource,
    machine: &mut (impl Tlb + Preemption),
) -> Batch {
    let [handle, entries, count, done_address, ..] = *arguments;
    if !domain.has_space(handle) {
        return Batch::Finished(Errno::ESRCH.to_return());
    }
    if count == 0 {
        if let Err(error) = empty_array(entries) {
            return Batch::Finished(error.to_return());
        }
    }
    let mut done = from;
    let mut failure = None;
    let mut preempted = false;
    let mut batched = BatchedTlb::new(machine);
    while done < count.min(BATCH_MAX) {
        if done > from && batched.inner.due() {
            preempted = true;
            break;
        }
        let outcome = read_entry(domain, memory, entries, done)
            .and_then(|entry| apply(domain, memory, frames, &mut batched, handle, &entry));
        if let Err(error) = outcome {
            failure = Some(error);
            break;
        }
        done += 1;
    }
    // Flushed before a preemption too: whoever runs next, this domain's next group
    // included, must not use a stale translation of what this group changed.
    batched.finish();
    if preempted {
        return Batch::Preempted(done);
    }
    if done_address != 0 && copy_to_guest(memory, domain.kernel_space(), done_address, &done.to_le_bytes()).is_err() {
        return Batch::Finished(Errno::EFAULT.to_return());
    }
    Batch::Finished(failure.map_or(done as i64, Errno::to_return))
}

/// Collects one batch's flushes and carries them out before the batch returns: up to
/// [`BATCHED_PAGES`] single-page flushes, beyond that one full flush (cheaper than
/// hundreds of INVLPGs, each a trap on some hosts). Deferring within a batch is safe:
/// the hypervisor reads guest memory by walking the tables, never through the TLB.
///
/// The pages are an `ArrayVec`, which leaves its storage uninitialized: zeroing a
/// 32-entry array cost every `mmu_update` ~50 instructions, more than its one common
/// entry's flush.
struct BatchedTlb<'a, T: Tlb> {
    inner: &'a mut T,
    pages: ArrayVec<u64, BATCHED_PAGES>,
    everything: bool,
}

/// Single-page flushes one batch may defer before a full flush is cheaper.
const BATCHED_PAGES: usize = 32;

impl<'a, T: Tlb> BatchedTlb<'a, T> {
    fn new(inner: &'a mut T) -> Self {
        Self { inner, pages: ArrayVec::new(), everything: false }
    }

    fn finish(self) {
        if self.everything {
            self.inner.flush_all();
        } else {
            for &page in &self.pages {
                self.inner.flush_page(page);
            }
        }
    }
}

impl<T: Tlb> Tlb for BatchedTlb<'_, T> {
    fn flush_page(&mut self, virtual_address: u64) {
        if self.everything {
            return;
        }
        if self.pages.try_push(virtual_address).is_err() {
            self.everything = true;
        }
    }

    fn flush_all(&mut self) {
        self.everything = true;
    }
}

fn read_entry(domain: &DomainMemory, memory: &impl FrameMemory, entries: u64, index: u64) -> Result<MapEntry, Errno> {
    let mut bytes = [0u8; ENTRY_BYTES as usize];
    let address = element(entries, index, ENTRY_BYTES).ok_or(Errno::EFAULT)?;
    copy_from_guest(memory, domain.kernel_space(), address, &mut bytes).map_err(|_| Errno::EFAULT)?;
    Ok(MapEntry::read_from_bytes(&bytes).expect("the buffer is one entry long"))
}

fn apply(
    domain: &mut DomainMemory,
    memory: &mut impl FrameMemory,
    frames: &mut impl FrameSource,
    tlb: &mut impl Tlb,
    handle: u64,
    entry: &MapEntry,
) -> Result<(), Errno> {
    if entry.flags & !map_flags::ALL != 0 {
        return Err(Errno::EINVAL);
    }
    let address = entry.virtual_address.0;
    let outcome = match entry.op {
        map_op::MAP => domain.map(memory, frames, tlb, handle, address, entry.gfn.0, entry.flags),
        map_op::UNMAP | map_op::PROTECT if entry.gfn != Gfn(0) => Err(MemoryError::Invalid),
        map_op::UNMAP => domain.unmap(memory, tlb, handle, address, entry.flags & map_flags::LARGE != 0),
        map_op::PROTECT => domain.protect(memory, tlb, handle, address, entry.flags),
        _ => Err(MemoryError::Invalid),
    };
    outcome.map_err(MemoryError::errno)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::fakes::{TestFrames, TestMemory};
    use crate::mm::frames::Frame;
    use hypercall_abi::layout::HYPERVISOR_START;
    use hypercall_abi::memory::{split_query, INITIAL_SPACE, LARGE_PAGE_PAGES, LARGE_PAGE_SIZE, NO_SPACE, SPACES_MAX};
    use hypercall_abi::GuestVirtualAddress;
    use zerocopy::IntoBytes;

    /// Guest arrays live here: BUFFER_PAGES pages mapped RW in the initial space.
    const BUFFER: u64 = 0x10_0000;
    const BUFFER_PAGES: u64 = 8;
    /// A free VA area for the tests' own mappings.
    const AREA: u64 = 0x4000_0000;
    const RW: u32 = map_flags::WRITABLE | map_flags::USER;

    /// Records flushes; says a preemption is due on every other question, so every batch
    /// of more than a few elements in these tests runs as a chain of continuations.
    struct RecordingTlb {
        pages: Vec<u64>,
        all: u32,
        /// `due` answers true once every this many questions; 0 never.
        preempt_every: u32,
        asked: u32,
        /// How many times a batch stopped and was resumed.
        preemptions: u32,
    }

    impl Default for RecordingTlb {
        fn default() -> Self {
            Self { pages: Vec::new(), all: 0, preempt_every: 2, asked: 0, preemptions: 0 }
        }
    }

    impl Tlb for RecordingTlb {
        fn flush_page(&mut self, virtual_address: u64) {
            self.pages.push(virtual_address);
        }
        fn flush_all(&mut self) {
            self.all += 1;
        }
    }

    impl Preemption for RecordingTlb {
        fn due(&mut self) -> bool {
            self.asked += 1;
            self.preempt_every != 0 && self.asked.is_multiple_of(self.preempt_every)
        }
    }

    /// Runs a batch to its end as the system does: each preemption is resumed from where
    /// it stopped, never before where that run began. (A release's walk keeps its own place,
    /// so a run may stop at the extent it began at; a bound on the runs catches a
    /// continuation that never finishes.)
    fn complete(mut run: impl FnMut(u64) -> Batch) -> (i64, u32) {
        let mut from = 0;
        let mut preemptions = 0;
        loop {
            match run(from) {
                Batch::Finished(result) => return (result, preemptions),
                Batch::Preempted(done) => {
                    assert!(done >= from, "a continuation went back: stopped at {done}, began at {from}");
                    from = done;
                    preemptions += 1;
                    assert!(preemptions < 1_000_000, "a continuation that never finishes");
                }
            }
        }
    }

    struct Fixture {
        memory: TestMemory,
        frames: TestFrames,
        domain: DomainMemory,
        tlb: RecordingTlb,
    }

    fn fixture(max_pages: u64) -> Fixture {
        let mut memory = TestMemory::default();
        let mut frames = TestFrames::new();
        let hypervisor_root = Frame::from_number(1);
        memory.zero(hypervisor_root);
        let mut domain = DomainMemory::new(&mut memory, &mut frames, hypervisor_root, max_pages).unwrap();
        let mut tlb = RecordingTlb::default();
        for page in 0..BUFFER_PAGES {
            let gfn = domain.populate(&mut memory, &mut frames, PageSize::Small).unwrap();
            domain.map(&mut memory, &mut frames, &mut tlb, INITIAL_SPACE, BUFFER + page * 4096, gfn, RW).unwrap();
        }
        Fixture { memory, frames, domain, tlb: RecordingTlb::default() }
    }

    impl Fixture {
        fn memory_op(&mut self, arguments: [u64; 4]) -> i64 {
            let [a, b, c, d] = arguments;
            let (result, preemptions) = complete(|done| {
                memory_op(
                    &[a, b, c, d, 0, 0],
                    done,
                    &mut self.domain,
                    &mut self.memory,
                    &mut self.frames,
                    &mut self.tlb,
                )
            });
            self.tlb.preemptions += preemptions;
            result
        }

        fn space_op(&mut self, command: u64, first: u64, second: u64) -> i64 {
            address_space_op(
                &[command, first, second, 0, 0, 0],
                &mut self.domain,
                &mut self.memory,
                &mut self.frames,
                &mut self.tlb,
            )
        }

        fn write(&mut self, address: u64, bytes: &[u8]) {
            copy_to_guest(&mut self.memory, self.domain.kernel_space(), address, bytes).unwrap();
        }

        fn read_u64(&self, address: u64) -> u64 {
            let mut bytes = [0u8; 8];
            copy_from_guest(&self.memory, self.domain.kernel_space(), address, &mut bytes).unwrap();
            u64::from_le_bytes(bytes)
        }

        /// Runs mmu_update with `entries` at BUFFER and `done` just after them.
        fn mmu(&mut self, handle: u64, entries: &[MapEntry]) -> (i64, u64) {
            self.write(BUFFER, entries.as_bytes());
            let done_address = BUFFER + (entries.len() as u64) * ENTRY_BYTES;
            self.write(done_address, &u64::MAX.to_le_bytes());
            let arguments = [handle, BUFFER, entries.len() as u64, done_address, 0, 0];
            let (result, preemptions) = complete(|done| {
                mmu_update(&arguments, done, &mut self.domain, &mut self.memory, &mut self.frames, &mut self.tlb)
            });
            self.tlb.preemptions += preemptions;
            (result, self.read_u64(done_address))
        }

        fn increase(&mut self, count: u64, order: u64) -> (i64, Vec<u64>) {
            let result = self.memory_op([memory_cmd::INCREASE_RESERVATION, BUFFER, count, order]);
            let gfns = (0..result.max(0) as u64).map(|index| self.read_u64(BUFFER + index * 8)).collect();
            (result, gfns)
        }

        fn decrease(&mut self, gfns: &[u64], order: u64) -> i64 {
            self.write(BUFFER, gfns.as_bytes());
            self.memory_op([memory_cmd::DECREASE_RESERVATION, BUFFER, gfns.len() as u64, order])
        }

        fn query(&mut self, handle: u64, address: u64) -> i64 {
            self.space_op(space_cmd::QUERY, handle, address)
        }

        /// Destroys the domain and checks that every frame came back.
        fn finish(self) {
            let Fixture { mut memory, mut frames, domain, .. } = self;
            domain.destroy(&mut memory, &mut frames);
            assert!(frames.outstanding.is_empty(), "{} frames leaked", frames.outstanding.len());
        }
    }

    fn map(address: u64, gfn: u64, flags: u32) -> MapEntry {
        MapEntry { virtual_address: GuestVirtualAddress(address), gfn: Gfn(gfn), op: map_op::MAP, flags }
    }

    fn unmap(address: u64, flags: u32) -> MapEntry {
        MapEntry { virtual_address: GuestVirtualAddress(address), gfn: Gfn(0), op: map_op::UNMAP, flags }
    }

    fn protect(address: u64, flags: u32) -> MapEntry {
        MapEntry { virtual_address: GuestVirtualAddress(address), gfn: Gfn(0), op: map_op::PROTECT, flags }
    }

    const EINVAL: i64 = -22;
    const EPERM: i64 = -1;
    const ENOENT: i64 = -2;
    const ESRCH: i64 = -3;
    const ENOMEM: i64 = -12;
    const EFAULT: i64 = -14;
    const EBUSY: i64 = -16;
    const EEXIST: i64 = -17;
    const ENOSPC: i64 = -28;

    #[test]
    fn reservation_queries() {
        let mut fixture = fixture(1000);
        assert_eq!(fixture.memory_op([memory_cmd::CURRENT_RESERVATION, 0, 0, 0]), BUFFER_PAGES as i64);
        assert_eq!(fixture.memory_op([memory_cmd::MAXIMUM_RESERVATION, 0, 0, 0]), 1000);
        assert_eq!(fixture.memory_op([memory_cmd::MAXIMUM_GFN, 0, 0, 0]), 1024);
        // Unknown sub-commands are bad arguments, as for every other multiplexed call.
        assert_eq!(fixture.memory_op([99, 0, 0, 0]), EINVAL);
        assert_eq!(fixture.memory_op([u64::MAX, 0, 0, 0]), EINVAL);
        assert_eq!(fixture.space_op(77, 0, 0), EINVAL);
        fixture.finish();
    }

    #[test]
    fn increase_gives_the_lowest_free_gfns_zeroed_up_to_the_quota() {
        let mut fixture = fixture(20);
        let (result, gfns) = fixture.increase(3, 0);
        assert_eq!(result, 3);
        assert_eq!(gfns, [8, 9, 10]);
        let frame = fixture.domain.gfn_frame(9).unwrap();
        let mut page = [1u8; 4096];
        crate::mm::paging::FrameMemory::read(&fixture.memory, frame, 0, &mut page);
        assert!(page.iter().all(|&byte| byte == 0));
        assert_eq!(fixture.decrease(&[9], 0), 1);
        assert_eq!(fixture.increase(1, 0).1, [9], "a released gfn is the lowest free again");
        // 11 populated of 20: 9 more fit, then -ENOMEM (first) or the count done.
        assert_eq!(fixture.increase(12, 0).0, 9);
        assert_eq!(fixture.domain.populated_pages(), 20);
        assert_eq!(fixture.increase(1, 0).0, ENOMEM);
        assert_eq!(fixture.increase(1, 9).0, ENOMEM);
        assert_eq!(fixture.increase(0, 0).0, 0);
        for order in [1, 8, 10, 64, u64::MAX] {
            assert_eq!(fixture.memory_op([memory_cmd::INCREASE_RESERVATION, BUFFER, 1, order]), EINVAL);
            assert_eq!(fixture.memory_op([memory_cmd::DECREASE_RESERVATION, BUFFER, 1, order]), EINVAL);
        }
        fixture.finish();
    }

    #[test]
    fn increase_into_an_unwritable_array_gives_the_extent_back() {
        let mut fixture = fixture(4096);
        let before = fixture.frames.outstanding.len();
        for address in [0, HYPERVISOR_START, u64::MAX - 3, 0x0000_8000_0000_0000] {
            assert_eq!(fixture.memory_op([memory_cmd::INCREASE_RESERVATION, address, 5, 0]), EFAULT);
            assert_eq!(fixture.memory_op([memory_cmd::INCREASE_RESERVATION, address, 5, 9]), EFAULT);
        }
        assert_eq!(fixture.frames.outstanding.len(), before);
        assert_eq!(fixture.domain.populated_pages(), BUFFER_PAGES);
        // The array ends mid-way: the extents written stay, the count says how many.
        let last_slot = BUFFER + BUFFER_PAGES * 4096 - 16;
        assert_eq!(fixture.memory_op([memory_cmd::INCREASE_RESERVATION, last_slot, 5, 0]), 2);
        assert_eq!(fixture.domain.populated_pages(), BUFFER_PAGES + 2);
        assert_eq!(fixture.memory_op([memory_cmd::DECREASE_RESERVATION, 0, 1, 0]), EFAULT);
        fixture.finish();
    }

    #[test]
    fn batches_are_bounded_whatever_the_count() {
        let mut fixture = fixture(1 << 14);
        for count in [1 << 32, u64::MAX] {
            let (result, gfns) = fixture.increase(count, 0);
            assert_eq!(result, BATCH_MAX as i64);
            assert_eq!(fixture.decrease(&gfns, 0), BATCH_MAX as i64);
            let arguments = [memory_cmd::DECREASE_RESERVATION, BUFFER, count, 0];
            assert_eq!(fixture.memory_op(arguments), EINVAL, "the array now names released gfns");
        }
        // 1024 + 1 entries of PROTECT on one page: exactly BATCH_MAX are done.
        let entries = vec![protect(BUFFER + 4096 * 7, RW); BATCH_MAX as usize + 1];
        fixture.write(BUFFER, entries.as_bytes());
        let done_address = BUFFER + 4096 * 7;
        for count in [1 << 32, u64::MAX] {
            let arguments = [INITIAL_SPACE, BUFFER, count, done_address, 0, 0];
            let result = complete(|done| {
                mmu_update(
                    &arguments,
                    done,
                    &mut fixture.domain,
                    &mut fixture.memory,
                    &mut fixture.frames,
                    &mut fixture.tlb,
                )
            })
            .0;
            assert_eq!(result, BATCH_MAX as i64);
            assert_eq!(fixture.read_u64(done_address), BATCH_MAX);
        }
        fixture.finish();
    }

    #[test]
    fn long_batches_flush_everything_once() {
        let mut fixture = fixture(128);
        // Each run of a preempted batch flushes what it changed before it stops (below).
        fixture.tlb.preempt_every = 0;
        let (_, gfns) = fixture.increase(96, 0);
        let maps: Vec<MapEntry> =
            gfns.iter().enumerate().map(|(index, &gfn)| map(AREA + index as u64 * 4096, gfn, RW)).collect();
        assert_eq!(fixture.mmu(INITIAL_SPACE, &maps), (96, 96));
        let few: Vec<MapEntry> = (0..BATCHED_PAGES as u64).map(|index| unmap(AREA + index * 4096, 0)).collect();
        assert_eq!(fixture.mmu(INITIAL_SPACE, &few), (BATCHED_PAGES as i64, BATCHED_PAGES as u64));
        assert_eq!(fixture.tlb.pages.len(), BATCHED_PAGES, "up to the limit, one flush per page");
        assert_eq!(fixture.tlb.all, 0);
        let rest: Vec<MapEntry> = (BATCHED_PAGES as u64..96).map(|index| unmap(AREA + index * 4096, 0)).collect();
        fixture.tlb.pages.clear();
        assert_eq!(fixture.mmu(INITIAL_SPACE, &rest), (rest.len() as i64, rest.len() as u64));
        assert!(fixture.tlb.pages.is_empty() && fixture.tlb.all == 1, "past the limit, one full flush instead");
        fixture.finish();
    }

    /// SPEC.md §5.4's zero-length rule in the memory batches: count 0 touches no element
    /// at any guest address (`mmu_update` still writes `done` = 0), and is -EFAULT at an
    /// address no array may have.
    #[test]
    fn count_zero_follows_the_zero_length_rule() {
        let mut fixture = fixture(64);
        let before = fixture.domain.populated_pages();
        for pointer in [0x0000_8000_0000_0000, HYPERVISOR_START, hypercall_abi::layout::HYPERVISOR_END - 1] {
            for command in [memory_cmd::INCREASE_RESERVATION, memory_cmd::DECREASE_RESERVATION] {
                assert_eq!(fixture.memory_op([command, pointer, 0, 0]), EFAULT, "{command} at {pointer:#x}");
                assert_eq!(fixture.memory_op([command, pointer, 0, 7]), EINVAL, "the order is checked first");
            }
            let arguments = [INITIAL_SPACE, pointer, 0, 0, 0, 0];
            assert_eq!(
                complete(|done| mmu_update(
                    &arguments,
                    done,
                    &mut fixture.domain,
                    &mut fixture.memory,
                    &mut fixture.frames,
                    &mut fixture.tlb
                ))
                .0,
                EFAULT
            );
            let arguments = [99, pointer, 0, 0, 0, 0];
            assert_eq!(
                complete(|done| mmu_update(
                    &arguments,
                    done,
                    &mut fixture.domain,
                    &mut fixture.memory,
                    &mut fixture.frames,
                    &mut fixture.tlb
                ))
                .0,
                ESRCH,
                "the handle is checked first"
            );
        }
        for pointer in [0, 0x1234, AREA, u64::MAX] {
            for command in [memory_cmd::INCREASE_RESERVATION, memory_cmd::DECREASE_RESERVATION] {
                assert_eq!(fixture.memory_op([command, pointer, 0, 0]), 0, "{command} at {pointer:#x}");
            }
            fixture.write(BUFFER, &u64::MAX.to_le_bytes());
            let arguments = [INITIAL_SPACE, pointer, 0, BUFFER, 0, 0];
            assert_eq!(
                complete(|done| mmu_update(
                    &arguments,
                    done,
                    &mut fixture.domain,
                    &mut fixture.memory,
                    &mut fixture.frames,
                    &mut fixture.tlb
                ))
                .0,
                0
            );
            assert_eq!(fixture.read_u64(BUFFER), 0, "done says 0");
        }
        assert_eq!(fixture.domain.populated_pages(), before);
        fixture.finish();
    }

    #[test]
    fn map_query_protect_unmap_one_page() {
        let mut fixture = fixture(64);
        let (_, gfns) = fixture.increase(1, 0);
        let gfn = gfns[0];
        let flags = map_flags::WRITABLE | map_flags::NO_EXECUTE | map_flags::WRITE_THROUGH;
        assert_eq!(fixture.mmu(INITIAL_SPACE, &[map(AREA, gfn, flags)]), (1, 1));
        assert!(fixture.tlb.pages.is_empty(), "filling a not-present entry needs no flush");
        let (queried_gfn, queried_flags) = split_query(fixture.query(INITIAL_SPACE, AREA + 0x123) as u64);
        assert_eq!((queried_gfn, queried_flags), (Gfn(gfn), flags));
        assert_eq!(fixture.mmu(INITIAL_SPACE, &[protect(AREA, RW)]), (1, 1));
        assert_eq!(fixture.tlb.pages, [AREA], "a changed entry of the loaded root is flushed");
        assert_eq!(split_query(fixture.query(INITIAL_SPACE, AREA) as u64), (Gfn(gfn), RW));
        assert_eq!(fixture.domain.mapping_count(gfn), 1);
        assert_eq!(fixture.mmu(INITIAL_SPACE, &[unmap(AREA, 0)]), (1, 1));
        assert_eq!(fixture.domain.mapping_count(gfn), 0);
        assert_eq!(fixture.query(INITIAL_SPACE, AREA), ENOENT);
        assert_eq!(fixture.mmu(INITIAL_SPACE, &[unmap(AREA, 0)]), (ENOENT, 0));
        assert_eq!(fixture.mmu(INITIAL_SPACE, &[protect(AREA, RW)]), (ENOENT, 0));
        fixture.finish();
    }

    #[test]
    fn every_per_entry_error() {
        let mut fixture = fixture(64);
        let (_, gfns) = fixture.increase(1, 0);
        let gfn = gfns[0];
        let cases = [
            (MapEntry { op: 3, ..map(AREA, gfn, RW) }, EINVAL),
            (MapEntry { op: u32::MAX, ..map(AREA, gfn, RW) }, EINVAL),
            (map(AREA, gfn, RW | 1 << 5), EINVAL),
            (map(AREA, gfn, u32::MAX), EINVAL),
            (MapEntry { gfn: Gfn(1), ..unmap(AREA, 0) }, EINVAL),
            (MapEntry { gfn: Gfn(1), ..protect(AREA, RW) }, EINVAL),
            (map(0x0000_8000_0000_0000, gfn, RW), EINVAL),
            (map(AREA + 0x800, gfn, RW), EINVAL),
            (map(AREA + 0x1000, gfn, RW | map_flags::LARGE), EINVAL),
            (map(HYPERVISOR_START, gfn, RW), EPERM),
            (map(HYPERVISOR_START + 0x7f_ffff_f000, gfn, RW), EPERM),
            (unmap(HYPERVISOR_START, 0), EPERM),
            (map(AREA, gfn + 1, RW), EINVAL),
            (map(AREA, 1 << 40, RW), EINVAL),
            (map(AREA, u64::MAX, RW), EINVAL),
            (map(BUFFER, gfn, RW), EEXIST),
            (map(AREA, 0, RW | map_flags::LARGE), EINVAL),
            (unmap(AREA, 0), ENOENT),
            (unmap(BUFFER, map_flags::LARGE), EINVAL),
            (protect(AREA, RW), ENOENT),
        ];
        for (entry, expected) in cases {
            assert_eq!(fixture.mmu(INITIAL_SPACE, &[entry]), (expected, 0), "{entry:?}");
        }
        assert_eq!(fixture.mmu(1, &[map(AREA, gfn, RW)]), (ESRCH, u64::MAX), "unknown handle: nothing written");
        assert_eq!(fixture.mmu(NO_SPACE, &[]), (ESRCH, u64::MAX));
        // Unreadable entries, unwritable done.
        let arguments = [INITIAL_SPACE, 0x7000_0000, 1, 0, 0, 0];
        assert_eq!(
            complete(|done| {
                mmu_update(
                    &arguments,
                    done,
                    &mut fixture.domain,
                    &mut fixture.memory,
                    &mut fixture.frames,
                    &mut fixture.tlb,
                )
            })
            .0,
            EFAULT
        );
        fixture.write(BUFFER, map(AREA, gfn, RW).as_bytes());
        let arguments = [INITIAL_SPACE, BUFFER, 1, HYPERVISOR_START, 0, 0];
        assert_eq!(
            complete(|done| {
                mmu_update(
                    &arguments,
                    done,
                    &mut fixture.domain,
                    &mut fixture.memory,
                    &mut fixture.frames,
                    &mut fixture.tlb,
                )
            })
            .0,
            EFAULT
        );
        assert!(fixture.query(INITIAL_SPACE, AREA) >= 0, "the completed entry stays done");
        let arguments = [INITIAL_SPACE, BUFFER, 0, 0, 0, 0];
        assert_eq!(
            complete(|done| {
                mmu_update(
                    &arguments,
                    done,
                    &mut fixture.domain,
                    &mut fixture.memory,
                    &mut fixture.frames,
                    &mut fixture.tlb,
                )
            })
            .0,
            0
        );
        fixture.finish();
    }

    #[test]
    fn overlapping_entries_stop_at_the_second() {
        let mut fixture = fixture(64);
        let (_, gfns) = fixture.increase(2, 0);
        let entries = [map(AREA, gfns[0], RW), map(AREA, gfns[1], RW), map(AREA + 0x1000, gfns[1], RW)];
        assert_eq!(fixture.mmu(INITIAL_SPACE, &entries), (EEXIST, 1));
        assert_eq!(split_query(fixture.query(INITIAL_SPACE, AREA) as u64).0, Gfn(gfns[0]));
        assert_eq!(fixture.query(INITIAL_SPACE, AREA + 0x1000), ENOENT, "nothing after the failure");
        fixture.finish();
    }

    #[test]
    fn aliases_in_every_space_go_when_the_gfn_is_released() {
        let mut fixture = fixture(64);
        let (_, gfns) = fixture.increase(2, 0);
        let (gfn, other) = (gfns[0], gfns[1]);
        let second = fixture.space_op(space_cmd::CREATE, 0, 0) as u64;
        let third = fixture.space_op(space_cmd::CREATE, 0, 0) as u64;
        assert_eq!((second, third), (1, 2));
        let aliases = [AREA, AREA + 0x1000, 0xffff_ffff_8000_0000, 0x7fff_ffff_f000];
        for handle in [INITIAL_SPACE, second, third] {
            let entries: Vec<_> = aliases.iter().map(|&address| map(address, gfn, RW)).collect();
            assert_eq!(fixture.mmu(handle, &entries), (4, 4));
            assert_eq!(fixture.mmu(handle, &[map(AREA + 0x2000, other, RW)]), (1, 1));
        }
        assert_eq!(fixture.domain.mapping_count(gfn), 12);
        fixture.tlb = RecordingTlb { preempt_every: fixture.tlb.preempt_every, ..RecordingTlb::default() };
        assert_eq!(fixture.decrease(&[gfn], 0), 1);
        assert_eq!(fixture.domain.mapping_count(gfn), 0);
        for handle in [INITIAL_SPACE, second, third] {
            for address in aliases {
                assert_eq!(fixture.query(handle, address), ENOENT, "{handle} {address:#x}");
            }
            assert_eq!(split_query(fixture.query(handle, AREA + 0x2000) as u64).0, Gfn(other));
        }
        let mut flushed = fixture.tlb.pages.clone();
        flushed.sort();
        let mut expected = aliases.to_vec();
        expected.sort();
        assert_eq!(flushed, expected, "only the loaded root's pages are flushed");
        assert_eq!(fixture.decrease(&[gfn], 0), EINVAL, "not populated any more");
        assert_eq!(fixture.decrease(&[other, gfn, other], 0), 1, "stops at the first bad gfn");
        assert_eq!(fixture.decrease(&[u64::MAX], 0), EINVAL);
        fixture.finish();
    }

    /// Counts page-table entry reads, to bound the work of a hypercall.
    struct CountingMemory<'a> {
        inner: &'a mut TestMemory,
        entry_reads: core::cell::Cell<u64>,
    }

    #[allow(unsafe_code)]
    // SAFETY: forwards to TestMemory, which touches no raw memory.
    unsafe impl FrameMemory for CountingMemory<'_> {
        fn read_entry(&self, table: Frame, index: usize) -> u64 {
            self.entry_reads.set(self.entry_reads.get() + 1);
            self.inner.read_entry(table, index)
        }
        fn write_entry(&mut self, table: Frame, index: usize, value: u64) {
            self.inner.write_entry(table, index, value);
        }
        fn zero(&mut self, frame: Frame) {
            self.inner.zero(frame);
        }
        fn read(&self, frame: Frame, offset: usize, buffer: &mut [u8]) {
            self.inner.read(frame, offset, buffer);
        }
        fn write(&mut self, frame: Frame, offset: usize, bytes: &[u8]) {
            self.inner.write(frame, offset, bytes);
        }
    }

    #[test]
    fn releasing_a_batch_of_mapped_gfns_walks_each_space_once() {
        // 200 mapped gfns in four spaces, each space with tables in many PML4 slots: one
        // walk per gfn (the old way) reads every table 200 times.
        let mut fixture = fixture(4096);
        let (_, gfns) = fixture.increase(200, 0);
        let spaces: Vec<u64> = (0..3).map(|_| fixture.space_op(space_cmd::CREATE, 0, 0) as u64).collect();
        for handle in spaces.iter().copied().chain([INITIAL_SPACE]) {
            for (index, &gfn) in gfns.iter().enumerate() {
                let address = ((index as u64 % 16 + 1) << 39) + index as u64 * 4096;
                assert_eq!(fixture.mmu(handle, &[map(address, gfn, RW)]), (1, 1));
            }
        }
        let tables = fixture.domain.table_frames();
        fixture.write(BUFFER, gfns.as_bytes());
        fixture.tlb.preempt_every = 1;
        let mut memory = CountingMemory { inner: &mut fixture.memory, entry_reads: core::cell::Cell::new(0) };
        let arguments = [memory_cmd::DECREASE_RESERVATION, BUFFER, gfns.len() as u64, 0, 0, 0];
        let (result, preemptions) = complete(|done| {
            memory_op(&arguments, done, &mut fixture.domain, &mut memory, &mut fixture.frames, &mut fixture.tlb)
        });
        assert_eq!(result, 200);
        // Preempted while marking and inside the walk, which goes on where it stopped: still
        // one walk per batch, not per gfn or per preemption.
        assert!(preemptions > 200, "{preemptions} preemptions");
        // One walk: every entry of every table; plus a four-level walk per gfn read.
        let one_walk = tables * 512;
        let reads = memory.entry_reads.get();
        assert!(reads <= one_walk + 200 * 4 * 2, "{reads} entry reads for one batch; one walk is {one_walk}");
        assert!(gfns
            .iter()
            .all(|&gfn| fixture.domain.mapping_count(gfn) == 0 && fixture.domain.gfn_frame(gfn).is_none()));
        for handle in spaces.iter().copied().chain([INITIAL_SPACE]) {
            assert_eq!(fixture.query(handle, 1 << 39), ENOENT);
            assert_eq!(fixture.domain.space(handle).unwrap().kernel_only_leaves(), 0);
        }
        // A gfn listed twice: the second is not populated by then.
        let (_, gfns) = fixture.increase(2, 0);
        assert_eq!(fixture.decrease(&[gfns[0], gfns[0], gfns[1]], 0), 1);
        assert!(fixture.domain.gfn_frame(gfns[0]).is_none() && fixture.domain.gfn_frame(gfns[1]).is_some());
        let (_, blocks) = fixture.increase(1, 9);
        assert_eq!(fixture.decrease(&[blocks[0], blocks[0]], 9), 1);
        assert_eq!(fixture.domain.populated_pages(), BUFFER_PAGES + 1);
        fixture.finish();
    }

    #[test]
    fn large_extents_map_query_and_release_inside() {
        let mut fixture = fixture(2048);
        let (result, gfns) = fixture.increase(2, 9);
        assert_eq!(result, 2);
        assert_eq!(gfns, [512, 1024], "block 0 holds the buffer pages");
        let block = gfns[0];
        let first = fixture.domain.gfn_frame(block).unwrap();
        assert!(first.number().is_multiple_of(512));
        assert!((0..512)
            .all(|page| fixture.domain.gfn_frame(block + page) == Some(Frame::from_number(first.number() + page))));
        let large = RW | map_flags::LARGE;
        let address = 0xffff_ffff_c000_0000;
        assert_eq!(fixture.mmu(INITIAL_SPACE, &[map(address, block + 1, large)]), (EINVAL, 0), "gfn not 512-aligned");
        assert_eq!(
            fixture.mmu(INITIAL_SPACE, &[map(address + 0x1000, block, large)]),
            (EINVAL, 0),
            "va not 2 MiB aligned"
        );
        assert_eq!(fixture.mmu(INITIAL_SPACE, &[map(AREA, 0, large)]), (EINVAL, 0), "block 0 is not one extent");
        assert_eq!(
            fixture.mmu(INITIAL_SPACE, &[map(address, block, large), map(address + 0x5000, 7, RW)]),
            (EEXIST, 1)
        );
        assert_eq!(split_query(fixture.query(INITIAL_SPACE, address + 0x5123) as u64), (Gfn(block + 5), large));
        // A 4 KiB alias of one gfn of the extent, and the whole extent in a second space.
        assert_eq!(fixture.mmu(INITIAL_SPACE, &[map(AREA, block + 3, RW)]), (1, 1));
        let other = fixture.space_op(space_cmd::CREATE, 0, 0) as u64;
        assert_eq!(fixture.mmu(other, &[map(address, block, large)]), (1, 1));
        assert_eq!(fixture.mmu(INITIAL_SPACE, &[unmap(address, 0)]), (ENOENT, 0), "size must match");
        assert_eq!(fixture.mmu(INITIAL_SPACE, &[protect(address, RW)]), (ENOENT, 0));
        assert_eq!(fixture.mmu(INITIAL_SPACE, &[protect(address, map_flags::LARGE | map_flags::USER)]), (1, 1));
        assert_eq!(split_query(fixture.query(INITIAL_SPACE, address) as u64).1, map_flags::LARGE | map_flags::USER);
        // Releasing one 4 KiB gfn inside the extent removes every 2 MiB leaf over it.
        assert_eq!(fixture.decrease(&[block + 5], 0), 1);
        assert_eq!(fixture.query(INITIAL_SPACE, address), ENOENT);
        assert_eq!(fixture.query(other, address + 0x1f_f000), ENOENT);
        assert_eq!(
            split_query(fixture.query(INITIAL_SPACE, AREA) as u64).0,
            Gfn(block + 3),
            "a 4 KiB alias of another gfn stays"
        );
        assert!((0..512).all(|page| fixture.domain.mapping_count(block + page) == u32::from(page == 3)));
        assert_eq!(fixture.mmu(other, &[map(address, block, large)]), (EINVAL, 0), "no longer one extent");
        // Order-9 release needs all 512 populated and aligned.
        assert_eq!(fixture.decrease(&[block], 9), EINVAL);
        assert_eq!(fixture.decrease(&[gfns[1] + 1], 9), EINVAL);
        assert_eq!(fixture.decrease(&[gfns[1]], 9), 1);
        assert_eq!(fixture.domain.populated_pages(), BUFFER_PAGES + 511);
        // Order 0 pages can refill block 2; order 9 takes the empty block again.
        assert_eq!(fixture.increase(1, 9).1, [1024]);
        fixture.finish();
    }

    #[test]
    fn large_extent_needs_a_machine_block() {
        let mut fixture = fixture(2048);
        fixture.frames.remaining = Some(511);
        assert_eq!(fixture.increase(1, 9).0, ENOMEM);
        fixture.frames.remaining = None;
        fixture.finish();
    }

    #[test]
    fn spaces_create_destroy_switch_and_flush() {
        let mut fixture = fixture(64);
        let (_, gfns) = fixture.increase(1, 0);
        let gfn = gfns[0];
        let mut handles = Vec::new();
        for _ in 1..SPACES_MAX {
            handles.push(fixture.space_op(space_cmd::CREATE, 0, 0));
        }
        assert_eq!(handles, (1..SPACES_MAX as i64).collect::<Vec<_>>());
        assert_eq!(fixture.space_op(space_cmd::CREATE, 0, 0), ENOSPC);
        assert_eq!(fixture.space_op(space_cmd::DESTROY, 5, 0), 0);
        assert_eq!(fixture.space_op(space_cmd::DESTROY, 5, 0), ESRCH);
        assert_eq!(fixture.space_op(space_cmd::CREATE, 0, 0), 5, "the lowest free handle");
        for bad in [SPACES_MAX, u64::MAX, 1 << 40] {
            assert_eq!(fixture.space_op(space_cmd::DESTROY, bad, 0), ESRCH);
            assert_eq!(fixture.space_op(space_cmd::SWITCH, bad, NO_SPACE), ESRCH);
            if bad != NO_SPACE {
                assert_eq!(fixture.space_op(space_cmd::SWITCH, 0, bad), ESRCH);
            }
            assert_eq!(fixture.space_op(space_cmd::FLUSH_ALL, bad, 0), ESRCH);
            assert_eq!(fixture.space_op(space_cmd::QUERY, bad, 0), ESRCH);
        }
        assert_eq!(fixture.space_op(space_cmd::DESTROY, INITIAL_SPACE, 0), EBUSY);
        assert_eq!(fixture.space_op(space_cmd::SWITCH, 1, 1), EINVAL);
        // A user root must hold no kernel-only page; the initial space holds the buffer only
        // as user pages, but space 2 gets a kernel-only page.
        assert_eq!(fixture.mmu(2, &[map(AREA, gfn, map_flags::WRITABLE)]), (1, 1));
        assert_eq!(fixture.space_op(space_cmd::SWITCH, 1, 2), EPERM);
        assert_eq!(fixture.mmu(2, &[protect(AREA, RW)]), (1, 1));
        assert_eq!(fixture.space_op(space_cmd::SWITCH, INITIAL_SPACE, 2), 0);
        assert_eq!(fixture.domain.user_root(), fixture.domain.space(2).map(|space| space.root()));
        assert_eq!(fixture.space_op(space_cmd::DESTROY, 2, 0), EBUSY);
        assert_eq!(fixture.mmu(2, &[map(AREA + 0x1000, gfn, map_flags::WRITABLE)]), (EPERM, 0));
        assert_eq!(fixture.mmu(2, &[protect(AREA, 0)]), (EPERM, 0));
        assert_eq!(fixture.mmu(2, &[map(AREA + 0x1000, gfn, map_flags::USER)]), (1, 1));
        // Flushes reach the TLB only for the loaded (kernel) root.
        fixture.tlb = RecordingTlb { preempt_every: fixture.tlb.preempt_every, ..RecordingTlb::default() };
        assert_eq!(fixture.space_op(space_cmd::FLUSH_VA, 2, AREA), 0);
        assert_eq!(fixture.space_op(space_cmd::FLUSH_ALL, 2, 0), 0);
        assert_eq!(fixture.space_op(space_cmd::FLUSH_VA, INITIAL_SPACE, AREA), 0);
        assert_eq!(fixture.space_op(space_cmd::FLUSH_ALL, INITIAL_SPACE, 0), 0);
        assert_eq!(fixture.space_op(space_cmd::FLUSH_VA, INITIAL_SPACE, 0x0000_8000_0000_0000), EINVAL);
        assert_eq!((fixture.tlb.pages.as_slice(), fixture.tlb.all), ([AREA].as_slice(), 1));
        // Switch the kernel root: the old one can then be destroyed, gfns untouched.
        assert_eq!(fixture.space_op(space_cmd::SWITCH, 3, NO_SPACE), 0);
        assert_eq!(fixture.domain.kernel_root(), fixture.domain.space(3).unwrap().root());
        assert_eq!(fixture.domain.user_root(), None);
        assert_eq!(fixture.domain.mapping_count(gfn), 2);
        assert_eq!(fixture.space_op(space_cmd::DESTROY, 2, 0), 0);
        assert_eq!(fixture.domain.mapping_count(gfn), 0, "destroying a space drops its mappings");
        assert!(fixture.domain.gfn_frame(gfn).is_some());
        assert_eq!(fixture.space_op(space_cmd::QUERY, 3, 0x0000_8000_0000_0000), EINVAL);
        fixture.finish();
    }

    #[test]
    fn shared_info_is_no_gfn_and_stays_mapped() {
        let mut fixture = fixture(64);
        let address = 0x20_0000;
        let shared = fixture.domain.shared_info_frame();
        fixture.domain.map_shared_info(&mut fixture.memory, &mut fixture.frames, address).unwrap();
        assert_eq!(fixture.domain.kernel_space().translate(&fixture.memory, address).unwrap().0, shared);
        assert_eq!(fixture.query(INITIAL_SPACE, address), ENOENT);
        assert_eq!(fixture.query(INITIAL_SPACE, HYPERVISOR_START), ENOENT);
        assert_eq!(fixture.mmu(INITIAL_SPACE, &[unmap(address, 0)]), (-1, 0));
        assert_eq!(fixture.mmu(INITIAL_SPACE, &[protect(address, RW)]), (-1, 0));
        // A 2 MiB request at the same (aligned) address is refused for the page it would
        // reach, not answered "not found".
        assert_eq!(fixture.mmu(INITIAL_SPACE, &[unmap(address, map_flags::LARGE)]), (-1, 0));
        assert_eq!(fixture.mmu(INITIAL_SPACE, &[protect(address, RW | map_flags::LARGE)]), (-1, 0));
        assert_eq!(fixture.domain.kernel_space().translate(&fixture.memory, address).unwrap().0, shared);
        fixture.finish();
    }

    #[test]
    fn page_table_quota_is_enforced_without_leaks() {
        // 64 pages: the table limit is 513; each map in a fresh 512 GiB slot costs 3 tables.
        let mut fixture = fixture(64);
        let (_, gfns) = fixture.increase(1, 0);
        let limit = fixture.domain.table_limit();
        assert_eq!(limit, 513);
        let mut slot = 1u64;
        let result = loop {
            let (result, _) = fixture.mmu(INITIAL_SPACE, &[map(slot << 39, gfns[0], RW)]);
            if result != 1 {
                break result;
            }
            slot += 1;
        };
        assert_eq!(result, ENOMEM);
        assert!(fixture.domain.table_frames() <= limit);
        assert!(fixture.domain.table_frames() + 3 > limit, "stopped only when it had to");
        assert_eq!(fixture.query(INITIAL_SPACE, slot << 39), ENOENT);
        // Tables a failed map linked stay owned (and counted): fill up with spaces.
        while fixture.space_op(space_cmd::CREATE, 0, 0) >= 0 {}
        assert_eq!(fixture.space_op(space_cmd::CREATE, 0, 0), ENOMEM);
        assert_eq!(fixture.domain.table_frames(), limit);
        fixture.finish();
        // Machine memory running out is the same error.
        let mut fixture = self::fixture(64);
        fixture.frames.remaining = Some(0);
        assert_eq!(fixture.space_op(space_cmd::CREATE, 0, 0), ENOMEM);
        assert_eq!(fixture.increase(1, 0).0, ENOMEM);
        assert_eq!(fixture.mmu(INITIAL_SPACE, &[map(AREA, 0, RW)]), (ENOMEM, 0));
        fixture.frames.remaining = None;
        fixture.finish();
    }

    #[test]
    fn destroy_returns_every_frame_after_arbitrary_operations() {
        for seed in 1..20u64 {
            let mut fixture = fixture(1200);
            let mut state = seed;
            let mut next = move |bound: u64| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (state >> 33) % bound
            };
            for _ in 0..300 {
                let handle = next(4);
                let gfn = next(1200);
                let address = AREA + next(2048) * 4096;
                let large_address = AREA + next(4) * LARGE_PAGE_SIZE;
                match next(10) {
                    0 => drop(fixture.increase(1 + next(3), 0)),
                    1 => drop(fixture.increase(1, 9)),
                    2 if gfn >= BUFFER_PAGES => drop(fixture.decrease(&[gfn], 0)),
                    3 => drop(fixture.mmu(handle, &[map(address, gfn, RW)])),
                    4 => drop(
                        fixture
                            .mmu(handle, &[map(large_address, gfn & !(LARGE_PAGE_PAGES - 1), RW | map_flags::LARGE)]),
                    ),
                    5 => drop(fixture.mmu(handle, &[unmap(address, 0), unmap(large_address, map_flags::LARGE)])),
                    6 => drop(fixture.space_op(space_cmd::CREATE, 0, 0)),
                    7 if handle != INITIAL_SPACE => drop(fixture.space_op(space_cmd::DESTROY, handle, 0)),
                    8 => drop(fixture.mmu(handle, &[protect(address, map_flags::USER)])),
                    _ => drop(fixture.query(handle, address)),
                }
            }
            fixture.finish();
        }
    }

    /// SPEC.md §5.5: preemption changes nothing but time. The same random batches (long
    /// ones, with bad gfns and duplicates inside, and gfns whose release unmaps the batch's
    /// own array) give the same results and leave the same state whether every run is
    /// preempted at its first chance, every third, or never.
    #[test]
    fn preempted_batches_give_the_results_of_unpreempted_ones() {
        let run = |preempt_every: u32, seed: u64| {
            let mut fixture = fixture(1200);
            fixture.tlb.preempt_every = preempt_every;
            let mut state = seed;
            let mut next = move |bound: u64| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (state >> 33) % bound
            };
            let mut results = Vec::new();
            for _ in 0..40 {
                let handle = next(3);
                match next(4) {
                    0 => results.push(fixture.increase(1 + next(200), 0).0),
                    1 => {
                        // Map a run of gfns, the buffer's own among them sometimes.
                        let first = next(1200);
                        let entries: Vec<MapEntry> = (0..next(300))
                            .map(|index| map(AREA + (first + index) * 4096, (first + index) % 1200, RW))
                            .collect();
                        results.push(fixture.mmu(handle, &entries).0);
                    }
                    2 => {
                        let gfns: Vec<u64> = (0..1 + next(300)).map(|_| next(1200)).collect();
                        results.push(fixture.decrease(&gfns, 0));
                    }
                    _ => results.push(fixture.space_op(space_cmd::CREATE, 0, 0)),
                }
            }
            let populated: Vec<bool> = (0..1200).map(|gfn| fixture.domain.gfn_frame(gfn).is_some()).collect();
            let counts: Vec<u32> = (0..1200).map(|gfn| fixture.domain.mapping_count(gfn)).collect();
            let preemptions = fixture.tlb.preemptions;
            fixture.finish();
            (results, populated, counts, preemptions)
        };
        for seed in 1..6 {
            let (results, populated, counts, none) = run(0, seed);
            assert_eq!(none, 0);
            for every in [1, 3] {
                let (preempted_results, preempted_populated, preempted_counts, preemptions) = run(every, seed);
                assert!(preemptions > 0, "seed {seed}: nothing was preempted");
                assert_eq!(preempted_results, results, "seed {seed}, every {every}");
                assert!(preempted_populated == populated && preempted_counts == counts, "seed {seed}, every {every}");
            }
        }
    }

    /// With a preemption always due, each kind of batch stops after exactly one element
    /// (never before the first), and a release preempted in its walk goes on with the
    /// walk, one root slot that holds tables per run, before it finishes.
    #[test]
    fn every_batch_stops_at_a_due_preemption_after_one_element() {
        let mut fixture = fixture(16);
        fixture.tlb.preempt_every = 1;
        let increase = [memory_cmd::INCREASE_RESERVATION, BUFFER, 3, 0, 0, 0];
        let Fixture { memory, frames, domain, tlb } = &mut fixture;
        assert_eq!(memory_op(&increase, 0, domain, memory, frames, tlb), Batch::Preempted(1));
        assert_eq!(memory_op(&increase, 1, domain, memory, frames, tlb), Batch::Preempted(2));
        assert_eq!(memory_op(&increase, 2, domain, memory, frames, tlb), Batch::Finished(3));
        let gfn = fixture.read_u64(BUFFER);
        // Two maps of the gfn, in root slots 1 and 2 (the buffer is in slot 0).
        let entries = [map(1 << 39, gfn, RW), map(2 << 39, gfn, RW)];
        fixture.write(BUFFER + 4096, entries.as_bytes());
        let update = [INITIAL_SPACE, BUFFER + 4096, 2, 0, 0, 0];
        let Fixture { memory, frames, domain, tlb } = &mut fixture;
        assert_eq!(mmu_update(&update, 0, domain, memory, frames, tlb), Batch::Preempted(1));
        assert_eq!(mmu_update(&update, 1, domain, memory, frames, tlb), Batch::Finished(2));
        assert_eq!(domain.mapping_count(gfn), 2);
        fixture.write(BUFFER, &gfn.to_le_bytes());
        let decrease = [memory_cmd::DECREASE_RESERVATION, BUFFER, 1, 0, 0, 0];
        let Fixture { memory, frames, domain, tlb } = &mut fixture;
        // The walk stops after root slots 0, 1 and 2, then finds nothing more.
        for from in [0, 1, 1] {
            assert_eq!(memory_op(&decrease, from, domain, memory, frames, tlb), Batch::Preempted(1));
            assert!(domain.release_in_progress());
        }
        assert_eq!(memory_op(&decrease, 1, domain, memory, frames, tlb), Batch::Finished(1));
        assert_eq!(domain.gfn_frame(gfn), None);
        fixture.finish();
    }
}
