//! Conformance: many domains in one boot (SPEC.md §19.3). A tiny guest: it registers the
//! upcall entry, signals itself through an IPI port once, yields, closes the port and
//! reports; the case starts 64 of it with little memory each.
#![cfg_attr(target_os = "none", no_std, no_main)]

use core::sync::atomic::{AtomicU64, Ordering};

use guest_rt::abi::StartInfo;
use guest_rt::events::{self, Port};
use guest_rt::hypercall::HYPERVISOR;
use guest_rt::println;
use guest_rt::test::Reporter;

guest_rt::entry!(many);

static EVENTS: AtomicU64 = AtomicU64::new(0);

fn on_event(_: Port) {
    EVENTS.fetch_add(1, Ordering::AcqRel);
}

fn many(start: &'static StartInfo) -> u32 {
    let mut reporter = Reporter::new();
    if reporter.expect_ok(events::init(), "set_callbacks").is_some() {
        if let Some(port) = reporter.expect_ok(Port::bind_ipi(), "bind_ipi") {
            events::set_handler(port, on_event);
            events::irq_enable();
            reporter.expect_ok(port.send(), "send");
            reporter.expect_eq(EVENTS.load(Ordering::Acquire), 1, "events delivered");
            reporter.expect_ok(HYPERVISOR.yield_now(), "yield");
            reporter.expect_ok(port.close(), "close");
        }
    }
    println!("many: domain {} with {} pages", start.domain_id, start.nr_pages);
    reporter.finish()
}
