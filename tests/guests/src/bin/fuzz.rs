//! Conformance and `cargo xtask fuzz`: random hypercalls (SPEC.md §5–§21). Arguments:
//! `calls=<n>` (default 100 000), `seed=<n>` (default 1), `peers=<id>[:<id>]...` (the other
//! fuzzers, whose ports this one binds and raises), `witness=<id>` and `link=<port>` (the
//! witness's port offered to this domain: bound first, raised last, never touched between),
//! `echo_from=<n>` (print every call from call number n on).
//!
//! Each step is one of: a random hypercall (numbers biased to the defined ones, arguments to
//! boundaries, pointers into the fuzzer's own buffers or unreadable memory), a sequence of
//! related calls with exact expected results, a random `mmu_update` array, or a random
//! multicall array. Every result must be one SPEC.md documents for the call; a failure
//! prints the seed, the call's number and the call. The call stream is a function of the
//! seed alone, so a run replays from it (results of calls on other domains' ports depend
//! on how the domains interleave). Never issues a valid shutdown; console writes print
//! only a few lines.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[path = "fuzz_support/mod.rs"]
mod fuzz_support;
#[path = "memory_support/mod.rs"]
mod support;

extern crate alloc;

use conformance_guests::{parse_number, words, Landmarks};
use fuzz_support::{batches, generate, sequences, Call, Fuzzer};
use guest_rt::abi::event::event_cmd;
use guest_rt::abi::hypercall::Hypercall;
use guest_rt::abi::{Errno, StartInfo, ABI_VERSION};
use guest_rt::hypercall::HYPERVISOR;
use guest_rt::println;

guest_rt::entry!(fuzz);

/// Calls when `calls=` is not given.
const DEFAULT_CALLS: u64 = 100_000;
/// Yields while waiting for the witness to offer its port.
const LINK_ATTEMPTS: u32 = 10_000;

fn argument<'a>(start: &'a StartInfo, key: &str) -> Option<&'a str> {
    words(start).find_map(|word| word.strip_prefix(key))
}

fn fuzz(start: &'static StartInfo) -> u32 {
    let seed = argument(start, "seed=").and_then(parse_number).unwrap_or(1);
    let calls = argument(start, "calls=").and_then(parse_number).unwrap_or(DEFAULT_CALLS);
    let gfn_limit = guest_rt::memory::maximum_gfn().unwrap_or(start.nr_pages);
    let mut fuzzer = Fuzzer::new(seed, u64::from(start.domain_id), Landmarks::of(start), gfn_limit, start.nr_pages);
    fuzzer.echo_from = argument(start, "echo_from=").and_then(parse_number);
    fuzzer.peers = argument(start, "peers=")
        .map_or(alloc::vec::Vec::new(), |list| list.split(':').filter_map(parse_number).collect());
    fuzzer.witness = argument(start, "witness=").and_then(parse_number);
    println!("fuzz: d{} {calls} calls, seed {seed}", start.domain_id);
    if let Err(errno) = support::install_fault_probe() {
        fuzzer.reporter.error(format_args!("installing the #PF handler: -{errno}"));
        fuzzer.reporter.finish();
    }
    // Events stay masked for good: set_callbacks may then name anything.
    guest_rt::events::shared_info().set_upcall_mask(1);
    batches::fill(&mut fuzzer, 1024, false);
    if let (Some(witness), Some(port)) = (fuzzer.witness, argument(start, "link=").and_then(parse_number)) {
        link(&mut fuzzer, witness, port);
    }

    while fuzzer.counts.calls < calls {
        match fuzzer.random.below(32) {
            0..=2 => {
                let kind = fuzzer.random.below(sequences::KINDS);
                sequences::run(&mut fuzzer, kind);
            }
            3 => batches::mmu_batch(&mut fuzzer),
            4 | 5 => batches::multicall(&mut fuzzer),
            _ => match generate::call(&mut fuzzer, None) {
                // The result is judged inside `issue`.
                Some(call) => drop(fuzzer.issue(call)),
                None => fuzzer.counts.skipped += 1,
            },
        }
    }

    report(&fuzzer);
    let version = HYPERVISOR.version();
    fuzzer.reporter.expect_eq(version, Ok(ABI_VERSION), "version() after fuzzing");
    if let Some(port) = fuzzer.link {
        // Tells the witness this fuzzer is done.
        let send = Call::new(Hypercall::EVENT_CHANNEL_OP, &[event_cmd::SEND, port]);
        let result = fuzzer.issue(send);
        fuzzer.reporter.expect_eq(result, Ok(0), "SEND on the link to the witness");
    }
    fuzzer.reporter.finish()
}

/// Binds the witness's port `port` (offered to this domain), waiting for the witness to
/// offer it.
fn link(fuzzer: &mut Fuzzer, witness: u64, port: u64) {
    let bind = Call::new(Hypercall::EVENT_CHANNEL_OP, &[event_cmd::BIND_INTERDOMAIN, witness, port]);
    for _ in 0..LINK_ATTEMPTS {
        match fuzzer.issue(bind) {
            Ok(local) => {
                fuzzer.link = Some(local);
                return;
            }
            // Not offered yet.
            Err(Errno::EINVAL) => {
                let _ = HYPERVISOR.yield_now();
            }
            result => {
                fuzzer.fail(&bind, result, "binding the witness's port");
                return;
            }
        }
    }
    fuzzer.reporter.error(format_args!("the witness (d{witness}) never offered port {port}"));
}

fn report(fuzzer: &Fuzzer) {
    let counts = &fuzzer.counts;
    println!(
        "fuzz: {} calls: ok {}, sequences {}, multicalls {}, mmu_update arrays {}, skipped {}",
        counts.calls, counts.ok, counts.sequences, counts.multicalls, counts.batches, counts.skipped
    );
    let mut line = alloc::string::String::from("fuzz: errors");
    for (number, &count) in counts.errors.iter().enumerate().filter(|(_, &count)| count > 0) {
        let name = Errno(number as i64).name().unwrap_or("other");
        line.push_str(&alloc::format!(" {name} {count}"));
    }
    println!("{line}");
    println!("fuzz: seed {} failures {}", fuzzer.seed, fuzzer.failures());
}
