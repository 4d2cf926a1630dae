//! `cargo xtask test --stress [--runs N]`: the conformance suite N times in a row on a
//! machine kept busy on purpose, every failure reported with its case and run.
//!
//! A case that passes on an idle host but fails when the host is busy judges something the
//! hypervisor does not control (host scheduling), or the hypervisor mishandles a slow or
//! preempted platform (a stalled calibration, a late interrupt). Both are bugs; this mode
//! makes them show up. The load is the one a shared CI machine gives: two CPU-bound threads
//! and a parallel cargo build (the workspace, from clean, in a target directory of its
//! own, over and over), all running for the whole series.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use xtask::accel::Accel;
use xtask::junit::{self, Outcome};
use xtask::{workspace, Error, Result};

/// Runs when `--runs` is not given: the bar, ten loaded runs in a row.
pub const DEFAULT_RUNS: u32 = 10;
/// CPU-bound threads of the load.
const SPINNERS: usize = 2;

/// The load: spinning threads and a looping cargo build; everything stops when dropped.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(target_dir: PathBuf) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for _ in 0..SPINNERS {
            let stop = Arc::clone(&stop);
            threads.push(std::thread::spawn(move || {
                let mut value = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..100_000 {
                        value = std::hint::black_box(value.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
                    }
                }
            }));
        }
        let builder_stop = Arc::clone(&stop);
        threads.push(std::thread::spawn(move || build_loop(&target_dir, &builder_stop)));
        Self { stop, threads }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// `cargo clean` then `cargo build --workspace` in `target_dir`, again and again until
/// `stop`; each cargo runs in a process group of its own, so stopping ends its rustc
/// children too.
fn build_loop(target_dir: &Path, stop: &AtomicBool) {
    let command = |arguments: &[&str]| {
        use std::os::unix::process::CommandExt;
        let mut cargo = workspace::cargo();
        cargo.args(arguments).arg("--target-dir").arg(target_dir).arg("--quiet");
        cargo.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        cargo.process_group(0);
        cargo
    };
    let mut builds = 0u32;
    while !stop.load(Ordering::Relaxed) {
        for arguments in [&["clean"][..], &["build", "--workspace"][..]] {
            let Ok(child) = command(arguments).spawn() else {
                eprintln!("xtask test --stress: cannot start cargo for the build load; the load is two threads only");
                return;
            };
            if !wait_or_stop(child, stop) {
                return;
            }
        }
        builds += 1;
    }
    println!("xtask test --stress: the build load completed {builds} clean builds");
}

/// Waits for `child`; if `stop` is set first, ends its process group. Whether it ended by
/// itself.
fn wait_or_stop(mut child: Child, stop: &AtomicBool) -> bool {
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        if stop.load(Ordering::Relaxed) {
            let group = child.id() as libc::pid_t;
            // SAFETY: `kill` with a negative pid signals the process group that
            // `process_group(0)` made for this child alone (its id is the child's pid); it
            // touches no memory.
            unsafe { libc::kill(-group, libc::SIGTERM) };
            let _ = child.wait();
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One failed case of one run.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    /// 1-based run number.
    pub run: u32,
    /// The case's name, or `(suite)` when the run produced no results at all.
    pub case: String,
    /// The failure's first line.
    pub message: String,
}

/// The failures among one run's results, numbered `run`.
pub fn failures(run: u32, suites: &[junit::Suite]) -> Vec<Failure> {
    suites
        .iter()
        .flat_map(|suite| &suite.cases)
        .filter_map(|case| match &case.outcome {
            Outcome::Failed { message, output } => {
                Some(Failure { run, case: case.name.clone(), message: reason(message, output) })
            }
            _ => None,
        })
        .collect()
}

/// The line that says why a case failed: the conformance runner's first line under
/// `seen:` (its message is only the heading `expected:`), else the message.
fn reason(message: &str, output: &str) -> String {
    output
        .split_once("\nseen:\n")
        .and_then(|(_, seen)| seen.lines().next())
        .map(|line| line.trim().to_string())
        .filter(|line| !line.is_empty())
        .unwrap_or_else(|| message.to_string())
}

/// The closing report: one line per failing case with every run it failed in and each
/// message, then the verdict line.
pub fn report(runs: u32, cases_per_run: &[usize], failures: &[Failure]) -> String {
    let mut text = String::new();
    let mut names: Vec<&str> = failures.iter().map(|failure| failure.case.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    for name in &names {
        let of_case: Vec<&Failure> = failures.iter().filter(|failure| failure.case == *name).collect();
        let runs_failed: Vec<String> = of_case.iter().map(|failure| failure.run.to_string()).collect();
        text.push_str(&format!("  {name}: failed in run {} of {runs}\n", runs_failed.join(", ")));
        for failure in of_case {
            text.push_str(&format!("    run {}: {}\n", failure.run, failure.message));
        }
    }
    let clean = (1..=runs).filter(|run| failures.iter().all(|failure| failure.run != *run)).count();
    let total: usize = cases_per_run.iter().sum();
    text.push_str(&format!(
        "xtask test --stress: {runs} loaded runs, {clean} without a failure; {total} case runs, {} failed ({} cases)\n",
        failures.len(),
        names.len()
    ));
    text
}

/// One line of the host's load, for the log (Linux's `/proc/loadavg`).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

/// Runs the conformance suite `runs` times under load (the build is done); fails if any
/// case failed in any run.
pub fn run(runs: u32, accel: Accel, hypervisor: &Path, filters: &[String]) -> Result<u8> {
    let directory = workspace::runs_dir().join("stress");
    // Only this series' results and consoles: not an earlier series' failures.
    if directory.exists() {
        std::fs::remove_dir_all(&directory).map_err(|error| Error::io("cannot empty", &directory, error))?;
    }
    std::fs::create_dir_all(&directory).map_err(|error| Error::io("cannot create", &directory, error))?;
    // The runner is built before the load starts: the first run's timing is then loaded
    // like every other run's, not a build of its own.
    let mut build = workspace::cargo();
    build.args(["build", "--release", "--quiet", "-p", "conformance"]);
    xtask::build::run_cargo(build, "the conformance runner")?;
    println!("xtask test --stress: {runs} runs of the conformance suite under {}, with load: {SPINNERS} CPU-bound threads and a looping `cargo build --workspace` (target/stress-load)", accel.name());
    let load = Load::start(workspace::root().join("target").join("stress-load"));
    let mut all_failures = Vec::new();
    let mut cases_per_run = Vec::new();
    for run in 1..=runs {
        let results = directory.join(format!("run-{run}.json"));
        let _ = std::fs::remove_file(&results);
        let mut suite = workspace::cargo();
        suite.args(["run", "--release", "--quiet", "-p", "conformance", "--", "--accel", accel.name()]);
        suite.arg("--hypervisor").arg(hypervisor).arg("--junit").arg(&results).arg("--quiet");
        suite.args(filters);
        let start = Instant::now();
        println!("xtask test --stress: run {run}/{runs} (load average {})", load_average());
        let status = suite.status().map_err(|error| Error::environment(format!("cannot run cargo: {error}")))?;
        let suites = std::fs::read_to_string(&results)
            .map_err(|error| error.to_string())
            .and_then(|text| junit::suites_from_json(&text));
        let mut found = match suites {
            Ok(suites) => {
                cases_per_run.push(suites.iter().map(|suite| suite.cases.len()).sum());
                keep_consoles(&directory, run, &suites);
                failures(run, &suites)
            }
            Err(problem) => {
                cases_per_run.push(0);
                let message = format!("the runner left no results ({problem}; exit {status})");
                vec![Failure { run, case: "(suite)".into(), message }]
            }
        };
        if found.is_empty() && !status.success() {
            found.push(Failure { run, case: "(suite)".into(), message: format!("the runner exited with {status}") });
        }
        for failure in &found {
            eprintln!("xtask test --stress: run {run}: FAILED {}: {}", failure.case, failure.message);
        }
        println!(
            "xtask test --stress: run {run}/{runs}: {} cases, {} failed, {:.0} s",
            cases_per_run.last().copied().unwrap_or(0),
            found.len(),
            start.elapsed().as_secs_f64()
        );
        all_failures.extend(found);
    }
    drop(load);
    print!("{}", report(runs, &cases_per_run, &all_failures));
    if all_failures.is_empty() {
        Ok(0)
    } else {
        Err(Error::failed(format!(
            "xtask test --stress: {} failures (consoles of failed cases: {})",
            all_failures.len(),
            directory.display()
        )))
    }
}

/// Writes each failed case's console to `run-<n>-<case>.log` (the runner's own log of a
/// case is overwritten by the next run).
fn keep_consoles(directory: &Path, run: u32, suites: &[junit::Suite]) {
    for case in suites.iter().flat_map(|suite| &suite.cases) {
        if let Outcome::Failed { output, .. } = &case.outcome {
            let name: String =
                case.name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '-' }).collect();
            let path = directory.join(format!("run-{run}-{name}.log"));
            if let Err(error) = std::fs::write(&path, output) {
                eprintln!("xtask test --stress: cannot write {}: {error}", path.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use junit::{Suite, TestCase};

    fn suite(outcomes: &[(&str, Option<&str>)]) -> Vec<Suite> {
        let cases = outcomes
            .iter()
            .map(|(name, failure)| TestCase {
                name: name.to_string(),
                time: Duration::ZERO,
                outcome: match failure {
                    None => Outcome::Passed,
                    Some(message) => Outcome::Failed { message: message.to_string(), output: String::new() },
                },
            })
            .collect();
        vec![Suite { name: "conformance (tcg)".into(), cases }]
    }

    #[test]
    fn failures_name_case_and_run() {
        let found = failures(3, &suite(&[("a::b", None), ("timer::cancel", Some("firings 1")), ("c", None)]));
        assert_eq!(found, vec![Failure { run: 3, case: "timer::cancel".into(), message: "firings 1".into() }]);
        assert!(failures(1, &suite(&[("a", None)])).is_empty());
    }

    #[test]
    fn the_reason_is_what_was_seen() {
        let output = "expected:\n    exit status 0\nseen:\n    fair turns: 25 and 22 differ\n    more\ncommand line: x";
        assert_eq!(reason("expected:", output), "fair turns: 25 and 22 differ");
        assert_eq!(reason("timed out after 480 s", "no seen section"), "timed out after 480 s");
    }

    #[test]
    fn report_groups_by_case() {
        let mut found = failures(1, &suite(&[("x", Some("first")), ("y", None)]));
        found.extend(failures(4, &suite(&[("x", Some("second")), ("y", Some("third"))])));
        let text = report(5, &[2, 2, 2, 2, 2], &found);
        assert!(text.contains("  x: failed in run 1, 4 of 5\n    run 1: first\n    run 4: second\n"), "{text}");
        assert!(text.contains("  y: failed in run 4 of 5\n"), "{text}");
        assert!(text.ends_with("5 loaded runs, 3 without a failure; 10 case runs, 3 failed (2 cases)\n"), "{text}");
        let clean = report(2, &[145, 145], &[]);
        assert_eq!(
            clean,
            "xtask test --stress: 2 loaded runs, 2 without a failure; 290 case runs, 0 failed (0 cases)\n"
        );
    }
}
