//! The guide's runs as conformance cases (docs/: the book for guest authors). Every chapter
//! shows one `cargo xtask run` in a `sh` block and the console it prints in the `text`
//! block after it; that command is the case's domains and that output is its judgement,
//! so the book cannot show a run CI does not make nor output CI does not see. In the
//! output, `…` stands for any text (numbers, addresses); every other character must match.
//!
//! The host tests below also hold the book to its listings: every fenced Rust block is an
//! mdBook include of a file in `docs/listings/src/bin` (with an anchor the file has), and
//! every listing is booted by some chapter's run.

use crate::cases::{Case, DomainSpec, ImageSource};
use crate::judge::{DomainOutcome, Source, Transcript};

/// The chapters, by file stem, compiled in (a host test checks this is every chapter
/// file in `docs/src`, and that SUMMARY.md lists each).
pub const CHAPTERS: &[(&str, &str)] = &[
    ("introduction", include_str!("../../docs/src/introduction.md")),
    ("hello", include_str!("../../docs/src/hello.md")),
    ("errors", include_str!("../../docs/src/errors.md")),
    ("events", include_str!("../../docs/src/events.md")),
    ("timers", include_str!("../../docs/src/timers.md")),
    ("memory", include_str!("../../docs/src/memory.md")),
    ("traps", include_str!("../../docs/src/traps.md")),
    ("user", include_str!("../../docs/src/user.md")),
    ("domains", include_str!("../../docs/src/domains.md")),
];

/// Stands for any text in a chapter's output.
pub const ANY: char = '…';

/// A fenced code block of a chapter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// The info string after the opening fence (`rust`, `sh`, `text`, ...).
    pub info: &'static str,
    /// The lines between the fences.
    pub lines: Vec<&'static str>,
    /// 1-based line of the opening fence, for messages.
    pub at: usize,
}

/// The fenced blocks of `markdown`, in order; an unclosed fence is an error.
pub fn blocks(markdown: &'static str) -> Result<Vec<Block>, String> {
    let mut found = Vec::new();
    let mut open: Option<Block> = None;
    for (index, line) in markdown.lines().enumerate() {
        let fence = line.trim_start().strip_prefix("```");
        match (&mut open, fence) {
            (None, Some(info)) => open = Some(Block { info: info.trim(), lines: Vec::new(), at: index + 1 }),
            (Some(_), Some(_)) => found.extend(open.take()),
            (Some(block), None) => block.lines.push(line),
            (None, None) => {}
        }
    }
    match open {
        Some(block) => Err(format!("the fence opened at line {} is never closed", block.at)),
        None => Ok(found),
    }
}

/// One `cargo xtask run` a chapter shows, and the output it shows for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    /// The chapter's file stem.
    pub chapter: &'static str,
    /// `--guest` values, in order: one domain each.
    pub guests: Vec<&'static str>,
    /// `--mem`.
    pub mem: Option<&'static str>,
    /// `--maxmem`.
    pub maxmem: Option<&'static str>,
    /// `--arg` words, for every domain.
    pub args: Vec<&'static str>,
    /// The output lines (`(hv) ...`, `(dN) ...`); a line `…` alone elides lines.
    pub output: Vec<&'static str>,
}

/// Reads the options of a `cargo xtask run` command line the guide may show: those a
/// case can reproduce, and `--accel` (the runner chooses the accelerator for every case).
fn parse_command(chapter: &'static str, command: &'static str) -> Result<Run, String> {
    let mut run = Run { chapter, guests: Vec::new(), mem: None, maxmem: None, args: Vec::new(), output: Vec::new() };
    let mut words = command.split_whitespace().skip(3);
    while let Some(option) = words.next() {
        let mut value = || words.next().ok_or_else(|| format!("{chapter}: `{option}` without a value in `{command}`"));
        match option {
            "--guest" => run.guests.push(value()?),
            "--mem" => run.mem = Some(value()?),
            "--maxmem" => run.maxmem = Some(value()?),
            "--arg" => run.args.push(value()?),
            "--accel" => {
                let accel = value()?;
                if !matches!(accel, "kvm" | "tcg") {
                    return Err(format!("{chapter}: --accel {accel}: expected kvm or tcg"));
                }
            }
            other => {
                return Err(format!("{chapter}: `{other}` in `{command}` is not an option the guide's cases model"))
            }
        }
    }
    if run.guests.is_empty() {
        return Err(format!("{chapter}: `{command}` names no --guest"));
    }
    Ok(run)
}

/// The run a chapter shows, if any: the one `cargo xtask run` line of its `sh` blocks
/// (a `#` comment after it is allowed) and the `text` block right after that block.
pub fn chapter_run(chapter: &'static str, markdown: &'static str) -> Result<Option<Run>, String> {
    let blocks = blocks(markdown).map_err(|why| format!("{chapter}: {why}"))?;
    let mut runs = Vec::new();
    for (index, block) in blocks.iter().enumerate().filter(|(_, block)| block.info == "sh") {
        for line in &block.lines {
            let command = line.split('#').next().unwrap_or_default().trim();
            if !command.starts_with("cargo xtask run") {
                continue;
            }
            let mut run = parse_command(chapter, command)?;
            let output = blocks
                .get(index + 1)
                .filter(|next| next.info == "text")
                .ok_or_else(|| format!("{chapter}: the run at line {} has no ```text block after it", block.at))?;
            run.output = output.lines.iter().map(|line| line.trim_end()).filter(|line| !line.is_empty()).collect();
            runs.push(run);
        }
    }
    match runs.len() {
        0 | 1 => Ok(runs.pop()),
        many => Err(format!("{chapter}: {many} runs; the guide shows one per chapter")),
    }
}

/// Every chapter's run.
pub fn runs() -> Result<Vec<Run>, String> {
    let mut runs = Vec::new();
    for (chapter, markdown) in CHAPTERS {
        runs.extend(chapter_run(chapter, markdown)?);
    }
    Ok(runs)
}

/// True if `line` is `pattern` with each [`ANY`] replaced by some text.
pub fn matches(pattern: &str, line: &str) -> bool {
    let mut parts = pattern.split(ANY);
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = line.strip_prefix(first) else { return false };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else { return rest.is_empty() };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Who printed an output line of the guide, by its prefix.
fn source_of(line: &str) -> Option<Source> {
    if line.starts_with("(hv) ") {
        return Some(Source::Hypervisor);
    }
    let (id, _) = line.strip_prefix("(d")?.split_once(") ")?;
    id.parse().ok().map(Source::Domain)
}

/// The console lines of `source`, re-prefixed as the guide shows them.
fn lines_of(transcript: &Transcript, source: &Source) -> Vec<String> {
    let prefix = match source {
        Source::Hypervisor => "(hv)".to_string(),
        Source::Domain(id) => format!("(d{id})"),
        Source::Other => return Vec::new(),
    };
    transcript
        .lines
        .iter()
        .filter(|line| line.source == *source)
        .map(|line| format!("{prefix} {}", line.text))
        .collect()
}

/// Compares a transcript with the output `run` shows: every shown line matches a whole
/// console line; each domain's lines in the order shown (domains interleave as they are
/// scheduled, and the hypervisor reports their ends as they come, so the order across
/// sources and of the hypervisor's lines is not fixed).
pub fn compare(run: &Run, transcript: &Transcript) -> Result<(), String> {
    let mut problems = Vec::new();
    let mut position: Vec<(Source, usize)> = Vec::new();
    for pattern in run.output.iter().filter(|line| !line.chars().all(|c| c == ANY)) {
        let Some(source) = source_of(pattern) else {
            problems.push(format!("'{pattern}' names no source"));
            continue;
        };
        let lines = lines_of(transcript, &source);
        let ordered = source != Source::Hypervisor;
        let from = if ordered { position.iter().find(|(seen, _)| *seen == source).map_or(0, |(_, at)| *at) } else { 0 };
        match lines.iter().skip(from).position(|line| matches(pattern, line)) {
            Some(offset) if ordered => {
                position.retain(|(seen, _)| *seen != source);
                position.push((source, from + offset + 1));
            }
            Some(_) => {}
            None => problems.push(format!("no console line '{pattern}'{}", if ordered { " (in order)" } else { "" })),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// The check of every guide case: finds the chapter by the images its run started.
fn shown_output(transcript: &Transcript) -> Result<(), String> {
    let started: Vec<String> = transcript.started().into_iter().map(|(_, image)| image).collect();
    let runs = runs()?;
    let run =
        runs.iter().find(|run| run.guests == started).ok_or_else(|| format!("no chapter's run starts {started:?}"))?;
    compare(run, transcript)
}

/// The case of one chapter's run.
fn case_of(run: &Run) -> Case {
    let mem = match (run.mem, run.maxmem) {
        // The case table lives as long as the runner; xtask's Domain writes `mem=` as given,
        // so the quota rides along as the reservation cases do.
        (mem, Some(maxmem)) => Some(&*Box::leak(format!("{},maxmem={maxmem}", mem.unwrap_or("4M")).into_boxed_str())),
        (mem, None) => mem,
    };
    let domains: Vec<DomainSpec> = run
        .guests
        .iter()
        .map(|guest| DomainSpec {
            image: guest.to_string(),
            source: ImageSource::Bin(guest),
            mem,
            args: run.args.iter().map(|arg| arg.to_string()).collect(),
            module: None,
            token_options: &[],
            outcome: DomainOutcome::Started,
        })
        .collect();
    let console_lines = run
        .output
        .iter()
        .map(|line| line.split(ANY).filter(|part| !part.is_empty()).map(str::to_string).collect::<Vec<_>>())
        .filter(|parts| !parts.is_empty())
        .collect();
    let mut case = Case::all_succeed(
        format!("guide::{}", run.chapter),
        domains,
        ("the output the chapter shows, line for line", shown_output),
    );
    case.expectation.console_lines = console_lines;
    // guest-rt's panic handler.
    case.expectation.forbidden = vec!["panic: ".into()];
    case.expectation.checks.push(("every frame returned", crate::cases_memory::frames_returned));
    case
}

/// One case per chapter run. A guide that cannot be read is a case that fails with the
/// reason, so `cargo xtask test` says what is wrong instead of running fewer cases.
pub fn all() -> Vec<Case> {
    match runs() {
        Ok(runs) => runs.iter().map(case_of).collect(),
        Err(why) => {
            eprintln!("conformance: the guide's runs cannot be read: {why}");
            let broken = Run {
                chapter: "unreadable",
                guests: vec!["guide_hello"],
                mem: None,
                maxmem: None,
                args: Vec::new(),
                output: Vec::new(),
            };
            let mut case = case_of(&broken);
            case.expectation.checks = vec![("the guide's runs can be read", shown_output)];
            vec![case]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn docs() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs")
    }

    fn listings() -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(docs().join("listings/src/bin"))
            .expect("docs/listings/src/bin")
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
            .map(|path| path.file_stem().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn every_chapter_file_is_compiled_in_and_in_the_summary() {
        let mut files: Vec<String> = std::fs::read_dir(docs().join("src"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
            .map(|path| path.file_stem().unwrap().to_string_lossy().into_owned())
            .filter(|stem| stem != "SUMMARY")
            .collect();
        files.sort();
        let mut compiled: Vec<String> = CHAPTERS.iter().map(|(stem, _)| stem.to_string()).collect();
        compiled.sort();
        assert_eq!(files, compiled, "docs/src and CHAPTERS disagree");
        let summary = std::fs::read_to_string(docs().join("src/SUMMARY.md")).unwrap();
        for (stem, _) in CHAPTERS {
            assert!(summary.contains(&format!("]({stem}.md)")), "SUMMARY.md does not link {stem}.md");
        }
    }

    /// The guide's Rust is its listings: every Rust block is one include of a listing
    /// file (with an anchor the file defines), and no block hides code under another tag.
    #[test]
    fn every_rust_block_includes_a_listing() {
        let mut includes = 0;
        for (chapter, markdown) in CHAPTERS {
            for block in blocks(markdown).unwrap() {
                let place = format!("{chapter}.md line {}", block.at);
                assert!(matches!(block.info, "rust" | "sh" | "text"), "{place}: fence info '{}'", block.info);
                if block.info != "rust" {
                    continue;
                }
                let [line] = block.lines.as_slice() else { panic!("{place}: a Rust block holds one include line") };
                let target = line
                    .trim()
                    .strip_prefix("{{#include ../listings/src/bin/")
                    .and_then(|rest| rest.strip_suffix("}}"))
                    .unwrap_or_else(|| panic!("{place}: '{line}' is not {{{{#include ../listings/src/bin/<file>}}}}"));
                let (file, anchor) = match target.split_once(':') {
                    Some((file, anchor)) => (file, Some(anchor)),
                    None => (target, None),
                };
                let path = docs().join("listings/src/bin").join(file);
                let source = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("{place}: no listing {file}"));
                if let Some(anchor) = anchor {
                    let at = |marker: &str| {
                        let found: Vec<usize> = source
                            .lines()
                            .enumerate()
                            .filter(|(_, line)| line.trim() == marker)
                            .map(|(index, _)| index)
                            .collect();
                        assert_eq!(found.len(), 1, "{place}: '{marker}' appears {} times in {file}", found.len());
                        found[0]
                    };
                    let (start, end) = (at(&format!("// ANCHOR: {anchor}")), at(&format!("// ANCHOR_END: {anchor}")));
                    assert!(start + 1 < end, "{place}: anchor {anchor} of {file} encloses no line");
                }
                includes += 1;
            }
        }
        assert!(includes >= 8, "the chapters show {includes} listings");
    }

    /// Code can hide outside backtick fences too: in a `~~~` fence or an indented block
    /// (four spaces or a tab after a blank line, CommonMark's indented code).
    #[test]
    fn no_code_outside_backtick_fences() {
        for (chapter, markdown) in CHAPTERS {
            let mut fenced = false;
            let mut previous_blank = true;
            for (index, line) in markdown.lines().enumerate() {
                if line.trim_start().starts_with("```") {
                    fenced = !fenced;
                } else if !fenced {
                    let place = format!("{chapter}.md line {}", index + 1);
                    assert!(!line.trim_start().starts_with("~~~"), "{place}: a ~~~ fence");
                    let indented = line.starts_with("    ") || line.starts_with('\t');
                    assert!(!(indented && previous_blank), "{place}: an indented code block");
                }
                previous_blank = line.trim().is_empty();
            }
        }
    }

    #[test]
    fn every_listing_is_run_by_a_chapter_and_every_run_boots_listings() {
        let runs = runs().unwrap();
        let listings = listings();
        for run in &runs {
            for guest in &run.guests {
                assert!(listings.iter().any(|name| name == guest), "{}: {guest} is not a listing", run.chapter);
            }
            assert!(!run.output.is_empty(), "{}: no output shown", run.chapter);
            for line in &run.output {
                assert!(
                    line.chars().all(|c| c == ANY) || source_of(line).is_some(),
                    "{}: output line '{line}' is not (hv) or (dN)",
                    run.chapter
                );
            }
        }
        for listing in &listings {
            assert!(runs.iter().any(|run| run.guests.contains(&listing.as_str())), "no chapter runs {listing}");
        }
        let mut guest_lists: Vec<&Vec<&str>> = runs.iter().map(|run| &run.guests).collect();
        guest_lists.sort();
        guest_lists.dedup();
        assert_eq!(
            guest_lists.len(),
            runs.len(),
            "two chapters boot the same guests: their cases cannot be told apart"
        );
        assert_eq!(all().len(), runs.len());
    }

    #[test]
    fn wildcards_match_whole_lines() {
        assert!(matches("(d1) a … b", "(d1) a 42 b"));
        assert!(matches("(d1) a…", "(d1) a"));
        assert!(matches("…", "anything"));
        assert!(!matches("(d1) a … b", "(d1) a 42 bc"), "the end is anchored");
        assert!(!matches("(d1) a … b", "x (d1) a 42 b"), "the start is anchored");
        assert!(!matches("(d1) x: 5", "(d1) x: 50"));
        assert!(matches("(d1) …..…", "(d1) 0x1..0x2"));
        assert!(!matches("(d1) ab…ba", "(d1) aba"), "parts do not overlap");
    }

    #[test]
    fn output_is_compared_per_source_in_order() {
        let run = Run {
            chapter: "t",
            guests: vec!["g", "g"],
            mem: None,
            maxmem: None,
            args: Vec::new(),
            output: vec!["(d1) one …", "(d1) two", "(d2) other", "(hv) d2 g: exited", "(hv) d1 g: exited"],
        };
        let good = "(hv) d1 g: exited\n(d2) other\n(d1) one 1\n(d1) noise\n(d1) two\n(hv) d2 g: exited\n";
        assert_eq!(compare(&run, &Transcript::parse(good)), Ok(()));
        let swapped = "(d1) two\n(d1) one 1\n(d2) other\n(hv) d1 g: exited\n(hv) d2 g: exited\n";
        assert!(compare(&run, &Transcript::parse(swapped)).unwrap_err().contains("'(d1) two' (in order)"));
        let wrong_domain = "(d2) one 1\n(d1) two\n(d2) other\n(hv) d1 g: exited\n(hv) d2 g: exited\n";
        assert!(compare(&run, &Transcript::parse(wrong_domain)).is_err());
    }

    #[test]
    fn commands_are_read_or_refused() {
        let run =
            parse_command("c", "cargo xtask run --accel tcg --mem 4M --maxmem 8M --guest a --guest b --arg x").unwrap();
        assert_eq!((run.guests, run.mem, run.maxmem, run.args), (vec!["a", "b"], Some("4M"), Some("8M"), vec!["x"]));
        assert!(parse_command("c", "cargo xtask run --guest a --machine q35").unwrap_err().contains("--machine"));
        assert!(parse_command("c", "cargo xtask run --mem 4M").unwrap_err().contains("no --guest"));
        assert!(parse_command("c", "cargo xtask run --guest").unwrap_err().contains("without a value"));
        let markdown = "```sh\ncargo xtask run --guest a   # boot it\n```\n\n```text\n(d1) hi\n```\n";
        let run = chapter_run("c", markdown).unwrap().unwrap();
        assert_eq!((run.guests, run.output), (vec!["a"], vec!["(d1) hi"]));
        assert!(chapter_run("c", "```sh\ncargo xtask run --guest a\n```\n").unwrap_err().contains("no ```text"));
        assert!(blocks("```rust\nfn x() {}\n").is_err());
    }
}
