//! The ringfence ABI conformance runner: every case boots guests under the hypervisor in
//! QEMU and is judged by its console lines and exit status.
//!
//! Own options come first (`--accel`, `--hypervisor`, `--guests-dir`, `--initramfs`, `--timeout`,
//! `--smoke` for the smoke subset only); the rest goes to libtest-mimic (filters, `--list`,
//! `--test-threads`, ...).

mod cases;
mod cases_continuation;
mod cases_events;
mod cases_guide;
mod cases_hardening;
mod cases_kernel;
mod cases_memory;
mod cases_module;
mod cases_traps;
mod judge;
#[cfg(test)]
mod spec;

use cases::{Case, ImageSource, Mutation};
use hypercall_abi::AbiVersion;
use judge::Ending;
use libtest_mimic::{Arguments, Failed, Trial};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use xtask::accel::Accel;
use xtask::qemu::{self, ConsoleMode, Launch, Machine};
use xtask::{archive, cmdline, images, junit, workspace};

/// Console lines shown with a failure.
const TAIL_LINES: usize = 40;

/// The runner's own options.
#[derive(Clone, Debug)]
struct Options {
    accel: Accel,
    hypervisor: PathBuf,
    guests_dir: PathBuf,
    /// guest-kernel's initramfs, the module of its domains.
    initramfs: PathBuf,
    timeout: Duration,
    qemu: PathBuf,
}

/// One row of the closing summary (and of the JUnit report).
#[derive(Clone, Debug)]
struct Row {
    case: String,
    result: &'static str,
    wall_ms: u128,
    status: String,
    /// Why it failed, and its console, for the report.
    failure: Option<(String, String)>,
}

fn usage_error(message: String) -> ! {
    eprintln!("error: {message}");
    eprintln!(
        "usage: conformance [--accel kvm|tcg] [--hypervisor PATH] [--guests-dir PATH] [--initramfs PATH] [--timeout SECS] [--smoke] [--junit FILE] [libtest options] [FILTER...]"
    );
    std::process::exit(2)
}

/// Our options as given (`None` = default), the arguments left for libtest-mimic, and the
/// name filters (libtest-mimic takes only one; we take several and apply them ourselves).
#[derive(Debug, Default)]
struct Parsed {
    accel: Option<Accel>,
    hypervisor: Option<PathBuf>,
    guests_dir: Option<PathBuf>,
    initramfs: Option<PathBuf>,
    timeout: Option<u64>,
    /// Only the smoke subset ([`cases::SMOKE`]).
    smoke: bool,
    /// Where to write the results as JSON for `cargo xtask test --junit`.
    junit: Option<PathBuf>,
    rest: Vec<String>,
    filters: Vec<String>,
}

/// libtest-mimic options whose value is the next argument.
const LIBTEST_VALUE_OPTIONS: &[&str] = &["--test-threads", "--logfile", "--skip", "--color", "--format"];

/// True if `name` passes the filters: no filters, or any filter is a substring (with
/// `--exact`: equal).
fn selected(name: &str, filters: &[String], exact: bool) -> bool {
    filters.is_empty()
        || filters.iter().any(|filter| if exact { name == filter } else { name.contains(filter.as_str()) })
}

/// Splits our options from libtest-mimic's.
fn parse_options(raw: Vec<String>) -> Parsed {
    let mut parsed = Parsed::default();
    let mut iter = raw.into_iter();
    if let Some(program) = iter.next() {
        parsed.rest.push(program);
    }
    while let Some(arg) = iter.next() {
        let (key, inline) = match arg.split_once('=') {
            Some((key, value)) if key.starts_with("--") => (key.to_string(), Some(value.to_string())),
            _ => (arg.clone(), None),
        };
        if LIBTEST_VALUE_OPTIONS.contains(&arg.as_str()) {
            parsed.rest.push(arg);
            parsed.rest.extend(iter.next());
            continue;
        }
        if !arg.starts_with('-') {
            parsed.filters.push(arg);
            continue;
        }
        if arg == "--smoke" {
            parsed.smoke = true;
            continue;
        }
        if !matches!(
            key.as_str(),
            "--accel" | "--hypervisor" | "--guests-dir" | "--initramfs" | "--timeout" | "--junit"
        ) {
            parsed.rest.push(arg);
            continue;
        }
        let value = inline.or_else(|| iter.next()).unwrap_or_else(|| usage_error(format!("{key} needs a value")));
        match key.as_str() {
            "--accel" => {
                parsed.accel = Some(match value.as_str() {
                    "kvm" => Accel::Kvm,
                    "tcg" => Accel::Tcg,
                    other => usage_error(format!("--accel {other}: expected kvm or tcg")),
                })
            }
            "--hypervisor" => parsed.hypervisor = Some(PathBuf::from(value)),
            "--guests-dir" => parsed.guests_dir = Some(PathBuf::from(value)),
            "--initramfs" => parsed.initramfs = Some(PathBuf::from(value)),
            "--junit" => parsed.junit = Some(PathBuf::from(value)),
            _ => {
                parsed.timeout = Some(
                    value.parse().unwrap_or_else(|_| usage_error(format!("--timeout {value}: expected whole seconds"))),
                )
            }
        }
    }
    parsed
}

fn read_guest(options: &Options, bin: &str) -> Result<Vec<u8>, String> {
    let path = options.guests_dir.join(format!("{bin}.elf"));
    std::fs::read(&path).map_err(|error| {
        format!("guest image {} cannot be read ({error}); run `cargo xtask build` (the guests come from guest-kernel and tests/guests)", path.display())
    })
}

fn mutate(image: &[u8], mutation: &Mutation) -> Result<Vec<u8>, String> {
    let current = images::abi_version(image).ok_or("the source image has no ABI note to mutate")?;
    let version = |major: u16, minor: u16| AbiVersion { major, minor };
    let mutated = match mutation {
        Mutation::MajorPlusOne => images::with_abi_version(image, version(current.major + 1, current.minor)),
        Mutation::MinorPlusOne => images::with_abi_version(image, version(current.major, current.minor + 1)),
        Mutation::MinorMinusOne => {
            let minor = current.minor.checked_sub(1).ok_or("minor is already 0")?;
            images::with_abi_version(image, version(current.major, minor))
        }
        Mutation::Truncate(length) => Ok(images::truncated(image, *length)),
    };
    mutated.map_err(|error| error.to_string())
}

/// The bytes `source` stands for; `None` for a name the archive must not hold.
fn member_bytes(source: &ImageSource, options: &Options) -> Result<Option<Vec<u8>>, String> {
    Ok(Some(match source {
        ImageSource::Bin(bin) => read_guest(options, bin)?,
        ImageSource::Mutated(bin, mutation) => mutate(&read_guest(options, bin)?, mutation)?,
        ImageSource::Garbage { seed, size } => images::garbage(*seed, *size),
        ImageSource::Initramfs => std::fs::read(&options.initramfs).map_err(|error| {
            format!(
                "guest-kernel's initramfs {} cannot be read ({error}); run `cargo xtask build` (it writes the initramfs)",
                options.initramfs.display()
            )
        })?,
        ImageSource::Missing => return Ok(None),
    }))
}

/// The archive members of a case, one per distinct present image or module, images first.
fn members(case: &Case, options: &Options) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut members: Vec<(String, Vec<u8>)> = Vec::new();
    let images = case.domains.iter().map(|spec| (&spec.image, &spec.source));
    let modules =
        case.domains.iter().filter_map(|spec| spec.module.as_ref().map(|module| (&module.member, &module.source)));
    for (name, source) in images.chain(modules) {
        if members.iter().any(|(existing, _)| existing == name) {
            continue;
        }
        if let Some(bytes) = member_bytes(source, options)? {
            members.push((name.clone(), bytes));
        }
    }
    // Every case has at least one member, so a missing name is refused by lookup, not by an
    // empty archive.
    Ok(members)
}

fn run_case(case: &Case, options: &Options, rows: &Mutex<Vec<Row>>) -> Result<(), Failed> {
    let record = |result: &'static str, wall_ms: u128, status: String, failure: Option<(String, String)>| {
        rows.lock().unwrap().push(Row { case: case.name.clone(), result, wall_ms, status, failure });
    };
    let prepared = (|| -> Result<Launch, String> {
        let members = members(case, options)?;
        let mut tokens = Vec::new();
        for spec in &case.domains {
            let domain = cmdline::Domain {
                image: spec.image.clone(),
                mem: spec.mem.map(str::to_string),
                maxmem: None,
                module: spec.module.as_ref().map(|module| module.member.clone()),
                args: spec
                    .args
                    .iter()
                    .map(|arg| cases_hardening::resolve_symbols(arg, &options.hypervisor))
                    .collect::<Result<_, _>>()?,
            };
            let mut token = domain.token().map_err(|error| error.to_string())?;
            for option in spec.token_options {
                token.push(',');
                token.push_str(option);
            }
            tokens.push(token);
        }
        tokens.extend(case.options.iter().map(|option| option.to_string()));
        let append = tokens.join(" ");
        let file_name: String =
            case.name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '-' }).collect();
        let initrd = workspace::runs_dir().join("conformance").join(format!("{file_name}.tar"));
        let bytes = archive::build(&members).map_err(|error| error.to_string())?;
        qemu::write_archive(&initrd, &bytes).map_err(|error| error.to_string())?;
        Ok(Launch {
            qemu: options.qemu.clone(),
            hypervisor: options.hypervisor.clone(),
            initrd,
            append,
            accel: options.accel,
            machine: Machine::Microvm,
            memory: case.machine_memory,
            extra: if case.virtual_time { options.accel.virtual_time_args() } else { Vec::new() },
            timeout: case.minimum_timeout.map_or(options.timeout, |minimum| minimum.max(options.timeout)),
        })
    })();
    let launch = match prepared {
        Ok(launch) => launch,
        Err(message) => {
            let message = format!("cannot prepare the case: {message}");
            record("ERROR", 0, "not run".into(), Some((message.clone(), String::new())));
            return Err(message.into());
        }
    };
    let input = match case.input {
        Some((after, bytes)) => qemu::ConsoleInput::After { after: after.to_string(), bytes: bytes.to_vec() },
        None => qemu::ConsoleInput::None,
    };
    let outcome = match qemu::run_with_input(&launch, ConsoleMode::Capture, input) {
        Ok(outcome) => outcome,
        Err(error) => {
            let message = format!("cannot run QEMU: {error}");
            record("ERROR", 0, "not run".into(), Some((message.clone(), String::new())));
            return Err(message.into());
        }
    };
    // The whole console of every case, passed or failed, beside its boot archive: the
    // measurements the guests print are worth reading even when nothing failed.
    let transcript = launch.initrd.with_extension("log");
    if let Err(error) = std::fs::write(&transcript, &outcome.output) {
        eprintln!("conformance: cannot write {}: {error}", transcript.display());
    }
    let ending = Ending { status: outcome.status, timed_out: outcome.timed_out, raw_exit: outcome.raw_exit };
    let verdict = judge::judge(&case.expectation, &ending, &outcome.output);
    let wall_ms = outcome.wall.as_millis();
    match verdict {
        Ok(()) => {
            record("ok", wall_ms, ending.to_string(), None);
            Ok(())
        }
        Err(problems) => {
            let mut message = String::new();
            message.push_str("expected:\n");
            for line in case.expectation.describe() {
                message.push_str(&format!("    {line}\n"));
            }
            message.push_str("seen:\n");
            for problem in problems {
                message.push_str(&format!("    {problem}\n"));
            }
            message.push_str(&format!("command line: {}\n", launch.append));
            message.push_str(&format!("qemu: {}\n", launch.display()));
            if !outcome.stderr.trim().is_empty() {
                message.push_str(&format!("QEMU stderr:\n{}\n", outcome.stderr.trim_end()));
            }
            message.push_str(&format!("last {TAIL_LINES} console lines:\n"));
            for line in judge::Transcript::parse(&outcome.output).tail(TAIL_LINES) {
                message.push_str(&format!("    | {line}\n"));
            }
            record("FAILED", wall_ms, ending.to_string(), Some((message.clone(), outcome.output.clone())));
            Err(message.into())
        }
    }
}

fn print_summary(rows: &[Row]) {
    if rows.is_empty() {
        return;
    }
    let width = rows.iter().map(|row| row.case.len()).max().unwrap_or(4).max(4);
    println!("\n{:<width$} | {:<6} | {:>7} | exit status", "case", "result", "wall ms");
    println!("{}", "-".repeat(width + 40));
    for row in rows {
        println!("{:<width$} | {:<6} | {:>7} | {}", row.case, row.result, row.wall_ms, row.status);
    }
}

fn main() -> ExitCode {
    let Parsed { accel: requested_accel, hypervisor, guests_dir, initramfs, timeout, smoke, junit, rest, filters } =
        parse_options(std::env::args().collect());
    let arguments = Arguments::from_iter(rest);
    let mut cases: Vec<Case> = cases::all()
        .into_iter()
        .filter(|case| selected(&case.name, &filters, arguments.exact))
        .filter(|case| !smoke || cases::SMOKE.contains(&case.name.as_str()))
        .collect();
    // The cases known to be long start first, so the others run beside them on the other
    // test threads instead of after them (the stable sort keeps the rest in order).
    cases.sort_by_key(|case| std::cmp::Reverse(case.minimum_timeout));

    if !arguments.list {
        let hypervisor_path = hypervisor.clone().unwrap_or_else(workspace::hypervisor_elf);
        if !hypervisor_path.is_file() {
            let fix = if hypervisor.is_some() { "" } else { "; run `cargo xtask build` first" };
            usage_error(format!("hypervisor image {} does not exist{fix}", hypervisor_path.display()));
        }
    }
    let qemu_binary = match (arguments.list, qemu::find_qemu()) {
        (_, Some(path)) => path,
        (true, None) => PathBuf::from(qemu::QEMU),
        (false, None) => usage_error(format!(
            "{} not found in PATH; install it with: sudo apt-get install -y {} (or run `cargo xtask test`, which installs it)",
            qemu::QEMU,
            qemu::QEMU_PACKAGE
        )),
    };
    let hypervisor = hypervisor.unwrap_or_else(workspace::hypervisor_elf);
    // KVM is probed once for the whole suite: a host where it cannot boot the hypervisor
    // falls back to TCG here instead of failing every case the same way.
    let accel = if arguments.list {
        requested_accel.unwrap_or(Accel::Tcg)
    } else {
        match qemu::choose_accel(requested_accel, &qemu_binary, &hypervisor) {
            Ok(choice) => {
                for line in &choice.lines {
                    println!("{line}");
                }
                choice.accel
            }
            Err(error) => usage_error(error.message),
        }
    };
    // Under a PVM-based KVM host every guest exception and trapping hypercall is a host
    // round trip (~0.7 ms), so the 100 000-call fuzz case and the 100 000-fault loop
    // (three round trips per fault) need minutes there; a hang still ends at this bound.
    let default_timeout = 480;
    let options = Arc::new(Options {
        accel,
        hypervisor,
        guests_dir: guests_dir.unwrap_or_else(workspace::guests_dir),
        initramfs: initramfs.unwrap_or_else(xtask::initramfs::path),
        timeout: Duration::from_secs(timeout.unwrap_or(default_timeout)),
        qemu: qemu_binary,
    });
    if !arguments.list {
        println!(
            "conformance: hypervisor {}, guests {}, initramfs {}, timeout {} s per case",
            display(&options.hypervisor),
            display(&options.guests_dir),
            display(&options.initramfs),
            options.timeout.as_secs()
        );
    }

    let rows = Arc::new(Mutex::new(Vec::new()));
    let trials = cases
        .into_iter()
        .map(|case| {
            let options = Arc::clone(&options);
            let rows = Arc::clone(&rows);
            Trial::test(case.name.clone(), move || run_case(&case, &options, &rows))
        })
        .collect();
    let conclusion = libtest_mimic::run(&arguments, trials);
    let mut rows = rows.lock().unwrap().clone();
    rows.sort_by(|a, b| a.case.cmp(&b.case));
    print_summary(&rows);
    if let Some(path) = &junit {
        let suite = junit_suite(&rows, options.accel);
        if let Err(error) = std::fs::write(path, junit::suites_to_json(&[suite])) {
            eprintln!("error: cannot write {}: {error}", path.display());
            return ExitCode::from(1);
        }
    }
    conclusion.exit_code()
}

/// The rows as one JUnit suite; a failure carries its judgement and the case's console.
fn junit_suite(rows: &[Row], accel: Accel) -> junit::Suite {
    let cases = rows
        .iter()
        .map(|row| junit::TestCase {
            name: row.case.clone(),
            time: Duration::from_millis(u64::try_from(row.wall_ms).unwrap_or(u64::MAX)),
            outcome: match &row.failure {
                None => junit::Outcome::Passed,
                Some((message, console)) => junit::Outcome::Failed {
                    message: message.lines().next().unwrap_or("failed").to_string(),
                    output: format!("{message}\nconsole:\n{console}"),
                },
            },
        })
        .collect();
    junit::Suite { name: format!("conformance ({})", accel.name()), cases }
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|item| item.to_string()).collect()
    }

    #[test]
    fn own_options_are_split_from_libtest_ones() {
        let parsed = parse_options(strings(&[
            "conformance",
            "--smoke",
            "--junit=/tmp/j.json",
            "--accel",
            "tcg",
            "--test-threads=1",
            "--hypervisor=/x/hv.elf",
            "privileged",
            "--timeout",
            "5",
            "--guests-dir",
            "/g",
            "--initramfs=/i.cpio",
            "--skip",
            "abi",
            "hello",
        ]));
        assert_eq!(parsed.accel, Some(Accel::Tcg));
        assert_eq!(parsed.hypervisor, Some(PathBuf::from("/x/hv.elf")));
        assert_eq!(parsed.guests_dir, Some(PathBuf::from("/g")));
        assert_eq!(parsed.initramfs, Some(PathBuf::from("/i.cpio")));
        assert_eq!(parsed.timeout, Some(5));
        assert!(parsed.smoke);
        assert_eq!(parsed.junit, Some(PathBuf::from("/tmp/j.json")));
        assert_eq!(parsed.rest, strings(&["conformance", "--test-threads=1", "--skip", "abi"]));
        assert_eq!(parsed.filters, strings(&["privileged", "hello"]));
        assert!(!parse_options(strings(&["conformance"])).smoke);
    }

    #[test]
    fn several_filters_select_any() {
        let filters = strings(&["privileged::", "hello"]);
        assert!(selected("privileged::cli", &filters, false));
        assert!(selected("hello", &filters, false));
        assert!(!selected("abi::major_mismatch", &filters, false));
        assert!(selected("anything", &[], false));
        assert!(!selected("hello2", &strings(&["hello"]), true));
    }

    #[test]
    fn mutations_change_the_note() {
        let image = images::elf_with_abi_note(hypercall_abi::ABI_VERSION);
        let current = hypercall_abi::ABI_VERSION;
        let major = images::abi_version(&mutate(&image, &Mutation::MajorPlusOne).unwrap()).unwrap();
        assert_eq!((major.major, major.minor), (current.major + 1, current.minor));
        let minor = images::abi_version(&mutate(&image, &Mutation::MinorPlusOne).unwrap()).unwrap();
        assert_eq!((minor.major, minor.minor), (current.major, current.minor + 1));
        assert_eq!(mutate(&image, &Mutation::Truncate(10)).unwrap().len(), 10);
        assert!(mutate(&[0u8; 64], &Mutation::MajorPlusOne).is_err(), "no note, no mutation");
    }
}
