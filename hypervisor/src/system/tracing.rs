//! The hypercall trace (SPEC.md §22) as the system runs it: starting it, recording, and
//! draining the rings to the platform's trace port. Recording only writes into a ring
//! allocated when tracing started; a ring is drained when a hypercall leaves it half full,
//! when its domain stops running (switch, idle, end) and when the run ends.

use crate::platform::{say, Platform};
use crate::system::System;
use crate::trace::ring::CAPACITY;
use crate::trace::selection::Selection;
use crate::trace::Trace;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use hypercall_abi::trace::{kind, pack_name, TraceRecord, FORMAT_VERSION};
use zerocopy::IntoBytes;

impl<P: Platform> System<P> {
    /// Starts tracing the built domains `selection` names: the stream's START and DOMAIN
    /// records go out now. Selecting none leaves tracing off.
    pub fn start_trace(&mut self, selection: &Selection) {
        let domains = self.domains.iter().map(|domain| (domain.id, domain.name.as_str()));
        let Some(trace) = Trace::new(domains, CAPACITY, |id, image| selection.includes(id, image)) else {
            say!(self.platform, "trace: the heap cannot hold the trace rings; tracing is off");
            return;
        };
        let traced: Vec<usize> = trace.traced().collect();
        if traced.is_empty() {
            say!(self.platform, "trace: trace= selects none of the {} domains; tracing is off", self.domains.len());
            return;
        }
        let now = self.platform.read_tsc();
        let mut start =
            TraceRecord { kind: kind::START, number: FORMAT_VERSION, tsc: now, tsc_end: now, ..Default::default() };
        start.arguments[0] = self.tsc_hz;
        self.platform.trace_write(start.as_bytes());
        let mut names = String::new();
        for &index in &traced {
            let domain = &self.domains[index];
            let record = TraceRecord {
                kind: kind::DOMAIN,
                domain: domain.id,
                arguments: pack_name(&domain.name),
                tsc: now,
                tsc_end: now,
                ..Default::default()
            };
            self.platform.trace_write(record.as_bytes());
            if !names.is_empty() {
                names.push_str(", ");
            }
            names.push_str(&format!("d{} {}", domain.id, domain.name));
        }
        say!(
            self.platform,
            "trace: {names}: hypercalls, bounces and upcalls to the trace port ({CAPACITY}-record rings)"
        );
        self.trace = Some(trace);
    }

    /// Records `record` for domain index `index` if it is traced.
    pub(super) fn trace_record(&mut self, index: usize, record: TraceRecord) -> bool {
        self.trace.as_mut().is_some_and(|trace| trace.record(index, record))
    }

    /// Writes domain index `index`'s held records (and its drop count) to the trace port.
    pub(super) fn trace_drain(&mut self, index: usize) {
        let now = self.platform.read_tsc();
        let Self { trace, platform, .. } = self;
        if let Some(ring) = trace.as_mut().and_then(|trace| trace.ring(index)) {
            ring.drain(now, |record| platform.trace_write(record.as_bytes()));
        }
    }

    /// Drains every ring, closes the stream with END and says how many records were lost.
    pub(super) fn end_trace(&mut self) {
        let Some(traced) = self.trace.as_ref().map(|trace| trace.traced().collect::<Vec<_>>()) else {
            return;
        };
        for &index in &traced {
            self.trace_drain(index);
        }
        let now = self.platform.read_tsc();
        let end = TraceRecord { kind: kind::END, tsc: now, tsc_end: now, ..Default::default() };
        self.platform.trace_write(end.as_bytes());
        for index in traced {
            let dropped =
                self.trace.as_mut().and_then(|trace| trace.ring(index)).map_or(0, |ring| ring.dropped_total());
            if dropped > 0 {
                let domain = &self.domains[index];
                say!(
                    self.platform,
                    "trace: d{} {}: {dropped} records dropped (its ring was full)",
                    domain.id,
                    domain.name
                );
            }
        }
    }
}
