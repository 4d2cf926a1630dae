//! guest-kernel's own test suite in `cargo xtask test`: `/tests/run` (in the initramfs:
//! the busybox scripts and the Rust test programs) booted with `cargo xtask run` on the
//! native build and on ringfence, each `ok <case>` / `FAIL <case>: <why>` line a JUnit
//! case; and issue 13's "Done when" command on both builds, which must print 3 and exit 0.
//!
//! A run passes only if it exited 0, reported no FAIL, ended its report with `# tests: all
//! N passed`, N is the number of tests it reported, and every test it was asked for (every
//! script and program in the initramfs, or the smoke list) reported a line: a test that
//! never ran cannot pass unseen.

use super::first_steps::xtask;
use std::time::{Duration, Instant};
use xtask::accel::Accel;
use xtask::junit::{Outcome, Suite, TestCase};
use xtask::{initramfs, userland, Error, Result};

/// The name `cargo xtask test`'s filters select the whole suite by (like a conformance
/// case's name).
pub const SUITE: &str = "guest_kernel::suite";
/// The name of the "Done when" check.
pub const DONE_WHEN: &str = "guest_kernel::done_when";

/// Issue 13's "Done when" command and what it must print.
const DONE_WHEN_COMMAND: [&str; 3] = ["sh", "-c", "for i in 1 2 3; do echo $i; done | wc -l"];
const DONE_WHEN_OUTPUT: &str = "3";

/// The tests the KVM smoke run asks `/tests/run` for: on a kvm-pvm host (~1 ms a guest
/// trap) these took 31 s on ringfence and 19 s natively (the "Done when" command 18 s and
/// 4 s), where the whole suite took 4.6 and 7.5 minutes. Pipes, fork/wait and signals: the paths where the platforms differ
/// most (page faults and copy-on-write, blocking and wake-ups, signal frames).
pub const SMOKE_TESTS: &[&str] = &["test-pipe", "test-fork", "test-signal"];

/// The last line of `/tests/run`'s report.
const SUMMARY_PREFIX: &str = "# tests: ";

/// One of guest-kernel's two builds.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Build {
    /// On bare (virtual) hardware: `cargo xtask run --native`.
    Native,
    /// A ringfence domain: `cargo xtask run`.
    Paravirt,
}

impl Build {
    /// Both, in the order they run.
    pub const ALL: [Build; 2] = [Build::Native, Build::Paravirt];

    fn name(self) -> &'static str {
        match self {
            Build::Native => "native",
            Build::Paravirt => "paravirt",
        }
    }

    /// The `cargo xtask run` options that select it.
    fn options(self) -> &'static [&'static str] {
        match self {
            Build::Native => &["--native"],
            Build::Paravirt => &[],
        }
    }

    /// What the console puts before the kernel's own lines: the hypervisor prefixes a
    /// domain's lines with its id (the only domain is d1); natively they come bare.
    fn prefix(self) -> &'static str {
        match self {
            Build::Native => "",
            Build::Paravirt => "(d1) ",
        }
    }
}

/// How much of the suite runs.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every script and program.
    Full,
    /// [`SMOKE_TESTS`] only.
    Smoke,
}

/// The bound of one run, far above what it takes (under TCG the whole suite takes about
/// 15 s; on a kvm-pvm host it takes minutes, the smoke list under one).
fn timeout(accel: Accel, scope: Scope) -> u64 {
    match (accel, scope) {
        (Accel::Kvm, Scope::Full) => 1800,
        (Accel::Tcg, Scope::Full) | (_, Scope::Smoke) => 300,
    }
}

/// The "Done when" command's bound: one boot and a pipeline (20 s on a kvm-pvm host).
const DONE_WHEN_TIMEOUT: u64 = 180;

/// A failed test: why, and the lines it printed after its FAIL line (a script's diff).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    why: String,
    detail: Vec<String>,
}

/// What one `/tests/run` printed, and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// Every `ok`/`FAIL` line's case, in order.
    pub cases: Vec<(String, Option<Failure>)>,
    /// The `# tests:` line, without its prefix.
    pub summary: Option<String>,
    /// Every reason the run failed; none: it passed.
    pub problems: Vec<String>,
}

/// The kernel's lines of `console`: those starting with `prefix`, without it.
fn guest_lines<'a>(console: &'a str, prefix: &'a str) -> impl Iterator<Item = &'a str> {
    console.lines().filter_map(move |line| line.trim_end_matches('\r').strip_prefix(prefix))
}

/// A top-level test's line names it `script NAME` or `program NAME`; a program's own
/// cases are `program.case`.
fn top_level(name: &str) -> Option<&str> {
    name.strip_prefix("script ").or_else(|| name.strip_prefix("program "))
}

/// Reads `/tests/run`'s report from `console` and judges it: `expected` are the tests it
/// was asked for (script or program names), `exit_code` is `cargo xtask run`'s.
pub fn read_report(console: &str, prefix: &str, expected: &[String], exit_code: Option<i32>) -> Report {
    let mut cases: Vec<(String, Option<Failure>)> = Vec::new();
    let mut summary: Option<(usize, String)> = None;
    let mut problems = Vec::new();
    let mut last_case_at = 0;
    let mut detail_open = false;
    for (index, line) in guest_lines(console, prefix).enumerate() {
        if let Some(name) = line.strip_prefix("ok ") {
            cases.push((name.to_string(), None));
            last_case_at = index;
            detail_open = false;
        } else if let Some(rest) = line.strip_prefix("FAIL ") {
            let (name, why) = rest.split_once(": ").unwrap_or((rest, "no reason given"));
            cases.push((name.to_string(), Some(Failure { why: why.to_string(), detail: Vec::new() })));
            last_case_at = index;
            detail_open = true;
        } else if let Some(text) = line.strip_prefix(SUMMARY_PREFIX) {
            if summary.is_some() {
                problems.push(format!("a second '{SUMMARY_PREFIX}' line: '{line}'"));
            }
            summary = Some((index, text.to_string()));
            detail_open = false;
        } else if line.starts_with("# ") {
            detail_open = false;
        } else if detail_open {
            if let Some((_, Some(failure))) = cases.last_mut() {
                failure.detail.push(line.to_string());
            }
        }
    }
    if exit_code != Some(0) {
        let shown = exit_code.map_or_else(|| "no exit code (killed by a signal)".to_string(), |code| code.to_string());
        problems.push(format!("cargo xtask run exited with {shown}, not 0"));
    }
    let failed: Vec<&str> =
        cases.iter().filter(|(_, failure)| failure.is_some()).map(|(name, _)| name.as_str()).collect();
    if !failed.is_empty() {
        problems.push(format!("{} failed: {}", failed.len(), failed.join(", ")));
    }
    let reported: Vec<&str> = cases.iter().filter_map(|(name, _)| top_level(name)).collect();
    match &summary {
        None => problems.push(format!("no '{SUMMARY_PREFIX}' line: the run ended before its report did")),
        Some((at, _)) if *at < last_case_at => {
            problems.push(format!("the '{SUMMARY_PREFIX}' line is not the report's last"))
        }
        Some((_, text)) => {
            let count = text.strip_prefix("all ").and_then(|rest| rest.strip_suffix(" passed"));
            match count.and_then(|count| count.parse::<usize>().ok()) {
                Some(count) if count == reported.len() && count > 0 => {}
                Some(count) => problems.push(format!(
                    "the report says {count} passed but names {} tests passing or failing",
                    reported.len()
                )),
                None if failed.is_empty() => problems.push(format!("the report ends '{SUMMARY_PREFIX}{text}'")),
                None => {}
            }
        }
    }
    let missing: Vec<&str> = expected.iter().map(String::as_str).filter(|name| !reported.contains(name)).collect();
    if !missing.is_empty() {
        problems.push(format!("no line for {}", missing.join(", ")));
    }
    Report { cases, summary: summary.map(|(_, text)| text), problems }
}

/// Whether `console`'s kernel lines include one that is exactly [`DONE_WHEN_OUTPUT`].
fn printed_done_when_output(console: &str, prefix: &str) -> bool {
    guest_lines(console, prefix).any(|line| line == DONE_WHEN_OUTPUT)
}

/// The tests a full run must report: every script `/tests/NAME.sh` of the root file
/// system and every test program of the userland.
fn every_test() -> Result<Vec<String>> {
    let tests_dir = initramfs::rootfs_dir().join("tests");
    let entries = std::fs::read_dir(&tests_dir).map_err(|error| Error::io("cannot list", &tests_dir, error))?;
    let mut names = Vec::new();
    for entry in entries {
        let path = entry.map_err(|error| Error::io("cannot list", &tests_dir, error))?.path();
        if path.extension().is_some_and(|extension| extension == "sh") {
            if let Some(stem) = path.file_stem() {
                names.push(stem.to_string_lossy().into_owned());
            }
        }
    }
    names.sort();
    names.extend(userland::build()?.test_programs);
    Ok(names)
}

/// One build's results: its JUnit suite, and whether everything passed.
struct Outcomes {
    suite: Suite,
    passed: bool,
}

/// `/tests/run` (all of it, or the smoke list) on `build` under `accel`.
fn run_suite(build: Build, accel: Accel, scope: Scope, suite: &mut Suite) -> Result<bool> {
    let expected = match scope {
        Scope::Full => every_test()?,
        Scope::Smoke => SMOKE_TESTS.iter().map(|name| name.to_string()).collect(),
    };
    let mut args: Vec<String> =
        ["run", "--accel", accel.name(), "--timeout"].iter().map(|arg| arg.to_string()).collect();
    args.push(timeout(accel, scope).to_string());
    args.extend(build.options().iter().map(|option| option.to_string()));
    args.push("--".into());
    args.push(initramfs::TEST_RUNNER.into());
    if scope == Scope::Smoke {
        args.extend(expected.iter().cloned());
    }
    let shown = format!("cargo xtask {}", args.join(" "));
    println!("xtask test: guest-kernel {} under {}: {shown}", build.name(), accel.name());
    let started = Instant::now();
    let arguments: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, console) = xtask(&arguments, &[]).map_err(Error::environment)?;
    let wall = started.elapsed();
    let report = read_report(&console, build.prefix(), &expected, code);
    for (name, failure) in &report.cases {
        let outcome = match failure {
            None => Outcome::Passed,
            Some(failure) => {
                let mut output = format!("FAIL {name}: {}\n", failure.why);
                for line in &failure.detail {
                    output.push_str(line);
                    output.push('\n');
                }
                Outcome::Failed { message: failure.why.clone(), output }
            }
        };
        suite.cases.push(TestCase { name: name.clone(), time: Duration::ZERO, outcome });
    }
    let tests = report.cases.iter().filter(|(name, _)| top_level(name).is_some()).count();
    let summary = report.summary.as_deref().unwrap_or("no summary");
    let passed = report.problems.is_empty();
    let verdict = if passed {
        println!(
            "xtask test: guest-kernel {} under {}: passed: {} cases in {tests} tests ({summary}), {:.1} s",
            build.name(),
            accel.name(),
            report.cases.len(),
            wall.as_secs_f64()
        );
        Outcome::Passed
    } else {
        eprintln!("{console}");
        let problems = report.problems.join("; ");
        eprintln!(
            "error: guest-kernel {} under {}: {problems} ({:.1} s; its console is above)",
            build.name(),
            accel.name(),
            wall.as_secs_f64()
        );
        Outcome::Failed { message: problems, output: format!("{shown}\n{console}") }
    };
    suite.cases.push(TestCase { name: initramfs::TEST_RUNNER.to_string(), time: wall, outcome: verdict });
    Ok(passed)
}

/// Issue 13's "Done when" command on `build` under `accel`.
fn run_done_when(build: Build, accel: Accel, suite: &mut Suite) -> Result<bool> {
    let mut args: Vec<&str> = vec!["run", "--accel", accel.name(), "--timeout"];
    let bound = DONE_WHEN_TIMEOUT.to_string();
    args.push(&bound);
    args.extend(build.options());
    args.push("--");
    args.extend(DONE_WHEN_COMMAND);
    // As a user types it: the options, then the command with its script quoted.
    let options = &args[..args.len() - DONE_WHEN_COMMAND.len() - 1];
    let shown = format!("cargo xtask {} -- sh -c '{}'", options.join(" "), DONE_WHEN_COMMAND[2]);
    println!("xtask test: guest-kernel {} under {}: {shown}", build.name(), accel.name());
    let started = Instant::now();
    let (code, console) = xtask(&args, &[]).map_err(Error::environment)?;
    let wall = started.elapsed();
    let printed = printed_done_when_output(&console, build.prefix());
    let outcome = if code == Some(0) && printed {
        println!(
            "xtask test: guest-kernel {} under {}: printed {DONE_WHEN_OUTPUT} and exited 0, {:.1} s",
            build.name(),
            accel.name(),
            wall.as_secs_f64()
        );
        Outcome::Passed
    } else {
        let message = format!(
            "exited with {code:?} (expected Some(0)), {} a line '{DONE_WHEN_OUTPUT}'",
            if printed { "printed" } else { "did not print" }
        );
        eprintln!("{console}");
        eprintln!("error: guest-kernel {} under {}: {shown}: {message}", build.name(), accel.name());
        Outcome::Failed { message, output: format!("{shown}\n{console}") }
    };
    let passed = outcome == Outcome::Passed;
    suite.cases.push(TestCase { name: DONE_WHEN.to_string(), time: wall, outcome });
    Ok(passed)
}

/// Runs what `filters` select (everything without filters) on `build` under `accel`.
fn run_build(build: Build, accel: Accel, scope: Scope, filters: &[String]) -> Result<Outcomes> {
    let selected = |name: &str| filters.is_empty() || filters.iter().any(|filter| name.contains(filter.as_str()));
    let what = match scope {
        Scope::Full => accel.name().to_string(),
        Scope::Smoke => format!("{} smoke", accel.name()),
    };
    let mut suite = Suite { name: format!("guest-kernel {} ({what})", build.name()), cases: Vec::new() };
    let mut passed = true;
    if selected(SUITE) {
        passed &= run_suite(build, accel, scope, &mut suite)?;
    }
    if selected(DONE_WHEN) {
        passed &= run_done_when(build, accel, &mut suite)?;
    }
    Ok(Outcomes { suite, passed })
}

/// Runs the suite on both builds; returns the failed stages' names and the JUnit suites
/// (none when the filters select nothing here).
pub fn run(accel: Accel, scope: Scope, filters: &[String]) -> Result<(Vec<&'static str>, Vec<Suite>)> {
    let mut failed = Vec::new();
    let mut suites = Vec::new();
    for build in Build::ALL {
        let outcomes = run_build(build, accel, scope, filters)?;
        if outcomes.suite.cases.is_empty() {
            continue;
        }
        if !outcomes.passed {
            failed.push(match (build, scope) {
                (Build::Native, Scope::Full) => "guest-kernel suite, native build",
                (Build::Paravirt, Scope::Full) => "guest-kernel suite, paravirt build",
                (Build::Native, Scope::Smoke) => "guest-kernel kvm smoke, native build",
                (Build::Paravirt, Scope::Smoke) => "guest-kernel kvm smoke, paravirt build",
            });
        }
        suites.push(outcomes.suite);
    }
    Ok((failed, suites))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(items: &[&str]) -> Vec<String> {
        items.iter().map(|item| item.to_string()).collect()
    }

    const PASSING: &str = "\
qemu: accelerator tcg (as requested)\n\
(hv) d1 guest-kernel: started\n\
(d1) guest-kernel 0.1.0: paravirtualized on ringfence\r\n\
(d1) ok script pipeline\r\n\
(d1) ok fork.exit_codes\r\n\
(d1) # fork: all 1 cases passed\r\n\
(d1) ok program test-fork\r\n\
(d1) # tests: all 2 passed\r\n\
(hv) d1 guest-kernel: exited: poweroff code 0\n";

    #[test]
    fn a_passing_report_has_every_case() {
        let report = read_report(PASSING, "(d1) ", &names(&["pipeline", "test-fork"]), Some(0));
        assert_eq!(report.problems, Vec::<String>::new());
        let cases: Vec<&str> = report.cases.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(cases, ["script pipeline", "fork.exit_codes", "program test-fork"]);
        assert_eq!(report.summary.as_deref(), Some("all 2 passed"));
        let native = PASSING.replace("(d1) ", "");
        assert_eq!(read_report(&native, "", &names(&["test-fork"]), Some(0)).problems, Vec::<String>::new());
    }

    #[test]
    fn failures_keep_their_reason_and_detail() {
        let console = PASSING
            .replace(
                "(d1) ok script pipeline\r\n",
                "(d1) FAIL script pipeline: output differs:\r\n(d1) 1c1\r\n(d1) < 3\r\n",
            )
            .replace("all 2 passed", "1 of 2 failed: pipeline");
        let report = read_report(&console, "(d1) ", &[], Some(1));
        let failure = report.cases[0].1.clone().unwrap();
        assert_eq!(failure.why, "output differs:");
        assert_eq!(failure.detail, ["1c1", "< 3"]);
        assert_eq!(report.problems, ["cargo xtask run exited with 1, not 0", "1 failed: script pipeline"]);
    }

    #[test]
    fn a_failure_fails_even_with_a_clean_exit_and_summary() {
        let console = PASSING.replace("ok fork.exit_codes", "FAIL fork.exit_codes: got 1, expected 0");
        let report = read_report(&console, "(d1) ", &[], Some(0));
        assert_eq!(report.problems, ["1 failed: fork.exit_codes"]);
    }

    #[test]
    fn an_unfinished_run_fails() {
        let cut = PASSING.replace("(d1) # tests: all 2 passed\r\n", "");
        let report = read_report(&cut, "(d1) ", &[], Some(124));
        assert_eq!(
            report.problems,
            ["cargo xtask run exited with 124, not 0", "no '# tests: ' line: the run ended before its report did"]
        );
        assert!(!read_report(PASSING, "(d1) ", &[], None).problems.is_empty(), "killed by a signal");
    }

    #[test]
    fn the_summary_must_be_last_and_agree() {
        let early = PASSING
            .replace("(d1) ok program test-fork\r\n", "")
            .replace("(d1) # tests: all 2 passed\r\n", "(d1) # tests: all 2 passed\r\n(d1) ok program test-fork\r\n");
        assert_eq!(
            read_report(&early, "(d1) ", &[], Some(0)).problems,
            ["the '# tests: ' line is not the report's last"]
        );
        let miscounted = PASSING.replace("all 2 passed", "all 3 passed");
        assert_eq!(
            read_report(&miscounted, "(d1) ", &[], Some(0)).problems,
            ["the report says 3 passed but names 2 tests passing or failing"]
        );
        let odd = PASSING.replace("all 2 passed", "something else");
        assert_eq!(read_report(&odd, "(d1) ", &[], Some(0)).problems, ["the report ends '# tests: something else'"]);
        let twice = PASSING
            .replace("(d1) # tests: all 2 passed\r\n", "(d1) # tests: all 2 passed\r\n(d1) # tests: all 2 passed\r\n");
        assert_eq!(read_report(&twice, "(d1) ", &[], Some(0)).problems.len(), 1);
        let empty = "(d1) # tests: all 0 passed\n";
        assert!(!read_report(empty, "(d1) ", &[], Some(0)).problems.is_empty(), "nothing ran");
    }

    #[test]
    fn a_test_that_never_ran_fails() {
        let report = read_report(PASSING, "(d1) ", &names(&["pipeline", "test-fork", "test-pipe"]), Some(0));
        assert_eq!(report.problems, ["no line for test-pipe"]);
    }

    #[test]
    fn other_domains_and_the_hypervisor_are_not_the_kernel() {
        let console = format!("{PASSING}(d2) FAIL other: not ours\n(hv) ok nothing\n");
        assert_eq!(read_report(&console, "(d1) ", &[], Some(0)).problems, Vec::<String>::new());
    }

    #[test]
    fn the_done_when_output_is_a_whole_line() {
        assert!(printed_done_when_output("(d1) guest-kernel\r\n(d1) 3\r\n", "(d1) "));
        assert!(printed_done_when_output("guest-kernel\n3\nnative: power off, code 0\n", ""));
        assert!(!printed_done_when_output("(d1) 30\n(d1)  3\n", "(d1) "));
        assert!(!printed_done_when_output("(d2) 3\n", "(d1) "));
    }
}
