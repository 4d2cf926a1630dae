//! Physical frame bookkeeping: which 4 KiB frames of RAM the hypervisor manages and which are free.

use core::fmt;

/// Bytes in one frame.
const FRAME_SIZE: u64 = 4096;
/// Frame numbers per bitmap word.
const BITS_PER_WORD: u64 = 64;

/// A physical frame, named by its frame number (physical address / 4096).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Frame(u64);

impl Frame {
    /// The frame with number `number`. Only the library names frames by number (from
    /// its own tables and the allocator's bitmap): a frame the machine could make up would
    /// let it reach any memory through `FrameMemory`.
    pub(crate) const fn from_number(number: u64) -> Self {
        Self(number)
    }

    /// The frame that contains `physical_address` (library only, as [`Frame::from_number`]).
    pub(crate) const fn containing(physical_address: u64) -> Self {
        Self(physical_address / FRAME_SIZE)
    }

    /// This frame's number.
    pub const fn number(self) -> u64 {
        self.0
    }

    /// Physical address of the frame's first byte. Frame numbers at or above 2^52 do not
    /// name a physical address; the result then wraps, and `paging` refuses such frames.
    pub const fn address(self) -> u64 {
        self.0.wrapping_mul(FRAME_SIZE)
    }
}

/// Frames the allocator can manage: 4 GiB of RAM. RAM above that is ignored (and counted
/// by [`FrameAllocator::add_region`]'s return value, so the boot log can say so).
pub const MAX_FRAMES: usize = 1 << 20;

const WORDS: usize = MAX_FRAMES / BITS_PER_WORD as usize;

/// Frames in one 2 MiB block ([`FrameAllocator::allocate_large`]).
pub const LARGE_FRAMES: u64 = 512;

/// Why [`FrameAllocator::free`] refused a frame. The allocator's state is unchanged.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum FreeError {
    /// The frame is not RAM this allocator manages.
    Unmanaged(Frame),
    /// The frame is already free.
    DoubleFree(Frame),
}

impl fmt::Display for FreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unmanaged(frame) => write!(f, "frame {:#x} is not managed by this allocator", frame.number()),
            Self::DoubleFree(frame) => write!(f, "frame {:#x} is already free (double free)", frame.number()),
        }
    }
}

/// A bitmap frame allocator with fixed-size arrays, so a `static` of it needs no heap.
///
/// Invariant: a frame is free only if it is managed (`free ⊆ managed`), and the two counters
/// equal the population counts of the two bitmaps.
pub struct FrameAllocator {
    managed: [u64; WORDS],
    free: [u64; WORDS],
    managed_count: u64,
    free_count: u64,
    /// Frame number where the next search starts (next-fit: keeps the common case O(1)
    /// instead of rescanning the low, full words every time, and delays reuse of a frame
    /// just freed, which makes use-after-free bugs show up as stale data rather than aliasing).
    cursor: u64,
}

impl Default for FrameAllocator {
    fn default() -> Self {
        Self::new()
    }
}

/// Calls `apply(word_index, mask)` for every bitmap word that intersects frames
/// `first..last` (exclusive), with `mask` selecting the frames of that word in the range.
fn for_each_word(first: u64, last: u64, mut apply: impl FnMut(usize, u64)) {
    let mut frame = first;
    while frame < last {
        let word = frame / BITS_PER_WORD;
        let low_bit = frame % BITS_PER_WORD;
        let word_end = (word + 1) * BITS_PER_WORD;
        let high_bit = last.min(word_end) - word * BITS_PER_WORD; // exclusive, 1..=64
        let width = high_bit - low_bit;
        let mask = if width == BITS_PER_WORD { u64::MAX } else { ((1u64 << width) - 1) << low_bit };
        apply(word as usize, mask);
        frame = word_end;
    }
}

impl FrameAllocator {
    /// An allocator that manages nothing yet.
    pub const fn new() -> Self {
        Self { managed: [0; WORDS], free: [0; WORDS], managed_count: 0, free_count: 0, cursor: 0 }
    }

    /// Adds the whole frames inside the byte range `start..end` as free RAM. Partial frames at
    /// either end are not RAM we fully own, so they are left out; frames at or above
    /// [`MAX_FRAMES`] are ignored, as are frames already managed (overlapping memory-map
    /// entries do not double count). Returns the number of frames newly added.
    pub fn add_region(&mut self, start: u64, end: u64) -> u64 {
        let first = start.div_ceil(FRAME_SIZE);
        let last = (end / FRAME_SIZE).min(MAX_FRAMES as u64);
        let mut added = 0;
        for_each_word(first, last, |word, mask| {
            let new = mask & !self.managed[word];
            self.managed[word] |= new;
            self.free[word] |= new;
            added += u64::from(new.count_ones());
        });
        self.managed_count += added;
        self.free_count += added;
        added
    }

    /// Marks every managed frame that overlaps the byte range `start..end` as in use (partial
    /// frames included: something lives there). Call it after the `add_region` calls; frames
    /// not managed (yet) are unaffected.
    pub fn reserve(&mut self, start: u64, end: u64) {
        let first = start / FRAME_SIZE;
        let last = end.div_ceil(FRAME_SIZE).min(MAX_FRAMES as u64);
        let mut taken = 0;
        for_each_word(first, last, |word, mask| {
            taken += u64::from((self.free[word] & mask).count_ones());
            self.free[word] &= !mask;
        });
        self.free_count -= taken;
    }

    /// Takes a free frame, searching onward from where the previous search stopped.
    pub fn allocate(&mut self) -> Option<Frame> {
        if self.free_count == 0 {
            return None;
        }
        let start_word = (self.cursor / BITS_PER_WORD) as usize;
        let start_bit = self.cursor % BITS_PER_WORD;
        // One full lap plus a second look at the start word for the bits below the cursor.
        for step in 0..=WORDS {
            let word = (start_word + step) % WORDS;
            let mut bits = self.free[word];
            if step == 0 {
                bits &= u64::MAX << start_bit;
            }
            if bits != 0 {
                let bit = u64::from(bits.trailing_zeros());
                self.free[word] &= !(1 << bit);
                self.free_count -= 1;
                let number = word as u64 * BITS_PER_WORD + bit;
                self.cursor = (number + 1) % MAX_FRAMES as u64;
                return Some(Frame(number));
            }
        }
        None
    }

    /// Takes 512 free frames that form one 2 MiB-aligned, physically contiguous block (what a
    /// 2 MiB guest page needs) and returns its first frame. Searches whole 2 MiB blocks
    /// from the bottom: large blocks are rare and fragmentation is the enemy, so no
    /// next-fit here. `None` if no such block is wholly free.
    pub fn allocate_large(&mut self) -> Option<Frame> {
        if self.free_count < LARGE_FRAMES {
            return None;
        }
        let words_per_block = (LARGE_FRAMES / BITS_PER_WORD) as usize;
        let block =
            self.free.chunks_exact(words_per_block).position(|words| words.iter().all(|&word| word == u64::MAX))?;
        let first_word = block * words_per_block;
        for word in &mut self.free[first_word..first_word + words_per_block] {
            *word = 0;
        }
        self.free_count -= LARGE_FRAMES;
        Some(Frame(first_word as u64 * BITS_PER_WORD))
    }

    /// Returns `frame` to the free pool. A frame that is not managed or already free is
    /// refused and nothing changes.
    pub fn free(&mut self, frame: Frame) -> Result<(), FreeError> {
        if frame.0 >= MAX_FRAMES as u64 {
            return Err(FreeError::Unmanaged(frame));
        }
        let word = (frame.0 / BITS_PER_WORD) as usize;
        let bit = 1u64 << (frame.0 % BITS_PER_WORD);
        if self.managed[word] & bit == 0 {
            return Err(FreeError::Unmanaged(frame));
        }
        if self.free[word] & bit != 0 {
            return Err(FreeError::DoubleFree(frame));
        }
        self.free[word] |= bit;
        self.free_count += 1;
        Ok(())
    }

    /// Returns the 2 MiB block `first` (from [`FrameAllocator::allocate_large`]) to the
    /// free pool, frame by frame; frames that are not managed or already free are skipped.
    pub fn free_large(&mut self, first: Frame) {
        for number in first.0..first.0 + LARGE_FRAMES {
            let _ = self.free(Frame(number));
        }
    }

    /// True if `frame` is managed and currently free.
    pub fn is_free(&self, frame: Frame) -> bool {
        if frame.0 >= MAX_FRAMES as u64 {
            return false;
        }
        self.free[(frame.0 / BITS_PER_WORD) as usize] & (1 << (frame.0 % BITS_PER_WORD)) != 0
    }

    /// Frames currently free.
    pub fn free_count(&self) -> u64 {
        self.free_count
    }

    /// Frames managed (free or in use).
    pub fn managed_count(&self) -> u64 {
        self.managed_count
    }
}

/// Where page tables and domain memory come from: the hypervisor's allocator in the machine,
/// a counting fake in tests.
///
/// Contract: `free` is only ever called with a frame that this same source handed out with
/// `allocate` and that has not been freed since. Every caller in this crate keeps that
/// contract by construction (the frames it frees are the ones it recorded when allocating),
/// so `free` has no error to report. A source that detects a violation must stop (panic):
/// a frame freed twice could be handed to two owners, which is a hypervisor bug that must
/// never be papered over.
pub trait FrameSource {
    /// A frame with unspecified contents, or `None` when memory is exhausted.
    fn allocate(&mut self) -> Option<Frame>;
    /// Returns a frame obtained from [`FrameSource::allocate`] (see the trait contract).
    /// The frames of a block from [`FrameSource::allocate_large`] are returned one by one
    /// with this, so a block may be given back piecemeal.
    fn free(&mut self, frame: Frame);
    /// The first of 512 contiguous frames starting on a 2 MiB boundary, contents
    /// unspecified, or `None` (also the answer of a source that has no such blocks).
    fn allocate_large(&mut self) -> Option<Frame> {
        None
    }
}

impl FrameSource for FrameAllocator {
    fn allocate(&mut self) -> Option<Frame> {
        FrameAllocator::allocate(self)
    }

    fn allocate_large(&mut self) -> Option<Frame> {
        FrameAllocator::allocate_large(self)
    }

    fn free(&mut self, frame: Frame) {
        if let Err(error) = FrameAllocator::free(self, frame) {
            // Unreachable from guest or image input: only the hypervisor's own bookkeeping
            // names frames to free (see the trait contract). Stop rather than risk sharing.
            panic!("frame source contract violated: {error}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allocator() -> Box<FrameAllocator> {
        Box::new(FrameAllocator::new())
    }

    #[test]
    fn frame_conversions() {
        assert_eq!(Frame::containing(0x1fff).number(), 1);
        assert_eq!(Frame::containing(0x2000).address(), 0x2000);
        assert_eq!(Frame::from_number(7).address(), 7 * 4096);
    }

    #[test]
    fn new_allocator_has_nothing() {
        let mut frames = allocator();
        assert_eq!(frames.free_count(), 0);
        assert_eq!(frames.managed_count(), 0);
        assert_eq!(frames.allocate(), None);
        assert_eq!(frames.free(Frame(0)), Err(FreeError::Unmanaged(Frame(0))));
    }

    #[test]
    fn region_edges_take_only_whole_frames() {
        let mut frames = allocator();
        // 0x1001..0x5fff: whole frames 2, 3, 4 only.
        assert_eq!(frames.add_region(0x1001, 0x5fff), 3);
        assert!(!frames.is_free(Frame(1)));
        assert!(frames.is_free(Frame(2)));
        assert!(frames.is_free(Frame(4)));
        assert!(!frames.is_free(Frame(5)));
        // Empty, inverted and sub-frame regions add nothing.
        assert_eq!(frames.add_region(0x9000, 0x9000), 0);
        assert_eq!(frames.add_region(0x9000, 0x1000), 0);
        assert_eq!(frames.add_region(0xa001, 0xafff), 0);
        // Overlap does not double count.
        assert_eq!(frames.add_region(0x0, 0x6000), 3);
        assert_eq!(frames.managed_count(), 6);
        assert_eq!(frames.free_count(), 6);
    }

    #[test]
    fn region_spanning_words_and_the_limit() {
        let mut frames = allocator();
        assert_eq!(frames.add_region(60 * 4096, 200 * 4096), 140);
        let limit = MAX_FRAMES as u64 * 4096;
        assert_eq!(frames.add_region(limit - 2 * 4096, u64::MAX), 2, "frames past MAX_FRAMES are ignored");
        assert_eq!(frames.add_region(limit, u64::MAX), 0);
        assert_eq!(frames.managed_count(), 142);
    }

    #[test]
    fn reserve_includes_partial_frames_and_ignores_unmanaged() {
        let mut frames = allocator();
        frames.add_region(0, 16 * 4096);
        frames.reserve(0x1fff, 0x3001); // frames 1, 2, 3
        assert_eq!(frames.free_count(), 13);
        assert!(frames.is_free(Frame(0)));
        assert!(!frames.is_free(Frame(1)));
        assert!(!frames.is_free(Frame(3)));
        assert!(frames.is_free(Frame(4)));
        frames.reserve(0x1000, 0x2000); // already reserved: no change in count
        assert_eq!(frames.free_count(), 13);
        frames.reserve(100 * 4096, u64::MAX); // unmanaged
        assert_eq!(frames.free_count(), 13);
        assert_eq!(frames.managed_count(), 16);
    }

    #[test]
    fn exhaustion_then_reuse() {
        let mut frames = allocator();
        frames.add_region(0x10000, 0x10000 + 70 * 4096);
        let mut taken = Vec::new();
        while let Some(frame) = frames.allocate() {
            taken.push(frame);
        }
        assert_eq!(taken.len(), 70);
        let mut sorted = taken.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 70, "no frame handed out twice");
        assert_eq!(frames.free_count(), 0);
        frames.free(taken[5]).unwrap();
        assert_eq!(frames.allocate(), Some(taken[5]));
        assert_eq!(frames.allocate(), None);
    }

    #[test]
    fn double_free_and_unmanaged_free_are_refused_without_damage() {
        let mut frames = allocator();
        frames.add_region(0, 8 * 4096);
        let frame = frames.allocate().unwrap();
        frames.free(frame).unwrap();
        assert_eq!(frames.free(frame), Err(FreeError::DoubleFree(frame)));
        assert_eq!(frames.free(Frame(9)), Err(FreeError::Unmanaged(Frame(9))));
        assert_eq!(frames.free(Frame(u64::MAX)), Err(FreeError::Unmanaged(Frame(u64::MAX))));
        assert_eq!(frames.free_count(), 8);
        let mut count = 0;
        while frames.allocate().is_some() {
            count += 1;
        }
        assert_eq!(count, 8);
        assert!(FreeError::DoubleFree(frame).to_string().contains("double free"));
    }

    #[test]
    fn next_fit_moves_forward() {
        let mut frames = allocator();
        frames.add_region(0, 200 * 4096);
        let first = frames.allocate().unwrap();
        let second = frames.allocate().unwrap();
        assert!(second > first);
        assert_eq!((first.number(), second.number()), (0, 1));
        frames.free(first).unwrap();
        assert_eq!(frames.allocate(), Some(Frame(2)), "next-fit continues after the last frame");
        for _ in 3..200 {
            frames.allocate().unwrap();
        }
        assert_eq!(frames.allocate(), Some(Frame(0)), "the search wraps around to freed frames");
        assert_eq!(frames.allocate(), None);
    }

    #[test]
    fn large_blocks_are_aligned_wholly_free_and_given_back_piecemeal() {
        let mut frames = allocator();
        // Frames 100..1600: the first whole aligned block is 512..1024, then 1024..1536.
        frames.add_region(100 * 4096, 1600 * 4096);
        frames.reserve(600 * 4096, 601 * 4096); // spoils 512..1024
        let block = frames.allocate_large().unwrap();
        assert_eq!(block, Frame(1024));
        assert_eq!(frames.free_count(), 1500 - 1 - 512);
        assert!(!frames.is_free(Frame(1024)) && !frames.is_free(Frame(1535)) && frames.is_free(Frame(1536)));
        assert_eq!(frames.allocate_large(), None, "no other whole block");
        for number in 1024..1536 {
            frames.free(Frame(number)).unwrap();
        }
        assert_eq!(FrameSource::allocate_large(&mut *frames), Some(Frame(1024)));
        let mut empty = allocator();
        assert_eq!(empty.allocate_large(), None);
    }

    #[test]
    fn exactly_one_free_block_is_found() {
        let mut frames = allocator();
        frames.add_region(512 * 4096, 1024 * 4096);
        assert_eq!(frames.free_count(), 512);
        assert_eq!(frames.allocate_large(), Some(Frame(512)));
        assert_eq!(frames.free_count(), 0);
    }

    #[test]
    fn free_large_gives_back_the_block_and_nothing_else() {
        let mut frames = allocator();
        frames.add_region(512 * 4096, 1100 * 4096);
        let block = frames.allocate_large().unwrap();
        assert_eq!(block, Frame(512));
        let small = frames.allocate().unwrap();
        assert_eq!(small, Frame(1024));
        let free = frames.free_count();
        frames.free_large(block);
        assert_eq!(frames.free_count(), free + 512);
        assert!(frames.is_free(Frame(512)) && frames.is_free(Frame(1023)));
        assert!(!frames.is_free(small), "a frame outside the block stays taken");
    }

    #[test]
    #[should_panic(expected = "contract violated")]
    fn frame_source_free_of_a_bad_frame_stops() {
        let mut frames = allocator();
        frames.add_region(0, 4 * 4096);
        FrameSource::free(&mut *frames, Frame(2));
    }
}
