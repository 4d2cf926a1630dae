//! One-shot per-domain timer deadlines.

use alloc::vec::Vec;

/// One-shot timer deadlines (absolute system time in ns), at most one per domain, kept
/// in one slot per domain index: memory is bounded by the number of domains, and no set
/// allocates past the first for a domain. The earliest deadline is kept up to date, so
/// [`earliest`](Self::earliest), asked on every return to a guest, costs nothing; only a
/// cancel or an expiry of that deadline rescans.
#[derive(Clone, Debug, Default)]
pub struct Timers {
    pub(super) deadlines: Vec<Option<u64>>,
    earliest: Option<u64>,
}

impl Timers {
    /// No timer set.
    pub const fn new() -> Self {
        Self { deadlines: Vec::new(), earliest: None }
    }

    /// Sets (or replaces) `domain`'s deadline. A deadline already past is reported by the
    /// next [`expired`](Self::expired) call, whatever its `now`.
    pub fn set(&mut self, domain: usize, deadline_ns: u64) {
        if self.deadlines.len() <= domain {
            self.deadlines.resize(domain + 1, None);
        }
        let replaced = self.deadlines[domain].replace(deadline_ns);
        if replaced.is_some() && replaced == self.earliest {
            self.rescan();
        } else {
            self.earliest = Some(self.earliest.map_or(deadline_ns, |earliest| earliest.min(deadline_ns)));
        }
    }

    /// Removes `domain`'s deadline, if any.
    pub fn cancel(&mut self, domain: usize) {
        if let Some(slot) = self.deadlines.get_mut(domain) {
            if slot.take().is_some_and(|deadline| Some(deadline) == self.earliest) {
                self.rescan();
            }
        }
    }

    /// `domain`'s pending deadline.
    pub fn deadline(&self, domain: usize) -> Option<u64> {
        self.deadlines.get(domain).copied().flatten()
    }

    /// How many deadlines are pending.
    pub fn pending(&self) -> usize {
        self.deadlines.iter().filter(|slot| slot.is_some()).count()
    }

    /// The earliest pending deadline.
    pub fn earliest(&self) -> Option<u64> {
        self.earliest
    }

    fn rescan(&mut self) {
        self.earliest = self.deadlines.iter().filter_map(|slot| *slot).min();
    }

    /// The domains whose deadline is at or before `now_ns`, in index order; each is
    /// removed as it is yielded (an iterator dropped early leaves the rest pending).
    pub fn expired(&mut self, now_ns: u64) -> Expired<'_> {
        Expired { timers: self, next: 0, now_ns }
    }
}

/// Iterator returned by [`Timers::expired`].
pub struct Expired<'a> {
    timers: &'a mut Timers,
    next: usize,
    now_ns: u64,
}

impl Iterator for Expired<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let deadlines = &mut self.timers.deadlines;
        while self.next < deadlines.len() {
            let index = self.next;
            self.next += 1;
            if deadlines[index].is_some_and(|deadline| deadline <= self.now_ns) {
                deadlines[index] = None;
                return Some(index);
            }
        }
        None
    }
}

impl Drop for Expired<'_> {
    fn drop(&mut self) {
        // Only the deadlines taken can have been the earliest; once, at the end.
        if self.timers.earliest.is_some_and(|earliest| earliest <= self.now_ns) {
            self.timers.rescan();
        }
    }
}
