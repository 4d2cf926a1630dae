//! Conformance helper: runs beside guests that are killed or refused, yielding 20 times
//! (a tick line every 5) and succeeding, to show the other domains keep running.
#![cfg_attr(target_os = "none", no_std, no_main)]

use guest_rt::abi::StartInfo;
use guest_rt::hypercall::HYPERVISOR;
use guest_rt::println;
use guest_rt::test::Reporter;

guest_rt::entry!(companion);

fn companion(start: &'static StartInfo) -> u32 {
    let mut reporter = Reporter::new();
    println!("companion: domain {} running", start.domain_id);
    for round in 1..=20 {
        reporter.expect_ok(HYPERVISOR.yield_now(), format_args!("yield {round}"));
        if round % 5 == 0 {
            println!("companion: tick {round}");
        }
    }
    reporter.finish()
}
