//! `event_loopback`: ringfence's bench_event_loopback. One channel whose two ends are both
//! this domain's (ALLOC_UNBOUND to itself, BIND_INTERDOMAIN to that port); one iteration
//! is SEND on the first end, POLL on the second until it is pending and take the event,
//! then the same from the second end back: four hypercalls, no domain switch. Both ports
//! stay masked, so no upcall is involved.

use core::cell::Cell;

use crate::events;
use crate::harness;
use crate::xen::SharedInfo;

fn pass(shared: SharedInfo, from: u32, to: u32) -> bool {
    events::send(from).is_ok() && events::poll(to).is_ok() && shared.take_pending(to)
}

pub fn run(shared: SharedInfo) {
    let (first, second) =
        match events::alloc_unbound_to_self().and_then(|first| Ok((first, events::bind_to_self(first)?))) {
            Ok(ports) => ports,
            Err(error) => {
                harness::error("event_loopback", format_args!("loopback channel refused: {error}"));
                return;
            }
        };
    shared.mask_port(first, true);
    shared.mask_port(second, true);
    let lost = Cell::new(false);
    let summary = harness::bench(|| {
        if !(pass(shared, first, second) && pass(shared, second, first)) {
            lost.set(true);
        }
    });
    if lost.get() || shared.is_pending(first) || shared.is_pending(second) {
        harness::error("event_loopback", format_args!("a send was refused or its event was not pending"));
        return;
    }
    harness::report("event_loopback", &summary);
}
