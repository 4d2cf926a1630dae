//! `cargo xtask test`: host unit tests, the build, the hypercall trace, guest-kernel's native
//! platform check and its own test suite on its native and paravirtualized builds
//! (commands::kernel_suite), the conformance suite, then
//! README's gdb session and its first steps (commands::first_steps). `--stress` runs the
//! conformance suite again and again on a busy machine instead (commands::stress).

use super::kernel_suite;
use clap::Args;
use std::path::PathBuf;
use xtask::accel::Accel;
use xtask::{junit, workspace, Error, Result};

/// Options of `cargo xtask test`.
#[derive(Args, Debug)]
pub struct TestArgs {
    /// Accelerator for guest-kernel's suite and the conformance suite (default: the faster of KVM
    /// and TCG here, measured once per host; when that is TCG and KVM works, smoke subsets of
    /// both run under KVM too).
    #[arg(long, value_enum)]
    accel: Option<Accel>,
    /// Test this hypervisor image instead of the one built from this workspace.
    #[arg(long, value_name = "PATH")]
    hypervisor: Option<PathBuf>,
    /// Also write the results as JUnit XML to FILE: one test case per host unit test, per
    /// guest-kernel test case on each build and per conformance case, a failed case with its
    /// console.
    #[arg(long, value_name = "FILE", conflicts_with = "stress")]
    junit: Option<PathBuf>,
    /// Instead of the stages: build, then run the conformance suite `--runs` times in a row
    /// while the machine is kept busy (two CPU-bound threads and a looping parallel cargo
    /// build), and report every failure with its case and run.
    #[arg(long)]
    stress: bool,
    /// Runs of `--stress` (default 10).
    #[arg(long, value_name = "N", requires = "stress", value_parser = clap::value_parser!(u32).range(1..=1000))]
    runs: Option<u32>,
    /// Only run conformance cases (and the steps `native::check`, `guest_kernel::suite`,
    /// `guest_kernel::done_when`, `gdb_session` and the first steps) whose names contain one of
    /// these.
    filters: Vec<String>,
}

fn step(name: &str, mut command: std::process::Command) -> Result<bool> {
    println!("xtask test: {name}");
    let status = command
        .status()
        .map_err(|error| Error::environment(format!("cannot run cargo for {name}: {error}; is cargo in PATH?")))?;
    Ok(status.success())
}

/// Like [`step`], also keeping what the command printed (stdout and stderr as one stream,
/// in order, as the user sees it).
fn step_captured(name: &str, mut command: std::process::Command) -> Result<(bool, String)> {
    use std::io::{Read, Write};
    println!("xtask test: {name}");
    let cannot = |error: std::io::Error| Error::environment(format!("cannot run cargo for {name}: {error}"));
    let (mut reader, writer) = std::io::pipe().map_err(cannot)?;
    command.stdout(writer.try_clone().map_err(cannot)?).stderr(writer);
    let mut child = command.spawn().map_err(cannot)?;
    // The command holds the pipe's write ends; the read ends only when every one is gone.
    drop(command);
    let mut kept = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        match reader.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(count) => {
                kept.extend_from_slice(&buffer[..count]);
                let _ = std::io::stdout().write_all(&buffer[..count]);
            }
        }
    }
    let status = child.wait().map_err(cannot)?;
    Ok((status.success(), String::from_utf8_lossy(&kept).into_owned()))
}

/// Runs every stage; fails if any failed.
pub fn main(args: TestArgs) -> Result<u8> {
    if let Some(path) = &args.hypervisor {
        if !path.is_file() {
            return Err(Error::usage(format!("--hypervisor {} does not exist", path.display())));
        }
    }
    xtask::qemu::ensure_qemu()?;
    xtask::qemu::check_accel_request(args.accel)?;
    if args.stress {
        return stress(&args);
    }
    let mut failed = Vec::new();

    let mut host = workspace::cargo();
    host.args(["test", "--workspace"]);
    let mut report = Vec::new();
    let (passed, output) = step_captured("host unit tests (cargo test --workspace)", host)?;
    if !passed {
        failed.push("host unit tests");
    }
    report.extend(junit::parse_libtest(&output));

    println!("xtask test: build");
    if let Err(error) = xtask::build::build_all() {
        eprintln!("error: {error}");
        failed.push("build");
        if let Some(path) = &args.junit {
            write_report(path, &report)?;
        }
        return finish(&failed);
    }

    let hypervisor = match &args.hypervisor {
        Some(path) => path.canonicalize().map_err(|error| Error::io("cannot resolve", path, error))?,
        None => workspace::hypervisor_elf(),
    };
    // One decision for the whole run, measured once per host (xtask::accel).
    let qemu = xtask::qemu::ensure_qemu()?;
    let choice = xtask::qemu::choose_accel(args.accel, &qemu, &hypervisor)?;
    for line in &choice.lines {
        println!("{line}");
    }
    // KVM runs here but TCG was faster: smoke subsets under KVM keep it proven.
    let kvm_smoke = args.accel.is_none() && choice.kvm_boots && choice.accel == Accel::Tcg;
    // The hypercall trace end to end: guest-kernel's decoded trace against its own report.
    // Under TCG on every host: it proves the trace, not the accelerator, and the trace
    // port's byte-per-exit writes are slow where every exit is a host round trip.
    println!("xtask test: hypercall trace of guest-kernel under tcg");
    let start = std::time::Instant::now();
    let outcome = match xtask::trace::check::boot_and_check(&qemu, &hypervisor, Accel::Tcg) {
        Ok(summary) => {
            print!("{summary}");
            junit::Outcome::Passed
        }
        Err(error) => {
            eprintln!("error: {error}");
            failed.push("hypercall trace of guest-kernel");
            junit::Outcome::Failed { message: error.message.clone(), output: error.message }
        }
    };
    let case = junit::TestCase { name: "trace::guest_kernel".into(), time: start.elapsed(), outcome };
    report.push(junit::Suite { name: "xtask trace".into(), cases: vec![case] });
    if args.filters.is_empty() || args.filters.iter().any(|filter| NATIVE_CHECK_CASE.contains(filter.as_str())) {
        let native = native_check(&qemu)?;
        if native.cases.iter().any(|case| matches!(case.outcome, junit::Outcome::Failed { .. })) {
            failed.push("guest-kernel native platform check");
        }
        report.push(native);
    }
    // guest-kernel's suite boots the workspace's hypervisor through `cargo xtask run`, as
    // a user would; --hypervisor is the conformance suite's.
    let (kernel_failed, kernel_suites) = kernel_suite::run(choice.accel, kernel_suite::Scope::Full, &args.filters)?;
    failed.extend(kernel_failed);
    report.extend(kernel_suites);
    // KVM runs here but TCG was faster: a smoke subset keeps both builds proven under KVM
    // (the whole suite takes minutes on a kvm-pvm host, the subset about two).
    if kvm_smoke {
        let (smoke_failed, smoke_suites) = kernel_suite::run(Accel::Kvm, kernel_suite::Scope::Smoke, &args.filters)?;
        failed.extend(smoke_failed);
        report.extend(smoke_suites);
    }
    let results = |accel: Accel| workspace::runs_dir().join(format!("conformance-{}.json", accel.name()));
    for accel in [Accel::Tcg, Accel::Kvm] {
        // Only this command's runs may be reported: not a file an earlier one left.
        let _ = std::fs::remove_file(results(accel));
    }
    let suite = |accel: Accel, smoke: bool| {
        let mut suite = workspace::cargo();
        suite.args(["run", "--release", "--quiet", "-p", "conformance", "--", "--accel", accel.name()]);
        suite.arg("--hypervisor").arg(&hypervisor);
        if smoke {
            suite.arg("--smoke");
        }
        if args.junit.is_some() {
            suite.arg("--junit").arg(results(accel));
        }
        suite.args(&args.filters);
        suite
    };
    if !step(&format!("conformance suite under {}", choice.accel.name()), suite(choice.accel, false))? {
        failed.push("conformance suite");
    }
    if kvm_smoke && !step("conformance smoke subset under kvm (TCG ran the whole suite)", suite(Accel::Kvm, true))? {
        failed.push("conformance smoke subset under kvm");
    }
    if args.filters.is_empty() || args.filters.iter().any(|filter| GDB_SESSION.contains(filter.as_str())) {
        let session = gdb_session()?;
        if !matches!(session.outcome, junit::Outcome::Passed) {
            failed.push("gdb session");
        }
        report.push(junit::Suite { name: "xtask gdb".into(), cases: vec![session] });
    }
    // What the README tells a new user to do, done as they would (commands::first_steps).
    let (steps_failed, steps) = super::first_steps::run(&args.filters);
    failed.extend(steps_failed);
    report.push(steps);
    if let Some(path) = &args.junit {
        for accel in [Accel::Tcg, Accel::Kvm] {
            let Ok(text) = std::fs::read_to_string(results(accel)) else { continue };
            let suites = junit::suites_from_json(&text)
                .map_err(|error| Error::failed(format!("{}: {error}", results(accel).display())))?;
            report.extend(suites);
        }
        write_report(path, &report)?;
    }
    finish(&failed)
}

/// `--stress`: the build, then the loaded series (commands::stress).
fn stress(args: &TestArgs) -> Result<u8> {
    println!("xtask test: build");
    xtask::build::build_all()?;
    let hypervisor = match &args.hypervisor {
        Some(path) => path.canonicalize().map_err(|error| Error::io("cannot resolve", path, error))?,
        None => workspace::hypervisor_elf(),
    };
    let qemu = xtask::qemu::ensure_qemu()?;
    let choice = xtask::qemu::choose_accel(args.accel, &qemu, &hypervisor)?;
    for line in &choice.lines {
        println!("{line}");
    }
    let runs = args.runs.unwrap_or(super::stress::DEFAULT_RUNS);
    super::stress::run(runs, choice.accel, &hypervisor, &args.filters)
}

/// The name of the gdb step, matched by the filters like a conformance case's.
const GDB_SESSION: &str = "gdb_session";
/// The gdb step's limit: the scripted session takes about a second under TCG once built.
const GDB_SESSION_TIMEOUT_SECS: &str = "60";

/// Runs README's gdb session through `cargo xtask gdb --batch` under TCG (with its build)
/// and checks what gdb printed ([`xtask::gdb::check_scripted_session`]).
fn gdb_session() -> Result<junit::TestCase> {
    let exe = std::env::current_exe()
        .map_err(|error| Error::environment(format!("cannot find the running xtask binary: {error}")))?;
    let mut command = std::process::Command::new(exe);
    command.args(["gdb", "--accel", "tcg", "--timeout", GDB_SESSION_TIMEOUT_SECS, "--batch"]);
    for line in xtask::gdb::scripted_session() {
        command.arg("--ex").arg(line);
    }
    command.arg("--").args(xtask::gdb::scripted_command());
    let start = std::time::Instant::now();
    let (exited_ok, output) =
        step_captured("gdb session under tcg (cargo xtask gdb --batch, README's session)", command)?;
    let verdict = match (exited_ok, xtask::gdb::check_scripted_session(&output)) {
        (true, Ok(())) => Ok(()),
        (false, _) => Err("cargo xtask gdb failed (see its output above)".to_string()),
        (true, Err(problem)) => Err(problem),
    };
    let outcome = match verdict {
        Ok(()) => {
            println!("xtask test: gdb session passed");
            junit::Outcome::Passed
        }
        Err(message) => {
            eprintln!("error: gdb session: {message}");
            junit::Outcome::Failed { message, output }
        }
    };
    Ok(junit::TestCase { name: GDB_SESSION.into(), time: start.elapsed(), outcome })
}

/// The binary of guest-kernel's native platform check.
const NATIVE_CHECK: &str = "guest-kernel-native-check";
/// Its step's name, matched by the filters like a conformance case's.
const NATIVE_CHECK_CASE: &str = "native::check";
/// Its bound: it takes about a second under TCG.
const NATIVE_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// guest-kernel's native platform check (binary `guest-kernel-native-check`: the platform
/// driven through `Machine` alone, the refusals the kernel never asks for included),
/// built like the native kernel and booted as `cargo xtask run --native` boots it, under
/// TCG: it powers off with code 0 only when every check passed.
fn native_check(qemu: &std::path::Path) -> Result<junit::Suite> {
    println!("xtask test: guest-kernel native platform check under tcg ({NATIVE_CHECK})");
    let start = std::time::Instant::now();
    let mut arguments = xtask::native::cargo_args();
    match arguments.last_mut() {
        Some(bin) if bin == xtask::native::BIN => *bin = NATIVE_CHECK.to_string(),
        _ => {
            return Err(Error::failed(format!(
                "xtask::native::cargo_args no longer ends with --bin {}",
                xtask::native::BIN
            )))
        }
    }
    let mut cargo = workspace::cargo();
    cargo.args(arguments);
    let built = xtask::build::run_cargo(cargo, "guest-kernel's native platform check")?;
    let image = built
        .into_iter()
        .find(|(name, _)| name == NATIVE_CHECK)
        .map(|(_, path)| path)
        .ok_or_else(|| Error::failed(format!("cargo reported no executable for {NATIVE_CHECK}")))?;
    let launch = xtask::qemu::Launch {
        qemu: qemu.to_path_buf(),
        hypervisor: image,
        initrd: xtask::initramfs::path(),
        append: xtask::native::command_line(&[], &["0".to_string()])?,
        accel: Accel::Tcg,
        machine: xtask::qemu::Machine::Microvm,
        memory: xtask::kernel_args::MEMORY,
        extra: Vec::new(),
        timeout: NATIVE_CHECK_TIMEOUT,
    };
    println!("qemu: {}", launch.display());
    let outcome = xtask::qemu::run(&launch, xtask::qemu::ConsoleMode::Stream)?;
    let verdict = xtask::native::verdict(&outcome);
    let outcome = if verdict.code == 0 {
        println!("xtask test: native platform check passed ({:.1} s)", start.elapsed().as_secs_f64());
        junit::Outcome::Passed
    } else {
        let message = format!("the native platform check failed: {} (its console is above)", verdict.description);
        eprintln!("error: {message}");
        junit::Outcome::Failed { message, output: outcome.output }
    };
    let case = junit::TestCase { name: NATIVE_CHECK_CASE.into(), time: start.elapsed(), outcome };
    Ok(junit::Suite { name: "xtask native".into(), cases: vec![case] })
}

fn write_report(path: &std::path::Path, report: &[junit::Suite]) -> Result<()> {
    std::fs::write(path, junit::render("ringfence", report)).map_err(|error| Error::io("cannot write", path, error))?;
    println!("xtask test: JUnit report written to {}", path.display());
    Ok(())
}

fn finish(failed: &[&str]) -> Result<u8> {
    if failed.is_empty() {
        println!("xtask test: everything passed");
        Ok(0)
    } else {
        Err(Error::failed(format!("xtask test: failed: {}", failed.join(", "))))
    }
}
