//! Sets of physical address ranges, for boot: the RAM the memory map lists, minus what is
//! already in use (the kernel image, the initramfs), minus the page-table frames taken
//! before the heap exists. Fixed capacity, because this runs before there is a heap.
//!
//! Pure bookkeeping (no unsafe, no hardware): host-tested in `tests/native.rs`.

/// A half-open range of physical addresses, `start..end`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Range {
    /// The first address.
    pub start: u64,
    /// The first address past the range.
    pub end: u64,
}

impl Range {
    /// `start..end`; an empty range when `end <= start`.
    pub const fn new(start: u64, end: u64) -> Self {
        Self { start, end }
    }

    /// The bytes it covers.
    pub const fn size(self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// True if it covers no address.
    pub const fn is_empty(self) -> bool {
        self.end <= self.start
    }

    /// True if every address of `other` lies in `self` (an empty `other` never does).
    pub const fn contains(self, other: Range) -> bool {
        !other.is_empty() && self.start <= other.start && other.end <= self.end
    }
}

/// Most disjoint ranges a [`RangeSet`] holds; a PC's memory map has a handful.
pub const CAPACITY: usize = 64;

/// A set of ranges that was asked to hold more than [`CAPACITY`] disjoint pieces.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Full;

/// Disjoint, sorted, non-adjacent ranges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeSet {
    ranges: [Range; CAPACITY],
    count: usize,
}

impl Default for RangeSet {
    fn default() -> Self {
        Self::new()
    }
}

impl RangeSet {
    /// The empty set.
    pub const fn new() -> Self {
        Self { ranges: [Range::new(0, 0); CAPACITY], count: 0 }
    }

    /// The ranges, in address order.
    pub fn ranges(&self) -> &[Range] {
        &self.ranges[..self.count]
    }

    /// Bytes in all ranges.
    pub fn total(&self) -> u64 {
        self.ranges().iter().map(|range| range.size()).sum()
    }

    /// True if `range` lies wholly inside one of the ranges.
    pub fn contains(&self, range: Range) -> bool {
        self.ranges().iter().any(|own| own.contains(range))
    }

    /// Adds `range`, merging it with the ranges it overlaps or touches.
    pub fn add(&mut self, range: Range) -> Result<(), Full> {
        if range.is_empty() {
            return Ok(());
        }
        let mut merged = range;
        let mut kept = [Range::new(0, 0); CAPACITY];
        let mut count = 0;
        for &own in self.ranges() {
            if own.start <= merged.end && merged.start <= own.end {
                merged = Range::new(own.start.min(merged.start), own.end.max(merged.end));
            } else {
                kept[count] = own;
                count += 1;
            }
        }
        if count == CAPACITY {
            return Err(Full);
        }
        let position = kept[..count].iter().position(|own| own.start > merged.start).unwrap_or(count);
        kept.copy_within(position..count, position + 1);
        kept[position] = merged;
        self.ranges = kept;
        self.count = count + 1;
        Ok(())
    }

    /// Removes every address of `range` (splitting the range it falls inside).
    pub fn remove(&mut self, range: Range) -> Result<(), Full> {
        if range.is_empty() {
            return Ok(());
        }
        let mut kept = [Range::new(0, 0); CAPACITY];
        let mut count = 0;
        for &own in self.ranges() {
            for piece in
                [Range::new(own.start, own.end.min(range.start)), Range::new(own.start.max(range.end), own.end)]
            {
                if !piece.is_empty() {
                    if count == CAPACITY {
                        return Err(Full);
                    }
                    kept[count] = piece;
                    count += 1;
                }
            }
        }
        self.ranges = kept;
        self.count = count;
        Ok(())
    }

    /// Shrinks every range to whole `alignment`-sized blocks (a power of two), dropping
    /// ranges that hold none.
    pub fn align_inward(&mut self, alignment: u64) {
        let mask = alignment - 1;
        let mut count = 0;
        for index in 0..self.count {
            let own = self.ranges[index];
            let start = own.start.checked_add(mask).map(|start| start & !mask);
            let aligned = start.map(|start| Range::new(start, own.end & !mask));
            if let Some(aligned) = aligned.filter(|aligned| !aligned.is_empty()) {
                self.ranges[count] = aligned;
                count += 1;
            }
        }
        self.count = count;
    }

    /// Takes the lowest `size`-byte block (aligned to `size`, a power of two) that lies
    /// wholly below `limit`, and removes it from the set.
    pub fn take_below(&mut self, size: u64, limit: u64) -> Option<u64> {
        let mask = size - 1;
        let start = self.ranges().iter().find_map(|own| {
            let start = own.start.checked_add(mask)? & !mask;
            let end = start.checked_add(size)?;
            (end <= own.end && end <= limit).then_some(start)
        })?;
        // Taking a block may split its range in two, which a full set cannot hold.
        self.remove(Range::new(start, start + size)).ok()?;
        Some(start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ranges: &[(u64, u64)]) -> RangeSet {
        let mut set = RangeSet::new();
        for &(start, end) in ranges {
            set.add(Range::new(start, end)).unwrap();
        }
        set
    }

    fn pairs(set: &RangeSet) -> Vec<(u64, u64)> {
        set.ranges().iter().map(|range| (range.start, range.end)).collect()
    }

    #[test]
    fn adding_sorts_and_merges_overlapping_and_touching_ranges() {
        let set = set(&[(100, 200), (0, 10), (150, 300), (300, 310), (50, 60), (20, 20)]);
        assert_eq!(pairs(&set), [(0, 10), (50, 60), (100, 310)]);
        assert_eq!(set.total(), 10 + 10 + 210);
        let bridged = {
            let mut bridged = set.clone();
            bridged.add(Range::new(5, 120)).unwrap();
            bridged
        };
        assert_eq!(pairs(&bridged), [(0, 310)]);
    }

    #[test]
    fn removing_splits_trims_and_drops() {
        let mut set = set(&[(0, 100), (200, 300)]);
        set.remove(Range::new(40, 60)).unwrap();
        assert_eq!(pairs(&set), [(0, 40), (60, 100), (200, 300)]);
        set.remove(Range::new(90, 250)).unwrap();
        assert_eq!(pairs(&set), [(0, 40), (60, 90), (250, 300)]);
        set.remove(Range::new(0, 1000)).unwrap();
        assert_eq!(pairs(&set), []);
        let mut untouched = self::set(&[(10, 20)]);
        untouched.remove(Range::new(30, 20)).unwrap();
        untouched.remove(Range::new(20, 30)).unwrap();
        assert_eq!(pairs(&untouched), [(10, 20)]);
    }

    #[test]
    fn containment_needs_one_range_to_hold_all_of_it() {
        let set = set(&[(0, 100), (200, 300)]);
        assert!(set.contains(Range::new(10, 100)));
        assert!(set.contains(Range::new(200, 201)));
        assert!(!set.contains(Range::new(90, 210)), "spans a hole");
        assert!(!set.contains(Range::new(50, 50)), "empty");
        assert!(!set.contains(Range::new(300, 301)));
    }

    #[test]
    fn capacity_is_reported_not_exceeded() {
        let mut set = RangeSet::new();
        for index in 0..CAPACITY as u64 {
            set.add(Range::new(index * 10, index * 10 + 5)).unwrap();
        }
        assert_eq!(set.add(Range::new(10_000, 10_001)), Err(Full));
        assert_eq!(set.remove(Range::new(1, 2)), Err(Full), "a split needs one more");
        set.add(Range::new(2, 12)).unwrap();
        assert_eq!(set.ranges().len(), CAPACITY - 1, "a merge frees a slot");
    }

    #[test]
    fn aligning_inward_keeps_whole_blocks_only() {
        let mut set = set(&[(0x1001, 0x5fff), (0x7000, 0x7fff), (0x9000, 0xb000), (u64::MAX - 10, u64::MAX)]);
        set.align_inward(0x1000);
        assert_eq!(pairs(&set), [(0x2000, 0x5000), (0x9000, 0xb000)]);
    }

    #[test]
    fn blocks_are_taken_lowest_first_aligned_and_below_the_limit() {
        let mut set = set(&[(0x800, 0x3000), (0x10000, 0x20000)]);
        assert_eq!(set.take_below(0x1000, 0x100000), Some(0x1000));
        assert_eq!(set.take_below(0x1000, 0x100000), Some(0x2000));
        assert_eq!(pairs(&set), [(0x800, 0x1000), (0x10000, 0x20000)]);
        assert_eq!(set.take_below(0x1000, 0x10fff), None, "the next block would end past the limit");
        assert_eq!(set.take_below(0x4000, 0x100000), Some(0x10000));
        assert_eq!(pairs(&set), [(0x800, 0x1000), (0x14000, 0x20000)]);
        assert_eq!(set.take_below(0x100000, u64::MAX), None);
    }
}
