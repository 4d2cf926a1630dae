//! Page frames: 4 KiB pages of kernel heap that back user memory. The kernel reads and
//! writes user memory only through them (never through user addresses), so a bad user
//! pointer is an errno, never a kernel fault.
//!
//! Every live frame is in [`Frames`]' registry, and every access checks it, so a stale
//! [`Frame`] (a logic error elsewhere) is refused instead of touching freed memory: the
//! safe functions here are safe for every caller. Frames are shared between address
//! spaces after `fork`; [`Frames::share`] and [`Frames::release`] count the holders, and
//! a frame goes back to the heap when its last holder lets go.

extern crate alloc;

use alloc::alloc::{alloc_zeroed, dealloc, Layout};
use alloc::collections::BTreeMap;
use core::ptr;

use crate::arch::machine::{Frame, PAGE_SIZE};

/// Bytes in a frame.
pub const FRAME_BYTES: usize = PAGE_SIZE as usize;

fn layout() -> Layout {
    // 4096 is a power of two and a multiple of itself: always a valid layout.
    Layout::from_size_align(FRAME_BYTES, FRAME_BYTES).unwrap_or(Layout::new::<u8>())
}

/// The frames the kernel holds for user memory, with how many address spaces (or caches)
/// hold each.
pub struct Frames {
    holders: BTreeMap<u64, u32>,
    /// The most frames that may be live at once (the rest of memory is the kernel's own).
    limit: usize,
    /// The most that were live at once.
    peak: usize,
}

/// A frame operation on a frame that is not live.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct NotLive;

impl Frames {
    /// No frames yet; at most `limit` live at once.
    pub const fn new(limit: usize) -> Frames {
        Frames { holders: BTreeMap::new(), limit, peak: 0 }
    }

    /// Frames live now.
    pub fn live(&self) -> usize {
        self.holders.len()
    }

    /// The bound on live frames.
    pub const fn limit(&self) -> usize {
        self.limit
    }

    /// The most frames live at once so far.
    pub const fn peak(&self) -> usize {
        self.peak
    }

    /// A zeroed frame with one holder, or `None` when the bound is reached or the heap is
    /// exhausted.
    pub fn allocate(&mut self) -> Option<Frame> {
        if self.holders.len() >= self.limit {
            return None;
        }
        // SAFETY: the layout has a non-zero size.
        let address = unsafe { alloc_zeroed(layout()) } as u64;
        if address == 0 {
            return None;
        }
        self.holders.insert(address, 1);
        self.peak = self.peak.max(self.holders.len());
        Some(Frame(address))
    }

    /// A copy of `source` with one holder.
    pub fn duplicate(&mut self, source: Frame) -> Option<Frame> {
        if !self.is_live(source) {
            return None;
        }
        let copy = self.allocate()?;
        // SAFETY: both are live frames (checked / just allocated): FRAME_BYTES of heap
        // memory each, distinct allocations, and no Rust reference to either exists
        // (frames are only touched through this module's raw copies).
        unsafe { ptr::copy_nonoverlapping(source.0 as *const u8, copy.0 as *mut u8, FRAME_BYTES) };
        Some(copy)
    }

    /// Whether `frame` is live.
    pub fn is_live(&self, frame: Frame) -> bool {
        self.holders.contains_key(&frame.0)
    }

    /// How many hold `frame` (0 if it is not live).
    pub fn holders(&self, frame: Frame) -> u32 {
        self.holders.get(&frame.0).copied().unwrap_or(0)
    }

    /// One more holder of `frame`.
    pub fn share(&mut self, frame: Frame) -> Result<(), NotLive> {
        let holders = self.holders.get_mut(&frame.0).ok_or(NotLive)?;
        *holders = holders.saturating_add(1);
        Ok(())
    }

    /// One holder fewer; the last one frees the frame. Returns whether it was freed.
    pub fn release(&mut self, frame: Frame) -> Result<bool, NotLive> {
        let holders = self.holders.get_mut(&frame.0).ok_or(NotLive)?;
        *holders -= 1;
        if *holders > 0 {
            return Ok(false);
        }
        self.holders.remove(&frame.0);
        // SAFETY: the registry held it, so `allocate` got it from the heap with this
        // layout, and it leaves the registry now: it is freed exactly once.
        unsafe { dealloc(frame.0 as *mut u8, layout()) };
        Ok(true)
    }

    /// Copies `into.len()` bytes at `offset` of `frame` (the range must lie in the frame).
    pub fn read(&self, frame: Frame, offset: usize, into: &mut [u8]) -> Result<(), NotLive> {
        if !self.is_live(frame) || offset.checked_add(into.len()).is_none_or(|end| end > FRAME_BYTES) {
            return Err(NotLive);
        }
        // SAFETY: a live frame is FRAME_BYTES of heap memory this registry owns, the range
        // lies inside it (checked), and no Rust reference to frame memory exists.
        unsafe { ptr::copy_nonoverlapping((frame.0 as *const u8).add(offset), into.as_mut_ptr(), into.len()) };
        Ok(())
    }

    /// Copies `from` to `offset` of `frame` (the range must lie in the frame).
    pub fn write(&mut self, frame: Frame, offset: usize, from: &[u8]) -> Result<(), NotLive> {
        if !self.is_live(frame) || offset.checked_add(from.len()).is_none_or(|end| end > FRAME_BYTES) {
            return Err(NotLive);
        }
        // SAFETY: as in `read`; the frame is written only while no user code runs (one
        // CPU, the kernel runs between user runs).
        unsafe { ptr::copy_nonoverlapping(from.as_ptr(), (frame.0 as *mut u8).add(offset), from.len()) };
        Ok(())
    }
}
