//! The hypercall trace (SPEC.md §22): which domains are traced, and each one's bounded
//! ring of records. The system records into the rings and drains them through the
//! platform's trace port.

pub mod ring;
pub mod selection;

use alloc::vec::Vec;
use hypercall_abi::trace::TraceRecord;
use ring::Ring;

/// Every traced domain's ring, by domain index (`None`: not traced).
pub struct Trace {
    rings: Vec<Option<Ring>>,
}

impl Trace {
    /// Rings of `capacity` records for the domains `traced` says yes to; `domains` are
    /// (id, image) in index order. All storage is allocated here, none later; `None` if
    /// the heap cannot hold it.
    pub fn new<'a>(
        domains: impl Iterator<Item = (u32, &'a str)>,
        capacity: usize,
        mut traced: impl FnMut(u32, &str) -> bool,
    ) -> Option<Self> {
        let mut rings = Vec::new();
        for (id, image) in domains {
            let ring = if traced(id, image) { Some(Ring::new(id, capacity)?) } else { None };
            rings.try_reserve(1).ok()?;
            rings.push(ring);
        }
        Some(Self { rings })
    }

    /// Whether domain index `index` is traced.
    pub fn traces(&self, index: usize) -> bool {
        matches!(self.rings.get(index), Some(Some(_)))
    }

    /// Indices of the traced domains.
    pub fn traced(&self) -> impl Iterator<Item = usize> + '_ {
        self.rings.iter().enumerate().filter(|(_, ring)| ring.is_some()).map(|(index, _)| index)
    }

    /// Records `record` for domain index `index` if it is traced; says whether its ring
    /// is now half full (time to drain).
    pub fn record(&mut self, index: usize, record: TraceRecord) -> bool {
        match self.rings.get_mut(index) {
            Some(Some(ring)) => {
                ring.push(record);
                ring.half_full()
            }
            _ => false,
        }
    }

    /// Domain index `index`'s ring, if it is traced.
    pub fn ring(&mut self, index: usize) -> Option<&mut Ring> {
        self.rings.get_mut(index)?.as_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hypercall_abi::trace::kind;

    #[test]
    fn only_selected_domains_get_rings() {
        let domains = [(1, "a"), (2, "b"), (3, "a")];
        let mut trace = Trace::new(domains.into_iter(), 2, |_, image| image == "a").unwrap();
        assert_eq!(trace.traced().collect::<Vec<_>>(), [0, 2]);
        assert!(trace.traces(0) && trace.traces(2));
        assert!(!trace.traces(1) && !trace.traces(9));
        let call = TraceRecord { kind: kind::HYPERCALL, ..TraceRecord::default() };
        assert!(!trace.record(1, call), "an untraced domain records nothing");
        assert!(trace.ring(1).is_none());
        assert!(trace.record(0, call), "one of two slots is half full");
        assert_eq!(trace.ring(0).map(|ring| ring.len()), Some(1));
    }
}
