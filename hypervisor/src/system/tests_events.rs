//! Event-channel operations reaching the shared-info pages and the waiters through the
//! system (SPEC.md §17, §18): UNMASK and CLOSE change the caller's bits, a closed
//! connection wakes the peer that polls it.

use super::tests::{boot, event_op, hypercall, shared_info};
use crate::event::upcall;
use crate::mm::guest_memory;
use crate::mm::paging::FrameMemory;
use crate::system::Wait;
use hypercall_abi::event::event_cmd;
use hypercall_abi::hypercall::{sched_cmd, Hypercall};
use hypercall_abi::shared_info::SharedInfo;
use zerocopy::IntoBytes;

#[test]
fn unmask_clears_the_ports_mask_bit() {
    let mut fixture = boot(1);
    let port = event_op(&mut fixture, [event_cmd::BIND_IPI, 0, 0]) as u32;
    let shared = shared_info(&fixture.0, 0);
    // The guest masks the port (it stores to its shared-info page).
    let word = core::mem::offset_of!(SharedInfo, evtchn_mask) + port as usize / 64 * 8;
    fixture.0.memory.write(shared, word, &(1u64 << (port % 64)).to_le_bytes());
    assert!(upcall::is_masked(&fixture.0.memory, shared, port));
    assert_eq!(event_op(&mut fixture, [event_cmd::UNMASK, u64::from(port), 0]), 0);
    assert!(!upcall::is_masked(&fixture.0.memory, shared, port));
}

#[test]
fn close_clears_the_ports_pending_bit() {
    let mut fixture = boot(1);
    let port = event_op(&mut fixture, [event_cmd::BIND_IPI, 0, 0]) as u32;
    assert_eq!(event_op(&mut fixture, [event_cmd::SEND, u64::from(port), 0]), 0);
    let shared = shared_info(&fixture.0, 0);
    assert!(upcall::is_pending(&fixture.0.memory, shared, port));
    assert_eq!(event_op(&mut fixture, [event_cmd::CLOSE, u64::from(port), 0]), 0);
    assert!(!upcall::is_pending(&fixture.0.memory, shared, port));
}

#[test]
fn closing_a_connection_wakes_the_peer_that_polls_it() {
    let mut fixture = boot(2);
    let local = event_op(&mut fixture, [event_cmd::ALLOC_UNBOUND, 2, 0]) as u64;
    hypercall(&mut fixture, Hypercall::SCHED_OP, [sched_cmd::YIELD, 0, 0, 0]);
    assert_eq!(fixture.0.current, 1);
    let remote = event_op(&mut fixture, [event_cmd::BIND_INTERDOMAIN, 1, local]) as u32;
    // d2 polls its end.
    let address = fixture.1.rsp - 256;
    {
        let (system, _) = &mut fixture;
        let space = system.domains[1].memory.as_ref().unwrap().kernel_space();
        guest_memory::copy_to_guest(&mut system.memory, space, address, [remote].as_bytes()).unwrap();
    }
    hypercall(&mut fixture, Hypercall::SCHED_OP, [sched_cmd::POLL, address, 1, 0]);
    assert_eq!(fixture.0.current, 0, "d2 sleeps");
    assert!(matches!(fixture.0.domains[1].wait, Wait::Ports(_)));
    assert_eq!(event_op(&mut fixture, [event_cmd::CLOSE, local, 0]), 0);
    assert!(matches!(fixture.0.domains[1].wait, Wait::Nothing), "the peer is woken to see its port unbound");
}

/// Writes `ports` below the running domain's stack and polls them until `deadline_ns`.
fn poll(fixture: &mut super::tests::Fixture, ports: &[u32], deadline_ns: u64) {
    let address = fixture.1.rsp - 256;
    let (system, _) = &mut *fixture;
    let space = system.domains[system.current].memory.as_ref().unwrap().kernel_space();
    guest_memory::copy_to_guest(&mut system.memory, space, address, ports.as_bytes()).unwrap();
    hypercall(fixture, Hypercall::SCHED_OP, [sched_cmd::POLL, address, ports.len() as u64, deadline_ns]);
}

#[test]
fn a_poll_of_a_closed_port_fails_and_a_poll_past_its_deadline_returns_at_once() {
    use crate::trace::selection::Selection;
    use hypercall_abi::trace::{flags, kind};
    use hypercall_abi::Errno;
    let mut fixture = boot(2);
    fixture.0.start_trace(&Selection::parse("1").unwrap());
    let port = event_op(&mut fixture, [event_cmd::BIND_IPI, 0, 0]) as u32;
    poll(&mut fixture, &[port + 1], 0);
    assert_eq!((fixture.0.current, fixture.1.rax as i64), (0, Errno::EINVAL.to_return()), "a closed port");
    fixture.0.platform.tsc = 5_000_000;
    poll(&mut fixture, &[port], 1);
    assert_eq!((fixture.0.current, fixture.1.rax), (0, 0), "the deadline passed: no sleep");
    poll(&mut fixture, &[port], 0);
    assert_eq!(fixture.0.current, 1, "a real poll sleeps");
    let polls: Vec<_> = super::tests::trace_records(&fixture.0)
        .into_iter()
        .filter(|record| record.kind == kind::HYPERCALL && record.number == Hypercall::SCHED_OP.0)
        .map(|record| (record.flags, record.result))
        .collect();
    let slept = (flags::RESULT | flags::SWITCHED, 0);
    assert_eq!(polls, [(flags::RESULT, Errno::EINVAL.to_return()), slept, slept]);
}
