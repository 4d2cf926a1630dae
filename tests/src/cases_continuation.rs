//! Conformance cases of hypercall continuations and the zero-length rule (SPEC.md §5.4,
//! §5.5): the `continuation` guest, each sub-case beside a ticker domain with `slice=1`.
//! A long call's case also requires a tick printed while the call was in progress: the
//! other domain ran, so the call was preempted (and resumed: its results are checked).

use crate::cases::{Case, DomainSpec, ImageSource};
use crate::judge::{DomainOutcome, Source, Transcript, Verdict};

/// Sub-cases whose one long hypercall must be preempted.
pub const PREEMPTED: &[&str] = &["multicall", "decrease", "console", "self_unmap"];
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

/// d1's lines strictly between its `continuation: <sub> begins` and `... done` lines,
/// and how many of d2's ticks came in between.
fn between<'a>(transcript: &'a Transcript, sub: &str) -> Result<(Vec<&'a str>, usize), String> {
    let begins = format!("continuation: {sub} begins");
    let done = format!("continuation: {sub} done");
    let lines = &transcript.lines;
    let first = lines
        .iter()
        .position(|line| line.source == Source::Domain(1) && line.text == begins)
        .ok_or_else(|| format!("no (d1) line '{begins}'"))?;
    let last = lines[first..]
        .iter()
        .position(|line| line.source == Source::Domain(1) && line.text == done)
        .map(|offset| first + offset)
        .ok_or_else(|| format!("no (d1) line '{done}' after '{begins}'"))?;
    let inside = &lines[first + 1..last];
    let own = inside.iter().filter(|line| line.source == Source::Domain(1)).map(|line| line.text.as_str()).collect();
    let ticks = inside
        .iter()
        .filter(|line| line.source == Source::Domain(2) && line.text.starts_with("continuation: tick "))
        .count();
    Ok((own, ticks))
}

fn preempted(transcript: &Transcript, sub: &str) -> Result<(), String> {
    let (_, ticks) = between(transcript, sub)?;
    if ticks == 0 {
        return Err(format!("no tick of d2 while d1's {sub} call ran: it was not preempted (slice=1)"));
    }
    Ok(())
}

/// The console write's 4095 digits arrived whole and in order, in however many lines.
fn console_whole(transcript: &Transcript) -> Result<(), String> {
    preempted(transcript, "console")?;
    let (own, _) = between(transcript, "console")?;
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
            case.options = &["slice=1"];
            case
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRANSCRIPT: &str = "(d1) continuation: console begins\n(d1) 0123\n(d2) continuation: tick 4\n\
                              (d1) 456789012\n(d1) continuation: console done\n";

    #[test]
    fn ticks_between_the_markers_are_counted() {
        let transcript = Transcript::parse(TRANSCRIPT);
        assert_eq!(between(&transcript, "console").unwrap(), (vec!["0123", "456789012"], 1));
        assert!(preempted(&transcript, "console").is_ok());
        let untouched = Transcript::parse("(d1) continuation: multicall begins\n(d1) continuation: multicall done\n");
        assert!(preempted(&untouched, "multicall").unwrap_err().contains("not preempted"));
        assert!(preempted(&untouched, "decrease").unwrap_err().contains("no (d1) line"));
        // Only the full pattern passes the console check.
        assert!(console_whole(&transcript).unwrap_err().contains("13 bytes"));
    }

    #[test]
    fn names_are_unique() {
        let cases = all();
        let mut names: Vec<&str> = cases.iter().map(|case| case.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), PREEMPTED.len() + OTHER.len());
    }
}
