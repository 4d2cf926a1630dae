//! The hypercall trace on the host (SPEC.md §22): the QEMU arguments that attach the
//! trace port, the `trace=` token for `--trace`, and decoding the records the hypervisor
//! wrote into readable lines and a per-domain summary. Record layout, hypercall names and
//! argument names all come from hypercall-abi.

use crate::qemu::{self, ConsoleMode, Launch, Machine};
use crate::{archive, workspace, Error, Result};
use hypercall_abi::event::event_cmd;
use hypercall_abi::hypercall::{callback_cmd, console_cmd, sched_cmd, version_cmd, Hypercall};
use hypercall_abi::memory::{memory_cmd, space_cmd};
use hypercall_abi::trace::{flags, kind, unpack_name, TraceRecord, FORMAT_VERSION, RECORD_BYTES, TRACE_PORT};
use hypercall_abi::trap::vector::{self, VectorName};
use hypercall_abi::Errno;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;
use zerocopy::FromBytes;

/// QEMU arguments that put a 16550 UART at the trace port (COM2), writing to `path`.
pub fn qemu_args(path: &Path) -> Result<Vec<String>> {
    let text = path.to_str().ok_or_else(|| {
        Error::environment(format!("the trace file path {} is not UTF-8; QEMU cannot be given it", path.display()))
    })?;
    // QEMU's option syntax doubles a comma inside a value.
    let escaped = text.replace(',', ",,");
    Ok(vec![
        "-chardev".into(),
        format!("file,id=trace,path={escaped}"),
        "-device".into(),
        format!("isa-serial,chardev=trace,iobase={TRACE_PORT:#x},irq=3"),
    ])
}

/// The hypervisor's `trace=` token for `--trace[=DOMAINS]`: `all`, or a comma-separated
/// list of domain ids (1 = the first domain) and image names, each of which must name
/// one of `images` (the domains' images in start order).
pub fn option_token(value: &str, images: &[String]) -> Result<String> {
    if value == "all" {
        return Ok("trace=all".to_string());
    }
    let known = || {
        let listed: Vec<String> =
            images.iter().enumerate().map(|(index, image)| format!("{} ({image})", index + 1)).collect();
        listed.join(", ")
    };
    for item in value.split(',') {
        let names_a_domain = match item.parse::<usize>() {
            Ok(id) => (1..=images.len()).contains(&id),
            Err(_) => images.iter().any(|image| image == item),
        };
        if item.is_empty() || !names_a_domain {
            return Err(Error::usage(format!(
                "--trace={value}: '{item}' names no domain of this run; write --trace (all domains) or \
                 --trace=<id|image>[,...] with ids and images from: {}",
                known()
            )));
        }
    }
    Ok(format!("trace={value}"))
}

/// A decoded record stream.
#[derive(Clone, Debug, Default)]
pub struct Stream {
    /// TSC ticks per second, from START.
    pub tsc_hz: u64,
    /// TSC when tracing began.
    pub start_tsc: u64,
    /// Traced domains: id to image name.
    pub names: BTreeMap<u32, String>,
    /// Hypercall, bounce and upcall records, in the order they were written.
    pub events: Vec<TraceRecord>,
    /// Records lost per domain (DROPPED records summed).
    pub dropped: BTreeMap<u32, u64>,
    /// Whether END arrived (the run ended normally).
    pub ended: bool,
    /// Bytes after the last whole record (a run cut short mid-record).
    pub trailing_bytes: usize,
}

/// Decodes the trace port's bytes; fails when they are not a stream this xtask reads.
pub fn decode(bytes: &[u8]) -> std::result::Result<Stream, String> {
    let mut stream = Stream { trailing_bytes: bytes.len() % RECORD_BYTES, ..Stream::default() };
    let mut records = bytes.chunks_exact(RECORD_BYTES).map(TraceRecord::read_from_bytes);
    match records.next() {
        None => {
            return Err(
                "the trace port received nothing: the hypervisor traced no domain (its `(hv) trace:` line says why)"
                    .into(),
            )
        }
        Some(Ok(start)) if start.kind == kind::START && start.number == FORMAT_VERSION => {
            stream.tsc_hz = start.arguments[0];
            stream.start_tsc = start.tsc;
        }
        Some(Ok(start)) if start.kind == kind::START => {
            return Err(format!("trace format version {} (this xtask reads {FORMAT_VERSION})", start.number))
        }
        Some(_) => return Err("the trace does not begin with a START record".into()),
    }
    if stream.tsc_hz == 0 {
        return Err("the START record gives no TSC frequency".into());
    }
    for (index, record) in records.enumerate() {
        let Ok(record) = record else { unreachable!("chunks are exactly one record") };
        if stream.ended {
            return Err(format!("record {} follows END", index + 1));
        }
        match record.kind {
            kind::DOMAIN => {
                let bytes = unpack_name(&record.arguments);
                let length = bytes.iter().position(|&byte| byte == 0).unwrap_or(bytes.len());
                stream.names.insert(record.domain, String::from_utf8_lossy(&bytes[..length]).into_owned());
            }
            kind::HYPERCALL | kind::BOUNCE | kind::UPCALL => stream.events.push(record),
            kind::DROPPED => *stream.dropped.entry(record.domain).or_default() += record.number,
            kind::END => stream.ended = true,
            other => return Err(format!("record {} has unknown kind {other}", index + 1)),
        }
    }
    Ok(stream)
}

/// A value as the lines print it: small ones in decimal, addresses and masks in hex.
fn value(number: u64) -> String {
    if number < 10_000 {
        number.to_string()
    } else {
        format!("{number:#x}")
    }
}

/// The name of sub-command `cmd` of `call`, for calls whose first argument is one.
fn command_name(call: Hypercall, cmd: u64) -> Option<&'static str> {
    let names: &[(u64, &str)] = match call {
        Hypercall::CONSOLE_IO => &[(console_cmd::WRITE, "WRITE"), (console_cmd::READ, "READ")],
        Hypercall::SCHED_OP => &[
            (sched_cmd::YIELD, "YIELD"),
            (sched_cmd::BLOCK, "BLOCK"),
            (sched_cmd::SHUTDOWN, "SHUTDOWN"),
            (sched_cmd::POLL, "POLL"),
        ],
        Hypercall::VERSION => &[(version_cmd::ABI_VERSION, "ABI_VERSION"), (version_cmd::FEATURES, "FEATURES")],
        Hypercall::CALLBACK_OP => &[(callback_cmd::REGISTER, "REGISTER")],
        Hypercall::MEMORY_OP => &[
            (memory_cmd::CURRENT_RESERVATION, "CURRENT_RESERVATION"),
            (memory_cmd::MAXIMUM_RESERVATION, "MAXIMUM_RESERVATION"),
            (memory_cmd::INCREASE_RESERVATION, "INCREASE_RESERVATION"),
            (memory_cmd::DECREASE_RESERVATION, "DECREASE_RESERVATION"),
            (memory_cmd::MAXIMUM_GFN, "MAXIMUM_GFN"),
        ],
        Hypercall::ADDRESS_SPACE_OP => &[
            (space_cmd::CREATE, "CREATE"),
            (space_cmd::DESTROY, "DESTROY"),
            (space_cmd::SWITCH, "SWITCH"),
            (space_cmd::FLUSH_VA, "FLUSH_VA"),
            (space_cmd::FLUSH_ALL, "FLUSH_ALL"),
            (space_cmd::QUERY, "QUERY"),
        ],
        Hypercall::EVENT_CHANNEL_OP => &[
            (event_cmd::ALLOC_UNBOUND, "ALLOC_UNBOUND"),
            (event_cmd::BIND_INTERDOMAIN, "BIND_INTERDOMAIN"),
            (event_cmd::BIND_VIRQ, "BIND_VIRQ"),
            (event_cmd::BIND_IPI, "BIND_IPI"),
            (event_cmd::CLOSE, "CLOSE"),
            (event_cmd::SEND, "SEND"),
            (event_cmd::STATUS, "STATUS"),
            (event_cmd::UNMASK, "UNMASK"),
        ],
        _ => &[],
    };
    names.iter().find(|(number, _)| *number == cmd).map(|(_, name)| *name)
}

/// What the summary groups a record under: the hypercall with its sub-command, the
/// bounced vector, or "upcall".
pub fn label(record: &TraceRecord) -> String {
    match record.kind {
        kind::HYPERCALL => {
            let call = Hypercall(record.number);
            let Some(name) = call.name() else { return format!("hypercall {}", record.number) };
            let first_is_command = call.arguments().first() == Some(&"cmd");
            match command_name(call, record.arguments[0]) {
                Some(command) if first_is_command => format!("{name}({command})"),
                _ => name.to_string(),
            }
        }
        kind::UPCALL => "upcall".to_string(),
        _ => format!("bounce {}", VectorName(record.number)),
    }
}

/// The event itself: `console_io(WRITE, count=14, buffer=0x...) = 14`.
pub fn describe(record: &TraceRecord) -> String {
    let mut text = String::new();
    match record.kind {
        kind::HYPERCALL => {
            let call = Hypercall(record.number);
            match call.name() {
                Some(name) => {
                    let mut parts = Vec::new();
                    for (index, argument) in call.arguments().iter().enumerate() {
                        let raw = record.arguments[index];
                        let named = (*argument == "cmd").then(|| command_name(call, raw)).flatten();
                        parts.push(match named {
                            Some(command) => command.to_string(),
                            None => format!("{argument}={}", value(raw)),
                        });
                    }
                    let _ = write!(text, "{name}({})", parts.join(", "));
                }
                None => {
                    let registers: Vec<String> = record.arguments.iter().map(|&raw| value(raw)).collect();
                    let _ = write!(text, "hypercall {}({})", record.number, registers.join(", "));
                }
            }
            if record.flags & flags::RESULT != 0 {
                match Errno::from_return(record.result) {
                    Ok(result) => {
                        let _ = write!(text, " = {}", value(result));
                    }
                    Err(errno) => {
                        let _ = write!(text, " = -{errno}");
                    }
                }
                if record.flags & flags::SWITCHED != 0 {
                    text.push_str(" (may yield or sleep)");
                }
            } else {
                text.push_str(" (no return)");
            }
        }
        kind::UPCALL => {
            let _ = write!(text, "upcall at rip {:#x}", record.arguments[2]);
        }
        _ => {
            let [error_code, fault_address, rip, rax, rdi, rsi] = record.arguments;
            let _ = write!(text, "bounce {}", VectorName(record.number));
            if record.number == hypercall_abi::trap::SYSCALL_VECTOR {
                let _ = write!(text, "(rax={}, rdi={}, rsi={})", value(rax), value(rdi), value(rsi));
            } else if record.number == u64::from(vector::PAGE_FAULT) {
                let _ = write!(text, "(error={error_code:#x}, cr2={fault_address:#x})");
            } else if record.number < 32 {
                let _ = write!(text, "(error={error_code:#x})");
            }
            let _ = write!(text, " at rip {rip:#x}");
        }
    }
    if record.kind != kind::HYPERCALL && record.result != 0 {
        text.push_str(" not deliverable: the domain was killed");
    }
    text
}

/// Cycles from the start of the handler to its end.
fn cycles(record: &TraceRecord) -> u64 {
    record.tsc_end.saturating_sub(record.tsc)
}

impl Stream {
    /// The domain's name as lines print it.
    fn domain(&self, id: u32) -> String {
        format!("d{id} {}", self.names.get(&id).map_or("?", String::as_str))
    }

    /// One readable line: domain, time since tracing began, the event, its cycles.
    pub fn line(&self, record: &TraceRecord) -> String {
        let micros = record.tsc.saturating_sub(self.start_tsc) as f64 * 1e6 / self.tsc_hz as f64;
        format!(
            "{:<18} +{micros:>10.1}us  {}  [{} cycles]",
            self.domain(record.domain),
            describe(record),
            cycles(record)
        )
    }

    /// Count, mean and max cycles per domain and [`label`], in domain order then by
    /// first appearance.
    pub fn summary(&self) -> Vec<Row> {
        let mut rows: Vec<Row> = Vec::new();
        for record in &self.events {
            let label = label(record);
            let spent = cycles(record);
            match rows.iter_mut().find(|row| row.domain == record.domain && row.label == label) {
                Some(row) => {
                    row.count += 1;
                    row.total_cycles += u128::from(spent);
                    row.max_cycles = row.max_cycles.max(spent);
                }
                None => rows.push(Row {
                    domain: record.domain,
                    label,
                    count: 1,
                    total_cycles: u128::from(spent),
                    max_cycles: spent,
                }),
            }
        }
        rows.sort_by_key(|row| row.domain);
        rows
    }

    /// Every line, then the summary table, the drop counts and whether the stream ended.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for record in &self.events {
            out.push_str(&self.line(record));
            out.push('\n');
        }
        let rows = self.summary();
        let width = rows.iter().map(|row| row.label.len()).max().unwrap_or(5).max(5);
        let _ = writeln!(out, "\ntrace summary (cycles from handler entry to exit):");
        let _ = writeln!(out, "{:<18} {:<width$} {:>8} {:>12} {:>12}", "domain", "event", "count", "mean", "max");
        for row in &rows {
            let _ = writeln!(
                out,
                "{:<18} {:<width$} {:>8} {:>12} {:>12}",
                self.domain(row.domain),
                row.label,
                row.count,
                row.mean_cycles(),
                row.max_cycles
            );
        }
        for (&id, name) in &self.names {
            let dropped = self.dropped.get(&id).copied().unwrap_or(0);
            let total = self.events.iter().filter(|record| record.domain == id).count();
            let _ = writeln!(out, "d{id} {name}: {total} records, {dropped} dropped (its ring was full)");
        }
        if !self.ended {
            let _ = writeln!(out, "the trace has no END record: the run did not end normally; records may be missing");
        }
        if self.trailing_bytes > 0 {
            let _ = writeln!(out, "{} bytes of a cut-off record ignored", self.trailing_bytes);
        }
        out
    }
}

/// One summary row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// Domain id.
    pub domain: u32,
    /// What was counted ([`label`]).
    pub label: String,
    /// How many.
    pub count: u64,
    /// Sum of their cycles.
    pub total_cycles: u128,
    /// The longest.
    pub max_cycles: u64,
}

impl Row {
    /// Mean cycles, rounded down.
    pub fn mean_cycles(&self) -> u64 {
        u64::try_from(self.total_cycles / u128::from(self.count.max(1))).unwrap_or(u64::MAX)
    }
}

/// Where `cargo xtask run --trace` has QEMU write the trace port.
pub fn run_file() -> std::path::PathBuf {
    workspace::runs_dir().join("trace.bin")
}

/// The decoded trace in `path`: every line, then the summary.
pub fn report(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|error| Error::io("cannot read the trace", path, error))?;
    let stream = decode(&bytes).map_err(|problem| Error::failed(format!("trace {}: {problem}", path.display())))?;
    Ok(stream.render())
}

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
        extra: qemu_args(&trace_file)?,
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
    use super::*;
    use hypercall_abi::trace::pack_name;
    use zerocopy::IntoBytes;

    const HZ: u64 = 1_000_000_000;

    fn start() -> TraceRecord {
        let mut record = TraceRecord { kind: kind::START, number: FORMAT_VERSION, tsc: 1000, ..Default::default() };
        record.arguments[0] = HZ;
        record
    }

    fn domain(id: u32, name: &str) -> TraceRecord {
        TraceRecord { kind: kind::DOMAIN, domain: id, arguments: pack_name(name), ..Default::default() }
    }

    fn call(number: Hypercall, arguments: [u64; 6], result: i64, tsc: u64, cycles: u64) -> TraceRecord {
        TraceRecord {
            kind: kind::HYPERCALL,
            flags: flags::RESULT,
            domain: 1,
            number: number.0,
            arguments,
            result,
            tsc,
            tsc_end: tsc + cycles,
            ..Default::default()
        }
    }

    fn bytes(records: &[TraceRecord]) -> Vec<u8> {
        records.iter().flat_map(|record| record.as_bytes().to_vec()).collect()
    }

    #[test]
    fn hypercalls_decode_with_names_commands_and_results() {
        let write = call(Hypercall::CONSOLE_IO, [console_cmd::WRITE, 14, 0xffff_8000_1234, 0, 0, 0], 14, 13_300, 5);
        assert_eq!(describe(&write), "console_io(WRITE, count=14, buffer=0xffff80001234) = 14");
        let refused = call(Hypercall::MEMORY_OP, [memory_cmd::INCREASE_RESERVATION, 0, 0, 0, 0, 0], -22, 0, 1);
        assert_eq!(describe(&refused), "memory_op(INCREASE_RESERVATION, a=0, b=0, c=0) = -EINVAL");
        let unknown = call(Hypercall(50), [1, 2, 3, 4, 5, 6], -38, 0, 1);
        assert_eq!(describe(&unknown), "hypercall 50(1, 2, 3, 4, 5, 6) = -ENOSYS");
        let mut shutdown = call(Hypercall::SCHED_OP, [sched_cmd::SHUTDOWN, 0, 0, 0, 0, 0], 0, 0, 1);
        shutdown.flags = 0;
        assert_eq!(describe(&shutdown), "sched_op(SHUTDOWN, a=0, b=0, c=0) (no return)");
        let stream = decode(&bytes(&[start(), domain(1, "guest-kernel"), write])).unwrap();
        assert_eq!(
            stream.line(&stream.events[0]),
            "d1 guest-kernel    +      12.3us  console_io(WRITE, count=14, buffer=0xffff80001234) = 14  [5 cycles]"
        );
    }

    #[test]
    fn bounces_and_upcalls_decode() {
        let fault = TraceRecord {
            kind: kind::BOUNCE,
            flags: flags::RESULT,
            domain: 1,
            number: 14,
            arguments: [6, 0xdead_b000, 0x40_1000, 0, 0, 0],
            ..Default::default()
        };
        assert_eq!(describe(&fault), "bounce #PF(error=0x6, cr2=0xdeadb000) at rip 0x401000");
        let syscall = TraceRecord {
            number: hypercall_abi::trap::SYSCALL_VECTOR,
            arguments: [0, 0, 0x40_1000, 39, 0, 0],
            ..fault
        };
        assert_eq!(describe(&syscall), "bounce syscall(rax=39, rdi=0, rsi=0) at rip 0x401000");
        let upcall =
            TraceRecord { kind: kind::UPCALL, number: hypercall_abi::event::EVENT_VECTOR, result: -1, ..fault };
        assert_eq!(describe(&upcall), "upcall at rip 0x401000 not deliverable: the domain was killed");
        assert_eq!(
            (label(&fault), label(&syscall), label(&upcall)),
            ("bounce #PF".into(), "bounce syscall".into(), "upcall".into())
        );
    }

    #[test]
    fn the_summary_counts_and_averages_per_domain_and_call() {
        let yield_call = |tsc, cycles| call(Hypercall::SCHED_OP, [sched_cmd::YIELD, 0, 0, 0, 0, 0], 0, tsc, cycles);
        let mut other = yield_call(0, 100);
        other.domain = 2;
        let records = [start(), domain(1, "a"), domain(2, "b"), yield_call(10, 10), yield_call(20, 30), other];
        let mut stream_bytes = bytes(&records);
        let dropped = TraceRecord { kind: kind::DROPPED, domain: 2, number: 7, ..Default::default() };
        stream_bytes.extend(bytes(&[dropped, dropped, TraceRecord { kind: kind::END, ..Default::default() }]));
        let stream = decode(&stream_bytes).unwrap();
        let rows = stream.summary();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].domain, rows[0].label.as_str(), rows[0].count), (1, "sched_op(YIELD)", 2));
        assert_eq!((rows[0].mean_cycles(), rows[0].max_cycles), (20, 30));
        assert_eq!((rows[1].domain, rows[1].count, rows[1].max_cycles), (2, 1, 100));
        assert_eq!(stream.dropped.get(&2), Some(&14), "drop counts add up");
        let rendered = stream.render();
        assert!(rendered.contains("d2 b: 1 records, 14 dropped (its ring was full)"), "{rendered}");
        assert!(!rendered.contains("no END record"));
    }

    #[test]
    fn malformed_streams_are_refused_with_the_reason() {
        assert!(decode(&[]).unwrap_err().contains("received nothing"));
        assert!(decode(&bytes(&[domain(1, "a")])).unwrap_err().contains("does not begin with a START"));
        let mut future = start();
        future.number = FORMAT_VERSION + 1;
        assert!(decode(&bytes(&[future])).unwrap_err().contains("format version 2"));
        let strange = TraceRecord { kind: 99, ..Default::default() };
        assert!(decode(&bytes(&[start(), strange])).unwrap_err().contains("unknown kind 99"));
        let end = TraceRecord { kind: kind::END, ..Default::default() };
        assert!(decode(&bytes(&[start(), end, end])).unwrap_err().contains("follows END"));
        // A run cut short: no END, half a record.
        let mut cut = bytes(&[start(), domain(1, "a")]);
        cut.extend([0u8; 10]);
        let stream = decode(&cut).unwrap();
        assert_eq!((stream.ended, stream.trailing_bytes), (false, 10));
        assert!(stream.render().contains("no END record"));
    }

    #[test]
    fn the_trace_option_names_domains_of_the_run() {
        let images = vec!["guest-kernel".to_string(), "hello".to_string()];
        assert_eq!(option_token("all", &images).unwrap(), "trace=all");
        assert_eq!(option_token("2,guest-kernel", &images).unwrap(), "trace=2,guest-kernel");
        for bad in ["3", "0", "nosuch", "1,", ""] {
            let error = option_token(bad, &images).unwrap_err();
            assert_eq!(error.exit_code, crate::error::EXIT_USAGE, "{bad}");
            assert!(error.message.contains("1 (guest-kernel), 2 (hello)"), "{}", error.message);
        }
    }

    #[test]
    fn the_port_arguments_escape_commas() {
        let args = qemu_args(Path::new("/tmp/a,b/trace.bin")).unwrap();
        assert_eq!(args[1], "file,id=trace,path=/tmp/a,,b/trace.bin");
        assert_eq!(args[3], "isa-serial,chardev=trace,iobase=0x2f8,irq=3");
    }

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
