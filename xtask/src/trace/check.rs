//! The end-to-end check of the trace: guest-kernel booted with `trace=` running a short
//! command, its decoded trace held against what the kernel itself reports on its console
//! (its `verbose` shutdown report counts the traps the trace records as bounces).

use super::{decode, describe, label, Stream};
use crate::cmdline::Domain;
use crate::qemu::{self, ConsoleMode, Launch, Machine};
use crate::{archive, initramfs, kernel_args, workspace, Error, Result};
use hypercall_abi::exit::ExitStatus;
use hypercall_abi::hypercall::shutdown_reason;
use hypercall_abi::trace::{flags, kind, TraceRecord};
use hypercall_abi::trap::SYSCALL_VECTOR;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// The command init runs in the traced boot: a pipe (so the kernel forks, execs, faults
/// and switches processes) and an exit code other than 0, so the code the domain powers
/// off with is the command's and not a default.
pub const COMMAND: [&str; 3] = ["sh", "-c", "echo traced | cat; exit 7"];
/// The line [`COMMAND`] prints.
pub const OUTPUT: &str = "traced";
/// The code [`COMMAND`] exits with.
pub const EXIT_CODE: u64 = 7;

/// Linux's system calls that create a process: clone, fork, vfork.
const CREATING_CALLS: [u64; 3] = [56, 57, 58];
/// Where guest-user mode runs: guest-kernel links itself in the upper half
/// (`0xffffffff80000000`) and its processes live in the lower half.
const USER_LIMIT: u64 = 0x0000_8000_0000_0000;

/// The kernel's counters line of its verbose shutdown report, by name: "guest-kernel:
/// 148 system calls, 45 page faults from user mode, 6 interrupts, 3 preemptions, 4
/// processes created" gives `system calls` = 148, `page faults from user mode` = 45 ...
fn counters(console: &str) -> Option<BTreeMap<String, u64>> {
    let line = console
        .lines()
        .filter_map(|line| line.strip_prefix("(d1) guest-kernel: "))
        .find(|line| line.contains(" system calls, "))?;
    line.trim_end_matches('\r')
        .split(", ")
        .map(|part| {
            let (number, name) = part.split_once(' ')?;
            Some((name.to_string(), number.parse().ok()?))
        })
        .collect()
}

/// What the trace of d1 holds that the kernel's report is held against.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// `syscall` bounces.
    pub system_calls: u64,
    /// #PF bounces.
    pub page_faults: u64,
    /// Upcalls that interrupted guest-user mode.
    pub user_upcalls: u64,
    /// clone, fork and vfork system calls.
    pub forks: u64,
    /// Bytes the console writes returned, in all.
    pub written: i64,
}

impl Observed {
    /// Counts d1's records in `stream`.
    pub fn of(stream: &Stream) -> Observed {
        let mut observed = Observed::default();
        for record in stream.events.iter().filter(|record| record.domain == 1) {
            match record.kind {
                kind::BOUNCE if record.number == SYSCALL_VECTOR => {
                    observed.system_calls += 1;
                    observed.forks += u64::from(CREATING_CALLS.contains(&record.arguments[3]));
                }
                kind::BOUNCE if record.number == u64::from(hypercall_abi::trap::vector::PAGE_FAULT) => {
                    observed.page_faults += 1;
                }
                kind::UPCALL => observed.user_upcalls += u64::from(record.arguments[2] < USER_LIMIT),
                kind::HYPERCALL if label(record) == "console_io(WRITE)" => observed.written += record.result,
                _ => {}
            }
        }
        observed
    }
}

impl std::fmt::Display for Observed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} syscall and {} #PF bounces, {} upcalls in user mode, {} clone, fork or vfork calls, {} bytes of console \
             writes",
            self.system_calls, self.page_faults, self.user_upcalls, self.forks, self.written
        )
    }
}

/// Problems with a trace of guest-kernel (domain 1) that ran [`COMMAND`] with `verbose`,
/// held against its console: the console bytes it wrote, its counts of system calls, user
/// page faults, interrupts and processes against the bounces, upcalls and system calls
/// the trace holds, and the code it powered off with.
pub fn check_guest_kernel(console: &str, stream: &Stream) -> Vec<String> {
    let mut problems = Vec::new();
    if stream.names.get(&1).map(String::as_str) != Some("guest-kernel") {
        problems.push(format!("d1 is not traced as guest-kernel: {:?}", stream.names));
    }
    if !stream.ended {
        problems.push("no END record".into());
    }
    if stream.dropped.values().any(|&dropped| dropped > 0) {
        problems.push(format!("records were dropped: {:?}", stream.dropped));
    }
    let events = || stream.events.iter().filter(|record| record.domain == 1);
    let calls = |name: &'static str| events().filter(move |r| r.kind == kind::HYPERCALL && label(r) == name);
    let version = hypercall_abi::ABI_VERSION.packed() as i64;
    if !calls("version(ABI_VERSION)").any(|r| r.flags & flags::RESULT != 0 && r.result == version) {
        problems.push(format!("no version(ABI_VERSION) returning {version:#x}"));
    }

    // Every byte of d1's console lines came through a console write, and nothing else did.
    let writes: Vec<&TraceRecord> = calls("console_io(WRITE)").collect();
    for write in &writes {
        if write.result != write.arguments[1] as i64 {
            problems.push(format!("a console write did not return its count: {}", describe(write)));
        }
    }
    let lines: Vec<&str> =
        console.lines().filter_map(|line| line.strip_prefix("(d1) ")).map(|line| line.trim_end_matches('\r')).collect();
    let written = Observed::of(stream).written;
    let shown: usize = lines.iter().map(|line| line.len() + 1).sum();
    if written != shown as i64 {
        problems.push(format!(
            "console_io(WRITE) returned {written} bytes in {} writes, the console shows {shown} bytes of d1",
            writes.len()
        ));
    }
    if !lines.contains(&OUTPUT) {
        problems.push(format!("the command's output '{OUTPUT}' is not a line of d1's console"));
    }

    // The kernel's own counts against the trace.
    let Observed { system_calls, page_faults, user_upcalls, forks, .. } = Observed::of(stream);
    match counters(console) {
        None => problems
            .push("d1 printed no 'guest-kernel: <n> system calls, ...' line (its verbose shutdown report)".to_string()),
        Some(reported) => {
            let count = |name: &str| reported.get(name).copied();
            if count("system calls") != Some(system_calls) {
                problems.push(format!(
                    "guest-kernel counted {:?} system calls, the trace has {system_calls} syscall bounces",
                    count("system calls")
                ));
            }
            if count("page faults from user mode") != Some(page_faults) {
                problems.push(format!(
                    "guest-kernel counted {:?} page faults from user mode, the trace has {page_faults} #PF bounces",
                    count("page faults from user mode")
                ));
            }
            // An upcall in user mode ends the user run; the kernel also hears of events
            // that came while it ran masked, which are no upcall: at least as many.
            if count("interrupts").is_none_or(|interrupts| interrupts < user_upcalls) {
                problems.push(format!(
                    "guest-kernel counted {:?} interrupts of user runs, the trace has {user_upcalls} upcalls at user \
                     addresses",
                    count("interrupts")
                ));
            }
            // init, and one process per clone, fork or vfork (none fails in this command).
            if count("processes created") != Some(1 + forks) {
                problems.push(format!(
                    "guest-kernel counted {:?} processes created, the trace has init and {forks} clone, fork or vfork \
                     system calls",
                    count("processes created")
                ));
            }
        }
    }

    // The command's code is init's exit status and the domain's power-off code.
    let init_line = format!("guest-kernel: init exited ({EXIT_CODE})");
    if !lines.iter().any(|line| line.starts_with(&init_line)) {
        problems.push(format!("d1 did not report '{init_line}'"));
    }
    let last = events().rev().find(|record| record.kind == kind::HYPERCALL);
    let shutdown = |record: &TraceRecord| {
        label(record) == "sched_op(SHUTDOWN)"
            && record.flags & flags::RESULT == 0
            && record.arguments[1..3] == [shutdown_reason::POWEROFF, EXIT_CODE]
    };
    if !last.is_some_and(shutdown) {
        problems.push(format!(
            "d1's last hypercall is not sched_op(SHUTDOWN, reason={}, code={EXIT_CODE}) without return: {:?}",
            shutdown_reason::POWEROFF,
            last.map(describe)
        ));
    }
    problems
}

/// Boots guest-kernel running [`COMMAND`] with `verbose` and `trace=guest-kernel` under
/// `accel`, decodes the trace and checks it ([`check_guest_kernel`]). The images and the
/// initramfs must be built. `Ok` holds the kernel's counters line and the rendered
/// trace's summary.
pub fn boot_and_check(qemu: &Path, hypervisor: &Path, accel: crate::accel::Accel) -> Result<String> {
    let read = |path: &Path| std::fs::read(path).map_err(|error| Error::io("cannot read", path, error));
    let image = read(&workspace::guests_dir().join("guest-kernel.elf"))?;
    let modules = read(&initramfs::path())?;
    let runs = workspace::runs_dir();
    let initrd = runs.join("trace-check.tar");
    qemu::write_archive(
        &initrd,
        &archive::build(&[("guest-kernel".to_string(), image), ("initramfs".to_string(), modules)])?,
    )?;
    let command: Vec<std::ffi::OsString> = COMMAND.iter().map(std::ffi::OsString::from).collect();
    let domain = Domain {
        mem: Some(kernel_args::MEMORY.to_string()),
        module: Some("initramfs".to_string()),
        args: kernel_args::tokens(&["verbose".to_string()], &command)?,
        ..Domain::new("guest-kernel")
    };
    let trace_file = runs.join("trace-check.bin");
    let _ = std::fs::remove_file(&trace_file);
    let launch = Launch {
        qemu: qemu.to_path_buf(),
        hypervisor: hypervisor.to_path_buf(),
        initrd,
        append: crate::cmdline::command_line(&[domain], &["trace=guest-kernel".to_string()])?,
        accel,
        machine: Machine::Microvm,
        memory: qemu::MACHINE_MEMORY,
        extra: super::qemu_args(&trace_file)?,
        timeout: Duration::from_secs(120),
    };
    let outcome = qemu::run(&launch, ConsoleMode::Capture)?;
    let failed = |problems: Vec<String>| {
        Error::failed(format!(
            "trace check of guest-kernel failed ({}):\n  {}\nqemu: {}\nconsole:\n{}",
            outcome.describe(launch.timeout),
            problems.join("\n  "),
            launch.display(),
            outcome.output
        ))
    };
    if outcome.status != Some(ExitStatus::NONZERO_CODE) {
        return Err(failed(vec![format!(
            "the run did not end with status {} ({}: the command exits with {EXIT_CODE})",
            ExitStatus::NONZERO_CODE.0,
            ExitStatus::NONZERO_CODE.describe()
        )]));
    }
    let bytes = std::fs::read(&trace_file).map_err(|error| Error::io("cannot read", &trace_file, error))?;
    let stream = decode(&bytes).map_err(|problem| failed(vec![problem]))?;
    let problems = check_guest_kernel(&outcome.output, &stream);
    if !problems.is_empty() {
        return Err(failed(problems));
    }
    let reported = outcome
        .output
        .lines()
        .find(|line| line.starts_with("(d1) guest-kernel: ") && line.contains(" system calls, "))
        .unwrap_or_default();
    let rendered = stream.render();
    let summary = rendered.split_once("\ntrace summary").map_or(rendered.as_str(), |(_, rest)| rest);
    Ok(format!(
        "{}\nthe trace agrees: {}; sched_op(SHUTDOWN) with code {EXIT_CODE}\ntrace summary{summary}",
        reported.trim_end(),
        Observed::of(&stream)
    ))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{bytes, call, domain, start};
    use super::*;
    use hypercall_abi::hypercall::{console_cmd, sched_cmd, Hypercall};

    const LINES: [&str; 4] = [
        "guest-kernel 0.1.0: paravirtualized on ringfence",
        "traced",
        "guest-kernel: init exited (7); frames: 0 live, 1113 at most, limit 28966",
        "guest-kernel: 3 system calls, 2 page faults from user mode, 1 interrupts, 0 preemptions, 2 processes created",
    ];

    fn console() -> String {
        LINES.iter().map(|line| format!("(hv) noise 7 system calls, 9\n(d1) {line}\r\n")).collect()
    }

    fn bounce(number: u64, arguments: [u64; 6]) -> TraceRecord {
        TraceRecord { kind: kind::BOUNCE, flags: flags::RESULT, domain: 1, number, arguments, ..Default::default() }
    }

    fn syscall(rax: u64, rdi: u64) -> TraceRecord {
        bounce(SYSCALL_VECTOR, [0, 0, 0x40_0000, rax, rdi, 0])
    }

    fn upcall(rip: u64) -> TraceRecord {
        TraceRecord {
            kind: kind::UPCALL,
            domain: 1,
            number: 0x101,
            arguments: [0, 0, rip, 0, 0, 0],
            ..Default::default()
        }
    }

    /// The records of a run that matches [`console`].
    fn records() -> Vec<TraceRecord> {
        let written = LINES.iter().map(|line| line.len() as u64 + 1).sum::<u64>();
        let mut shutdown =
            call(Hypercall::SCHED_OP, [sched_cmd::SHUTDOWN, shutdown_reason::POWEROFF, EXIT_CODE, 0, 0, 0], 0, 0, 1);
        shutdown.flags = 0;
        vec![
            start(),
            domain(1, "guest-kernel"),
            call(Hypercall::VERSION, [0; 6], hypercall_abi::ABI_VERSION.packed() as i64, 0, 1),
            call(Hypercall::CONSOLE_IO, [console_cmd::WRITE, written - 7, 0x1000, 0, 0, 0], written as i64 - 7, 0, 1),
            syscall(57, 0),
            bounce(14, [6, 0x1000, 0x40_0000, 0, 0, 0]),
            upcall(0xffff_ffff_8000_2280),
            upcall(0x40_1000),
            bounce(14, [6, 0x1000, 0x40_0000, 0, 0, 0]),
            call(Hypercall::CONSOLE_IO, [console_cmd::WRITE, 7, 0x1000, 0, 0, 0], 7, 0, 1),
            syscall(1, 1),
            syscall(231, EXIT_CODE),
            shutdown,
            TraceRecord { kind: kind::END, ..Default::default() },
        ]
    }

    fn problems(console: &str, records: &[TraceRecord]) -> Vec<String> {
        check_guest_kernel(console, &decode(&bytes(records)).unwrap())
    }

    #[test]
    fn the_counters_line_is_read_by_name() {
        let read = counters(&console()).unwrap();
        assert_eq!(read.get("system calls"), Some(&3));
        assert_eq!(read.get("page faults from user mode"), Some(&2));
        assert_eq!(read.get("processes created"), Some(&2));
        assert_eq!(counters("(d1) guest-kernel: 3 system calls, many page faults\n"), None);
        assert_eq!(counters("(d2) guest-kernel: 3 system calls, 1 page faults\n"), None, "only d1's");
    }

    #[test]
    fn a_trace_that_matches_the_kernels_report_passes() {
        assert_eq!(problems(&console(), &records()), Vec::<String>::new());
    }

    #[test]
    fn each_disagreement_is_named() {
        let without = |index: usize| {
            let mut records = records();
            records.remove(index);
            problems(&console(), &records)
        };
        let only = |problems: Vec<String>, wanted: &str| {
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert!(problems[0].contains(wanted), "{problems:?}");
        };
        only(without(10), "counted Some(3) system calls, the trace has 2 syscall bounces");
        only(without(5), "counted Some(2) page faults from user mode, the trace has 1 #PF bounces");
        let with_console = |console: String| problems(&console, &records());
        only(with_console(console().replace(" 1 interrupts", " 0 interrupts")), "1 upcalls at user addresses");
        only(with_console(console().replace("2 processes", "3 processes")), "init and 1 clone, fork or vfork");
        only(without(9), "returned 231 bytes in 1 writes, the console shows 238 bytes of d1");
        only(with_console(console().replace(" system calls,", " system_calls,")), "no 'guest-kernel: <n> system calls");
        // The command's code: the kernel's report and the power-off code.
        let mut other_code = records();
        other_code[12].arguments[2] = 0;
        only(problems(&console(), &other_code), "not sched_op(SHUTDOWN, reason=0, code=7)");
        let mut returned = records();
        returned[12].flags = flags::RESULT;
        only(problems(&console(), &returned), "without return");
        let exited = console().replace("exited (7)", "exited (0)");
        only(with_console(exited), "did not report 'guest-kernel: init exited (7)'");
        // The command's output, the same number of bytes otherwise.
        only(with_console(console().replace("(d1) traced", "(d1) tracex")), "output 'traced' is not a line");
    }

    #[test]
    fn a_broken_stream_is_named() {
        let mut records = records();
        records.pop();
        records[1] = domain(1, "hello");
        let problems = problems(&console(), &records);
        assert!(problems.iter().any(|p| p.contains("not traced as guest-kernel")), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("no END record")), "{problems:?}");
    }
}
