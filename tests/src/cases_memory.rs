//! Conformance cases of the memory ABI (SPEC.md §12–§13): the `map`, `map_fault`,
//! `memory`, `reservation`, `multicall` and `fault_loop` guests, one case per sub-case.
//! Every case also checks that the hypervisor got back every frame it handed out
//! (`frames free A at start, B at end` with A = B).

use crate::cases::{Case, DomainSpec, ImageSource};
use crate::judge::{DomainOutcome, Transcript, Verdict};

/// Sub-cases of the `map` guest.
pub const MAP: &[&str] = &["alias", "errors", "overlap", "batch_limit", "long_batch", "done_fault", "protect"];
/// Sub-cases of the `map_fault` guest.
pub const MAP_FAULT: &[&str] = &["readonly", "unmapped", "no_execute"];
/// Sub-cases of the `memory` guest.
pub const MEMORY: &[&str] = &["query", "destroy", "exhaust", "switch", "flush"];
/// Sub-cases of the `reservation` guest.
pub const RESERVATION: &[&str] = &["counts", "quota", "zeroed", "errors", "decrease_mapped", "large"];
/// Sub-cases of the `multicall` guest.
pub const MULTICALL: &[&str] = &["several", "iret", "nested", "count", "bad_array", "yield"];

/// `mem=` of the `map` guest: 1025 pages, so MAXIMUM_GFN (rounded up to 512) leaves
/// never-populated gfns below it.
const MAP_MEM: &str = "4100K";
/// `mem=` and `maxmem=` of the `reservation` guest: room for 1024 more pages, including
/// one free 512-aligned block for a 2 MiB extent. (xtask's `Domain` has no `maxmem`
/// field; the token is written verbatim after `mem=`.)
const RESERVATION_MEM: &str = "4M,maxmem=8M";

/// The hypervisor's summary says as many frames are free at the end as at the start.
pub fn frames_returned(transcript: &Transcript) -> Result<(), String> {
    let (start, end) = crate::cases_events::summary_numbers(transcript, "frames free ")
        .ok_or("no (hv) line says 'frames free A at start, B at end'")??;
    if start == end {
        Ok(())
    } else {
        Err(format!("frames free {start} at start but {end} at end: {} frames leaked", start as i128 - end as i128))
    }
}

fn guest(bin: &'static str, mem: Option<&'static str>, args: &[&str]) -> DomainSpec {
    DomainSpec {
        image: bin.to_string(),
        source: ImageSource::Bin(bin),
        mem,
        args: args.iter().map(|arg| arg.to_string()).collect(),
        module: None,
        token_options: &[],
        outcome: DomainOutcome::Verdict(Verdict::Success),
    }
}

fn case(name: String, domains: Vec<DomainSpec>) -> Case {
    Case::all_succeed(name, domains, ("every frame returned", frames_returned))
}

/// Every memory case, in order.
pub fn all() -> Vec<Case> {
    let mut cases = Vec::new();
    let groups: [(&str, &[&str], Option<&'static str>); 5] = [
        ("map", MAP, Some(MAP_MEM)),
        ("map_fault", MAP_FAULT, None),
        ("memory", MEMORY, None),
        ("reservation", RESERVATION, Some(RESERVATION_MEM)),
        ("multicall", MULTICALL, None),
    ];
    for (bin, subs, mem) in groups {
        for &sub in subs {
            let mut domains = vec![guest(bin, mem, &[sub])];
            if bin == "multicall" && sub == "yield" {
                // Someone to yield to.
                domains.push(guest("companion", None, &[]));
            }
            cases.push(case(format!("{bin}::{sub}"), domains));
        }
    }
    let mut loop_case = case("fault_loop::100k".into(), vec![guest("fault_loop", None, &["100000"])]);
    loop_case.expectation.console_lines.push(vec!["(d1) fault_loop: 100000 faults handled".into()]);
    // Three host round trips per fault on a PVM-based KVM host (~5 ms): about 9 minutes.
    loop_case.minimum_timeout = Some(std::time::Duration::from_secs(1200));
    cases.push(loop_case);
    cases.push(case("fault_loop::1k".into(), vec![guest("fault_loop", None, &["1000"])]));
    cases
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_summary_is_parsed() {
        let good = "(hv) summary: 1 domains: 1 poweroff, 0 crash, 0 killed, 0 refused; frames free 1200 at start, 1200 at end\n";
        assert_eq!(frames_returned(&Transcript::parse(good)), Ok(()));
        let leak = good.replace("1200 at end", "1197 at end");
        assert_eq!(
            frames_returned(&Transcript::parse(&leak)).unwrap_err(),
            "frames free 1200 at start but 1197 at end: 3 frames leaked"
        );
        assert!(frames_returned(&Transcript::parse("(hv) summary: nothing\n")).is_err());
    }

    #[test]
    fn names_are_unique() {
        let cases = all();
        let mut names: Vec<&str> = cases.iter().map(|case| case.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), cases.len());
        assert_eq!(cases.len(), MAP.len() + MAP_FAULT.len() + MEMORY.len() + RESERVATION.len() + MULTICALL.len() + 2);
    }
}
