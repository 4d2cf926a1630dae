//! `cargo xtask bench --kernel`: the lmbench program (guest-kernel/user) on four stacks in
//! one run, side by side — Debian's Linux 6.1 natively (`linux-native`) and as Xen 4.17's
//! PV dom0 (`linux-xen`), guest-kernel's native build (`native`) and guest-kernel on
//! ringfence (`ringfence`) — with Linux's PV tax (`xen/native`) beside ours
//! (`ringfence/native`) and issue 14's two goals judged on every row.
//!
//! Every column boots in the same QEMU machine ([`MACHINE`], [`MEMORY`], the CPU model of
//! [`cpu_model`]), one after the other, each with its own timeout: a column that cannot be
//! fetched, does not boot or does not finish is shown as `-` with its reason, and the rest
//! of the table is still printed (the exit code then says what went wrong).

use super::bench;
use std::path::{Path, PathBuf};
use std::time::Duration;
use xtask::accel::{self, Accel};
use xtask::cmdline::{self, Domain};
use xtask::debian::{self, Component, Fetched};
use xtask::error::{EXIT_ENVIRONMENT, EXIT_FAILED, EXIT_NO_ENDING, EXIT_QEMU_REFUSED, EXIT_TIMEOUT};
use xtask::lmbench::{self, Report, Row, Sample};
use xtask::qemu::{self, Launch, Machine, RunOutcome};
use xtask::{archive, build, initramfs, kernel_args, linux, native, workspace, Error, Result};

/// The machine every column runs on: Xen needs a PC with firmware (QEMU's multiboot
/// loader), and `pc` is where the issue measured Xen.
const MACHINE: Machine = Machine::Pc;
/// The machine's memory in every column (Xen gives dom0 512 MiB of it; a ringfence domain
/// gets guest-kernel's usual [`kernel_args::MEMORY`]).
const MEMORY: &str = "1G";

/// The CPU model of every column: under TCG everything QEMU emulates but SMAP (with SMAP
/// on, Xen's PV bounce frames fault under TCG, so Linux-on-Xen cannot run), under KVM the
/// project's host model.
pub fn cpu_model(accel: Accel) -> &'static str {
    match accel {
        Accel::Tcg => "max,-smap",
        Accel::Kvm => accel::KVM_CPU,
    }
}

/// The QEMU arguments after xtask's own that make a column's machine the same as the
/// others' (QEMU takes the last `-cpu`; the memory is the launch's, [`MEMORY`]).
fn machine_args(accel: Accel) -> Vec<String> {
    ["-cpu", cpu_model(accel)].map(str::to_string).into()
}

/// The options of `cargo xtask bench --kernel`.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Accelerator (`None`: the project's choice).
    pub accel: Option<Accel>,
    /// `--iterations` for lmbench (`None`: its default).
    pub iterations: Option<u64>,
    /// `--row` words: rows whose wire name contains one.
    pub rows: Vec<String>,
    /// Where to write the JSON report.
    pub json: Option<PathBuf>,
    /// Seconds each column may take (`None`: [`default_timeout`]).
    pub timeout: Option<u64>,
    /// Every column on QEMU's instruction-counted time: figures in instructions.
    pub counted: bool,
    /// Boots of every column (`None`: [`bench::default_boots`]).
    pub boots: Option<u32>,
}

/// A column of the table.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Column {
    /// Debian's Linux on the virtual machine.
    LinuxNative,
    /// The same Linux as Xen's dom0.
    LinuxXen,
    /// guest-kernel's native build.
    Native,
    /// guest-kernel on ringfence.
    Ringfence,
}

impl Column {
    /// The name in the table.
    pub fn name(self) -> &'static str {
        match self {
            Column::LinuxNative => "linux-native",
            Column::LinuxXen => "linux-xen",
            Column::Native => "native",
            Column::Ringfence => "ringfence",
        }
    }
}

/// How long one column may run: under TCG the slowest (Linux on Xen) boots in ~15 s and
/// runs lmbench's default iterations in a few minutes; a kvm-pvm host pays ~1 ms per trap.
pub fn default_timeout(accel: Accel) -> Duration {
    match accel {
        Accel::Tcg => Duration::from_secs(900),
        Accel::Kvm => Duration::from_secs(1800),
    }
}

/// How a column ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Every selected row measured.
    Measured,
    /// Not run: what it needs could not be had (the reason names the fix).
    Skipped(String),
    /// Run, and it failed: why, and the exit code it gives the bench.
    Failed(String, i32),
}

/// One column's run.
#[derive(Clone, Debug)]
pub struct ColumnRun {
    /// Which column.
    pub column: Column,
    /// How it ended.
    pub status: Status,
    /// The rows it printed (kept even when it failed later).
    pub report: Report,
    /// QEMU's command line, if it ran.
    pub command: Option<String>,
    /// QEMU's wall time, if it ran.
    pub wall: Option<Duration>,
    /// The console, if it ran (of its first boot).
    pub console: String,
    /// Every boot's median of each row, by wire name, in boot order ([`best_of`]).
    pub boot_medians: Vec<(String, Vec<u64>)>,
}

impl ColumnRun {
    fn skipped(column: Column, reason: String) -> ColumnRun {
        let report = Report::default();
        let status = Status::Skipped(reason);
        ColumnRun {
            column,
            status,
            report,
            command: None,
            wall: None,
            console: String::new(),
            boot_medians: Vec::new(),
        }
    }

    /// Every boot's median of row `wire`.
    fn boot_medians(&self, wire: &str) -> &[u64] {
        self.boot_medians.iter().find(|(name, _)| name == wire).map_or(&[], |(_, medians)| medians)
    }

    /// The median of row `wire`, if the column measured it.
    fn median(&self, wire: &str) -> Option<u64> {
        self.report.sample(wire).map(|sample| sample.median)
    }
}

/// One row's four medians (`None`: not measured).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Medians {
    /// Linux natively.
    pub linux_native: Option<u64>,
    /// Linux on Xen.
    pub linux_xen: Option<u64>,
    /// guest-kernel natively.
    pub native: Option<u64>,
    /// guest-kernel on ringfence.
    pub ringfence: Option<u64>,
}

impl Medians {
    fn of(runs: &[ColumnRun], wire: &str) -> Medians {
        let median = |column: Column| runs.iter().find(|run| run.column == column).and_then(|run| run.median(wire));
        Medians {
            linux_native: median(Column::LinuxNative),
            linux_xen: median(Column::LinuxXen),
            native: median(Column::Native),
            ringfence: median(Column::Ringfence),
        }
    }

    /// Goal (a): ringfence's cycles at most Linux-on-Xen's.
    pub fn goal_a(self) -> Option<bool> {
        Some(self.ringfence? <= self.linux_xen?)
    }

    /// Goal (b): ringfence/native at most xen/native (compared without rounding:
    /// ringfence × linux-native <= linux-xen × native).
    pub fn goal_b(self) -> Option<bool> {
        let (ringfence, native) = (u128::from(self.ringfence?), u128::from(self.native?));
        let (xen, linux) = (u128::from(self.linux_xen?), u128::from(self.linux_native?));
        (native > 0 && linux > 0).then_some(ringfence * linux <= xen * native)
    }
}

fn cell(value: Option<u64>) -> String {
    value.map_or("-".to_string(), |value| value.to_string())
}

/// The ratio of two medians, printed with two decimals below 10 and one above (`0.90x`,
/// `1.16x`, `26.7x`); `-` when either is missing or the denominator is 0.
fn ratio_cell(numerator: Option<u64>, denominator: Option<u64>) -> String {
    match ratio_value(numerator, denominator) {
        Some(ratio) if ratio >= 10.0 => format!("{ratio:.1}x"),
        Some(ratio) => format!("{ratio:.2}x"),
        None => "-".to_string(),
    }
}

fn goal_cell(goal: Option<bool>) -> &'static str {
    match goal {
        Some(true) => "met",
        Some(false) => "missed",
        None => "-",
    }
}

/// The table: a header, then one line per selected row.
pub fn table(rows: &[Row], runs: &[ColumnRun]) -> String {
    let line = |cells: [&str; 9]| {
        format!(
            "{:<14} | {:>12} | {:>10} | {:>10} | {:>10} | {:>10} | {:>16} | {:<6} | {}\n",
            cells[0], cells[1], cells[2], cells[3], cells[4], cells[5], cells[6], cells[7], cells[8]
        )
    };
    let mut text = line([
        "row",
        "linux-native",
        "linux-xen",
        "native",
        "ringfence",
        "xen/native",
        "ringfence/native",
        "goal a",
        "goal b",
    ]);
    for row in rows {
        let medians = Medians::of(runs, row.wire);
        text.push_str(&line([
            row.title,
            &cell(medians.linux_native),
            &cell(medians.linux_xen),
            &cell(medians.native),
            &cell(medians.ringfence),
            &ratio_cell(medians.linux_xen, medians.linux_native),
            &ratio_cell(medians.ringfence, medians.native),
            goal_cell(medians.goal_a()),
            goal_cell(medians.goal_b()),
        ]));
    }
    text
}

/// One line judging both goals over the selected rows, naming the rows that missed and
/// those that could not be judged.
pub fn goal_summary(rows: &[Row], runs: &[ColumnRun]) -> String {
    let judge = |name: &str, goal: fn(Medians) -> Option<bool>| {
        let (mut met, mut missed, mut unjudged) = (0, Vec::new(), Vec::new());
        for row in rows {
            match goal(Medians::of(runs, row.wire)) {
                Some(true) => met += 1,
                Some(false) => missed.push(row.title),
                None => unjudged.push(row.title),
            }
        }
        if unjudged.len() == rows.len() {
            return format!("{name} not judged (a column it needs was not measured)");
        }
        let mut text = format!("{name} met on {met} of {} rows", rows.len());
        if !missed.is_empty() {
            text.push_str(&format!(" (missed: {})", missed.join(", ")));
        }
        if !unjudged.is_empty() {
            text.push_str(&format!(" (not measured: {})", unjudged.join(", ")));
        }
        text
    };
    format!(
        "goals: {}; {}",
        judge("(a) ringfence <= linux-xen", Medians::goal_a),
        judge("(b) ringfence/native <= xen/native", Medians::goal_b)
    )
}

/// Where the columns' binaries came from, for the JSON report.
#[derive(Clone, Debug, Default)]
pub struct Versions {
    /// `qemu-system-x86_64 --version`'s first line.
    pub qemu: String,
    /// Debian's kernel package, if fetched.
    pub linux: Option<Fetched>,
    /// Debian's Xen package, if fetched.
    pub xen: Option<Fetched>,
    /// Xen's banner, if it booted.
    pub xen_banner: Option<String>,
}

impl Versions {
    /// One line naming what ran: Linux's and Xen's packages (where fetched) and QEMU.
    pub fn line(&self) -> String {
        let package = |fetched: &Option<Fetched>| match fetched {
            Some(fetched) if fetched.pinned => format!("{} {}", fetched.package, fetched.version),
            Some(fetched) => format!("{} {} (not the pinned version)", fetched.package, fetched.version),
            None => "not fetched".to_string(),
        };
        format!("linux: {}; xen: {}; {}", package(&self.linux), package(&self.xen), self.qemu)
    }
}

fn sample_json(sample: &Sample) -> serde_json::Value {
    serde_json::json!({
        "median": sample.median,
        "p99": sample.p99,
        "min": sample.min,
        "max": sample.max,
        "spread": if sample.median > 0 { Some(sample.p99 as f64 / sample.median as f64) } else { None },
        "iterations": sample.iterations,
    })
}

fn fetched_json(fetched: &Option<Fetched>) -> serde_json::Value {
    match fetched {
        Some(fetched) => serde_json::json!({
            "package": fetched.package, "version": fetched.version, "pinned": fetched.pinned,
            "file": fetched.path.display().to_string(),
        }),
        None => serde_json::Value::Null,
    }
}

fn ratio_value(numerator: Option<u64>, denominator: Option<u64>) -> Option<f64> {
    match (numerator, denominator) {
        (Some(numerator), Some(denominator)) if denominator > 0 => Some(numerator as f64 / denominator as f64),
        _ => None,
    }
}

/// Everything the table shows and what it leaves out: every column's numbers per row
/// (median, p99, min, max, spread = p99 / median, iterations, of the boot kept; every
/// boot's median), the ratios and goals, how
/// each column ended, and the configuration that produced them.
pub fn report_json(
    accel: Accel,
    unit: &str,
    rows: &[Row],
    runs: &[ColumnRun],
    versions: &Versions,
) -> serde_json::Value {
    let rows_json: Vec<serde_json::Value> = rows
        .iter()
        .map(|row| {
            let medians = Medians::of(runs, row.wire);
            let mut columns = serde_json::Map::new();
            for run in runs {
                let value = run.report.sample(row.wire).map_or(serde_json::Value::Null, |sample| {
                    let mut value = sample_json(sample);
                    value["boot_medians"] = serde_json::json!(run.boot_medians(row.wire));
                    value
                });
                columns.insert(run.column.name().to_string(), value);
            }
            serde_json::json!({
                "row": row.title,
                "wire": row.wire,
                "columns": columns,
                "xen/native": ratio_value(medians.linux_xen, medians.linux_native),
                "ringfence/native": ratio_value(medians.ringfence, medians.native),
                "goal_a_met": medians.goal_a(),
                "goal_b_met": medians.goal_b(),
            })
        })
        .collect();
    let columns_json: Vec<serde_json::Value> = runs
        .iter()
        .map(|run| {
            let (status, reason) = match &run.status {
                Status::Measured => ("measured", None),
                Status::Skipped(reason) => ("skipped", Some(reason.clone())),
                Status::Failed(reason, _) => ("failed", Some(reason.clone())),
            };
            serde_json::json!({
                "column": run.column.name(),
                "status": status,
                "reason": reason,
                "wall_ms": run.wall.map(|wall| wall.as_millis() as u64),
                "boots": run.boot_medians.first().map_or(0, |(_, medians)| medians.len()),
                "qemu_command": run.command,
            })
        })
        .collect();
    serde_json::json!({
        "unit": unit,
        "spread": "p99 / median",
        "goals": {
            "a": "ringfence median <= linux-xen median",
            "b": "ringfence/native <= xen/native (linux-xen/linux-native)",
        },
        "accel": accel.name(),
        "qemu": {
            "version": versions.qemu,
            "machine": MACHINE.argument(),
            "memory": MEMORY,
            "cpu": cpu_model(accel),
        },
        "linux": fetched_json(&versions.linux),
        "xen": fetched_json(&versions.xen),
        "xen_banner": versions.xen_banner,
        "ringfence_domain_memory": kernel_args::MEMORY,
        "dom0_memory": linux::DOM0_MEMORY,
        "columns": columns_json,
        "rows": rows_json,
    })
}

/// The exit code of a QEMU run that did not end as it should: xtask's own for a timeout,
/// a refusal or a missing ending, [`EXIT_FAILED`] otherwise.
fn failure_code(outcome: &RunOutcome) -> i32 {
    if outcome.timed_out {
        EXIT_TIMEOUT
    } else if outcome.output.trim().is_empty() && outcome.raw_exit.is_some_and(|code| code != 0) {
        EXIT_QEMU_REFUSED
    } else {
        EXIT_FAILED
    }
}

/// Judges a finished run: the run's own verdict (`ended`: `None` if it ended well, else
/// why and the code), then the lmbench report.
fn judge(
    column: Column,
    launch: &Launch,
    outcome: RunOutcome,
    ended: Option<(String, i32)>,
    rows: &[Row],
) -> ColumnRun {
    let report = Report::read(&outcome.output);
    let status = match (ended, report.problem(rows)) {
        (Some((why, code)), problem) => {
            let mut reason = why;
            if let Some(problem) = problem {
                reason.push_str(&format!("; {problem}"));
            }
            if outcome.timed_out {
                reason.push_str("; give it longer with --timeout SECS");
            }
            Status::Failed(reason, code)
        }
        (None, Some(problem)) => Status::Failed(problem, EXIT_FAILED),
        (None, None) => Status::Measured,
    };
    if let Status::Failed(reason, _) = &status {
        let shown = if outcome.output.trim().is_empty() { "no console output" } else { "last console lines:" };
        println!("bench: {}: {reason}; {shown}", column.name());
        let tail: Vec<&str> = outcome.output.lines().rev().take(20).collect();
        for line in tail.iter().rev() {
            println!("    {line}");
        }
    }
    let (command, wall) = (Some(launch.display()), Some(outcome.wall));
    ColumnRun { column, status, report, command, wall, console: outcome.output, boot_medians: Vec::new() }
}

/// One column from its boots, in order. A boot that did not measure every row is the
/// column's outcome (the bench stops booting a column at its first such boot). Otherwise
/// each row keeps the sample of the boot with the lowest median (interference from the host
/// only ever slows a boot down), the walls add up, and every boot's median of every row is
/// kept for the JSON report.
pub fn best_of(mut boots: Vec<ColumnRun>) -> ColumnRun {
    assert!(!boots.is_empty(), "a column boots at least once");
    if let Some(index) = boots.iter().position(|boot| boot.status != Status::Measured) {
        return boots.swap_remove(index);
    }
    let mut best = boots[0].clone();
    best.boot_medians = best
        .report
        .samples
        .iter()
        .map(|sample| {
            let medians = boots.iter().filter_map(|boot| boot.median(&sample.wire)).collect();
            (sample.wire.clone(), medians)
        })
        .collect();
    best.report.samples = bench::lowest_per_row(boots.iter().map(|boot| boot.report.samples.clone()).collect());
    best.wall = boots.iter().map(|boot| boot.wall).sum();
    best
}

/// What the columns share.
struct Setup {
    qemu: PathBuf,
    accel: Accel,
    timeout: Duration,
    rows: Vec<Row>,
    /// lmbench's arguments.
    arguments: Vec<String>,
    /// guest-kernel's initramfs.
    initramfs: PathBuf,
    /// Every column on instruction-counted time ([`Accel::virtual_time_args`]).
    counted: bool,
}

impl Setup {
    fn launch(&self, kernel: PathBuf, initrd: PathBuf, append: String) -> Launch {
        Launch {
            qemu: self.qemu.clone(),
            hypervisor: kernel,
            initrd,
            append,
            accel: self.accel,
            machine: MACHINE,
            memory: MEMORY,
            extra: machine_args(self.accel)
                .into_iter()
                .chain(bench::counted_time_args(self.accel, self.counted))
                .collect(),
            timeout: self.timeout,
        }
    }

    /// The command guest-kernel's init runs.
    fn command(&self) -> Vec<String> {
        std::iter::once(lmbench::PROGRAM.to_string()).chain(self.arguments.iter().cloned()).collect()
    }

    fn start(&self, column: Column, what: &str) {
        println!("bench: {}: {what} ...", column.name());
    }

    /// Runs `launch`; `verdict` reads how it ended.
    fn run(
        &self,
        column: Column,
        launch: Launch,
        verdict: impl Fn(&RunOutcome) -> Option<(String, i32)>,
    ) -> Result<ColumnRun> {
        let outcome = bench::run_qemu(&launch)?;
        let ended = verdict(&outcome);
        let run = judge(column, &launch, outcome, ended, &self.rows);
        if run.status == Status::Measured {
            println!("bench: {}: done in {} ms", column.name(), run.wall.unwrap_or_default().as_millis());
        }
        Ok(run)
    }

    fn linux_native(&self, vmlinuz: &Path, linux_initramfs: &Path) -> Result<ColumnRun> {
        let boot = linux::native(vmlinuz, linux_initramfs, &self.arguments)?;
        self.start(Column::LinuxNative, "booting Debian's Linux");
        let launch = self.launch(boot.kernel, boot.initrd, boot.append);
        self.run(Column::LinuxNative, launch, |outcome| linux_verdict(outcome, self.timeout))
    }

    fn linux_xen(&self, xen: &Path, vmlinuz: &Path, linux_initramfs: &Path) -> Result<ColumnRun> {
        let boot = linux::on_xen(xen, vmlinuz, linux_initramfs, &self.arguments)?;
        self.start(Column::LinuxXen, "booting Debian's Xen with Linux as dom0");
        let launch = self.launch(boot.kernel, boot.initrd, boot.append);
        self.run(Column::LinuxXen, launch, |outcome| linux_verdict(outcome, self.timeout))
    }

    fn native(&self, kernel: PathBuf) -> Result<ColumnRun> {
        let append = native::command_line(&[], &self.command())?;
        self.start(Column::Native, "booting guest-kernel's native build");
        self.run(Column::Native, self.launch(kernel, self.initramfs.clone(), append), |outcome| {
            let verdict = native::verdict(outcome);
            (verdict.code != 0).then(|| (verdict.description, xtask_code(i32::from(verdict.code))))
        })
    }

    fn ringfence(&self) -> Result<ColumnRun> {
        const IMAGE: &str = "guest-kernel";
        const MODULE: &str = "initramfs";
        let read = |path: &Path| std::fs::read(path).map_err(|error| Error::io("cannot read", path, error));
        let image = workspace::guests_dir().join(format!("{IMAGE}.elf"));
        let members = [(IMAGE.to_string(), read(&image)?), (MODULE.to_string(), read(&self.initramfs)?)];
        let boot_archive = workspace::runs_dir().join("bench-kernel.tar");
        qemu::write_archive(&boot_archive, &archive::build(&members)?)?;
        let command: Vec<std::ffi::OsString> = self.command().iter().map(std::ffi::OsString::from).collect();
        let mut domain = Domain::new(IMAGE);
        domain.mem = Some(kernel_args::MEMORY.to_string());
        domain.module = Some(MODULE.to_string());
        domain.args = kernel_args::tokens(&[], &command)?;
        let append = cmdline::command_line(&[domain], &[])?;
        self.start(Column::Ringfence, "booting guest-kernel on ringfence");
        self.run(Column::Ringfence, self.launch(workspace::hypervisor_elf(), boot_archive, append), |outcome| {
            let code = outcome.xtask_exit_code();
            (code != 0).then(|| (outcome.describe(self.timeout), xtask_code(code)))
        })
    }
}

/// Boots `column` `boots` times with `one` (fewer if a boot does not measure every row)
/// and merges the boots ([`best_of`]).
fn boot_column(column: Column, boots: u32, mut one: impl FnMut() -> Result<ColumnRun>) -> Result<ColumnRun> {
    let runs = bench::boot_up_to(
        boots,
        |boot| {
            if boots > 1 {
                println!("bench: {}: boot {boot} of {boots}", column.name());
            }
            one()
        },
        |run| run.status != Status::Measured,
    )?;
    Ok(best_of(runs))
}

/// A run's exit code as the bench's: xtask's own codes kept, a guest's status (a crash,
/// a power-off code) a failure.
fn xtask_code(code: i32) -> i32 {
    if [EXIT_TIMEOUT, EXIT_QEMU_REFUSED, EXIT_NO_ENDING].contains(&code) {
        code
    } else {
        EXIT_FAILED
    }
}

/// How a Linux column's QEMU ended: Linux powers off (QEMU exits 0) when the program is
/// done, and a program that dies panics the kernel, which reboots, which ends QEMU too; so
/// only a timeout or QEMU's refusal is judged here, the rest by lmbench's lines.
fn linux_verdict(outcome: &RunOutcome, timeout: Duration) -> Option<(String, i32)> {
    let code = failure_code(outcome);
    [EXIT_TIMEOUT, EXIT_QEMU_REFUSED].contains(&code).then(|| (outcome.describe(timeout), code))
}

/// QEMU's version line.
fn qemu_version(qemu: &Path) -> String {
    std::process::Command::new(qemu)
        .arg("--version")
        .output()
        .ok()
        .and_then(|output| String::from_utf8_lossy(&output.stdout).lines().next().map(str::to_string))
        .unwrap_or_default()
}

/// Builds what the guest-kernel columns boot: the hypervisor with guest-kernel (and the
/// accelerator probe's guest when the accelerator is to be chosen), the native kernel,
/// and the initramfs; returns the native kernel and the initramfs.
fn build_guest_kernel(choose_accel: bool) -> Result<(PathBuf, PathBuf)> {
    let wanted = |bin: &str| bin == "guest-kernel" || (choose_accel && bin == accel::PROBE_GUEST);
    let guests = build::guest_bins()?.into_iter().filter(|guest| wanted(&guest.bin)).collect();
    build::build(&build::Images::Hypervisor(guests))?;
    let kernel = build::build_native_kernel()?;
    Ok((kernel, initramfs::initramfs()?))
}

/// Fetches Debian's Linux and Xen; a failure skips the columns that need it.
fn fetch_debian() -> (std::result::Result<Fetched, String>, std::result::Result<Fetched, String>) {
    let fetch = |component: Component| {
        debian::ensure(component)
            .map_err(|error| format!("Debian's {} could not be fetched: {}", component.name(), error.message))
    };
    (fetch(Component::Linux), fetch(Component::Xen))
}

/// Runs every column and prints the table; the exit code.
pub fn main(options: Options) -> Result<u8> {
    if options.iterations == Some(0) {
        return Err(Error::usage("--iterations must be at least 1"));
    }
    if options.timeout == Some(0) {
        return Err(Error::usage("--timeout must be at least 1 second"));
    }
    if options.boots == Some(0) {
        return Err(Error::usage("--boots must be at least 1"));
    }
    let rows = lmbench::select(&options.rows).map_err(Error::usage)?;
    let qemu_binary = qemu::ensure_qemu()?;
    qemu::check_accel_request(options.accel)?;
    let (native_kernel, guest_kernel_initramfs) = build_guest_kernel(options.accel.is_none())?;
    let choice = qemu::choose_accel(options.accel, &qemu_binary, &workspace::hypervisor_elf())?;
    for line in &choice.lines {
        println!("{line}");
    }
    let accel = choice.accel;
    bench::check_counted(accel, options.counted)?;
    let unit = bench::unit(options.counted);
    let initramfs_bytes = std::fs::read(&guest_kernel_initramfs)
        .map_err(|error| Error::io("cannot read", &guest_kernel_initramfs, error))?;
    let linux_initramfs = workspace::runs_dir().join("lmbench-linux.cpio");
    qemu::write_archive(&linux_initramfs, &linux::initramfs(&initramfs_bytes)?)?;
    let setup = Setup {
        qemu: qemu_binary.clone(),
        accel,
        timeout: options.timeout.map_or(default_timeout(accel), Duration::from_secs),
        arguments: lmbench::arguments(options.iterations, &rows),
        rows: rows.clone(),
        initramfs: guest_kernel_initramfs,
        counted: options.counted,
    };
    let invocation = match setup.arguments.is_empty() {
        true => "every row, its own iteration counts".to_string(),
        false => setup.arguments.join(" "),
    };
    println!(
        "bench: every column on QEMU -M {} -m {MEMORY} -accel {} -cpu {}; lmbench: {invocation}",
        MACHINE.argument(),
        accel.name(),
        cpu_model(accel),
    );
    println!("{}", bench::pinning_line());
    let boots = options.boots.unwrap_or(bench::default_boots(accel, options.counted));
    if boots > 1 {
        println!("bench: every column boots {boots} times; each row keeps the boot with the lowest median (--boots N)");
    }

    let (linux, xen) = fetch_debian();
    match (&linux, &xen) {
        (Err(reason), _) => println!("bench: linux-native and linux-xen skipped: {reason}"),
        (Ok(_), Err(reason)) => println!("bench: linux-xen skipped: {reason}"),
        (Ok(_), Ok(_)) => {}
    }
    let mut runs = Vec::new();
    match &linux {
        Ok(linux) => {
            runs.push(boot_column(Column::LinuxNative, boots, || setup.linux_native(&linux.path, &linux_initramfs))?)
        }
        Err(reason) => runs.push(ColumnRun::skipped(Column::LinuxNative, reason.clone())),
    }
    match (&linux, &xen) {
        (Ok(linux), Ok(xen)) => runs
            .push(boot_column(Column::LinuxXen, boots, || setup.linux_xen(&xen.path, &linux.path, &linux_initramfs))?),
        (Err(reason), _) | (_, Err(reason)) => runs.push(ColumnRun::skipped(Column::LinuxXen, reason.clone())),
    }
    runs.push(boot_column(Column::Native, boots, || setup.native(native_kernel.clone()))?);
    runs.push(boot_column(Column::Ringfence, boots, || setup.ringfence())?);

    let versions = Versions {
        qemu: qemu_version(&qemu_binary),
        xen_banner: runs
            .iter()
            .find(|run| run.column == Column::LinuxXen)
            .and_then(|run| linux::xen_banner(&run.console)),
        linux: linux.ok(),
        xen: xen.ok(),
    };
    println!();
    print!("{}", table(&rows, &runs));
    println!("{}", versions.line());
    println!("({unit}, medians; goal a: ringfence <= linux-xen; goal b: ringfence/native <= xen/native)");
    println!("{}", goal_summary(&rows, &runs));
    let walls: Vec<String> =
        runs.iter().filter_map(|run| Some(format!("{} {} ms", run.column.name(), run.wall?.as_millis()))).collect();
    println!("wall time of the QEMU runs ({}): {}", accel.name(), walls.join(", "));
    for run in &runs {
        match &run.status {
            Status::Measured => {}
            Status::Skipped(_) => println!("{}: - (skipped: see above)", run.column.name()),
            Status::Failed(reason, _) => println!("{}: -: {reason}", run.column.name()),
        }
    }
    if let Some(path) = &options.json {
        let report = report_json(accel, unit, &rows, &runs, &versions);
        let text = serde_json::to_string_pretty(&report).map_err(|error| Error::failed(format!("JSON: {error}")))?;
        std::fs::write(path, text + "\n").map_err(|error| Error::io("cannot write", path, error))?;
        println!("bench: rows written to {}", path.display());
    }
    let code = runs.iter().find_map(|run| match &run.status {
        Status::Measured => None,
        Status::Skipped(_) => Some(EXIT_ENVIRONMENT),
        Status::Failed(_, code) => Some(*code),
    });
    Ok(code.map_or(0, |code| u8::try_from(code).unwrap_or(u8::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use xtask::lmbench::ROWS;

    /// A column that printed `medians` for the first rows, p99 = median + 10, min =
    /// median - 1, max = 2 x median.
    fn measured(column: Column, medians: &[u64]) -> ColumnRun {
        let mut console = String::new();
        for (row, median) in ROWS.iter().zip(medians) {
            console.push_str(&format!(
                "lmbench {} median {median} p99 {} min {} max {} iterations 100\n",
                row.wire,
                median + 10,
                median - 1,
                median * 2
            ));
        }
        console.push_str(&format!("lmbench done rows {}\n", medians.len()));
        ColumnRun {
            column,
            status: Status::Measured,
            report: Report::read(&console),
            command: Some("qemu".into()),
            wall: Some(Duration::from_millis(1500)),
            console,
            boot_medians: Vec::new(),
        }
    }

    fn cells(line: &str) -> Vec<&str> {
        line.split('|').map(str::trim).collect()
    }

    #[test]
    fn ratios_print_like_the_issue() {
        assert_eq!(ratio_cell(Some(267), Some(10)), "26.7x");
        assert_eq!(ratio_cell(Some(116), Some(100)), "1.16x");
        assert_eq!(ratio_cell(Some(9), Some(10)), "0.90x");
        assert_eq!(ratio_cell(Some(100), Some(10)), "10.0x");
        assert_eq!(ratio_cell(Some(5), Some(0)), "-");
    }

    #[test]
    fn the_goals_are_judged_without_rounding() {
        let medians = |linux_native, linux_xen, native, ringfence| Medians {
            linux_native: Some(linux_native),
            linux_xen: Some(linux_xen),
            native: Some(native),
            ringfence: Some(ringfence),
        };
        // Xen's tax 3x, ours exactly 3x: (b) met; ringfence above Linux-on-Xen: (a) missed.
        assert_eq!(
            (medians(100, 300, 200, 600).goal_a(), medians(100, 300, 200, 600).goal_b()),
            (Some(false), Some(true))
        );
        // One cycle more than 3x misses (b).
        assert_eq!(medians(100, 300, 200, 601).goal_b(), Some(false));
        assert_eq!(medians(100, 300, 200, 300).goal_a(), Some(true));
        let missing = Medians { linux_xen: None, ..medians(1, 1, 1, 1) };
        assert_eq!((missing.goal_a(), missing.goal_b()), (None, None));
        assert_eq!(medians(0, 1, 1, 1).goal_b(), None, "no ratio against zero cycles");
        // Large cycle counts do not overflow.
        assert_eq!(medians(u64::MAX, u64::MAX, u64::MAX, u64::MAX).goal_b(), Some(true));
    }

    #[test]
    fn the_table_has_the_four_columns_the_ratios_and_the_goals() {
        let runs = [
            measured(Column::LinuxNative, &[2500, 1000]),
            measured(Column::LinuxXen, &[66750, 14800]),
            measured(Column::Native, &[800, 900]),
            measured(Column::Ringfence, &[30000, 20000]),
        ];
        let text = table(&ROWS[..3], &runs);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            cells(lines[0]),
            [
                "row",
                "linux-native",
                "linux-xen",
                "native",
                "ringfence",
                "xen/native",
                "ringfence/native",
                "goal a",
                "goal b"
            ]
        );
        assert_eq!(
            cells(lines[1]),
            ["null syscall", "2500", "66750", "800", "30000", "26.7x", "37.5x", "met", "missed"]
        );
        assert_eq!(
            cells(lines[2]),
            ["write devnull", "1000", "14800", "900", "20000", "14.8x", "22.2x", "missed", "missed"]
        );
        assert_eq!(cells(lines[3]), ["fork exit", "-", "-", "-", "-", "-", "-", "-", "-"], "a row no column measured");
        assert_eq!(lines.len(), 4);
        assert_eq!(
            goal_summary(&ROWS[..3], &runs),
            "goals: (a) ringfence <= linux-xen met on 1 of 3 rows (missed: write devnull) (not measured: fork exit); \
             (b) ringfence/native <= xen/native met on 0 of 3 rows (missed: null syscall, write devnull) (not measured: fork exit)"
        );
    }

    #[test]
    fn a_column_that_did_not_run_leaves_dashes_and_the_others_print() {
        let runs = [
            ColumnRun::skipped(Column::LinuxNative, "Debian's archive is unreachable".into()),
            ColumnRun::skipped(Column::LinuxXen, "Debian's archive is unreachable".into()),
            measured(Column::Native, &[800]),
            measured(Column::Ringfence, &[1600]),
        ];
        let text = table(&ROWS[..1], &runs);
        assert_eq!(
            cells(text.lines().nth(1).unwrap()),
            ["null syscall", "-", "-", "800", "1600", "-", "2.00x", "-", "-"]
        );
        assert_eq!(
            goal_summary(&ROWS[..1], &runs),
            "goals: (a) ringfence <= linux-xen not judged (a column it needs was not measured); \
             (b) ringfence/native <= xen/native not judged (a column it needs was not measured)"
        );
    }

    #[test]
    fn the_json_report_has_what_the_table_leaves_out() {
        let runs = [
            measured(Column::LinuxNative, &[100]),
            ColumnRun {
                status: Status::Failed("QEMU timed out after 900 s and was killed".into(), EXIT_TIMEOUT),
                ..measured(Column::LinuxXen, &[])
            },
            measured(Column::Native, &[50]),
            measured(Column::Ringfence, &[75]),
        ];
        let versions = Versions { qemu: "QEMU emulator version 7.2.22".into(), ..Versions::default() };
        let text =
            serde_json::to_string(&report_json(Accel::Tcg, bench::unit(false), &ROWS[..1], &runs, &versions)).unwrap();
        let report: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(report["accel"], "tcg");
        assert_eq!(report["unit"], "TSC cycles per iteration");
        assert_eq!(report["qemu"]["cpu"], "max,-smap");
        assert_eq!(report["qemu"]["machine"], "pc");
        assert_eq!(report["qemu"]["memory"], "1G");
        assert_eq!(report["qemu"]["version"], "QEMU emulator version 7.2.22");
        assert!(report["linux"].is_null() && report["xen"].is_null(), "not fetched");
        let row = &report["rows"][0];
        assert_eq!(row["row"], "null syscall");
        let native = &row["columns"]["native"];
        assert_eq!((native["median"].as_u64(), native["p99"].as_u64()), (Some(50), Some(60)));
        assert_eq!((native["min"].as_u64(), native["max"].as_u64()), (Some(49), Some(100)));
        assert_eq!(native["spread"], 1.2);
        assert_eq!(native["iterations"], 100);
        assert!(row["columns"]["linux-xen"].is_null());
        assert_eq!(row["ringfence/native"], 1.5);
        assert!(row["xen/native"].is_null() && row["goal_a_met"].is_null() && row["goal_b_met"].is_null());
        let columns = report["columns"].as_array().unwrap();
        assert_eq!(columns.len(), 4);
        assert_eq!((columns[1]["column"].as_str(), columns[1]["status"].as_str()), (Some("linux-xen"), Some("failed")));
        assert_eq!(columns[1]["reason"], "QEMU timed out after 900 s and was killed");
        assert_eq!(columns[0]["wall_ms"], 1500);
    }

    #[test]
    fn each_row_keeps_the_boot_with_the_lowest_median() {
        let boots = vec![
            measured(Column::Ringfence, &[100, 900, 50]),
            measured(Column::Ringfence, &[80, 1000, 60]),
            measured(Column::Ringfence, &[90, 950, 40]),
        ];
        let best = best_of(boots);
        assert_eq!(best.status, Status::Measured);
        let medians: Vec<u64> = ROWS[..3].iter().map(|row| best.median(row.wire).unwrap()).collect();
        assert_eq!(medians, [80, 900, 40], "each row from its own fastest boot");
        // The kept sample is that boot's whole sample, not just its median.
        let kept = best.report.sample(ROWS[1].wire).unwrap();
        assert_eq!((kept.p99, kept.min, kept.max), (910, 899, 1800));
        assert_eq!(best.boot_medians(ROWS[0].wire), [100, 80, 90]);
        assert_eq!(best.boot_medians(ROWS[2].wire), [50, 60, 40]);
        assert_eq!(best.wall, Some(Duration::from_millis(4500)), "the boots' walls add up");
        let one = best_of(vec![measured(Column::Native, &[70])]);
        assert_eq!((one.median(ROWS[0].wire), one.boot_medians(ROWS[0].wire)), (Some(70), &[70][..]));
    }

    #[test]
    fn a_boot_that_fails_is_the_columns_outcome() {
        let failed = ColumnRun {
            status: Status::Failed("QEMU timed out after 900 s and was killed".into(), EXIT_TIMEOUT),
            ..measured(Column::LinuxXen, &[])
        };
        let best = best_of(vec![measured(Column::LinuxXen, &[100]), failed.clone()]);
        assert_eq!(best.status, failed.status);
        assert!(best.median(ROWS[0].wire).is_none(), "no row from a column that failed");
    }

    #[test]
    fn the_json_report_has_every_boots_median() {
        let runs = [best_of(vec![measured(Column::Ringfence, &[75]), measured(Column::Ringfence, &[70])])];
        let versions = Versions::default();
        let report = report_json(Accel::Tcg, bench::unit(false), &ROWS[..1], &runs, &versions);
        let ringfence = &report["rows"][0]["columns"]["ringfence"];
        assert_eq!(ringfence["median"], 70);
        assert_eq!(ringfence["boot_medians"], serde_json::json!([75, 70]));
        assert_eq!(report["columns"][0]["boots"], 2);
    }

    #[test]
    fn three_boots_only_where_cycles_wander() {
        assert_eq!(bench::default_boots(Accel::Tcg, false), 3);
        assert_eq!(bench::default_boots(Accel::Tcg, true), 1, "counted figures repeat exactly");
        assert_eq!(bench::default_boots(Accel::Kvm, false), 1);
    }

    #[test]
    fn the_versions_line_names_the_packages() {
        let fetched = |version: &str, pinned| Fetched {
            path: "/t/xen".into(),
            package: "xen-hypervisor-4.17-amd64".into(),
            version: version.into(),
            pinned,
        };
        let versions = Versions {
            qemu: "QEMU emulator version 7.2.22".into(),
            linux: None,
            xen: Some(fetched("4.17.8", false)),
            xen_banner: None,
        };
        assert_eq!(
            versions.line(),
            "linux: not fetched; xen: xen-hypervisor-4.17-amd64 4.17.8 (not the pinned version); QEMU emulator version 7.2.22"
        );
        let pinned = Versions { xen: Some(fetched("4.17.7", true)), ..versions };
        assert!(pinned.line().contains("xen: xen-hypervisor-4.17-amd64 4.17.7; QEMU"), "{}", pinned.line());
    }

    #[test]
    fn every_column_gets_the_same_machine() {
        assert_eq!(MEMORY, "1G");
        assert_eq!(machine_args(Accel::Tcg), ["-cpu", "max,-smap"]);
        assert_eq!(machine_args(Accel::Kvm), ["-cpu", accel::KVM_CPU]);
        let setup = Setup {
            qemu: "qemu".into(),
            accel: Accel::Tcg,
            timeout: default_timeout(Accel::Tcg),
            rows: ROWS.to_vec(),
            arguments: vec!["--iterations".into(), "5".into()],
            initramfs: "initramfs.cpio".into(),
            counted: false,
        };
        let shown = setup.launch("kernel".into(), "initrd".into(), "x".into()).display();
        // QEMU takes the last -cpu: ours comes after xtask's defaults.
        assert!(shown.starts_with("qemu -M pc "), "{shown}");
        assert!(shown.contains(" -m 1G ") && !shown.contains("-m 512M"), "{shown}");
        assert!(shown.ends_with("-cpu max,-smap"), "{shown}");
        assert_eq!(setup.command(), ["/bin/lmbench", "--iterations", "5"]);
        // --counted: every column on the same instruction-counted time.
        let counted = Setup { counted: true, ..setup };
        let shown = counted.launch("kernel".into(), "initrd".into(), "x".into()).display();
        assert!(shown.ends_with("-cpu max,-smap -icount shift=0,sleep=off"), "{shown}");
    }

    #[test]
    fn run_failures_keep_xtasks_codes() {
        assert_eq!(xtask_code(EXIT_TIMEOUT), EXIT_TIMEOUT);
        assert_eq!(xtask_code(EXIT_NO_ENDING), EXIT_NO_ENDING);
        assert_eq!(xtask_code(2), EXIT_FAILED, "a crashed kernel");
        assert_eq!(xtask_code(1), EXIT_FAILED, "lmbench's own failure, passed on by init");
        let outcome = |raw, timed_out, output: &str| {
            RunOutcome::from_parts(raw, timed_out, output.into(), "qemu: bad option\n".into(), Duration::ZERO)
        };
        let timeout = Duration::from_secs(9);
        assert_eq!(linux_verdict(&outcome(None, true, "booting"), timeout).unwrap().1, EXIT_TIMEOUT);
        let refused = linux_verdict(&outcome(Some(1), false, ""), timeout).unwrap();
        assert_eq!(refused, ("QEMU refused to start (status 1): qemu: bad option".to_string(), EXIT_QEMU_REFUSED));
        assert_eq!(linux_verdict(&outcome(Some(0), false, "lmbench done rows 0"), timeout), None);
    }
}
