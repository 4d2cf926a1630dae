//! Conformance cases of hypercall continuations and the zero-length rule (SPEC.md §5.4,
//! §5.5): the `continuation` guest, each sub-case beside a ticker domain with `slice=1`.
//! A long call's case also requires a tick printed while that one call was in progress
//! (between two lines the call itself wrote): the other domain ran, so the call was
//! preempted (and resumed: the guest checks its results). Those judged by the call's
//! length ([`COUNTED_TIME`]) run on QEMU's instruction-counted time under TCG: a host
//! that deschedules QEMU for 10 ms inside a call otherwise ends the call's last slice
//! before the ticker's next turn, and no tick lands inside a call the hypervisor did
//! preempt. On counted time the guest's clock stands still while QEMU does, so slices
//! and ticks measure only the work done.

use crate::cases::{Case, DomainSpec, ImageSource};
use crate::judge::{DomainOutcome, Source, Transcript, Verdict};

/// Sub-cases whose one long hypercall must be preempted.
pub const PREEMPTED: &[&str] = &["multicall", "decrease", "console", "self_unmap"];
/// Sub-cases judged by a tick inside the call or, failing that, the call's own length in
/// the guest's time: they run on instruction-counted time under TCG. The console write is
/// not among them: its cost is the serial port's, in host time (6-23 ms under TCG), and
/// counted time makes it one slice's work with nothing to preempt.
pub const COUNTED_TIME: &[&str] = &["multicall", "decrease", "self_unmap"];
/// Sub-cases with no long call.
pub const OTHER: &[&str] = &["zero_length"];

/// Room for the 1024 gfns `decrease` adds (maxmem) and the batch arrays.
const MEM: &str = "8M,maxmem=12M";

fn guest(args: &[&str]) -> DomainSpec {
    DomainSpec {
        image: "continuation".to_string(),
        source: ImageSource::Bin("continuation"),
        mem: Some(MEM),
        args: args.iter().map(|arg| arg.to_string()).collect(),
        module: None,
        token_options: &[],
        outcome: DomainOutcome::Verdict(Verdict::Success),
    }
}

/// d1's lines strictly between its lines `begins` and `done`, and how many of d2's
/// ticks came in between.
fn between<'a>(transcript: &'a Transcript, begins: &str, done: &str) -> Result<(Vec<&'a str>, usize), String> {
    let lines = &transcript.lines;
    let first = lines
        .iter()
        .position(|line| line.source == Source::Domain(1) && line.text == begins)
        .ok_or_else(|| format!("no (d1) line '{begins}'"))?;
    let last = lines[first + 1..]
        .iter()
        .position(|line| line.source == Source::Domain(1) && line.text == done)
        .map(|offset| first + 1 + offset)
        .ok_or_else(|| format!("no (d1) line '{done}' after '{begins}'"))?;
    let inside = &lines[first + 1..last];
    let own = inside.iter().filter(|line| line.source == Source::Domain(1)).map(|line| line.text.as_str()).collect();
    let ticks = inside
        .iter()
        .filter(|line| line.source == Source::Domain(2) && line.text.starts_with("continuation: tick "))
        .count();
    Ok((own, ticks))
}

/// A tick between the two lines the multicall of sub-case `sub` wrote itself.
fn preempted(transcript: &Transcript, sub: &str) -> Result<(), String> {
    let inside = |what: &str| format!("continuation: {sub} inside {what}");
    let (_, ticks) = between(transcript, &inside("begins"), &inside("done"))?;
    if ticks > 0 {
        return Ok(());
    }
    // A fast host (KVM) may finish the call within the 1 ms slice it started in: nothing
    // to preempt. One that ran past three slices of the guest's time (instruction-counted
    // under TCG) without letting the ticker run held the CPU through a hypercall.
    let took = format!("continuation: {sub} took ");
    let micros = transcript
        .lines
        .iter()
        .filter(|line| line.source == Source::Domain(1))
        .find_map(|line| line.text.strip_prefix(took.as_str())?.strip_suffix(" us")?.parse::<u64>().ok())
        .ok_or(format!("no tick of d2 while d1's {sub} call ran, and no '{took}N us' line"))?;
    if micros <= UNPREEMPTED_MAX_US {
        return Ok(());
    }
    Err(format!("no tick of d2 while d1's {sub} call ran for {micros} us: it was not preempted (slice=1)"))
}

/// The longest a multicall of a sub-case may run without a tick of the other domain:
/// three 1 ms slices.
const UNPREEMPTED_MAX_US: u64 = 3_000;

/// The console write's 4095 digits arrived whole and in order, in however many lines,
/// with a tick inside them (the write was preempted).
fn console_whole(transcript: &Transcript) -> Result<(), String> {
    let (own, _) = between(transcript, "continuation: console begins", "continuation: console done")?;
    // The newline after the bytes is a write of its own: an empty line, not a fragment.
    let own: Vec<&str> = own.into_iter().filter(|text| !text.is_empty()).collect();
    let (Some(first), Some(last)) = (own.first(), own.last()) else {
        return Err("no console bytes between the markers".into());
    };
    if own.len() < 2 {
        return Err("d1's one console write came out in one piece: it was not preempted (slice=1)".into());
    }
    let (_, ticks) = between(transcript, first, last)?;
    if ticks == 0 {
        return Err("no tick of d2 inside the bytes of d1's one console write: it was not preempted (slice=1)".into());
    }
    let joined: String = own.concat();
    let expected: String = (0..4095u32).map(|index| char::from(b'0' + (index % 10) as u8)).collect();
    if joined == expected {
        Ok(())
    } else {
        Err(format!("d1's console bytes between the markers: {} bytes, not the 4095-digit pattern", joined.len()))
    }
}

fn check_for(sub: &str) -> (&'static str, crate::judge::Check) {
    match sub {
        "multicall" => ("a tick while the multicall ran", |t| preempted(t, "multicall")),
        "decrease" => ("a tick while the DECREASE ran", |t| preempted(t, "decrease")),
        "console" => ("the write preempted and whole", console_whole),
        "self_unmap" => ("a tick while the batch ran", |t| preempted(t, "self_unmap")),
        _ => ("every frame returned", crate::cases_memory::frames_returned),
    }
}

/// Every continuation case.
pub fn all() -> Vec<Case> {
    PREEMPTED
        .iter()
        .chain(OTHER)
        .map(|&sub| {
            let domains = vec![guest(&[sub]), guest(&["role=ticker"])];
            let mut case = Case::all_succeed(format!("continuation::{sub}"), domains, check_for(sub));
            if PREEMPTED.contains(&sub) {
                case.expectation.checks.push(("every frame returned", crate::cases_memory::frames_returned));
            }
            case.virtual_time = COUNTED_TIME.contains(&sub);
            case.options = &["slice=1"];
            case
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRANSCRIPT: &str = "(d1) continuation: console begins\n(d2) continuation: tick 3\n(d1) 0123\n\
                              (d2) continuation: tick 4\n(d1) 456789012\n(d1) continuation: console done\n";

    #[test]
    fn ticks_between_the_markers_are_counted() {
        let transcript = Transcript::parse(TRANSCRIPT);
        let markers = ("continuation: console begins", "continuation: console done");
        assert_eq!(between(&transcript, markers.0, markers.1).unwrap(), (vec!["0123", "456789012"], 2));
        // Only the full pattern passes the console check.
        assert!(console_whole(&transcript).unwrap_err().contains("13 bytes"));
        // A tick before the write's first bytes, or after its last, is no proof.
        let before = TRANSCRIPT.replace("(d2) continuation: tick 4\n", "");
        assert!(console_whole(&Transcript::parse(&before)).unwrap_err().contains("not preempted"));
        let after = "(d1) continuation: console begins\n(d1) 0123456789\n(d2) continuation: tick 4\n(d1) \n\
                     (d1) continuation: console done\n";
        assert!(console_whole(&Transcript::parse(after)).unwrap_err().contains("one piece"));
        let inside = "(d1) continuation: multicall inside begins\n(d2) continuation: tick 9\n\
                      (d1) continuation: multicall inside done\n";
        assert!(preempted(&Transcript::parse(inside), "multicall").is_ok());
        let untouched =
            Transcript::parse("(d1) continuation: multicall inside begins\n(d1) continuation: multicall inside done\n");
        assert!(preempted(&untouched, "multicall").unwrap_err().contains("no 'continuation: multicall took N us'"));
        let unmarked = "(d1) continuation: multicall inside begins\n(d1) continuation: multicall inside done\n";
        let long = Transcript::parse(&format!("{unmarked}(d1) continuation: multicall took 3001 us\n"));
        assert!(preempted(&long, "multicall").unwrap_err().contains("ran for 3001 us: it was not preempted"));
        let short = Transcript::parse(&format!("{unmarked}(d1) continuation: multicall took 3000 us\n"));
        assert_eq!(preempted(&short, "multicall"), Ok(()), "within three slices on a fast host");
        assert!(preempted(&untouched, "decrease").unwrap_err().contains("no (d1) line"));
    }

    #[test]
    fn names_are_unique() {
        let cases = all();
        let mut names: Vec<&str> = cases.iter().map(|case| case.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), PREEMPTED.len() + OTHER.len());
    }

    #[test]
    fn every_case_judged_by_time_runs_on_counted_time() {
        for case in all() {
            let sub = case.name.trim_start_matches("continuation::");
            assert_eq!(case.virtual_time, COUNTED_TIME.contains(&sub), "{}", case.name);
            assert!(!case.virtual_time || PREEMPTED.contains(&sub), "{}", case.name);
        }
    }
}
