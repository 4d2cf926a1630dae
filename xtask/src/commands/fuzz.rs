//! `cargo xtask fuzz`: boots fuzzer guests (tests/guests `fuzz`) beside a witness domain
//! (`fuzz_witness`) with the hypervisor's end-of-run audit on (`audit`, SPEC.md §2.4), and
//! passes only if every fuzzer found every result documented, the witness kept its
//! heartbeat, and the audit found frames, ports, address spaces and timers back at their
//! starting counts. A failure prints the seed and the command that replays it.

use clap::Args;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use xtask::accel::Accel;
use xtask::build::{self, GuestBin};
use xtask::cmdline::{self, Domain};
use xtask::qemu::{self, ConsoleMode, Launch, Machine};
use xtask::{archive, workspace, Error, Result};

/// Options of `cargo xtask fuzz`.
#[derive(Args, Debug)]
pub struct FuzzArgs {
    /// Hypercalls in all, shared among the fuzzers (1 to 10^10).
    #[arg(long, default_value_t = 100_000)]
    pub calls: u64,
    /// The run's seed (default: from the clock, printed); fuzzer k uses seed + k.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Fuzzer domains, each fuzzing the others' ports (1 to 16).
    #[arg(long, default_value_t = 2)]
    pub domains: u64,
    /// Print every call of every fuzzer from this call number on (to find the call that
    /// killed a run: take the last `call #N` progress line before it).
    #[arg(long, value_name = "N")]
    pub echo_from: Option<u64>,
    /// Accelerator (TCG unless told; kvm-pvm hosts trap slowly).
    #[arg(long, value_enum, default_value_t = Accel::Tcg)]
    pub accel: Accel,
    /// Kill QEMU after this many seconds (default: 60 plus 1 s per 20 000 calls).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
}

/// Most fuzzer domains.
const MAX_DOMAINS: u64 = 16;
/// Most calls in one run.
const MAX_CALLS: u64 = 10_000_000_000;
/// The witness's heartbeat period.
const PERIOD_US: u64 = 1000;

/// Checks the numbers the user gave.
fn validate(args: &FuzzArgs) -> Result<()> {
    if !(1..=MAX_DOMAINS).contains(&args.domains) {
        return Err(Error::usage(format!(
            "--domains {}: give 1 to {MAX_DOMAINS} fuzzer domains (each fuzzes the others' ports)",
            args.domains
        )));
    }
    if !(1..=MAX_CALLS).contains(&args.calls) {
        return Err(Error::usage(format!("--calls {}: give 1 to {MAX_CALLS} hypercalls", args.calls)));
    }
    if args.calls < args.domains {
        return Err(Error::usage(format!(
            "--calls {} is fewer than --domains {}: every fuzzer needs at least one call",
            args.calls, args.domains
        )));
    }
    if args.timeout == Some(0) {
        return Err(Error::usage("--timeout 0: give a number of seconds above 0"));
    }
    Ok(())
}

/// The domains: the witness (d1), then the fuzzers (d2...), each with its calls, seed,
/// peers and the witness's port offered to it.
fn domains(args: &FuzzArgs, seed: u64) -> Vec<Domain> {
    let fuzzers: Vec<u64> = (2..2 + args.domains).collect();
    let list = |ids: &[u64]| ids.iter().map(u64::to_string).collect::<Vec<_>>().join(":");
    let max_gap_ms = 2000 + 100 * args.domains;
    let mut witness = Domain::new("fuzz_witness");
    witness.args = vec![
        format!("fuzzers={}", list(&fuzzers)),
        format!("period_us={PERIOD_US}"),
        format!("max_gap_ms={max_gap_ms}"),
    ];
    let mut all = vec![witness];
    for (index, &id) in fuzzers.iter().enumerate() {
        let share = args.calls / args.domains + u64::from((index as u64) < args.calls % args.domains);
        let peers: Vec<u64> = fuzzers.iter().copied().filter(|&other| other != id).collect();
        let mut fuzzer = Domain::new("fuzz");
        fuzzer.mem = Some("4M".into());
        fuzzer.maxmem = Some("8M".into());
        fuzzer.args = vec![
            format!("calls={share}"),
            format!("seed={}", seed.wrapping_add(index as u64)),
            "witness=1".into(),
            format!("link={}", index + 1),
        ];
        if !peers.is_empty() {
            fuzzer.args.push(format!("peers={}", list(&peers)));
        }
        if let Some(from) = args.echo_from {
            fuzzer.args.push(format!("echo_from={from}"));
        }
        all.push(fuzzer);
    }
    all
}

/// What went wrong in a run's console, one line each (empty: it passed).
pub fn verdict(output: &str, domains: u64) -> Vec<String> {
    let mut problems = Vec::new();
    for id in 1..=domains + 1 {
        let prefix = format!("(d{id}) ");
        let lines: Vec<&str> = output.lines().filter(|line| line.starts_with(&prefix)).collect();
        problems.extend(
            lines.iter().filter(|line| line.contains("FAIL") || line.contains("ERROR")).map(|line| line.to_string()),
        );
        if !lines.iter().any(|line| line.ends_with("Test result: SUCCESS")) {
            let last = lines.iter().rev().find(|line| line.contains("call #")).copied().unwrap_or("no progress line");
            problems.push(format!("d{id} did not pass (last progress: {last})"));
        }
    }
    problems.extend(output.lines().filter(|line| line.contains(": killed: ")).map(str::to_string));
    match output.lines().find(|line| line.starts_with("(hv) audit: ")) {
        Some(line) if line.ends_with(": ok") => {}
        Some(line) => problems.push(line.to_string()),
        None => problems.push("no '(hv) audit:' line: the run did not end normally".into()),
    }
    problems
}

/// Builds, boots and judges one run.
pub fn main(args: FuzzArgs) -> Result<u8> {
    validate(&args)?;
    let seed = args.seed.unwrap_or_else(|| {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |time| time.as_secs() ^ u64::from(time.subsec_nanos()))
    });
    let replay = format!("cargo xtask fuzz --calls {} --seed {seed} --domains {}", args.calls, args.domains);
    eprintln!("fuzz: {} calls over {} fuzzers, seed {seed} (replay: {replay})", args.calls, args.domains);
    let qemu_binary = qemu::ensure_qemu()?;
    qemu::check_accel_request(Some(args.accel))?;
    let known = build::guest_bins()?;
    let wanted = ["fuzz", "fuzz_witness"];
    let guests: Vec<GuestBin> = known.into_iter().filter(|guest| wanted.contains(&guest.bin.as_str())).collect();
    build::build(&build::Images::Hypervisor(guests))?;
    let mut members = Vec::new();
    for name in wanted {
        let path = workspace::guests_dir().join(format!("{name}.elf"));
        let bytes = std::fs::read(&path).map_err(|error| Error::io("cannot read guest image", &path, error))?;
        members.push((name.to_string(), bytes));
    }
    let initrd = workspace::runs_dir().join("fuzz.tar");
    qemu::write_archive(&initrd, &archive::build(&members)?)?;
    let timeout = args.timeout.map_or(Duration::from_secs(60 + args.calls / 20_000), Duration::from_secs);
    let launch = Launch {
        qemu: qemu_binary,
        hypervisor: workspace::hypervisor_elf(),
        initrd,
        append: cmdline::command_line(&domains(&args, seed), &["audit".to_string()])?,
        accel: args.accel,
        machine: Machine::Microvm,
        memory: qemu::MACHINE_MEMORY,
        extra: Vec::new(),
        timeout,
    };
    let outcome = qemu::run(&launch, ConsoleMode::Stream)?;
    let wall = outcome.wall.as_secs_f64();
    let mut problems = verdict(&outcome.output, args.domains);
    if outcome.timed_out || outcome.status.is_none() {
        problems.push(outcome.describe(timeout));
    }
    if problems.is_empty() {
        let rate = args.calls as f64 / wall.max(1e-9);
        eprintln!("fuzz: passed: {} calls, seed {seed}, {wall:.1} s wall ({rate:.0} calls/s)", args.calls);
        return Ok(0);
    }
    for problem in &problems {
        eprintln!("fuzz: {problem}");
    }
    Err(Error::failed(format!(
        "fuzzing found {} problem(s) with seed {seed}; replay with: {replay} (add --echo-from N to see each call from N on)",
        problems.len()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(calls: u64, domains: u64) -> FuzzArgs {
        FuzzArgs { calls, seed: Some(5), domains, echo_from: None, accel: Accel::Tcg, timeout: None }
    }

    #[test]
    fn bad_numbers_are_usage_errors_naming_the_option() {
        for (bad, option) in [(args(10, 0), "--domains 0"), (args(10, 17), "--domains 17"), (args(0, 1), "--calls 0")] {
            let error = validate(&bad).unwrap_err();
            assert_eq!(error.exit_code, xtask::error::EXIT_USAGE);
            assert!(error.message.contains(option), "{}", error.message);
        }
        assert!(validate(&args(3, 4)).unwrap_err().message.contains("fewer than --domains"));
        assert!(validate(&FuzzArgs { timeout: Some(0), ..args(10, 1) }).is_err());
        assert!(validate(&args(100_000, 2)).is_ok());
    }

    #[test]
    fn calls_are_shared_and_seeds_follow_the_run_seed() {
        let domains = domains(&args(10, 3), 40);
        assert_eq!(domains[0].image, "fuzz_witness");
        assert_eq!(domains[0].args[0], "fuzzers=2:3:4");
        let calls: Vec<&str> = domains[1..].iter().map(|domain| domain.args[0].as_str()).collect();
        assert_eq!(calls, ["calls=4", "calls=3", "calls=3"]);
        assert_eq!(domains[2].args[1..4], ["seed=41", "witness=1", "link=2"]);
        assert_eq!(domains[2].args[4], "peers=2:4");
    }

    #[test]
    fn the_verdict_needs_every_success_and_a_clean_audit() {
        let good = "(d1) Test result: SUCCESS\n(d2) Test result: SUCCESS\n(hv) audit: frames free 5 -> 5: ok\n";
        assert!(verdict(good, 1).is_empty());
        let failed = good.replace("(d2) Test result: SUCCESS", "(d2) fuzz: call #65536 (seed 1)\n(d2) FAIL: x");
        let problems = verdict(&failed, 1);
        assert!(problems.iter().any(|problem| problem.contains("FAIL: x")), "{problems:?}");
        assert!(problems.iter().any(|problem| problem.contains("call #65536")), "{problems:?}");
        let leaked = good.replace("5 -> 5: ok", "5 -> 4: FAILED (frames free not back)");
        assert_eq!(verdict(&leaked, 1), ["(hv) audit: frames free 5 -> 4: FAILED (frames free not back)"]);
        assert!(verdict("(d1) Test result: SUCCESS\n(d2) Test result: SUCCESS\n", 1)[0].contains("no '(hv) audit:'"));
    }
}
