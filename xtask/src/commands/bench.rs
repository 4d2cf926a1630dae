//! `cargo xtask bench`: the bench guests' cycle counts beside native Linux references
//! measured in the same run, as ratios against the issue's goals.
//!
//! Each benchmark guest is booted on its own (one QEMU run per guest, one after the
//! other), so a guest that crashes, hangs or is refused loses only its own rows and the
//! rest of the table is still printed. A guest may be booted as several domains: the
//! event-channel and domain-switch guests as a pair that know each other's ids, the boot
//! row's guest as 64 copies. The host references are measured after the last QEMU run,
//! when nothing else of ours is running.

use clap::Args;
use std::time::Duration;
use xtask::accel::Accel;
use xtask::cmdline::{self, Domain};
use xtask::qemu::{self, ConsoleMode, Launch, Machine, RunOutcome};
use xtask::{archive, workspace, Error, Result};

use super::bench_xen::{self, XenColumn};
use super::host_reference::{Measurement, Reference};

/// Options of `cargo xtask bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Accelerator (default: the faster of KVM and TCG on this host, measured once and cached).
    #[arg(long, value_enum)]
    accel: Option<Accel>,
    /// Measured iterations of every row but `null hypercall` (which always makes 100 000)
    /// and `boot 64 domains` (one boot). Defaults under KVM: 2000, 20 for `map batch`
    /// (~1.5 s per iteration on a PVM host), 1000 for `timer` (~10 ms each), 100000 for
    /// `time now` (no trap); under TCG: 20000, 2000 for `map batch` and `timer`, 100000
    /// for `time now`.
    #[arg(long)]
    iterations: Option<u64>,
    /// Run only the guests of rows whose wire name contains this word (repeatable),
    /// e.g. `--row page_fault`.
    #[arg(long = "row")]
    rows: Vec<String>,
    /// Also write every row (guest and reference medians and p99, iterations, ratio, goal)
    /// as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<std::path::PathBuf>,
    /// Instead: the lmbench table, one program on Debian's Linux natively and on Xen, on
    /// guest-kernel natively and on ringfence (`--iterations` and `--row` go to lmbench).
    #[arg(long)]
    kernel: bool,
    /// With --kernel: kill a column's QEMU after SECS (default 900 under TCG, 1800 under KVM).
    #[arg(long, value_name = "SECS", requires = "kernel")]
    timeout: Option<u64>,
    /// Boot every guest and the xen column (with --kernel: every column) N times and keep,
    /// per row, the boot with the lowest median (default 3 under TCG, 1 with --counted or
    /// under KVM; the rows on instruction-counted time always boot once).
    #[arg(long, value_name = "N")]
    boots: Option<u32>,
    /// Under TCG, run every guest and the xen column on QEMU's instruction-counted time
    /// (`-icount shift=0,sleep=off`): the TSC then advances once per instruction, so each
    /// figure is INSTRUCTIONS per iteration, the same on every run whatever the host's
    /// load (the timer row's lateness is then in instructions too). The host references
    /// stay in host TSC cycles, so their ratio column mixes units; ringfence/xen does not.
    /// With --kernel: all four columns, so every figure and ratio is in instructions.
    /// Where the instructions go: xtask/scripts/trace_split.py.
    #[arg(long)]
    counted: bool,
}

/// One row of the table: a guest measurement and the native reference it is held against.
#[derive(Copy, Clone, Debug, PartialEq)]
struct Row {
    /// The name in the guest's `bench <wire> ...` line.
    wire: &'static str,
    /// The name in the table (the issue's).
    title: &'static str,
    /// The native operation it is compared with; `None` for a row judged by a bound of its
    /// own (printed under the table).
    reference: Option<Reference>,
    /// Largest acceptable guest/reference ratio; `None` if the issue sets none.
    goal: Option<f64>,
    /// What one sample is, for rows that are not simply the cycles of one operation
    /// (printed under the table).
    note: Option<&'static str>,
}

/// Every row, in table order.
const ROWS: [Row; 13] = [
    Row { wire: "null_hypercall", title: "null hypercall", reference: Some(Reference::Getppid), goal: Some(0.7), note: None },
    Row { wire: "user_syscall", title: "user syscall", reference: Some(Reference::Getppid), goal: Some(2.0), note: None },
    Row { wire: "page_fault", title: "page fault", reference: Some(Reference::MinorFault), goal: Some(2.0), note: None },
    Row { wire: "map_batch", title: "map batch", reference: Some(Reference::MapPopulate), goal: Some(1.0), note: None },
    Row { wire: "exception_bounce", title: "exception bounce", reference: Some(Reference::Sigtrap), goal: None, note: None },
    Row {
        wire: "event_channel",
        title: "event channel",
        reference: Some(Reference::PipePingPong),
        goal: Some(0.5),
        note: Some("round trip between two domains: SEND, POLL until the reply; host: 1-byte ping-pong over two pipes, two processes on one CPU"),
    },
    Row {
        wire: "event_loopback",
        title: "event loopback",
        reference: Some(Reference::PipePingPong),
        goal: None,
        note: Some("SEND + POLL twice over a channel whose two ends are in one domain (no switch), the shape of Xen's loopback figure; host: as for the event channel; its bound is printed under the table"),
    },
    Row { wire: "time_now", title: "time now", reference: Some(Reference::ClockGettime), goal: Some(1.0), note: None },
    Row {
        wire: "domain_switch",
        title: "domain switch",
        reference: Some(Reference::SchedYield),
        goal: None,
        note: Some("per switch: half a YIELD round trip of two yielding domains; host: half a sched_yield round trip of two processes on one CPU"),
    },
    Row {
        wire: "timer",
        title: "timer",
        reference: Some(Reference::NanosleepLateness),
        goal: None,
        note: Some("cycles late: set_timer (1 ms ahead under TCG, 5 ms under KVM) + BLOCK, time read after the wake-up; host: clock_nanosleep(TIMER_ABSTIME) 1 ms ahead, 1 ns timer slack"),
    },
    Row {
        wire: "boot_64_domains",
        title: "boot 64 domains",
        reference: Some(Reference::Spawn64),
        goal: None,
        note: Some("one boot (median = p99 = the sample): hypervisor entry to the 64th domain's first instruction; host: fork+exec of 64 /bin/true, then waitpid of all, on one CPU"),
    },
    Row {
        wire: "hypercall_latency",
        title: "worst hypercall latency",
        reference: None,
        goal: None,
        note: Some("cycles a heartbeat domain waited for the CPU beyond the other domain's 10 ms slice while that domain made the heaviest hypercalls it can (a multicall of 64 x 1024 mmu_update entries, DECREASE of 1024 gfns mapped in 32 spaces, 4 KiB console writes); one sample per slice of the heavy domain; under TCG on QEMU's instruction-counted time (-icount), so the host's scheduling of QEMU does not count; the worst is held against 1 ms under the table"),
    },
    Row {
        wire: "hypercall_latency_control",
        title: "latency control",
        reference: None,
        goal: None,
        note: Some("the same heartbeat while the other domain spins without hypercalls: how late preemption comes anyway (near 0 on -icount time; under KVM the host's scheduling shows here)"),
    },
];

/// One benchmark guest: which rows it prints and how it is booted.
#[derive(Clone, Debug, PartialEq, Eq)]
struct GuestSpec {
    /// The guest binary (tests/guests/src/bin/<image>.rs).
    image: &'static str,
    /// Wire names of the rows it gives.
    rows: &'static [&'static str],
    /// How many domains of the image one boot starts.
    domains: Domains,
    /// Where the rows' numbers come from.
    source: Source,
    /// Domain memory; `None` = the hypervisor's default.
    mem: Option<&'static str>,
    /// Reservation quota (`maxmem=`); `None` = equal to `mem`.
    maxmem: Option<&'static str>,
    /// Argument words every domain of the boot gets besides `peer=` and `iterations=`.
    args: &'static [&'static str],
    /// Under TCG, run on QEMU's instruction-counted virtual time ([`Accel::virtual_time_args`]): for a
    /// row about how late the hypervisor preempts, which the host's own scheduling of
    /// QEMU would otherwise swamp on a busy machine.
    virtual_time: bool,
    /// Default `iterations=<n>` under KVM and under TCG; `None` if the guest takes no
    /// count (the null hypercall's is fixed).
    iterations: Option<Iterations>,
}

/// The domains of one bench boot, all running the guest's image with the same memory and
/// `iterations=`; ids are 1, 2, ... in command-line order (SPEC.md §20.4).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Domains {
    /// One domain.
    One,
    /// Two domains, each told the other's id as `peer=<id>` (domain 1 gets `peer=2`).
    Pair,
    /// This many copies with the same arguments.
    Copies(usize),
}

impl Domains {
    fn count(self) -> usize {
        match self {
            Domains::One => 1,
            Domains::Pair => 2,
            Domains::Copies(count) => count,
        }
    }
}

/// Where a guest's rows come from.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Source {
    /// Its `bench <wire> median <c> p99 <c> iterations <n>` lines.
    GuestLines,
    /// The hypervisor's `(hv) boot: all <n> domains reached their first instruction <c>
    /// cycles after hypervisor entry`, for every domain of the boot: one sample, so the
    /// median and the p99 are both <c>.
    AllDomainsBooted,
}

/// A guest's default iteration counts, and what one iteration costs where traps are slow.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
struct Iterations {
    kvm: u64,
    tcg: u64,
    /// Milliseconds per iteration on a PVM-based KVM host, where every guest exception,
    /// hypercall and first touch of a new mapping costs ~0.7-1 ms (for the timeout).
    kvm_milliseconds: u64,
}

/// The trap-heavy rows: ~2-4 traps per iteration.
const TRAP_ROW: Iterations = Iterations { kvm: 2_000, tcg: 20_000, kvm_milliseconds: 5 };

/// A guest of one domain whose rows are its own lines (most of them).
const fn one(
    image: &'static str,
    rows: &'static [&'static str],
    mem: Option<&'static str>,
    iterations: Iterations,
) -> GuestSpec {
    GuestSpec {
        image,
        rows,
        domains: Domains::One,
        source: Source::GuestLines,
        mem,
        maxmem: None,
        args: &[],
        virtual_time: false,
        iterations: Some(iterations),
    }
}

/// The guests, in the order they run.
const GUESTS: [GuestSpec; 13] = [
    // 100 000 null hypercalls, the issue-1 floor; fixed in the guest (~75 s on a PVM host).
    GuestSpec {
        image: "bench",
        rows: &["null_hypercall"],
        domains: Domains::One,
        source: Source::GuestLines,
        mem: None,
        maxmem: None,
        args: &[],
        virtual_time: false,
        iterations: None,
    },
    one("bench_user_syscall", &["user_syscall"], None, TRAP_ROW),
    // Room for the fault window's frames (1 MiB) and for the samples under TCG.
    one("bench_page_fault", &["page_fault"], Some("8M"), TRAP_ROW),
    // Room for the 512 populated pages (2 MiB) the batch maps. On a PVM host each of the
    // 512 touches of a fresh mapping is a shadow-paging fault: ~1.5 s per iteration.
    one("bench_map_batch", &["map_batch"], Some("8M"), Iterations { kvm: 20, tcg: 2_000, kvm_milliseconds: 3_000 }),
    one("bench_exception", &["exception_bounce"], None, TRAP_ROW),
    // Four hypercalls and two domain switches per round trip: measured 5.3 ms on a PVM
    // host (p99 12 ms).
    GuestSpec {
        image: "bench_event_channel",
        rows: &["event_channel"],
        domains: Domains::Pair,
        source: Source::GuestLines,
        mem: None,
        maxmem: None,
        args: &[],
        virtual_time: false,
        iterations: Some(Iterations { kvm: 2_000, tcg: 20_000, kvm_milliseconds: 10 }),
    },
    // Four hypercalls per iteration, no switch.
    one("bench_event_loopback", &["event_loopback"], None, TRAP_ROW),
    // No trap at all: as many samples as the null hypercall's, under either accelerator
    // (800 KB of them, in the default 4 MiB).
    one("bench_time", &["time_now"], None, Iterations { kvm: 100_000, tcg: 100_000, kvm_milliseconds: 0 }),
    // Two yields and two switches per round trip: measured 2.5 ms on a PVM host.
    GuestSpec {
        image: "bench_domain_switch",
        rows: &["domain_switch"],
        domains: Domains::Pair,
        source: Source::GuestLines,
        mem: None,
        maxmem: None,
        args: &[],
        virtual_time: false,
        iterations: Some(TRAP_ROW),
    },
    // Each iteration sleeps: 5 ms ahead plus the lateness (measured ~4.3 ms, p99 6 ms)
    // under KVM, 1 ms plus ~0.1 ms under TCG.
    one("bench_timer", &["timer"], None, Iterations { kvm: 1_000, tcg: 2_000, kvm_milliseconds: 15 }),
    // The smallest memory a domain may have (SPEC.md §20.4: 64 of them always fit).
    GuestSpec {
        image: "bench_boot",
        rows: &["boot_64_domains"],
        domains: Domains::Copies(64),
        source: Source::AllDomainsBooted,
        mem: Some("128K"),
        maxmem: None,
        args: &[],
        virtual_time: false,
        iterations: None,
    },
    // Room for 1024 more gfns (maxmem) and the 72 KiB of batch arrays; each sample is
    // two slices or more (~20 ms), so few iterations.
    GuestSpec {
        image: "bench_hypercall_latency",
        rows: &["hypercall_latency"],
        domains: Domains::Pair,
        source: Source::GuestLines,
        mem: Some("8M"),
        maxmem: Some("12M"),
        args: &[],
        virtual_time: true,
        iterations: Some(Iterations { kvm: 20, tcg: 200, kvm_milliseconds: 100 }),
    },
    // The same pair, the heavy domain making no hypercall (`calls=0`).
    GuestSpec {
        image: "bench_hypercall_latency",
        rows: &["hypercall_latency_control"],
        domains: Domains::Pair,
        source: Source::GuestLines,
        mem: Some("8M"),
        maxmem: Some("12M"),
        args: &["calls=0"],
        virtual_time: true,
        iterations: Some(Iterations { kvm: 20, tcg: 200, kvm_milliseconds: 20 }),
    },
];

/// The `iterations=<n>` a guest gets: `--iterations`, else its default for `accel`.
fn iterations_for(accel: Accel, guest: &GuestSpec, requested: Option<u64>) -> Option<u64> {
    let defaults = guest.iterations?;
    Some(requested.unwrap_or(match accel {
        Accel::Kvm => defaults.kvm,
        Accel::Tcg => defaults.tcg,
    }))
}

/// How long one guest may run before QEMU is killed: the boot (seconds on a loaded PVM
/// host), the warm-up (at most a tenth more) and the iterations, with a margin of 2.
fn guest_timeout(accel: Accel, guest: &GuestSpec, iterations: Option<u64>) -> Duration {
    let kvm = accel == Accel::Kvm;
    let (Some(defaults), Some(iterations)) = (guest.iterations, iterations) else {
        // A PVM-based KVM host costs ~0.7 ms per trapping hypercall: 101 000 calls take ~75 s.
        return Duration::from_secs(if kvm { 300 } else { 600 });
    };
    if kvm {
        Duration::from_millis(60_000 + iterations * 11 / 10 * defaults.kvm_milliseconds * 2)
    } else {
        Duration::from_secs(300 + iterations / 100)
    }
}

/// How many times each guest or column boots when `--boots` is not given: three under TCG
/// in cycles, where a host's interference (and QEMU's own software-TLB resizing, which
/// follows host time) stretches a stretch of one boot, so a row's median from one boot
/// could be 2x another's for the same code; once on instruction-counted time, whose figures
/// repeat exactly, and under KVM, whose boots of guest-kernel are long.
pub fn default_boots(accel: Accel, counted: bool) -> u32 {
    match (accel, counted) {
        (Accel::Tcg, false) => 3,
        _ => 1,
    }
}

/// Boots something up to `boots` times with `one` (given the boot's number, from 1),
/// stopping after the first boot that `failed` says went wrong, which is then the last of
/// the list: a failed boot is what the guest or column shows.
pub(super) fn boot_up_to<T>(
    boots: u32,
    mut one: impl FnMut(u32) -> Result<T>,
    failed: impl Fn(&T) -> bool,
) -> Result<Vec<T>> {
    let mut runs = Vec::new();
    for boot in 1..=boots {
        let run = one(boot)?;
        let stop = failed(&run);
        runs.push(run);
        if stop {
            break;
        }
    }
    Ok(runs)
}

/// A row's figures as one boot measured them: its name and median.
pub(super) trait RowMedian {
    /// The row's wire name.
    fn row(&self) -> &str;
    /// Its median.
    fn median(&self) -> u64;
}

impl RowMedian for GuestBench {
    fn row(&self) -> &str {
        &self.name
    }

    fn median(&self) -> u64 {
        self.median
    }
}

impl RowMedian for xtask::lmbench::Sample {
    fn row(&self) -> &str {
        &self.wire
    }

    fn median(&self) -> u64 {
        self.median
    }
}

/// Each row's line from the boot whose median was lowest (the earliest such boot), in
/// the first boot's order. Interference from the host only ever slows a boot down, and
/// under TCG a stretch of one boot now and then runs up to 2x slower.
pub(super) fn lowest_per_row<T: RowMedian>(mut boots: Vec<Vec<T>>) -> Vec<T> {
    if boots.is_empty() {
        return Vec::new();
    }
    let mut best = boots.remove(0);
    for line in &mut best {
        for other in boots.iter_mut().flat_map(|boot| boot.iter_mut()) {
            if other.row() == line.row() && other.median() < line.median() {
                std::mem::swap(line, other);
            }
        }
    }
    best
}

/// One `bench <name> median <c> p99 <c> iterations <n>` line.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct GuestBench {
    pub(super) name: String,
    pub(super) median: u64,
    pub(super) p99: u64,
    pub(super) iterations: u64,
}

/// The wire names among `wanted` that no line of `benches` gives.
pub(super) fn missing_rows<'a>(wanted: &[&'a str], benches: &[GuestBench]) -> Vec<&'a str> {
    wanted.iter().copied().filter(|wire| !benches.iter().any(|bench| bench.name == *wire)).collect()
}

impl GuestBench {
    /// Its figures for the `--json` report.
    pub(super) fn json(&self) -> serde_json::Value {
        serde_json::json!({ "median": self.median, "p99": self.p99, "iterations": self.iterations })
    }
}

/// Every row's wire name.
#[cfg(test)]
pub(super) fn row_wires() -> Vec<&'static str> {
    ROWS.iter().map(|row| row.wire).collect()
}

/// Parses a benchmark line, with or without its `(dN) ` prefix.
pub(super) fn parse_bench(line: &str) -> Option<GuestBench> {
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

/// `(hv) boot: all <N> domains reached their first instruction <C> cycles after hypervisor
/// entry` -> (N, C).
fn parse_all_booted(output: &str) -> Option<(usize, u64)> {
    output.lines().find_map(|line| {
        let rest = line.trim_end_matches('\r').strip_prefix("(hv) boot: all ")?;
        let (domains, rest) = rest.split_once(" domains reached their first instruction ")?;
        let cycles = rest.strip_suffix(" cycles after hypervisor entry")?;
        Some((domains.parse().ok()?, cycles.parse().ok()?))
    })
}

/// The rows a boot gave: the guests' lines, or the one sample of the all-booted line if
/// every domain of the boot reached its first instruction.
fn benches_of(guest: &GuestSpec, output: &str) -> Vec<GuestBench> {
    match guest.source {
        Source::GuestLines => output.lines().filter_map(parse_bench).collect(),
        Source::AllDomainsBooted => match parse_all_booted(output) {
            Some((domains, cycles)) if domains == guest.domains.count() => guest
                .rows
                .iter()
                .map(|wire| GuestBench { name: wire.to_string(), median: cycles, p99: cycles, iterations: 1 })
                .collect(),
            _ => Vec::new(),
        },
    }
}

/// `(hv) boot: first guest instruction <N> cycles after hypervisor entry` -> N.
fn parse_boot_cycles(output: &str) -> Option<u64> {
    output.lines().find_map(|line| {
        let rest = line.trim_end_matches('\r').strip_prefix("(hv) boot: first guest instruction ")?;
        rest.strip_suffix(" cycles after hypervisor entry")?.parse().ok()
    })
}

fn ratio(guest: u64, reference: u64) -> String {
    if reference == 0 {
        "n/a".to_string()
    } else {
        format!("{:.2}x", guest as f64 / reference as f64)
    }
}

fn goal_text(goal: Option<f64>) -> String {
    match goal {
        Some(goal) => format!("<= {goal:.1}x"),
        None => "-".to_string(),
    }
}

/// The comparison table: one line per row of [`ROWS`] that was run (`-` cells for a row
/// whose guest printed nothing), with the host reference and Xen's median of the same
/// work beside it, then any guest line with an unknown name.
fn table(selected: &[Row], benches: &[GuestBench], references: &[(Reference, Measurement)], xen: &XenColumn) -> String {
    let mut text = format!(
        "{:<18} | {:>12} | {:>12} | {:>10} | {:<17} | {:>10} | {:>10} | {:>9} | {:>10} | {:>13} | goal\n",
        "benchmark",
        "guest median",
        "guest p99",
        "iterations",
        "reference",
        "ref median",
        "ref p99",
        "ratio",
        "xen median",
        "ringfence/xen"
    );
    let reference_of = |reference: Reference| references.iter().find(|(known, _)| *known == reference).map(|(_, m)| *m);
    let mut line = |title: &str,
                    bench: Option<&GuestBench>,
                    reference: Option<(Reference, Option<Measurement>)>,
                    xen: Option<&GuestBench>,
                    goal: String| {
        let cell = |value: Option<u64>| value.map_or("-".to_string(), |value| value.to_string());
        let versus_xen = match (bench, xen) {
            (Some(bench), Some(xen)) => ratio(bench.median, xen.median),
            _ => "-".to_string(),
        };
        let measurement = reference.and_then(|(_, measurement)| measurement);
        let ratio = match (bench, measurement) {
            (Some(bench), Some(measurement)) => ratio(bench.median, measurement.median),
            (None, _) => "missing".to_string(),
            (Some(_), None) => "-".to_string(),
        };
        text.push_str(&format!(
            "{:<18} | {:>12} | {:>12} | {:>10} | {:<17} | {:>10} | {:>10} | {:>9} | {:>10} | {:>13} | {goal}\n",
            title,
            cell(bench.map(|bench| bench.median)),
            cell(bench.map(|bench| bench.p99)),
            cell(bench.map(|bench| bench.iterations)),
            reference.map_or("-", |(reference, _)| reference.name()),
            cell(measurement.map(|measurement| measurement.median)),
            cell(measurement.map(|measurement| measurement.p99)),
            ratio,
            cell(xen.map(|xen| xen.median)),
            versus_xen,
        ));
    };
    for row in selected {
        let bench = benches.iter().find(|bench| bench.name == row.wire);
        line(
            row.title,
            bench,
            row.reference.map(|reference| (reference, reference_of(reference))),
            xen.bench(row.wire),
            goal_text(row.goal),
        );
    }
    for bench in benches.iter().filter(|bench| !ROWS.iter().any(|row| row.wire == bench.name)) {
        // The wire name is one word; an unknown row still shows, without a reference.
        line(&bench.name.replace('_', " "), Some(bench), None, None, "-".to_string());
    }
    text
}

/// The notes of the selected rows that have one, one line each.
fn notes(selected: &[Row]) -> String {
    selected.iter().filter_map(|row| row.note.map(|note| format!("  {}: {note}\n", row.title))).collect()
}

/// One line judging the goals: which rows met theirs, which missed (and by how much).
/// Every selected row as JSON: what the table shows, with numbers as numbers (`null` where
/// a side was not measured).
fn report_json(
    accel: Accel,
    unit: &str,
    selected: &[Row],
    benches: &[GuestBench],
    references: &[(Reference, Measurement)],
    xen: &XenColumn,
) -> serde_json::Value {
    let rows: Vec<serde_json::Value> = selected
        .iter()
        .map(|row| {
            let bench = benches.iter().find(|bench| bench.name == row.wire);
            let measurement = references.iter().find(|(known, _)| Some(*known) == row.reference).map(|(_, m)| *m);
            let ratio = match (bench, measurement) {
                (Some(bench), Some(measurement)) if measurement.median > 0 => {
                    Some(bench.median as f64 / measurement.median as f64)
                }
                _ => None,
            };
            serde_json::json!({
                "row": row.title,
                "wire": row.wire,
                "guest": bench.map(GuestBench::json),
                "reference": {
                    "name": row.reference.map(Reference::name),
                    "median": measurement.map(|measurement| measurement.median),
                    "p99": measurement.map(|measurement| measurement.p99),
                    "iterations": measurement.map(|measurement| measurement.iterations),
                },
                "ratio": ratio,
                "xen": xen.bench(row.wire).map(GuestBench::json),
                "ringfence/xen": bench.zip(xen.bench(row.wire)).filter(|(_, xen)| xen.median > 0)
                    .map(|(bench, xen)| bench.median as f64 / xen.median as f64),
                "goal": row.goal,
                "goal_met": row.goal.zip(ratio).map(|(goal, ratio)| ratio <= goal),
            })
        })
        .collect();
    serde_json::json!({ "unit": unit, "accel": accel.name(), "rows": rows, "xen": xen.json() })
}

fn goal_summary(selected: &[Row], benches: &[GuestBench], references: &[(Reference, Measurement)]) -> String {
    let mut met = Vec::new();
    let mut missed = Vec::new();
    for row in selected {
        let Some(goal) = row.goal else { continue };
        let bench = benches.iter().find(|bench| bench.name == row.wire);
        let reference = references.iter().find(|(known, _)| Some(*known) == row.reference);
        match (bench, reference) {
            (Some(bench), Some((_, measurement))) if measurement.median > 0 => {
                let value = bench.median as f64 / measurement.median as f64;
                if value <= goal {
                    met.push(row.title.to_string());
                } else {
                    missed.push(format!("{} {value:.2}x > {goal:.1}x", row.title));
                }
            }
            _ => missed.push(format!("{} not measured", row.title)),
        }
    }
    let total = met.len() + missed.len();
    if missed.is_empty() {
        format!("goals: {} of {total} met", met.len())
    } else {
        format!("goals: {} of {total} met; missed: {}", met.len(), missed.join(", "))
    }
}

/// Xen 4.17's one-domain event-channel loopback (SEND + POLL twice), TSC cycles, from the
/// issue's measurement in the same QEMU; the goal is at most [`XEN_SHARE`] of it (of this
/// run's `xen` column's figure when it has one).
const XEN_LOOPBACK_CYCLES: u64 = 8_379;
/// The share of Xen's cycles a hypervisor row may take (issue 14).
const XEN_SHARE: f64 = 0.8;
/// The two-domain round trip may cost at most two domain switches and two null
/// hypercalls (the sends) plus this share.
const ROUND_TRIP_MARGIN: f64 = 0.10;

/// The event-channel bounds that are not ratios against a host reference, one line each,
/// for the rows that were measured: the loopback against Xen's figure (`xen_loopback`,
/// this run's, else the issue's), and the two-domain round trip against `2 x domain
/// switch + 2 x null hypercall + 10 %` (all medians of this run; the line says which
/// inputs are missing).
fn event_bounds(benches: &[GuestBench], xen_loopback: Option<u64>) -> String {
    let median = |wire: &str| benches.iter().find(|bench| bench.name == wire).map(|bench| bench.median);
    let verdict = |met: bool| if met { "met" } else { "missed" };
    let mut text = String::new();
    if let Some(loopback) = median("event_loopback") {
        let (xen, whose) = match xen_loopback {
            Some(xen) => (xen, " (this run)"),
            None => (XEN_LOOPBACK_CYCLES, ""),
        };
        let bound = (xen as f64 * XEN_SHARE) as u64;
        text.push_str(&format!(
            "bound event loopback: {loopback} <= {XEN_SHARE}x Xen's {xen}{whose} = {bound}: {}\n",
            verdict(loopback <= bound)
        ));
    }
    if let Some(round_trip) = median("event_channel") {
        match (median("domain_switch"), median("null_hypercall")) {
            (Some(switch), Some(null)) => {
                let bound = ((2 * switch + 2 * null) as f64 * (1.0 + ROUND_TRIP_MARGIN)) as u64;
                text.push_str(&format!(
                    "bound event channel: {round_trip} <= (2 x domain switch {switch} + 2 x null hypercall {null}) \
                     + 10% = {bound}: {}\n",
                    verdict(round_trip <= bound)
                ));
            }
            _ => text.push_str(
                "bound event channel: not judged (needs the domain switch and null hypercall rows in the same run)\n",
            ),
        }
    }
    text
}

/// The most a heartbeat domain may wait past another domain's slice while that domain
/// makes hypercalls (issue 15: hypercall continuations, SPEC.md §5.5), in microseconds.
const HYPERCALL_LATENCY_GOAL_US: u64 = 1_000;

/// The worst-hypercall-latency bound, if its guest ran: the heartbeat's
/// `bench: hypercall_latency: worst <n> us past ...` line against
/// [`HYPERCALL_LATENCY_GOAL_US`], with the control's worst (`hypercall_latency_control`)
/// beside it when that ran too.
fn latency_bound(outputs: &[&str]) -> Option<String> {
    let worst = |wire: &str| {
        let marker = format!("bench: {wire}: worst ");
        outputs.iter().flat_map(|output| output.lines()).find_map(|line| {
            let (_, rest) = line.split_once(marker.as_str())?;
            rest.split_once(" us past ")?.0.parse::<u64>().ok()
        })
    };
    let measured = worst("hypercall_latency")?;
    let verdict = if measured <= HYPERCALL_LATENCY_GOAL_US { "met" } else { "missed" };
    let control = match worst("hypercall_latency_control") {
        Some(control) => format!(" (control without hypercalls: worst {control} us)"),
        None => String::new(),
    };
    Some(format!(
        "bound worst hypercall latency: worst {measured} us <= {HYPERCALL_LATENCY_GOAL_US} us: {verdict}{control}\n"
    ))
}

/// The rows and guests `--row` selects (all without it).
fn select(filters: &[String]) -> (Vec<Row>, Vec<GuestSpec>) {
    let chosen = |wire: &str| filters.is_empty() || filters.iter().any(|filter| wire.contains(filter.as_str()));
    let rows = ROWS.iter().copied().filter(|row| chosen(row.wire)).collect();
    let guests = GUESTS.iter().filter(|guest| guest.rows.iter().any(|wire| chosen(wire))).cloned().collect();
    (rows, guests)
}

/// What one guest's boot produced.
struct GuestRun {
    image: &'static str,
    outcome: RunOutcome,
    timeout: Duration,
    benches: Vec<GuestBench>,
}

impl GuestRun {
    /// One guest's boots as one run: the first boot with a problem if there is one (the
    /// bench stops booting a guest at it), else the first boot with each row's line from
    /// the boot with the lowest median ([`lowest_per_row`]) and the boots' wall times added.
    fn best_of(mut boots: Vec<GuestRun>, spec: &GuestSpec) -> GuestRun {
        assert!(!boots.is_empty(), "a guest boots at least once");
        if let Some(index) = boots.iter().position(|boot| boot.problem(spec).is_some()) {
            return boots.swap_remove(index);
        }
        let wall = boots.iter().map(|boot| boot.outcome.wall).sum();
        let lines = boots.iter_mut().map(|boot| std::mem::take(&mut boot.benches)).collect();
        let mut best = boots.swap_remove(0);
        best.benches = lowest_per_row(lines);
        best.outcome.wall = wall;
        best
    }

    /// A description of what went wrong, or `None` if the guest printed its rows and the
    /// hypervisor reported success.
    fn problem(&self, spec: &GuestSpec) -> Option<String> {
        let missing = missing_rows(spec.rows, &self.benches);
        if self.outcome.xtask_exit_code() == 0 && missing.is_empty() {
            return None;
        }
        let mut text = format!("guest {}: {}", self.image, self.outcome.describe(self.timeout));
        if !missing.is_empty() {
            text.push_str(&format!("; no line for {}", missing.join(", ")));
        }
        Some(text)
    }
}

/// The domains one boot of `guest` starts.
fn domains_for(guest: &GuestSpec, iterations: Option<u64>) -> Vec<Domain> {
    let count = guest.domains.count();
    (1..=count)
        .map(|id| {
            let mut domain = Domain::new(guest.image);
            domain.mem = guest.mem.map(str::to_string);
            domain.maxmem = guest.maxmem.map(str::to_string);
            if guest.domains == Domains::Pair {
                domain.args.push(format!("peer={}", 3 - id));
            }
            if let Some(iterations) = iterations {
                domain.args.push(format!("iterations={iterations}"));
            }
            domain.args.extend(guest.args.iter().map(|arg| arg.to_string()));
            domain
        })
        .collect()
}

/// The QEMU arguments a guest's boot adds: instruction-counted time
/// ([`Accel::virtual_time_args`]) for a row that asks for it, or for every row when the
/// run is `counted`.
fn qemu_extra(guest: &GuestSpec, accel: Accel, counted: bool) -> Vec<String> {
    counted_time_args(accel, guest.virtual_time || counted)
}

/// `--counted`'s QEMU arguments ([`Accel::virtual_time_args`]) when `counted`, else none;
/// every table's runs add them the same way.
pub fn counted_time_args(accel: Accel, counted: bool) -> Vec<String> {
    if counted {
        accel.virtual_time_args()
    } else {
        Vec::new()
    }
}

/// `--counted` needs an accelerator that counts instructions (TCG): a usage error otherwise.
pub fn check_counted(accel: Accel, counted: bool) -> Result<()> {
    if counted && accel.virtual_time_args().is_empty() {
        return Err(Error::usage(format!("--counted needs TCG's instruction counting; {} has none", accel.name())));
    }
    Ok(())
}

/// Runs one of the bench's QEMUs to its end, pinned to [`qemu::bench_cpu`] where there is
/// one: every column of both tables runs the same way.
pub fn run_qemu(launch: &Launch) -> Result<qemu::RunOutcome> {
    match qemu::bench_cpu() {
        Some(cpu) => qemu::run_pinned(launch, ConsoleMode::Capture, cpu),
        None => qemu::run(launch, ConsoleMode::Capture),
    }
}

/// The line saying where the bench's QEMUs run.
pub fn pinning_line() -> String {
    match qemu::bench_cpu() {
        Some(cpu) => format!("bench: every QEMU run confined to host CPU {cpu} (steadier cycle counts under TCG)"),
        None => "bench: QEMU runs wherever the host puts them (this process's CPU set cannot be read)".to_string(),
    }
}

fn run_guest(
    qemu_binary: &std::path::Path,
    accel: Accel,
    guest: &GuestSpec,
    iterations: Option<u64>,
    counted: bool,
) -> Result<GuestRun> {
    let image = workspace::guests_dir().join(format!("{}.elf", guest.image));
    let bytes = std::fs::read(&image).map_err(|error| {
        Error::failed(format!(
            "cannot read {}: {error}; the conformance guests should provide a `{}` binary",
            image.display(),
            guest.image
        ))
    })?;
    let initrd = workspace::runs_dir().join(format!("{}.tar", guest.image));
    qemu::write_archive(&initrd, &archive::build(&[(guest.image.to_string(), bytes)])?)?;
    let launch = Launch {
        qemu: qemu_binary.to_path_buf(),
        hypervisor: workspace::hypervisor_elf(),
        initrd,
        append: cmdline::command_line(&domains_for(guest, iterations), &[])?,
        accel,
        machine: Machine::Microvm,
        memory: qemu::MACHINE_MEMORY,
        extra: qemu_extra(guest, accel, counted),
        timeout: guest_timeout(accel, guest, iterations),
    };
    let outcome = run_qemu(&launch)?;
    let benches = benches_of(guest, &outcome.output);
    Ok(GuestRun { image: guest.image, outcome, timeout: launch.timeout, benches })
}

/// What a figure counts: instructions on QEMU's instruction-counted time (`--counted`),
/// else TSC cycles.
pub fn unit(counted: bool) -> &'static str {
    if counted {
        "instructions per iteration"
    } else {
        "TSC cycles per iteration"
    }
}

/// Runs every selected bench guest, measures the references, prints the table.
pub fn main(args: BenchArgs) -> Result<u8> {
    if args.kernel {
        return super::bench_kernel::main(super::bench_kernel::Options {
            accel: args.accel,
            iterations: args.iterations,
            rows: args.rows,
            json: args.json,
            timeout: args.timeout,
            counted: args.counted,
            boots: args.boots,
        });
    }
    let qemu_binary = qemu::ensure_qemu()?;
    qemu::check_accel_request(args.accel)?;
    let (rows, guests) = select(&args.rows);
    if rows.is_empty() {
        let known: Vec<&str> = ROWS.iter().map(|row| row.wire).collect();
        return Err(Error::usage(format!("no row matches --row {:?}; rows: {}", args.rows, known.join(", "))));
    }
    if args.iterations == Some(0) {
        return Err(Error::usage("--iterations must be at least 1"));
    }
    xtask::build::build_all()?;
    let choice = qemu::choose_accel(args.accel, &qemu_binary, &workspace::hypervisor_elf())?;
    let accel = choice.accel;
    for line in &choice.lines {
        println!("{line}");
    }
    check_counted(accel, args.counted)?;
    println!("{}", pinning_line());

    if args.boots == Some(0) {
        return Err(Error::usage("--boots must be at least 1"));
    }
    let boots = args.boots.unwrap_or(default_boots(accel, args.counted));
    if boots > 1 {
        println!(
            "bench: every guest and the xen column boot {boots} times (the rows on instruction-counted time once); \
             each row keeps the boot with the lowest median (--boots N)"
        );
    }

    let mut runs = Vec::new();
    let mut problems = Vec::new();
    for guest in &guests {
        let guest_boots = if guest.virtual_time { 1 } else { boots };
        let iterations = iterations_for(accel, guest, args.iterations);
        let boot_runs = boot_up_to(
            guest_boots,
            |boot| {
                let of = if guest_boots > 1 { format!(" (boot {boot} of {guest_boots})") } else { String::new() };
                println!("bench: running {}{of} ...", guest.image);
                let run = run_guest(&qemu_binary, accel, guest, iterations, args.counted)?;
                println!("bench: {} done in {} ms", guest.image, run.outcome.wall.as_millis());
                Ok(run)
            },
            |run| run.problem(guest).is_some(),
        )?;
        let run = GuestRun::best_of(boot_runs, guest);
        if let Some(problem) = run.problem(guest) {
            let tail: Vec<&str> = run.outcome.output.lines().rev().take(30).collect();
            println!("bench: {problem}; last console lines:");
            for line in tail.iter().rev() {
                println!("    {line}");
            }
            problems.push(problem);
        }
        runs.push(run);
    }

    let wires: Vec<&str> = rows.iter().map(|row| row.wire).collect();
    let xen = bench_xen::run(&qemu_binary, accel, &wires, args.iterations, args.counted, boots)?;

    let mut references = Vec::new();
    for reference in
        Reference::ALL.into_iter().filter(|reference| rows.iter().any(|row| row.reference == Some(*reference)))
    {
        match reference.measure() {
            Ok(measurement) => references.push((reference, measurement)),
            Err(error) => problems.push(format!("host reference {}: {error}", reference.name())),
        }
    }

    let benches: Vec<GuestBench> = runs.iter_mut().flat_map(|run| std::mem::take(&mut run.benches)).collect();
    println!();
    print!("{}", table(&rows, &benches, &references, &xen));
    let unit = unit(args.counted);
    println!(
        "({unit}; each guest booted on its own; ratio = guest median / reference median; \
         ringfence/xen = guest median / Xen's median of the same work)"
    );
    println!("{}", xen.summary());
    print!("{}", notes(&rows));
    println!("{}", goal_summary(&rows, &benches, &references));
    print!("{}", event_bounds(&benches, xen.bench("event_loopback").map(|bench| bench.median)));
    let outputs: Vec<&str> = runs.iter().map(|run| run.outcome.output.as_str()).collect();
    if let Some(bound) = latency_bound(&outputs) {
        print!("{bound}");
    }
    let reference_counts: Vec<String> = references
        .iter()
        .map(|(reference, measurement)| {
            format!("{} {} after {} warm-up", reference.name(), measurement.iterations, reference.iterations().0)
        })
        .collect();
    println!("reference iterations: {}", reference_counts.join("; "));
    if let Some(cycles) = runs.iter().find_map(|run| parse_boot_cycles(&run.outcome.output)) {
        println!("boot: first guest instruction {cycles} cycles after hypervisor entry");
    }
    let total: Duration = runs.iter().map(|run| run.outcome.wall).sum();
    let walls: Vec<String> =
        runs.iter().map(|run| format!("{} {} ms", run.image, run.outcome.wall.as_millis())).collect();
    println!("wall time of the QEMU runs ({}): {} ms total ({})", accel.name(), total.as_millis(), walls.join(", "));
    if let Some(path) = &args.json {
        let report = report_json(accel, unit, &rows, &benches, &references, &xen);
        let text = serde_json::to_string_pretty(&report).map_err(|error| Error::failed(format!("JSON: {error}")))?;
        std::fs::write(path, text + "\n").map_err(|error| Error::io("cannot write", path, error))?;
        println!("bench: rows written to {}", path.display());
    }

    if problems.is_empty() {
        // A missing Xen leaves its column empty: the exit code says so (122 if Debian's
        // archive was unreachable), as for `bench --kernel`'s Linux columns.
        Ok(u8::try_from(xen.exit_code()).unwrap_or(u8::MAX))
    } else {
        Err(Error::failed(format!("{} problem(s): {}", problems.len(), problems.join("; "))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measurement(median: u64, p99: u64) -> Measurement {
        Measurement { median, p99, iterations: 1000 }
    }

    /// A Xen column that printed `lines`.
    fn xen_column(lines: &[&str]) -> XenColumn {
        XenColumn::Ran {
            benches: lines.iter().map(|line| parse_bench(line).unwrap()).collect(),
            package: "xen-hypervisor-4.17-amd64 4.17.7".into(),
            command: "qemu-system-x86_64".into(),
            wall: Duration::from_secs(1),
            boots: 1,
            problem: None,
        }
    }

    #[test]
    fn the_json_report_has_every_row_with_numbers() {
        let selected: Vec<Row> =
            ROWS.iter().copied().filter(|row| ["null_hypercall", "timer"].contains(&row.wire)).collect();
        let benches = [GuestBench { name: "null_hypercall".into(), median: 700, p99: 900, iterations: 100_000 }];
        let references = [(Reference::Getppid, measurement(500, 600))];
        let xen = xen_column(&["bench null_hypercall median 1400 p99 1500 iterations 2000"]);
        let text = serde_json::to_string(&report_json(
            Accel::Tcg,
            "TSC cycles per iteration",
            &selected,
            &benches,
            &references,
            &xen,
        ))
        .unwrap();
        let report: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(report["accel"], "tcg");
        let rows = report["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["row"], "null hypercall");
        assert_eq!(rows[0]["guest"]["median"], 700);
        assert_eq!(rows[0]["reference"]["median"], 500);
        assert_eq!(rows[0]["ratio"], 1.4);
        assert_eq!(rows[0]["goal_met"], false, "1.4x against a 0.7x goal");
        assert!(rows[1]["guest"].is_null() && rows[1]["ratio"].is_null(), "a row not measured says so");
        assert_eq!(rows[0]["xen"]["median"], 1400);
        assert_eq!(rows[0]["ringfence/xen"], 0.5);
        assert!(rows[1]["xen"].is_null() && rows[1]["ringfence/xen"].is_null());
        assert_eq!(report["xen"]["status"], "measured");
        let missing = XenColumn::Missing { reason: "no archive".into(), code: 122 };
        let report = report_json(Accel::Tcg, "TSC cycles per iteration", &selected, &benches, &references, &missing);
        assert_eq!(
            (report["xen"]["status"].as_str(), report["xen"]["reason"].as_str()),
            (Some("missing"), Some("no archive"))
        );
        assert!(report["rows"][0]["xen"].is_null() && report["rows"][0]["ringfence/xen"].is_null());
    }

    #[test]
    fn bench_lines_are_parsed() {
        assert_eq!(
            parse_bench("(d1) bench null_hypercall median 120 p99 180 iterations 100000\r"),
            Some(GuestBench { name: "null_hypercall".into(), median: 120, p99: 180, iterations: 100_000 })
        );
        assert!(parse_bench("bench x median 1 p99 2 iterations 3").is_some());
        assert_eq!(parse_bench("(d1) bench x median one p99 2 iterations 3"), None);
        assert_eq!(parse_bench("(hv) bench reserved"), None);
        assert_eq!(parse_bench("(d1) bench: null_hypercall min 1 max 2"), None);
        assert_eq!(parse_bench("(d1) Test result: SUCCESS"), None);
    }

    #[test]
    fn all_booted_line_is_parsed() {
        let output = "(hv) boot: first guest instruction 1 cycles after hypervisor entry\n\
                      (hv) boot: all 64 domains reached their first instruction 98765432 cycles after hypervisor entry\r\n";
        assert_eq!(parse_all_booted(output), Some((64, 98_765_432)));
        assert_eq!(
            parse_all_booted(
                "(hv) boot: all x domains reached their first instruction 5 cycles after hypervisor entry"
            ),
            None
        );
        assert_eq!(
            parse_all_booted(
                "(d1) boot: all 2 domains reached their first instruction 5 cycles after hypervisor entry"
            ),
            None
        );
        let boot = GUESTS.iter().find(|guest| guest.source == Source::AllDomainsBooted).unwrap();
        assert_eq!(
            benches_of(boot, output),
            [GuestBench { name: "boot_64_domains".into(), median: 98_765_432, p99: 98_765_432, iterations: 1 }]
        );
        // Fewer domains than the boot asked for (one refused): no row rather than a wrong one.
        let refused = "(hv) boot: all 63 domains reached their first instruction 5 cycles after hypervisor entry";
        assert_eq!(benches_of(boot, refused), []);
        assert_eq!(benches_of(boot, "(hv) nothing"), []);
        // A guest-lines guest ignores the hypervisor's line.
        assert_eq!(benches_of(&GUESTS[0], output), []);
    }

    #[test]
    fn several_domains_per_boot() {
        let tokens = |guest: &GuestSpec, iterations| {
            let domains = domains_for(guest, iterations);
            domains.iter().map(|domain| domain.token().unwrap()).collect::<Vec<_>>()
        };
        let pair = GUESTS.iter().find(|guest| guest.image == "bench_event_channel").unwrap();
        assert_eq!(
            tokens(pair, Some(7)),
            [
                "domain=bench_event_channel,arg=peer=2,arg=iterations=7",
                "domain=bench_event_channel,arg=peer=1,arg=iterations=7"
            ]
        );
        let boot = GUESTS.iter().find(|guest| guest.image == "bench_boot").unwrap();
        let copies = tokens(boot, iterations_for(Accel::Kvm, boot, Some(5)));
        assert_eq!(copies.len(), 64);
        assert!(copies.iter().all(|token| token == "domain=bench_boot,mem=128K"), "{copies:?}");
        assert_eq!(tokens(&GUESTS[1], Some(3)), ["domain=bench_user_syscall,arg=iterations=3"]);
    }

    #[test]
    fn boot_line_is_parsed() {
        let output = "(hv) ringfence\n(hv) boot: first guest instruction 123456 cycles after hypervisor entry\r\n";
        assert_eq!(parse_boot_cycles(output), Some(123_456));
        assert_eq!(parse_boot_cycles("(hv) boot: first guest instruction x cycles after hypervisor entry"), None);
    }

    fn cells(line: &str) -> Vec<&str> {
        line.split('|').map(str::trim).collect()
    }

    #[test]
    fn each_row_names_its_reference() {
        let benches = [
            parse_bench("bench null_hypercall median 52 p99 80 iterations 100000").unwrap(),
            parse_bench("(d1) bench page_fault median 3000 p99 4000 iterations 2000").unwrap(),
        ];
        let references =
            [(Reference::Getppid, measurement(100, 140)), (Reference::MinorFault, measurement(1000, 1500))];
        let xen = xen_column(&[
            "bench null_hypercall median 104 p99 120 iterations 2000",
            "bench page_fault median 2000 p99 2500 iterations 2000",
            "bench timer median 9 p99 9 iterations 2000",
        ]);
        let text = table(&ROWS, &benches, &references, &xen);
        let rows: Vec<&str> = text.lines().collect();
        assert_eq!(
            cells(rows[0]),
            [
                "benchmark",
                "guest median",
                "guest p99",
                "iterations",
                "reference",
                "ref median",
                "ref p99",
                "ratio",
                "xen median",
                "ringfence/xen",
                "goal"
            ]
        );
        assert_eq!(
            cells(rows[1]),
            ["null hypercall", "52", "80", "100000", "getppid", "100", "140", "0.52x", "104", "0.50x", "<= 0.7x"]
        );
        assert_eq!(
            cells(rows[2]),
            ["user syscall", "-", "-", "-", "getppid", "100", "140", "missing", "-", "-", "<= 2.0x"]
        );
        assert_eq!(
            cells(rows[3]),
            ["page fault", "3000", "4000", "2000", "minor fault", "1000", "1500", "3.00x", "2000", "1.50x", "<= 2.0x"]
        );
        // No reference measured for the map batch: its cells say so.
        assert_eq!(
            cells(rows[4]),
            ["map batch", "-", "-", "-", "mmap populate 512", "-", "-", "missing", "-", "-", "<= 1.0x"]
        );
        assert_eq!(cells(rows[5]), ["exception bounce", "-", "-", "-", "SIGTRAP", "-", "-", "missing", "-", "-", "-"]);
        assert_eq!(
            cells(rows[6]),
            ["event channel", "-", "-", "-", "pipe ping-pong", "-", "-", "missing", "-", "-", "<= 0.5x"]
        );
        assert_eq!(
            cells(rows[7]),
            ["event loopback", "-", "-", "-", "pipe ping-pong", "-", "-", "missing", "-", "-", "-"]
        );
        assert_eq!(
            cells(rows[8]),
            ["time now", "-", "-", "-", "clock_gettime", "-", "-", "missing", "-", "-", "<= 1.0x"]
        );
        assert_eq!(cells(rows[9]), ["domain switch", "-", "-", "-", "sched_yield", "-", "-", "missing", "-", "-", "-"]);
        // Xen measured the timer, ringfence did not: no ratio.
        assert_eq!(cells(rows[10]), ["timer", "-", "-", "-", "clock_nanosleep", "-", "-", "missing", "9", "-", "-"]);
        assert_eq!(
            cells(rows[11]),
            ["boot 64 domains", "-", "-", "-", "fork+exec+wait 64", "-", "-", "missing", "-", "-", "-"]
        );
        let latency = ["worst hypercall latency", "-", "-", "-", "-", "-", "-", "missing", "-", "-", "-"];
        assert_eq!(cells(rows[12]), latency, "a row without a reference");
        assert_eq!(cells(rows[13]), ["latency control", "-", "-", "-", "-", "-", "-", "missing", "-", "-", "-"]);
        assert_eq!(rows.len(), 14);
    }

    #[test]
    fn issue_4_rows_get_their_ratios() {
        let output = "(d1) bench event_channel median 3000 p99 9000 iterations 500\n\
                      (d1) bench time_now median 120 p99 130 iterations 100000\n\
                      (hv) boot: all 64 domains reached their first instruction 50000000 cycles after hypervisor entry\n";
        let guest = |image: &str| GUESTS.iter().find(|guest| guest.image == image).unwrap();
        let mut benches = benches_of(guest("bench_event_channel"), output);
        benches.extend(benches_of(guest("bench_time"), output));
        benches.extend(benches_of(guest("bench_boot"), output));
        let references = [
            (Reference::PipePingPong, measurement(6000, 9000)),
            (Reference::ClockGettime, measurement(100, 150)),
            (Reference::Spawn64, measurement(100_000_000, 120_000_000)),
        ];
        let text = table(&ROWS[5..], &benches, &references, &XenColumn::NotRun);
        let rows: Vec<&str> = text.lines().collect();
        assert_eq!(
            cells(rows[1]),
            ["event channel", "3000", "9000", "500", "pipe ping-pong", "6000", "9000", "0.50x", "-", "-", "<= 0.5x"]
        );
        assert_eq!(
            cells(rows[2]),
            ["event loopback", "-", "-", "-", "pipe ping-pong", "6000", "9000", "missing", "-", "-", "-"]
        );
        assert_eq!(
            cells(rows[3]),
            ["time now", "120", "130", "100000", "clock_gettime", "100", "150", "1.20x", "-", "-", "<= 1.0x"]
        );
        assert_eq!(
            cells(rows[6]),
            [
                "boot 64 domains",
                "50000000",
                "50000000",
                "1",
                "fork+exec+wait 64",
                "100000000",
                "120000000",
                "0.50x",
                "-",
                "-",
                "-"
            ]
        );
        assert_eq!(goal_summary(&ROWS[5..], &benches, &references), "goals: 1 of 2 met; missed: time now 1.20x > 1.0x");
        // Every row whose sample is not one operation's cycles says what it is.
        let notes = notes(&ROWS);
        for title in [
            "event channel",
            "event loopback",
            "domain switch",
            "timer",
            "boot 64 domains",
            "worst hypercall latency",
            "latency control",
        ] {
            assert!(notes.contains(&format!("  {title}: ")), "{title}: {notes}");
        }
        assert_eq!(notes.lines().count(), 7);
    }

    #[test]
    fn only_the_latency_rows_run_on_counted_time_and_only_under_tcg() {
        for guest in &GUESTS {
            let latency = guest.image == "bench_hypercall_latency";
            let expected: Vec<String> = if latency { Accel::Tcg.virtual_time_args() } else { vec![] };
            assert_eq!(latency, expected.iter().any(|word| word == "-icount"), "{}", guest.image);
            assert_eq!(qemu_extra(guest, Accel::Tcg, false), expected, "{}", guest.image);
            assert_eq!(qemu_extra(guest, Accel::Tcg, true), Accel::Tcg.virtual_time_args(), "{}", guest.image);
            assert!(qemu_extra(guest, Accel::Kvm, false).is_empty(), "{}", guest.image);
        }
    }

    #[test]
    fn the_latency_bound_is_judged_from_the_heartbeat_line() {
        let line = |wire: &str, us: u64| format!("(d1) bench: {wire}: worst {us} us past the 10 ms slice\r\n");
        let at_goal = line("hypercall_latency", 1000);
        assert_eq!(
            latency_bound(&[at_goal.as_str()]).unwrap(),
            "bound worst hypercall latency: worst 1000 us <= 1000 us: met\n"
        );
        let late = format!("(d2) noise\n{}", line("hypercall_latency", 1001));
        let control = line("hypercall_latency_control", 7);
        assert_eq!(
            latency_bound(&[control.as_str(), late.as_str()]).unwrap(),
            "bound worst hypercall latency: worst 1001 us <= 1000 us: missed (control without hypercalls: worst 7 us)\n"
        );
        assert_eq!(latency_bound(&[control.as_str()]), None, "no bound from the control alone");
        assert_eq!(latency_bound(&["(d1) bench: hypercall_latency: worst x us past\n"]), None);
        assert_eq!(latency_bound(&[]), None);
    }

    #[test]
    fn event_bounds_are_judged() {
        let bench = |line: &str| parse_bench(line).unwrap();
        let loopback = bench("bench event_loopback median 6000 p99 7000 iterations 10");
        let channel = bench("bench event_channel median 36000 p99 40000 iterations 10");
        let switch = bench("bench domain_switch median 15680 p99 16000 iterations 10");
        let null = bench("bench null_hypercall median 598 p99 700 iterations 10");
        assert_eq!(
            event_bounds(&[loopback, channel, switch, null], None),
            "bound event loopback: 6000 <= 0.8x Xen's 8379 = 6703: met\n\
             bound event channel: 36000 <= (2 x domain switch 15680 + 2 x null hypercall 598) + 10% = 35811: missed\n"
        );
        let slow = bench("bench event_loopback median 6704 p99 7000 iterations 10");
        assert_eq!(event_bounds(&[slow], None), "bound event loopback: 6704 <= 0.8x Xen's 8379 = 6703: missed\n");
        let slow = bench("bench event_loopback median 6704 p99 7000 iterations 10");
        assert_eq!(
            event_bounds(&[slow], Some(8381)),
            "bound event loopback: 6704 <= 0.8x Xen's 8381 (this run) = 6704: met\n"
        );
        let channel = bench("bench event_channel median 30000 p99 40000 iterations 10");
        assert_eq!(
            event_bounds(&[channel], None),
            "bound event channel: not judged (needs the domain switch and null hypercall rows in the same run)\n"
        );
        assert_eq!(event_bounds(&[], Some(1)), "");
    }

    #[test]
    fn unknown_guest_rows_are_shown_without_reference() {
        let benches = [parse_bench("bench brand_new median 5 p99 6 iterations 7").unwrap()];
        let text = table(&ROWS[..1], &benches, &[(Reference::Getppid, measurement(10, 10))], &XenColumn::NotRun);
        let rows: Vec<&str> = text.lines().collect();
        assert_eq!(cells(rows[1])[7], "missing");
        assert_eq!(cells(rows[2]), ["brand new", "5", "6", "7", "-", "-", "-", "-", "-", "-", "-"]);
    }

    #[test]
    fn goals_are_judged() {
        let benches = [
            parse_bench("bench null_hypercall median 60 p99 80 iterations 10").unwrap(),
            parse_bench("bench user_syscall median 300 p99 400 iterations 10").unwrap(),
            parse_bench("bench exception_bounce median 1 p99 1 iterations 1").unwrap(),
        ];
        let references = [(Reference::Getppid, measurement(100, 100)), (Reference::Sigtrap, measurement(1, 1))];
        assert_eq!(
            goal_summary(&ROWS, &benches, &references),
            "goals: 1 of 6 met; missed: user syscall 3.00x > 2.0x, page fault not measured, map batch not measured, \
             event channel not measured, time now not measured"
        );
        assert_eq!(goal_summary(&ROWS[..1], &benches, &references), "goals: 1 of 1 met");
    }

    #[test]
    fn rows_and_guests_agree() {
        // Every row is printed by exactly one guest, and every guest's rows exist.
        for row in ROWS {
            assert_eq!(GUESTS.iter().filter(|guest| guest.rows.contains(&row.wire)).count(), 1, "{}", row.wire);
        }
        for guest in GUESTS {
            assert!(guest.rows.iter().all(|wire| ROWS.iter().any(|row| row.wire == *wire)), "{}", guest.image);
        }
        assert_eq!(goal_text(Some(0.7)), "<= 0.7x");
        assert_eq!(goal_text(None), "-");
    }

    #[test]
    fn selection_by_row_name() {
        let (rows, guests) = select(&[]);
        assert_eq!((rows.len(), guests.len()), (ROWS.len(), GUESTS.len()));
        let (rows, guests) = select(&["page_fault".to_string(), "exception".to_string()]);
        assert_eq!(rows.iter().map(|row| row.wire).collect::<Vec<_>>(), ["page_fault", "exception_bounce"]);
        assert_eq!(guests.iter().map(|guest| guest.image).collect::<Vec<_>>(), ["bench_page_fault", "bench_exception"]);
        assert!(select(&["nothing".to_string()]).0.is_empty());
    }

    #[test]
    fn iteration_defaults_and_timeouts() {
        let null = &GUESTS[0];
        let user = &GUESTS[1];
        let map = &GUESTS[3];
        assert_eq!(iterations_for(Accel::Kvm, null, Some(5)), None, "the null hypercall's count is fixed");
        assert_eq!(iterations_for(Accel::Kvm, user, None), Some(2_000));
        assert_eq!(iterations_for(Accel::Tcg, user, None), Some(20_000));
        assert_eq!(iterations_for(Accel::Kvm, map, None), Some(20));
        assert_eq!(iterations_for(Accel::Kvm, map, Some(3)), Some(3));
        // The bounds are twice the expected cost plus a minute of boot each (the expected
        // KVM total is ~6 minutes); together they stay under 27 minutes.
        let total: Duration =
            GUESTS.iter().map(|guest| guest_timeout(Accel::Kvm, guest, iterations_for(Accel::Kvm, guest, None))).sum();
        assert!(total <= Duration::from_secs(27 * 60), "{total:?}");
        assert_eq!(guest_timeout(Accel::Kvm, user, Some(2_000)), Duration::from_millis(60_000 + 2_200 * 5 * 2));
        assert_eq!(guest_timeout(Accel::Kvm, null, None), Duration::from_secs(300));
    }

    fn parse(words: &[String]) -> std::result::Result<BenchArgs, clap::Error> {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            bench: BenchArgs,
        }
        <Cli as clap::Parser>::try_parse_from(std::iter::once("bench".to_string()).chain(words.iter().cloned()))
            .map(|cli| cli.bench)
    }

    #[test]
    fn the_readmes_bench_commands_parse() {
        let readme = xtask::readme::text().unwrap();
        let mut kernel = 0;
        for (_, block) in xtask::readme::code_blocks(&readme) {
            for line in block.lines().filter_map(|line| line.strip_prefix("cargo xtask bench")) {
                let command = line.split(" #").next().unwrap();
                let words = xtask::readme::shell_words(command).unwrap();
                let args = parse(&words).unwrap_or_else(|error| panic!("cargo xtask bench{command}: {error}"));
                kernel += usize::from(args.kernel);
            }
        }
        assert!(kernel >= 2, "README shows bench --kernel");
        let timeout_alone = parse(&["--timeout".to_string(), "5".to_string()]).err().unwrap();
        assert_eq!(timeout_alone.kind(), clap::error::ErrorKind::MissingRequiredArgument, "--timeout needs --kernel");
        let boots = parse(&["--kernel".to_string(), "--boots".to_string(), "2".to_string()]).unwrap();
        assert_eq!(boots.boots, Some(2));
        assert_eq!(parse(&["--boots".to_string(), "3".to_string()]).unwrap().boots, Some(3), "both tables");
    }

    fn line(name: &str, median: u64) -> GuestBench {
        GuestBench { name: name.to_string(), median, p99: median + 1, iterations: 10 }
    }

    #[test]
    fn each_row_keeps_its_fastest_boot() {
        let boots = vec![
            vec![line("null_hypercall", 900), line("time_now", 150)],
            vec![line("null_hypercall", 700), line("time_now", 300)],
            vec![line("time_now", 140)],
        ];
        let best = lowest_per_row(boots);
        assert_eq!(
            best,
            [line("null_hypercall", 700), line("time_now", 140)],
            "the first boot's order, each row's lowest"
        );
        assert!(lowest_per_row::<GuestBench>(Vec::new()).is_empty());
        assert_eq!(lowest_per_row(vec![vec![line("timer", 5)]]), [line("timer", 5)]);
    }

    #[test]
    fn statistics() {
        assert_eq!(ratio(52, 100), "0.52x");
        assert_eq!(ratio(1, 0), "n/a");
    }
}
