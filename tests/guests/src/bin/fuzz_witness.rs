//! `cargo xtask fuzz`'s witness: a heartbeat beside the fuzzers. Arguments:
//! `fuzzers=<id>[:<id>]...` (it offers port k to the k-th, in order, from port 1),
//! `period_us=<n>` (default 1000), `max_gap_ms=<n>` (default 1000).
//!
//! Every beat sets a timer one period ahead and blocks; the time between two beats must
//! stay below `max_gap_ms` whatever the fuzzers do, or the fuzzers starved it. It ends
//! when every fuzzer has raised its port (done) or its channel fell back to UNBOUND
//! (it ended without saying so: reported, the hypervisor's summary says how).
#![cfg_attr(target_os = "none", no_std, no_main)]

extern crate alloc;

use alloc::vec::Vec;
use conformance_guests::{parse_number, words};
use guest_rt::abi::event::status;
use guest_rt::abi::StartInfo;
use guest_rt::events::{shared_info, Port};
use guest_rt::println;
use guest_rt::test::Reporter;
use guest_rt::time::{now, set_timer};

guest_rt::entry!(witness);

/// One fuzzer's channel, as the witness sees it.
struct Fuzzer {
    domain: u64,
    port: Port,
    bound: bool,
    ended: bool,
}

fn argument<'a>(start: &'a StartInfo, key: &str) -> Option<&'a str> {
    words(start).find_map(|word| word.strip_prefix(key))
}

fn witness(start: &'static StartInfo) -> u32 {
    let mut reporter = Reporter::new();
    let period_ns = argument(start, "period_us=").and_then(parse_number).unwrap_or(1000) * 1000;
    let max_gap_ns = argument(start, "max_gap_ms=").and_then(parse_number).unwrap_or(1000) * 1_000_000;
    let ids: Vec<u64> =
        argument(start, "fuzzers=").map_or(Vec::new(), |list| list.split(':').filter_map(parse_number).collect());
    let mut fuzzers = Vec::new();
    for &domain in &ids {
        match Port::alloc_unbound(domain) {
            Ok(port) => fuzzers.push(Fuzzer { domain, port, bound: false, ended: false }),
            Err(errno) => reporter.error(format_args!("offering a port to d{domain}: -{errno}")),
        }
    }
    println!(
        "witness: {} fuzzers, a beat every {} us, longest gap allowed {} ms",
        fuzzers.len(),
        period_ns / 1000,
        max_gap_ns / 1_000_000
    );
    let first = now();
    let mut last = first;
    let mut longest = 0;
    let mut beats = 0u64;
    while fuzzers.iter().any(|fuzzer| !fuzzer.ended) {
        let beat = now();
        if beat < last {
            reporter.fail(format_args!("time went back from {last} to {beat} ns"));
        }
        longest = longest.max(beat.saturating_sub(last));
        last = beat;
        beats += 1;
        for fuzzer in fuzzers.iter_mut().filter(|fuzzer| !fuzzer.ended) {
            if fuzzer.port.is_pending() {
                fuzzer.ended = true;
                continue;
            }
            match fuzzer.port.status() {
                Ok(state) if state.state == status::INTERDOMAIN => fuzzer.bound = true,
                Ok(state) if state.state == status::UNBOUND && fuzzer.bound => {
                    println!("witness: d{} ended without saying it was done", fuzzer.domain);
                    fuzzer.ended = true;
                }
                Ok(_) => {}
                Err(errno) => reporter.error(format_args!("STATUS of d{}'s port: -{errno}", fuzzer.domain)),
            }
        }
        // Events are masked for good: clear the summary flag so BLOCK sleeps again.
        shared_info().set_upcall_pending(0);
        if let Err(errno) = set_timer(beat + period_ns) {
            reporter.error(format_args!("set_timer: -{errno}"));
            break;
        }
        if let Err(errno) = guest_rt::hypercall::HYPERVISOR.block() {
            reporter.error(format_args!("block: -{errno}"));
            break;
        }
    }
    let elapsed = now() - first;
    println!(
        "witness: {beats} beats in {} ms, longest gap {}.{:03} ms (allowed {} ms)",
        elapsed / 1_000_000,
        longest / 1_000_000,
        longest / 1000 % 1000,
        max_gap_ns / 1_000_000
    );
    reporter.check(longest <= max_gap_ns, "the heartbeat never waited longer than max_gap_ms");
    reporter.check(beats > 0, "at least one beat");
    reporter.finish()
}
