//! Conformance: round-robin scheduling. Each of several copies prints `tick <i>` and
//! yields, five times; the runner checks the ticks interleave across domains. The argument
//! is the number of peers the runner started (printed, for the log).
#![cfg_attr(target_os = "none", no_std, no_main)]

use conformance_guests::{parse_number, words};
use guest_rt::abi::StartInfo;
use guest_rt::hypercall::HYPERVISOR;
use guest_rt::println;
use guest_rt::test::Reporter;

guest_rt::entry!(yield_order);

fn yield_order(start: &'static StartInfo) -> u32 {
    let mut reporter = Reporter::new();
    match words(start).next().map(parse_number) {
        Some(Some(peers)) => println!("yield_order: domain {} of {peers} peers", start.domain_id),
        Some(None) => reporter.error("argument must be the number of peers"),
        None => println!("yield_order: domain {}, number of peers not given", start.domain_id),
    }
    for tick in 0..5 {
        println!("tick {tick}");
        reporter.expect_ok(HYPERVISOR.yield_now(), format_args!("yield after tick {tick}"));
    }
    reporter.finish()
}
