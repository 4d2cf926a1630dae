//! The end-to-end check of the trace: guest-kernel booted with `trace=`, its decoded
//! trace held against what the guest reports on its console.

use super::{decode, describe, label, Stream};
use crate::qemu::{self, ConsoleMode, Launch, Machine};
use crate::{archive, workspace, Error, Result};
use hypercall_abi::trace::{flags, kind, TraceRecord};
use std::path::Path;
use std::time::Duration;

/// The first number after `prefix` in `console`.
fn number_after(console: &str, prefix: &str) -> Option<u64> {
    let start = console.find(prefix)? + prefix.len();
    let digits: String = console[start..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Problems with a trace of guest-kernel (domain 1) against what it says it did on its
/// console: its hypercalls' known results, and counts that must match its own reports.
pub fn check_guest_kernel(console: &str, stream: &Stream) -> Vec<String> {
    let mut problems = Vec::new();
    let count = |wanted: &str| {
        stream.summary().iter().filter(|row| row.domain == 1 && row.label == wanted).map(|row| row.count).sum::<u64>()
    };
    if stream.names.get(&1).map(String::as_str) != Some("guest-kernel") {
        problems.push(format!("d1 is not traced as guest-kernel: {:?}", stream.names));
    }
    if !stream.ended {
        problems.push("no END record".into());
    }
    if stream.dropped.values().any(|&dropped| dropped > 0) {
        problems.push(format!("records were dropped: {:?}", stream.dropped));
    }
    let calls =
        |name: &'static str| stream.events.iter().filter(move |r| r.kind == kind::HYPERCALL && label(r) == name);
    let version = hypercall_abi::ABI_VERSION.packed() as i64;
    if !calls("version(ABI_VERSION)").any(|r| r.flags & flags::RESULT != 0 && r.result == version) {
        problems.push(format!("no version(ABI_VERSION) returning {version:#x}"));
    }
    let writes: Vec<&TraceRecord> = calls("console_io(WRITE)").collect();
    if writes.is_empty() {
        problems.push("no console_io(WRITE)".into());
    }
    for write in &writes {
        if write.result != write.arguments[1] as i64 {
            problems.push(format!("a console write did not return its count: {}", describe(write)));
        }
    }
    // Every byte of the guest's console lines came through one of those writes.
    let written: i64 = writes.iter().map(|write| write.result).sum();
    let shown: usize = console
        .lines()
        .filter_map(|line| line.strip_prefix("(d1) "))
        .map(|line| line.trim_end_matches('\r').len() + 1)
        .sum();
    if written != shown as i64 {
        problems
            .push(format!("console_io(WRITE) returned {written} bytes in all, the console shows {shown} bytes of d1"));
    }
    // "process 1: exit code 42 after 105 system calls (2 writes, 3 refused with EFAULT,
    // 100 getpid)": its system calls use Linux's numbers (write 1, getpid 39, exit 60).
    let process_line = console.lines().find(|line| line.contains(" system calls (")).unwrap_or_default();
    let syscalls = |number: u64| {
        stream
            .events
            .iter()
            .filter(|r| r.domain == 1 && r.kind == kind::BOUNCE && r.number == hypercall_abi::trap::SYSCALL_VECTOR)
            .filter(|r| r.arguments[3] == number)
            .count() as u64
    };
    let writes =
        number_after(process_line, "system calls (").zip(number_after(process_line, "writes, ")).map(|(a, b)| a + b);
    let getpids = number_after(process_line, "EFAULT, ");
    let exit_code = number_after(process_line, "exit code ");
    let exits: Vec<u64> = stream
        .events
        .iter()
        .filter(|r| r.kind == kind::BOUNCE && r.number == hypercall_abi::trap::SYSCALL_VECTOR && r.arguments[3] == 60)
        .map(|r| r.arguments[4])
        .collect();
    if writes != Some(syscalls(1))
        || getpids != Some(syscalls(39))
        || exit_code.map(|code| vec![code]) != Some(exits.clone())
    {
        problems.push(format!(
            "the guest reports '{process_line}'; the trace has {} write, {} getpid and exit({exits:?}) system calls",
            syscalls(1),
            syscalls(39)
        ));
    }
    match number_after(console, "breakpoint trapped ") {
        Some(traps) if traps == count("bounce #BP") => {}
        reported => problems.push(format!(
            "the guest reports {reported:?} breakpoints, the trace has {} #BP bounces",
            count("bounce #BP")
        )),
    }
    // "demand paging: 64 pages at ...: 64 faults", then one more touch after the unmap.
    match number_after(console, "demand paging: ") {
        Some(pages) if count("bounce #PF") > pages => {}
        reported => problems.push(format!(
            "the guest demand-paged {reported:?} pages and touched one more, the trace has {} #PF bounces",
            count("bounce #PF")
        )),
    }
    let last = stream.events.iter().rev().find(|record| record.domain == 1 && record.kind == kind::HYPERCALL);
    match last {
        Some(record) if label(record) == "sched_op(SHUTDOWN)" && record.flags & flags::RESULT == 0 => {}
        other => problems.push(format!(
            "d1's last hypercall is not a sched_op(SHUTDOWN) that does not return: {:?}",
            other.map(describe)
        )),
    }
    problems
}

/// Boots guest-kernel with `trace=guest-kernel` under `accel`, decodes the trace and
/// checks it ([`check_guest_kernel`]). `Ok` holds the rendered trace's summary part.
pub fn boot_and_check(qemu: &Path, hypervisor: &Path, accel: crate::accel::Accel) -> Result<String> {
    let image_path = workspace::guests_dir().join("guest-kernel.elf");
    let image = std::fs::read(&image_path).map_err(|error| Error::io("cannot read", &image_path, error))?;
    let runs = workspace::runs_dir();
    let initrd = runs.join("trace-check.tar");
    qemu::write_archive(&initrd, &archive::build(&[("guest-kernel".to_string(), image)])?)?;
    let trace_file = runs.join("trace-check.bin");
    let _ = std::fs::remove_file(&trace_file);
    let launch = Launch {
        qemu: qemu.to_path_buf(),
        hypervisor: hypervisor.to_path_buf(),
        initrd,
        append: "domain=guest-kernel trace=guest-kernel".to_string(),
        accel,
        machine: Machine::Microvm,
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
    if outcome.status != Some(hypercall_abi::exit::ExitStatus::SUCCESS) {
        return Err(failed(vec!["the run did not end with status 0".into()]));
    }
    let bytes = std::fs::read(&trace_file).map_err(|error| Error::io("cannot read", &trace_file, error))?;
    let stream = decode(&bytes).map_err(|problem| failed(vec![problem]))?;
    let problems = check_guest_kernel(&outcome.output, &stream);
    if !problems.is_empty() {
        return Err(failed(problems));
    }
    let rendered = stream.render();
    let summary = rendered.split_once("\ntrace summary").map_or(rendered.as_str(), |(_, rest)| rest);
    Ok(format!("trace summary{summary}"))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{bytes, call, domain, start};
    use super::*;
    use hypercall_abi::hypercall::{console_cmd, sched_cmd, Hypercall};

    #[test]
    fn a_guest_kernel_trace_is_checked_against_its_console() {
        let version = call(Hypercall::VERSION, [0; 6], hypercall_abi::ABI_VERSION.packed() as i64, 0, 1);
        let write = call(Hypercall::CONSOLE_IO, [console_cmd::WRITE, 6, 0x1000, 0, 0, 0], 6, 0, 1);
        let mut shutdown = call(Hypercall::SCHED_OP, [sched_cmd::SHUTDOWN, 0, 0, 0, 0, 0], 0, 0, 1);
        shutdown.flags = 0;
        let end = TraceRecord { kind: kind::END, ..Default::default() };
        let stream = decode(&bytes(&[start(), domain(1, "guest-kernel"), version, write, shutdown, end])).unwrap();
        let problems = check_guest_kernel("(d1) hello\r\n", &stream);
        // The counts the console reports are missing, and no #PF was traced.
        assert!(problems.iter().any(|p| p.contains("system calls")), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("#PF")), "{problems:?}");
        assert!(!problems.iter().any(|p| p.contains("console")), "6 bytes written, 6 shown: {problems:?}");
        assert!(!problems.iter().any(|p| p.contains("version") || p.contains("SHUTDOWN")), "{problems:?}");
        let problems = check_guest_kernel("(d1) hello, world\n", &stream);
        assert!(problems.iter().any(|p| p.contains("returned 6 bytes in all, the console shows 13")), "{problems:?}");
    }

    #[test]
    fn a_guest_kernel_trace_that_matches_its_console_passes() {
        let lines = [
            "guest-kernel: exceptions: handlers installed; breakpoint trapped 1 time(s), resumed at 0x1 (ok)",
            "guest-kernel: demand paging: 2 pages at 0xffffc90000000000: 2 faults, each mapped a zeroed page (yes)",
            "guest-kernel: process 1: exit code 42 after 4 system calls (1 writes, 1 refused with EFAULT, 1 getpid) (ok)",
        ];
        let console: String = lines.iter().map(|line| format!("(hv) noise 7 after 9\n(d1) {line}\r\n")).collect();
        let written = lines.iter().map(|line| line.len() as u64 + 1).sum::<u64>();
        let bounce = |number: u64, arguments: [u64; 6]| TraceRecord {
            kind: kind::BOUNCE,
            flags: flags::RESULT,
            domain: 1,
            number,
            arguments,
            ..Default::default()
        };
        let syscall = |rax: u64, rdi: u64| bounce(hypercall_abi::trap::SYSCALL_VECTOR, [0, 0, 0x400000, rax, rdi, 0]);
        let mut records = vec![
            start(),
            domain(1, "guest-kernel"),
            call(Hypercall::VERSION, [0; 6], hypercall_abi::ABI_VERSION.packed() as i64, 0, 1),
            call(Hypercall::CONSOLE_IO, [console_cmd::WRITE, written, 0x1000, 0, 0, 0], written as i64, 0, 1),
            bounce(3, [0; 6]),
            bounce(14, [0; 6]),
            bounce(14, [0; 6]),
            bounce(14, [0; 6]),
            syscall(1, 0),
            syscall(1, 0),
            syscall(39, 0),
            syscall(60, 42),
        ];
        let mut shutdown = call(Hypercall::SCHED_OP, [sched_cmd::SHUTDOWN, 0, 0, 0, 0, 0], 0, 0, 1);
        shutdown.flags = 0;
        records.push(shutdown);
        records.push(TraceRecord { kind: kind::END, ..Default::default() });
        let stream = decode(&bytes(&records)).unwrap();
        assert_eq!(check_guest_kernel(&console, &stream), Vec::<String>::new());
        // One getpid the guest made but the trace lacks is seen.
        records.remove(10);
        let problems = check_guest_kernel(&console, &decode(&bytes(&records)).unwrap());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("the trace has 2 write, 0 getpid and exit([42]) system calls"), "{problems:?}");
    }
}
