//! One traced domain's bounded ring of records: recording never blocks and never
//! allocates (the storage is allocated once, when tracing starts); when the ring is full
//! the record is dropped and counted, and the count goes out with the next drain.

use alloc::vec::Vec;
use hypercall_abi::trace::{kind, TraceRecord};

/// Records a ring holds.
pub const CAPACITY: usize = 256;

/// A bounded FIFO of records for one domain.
pub struct Ring {
    domain: u32,
    slots: Vec<TraceRecord>,
    /// Index of the oldest record.
    head: usize,
    /// Records held.
    length: usize,
    /// Records dropped since the last drain.
    dropped: u64,
    /// Records dropped over the whole run.
    dropped_total: u64,
}

impl Ring {
    /// An empty ring of `capacity` records (at least 1) for domain `domain`; `None` if
    /// the heap cannot hold it.
    pub fn new(domain: u32, capacity: usize) -> Option<Self> {
        let capacity = capacity.max(1);
        let mut slots = Vec::new();
        slots.try_reserve_exact(capacity).ok()?;
        slots.resize(capacity, TraceRecord::default());
        Some(Self { domain, slots, head: 0, length: 0, dropped: 0, dropped_total: 0 })
    }

    /// Appends `record`, or drops and counts it when the ring is full.
    pub fn push(&mut self, record: TraceRecord) {
        if self.length == self.slots.len() {
            self.dropped += 1;
            self.dropped_total += 1;
            return;
        }
        let index = (self.head + self.length) % self.slots.len();
        self.slots[index] = record;
        self.length += 1;
    }

    /// Whether at least half the ring is in use: time to drain at the next chance.
    pub fn half_full(&self) -> bool {
        self.length * 2 >= self.slots.len()
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.length
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    /// Records dropped over the whole run.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total
    }

    /// Hands every held record to `sink`, oldest first, then a DROPPED record (at time
    /// `now`) if any were dropped since the last drain; the ring is empty afterwards.
    pub fn drain(&mut self, now: u64, mut sink: impl FnMut(&TraceRecord)) {
        while self.length > 0 {
            sink(&self.slots[self.head]);
            self.head = (self.head + 1) % self.slots.len();
            self.length -= 1;
        }
        if self.dropped > 0 {
            let record = TraceRecord {
                kind: kind::DROPPED,
                domain: self.domain,
                number: self.dropped,
                tsc: now,
                tsc_end: now,
                ..TraceRecord::default()
            };
            sink(&record);
            self.dropped = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(number: u64) -> TraceRecord {
        TraceRecord { kind: kind::HYPERCALL, domain: 3, number, ..TraceRecord::default() }
    }

    fn drained(ring: &mut Ring, now: u64) -> Vec<TraceRecord> {
        let mut out = Vec::new();
        ring.drain(now, |record| out.push(*record));
        out
    }

    #[test]
    fn records_come_out_in_order_across_the_wrap() {
        let mut ring = Ring::new(3, 4).unwrap();
        for number in 0..3 {
            ring.push(call(number));
        }
        assert_eq!(drained(&mut ring, 0).iter().map(|r| r.number).collect::<Vec<_>>(), [0, 1, 2]);
        for number in 3..7 {
            ring.push(call(number));
        }
        assert!(ring.half_full());
        assert_eq!(drained(&mut ring, 0).iter().map(|r| r.number).collect::<Vec<_>>(), [3, 4, 5, 6]);
        assert!(ring.is_empty());
    }

    #[test]
    fn a_full_ring_drops_counts_and_reports_once() {
        let mut ring = Ring::new(3, 2).unwrap();
        for number in 0..5 {
            ring.push(call(number));
        }
        assert_eq!(ring.len(), 2);
        let out = drained(&mut ring, 99);
        assert_eq!(out.len(), 3);
        assert_eq!((out[0].number, out[1].number), (0, 1));
        assert_eq!((out[2].kind, out[2].domain, out[2].number, out[2].tsc), (kind::DROPPED, 3, 3, 99));
        assert_eq!(out[2].tsc_end, 99, "a DROPPED record is an instant");
        // The count was reported: the next drain has nothing to say.
        assert!(drained(&mut ring, 100).is_empty());
        ring.push(call(9));
        ring.push(call(10));
        ring.push(call(11));
        let out = drained(&mut ring, 101);
        assert_eq!(out.last().map(|r| (r.kind, r.number)), Some((kind::DROPPED, 1)));
        assert_eq!(ring.dropped_total(), 4);
    }

    #[test]
    fn half_full_is_the_drain_threshold() {
        let mut ring = Ring::new(1, 4).unwrap();
        ring.push(call(0));
        assert!(!ring.half_full());
        ring.push(call(1));
        assert!(ring.half_full());
        // Exactly half of a larger ring counts too.
        let mut ring = Ring::new(1, 8).unwrap();
        for number in 0..3 {
            ring.push(call(number));
        }
        assert!(!ring.half_full() && !ring.is_empty());
        ring.push(call(3));
        assert!(ring.half_full());
    }
}
