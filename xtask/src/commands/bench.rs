//! `cargo xtask bench`: the bench guest's cycle counts beside a native Linux syscall
//! measured in the same run.

use clap::Args;
use std::time::Duration;
use xtask::cmdline::{self, Domain};
use xtask::qemu::{self, Accel, ConsoleMode, Launch, Machine};
use xtask::{archive, workspace, Error, Result};

/// Options of `cargo xtask bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Accelerator (default: kvm if /dev/kvm is usable, else tcg).
    #[arg(long, value_enum)]
    accel: Option<Accel>,
}

/// The guest that runs the benchmarks.
const BENCH_GUEST: &str = "bench";
/// Reference iterations before measuring.
const WARM_UP: usize = 10_000;
/// Measured reference iterations.
const ITERATIONS: usize = 200_000;
/// Goal ratio for the null hypercall, guest median / native syscall median.
const NULL_HYPERCALL_GOAL: &str = "<= 0.7x";

/// One `bench <name> median <c> p99 <c> iterations <n>` line.
#[derive(Debug, PartialEq, Eq)]
struct GuestBench {
    name: String,
    median: u64,
    p99: u64,
    iterations: u64,
}

/// Parses a benchmark line, with or without its `(dN) ` prefix.
fn parse_bench(line: &str) -> Option<GuestBench> {
    let line = line.trim_end_matches('\r');
    let line = match line.strip_prefix("(d") {
        Some(rest) => rest.split_once(") ")?.1,
        None => line,
    };
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["bench", name, "median", median, "p99", p99, "iterations", iterations] => Some(GuestBench {
            name: name.to_string(),
            median: median.parse().ok()?,
            p99: p99.parse().ok()?,
            iterations: iterations.parse().ok()?,
        }),
        _ => None,
    }
}

/// `(hv) boot: first guest instruction <N> cycles after hypervisor entry` -> N.
fn parse_boot_cycles(output: &str) -> Option<u64> {
    output.lines().find_map(|line| {
        let rest = line.trim_end_matches('\r').strip_prefix("(hv) boot: first guest instruction ")?;
        rest.strip_suffix(" cycles after hypervisor entry")?.parse().ok()
    })
}

/// Median and 99th percentile of `samples` (sorted in place).
fn median_p99(samples: &mut [u64]) -> (u64, u64) {
    assert!(!samples.is_empty());
    samples.sort_unstable();
    let p99 = (samples.len() * 99 / 100).min(samples.len() - 1);
    (samples[samples.len() / 2], samples[p99])
}

#[inline(always)]
fn timestamp() -> u64 {
    use core::arch::x86_64::{_mm_lfence, _rdtsc};
    // SAFETY: lfence and rdtsc only order and read the time-stamp counter; SSE2 (lfence)
    // is part of the x86_64 baseline and rdtsc is always available in user mode on Linux.
    #[allow(unused_unsafe)]
    unsafe {
        _mm_lfence();
        let time = _rdtsc();
        _mm_lfence();
        time
    }
}

/// The native reference: getppid, per-iteration cycles.
fn measure_getppid() -> (u64, u64) {
    let mut sink = 0u32;
    for _ in 0..WARM_UP {
        sink = sink.wrapping_add(std::os::unix::process::parent_id());
    }
    let mut samples = Vec::with_capacity(ITERATIONS);
    for _ in 0..ITERATIONS {
        let start = timestamp();
        sink = sink.wrapping_add(std::os::unix::process::parent_id());
        let end = timestamp();
        samples.push(end.wrapping_sub(start));
    }
    std::hint::black_box(sink);
    median_p99(&mut samples)
}

fn ratio(guest: u64, reference: u64) -> String {
    if reference == 0 {
        "n/a".to_string()
    } else {
        format!("{:.2}x", guest as f64 / reference as f64)
    }
}

/// The comparison table, one row per guest benchmark.
fn table(benches: &[GuestBench], reference_median: u64, reference_p99: u64) -> String {
    let mut text = format!(
        "{:<20} | {:>12} | {:>10} | {:<9} | {:>10} | {:>8} | {:>6} | goal\n",
        "benchmark", "guest median", "guest p99", "reference", "ref median", "ref p99", "ratio"
    );
    for bench in benches {
        let goal = if bench.name.contains("null") { NULL_HYPERCALL_GOAL } else { "" };
        text.push_str(&format!(
            "{:<20} | {:>12} | {:>10} | {:<9} | {:>10} | {:>8} | {:>6} | {goal}\n",
            // The wire name is one word; the table uses the issue's row names.
            bench.name.replace('_', " "),
            bench.median,
            bench.p99,
            "getppid",
            reference_median,
            reference_p99,
            ratio(bench.median, reference_median)
        ));
    }
    text
}

/// Runs the bench guest once and prints the table.
pub fn main(args: BenchArgs) -> Result<u8> {
    let qemu_binary = qemu::ensure_qemu()?;
    let accel = qemu::select_accel(args.accel)?;
    xtask::build::build_all()?;
    let image = workspace::guests_dir().join(format!("{BENCH_GUEST}.elf"));
    let bytes = std::fs::read(&image).map_err(|error| {
        Error::failed(format!("cannot read {}: {error}; the conformance guests should provide a `{BENCH_GUEST}` binary", image.display()))
    })?;
    let initrd = workspace::runs_dir().join("bench.tar");
    qemu::write_archive(&initrd, &archive::build(&[(BENCH_GUEST.to_string(), bytes)])?)?;
    let launch = Launch {
        qemu: qemu_binary,
        hypervisor: workspace::hypervisor_elf(),
        initrd,
        append: cmdline::command_line(&[Domain::new(BENCH_GUEST)], &[])?,
        accel,
        machine: Machine::Microvm,
        extra: Vec::new(),
        // A PVM-based KVM host costs ~0.7 ms per trapping hypercall: 101 000 calls take ~75 s.
        timeout: Duration::from_secs(if accel == Accel::Kvm { 300 } else { 600 }),
    };
    println!("{}", qemu::describe_accel(accel, args.accel));
    let outcome = qemu::run(&launch, ConsoleMode::Capture)?;
    let (reference_median, reference_p99) = measure_getppid();

    let benches: Vec<GuestBench> = outcome.output.lines().filter_map(parse_bench).collect();
    if benches.is_empty() || outcome.xtask_exit_code() != 0 {
        let tail: Vec<&str> = outcome.output.lines().rev().take(40).collect();
        for line in tail.iter().rev() {
            println!("{line}");
        }
        return Err(Error::failed(format!(
            "the bench run did not succeed ({}; {} bench lines)",
            outcome.describe(launch.timeout),
            benches.len()
        )));
    }

    print!("{}", table(&benches, reference_median, reference_p99));
    println!("(cycles per iteration; guest iterations as reported, reference {ITERATIONS} after {WARM_UP} warm-up)");
    match parse_boot_cycles(&outcome.output) {
        Some(cycles) => println!("boot: first guest instruction {cycles} cycles after hypervisor entry"),
        None => println!("boot: the hypervisor printed no boot-time line"),
    }
    println!("wall time of the QEMU run: {} ms ({})", outcome.wall.as_millis(), accel.name());
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_lines_are_parsed() {
        assert_eq!(
            parse_bench("(d1) bench null_hypercall median 120 p99 180 iterations 100000\r"),
            Some(GuestBench { name: "null_hypercall".into(), median: 120, p99: 180, iterations: 100_000 })
        );
        assert!(parse_bench("bench x median 1 p99 2 iterations 3").is_some());
        assert_eq!(parse_bench("(d1) bench x median one p99 2 iterations 3"), None);
        assert_eq!(parse_bench("(hv) bench reserved"), None);
        assert_eq!(parse_bench("(d1) Test result: SUCCESS"), None);
    }

    #[test]
    fn boot_line_is_parsed() {
        let output = "(hv) ringfence\n(hv) boot: first guest instruction 123456 cycles after hypervisor entry\r\n";
        assert_eq!(parse_boot_cycles(output), Some(123_456));
        assert_eq!(parse_boot_cycles("(hv) boot: first guest instruction x cycles after hypervisor entry"), None);
    }

    #[test]
    fn table_rows() {
        let bench = parse_bench("bench null_hypercall median 52 p99 80 iterations 200000").unwrap();
        let text = table(&[bench], 100, 140);
        let rows: Vec<&str> = text.lines().collect();
        let header: Vec<&str> = rows[0].split('|').map(str::trim).collect();
        assert_eq!(header, ["benchmark", "guest median", "guest p99", "reference", "ref median", "ref p99", "ratio", "goal"]);
        let cells: Vec<&str> = rows[1].split('|').map(str::trim).collect();
        assert_eq!(cells, ["null hypercall", "52", "80", "getppid", "100", "140", "0.52x", "<= 0.7x"]);
    }

    #[test]
    fn statistics() {
        let mut samples: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(median_p99(&mut samples), (51, 100));
        assert_eq!(median_p99(&mut [7]), (7, 7));
        assert_eq!(ratio(52, 100), "0.52x");
        assert_eq!(ratio(1, 0), "n/a");
    }

    #[test]
    fn reference_is_measured() {
        let (median, p99) = measure_getppid();
        assert!(median > 0 && p99 >= median);
    }
}
