//! What the system writes for others to check: the trace stream's framing records
//! (SPEC.md §22.2) and the counts the end-of-run audit starts from.

use super::tests::{boot, hypercall, system, trace_records};
use crate::system::audit::Counts;
use crate::trace::selection::Selection;
use hypercall_abi::hypercall::{sched_cmd, shutdown_reason, Hypercall};
use hypercall_abi::trace::{kind, pack_name, TraceRecord, FORMAT_VERSION};

#[test]
fn the_trace_stream_opens_with_start_and_domain_records_and_closes_with_end() {
    let mut fixture = boot(2);
    fixture.0.platform.tsc = 4_000;
    fixture.0.start_trace(&Selection::parse("2").unwrap());
    let mut start =
        TraceRecord { kind: kind::START, number: FORMAT_VERSION, tsc: 4_000, tsc_end: 4_000, ..Default::default() };
    start.arguments[0] = fixture.0.tsc_hz;
    let domain = TraceRecord {
        kind: kind::DOMAIN,
        domain: 2,
        arguments: pack_name(&fixture.0.domains[1].name),
        tsc: 4_000,
        tsc_end: 4_000,
        ..Default::default()
    };
    assert_eq!(trace_records(&fixture.0), [start, domain]);
    fixture.0.platform.tsc = 9_000;
    for _ in 0..2 {
        hypercall(&mut fixture, Hypercall::SCHED_OP, [sched_cmd::SHUTDOWN, shutdown_reason::POWEROFF, 0, 0]);
    }
    let records = trace_records(&fixture.0);
    let end = TraceRecord { kind: kind::END, tsc: 9_000, tsc_end: 9_000, ..Default::default() };
    assert_eq!(records.last(), Some(&end), "{records:?}");
    assert!(!fixture.0.platform.said("records dropped"), "nothing was dropped: {:?}", fixture.0.platform.lines);
}

#[test]
fn the_audit_starts_from_what_is_free_before_any_domain() {
    let mut system = system();
    system.start_audit();
    let free = system.frames.lock().free_count();
    assert!(free > 0);
    assert_eq!(system.audit_start, Some(Counts { frames_free: free, ..Counts::default() }));
}
