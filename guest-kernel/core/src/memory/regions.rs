//! The regions of a user address space (Linux's VMAs): the program's segments, the heap
//! that `brk` moves, anonymous `mmap`s and the stack, each a page-aligned range with one
//! access. `mmap`, `munmap` and `mprotect` split and merge them; a page fault is resolved
//! against them (demand paging) or becomes SIGSEGV.
//!
//! Only the plan lives here; mapping pages is the platform's, told by the process layer
//! what changed. Every address and length comes from a system call and is checked:
//! alignment, overflow and the user limit give EINVAL or ENOMEM as Linux does.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::exec::program::Protection;
use crate::linux::Errno;

/// Size of a page.
pub const PAGE_SIZE: u64 = 4096;

/// What a region is for (it decides growth and what `/proc` would call it).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// A segment of the program (its contents come from the file at `execve`).
    Program,
    /// The heap, between the program's end and the break.
    Heap,
    /// An anonymous mapping.
    Anonymous,
    /// The main thread's stack.
    Stack,
    /// The vDSO's code and tables (shared with every process; a write copies the page).
    VdsoImage,
    /// The vDSO's clock page: read-only for good (`mprotect` cannot add write access).
    VdsoData,
}

/// One region: `[start, end)`, page-aligned.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Region {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// Its access.
    pub protection: Protection,
    /// What it is for.
    pub purpose: Purpose,
}

impl Region {
    /// Length in bytes.
    pub const fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Whether it is empty (never, for a region in a [`Regions`]).
    pub const fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// How an access to an address is resolved.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// A read.
    Read,
    /// A write.
    Write,
    /// An instruction fetch.
    Execute,
}

/// The regions of one address space.
#[derive(Clone, Debug)]
pub struct Regions {
    by_start: BTreeMap<u64, Region>,
    /// One past the highest user address.
    limit: u64,
    /// Where `mmap` without a hint searches down from.
    mmap_top: u64,
    /// The heap's start (the program's end) and the current break.
    heap_start: u64,
    break_address: u64,
    /// Bytes mapped, and the most this process may have.
    mapped: u64,
    quota: u64,
}

fn page_up(value: u64) -> Option<u64> {
    value.checked_next_multiple_of(PAGE_SIZE)
}

impl Regions {
    /// An empty space below `limit` whose `mmap`s go below `mmap_top`, whose heap starts at
    /// `heap_start` (page-aligned), and which may map at most `quota` bytes (ENOMEM past it:
    /// the per-process accounting that keeps one process from taking all memory).
    pub fn new(limit: u64, mmap_top: u64, heap_start: u64, quota: u64) -> Regions {
        Regions {
            by_start: BTreeMap::new(),
            limit,
            mmap_top: mmap_top.min(limit),
            heap_start,
            break_address: heap_start,
            mapped: 0,
            quota,
        }
    }

    /// Every region, lowest first.
    pub fn iter(&self) -> impl Iterator<Item = &Region> {
        self.by_start.values()
    }

    /// Bytes mapped.
    pub const fn mapped(&self) -> u64 {
        self.mapped
    }

    /// The region holding `address`.
    pub fn find(&self, address: u64) -> Option<&Region> {
        self.by_start.range(..=address).next_back().map(|(_, region)| region).filter(|region| address < region.end)
    }

    /// Whether `access` to `address` is allowed: the fault is resolved by mapping a page,
    /// or, if not, the process gets SIGSEGV.
    pub fn allows(&self, address: u64, access: Access) -> bool {
        self.find(address).is_some_and(|region| match access {
            Access::Read => region.protection.read || region.protection.write || region.protection.execute,
            Access::Write => region.protection.write,
            Access::Execute => region.protection.execute,
        })
    }

    /// Whether every byte of `[start, start + length)` is in some region allowing
    /// `access` (system calls check user buffers with this before copying: EFAULT if not).
    pub fn covers(&self, start: u64, length: u64, access: Access) -> bool {
        let Some(end) = start.checked_add(length) else { return false };
        let mut at = start;
        while at < end {
            match self.find(at) {
                Some(region) if self.allows(at, access) => at = region.end,
                _ => return false,
            }
        }
        true
    }

    fn checked_range(&self, start: u64, length: u64) -> Result<(u64, u64), Errno> {
        if !start.is_multiple_of(PAGE_SIZE) || length == 0 {
            return Err(Errno::EINVAL);
        }
        let end = start.checked_add(length).and_then(page_up).ok_or(Errno::ENOMEM)?;
        if end > self.limit {
            return Err(Errno::ENOMEM);
        }
        Ok((start, end))
    }

    /// Adds a region at a fixed place, replacing whatever was there (`MAP_FIXED`, and
    /// `execve` placing segments); the ranges it replaced are returned so their pages can be
    /// unmapped.
    pub fn insert(
        &mut self,
        start: u64,
        length: u64,
        protection: Protection,
        purpose: Purpose,
    ) -> Result<Vec<(u64, u64)>, Errno> {
        let (start, end) = self.checked_range(start, length)?;
        let replaced = self.overlap(start, end);
        let freed: u64 = replaced.iter().map(|(from, to)| to - from).sum();
        let after = self.mapped - freed + (end - start);
        if after > self.quota {
            return Err(Errno::ENOMEM);
        }
        self.cut(start, end);
        self.by_start.insert(start, Region { start, end, protection, purpose });
        self.mapped = after;
        Ok(replaced)
    }

    /// Places an anonymous mapping of `length` bytes: at `hint` if that range is free,
    /// else in the highest free gap below the mmap top.
    pub fn map_anywhere(&mut self, hint: u64, length: u64, protection: Protection) -> Result<u64, Errno> {
        if length == 0 {
            return Err(Errno::EINVAL);
        }
        let length = page_up(length).ok_or(Errno::ENOMEM)?;
        let hint = hint - hint % PAGE_SIZE;
        let start = if hint != 0 && hint >= self.break_address && self.is_free(hint, length) {
            hint
        } else {
            self.free_gap_below(self.mmap_top, length).ok_or(Errno::ENOMEM)?
        };
        self.insert(start, length, protection, Purpose::Anonymous)?;
        Ok(start)
    }

    fn is_free(&self, start: u64, length: u64) -> bool {
        start.checked_add(length).is_some_and(|end| end <= self.limit && self.overlap(start, end).is_empty())
    }

    fn free_gap_below(&self, top: u64, length: u64) -> Option<u64> {
        let mut ceiling = top;
        for region in self.by_start.values().rev() {
            if region.start >= ceiling {
                continue;
            }
            if region.end <= ceiling && ceiling - region.end >= length {
                return Some(ceiling - length);
            }
            ceiling = ceiling.min(region.start);
        }
        // Below every region, but above the heap's room to grow and never at page 0.
        let floor = self.break_address.max(PAGE_SIZE);
        (ceiling >= floor && ceiling - floor >= length).then(|| ceiling - length)
    }

    /// The parts of `[start, end)` some region covers.
    fn overlap(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        self.by_start
            .values()
            .filter(|region| region.start < end && start < region.end)
            .map(|region| (region.start.max(start), region.end.min(end)))
            .collect()
    }

    /// Removes `[start, end)` from every region, splitting those that straddle it.
    fn cut(&mut self, start: u64, end: u64) {
        let touched: Vec<Region> =
            self.by_start.values().filter(|region| region.start < end && start < region.end).copied().collect();
        for region in touched {
            self.by_start.remove(&region.start);
            if region.start < start {
                self.by_start.insert(region.start, Region { end: start, ..region });
            }
            if end < region.end {
                self.by_start.insert(end, Region { start: end, ..region });
            }
        }
    }

    /// `munmap`: removes `[start, start + length)`; unmapped parts are fine. Returns the
    /// ranges that were mapped, whose pages the caller frees.
    pub fn unmap(&mut self, start: u64, length: u64) -> Result<Vec<(u64, u64)>, Errno> {
        let (start, end) = self.checked_range(start, length).map_err(|_| Errno::EINVAL)?;
        let removed = self.overlap(start, end);
        self.cut(start, end);
        self.mapped -= removed.iter().map(|(from, to)| to - from).sum::<u64>();
        Ok(removed)
    }

    /// `mprotect`: changes the access of `[start, start + length)`, which must be mapped
    /// throughout (ENOMEM otherwise, changing nothing). Write access to the vDSO's clock
    /// page is EACCES (Linux's answer for a mapping that may never be writable).
    pub fn protect(&mut self, start: u64, length: u64, protection: Protection) -> Result<(), Errno> {
        let (start, end) = self.checked_range(start, length)?;
        let mut at = start;
        while at < end {
            at = self.find(at).ok_or(Errno::ENOMEM)?.end;
        }
        let touched: Vec<Region> =
            self.by_start.values().filter(|region| region.start < end && start < region.end).copied().collect();
        if protection.write && touched.iter().any(|region| region.purpose == Purpose::VdsoData) {
            return Err(Errno::EACCES);
        }
        self.cut(start, end);
        for region in touched {
            let (from, to) = (region.start.max(start), region.end.min(end));
            self.by_start.insert(from, Region { start: from, end: to, protection, ..region });
        }
        Ok(())
    }

    /// The current break.
    pub const fn break_address(&self) -> u64 {
        self.break_address
    }

    /// `brk`: moves the break to `requested` if it can (within the heap's room and the
    /// quota) and returns the break afterwards (unchanged on failure, as Linux's `brk`
    /// reports it), with the range whose pages the caller frees if the heap shrank.
    pub fn set_break(&mut self, requested: u64) -> (u64, Option<(u64, u64)>) {
        if requested < self.heap_start {
            return (self.break_address, None);
        }
        let Some(new_end) = page_up(requested) else { return (self.break_address, None) };
        let old_end = page_up(self.break_address).unwrap_or(self.break_address);
        let heap = Protection { read: true, write: true, execute: false };
        let mut freed = None;
        if new_end > old_end {
            if !self.is_free(old_end, new_end - old_end) || self.mapped + (new_end - old_end) > self.quota {
                return (self.break_address, None);
            }
            self.by_start
                .insert(old_end, Region { start: old_end, end: new_end, protection: heap, purpose: Purpose::Heap });
            self.mapped += new_end - old_end;
            self.merge_heap();
        } else if new_end < old_end {
            let removed = self.overlap(new_end, old_end);
            self.cut(new_end, old_end);
            self.mapped -= removed.iter().map(|(from, to)| to - from).sum::<u64>();
            freed = Some((new_end, old_end));
        }
        self.break_address = requested;
        (requested, freed)
    }

    /// Joins adjacent heap regions with the same access into one.
    fn merge_heap(&mut self) {
        let heap: Vec<Region> =
            self.by_start.values().filter(|region| region.purpose == Purpose::Heap).copied().collect();
        for pair in heap.windows(2) {
            let (low, high) = (pair[0], pair[1]);
            if low.end == high.start && low.protection == high.protection {
                if let (Some(low_now), Some(_)) =
                    (self.by_start.get(&low.start).copied(), self.by_start.remove(&high.start))
                {
                    self.by_start.insert(low_now.start, Region { end: high.end, ..low_now });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: u64 = 0x0000_8000_0000_0000;
    const MMAP_TOP: u64 = 0x7f00_0000_0000;
    const RW: Protection = Protection { read: true, write: true, execute: false };
    const RX: Protection = Protection { read: true, write: false, execute: true };
    const NONE: Protection = Protection { read: false, write: false, execute: false };

    fn space() -> Regions {
        let mut regions = Regions::new(LIMIT, MMAP_TOP, 0x410000, 1 << 30);
        regions.insert(0x400000, 0x10000, RX, Purpose::Program).unwrap();
        regions
    }

    #[test]
    fn anonymous_maps_go_top_down_and_fill_holes() {
        let mut regions = space();
        let first = regions.map_anywhere(0, 8192, RW).unwrap();
        assert_eq!(first, MMAP_TOP - 8192);
        let second = regions.map_anywhere(0, 1, RW).unwrap();
        assert_eq!(second, first - PAGE_SIZE, "lengths round up to pages");
        regions.unmap(first, 8192).unwrap();
        assert_eq!(regions.map_anywhere(0, 4096, RW).unwrap(), MMAP_TOP - 4096, "the hole is reused");
        assert_eq!(regions.map_anywhere(0x2000_0000, 4096, RW).unwrap(), 0x2000_0000, "a free hint is honoured");
        assert_ne!(regions.map_anywhere(0x400000, 4096, RW).unwrap(), 0x400000, "a taken hint is not");
        assert_eq!(regions.map_anywhere(0, 0, RW), Err(Errno::EINVAL));
        assert_eq!(regions.map_anywhere(0, u64::MAX, RW), Err(Errno::ENOMEM));
    }

    #[test]
    fn unmap_and_protect_split_regions() {
        let mut regions = space();
        let base = regions.map_anywhere(0, 5 * PAGE_SIZE, RW).unwrap();
        regions.protect(base + PAGE_SIZE, 2 * PAGE_SIZE, NONE).unwrap();
        let parts: Vec<(u64, u64, Protection)> =
            regions.iter().filter(|r| r.start >= base).map(|r| (r.start - base, r.end - base, r.protection)).collect();
        assert_eq!(parts, [(0, 0x1000, RW), (0x1000, 0x3000, NONE), (0x3000, 0x5000, RW)]);
        assert!(!regions.allows(base + PAGE_SIZE, Access::Read));
        assert!(regions.allows(base, Access::Write));
        let removed = regions.unmap(base + 2 * PAGE_SIZE, 2 * PAGE_SIZE).unwrap();
        assert_eq!(removed, [(base + 0x2000, base + 0x3000), (base + 0x3000, base + 0x4000)]);
        assert!(regions.find(base + 0x2000).is_none());
        assert_eq!(regions.protect(base, 5 * PAGE_SIZE, RW), Err(Errno::ENOMEM), "a hole in the range");
        assert!(!regions.allows(base + PAGE_SIZE, Access::Read), "nothing changed on failure");
        assert_eq!(regions.unmap(base + 1, PAGE_SIZE), Err(Errno::EINVAL));
        assert_eq!(regions.mapped(), 0x10000 + 3 * PAGE_SIZE);
    }

    #[test]
    fn covers_checks_whole_user_buffers() {
        let mut regions = space();
        let base = regions.map_anywhere(0, 2 * PAGE_SIZE, RW).unwrap();
        assert!(regions.covers(base + 100, PAGE_SIZE, Access::Write), "across two regions' worth of pages");
        assert!(!regions.covers(base + PAGE_SIZE, 2 * PAGE_SIZE, Access::Read), "runs off the end");
        assert!(!regions.covers(0x400000, 16, Access::Write), "text is not writable");
        assert!(!regions.covers(u64::MAX - 4, 16, Access::Read), "wraps");
        assert!(regions.covers(0x400000, 0, Access::Read));
    }

    #[test]
    fn brk_grows_shrinks_and_fails_like_linux() {
        let mut regions = space();
        assert_eq!(regions.set_break(0x410000 + 100), (0x410064, None));
        assert!(regions.allows(0x410000, Access::Write));
        assert_eq!(regions.set_break(0x420000).0, 0x420000);
        assert_eq!(regions.iter().filter(|r| r.purpose == Purpose::Heap).count(), 1, "growth merges");
        assert_eq!(regions.set_break(0x100).0, 0x420000, "below the heap: unchanged");
        regions.insert(0x430000, PAGE_SIZE, RW, Purpose::Anonymous).unwrap();
        assert_eq!(regions.set_break(0x440000).0, 0x420000, "would run into a mapping: unchanged");
        assert_eq!(regions.set_break(0x411000), (0x411000, Some((0x411000, 0x420000))));
        assert!(!regions.allows(0x411000, Access::Read));
    }

    #[test]
    fn the_quota_bounds_every_way_of_mapping() {
        let mut regions = Regions::new(LIMIT, MMAP_TOP, 0x410000, 0x4000);
        regions.map_anywhere(0, 0x3000, RW).unwrap();
        assert_eq!(regions.map_anywhere(0, 0x2000, RW), Err(Errno::ENOMEM));
        assert_eq!(regions.set_break(0x412000).0, 0x410000);
        assert_eq!(regions.set_break(0x411000).0, 0x411000, "the last page fits");
        assert_eq!(regions.insert(0x500000, 0x1000, RW, Purpose::Anonymous), Err(Errno::ENOMEM));
    }

    #[test]
    fn the_clock_page_never_becomes_writable() {
        let mut regions = space();
        let clock = 0x7fff_ff10_0000;
        regions
            .insert(clock, PAGE_SIZE, Protection { read: true, write: false, execute: false }, Purpose::VdsoData)
            .unwrap();
        regions.insert(clock + PAGE_SIZE, PAGE_SIZE, RX, Purpose::VdsoImage).unwrap();
        assert_eq!(regions.protect(clock, PAGE_SIZE, RW), Err(Errno::EACCES));
        assert_eq!(regions.protect(clock, 2 * PAGE_SIZE, RW), Err(Errno::EACCES), "nor as part of a range");
        assert!(!regions.allows(clock, Access::Write) && !regions.allows(clock + PAGE_SIZE, Access::Write));
        assert_eq!(regions.protect(clock, PAGE_SIZE, NONE), Ok(()), "taking access away is allowed");
        assert_eq!(regions.protect(clock + PAGE_SIZE, PAGE_SIZE, RW), Ok(()), "the image may be made writable");
    }

    #[test]
    fn fixed_insertions_replace_and_report() {
        let mut regions = space();
        let replaced = regions.insert(0x408000, 0x10000, RW, Purpose::Anonymous).unwrap();
        assert_eq!(replaced, [(0x408000, 0x410000)]);
        assert_eq!(regions.find(0x407fff).unwrap().protection, RX);
        assert_eq!(regions.find(0x408000).unwrap().protection, RW);
        assert_eq!(regions.insert(0x401001, 0x1000, RW, Purpose::Anonymous), Err(Errno::EINVAL));
        assert_eq!(regions.insert(LIMIT - 0x1000, 0x2000, RW, Purpose::Anonymous), Err(Errno::ENOMEM));
    }
}
