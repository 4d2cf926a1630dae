//! A domain's memory (SPEC.md §12): its pseudo-physical frames (the p2m, gfn → machine
//! frame), its address spaces by handle, which of them are the kernel and user roots, its
//! quotas, and the hypervisor-owned shared-info frame. Everything a domain holds is
//! reachable from here, so `destroy` can give every frame back.

use crate::mm::frames::{Frame, FrameSource};
use crate::mm::paging::{AddressSpace, FrameMemory, Guarded, Leaf, MapError, PageFlags, PageSize};
use alloc::vec::Vec;
use core::hash::{BuildHasherDefault, Hasher};
use hashbrown::HashMap;
use hypercall_abi::errno::Errno;
use hypercall_abi::layout::is_canonical;
use hypercall_abi::memory::{map_flags, INITIAL_SPACE, LARGE_PAGE_PAGES, NO_SPACE, SPACES_MAX};

/// TLB maintenance for the address space that is loaded (the kernel root): changes to
/// other spaces need none, because loading a space writes CR3 and ringfence uses no PCID
/// and no global guest pages.
pub trait Tlb {
    /// Drops the translation of the page at `virtual_address`.
    fn flush_page(&mut self, virtual_address: u64);
    /// Drops every translation.
    fn flush_all(&mut self);
}

/// Entries of a root table: the slots a preemptible walk goes through one by one.
const ROOT_SLOTS: usize = 512;

/// Whether a long memory operation should stop for now (SPEC.md §5.5): asked between two
/// bounded steps, once at least one is done, so that every operation finishes.
pub trait Preemption {
    /// Whether the hypervisor has something else to do now.
    fn due(&mut self) -> bool;
}

/// Why a memory operation was refused; nothing changed. Each is one errno of the ABI.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum MemoryError {
    /// A bad argument: not this domain's gfn, bad alignment, non-canonical address...
    Invalid,
    /// The hypervisor range, or a kernel-only page in the user root.
    Permission,
    /// Nothing (of that size) is mapped there, or it is not a gfn.
    NotFound,
    /// Something is already mapped in the range.
    Exists,
    /// A quota or the machine's memory is exhausted.
    NoMemory,
    /// Every address-space handle is in use.
    NoSpace,
    /// The space is the kernel or the user root.
    Busy,
    /// No live address space has that handle.
    NoSuchSpace,
}

impl MemoryError {
    /// The ABI error number.
    pub fn errno(self) -> Errno {
        match self {
            Self::Invalid => Errno::EINVAL,
            Self::Permission => Errno::EPERM,
            Self::NotFound => Errno::ENOENT,
            Self::Exists => Errno::EEXIST,
            Self::NoMemory => Errno::ENOMEM,
            Self::NoSpace => Errno::ENOSPC,
            Self::Busy => Errno::EBUSY,
            Self::NoSuchSpace => Errno::ESRCH,
        }
    }
}

/// p2m value of a gfn that is not populated.
const ABSENT: u32 = u32::MAX;
/// Largest quota a domain may have: keeps every gfn, frame number and mapping count in a
/// u32 (leaves ≤ 512 per table frame, table frames ≤ 512 + max_pages / 64).
pub const MAX_PAGES_LIMIT: u64 = 1 << 24;

/// A frame source that refuses allocations past a quota (the page-table quota).
struct Quota<'a, F: FrameSource> {
    source: &'a mut F,
    remaining: u64,
}

impl<F: FrameSource> FrameSource for Quota<'_, F> {
    fn allocate(&mut self) -> Option<Frame> {
        if self.remaining == 0 {
            return None;
        }
        let frame = self.source.allocate()?;
        self.remaining -= 1;
        Some(frame)
    }

    fn free(&mut self, frame: Frame) {
        self.source.free(frame);
        self.remaining += 1;
    }
}

/// A domain's memory; see the module documentation.
#[derive(Debug)]
pub struct DomainMemory {
    /// gfn → machine frame number, [`ABSENT`] if not populated; `len()` = maximum gfn.
    p2m: Vec<u32>,
    /// gfn → number of 4 KiB leaves mapping it in all spaces, so releasing an unmapped
    /// gfn needs no page-table walk.
    mappings: Vec<u32>,
    /// 512-gfn block → number of 2 MiB leaves mapping it in all spaces. Kept per block
    /// (not added to each of its 512 gfns) so that dropping a 2 MiB leaf is O(1): a
    /// guest can hold hundreds of thousands of them within its table quota.
    large_mappings: Vec<u32>,
    /// gfns marked for release by the current batch (a bitmap), with the count per block
    /// and the range of bitmap words in use. Empty between batches.
    doomed: Vec<u64>,
    doomed_in_block: Vec<u16>,
    doomed_words: core::ops::Range<usize>,
    /// Some marked gfn is mapped somewhere: the batch needs one walk of every space.
    doomed_mapped: bool,
    /// Where a preempted walk for the marked gfns goes on: (space index, root slot);
    /// (0, 0) when no walk is under way (a stopped walk has always passed slot 0).
    release_cursor: (usize, usize),
    /// Populated gfns in each 512-gfn block, to find an empty block without a scan.
    block_population: Vec<u16>,
    /// Blocks that are one order-9 extent: machine-contiguous and 2 MiB aligned.
    large_extents: Vec<bool>,
    /// machine frame number → gfn, for the frames of populated gfns only.
    owner: Owners,
    /// No gfn below this is free (a lower bound that keeps "lowest free gfn" cheap).
    free_hint: u64,
    spaces: Vec<Option<AddressSpace>>,
    kernel_root: usize,
    user_root: Option<usize>,
    hypervisor_root: Frame,
    shared_info: Frame,
    max_pages: u64,
    populated: u64,
}

fn frame_number(frame: Frame) -> Option<u32> {
    u32::try_from(frame.number()).ok().filter(|&number| number != ABSENT)
}

fn size_of_flags(flags: u32) -> PageSize {
    if flags & map_flags::LARGE != 0 {
        PageSize::Large
    } else {
        PageSize::Small
    }
}

fn map_error(error: MapError) -> MemoryError {
    match error {
        MapError::HypervisorRange => MemoryError::Permission,
        MapError::AlreadyMapped => MemoryError::Exists,
        MapError::OutOfFrames => MemoryError::NoMemory,
        MapError::NonCanonical | MapError::Unaligned | MapError::FrameOutOfRange => MemoryError::Invalid,
    }
}

/// Checks `virtual_address` for a leaf of `size`: canonical and aligned, else Invalid;
/// outside the hypervisor range, else Permission.
fn check_address(virtual_address: u64, size: PageSize) -> Result<(), MemoryError> {
    if !is_canonical(virtual_address) || !virtual_address.is_multiple_of(size.bytes()) {
        return Err(MemoryError::Invalid);
    }
    if (hypercall_abi::layout::HYPERVISOR_START..hypercall_abi::layout::HYPERVISOR_END).contains(&virtual_address) {
        return Err(MemoryError::Permission);
    }
    Ok(())
}

/// The gfn whose frame `leaf` maps first, if it is a gfn (the shared-info page is not).
/// A 2 MiB leaf exists only over an intact order-9 extent, so its first frame is the
/// first frame of that extent and the gfn is 512-aligned.
fn leaf_gfn(owner: &Owners, leaf: &Leaf) -> Option<u64> {
    let number = u32::try_from(leaf.frame.number()).ok()?;
    owner.get(&number).map(|&gfn| u64::from(gfn))
}

/// The error of a guarded unmap or protect. The guard keeps the shared-info mapping the
/// hypervisor's, not the guest's (SPEC.md §12.4): it can be neither removed nor
/// re-flagged, so the hypervisor's page never turns executable or disappears under a
/// guest that reads its cr2 from it.
fn guarded_error(guarded: Guarded) -> MemoryError {
    match guarded {
        Guarded::Refused => MemoryError::Permission,
        Guarded::Missing => MemoryError::NotFound,
    }
}

/// Machine frame number → gfn.
type Owners = HashMap<u32, u32, BuildHasherDefault<FrameHasher>>;

/// The hash of a frame number: one multiply by an odd constant (a bijection, so distinct
/// frames never collide in the full hash, and both its low bits, which pick the bucket,
/// and its high bits, which the table keeps as a tag, vary). Frame numbers come from the
/// hypervisor's allocator, never from a guest, so no guest can steer them into one bucket.
#[derive(Default)]
struct FrameHasher(u64);

impl Hasher for FrameHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u32(&mut self, number: u32) {
        self.0 = (self.0 ^ u64::from(number)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u32(u32::from(byte));
        }
    }
}

/// Drops the mapping count of what `leaf` maps. O(1) for either size.
fn forget_leaf(mappings: &mut [u32], large_mappings: &mut [u32], owner: &Owners, leaf: &Leaf) {
    let Some(gfn) = leaf_gfn(owner, leaf) else { return };
    match leaf.size {
        PageSize::Small => mappings[gfn as usize] -= 1,
        PageSize::Large => large_mappings[(gfn / LARGE_PAGE_PAGES) as usize] -= 1,
    }
}

impl DomainMemory {
    /// An empty domain memory with quota `max_pages`: the initial address space (handle
    /// 0, kernel root, no user root) and a zeroed shared-info frame, nothing populated.
    pub fn new(
        memory: &mut impl FrameMemory,
        frames: &mut impl FrameSource,
        hypervisor_root: Frame,
        max_pages: u64,
    ) -> Result<Self, MemoryError> {
        if max_pages > MAX_PAGES_LIMIT {
            return Err(MemoryError::Invalid);
        }
        let maximum_gfn = max_pages.next_multiple_of(LARGE_PAGE_PAGES) as usize;
        let blocks = maximum_gfn / LARGE_PAGE_PAGES as usize;
        let mut p2m = Vec::new();
        let mut mappings = Vec::new();
        let mut large_mappings = Vec::new();
        let mut doomed = Vec::new();
        let mut doomed_in_block = Vec::new();
        let mut block_population = Vec::new();
        let mut large_extents = Vec::new();
        let mut spaces = Vec::new();
        let reserved = p2m.try_reserve_exact(maximum_gfn).is_ok()
            && mappings.try_reserve_exact(maximum_gfn).is_ok()
            && large_mappings.try_reserve_exact(blocks).is_ok()
            && doomed.try_reserve_exact(maximum_gfn / 64).is_ok()
            && doomed_in_block.try_reserve_exact(blocks).is_ok()
            && block_population.try_reserve_exact(blocks).is_ok()
            && large_extents.try_reserve_exact(blocks).is_ok()
            && spaces.try_reserve_exact(SPACES_MAX as usize).is_ok();
        if !reserved {
            return Err(MemoryError::NoMemory);
        }
        p2m.resize(maximum_gfn, ABSENT);
        mappings.resize(maximum_gfn, 0);
        large_mappings.resize(blocks, 0);
        doomed.resize(maximum_gfn / 64, 0);
        doomed_in_block.resize(blocks, 0);
        block_population.resize(blocks, 0);
        large_extents.resize(blocks, false);
        let shared_info = frames.allocate().ok_or(MemoryError::NoMemory)?;
        memory.zero(shared_info);
        let space = match AddressSpace::new(memory, frames, hypervisor_root) {
            Ok(space) => space,
            Err(_) => {
                frames.free(shared_info);
                return Err(MemoryError::NoMemory);
            }
        };
        spaces.push(Some(space));
        Ok(Self {
            p2m,
            mappings,
            large_mappings,
            doomed,
            doomed_in_block,
            doomed_words: 0..0,
            doomed_mapped: false,
            release_cursor: (0, 0),
            block_population,
            large_extents,
            owner: Owners::default(),
            free_hint: 0,
            spaces,
            kernel_root: INITIAL_SPACE as usize,
            user_root: None,
            hypervisor_root,
            shared_info,
            max_pages,
            populated: 0,
        })
    }

    /// CR3 in guest-kernel mode.
    pub fn kernel_root(&self) -> Frame {
        self.kernel_space().root()
    }

    /// CR3 in guest-user mode, if the guest installed a user root.
    pub fn user_root(&self) -> Option<Frame> {
        self.user_space().map(AddressSpace::root)
    }

    /// The kernel root's space: where hypercall arguments are read and written.
    pub fn kernel_space(&self) -> &AddressSpace {
        self.spaces[self.kernel_root].as_ref().expect("the kernel root is always live")
    }

    /// The user root's space.
    pub fn user_space(&self) -> Option<&AddressSpace> {
        self.user_root.and_then(|index| self.spaces[index].as_ref())
    }

    /// The live space with `handle`.
    pub fn space(&self, handle: u64) -> Option<&AddressSpace> {
        self.space_index(handle).ok().and_then(|index| self.spaces[index].as_ref())
    }

    /// The hypervisor-owned shared-info frame (never a gfn).
    pub fn shared_info_frame(&self) -> Frame {
        self.shared_info
    }

    /// Populated gfns.
    pub fn populated_pages(&self) -> u64 {
        self.populated
    }

    /// The reservation quota in pages.
    pub fn max_pages(&self) -> u64 {
        self.max_pages
    }

    /// One past the highest gfn this domain may ever have: `max_pages` rounded up to 512.
    pub fn maximum_gfn(&self) -> u64 {
        self.p2m.len() as u64
    }

    /// Page-table frames of all spaces.
    pub fn table_frames(&self) -> u64 {
        self.spaces.iter().flatten().map(AddressSpace::table_frames).sum()
    }

    /// The page-table quota: `512 + max_pages / 64` frames.
    pub fn table_limit(&self) -> u64 {
        512 + self.max_pages / 64
    }

    /// The machine frame of a populated gfn.
    pub fn gfn_frame(&self, gfn: u64) -> Option<Frame> {
        let number = *self.p2m.get(usize::try_from(gfn).ok()?)?;
        (number != ABSENT).then(|| Frame::from_number(u64::from(number)))
    }

    /// Leaves that map `gfn` in all spaces (4 KiB ones, and 2 MiB ones over its block).
    pub fn mapping_count(&self, gfn: u64) -> u32 {
        let Ok(index) = usize::try_from(gfn) else { return 0 };
        let small = self.mappings.get(index).copied().unwrap_or(0);
        let large = self.large_mappings.get(index / LARGE_PAGE_PAGES as usize).copied().unwrap_or(0);
        small + large
    }

    fn space_index(&self, handle: u64) -> Result<usize, MemoryError> {
        usize::try_from(handle)
            .ok()
            .filter(|&index| self.spaces.get(index).is_some_and(Option::is_some))
            .ok_or(MemoryError::NoSuchSpace)
    }

    /// How many address spaces are live (for the end-of-run audit, SPEC.md §15).
    pub fn live_spaces(&self) -> usize {
        self.spaces.iter().flatten().count()
    }

    /// True if `handle` names a live space.
    pub fn has_space(&self, handle: u64) -> bool {
        self.space_index(handle).is_ok()
    }

    fn tables_remaining(&self) -> u64 {
        self.table_limit().saturating_sub(self.table_frames())
    }

    /// Populates the lowest free gfn (Small) or the lowest free 512-aligned block of gfns
    /// with a 2 MiB machine block (Large), zeroed, and returns the first gfn.
    pub fn populate(
        &mut self,
        memory: &mut impl FrameMemory,
        frames: &mut impl FrameSource,
        size: PageSize,
    ) -> Result<u64, MemoryError> {
        if self.populated.saturating_add(size.frames()) > self.max_pages {
            return Err(MemoryError::NoMemory);
        }
        match size {
            PageSize::Small => self.populate_page(memory, frames),
            PageSize::Large => self.populate_block(memory, frames),
        }
    }

    fn populate_page(
        &mut self,
        memory: &mut impl FrameMemory,
        frames: &mut impl FrameSource,
    ) -> Result<u64, MemoryError> {
        // The quota check guarantees a free gfn below max_pages ≤ maximum_gfn.
        let start = self.free_hint as usize;
        let offset = self.p2m[start..].iter().position(|&number| number == ABSENT).ok_or(MemoryError::NoMemory)?;
        let gfn = (start + offset) as u64;
        let frame = frames.allocate().ok_or(MemoryError::NoMemory)?;
        let Some(number) = frame_number(frame) else {
            frames.free(frame);
            return Err(MemoryError::NoMemory);
        };
        memory.zero(frame);
        self.assign(gfn, number);
        self.free_hint = gfn + 1;
        Ok(gfn)
    }

    fn populate_block(
        &mut self,
        memory: &mut impl FrameMemory,
        frames: &mut impl FrameSource,
    ) -> Result<u64, MemoryError> {
        let block = self.block_population.iter().position(|&count| count == 0).ok_or(MemoryError::NoMemory)?;
        let first = frames.allocate_large().ok_or(MemoryError::NoMemory)?;
        let last = Frame::from_number(first.number() + LARGE_PAGE_PAGES - 1);
        let (Some(first_number), Some(_)) = (frame_number(first), frame_number(last)) else {
            (0..LARGE_PAGE_PAGES).for_each(|page| frames.free(Frame::from_number(first.number() + page)));
            return Err(MemoryError::NoMemory);
        };
        let first_gfn = block as u64 * LARGE_PAGE_PAGES;
        for page in 0..LARGE_PAGE_PAGES as u32 {
            memory.zero(Frame::from_number(u64::from(first_number + page)));
            self.assign(first_gfn + u64::from(page), first_number + page);
        }
        self.large_extents[block] = true;
        Ok(first_gfn)
    }

    fn assign(&mut self, gfn: u64, number: u32) {
        self.p2m[gfn as usize] = number;
        self.owner.insert(number, gfn as u32);
        self.block_population[(gfn / LARGE_PAGE_PAGES) as usize] += 1;
        self.populated += 1;
    }

    /// Releases the populated gfn (Small) or the 512 populated gfns from a 512-aligned
    /// gfn (Large): every mapping of them in every space is removed first (the loaded
    /// root's TLB flushed), then the frames are freed. Invalid if any is not populated.
    pub fn release(
        &mut self,
        memory: &mut impl FrameMemory,
        frames: &mut impl FrameSource,
        tlb: &mut impl Tlb,
        first_gfn: u64,
        size: PageSize,
    ) -> Result<(), MemoryError> {
        let marked = self.mark_for_release(first_gfn, size);
        self.release_marked(memory, frames, tlb);
        marked
    }

    /// Marks the extent of `size` from `first_gfn` for the next [`Self::release_marked`]:
    /// Invalid (nothing marked) unless it is aligned, below the gfn limit, every gfn is
    /// populated and none is marked already (a gfn listed twice in one batch is, by the
    /// time its second entry is reached, no longer populated).
    pub fn mark_for_release(&mut self, first_gfn: u64, size: PageSize) -> Result<(), MemoryError> {
        let count = size.frames();
        let aligned = first_gfn.is_multiple_of(count);
        let end = first_gfn
            .checked_add(count)
            .filter(|&end| aligned && end <= self.maximum_gfn())
            .ok_or(MemoryError::Invalid)?;
        if (first_gfn..end).any(|gfn| self.gfn_frame(gfn).is_none() || self.is_doomed(gfn)) {
            return Err(MemoryError::Invalid);
        }
        for gfn in first_gfn..end {
            let word = (gfn / 64) as usize;
            self.doomed[word] |= 1 << (gfn % 64);
            self.doomed_words = if self.doomed_words.is_empty() {
                word..word + 1
            } else {
                self.doomed_words.start.min(word)..self.doomed_words.end.max(word + 1)
            };
            self.doomed_in_block[(gfn / LARGE_PAGE_PAGES) as usize] += 1;
            self.doomed_mapped |= self.mapping_count(gfn) != 0;
        }
        Ok(())
    }

    fn is_doomed(&self, gfn: u64) -> bool {
        self.doomed[(gfn / 64) as usize] & (1 << (gfn % 64)) != 0
    }

    /// Releases every gfn [`Self::mark_for_release`] marked: one walk of every space
    /// removes each leaf over any of them (a 2 MiB leaf goes whole) — the work is bounded
    /// by the domain's page-table quota, however many gfns the batch holds — then their
    /// frames are freed.
    pub fn release_marked(&mut self, memory: &mut impl FrameMemory, frames: &mut impl FrameSource, tlb: &mut impl Tlb) {
        /// `tlb`, with a preemption never due.
        struct Never<'a, T: Tlb>(&'a mut T);
        impl<T: Tlb> Tlb for Never<'_, T> {
            fn flush_page(&mut self, virtual_address: u64) {
                self.0.flush_page(virtual_address);
            }
            fn flush_all(&mut self) {
                self.0.flush_all();
            }
        }
        impl<T: Tlb> Preemption for Never<'_, T> {
            fn due(&mut self) -> bool {
                false
            }
        }
        let finished = self.release_marked_preemptibly(memory, frames, &mut Never(tlb));
        debug_assert!(finished, "a release that is never preempted finishes");
    }

    /// Whether a [`Self::release_marked_preemptibly`] walk stopped and has not finished.
    pub fn release_in_progress(&self) -> bool {
        self.release_cursor != (0, 0)
    }

    /// [`Self::release_marked`], stopping after a root slot that held tables when
    /// `machine` says a preemption is due (SPEC.md §5.5). Returns whether it finished;
    /// if not, the marks and the walk's place are kept and the next call goes on from
    /// there. Until it finishes, the marked gfns stay populated and unmapped only in the
    /// slots walked so far; the domain must not run in between (its hypercall is the one
    /// releasing them), and nothing else maps or unmaps its gfns.
    pub fn release_marked_preemptibly(
        &mut self,
        memory: &mut impl FrameMemory,
        frames: &mut impl FrameSource,
        machine: &mut (impl Tlb + Preemption),
    ) -> bool {
        if self.doomed_mapped {
            let Self { spaces, mappings, large_mappings, owner, kernel_root, doomed, doomed_in_block, .. } = self;
            let mut doomed_leaf = |leaf: &Leaf| match (leaf_gfn(owner, leaf), leaf.size) {
                (Some(gfn), PageSize::Small) => doomed[(gfn / 64) as usize] & (1 << (gfn % 64)) != 0,
                (Some(gfn), PageSize::Large) => doomed_in_block[(gfn / LARGE_PAGE_PAGES) as usize] != 0,
                (None, _) => false,
            };
            let (first_space, first_slot) = self.release_cursor;
            for (index, space) in spaces.iter_mut().enumerate().skip(first_space) {
                let Some(space) = space else { continue };
                let from = if index == first_space { first_slot } else { 0 };
                for slot in from..ROOT_SLOTS {
                    let walked = space.remove_leaves_in_slot(memory, slot, &mut doomed_leaf, &mut |address, leaf| {
                        forget_leaf(mappings, large_mappings, owner, &leaf);
                        if index == *kernel_root {
                            machine.flush_page(address);
                        }
                    });
                    // Asked only after a slot that held tables: the walk always advances.
                    if walked && machine.due() {
                        self.release_cursor = (index, slot + 1);
                        return false;
                    }
                }
            }
            self.doomed_mapped = false;
            self.release_cursor = (0, 0);
        }
        for word in self.doomed_words.clone() {
            let mut bits = core::mem::take(&mut self.doomed[word]);
            while bits != 0 {
                let gfn = word as u64 * 64 + u64::from(bits.trailing_zeros());
                bits &= bits - 1;
                self.doomed_in_block[(gfn / LARGE_PAGE_PAGES) as usize] -= 1;
                self.give_back(frames, gfn);
            }
        }
        self.doomed_words = 0..0;
        true
    }

    fn give_back(&mut self, frames: &mut impl FrameSource, gfn: u64) {
        let number = self.p2m[gfn as usize];
        self.p2m[gfn as usize] = ABSENT;
        self.owner.remove(&number);
        let block = (gfn / LARGE_PAGE_PAGES) as usize;
        self.block_population[block] -= 1;
        // A block with a hole is no longer one extent, even if the gfn comes back.
        self.large_extents[block] = false;
        self.populated -= 1;
        self.free_hint = self.free_hint.min(gfn);
        frames.free(Frame::from_number(u64::from(number)));
    }

    /// Maps `gfn` (LARGE in `flags`: the order-9 extent from `gfn`) at `virtual_address`
    /// in space `handle`. `flags` must already be within `map_flags::ALL`.
    #[allow(clippy::too_many_arguments)] // One hypercall entry's fields plus the machine.
    pub fn map(
        &mut self,
        memory: &mut impl FrameMemory,
        frames: &mut impl FrameSource,
        tlb: &mut impl Tlb,
        handle: u64,
        virtual_address: u64,
        gfn: u64,
        flags: u32,
    ) -> Result<(), MemoryError> {
        let index = self.space_index(handle)?;
        let size = size_of_flags(flags);
        check_address(virtual_address, size)?;
        let frame = self.gfn_frame(gfn).ok_or(MemoryError::Invalid)?;
        if size == PageSize::Large
            && !(gfn.is_multiple_of(LARGE_PAGE_PAGES) && self.large_extents[(gfn / LARGE_PAGE_PAGES) as usize])
        {
            return Err(MemoryError::Invalid);
        }
        self.check_user_root(index, flags)?;
        let mut quota = Quota { remaining: self.tables_remaining(), source: frames };
        let space = self.spaces[index].as_mut().expect("index checked");
        space
            .map_sized(memory, &mut quota, virtual_address, frame, PageFlags::from_guest(flags), size)
            .map_err(map_error)?;
        match size {
            PageSize::Small => self.mappings[gfn as usize] += 1,
            PageSize::Large => self.large_mappings[(gfn / LARGE_PAGE_PAGES) as usize] += 1,
        }
        // A 4 KiB map only fills a not-present entry, which no TLB caches (SDM vol. 3,
        // 4.10.4.3): nothing to flush. A 2 MiB leaf may have replaced a page table the
        // paging-structure caches hold.
        if index == self.kernel_root && size == PageSize::Large {
            tlb.flush_page(virtual_address);
        }
        Ok(())
    }

    /// A kernel-only mapping may never appear in the user root (guest-user mode would
    /// reach it: both modes are ring 3).
    fn check_user_root(&self, index: usize, flags: u32) -> Result<(), MemoryError> {
        if flags & map_flags::USER == 0 && self.user_root == Some(index) {
            return Err(MemoryError::Permission);
        }
        Ok(())
    }

    /// Removes the leaf (2 MiB if `large`) at `virtual_address` in space `handle`. Any
    /// leaf may go, including the shared-info page (the guest just loses its view of it).
    pub fn unmap(
        &mut self,
        memory: &mut impl FrameMemory,
        tlb: &mut impl Tlb,
        handle: u64,
        virtual_address: u64,
        large: bool,
    ) -> Result<(), MemoryError> {
        let index = self.space_index(handle)?;
        let size = if large { PageSize::Large } else { PageSize::Small };
        check_address(virtual_address, size)?;
        let shared_info = self.shared_info;
        let space = self.spaces[index].as_mut().expect("index checked");
        let leaf = space
            .unmap_sized_unless(memory, virtual_address, size, |leaf| leaf.frame == shared_info)
            .map_err(guarded_error)?;
        forget_leaf(&mut self.mappings, &mut self.large_mappings, &self.owner, &leaf);
        if index == self.kernel_root {
            tlb.flush_page(virtual_address);
        }
        Ok(())
    }

    /// Changes the flags of the leaf at `virtual_address` (its size must match LARGE).
    pub fn protect(
        &mut self,
        memory: &mut impl FrameMemory,
        tlb: &mut impl Tlb,
        handle: u64,
        virtual_address: u64,
        flags: u32,
    ) -> Result<(), MemoryError> {
        let index = self.space_index(handle)?;
        let size = size_of_flags(flags);
        check_address(virtual_address, size)?;
        self.check_user_root(index, flags)?;
        let shared_info = self.shared_info;
        let space = self.spaces[index].as_mut().expect("index checked");
        space
            .protect_unless(memory, virtual_address, size, PageFlags::from_guest(flags), |leaf| {
                leaf.frame == shared_info
            })
            .map_err(guarded_error)?;
        if index == self.kernel_root {
            tlb.flush_page(virtual_address);
        }
        Ok(())
    }

    /// `gfn << 12 | map_flags` of the page containing `virtual_address` in space `handle`.
    /// NotFound if unmapped or not a gfn (the shared-info page).
    pub fn query(&self, memory: &impl FrameMemory, handle: u64, virtual_address: u64) -> Result<u64, MemoryError> {
        let index = self.space_index(handle)?;
        if !is_canonical(virtual_address) {
            return Err(MemoryError::Invalid);
        }
        let space = self.spaces[index].as_ref().expect("index checked");
        let (frame, _) = space.translate(memory, virtual_address).ok_or(MemoryError::NotFound)?;
        let leaf = space.leaf(memory, virtual_address).ok_or(MemoryError::NotFound)?;
        let gfn = frame_number(frame).and_then(|number| self.owner.get(&number)).ok_or(MemoryError::NotFound)?;
        Ok(u64::from(*gfn) << 12 | u64::from(leaf.flags.to_guest()))
    }

    /// A new empty space; returns its handle (the lowest free one).
    pub fn create_space(
        &mut self,
        memory: &mut impl FrameMemory,
        frames: &mut impl FrameSource,
    ) -> Result<u64, MemoryError> {
        let free_slot = self.spaces.iter().position(Option::is_none);
        if free_slot.is_none() && self.spaces.len() as u64 >= SPACES_MAX {
            return Err(MemoryError::NoSpace);
        }
        let mut quota = Quota { remaining: self.tables_remaining(), source: frames };
        let space = AddressSpace::new(memory, &mut quota, self.hypervisor_root).map_err(|_| MemoryError::NoMemory)?;
        let index = match free_slot {
            Some(index) => {
                self.spaces[index] = Some(space);
                index
            }
            None => {
                self.spaces.push(Some(space));
                self.spaces.len() - 1
            }
        };
        Ok(index as u64)
    }

    /// Frees the page tables of space `handle` (not the gfns mapped in it).
    pub fn destroy_space(
        &mut self,
        memory: &mut impl FrameMemory,
        frames: &mut impl FrameSource,
        handle: u64,
    ) -> Result<(), MemoryError> {
        let index = self.space_index(handle)?;
        if index == self.kernel_root || self.user_root == Some(index) {
            return Err(MemoryError::Busy);
        }
        let space = self.spaces[index].take().expect("index checked");
        let Self { mappings, large_mappings, owner, .. } = self;
        space.destroy_reporting(memory, frames, &mut |leaf| forget_leaf(mappings, large_mappings, owner, &leaf));
        Ok(())
    }

    /// Installs `kernel` as the kernel root and `user` ([`NO_SPACE`]: none) as the user
    /// root. The caller loads the new kernel root.
    pub fn switch(&mut self, kernel: u64, user: u64) -> Result<(), MemoryError> {
        let kernel = self.space_index(kernel)?;
        let user = if user == NO_SPACE { None } else { Some(self.space_index(user)?) };
        if user == Some(kernel) {
            return Err(MemoryError::Invalid);
        }
        if let Some(user) = user {
            if self.spaces[user].as_ref().expect("index checked").kernel_only_leaves() != 0 {
                return Err(MemoryError::Permission);
            }
        }
        self.kernel_root = kernel;
        self.user_root = user;
        Ok(())
    }

    /// Flushes one page (`Some(va)`) or all of space `handle`, if it is the loaded root.
    pub fn flush(&self, tlb: &mut impl Tlb, handle: u64, virtual_address: Option<u64>) -> Result<(), MemoryError> {
        let index = self.space_index(handle)?;
        if virtual_address.is_some_and(|address| !is_canonical(address)) {
            return Err(MemoryError::Invalid);
        }
        if index == self.kernel_root {
            match virtual_address {
                Some(address) => tlb.flush_page(address),
                None => tlb.flush_all(),
            }
        }
        Ok(())
    }

    /// Maps the shared-info frame read-write, no-execute, kernel-only in the initial space.
    pub fn map_shared_info(
        &mut self,
        memory: &mut impl FrameMemory,
        frames: &mut impl FrameSource,
        virtual_address: u64,
    ) -> Result<(), MemoryError> {
        let mut quota = Quota { remaining: self.tables_remaining(), source: frames };
        let flags = PageFlags::from_guest(map_flags::WRITABLE | map_flags::NO_EXECUTE);
        let space = self.spaces[INITIAL_SPACE as usize].as_mut().ok_or(MemoryError::NoSuchSpace)?;
        space.map(memory, &mut quota, virtual_address, self.shared_info, flags).map_err(map_error)
    }

    /// Gives back every frame: page tables of every space, every populated gfn and the
    /// shared-info frame.
    pub fn destroy(self, memory: &mut impl FrameMemory, frames: &mut impl FrameSource) {
        for space in self.spaces.into_iter().flatten() {
            space.destroy(memory, frames);
        }
        for number in self.p2m.into_iter().filter(|&number| number != ABSENT) {
            frames.free(Frame::from_number(u64::from(number)));
        }
        frames.free(self.shared_info);
    }
}

#[cfg(test)]
mod hasher_tests {
    use super::FrameHasher;
    use core::hash::Hasher;

    fn hash(number: u32) -> u64 {
        let mut hasher = FrameHasher::default();
        hasher.write_u32(number);
        hasher.finish()
    }

    /// Distinct frames never share a hash, and runs of consecutive frames (what the
    /// allocator hands out) spread over the low bits that pick a bucket and the high bits
    /// the table keeps as a tag.
    #[test]
    fn frame_hashes_are_distinct_and_spread() {
        let hashes: alloc::vec::Vec<u64> = (0x1_0000..0x1_0400).map(hash).collect();
        let mut sorted = hashes.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), hashes.len(), "a collision among 1024 consecutive frames");
        let low: std::collections::BTreeSet<u64> = hashes.iter().map(|hash| hash & 0x3ff).collect();
        let high: std::collections::BTreeSet<u64> = hashes.iter().map(|hash| hash >> 57).collect();
        assert_eq!(low.len(), 1024, "the low 10 bits pick 1024 different buckets");
        assert!(high.len() > 100, "the 7-bit tags take {} values", high.len());
        // Keys other than u32 (none today) hash byte by byte, order included.
        let bytes = |bytes: &[u8]| {
            let mut hasher = FrameHasher::default();
            hasher.write(bytes);
            hasher.finish()
        };
        assert_ne!(bytes(&[1, 2, 3]), bytes(&[3, 2, 1]));
        assert_ne!(bytes(&[1, 2, 3]), bytes(&[]));
    }
}
