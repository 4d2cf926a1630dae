//! Conformance: event channels within one domain (SPEC.md §17–§18).
//!
//! Argument: the sub-case.
//! * `mask` — a masked port collects a send without an upcall; UNMASK delivers it exactly
//!   once; an unmasked send is delivered on the hypercall's return.
//! * `irq_masked` — with the upcall mask set a send only marks the port pending (no
//!   delivery across further hypercalls); `irq_enable` delivers it, once, with the
//!   handler running masked and the frame's IF set; save/restore and the guard nest.
//! * `close_pending` — closing a port with an event pending clears it (nothing delivered
//!   on enable); the peer end becomes UNBOUND naming this domain; the closed port is
//!   CLOSED and refuses SEND/UNMASK/CLOSE.
//! * `errors` — refusals: bad and closed ports, bad virq, duplicate virq, unknown domains,
//!   binding a port that is not unbound, sending on unbound/virq ports, bad callbacks.
//! * `exhaust` — ports 1..1023 come out lowest first, then -ENOSPC; after closing all the
//!   same ports come back; a closed middle port is reused first.
//! * `poll` — POLL returns at once for a pending port, waits out a timeout otherwise,
//!   leaves the upcall mask alone and refuses bad ports and arrays.
#![cfg_attr(target_os = "none", no_std, no_main)]

mod events_support;

use conformance_guests::words;
use events_support::{count, count_on};
use guest_rt::abi::event::{event_cmd, status, virq, PORTS_MAX};
use guest_rt::abi::{Errno, StartInfo};
use guest_rt::events::{self, IrqGuard, Port, PortStatus, SELF};
use guest_rt::hypercall::HYPERVISOR;
use guest_rt::println;
use guest_rt::test::Reporter;
use guest_rt::time;

guest_rt::entry!(evtchn);

/// A port this domain connects to itself: (receiving end, sending end).
fn loopback(reporter: &mut Reporter, start: &StartInfo) -> Option<(Port, Port)> {
    let unbound = reporter.expect_ok(Port::alloc_unbound(SELF), "alloc_unbound(SELF)")?;
    let bound = reporter.expect_ok(
        Port::bind_interdomain(u64::from(start.domain_id), unbound.number()),
        "bind_interdomain(self, port)",
    )?;
    Some((unbound, bound))
}

fn expect_status(reporter: &mut Reporter, port: Port, expected: PortStatus, what: &str) {
    match port.status() {
        Ok(found) => {
            reporter.expect_eq(found, expected, format_args!("{what}: status of port {}", port.number()));
        }
        Err(errno) => reporter.fail(format_args!("{what}: status of port {}: -{errno}", port.number())),
    }
}

fn mask(reporter: &mut Reporter, start: &StartInfo) {
    let Some((receiver, sender)) = loopback(reporter, start) else { return };
    let domain = u64::from(start.domain_id);
    expect_status(
        reporter,
        receiver,
        PortStatus { state: status::INTERDOMAIN, remote_domain: domain, remote_port: u64::from(sender.number()) },
        "loopback receiver",
    );
    expect_status(
        reporter,
        sender,
        PortStatus { state: status::INTERDOMAIN, remote_domain: domain, remote_port: u64::from(receiver.number()) },
        "loopback sender",
    );
    count_on(receiver);
    events::irq_enable();
    receiver.mask();
    reporter.expect_ok(sender.send(), "send to the masked port");
    reporter.check(receiver.is_pending(), "a send to a masked port sets its pending bit");
    let _ = HYPERVISOR.version();
    let _ = HYPERVISOR.yield_now();
    reporter.expect_eq(count(receiver), 0, "deliveries while masked");
    reporter.expect_ok(sender.send(), "second send to the masked port");
    reporter.expect_eq(count(receiver), 0, "deliveries after a second masked send");
    reporter.expect_ok(receiver.unmask(), "unmask");
    reporter.expect_eq(count(receiver), 1, "deliveries after unmask (two sends coalesce into one event)");
    reporter
        .check(!receiver.is_pending() && !receiver.is_masked(), "unmask leaves the port neither pending nor masked");
    let _ = HYPERVISOR.version();
    reporter.expect_eq(count(receiver), 1, "deliveries a hypercall later (no duplicate)");
    reporter.expect_ok(sender.send(), "unmasked send");
    reporter.expect_eq(count(receiver), 2, "an unmasked send is delivered on the hypercall's return");
    reporter.expect_ok(receiver.unmask(), "unmask of an unmasked, idle port");
    reporter.expect_eq(count(receiver), 2, "unmask of an idle port delivers nothing");

    // The other direction and an IPI port.
    count_on(sender);
    reporter.expect_ok(receiver.send(), "send back");
    reporter.expect_eq(count(sender), 1, "the loopback works both ways");
    if let Some(ipi) = reporter.expect_ok(Port::bind_ipi(), "bind_ipi") {
        expect_status(reporter, ipi, PortStatus { state: status::IPI, remote_domain: 0, remote_port: 0 }, "ipi");
        count_on(ipi);
        reporter.expect_ok(ipi.send(), "ipi send");
        reporter.expect_eq(count(ipi), 1, "ipi deliveries");
        reporter.expect_ok(ipi.close(), "ipi close");
    }
    reporter.expect_eq(events::stats().unhandled, 0, "events on ports without a handler");
    for port in [receiver, sender] {
        reporter.expect_ok(port.close(), format_args!("close port {}", port.number()));
    }
}

fn irq_masked(reporter: &mut Reporter) {
    let Some(ipi) = reporter.expect_ok(Port::bind_ipi(), "bind_ipi") else { return };
    count_on(ipi);
    let page = events::shared_info();
    reporter.expect_eq(page.upcall_mask(), 1, "a new domain starts with the upcall mask set");
    reporter.expect_ok(ipi.send(), "send with events off");
    reporter.check(ipi.is_pending(), "the port is pending");
    reporter.expect_eq(page.upcall_pending(), 1, "upcall_pending");
    reporter.expect_eq(page.pending_selector(), 1 << (ipi.number() / 64), "pending_selector");
    let _ = HYPERVISOR.version();
    let _ = HYPERVISOR.yield_now();
    reporter.expect_eq(count(ipi), 0, "deliveries while the upcall mask is set");
    reporter.expect_eq(events::stats().upcalls, 0, "upcalls while the upcall mask is set");
    events::irq_enable();
    reporter.expect_eq(count(ipi), 1, "deliveries once irq_enable returned");
    let stats = events::stats();
    reporter.expect_eq(stats.upcalls, 1, "upcalls");
    reporter.expect_eq(stats.last_mask, 1, "the upcall mask inside the handler");
    reporter.check(stats.last_rflags & (1 << 9) != 0, format_args!("the frame's IF (rflags {:#x})", stats.last_rflags));
    reporter.expect_eq(page.upcall_mask(), 0, "iret restored the mask from IF");
    reporter.check(!ipi.is_pending(), "the handled port is no longer pending");

    // Nesting: the guard inside a save keeps events off until the outer restore.
    let outer = events::irq_save();
    {
        let _guard = IrqGuard::new();
        reporter.expect_ok(ipi.send(), "send inside the guard");
    }
    reporter.expect_eq(count(ipi), 1, "the guard restored 'off' (the outer save), so nothing yet");
    events::irq_restore(outer);
    reporter.expect_eq(count(ipi), 2, "the outer restore delivered it");
    {
        let _guard = IrqGuard::new();
        reporter.expect_ok(ipi.send(), "send inside a guard with events on before");
        reporter.expect_eq(count(ipi), 2, "nothing inside the guard");
    }
    reporter.expect_eq(count(ipi), 3, "the guard's drop delivered it");
    reporter.expect_ok(ipi.close(), "close");
}

fn close_pending(reporter: &mut Reporter, start: &StartInfo) {
    let Some((receiver, sender)) = loopback(reporter, start) else { return };
    count_on(receiver);
    reporter.expect_ok(sender.send(), "send with events off");
    reporter.check(receiver.is_pending(), "pending before the close");
    receiver.mask();
    reporter.expect_ok(receiver.close(), "close the pending port");
    reporter.check(!receiver.is_pending(), "close clears the pending bit");
    reporter.check(!receiver.is_masked(), "close clears the mask bit");
    events::irq_enable();
    reporter.expect_eq(count(receiver), 0, "deliveries after enabling");
    reporter.expect_eq(events::stats().unhandled, 0, "events on closed ports");
    expect_status(reporter, receiver, PortStatus { state: status::CLOSED, remote_domain: 0, remote_port: 0 }, "closed");
    match sender.status() {
        Ok(found) => {
            reporter.expect_eq(found.state, status::UNBOUND, "the peer end's state after the close");
            reporter.expect_eq(found.remote_domain, u64::from(start.domain_id), "the peer end names the closer");
        }
        Err(errno) => reporter.fail(format_args!("status of the peer end: -{errno}")),
    }
    reporter.expect_errno(sender.send(), Errno::EINVAL, "send on the now-unbound end");
    reporter.expect_errno(receiver.send(), Errno::EINVAL, "send on the closed port");
    reporter.expect_errno(receiver.unmask(), Errno::EINVAL, "unmask of the closed port");
    reporter.expect_errno(receiver.close(), Errno::EINVAL, "close of the closed port");
    // The unbound end names this domain, so it can be bound again.
    match Port::bind_interdomain(u64::from(start.domain_id), sender.number()) {
        Ok(again) => {
            count_on(again);
            reporter.expect_ok(sender.send(), "send after rebinding");
            reporter.expect_eq(count(again), 1, "deliveries on the rebound port");
            reporter.expect_ok(again.close(), "close the rebound port");
        }
        Err(errno) => reporter.fail(format_args!("rebinding the unbound end: -{errno}")),
    }
    reporter.expect_ok(sender.close(), "close the other end");
}

fn errors(reporter: &mut Reporter, start: &StartInfo) {
    let never = Port::from_raw(77);
    reporter.expect_errno(never.send(), Errno::EINVAL, "send on a never-opened port");
    reporter.expect_errno(never.unmask(), Errno::EINVAL, "unmask of a never-opened port");
    reporter.expect_errno(never.close(), Errno::EINVAL, "close of a never-opened port");
    expect_status(
        reporter,
        never,
        PortStatus { state: status::CLOSED, remote_domain: 0, remote_port: 0 },
        "never-opened",
    );
    for bad in [0, PORTS_MAX as u32, 4095, u32::MAX] {
        let port = Port::from_raw(bad);
        reporter.expect_errno(port.send(), Errno::EINVAL, format_args!("send on port {bad}"));
        reporter.expect_errno(port.status(), Errno::EINVAL, format_args!("status of port {bad}"));
        reporter.expect_errno(port.close(), Errno::EINVAL, format_args!("close of port {bad}"));
        reporter.expect_errno(port.unmask(), Errno::EINVAL, format_args!("unmask of port {bad}"));
    }
    reporter.expect_errno(
        HYPERVISOR.event_channel_op(event_cmd::SEND, 1 << 32 | 1, 0),
        Errno::EINVAL,
        "send on a port number above 32 bits",
    );
    reporter.expect_errno(Port::bind_virq(virq::COUNT), Errno::EINVAL, "bind_virq(COUNT)");
    reporter.expect_errno(Port::bind_virq(u64::MAX), Errno::EINVAL, "bind_virq(u64::MAX)");
    if let Some(port) = reporter.expect_ok(Port::bind_virq(virq::DEBUG), "bind_virq(DEBUG)") {
        expect_status(
            reporter,
            port,
            PortStatus { state: status::VIRQ, remote_domain: 0, remote_port: virq::DEBUG },
            "virq",
        );
        reporter.expect_errno(Port::bind_virq(virq::DEBUG), Errno::EEXIST, "bind_virq(DEBUG) twice");
        reporter.expect_errno(port.send(), Errno::EINVAL, "send on a virq port");
        reporter.expect_ok(port.close(), "close the virq port");
        if let Some(again) = reporter.expect_ok(Port::bind_virq(virq::DEBUG), "bind_virq(DEBUG) after close") {
            reporter.expect_ok(again.close(), "close it again");
        }
    }
    for domain in [0u64, 999, 0x7fef, u64::MAX] {
        reporter.expect_errno(Port::alloc_unbound(domain), Errno::ESRCH, format_args!("alloc_unbound({domain:#x})"));
        reporter.expect_errno(
            Port::bind_interdomain(domain, 1),
            Errno::ESRCH,
            format_args!("bind_interdomain({domain:#x}, 1)"),
        );
    }
    let me = u64::from(start.domain_id);
    if let Some(unbound) = reporter.expect_ok(Port::alloc_unbound(me), "alloc_unbound(own id)") {
        expect_status(
            reporter,
            unbound,
            PortStatus { state: status::UNBOUND, remote_domain: me, remote_port: 0 },
            "unbound",
        );
        reporter.expect_errno(unbound.send(), Errno::EINVAL, "send on an unbound port");
        if let Some(ipi) = reporter.expect_ok(Port::bind_ipi(), "bind_ipi") {
            reporter.expect_errno(
                Port::bind_interdomain(me, ipi.number()),
                Errno::EINVAL,
                "bind_interdomain to an ipi port",
            );
            reporter.expect_ok(ipi.close(), "close ipi");
        }
        reporter.expect_errno(Port::bind_interdomain(me, 900), Errno::EINVAL, "bind_interdomain to a closed port");
        reporter.expect_errno(Port::bind_interdomain(me, 0), Errno::EINVAL, "bind_interdomain to port 0");
        reporter.expect_errno(Port::bind_interdomain(me, 5000), Errno::EINVAL, "bind_interdomain to port 5000");
        if let Some(bound) = reporter.expect_ok(Port::bind_interdomain(me, unbound.number()), "bind it") {
            reporter.expect_errno(
                Port::bind_interdomain(me, unbound.number()),
                Errno::EINVAL,
                "binding an already bound port again",
            );
            reporter.expect_ok(bound.close(), "close bound");
        }
        reporter.expect_ok(unbound.close(), "close unbound");
    }
    reporter.expect_errno(HYPERVISOR.event_channel_op(99, 0, 0), Errno::EINVAL, "unknown event_channel_op command");
    // SAFETY: refused callbacks are never jumped to; a successful one is guest-rt's entry.
    unsafe {
        reporter.expect_errno(
            HYPERVISOR.set_callbacks(0x8000_0000_0000, 0),
            Errno::EINVAL,
            "non-canonical event callback",
        );
        reporter.expect_errno(
            HYPERVISOR.set_callbacks(guest_rt::abi::layout::HYPERVISOR_START, 0),
            Errno::EINVAL,
            "event callback in the hypervisor range",
        );
        reporter.expect_errno(
            HYPERVISOR.set_callbacks(events::entry_address(), 0x8000_0000_0000),
            Errno::EINVAL,
            "non-canonical failsafe callback",
        );
        reporter.expect_ok(HYPERVISOR.set_callbacks(0, 0), "set_callbacks(0, 0)");
    }
}

fn exhaust(reporter: &mut Reporter) {
    let mut ports = [0u32; PORTS_MAX as usize];
    let mut opened = 0usize;
    let error = loop {
        match Port::bind_ipi() {
            Ok(port) if opened < ports.len() => {
                ports[opened] = port.number();
                opened += 1;
            }
            Ok(port) => {
                reporter.fail(format_args!("port {} allocated past the limit", port.number()));
                break Errno::EINVAL;
            }
            Err(errno) => break errno,
        }
    };
    reporter.expect_eq(error, Errno::ENOSPC, "the allocation after the last port");
    reporter.expect_eq(opened as u64, PORTS_MAX - 1, "ports a domain can open (1..1023)");
    let in_order = ports[..opened].iter().enumerate().all(|(index, &port)| port as usize == index + 1);
    reporter.check(in_order, "ports come out lowest first: 1, 2, 3, ...");
    reporter.expect_errno(Port::alloc_unbound(SELF), Errno::ENOSPC, "alloc_unbound when full");
    reporter.expect_errno(Port::bind_virq(virq::TIMER), Errno::ENOSPC, "bind_virq when full");
    reporter.expect_ok(Port::from_raw(500).close(), "close port 500");
    reporter.expect_eq(Port::bind_ipi().map(Port::number), Ok(500), "the freed port comes back first");
    let mut closed = 0;
    for &port in &ports[..opened] {
        if Port::from_raw(port).close().is_ok() {
            closed += 1;
        }
    }
    reporter.expect_eq(closed, opened, "ports closed");
    // Everything comes back: no port leaked.
    let mut again = 0u64;
    while let Ok(port) = Port::bind_ipi() {
        again += 1;
        if port.number() as u64 != again {
            reporter.fail(format_args!("second round: port {} where {again} was expected", port.number()));
            break;
        }
    }
    reporter.expect_eq(again, PORTS_MAX - 1, "ports after closing all of them");
    for port in 1..=again as u32 {
        let _ = Port::from_raw(port).close();
    }
    println!("evtchn: {opened} ports, then -ENOSPC; {again} again after closing them all");
}

fn poll(reporter: &mut Reporter) {
    let Some(ipi) = reporter.expect_ok(Port::bind_ipi(), "bind_ipi") else { return };
    let Some(other) = reporter.expect_ok(Port::bind_ipi(), "bind_ipi") else { return };
    count_on(ipi);
    let page = events::shared_info();
    reporter.expect_ok(ipi.send(), "send with events off");
    let started = time::now();
    reporter.expect_ok(events::poll(&[other, ipi], started + 5_000_000_000), "poll with one port pending");
    let took = time::now() - started;
    reporter.check(took < 1_000_000_000, format_args!("poll with a pending port returns at once (took {took} ns)"));
    reporter.expect_eq(page.upcall_mask(), 1, "poll leaves the upcall mask set");
    reporter.expect_eq(count(ipi), 0, "poll delivers no upcall");
    reporter.check(ipi.is_pending(), "the polled port stays pending");
    ipi.clear_pending();
    events::dispatch_pending();

    // A timeout with nothing pending.
    let wait = 20_000_000;
    let before = time::now();
    reporter.expect_ok(events::poll(&[ipi, other], before + wait), "poll that times out");
    let after = time::now();
    reporter.check(
        after >= before + wait,
        format_args!("poll returned {} ns before its timeout", (before + wait).saturating_sub(after)),
    );
    println!("evtchn: poll timed out {} ns after its deadline", after.saturating_sub(before + wait));
    reporter.check(!ipi.is_pending() && !other.is_pending(), "nothing pending after the timeout");
    let deadline_past = time::now().saturating_sub(1);
    reporter.expect_ok(events::poll(&[ipi], deadline_past), "poll with a timeout in the past returns");

    // Refusals.
    reporter.expect_errno(events::poll(&[Port::from_raw(0)], 0), Errno::EINVAL, "poll on port 0");
    reporter.expect_errno(events::poll(&[ipi, Port::from_raw(1024)], 0), Errno::EINVAL, "poll on port 1024");
    reporter.expect_errno(events::poll(&[ipi, Port::from_raw(900)], 0), Errno::EINVAL, "poll on a closed port");
    let many = [ipi; 129];
    reporter.expect_errno(events::poll(&many, 0), Errno::EINVAL, "poll on 129 ports");
    // SAFETY: the hypervisor only reads the array; these pointers are refused.
    unsafe {
        reporter.expect_errno(HYPERVISOR.poll_raw(0x1000, 1, 0), Errno::EFAULT, "poll with an unmapped array");
        reporter.expect_errno(
            HYPERVISOR.poll_raw(0x1000, 129, 0),
            Errno::EINVAL,
            "poll: a count over 128 is checked first",
        );
        let none: [u32; 0] = [];
        reporter.expect_ok(HYPERVISOR.poll_raw(none.as_ptr() as u64, 0, 1), "poll on no ports with a past timeout");
        reporter.expect_errno(
            HYPERVISOR.poll_raw(guest_rt::abi::layout::HYPERVISOR_START, 1, 0),
            Errno::EFAULT,
            "poll with an array in the hypervisor",
        );
    }
    reporter.expect_ok(ipi.close(), "close");
    reporter.expect_ok(other.close(), "close");
}

fn evtchn(start: &'static StartInfo) -> u32 {
    let mut reporter = Reporter::new();
    if !events_support::init(&mut reporter) {
        reporter.finish()
    }
    match words(start).next() {
        Some("mask") => mask(&mut reporter, start),
        Some("irq_masked") => irq_masked(&mut reporter),
        Some("close_pending") => close_pending(&mut reporter, start),
        Some("errors") => errors(&mut reporter, start),
        Some("exhaust") => exhaust(&mut reporter),
        Some("poll") => poll(&mut reporter),
        other => reporter.error(format_args!("unknown sub-case {other:?}")),
    }
    reporter.finish()
}
