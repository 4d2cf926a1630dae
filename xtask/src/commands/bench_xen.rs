//! The `xen` column of `cargo xtask bench`: tests/xen-guest, the hypervisor rows written
//! against Xen's PV ABI, booted as the 64-bit PV dom0 of Debian's Xen 4.17 (fetched into
//! `target/debian/xen` as for `bench --kernel`) in the same QEMU binary and accelerator,
//! all its rows in one boot. Each of its rows does the work of the ringfence guest of the
//! same wire name; ringfence's median over Xen's is the `ringfence/xen` ratio.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use xtask::accel::Accel;
use xtask::debian::{self, Component};
use xtask::error::EXIT_FAILED;
use xtask::qemu::{self, Launch, Machine};
use xtask::{workspace, Error, Result};

use super::bench::{counted_time_args, missing_rows, parse_bench, GuestBench};
use super::bench_kernel::cpu_model;

/// The rows tests/xen-guest measures, by wire name (the same in both guests). Its
/// `map_batch` includes the TLB flush a PV kernel needs after unmapping (ringfence's
/// unmap flushes); [`NO_FLUSH`] is the same batch without it.
pub const MEASURED: [&str; 7] =
    ["null_hypercall", "time_now", "exception_bounce", "page_fault", "map_batch", "event_loopback", "timer"];

/// xen-guest's map batch without the TLB flush, printed under the table.
pub const NO_FLUSH: &str = "map_batch_noflush";

/// The guest's last line once every row is printed.
const DONE: &str = "xen-guest: done";

/// dom0's memory: big enough for the guest's windows (3 MiB of bss) and Xen's bootstrap
/// tables. Xen's other options are `bench --kernel`'s ([`xtask::linux::xen_options`]):
/// without `bootscrub=0` the timer row's blocked waits woke late behind Xen's idle-loop
/// scrub (medians of 1.6-6 M cycles instead of ~0.3 M under TCG while the first seconds'
/// scrub lasts).
const DOM0_MEMORY: &str = "64M";

/// The machine: Xen needs a PC's firmware (QEMU's multiboot loader), 1 GiB as for
/// `bench --kernel`.
const MACHINE: Machine = Machine::Pc;
const MEMORY: &str = "1G";

/// Xen's boot, ~2 000 iterations of seven rows and the end: ~20 s under TCG on a loaded host.
const TIMEOUT: Duration = Duration::from_secs(600);

/// What the column shows.
#[derive(Debug, PartialEq)]
pub enum XenColumn {
    /// No selected row has a Xen counterpart: not run.
    NotRun,
    /// Xen is not here and could not be fetched, or the guest could not be built:
    /// why (naming the fix) and the bench's exit code (122 for apt-get or Debian's archive
    /// out of reach).
    Missing { reason: String, code: i32 },
    /// It ran, `boots` times (fewer than asked when one failed): its rows (each row's line
    /// from the boot with the lowest median; a failed boot's own), Xen's package and
    /// version, QEMU's command line, and a problem if a boot did not end with [`DONE`] or
    /// a row it should print is missing.
    Ran {
        benches: Vec<GuestBench>,
        package: String,
        command: String,
        wall: Duration,
        boots: u32,
        problem: Option<String>,
    },
}

impl XenColumn {
    /// The guest's line for row `wire`, if Xen measured it.
    pub fn bench(&self, wire: &str) -> Option<&GuestBench> {
        match self {
            XenColumn::Ran { benches, .. } => benches.iter().find(|bench| bench.name == wire),
            _ => None,
        }
    }

    /// The one line under the table saying what the column is, or why it is empty.
    pub fn summary(&self) -> String {
        match self {
            XenColumn::NotRun => "xen: not run (no selected row has a Xen counterpart)".to_string(),
            XenColumn::Missing { reason, .. } => format!("xen: -: {reason}"),
            XenColumn::Ran { package, wall, boots, problem, .. } => {
                let boots = match boots {
                    1 => "one boot".to_string(),
                    boots => format!("{boots} boots, each row's lowest median"),
                };
                let mut line =
                    format!("xen: tests/xen-guest as the PV dom0 of {package}, {boots} ({} ms)", wall.as_millis());
                if self.bench("map_batch").is_some() {
                    line.push_str("; map batch there includes the TLB flush a PV kernel needs");
                    if let Some(bench) = self.bench(NO_FLUSH) {
                        line.push_str(&format!(" (without it: median {})", bench.median));
                    }
                }
                if let Some(problem) = problem {
                    line.push_str(&format!("; problem: {problem}"));
                }
                line
            }
        }
    }

    /// The bench's exit code for this column: 0 if it is fine or was not needed.
    pub fn exit_code(&self) -> i32 {
        match self {
            XenColumn::Missing { code, .. } => *code,
            XenColumn::Ran { problem: Some(_), .. } => EXIT_FAILED,
            _ => 0,
        }
    }

    /// The column as JSON (its rows go into each row's `xen` field).
    pub fn json(&self) -> serde_json::Value {
        match self {
            XenColumn::NotRun => serde_json::json!({ "status": "not run" }),
            XenColumn::Missing { reason, .. } => serde_json::json!({ "status": "missing", "reason": reason }),
            XenColumn::Ran { package, command, wall, boots, problem, .. } => serde_json::json!({
                "status": if problem.is_some() { "failed" } else { "measured" },
                "reason": problem,
                "package": package,
                "qemu_command": command,
                "wall_ms": wall.as_millis() as u64,
                "boots": boots,
                "map_batch_without_flush": self.bench(NO_FLUSH).map(GuestBench::json),
            }),
        }
    }
}

/// Reads a finished run's console: the rows, and what is wrong if it did not end well.
pub fn read_run(output: &str, wanted: &[&str], describe: impl FnOnce() -> String) -> (Vec<GuestBench>, Option<String>) {
    let benches: Vec<GuestBench> = output.lines().filter_map(parse_bench).collect();
    let missing = missing_rows(wanted, &benches);
    let errors: Vec<&str> = output.lines().filter(|line| line.contains("xen-guest: error")).map(str::trim).collect();
    let mut problems = Vec::new();
    if !output.lines().any(|line| line.trim_end() == DONE) {
        problems.push(format!("no '{DONE}' line ({})", describe()));
    }
    problems.extend(errors.iter().map(|line| line.to_string()));
    if !missing.is_empty() {
        problems.push(format!("no line for {}", missing.join(", ")));
    }
    (benches, (!problems.is_empty()).then(|| problems.join("; ")))
}

/// Builds tests/xen-guest (its own workspace, for x86_64-unknown-none) into
/// `target/xen-guest`, and returns the image.
fn build_guest() -> Result<PathBuf> {
    let root = workspace::root();
    let target = root.join("target").join("xen-guest");
    let status = workspace::cargo()
        .current_dir(root.join("tests").join("xen-guest"))
        .env("CARGO_TARGET_DIR", &target)
        .args(["build", "-q", "--release", "--target", "x86_64-unknown-none"])
        .status()
        .map_err(|error| Error::environment(format!("cannot run cargo for tests/xen-guest: {error}")))?;
    if !status.success() {
        return Err(Error::failed(format!("building tests/xen-guest failed ({status})")));
    }
    Ok(target.join("x86_64-unknown-none").join("release").join("xen-guest"))
}

/// The guest's command line (Xen hands dom0 its module's): `iterations=<n>` when the bench
/// was given `--iterations` (every row then makes that many; without it, 2 000 each).
pub fn guest_command_line(iterations: Option<u64>) -> String {
    iterations.map_or(String::new(), |count| format!("iterations={count}"))
}

/// Runs the column if any of `wanted` (selected wire names) is one Xen measures.
pub fn run(
    qemu_binary: &std::path::Path,
    accel: Accel,
    wanted: &[&str],
    iterations: Option<u64>,
    counted: bool,
    boots: u32,
) -> Result<XenColumn> {
    let wanted: Vec<&str> = wanted.iter().copied().filter(|wire| MEASURED.contains(wire)).collect();
    if wanted.is_empty() {
        return Ok(XenColumn::NotRun);
    }
    let xen = match debian::ensure(Component::Xen) {
        Ok(xen) => xen,
        // apt's messages name the fix; an unreachable archive or a missing apt-get is 122.
        Err(error) => {
            let reason = format!("Debian's Xen is not in target/debian and could not be fetched: {}", error.message);
            return Ok(XenColumn::Missing { reason, code: error.exit_code });
        }
    };
    let image = match build_guest() {
        Ok(image) => image,
        Err(error) => return Ok(XenColumn::Missing { reason: error.message, code: error.exit_code }),
    };
    let launch = Launch {
        qemu: qemu_binary.to_path_buf(),
        hypervisor: xen.path.clone(),
        initrd: qemu::multiboot_modules(&[(&image, &guest_command_line(iterations))])?,
        append: xtask::linux::xen_options(DOM0_MEMORY),
        accel,
        machine: MACHINE,
        memory: MEMORY,
        extra: ["-cpu", cpu_model(accel)]
            .map(str::to_string)
            .into_iter()
            .chain(counted_time_args(accel, counted))
            .collect(),
        timeout: TIMEOUT,
    };
    let start = Instant::now();
    let mut runs = super::bench::boot_up_to(
        boots,
        |boot| {
            let of = if boots > 1 { format!(" (boot {boot} of {boots})") } else { String::new() };
            println!("bench: running tests/xen-guest on {} {}{of} ...", xen.package, xen.version);
            // The guest ends with a reboot request, which resets the machine: QEMU (-no-reboot) exits.
            let outcome = super::bench::run_qemu(&launch)?;
            let (benches, failed) = read_run(&outcome.output, &wanted, || outcome.describe(TIMEOUT));
            if let Some(failed) = &failed {
                println!("bench: xen: {failed}; last console lines:");
                let tail: Vec<&str> = outcome.output.lines().rev().take(20).collect();
                for line in tail.iter().rev() {
                    println!("    {line}");
                }
            }
            Ok((benches, failed))
        },
        |(_, failed)| failed.is_some(),
    )?;
    let made = runs.len() as u32;
    // A failed boot is the column's outcome, with the rows it printed.
    let (lines, problem) = match runs.last_mut().and_then(|(_, failed)| failed.take()) {
        Some(problem) => (runs.pop().map(|(benches, _)| vec![benches]).unwrap_or_default(), Some(problem)),
        None => (runs.into_iter().map(|(benches, _)| benches).collect(), None),
    };
    Ok(XenColumn::Ran {
        benches: super::bench::lowest_per_row(lines),
        package: format!("{} {}", xen.package, xen.version),
        command: launch.display(),
        wall: start.elapsed(),
        boots: made,
        problem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use xtask::error::EXIT_ENVIRONMENT;

    const CONSOLE: &str = "(XEN) Xen version 4.17.7\n\
        xen-guest: the ringfence bench rows on Xen\r\n\
        bench null_hypercall median 692 p99 900 iterations 2000\r\n\
        bench: null_hypercall min 600 max 9000\r\n\
        bench map_batch median 2584162 p99 3000000 iterations 2000\r\n\
        bench map_batch_noflush median 2211688 p99 2900000 iterations 2000\r\n\
        xen-guest: done\r\n\
        (XEN) Hardware Dom0 shutdown: rebooting machine\n";

    #[test]
    fn a_finished_run_gives_its_rows() {
        let (benches, problem) = read_run(CONSOLE, &["null_hypercall", "map_batch"], || "ended".into());
        assert_eq!(problem, None);
        let names: Vec<&str> = benches.iter().map(|bench| bench.name.as_str()).collect();
        assert_eq!(names, ["null_hypercall", "map_batch", "map_batch_noflush"]);
        let column = XenColumn::Ran {
            benches,
            package: "xen-hypervisor-4.17-amd64 4.17.7".into(),
            command: "qemu".into(),
            wall: Duration::from_millis(1500),
            boots: 1,
            problem: None,
        };
        assert_eq!(column.bench("null_hypercall").map(|bench| bench.median), Some(692));
        assert_eq!(column.bench("timer"), None);
        assert_eq!(column.exit_code(), 0);
        assert_eq!(
            column.summary(),
            "xen: tests/xen-guest as the PV dom0 of xen-hypervisor-4.17-amd64 4.17.7, one boot (1500 ms); map batch \
             there includes the TLB flush a PV kernel needs (without it: median 2211688)"
        );
        assert_eq!(column.json()["status"], "measured");
        assert_eq!(column.json()["map_batch_without_flush"]["median"], 2_211_688);
    }

    #[test]
    fn an_unfinished_or_incomplete_run_is_a_problem() {
        let cut = CONSOLE.replace("xen-guest: done", "");
        let (benches, problem) = read_run(&cut, &["null_hypercall"], || "QEMU timed out".into());
        assert_eq!(benches.len(), 3, "the rows it printed still count");
        assert_eq!(problem.as_deref(), Some("no 'xen-guest: done' line (QEMU timed out)"));
        let errored = CONSOLE.replace("bench: null", "xen-guest: error: timer: 3 woke early\nbench: null");
        let (_, problem) = read_run(&errored, &["null_hypercall", "timer"], String::new);
        assert_eq!(problem.as_deref(), Some("xen-guest: error: timer: 3 woke early; no line for timer"));
        let column = XenColumn::Ran {
            benches: Vec::new(),
            package: "xen".into(),
            command: String::new(),
            wall: Duration::ZERO,
            boots: 2,
            problem,
        };
        assert_eq!(column.exit_code(), EXIT_FAILED);
        assert_eq!(column.json()["status"], "failed");
        assert_eq!(
            column.summary(),
            "xen: tests/xen-guest as the PV dom0 of xen, 2 boots, each row's lowest median (0 ms); problem: \
             xen-guest: error: timer: 3 woke early; no line for timer",
            "no map batch, no word about its flush"
        );
    }

    #[test]
    fn iterations_reach_the_guest_only_when_asked_for() {
        assert_eq!(guest_command_line(Some(500)), "iterations=500");
        assert_eq!(guest_command_line(None), "");
    }

    #[test]
    fn a_missing_xen_names_the_fix_and_the_exit_code() {
        let column = XenColumn::Missing { reason: "Debian's Xen ...; fix: make apt-get ...".into(), code: 122 };
        assert_eq!(column.summary(), "xen: -: Debian's Xen ...; fix: make apt-get ...");
        assert_eq!(column.exit_code(), EXIT_ENVIRONMENT);
        assert_eq!(column.bench("null_hypercall"), None);
        assert_eq!(column.json()["status"], "missing");
        assert_eq!(XenColumn::NotRun.exit_code(), 0);
    }

    #[test]
    fn only_the_rows_xen_measures_start_it() {
        let none = run(
            std::path::Path::new("/nonexistent/qemu"),
            Accel::Tcg,
            &["user_syscall", "domain_switch"],
            Some(5),
            false,
            3,
        );
        assert_eq!(none.unwrap(), XenColumn::NotRun);
        for wire in MEASURED {
            assert!(super::super::bench::row_wires().contains(&wire), "{wire} is a bench row");
        }
    }
}
