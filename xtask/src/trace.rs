//! The hypercall trace on the host (SPEC.md §22): the QEMU arguments that attach the
//! trace port, the `trace=` token for `--trace`, and decoding the records the hypervisor
//! wrote into readable lines and a per-domain summary. Record layout, hypercall names and
//! argument names all come from hypercall-abi.

pub mod check;

use crate::{workspace, Error, Result};
use hypercall_abi::event::event_cmd;
use hypercall_abi::hypercall::{callback_cmd, console_cmd, sched_cmd, version_cmd, Hypercall};
use hypercall_abi::memory::{memory_cmd, space_cmd};
use hypercall_abi::trace::{flags, kind, unpack_name, TraceRecord, FORMAT_VERSION, RECORD_BYTES, TRACE_PORT};
use hypercall_abi::trap::vector::{self, VectorName};
use hypercall_abi::Errno;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
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

/// A sub-command: its name and the names of the registers after RDI it reads (SPEC.md's
/// tables for the call).
type Command = (u64, &'static str, &'static [&'static str]);

/// Sub-command `cmd` of `call`, for calls whose first argument is one.
fn command(call: Hypercall, cmd: u64) -> Option<(&'static str, &'static [&'static str])> {
    let commands: &[Command] = match call {
        Hypercall::CONSOLE_IO => {
            &[(console_cmd::WRITE, "WRITE", &["count", "buffer"]), (console_cmd::READ, "READ", &["count", "buffer"])]
        }
        Hypercall::SCHED_OP => &[
            (sched_cmd::YIELD, "YIELD", &[]),
            (sched_cmd::BLOCK, "BLOCK", &[]),
            (sched_cmd::SHUTDOWN, "SHUTDOWN", &["reason", "code"]),
            (sched_cmd::POLL, "POLL", &["ports", "count", "timeout"]),
        ],
        Hypercall::VERSION => {
            &[(version_cmd::ABI_VERSION, "ABI_VERSION", &[]), (version_cmd::FEATURES, "FEATURES", &[])]
        }
        Hypercall::CALLBACK_OP => &[(callback_cmd::REGISTER, "REGISTER", &["type", "address"])],
        Hypercall::MEMORY_OP => &[
            (memory_cmd::CURRENT_RESERVATION, "CURRENT_RESERVATION", &[]),
            (memory_cmd::MAXIMUM_RESERVATION, "MAXIMUM_RESERVATION", &[]),
            (memory_cmd::INCREASE_RESERVATION, "INCREASE_RESERVATION", &["gfns", "count", "order"]),
            (memory_cmd::DECREASE_RESERVATION, "DECREASE_RESERVATION", &["gfns", "count", "order"]),
            (memory_cmd::MAXIMUM_GFN, "MAXIMUM_GFN", &[]),
        ],
        Hypercall::ADDRESS_SPACE_OP => &[
            (space_cmd::CREATE, "CREATE", &[]),
            (space_cmd::DESTROY, "DESTROY", &["h"]),
            (space_cmd::SWITCH, "SWITCH", &["k", "u"]),
            (space_cmd::FLUSH_VA, "FLUSH_VA", &["h", "va"]),
            (space_cmd::FLUSH_ALL, "FLUSH_ALL", &["h"]),
            (space_cmd::QUERY, "QUERY", &["h", "va"]),
        ],
        Hypercall::EVENT_CHANNEL_OP => &[
            (event_cmd::ALLOC_UNBOUND, "ALLOC_UNBOUND", &["remote"]),
            (event_cmd::BIND_INTERDOMAIN, "BIND_INTERDOMAIN", &["remote", "rport"]),
            (event_cmd::BIND_VIRQ, "BIND_VIRQ", &["virq"]),
            (event_cmd::BIND_IPI, "BIND_IPI", &[]),
            (event_cmd::CLOSE, "CLOSE", &["port"]),
            (event_cmd::SEND, "SEND", &["port"]),
            (event_cmd::STATUS, "STATUS", &["port"]),
            (event_cmd::UNMASK, "UNMASK", &["port"]),
        ],
        _ => &[],
    };
    // Only calls whose first register is a sub-command (hypercall-abi names it `cmd`).
    if call.arguments().first() != Some(&"cmd") {
        return None;
    }
    commands.iter().find(|(number, _, _)| *number == cmd).map(|&(_, name, arguments)| (name, arguments))
}

/// What the summary groups a record under: the hypercall with its sub-command, the
/// bounced vector, or "upcall".
pub fn label(record: &TraceRecord) -> String {
    match record.kind {
        kind::HYPERCALL => {
            let call = Hypercall(record.number);
            let Some(name) = call.name() else { return format!("hypercall {}", record.number) };
            match command(call, record.arguments[0]) {
                Some((command, _)) => format!("{name}({command})"),
                None => name.to_string(),
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
                    // A known sub-command names the registers after it; otherwise the
                    // call's own names, with the raw `cmd`.
                    let (mut parts, names, first) = match command(call, record.arguments[0]) {
                        Some((command, names)) => (vec![command.to_string()], names, 1),
                        None => (Vec::new(), call.arguments(), 0),
                    };
                    for (argument, &raw) in names.iter().zip(&record.arguments[first..]) {
                        parts.push(format!("{argument}={}", value(raw)));
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
                    text.push_str(" (other domains may have run: a yield, a sleep or a preemption)");
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

#[cfg(test)]
mod tests {
    use super::*;
    use hypercall_abi::trace::pack_name;
    use zerocopy::IntoBytes;

    const HZ: u64 = 1_000_000_000;

    pub(super) fn start() -> TraceRecord {
        let mut record = TraceRecord { kind: kind::START, number: FORMAT_VERSION, tsc: 1000, ..Default::default() };
        record.arguments[0] = HZ;
        record
    }

    pub(super) fn domain(id: u32, name: &str) -> TraceRecord {
        TraceRecord { kind: kind::DOMAIN, domain: id, arguments: pack_name(name), ..Default::default() }
    }

    pub(super) fn call(number: Hypercall, arguments: [u64; 6], result: i64, tsc: u64, cycles: u64) -> TraceRecord {
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

    pub(super) fn bytes(records: &[TraceRecord]) -> Vec<u8> {
        records.iter().flat_map(|record| record.as_bytes().to_vec()).collect()
    }

    #[test]
    fn hypercalls_decode_with_names_commands_and_results() {
        let write = call(Hypercall::CONSOLE_IO, [console_cmd::WRITE, 14, 0xffff_8000_1234, 0, 0, 0], 14, 13_300, 5);
        assert_eq!(describe(&write), "console_io(WRITE, count=14, buffer=0xffff80001234) = 14");
        let refused = call(Hypercall::MEMORY_OP, [memory_cmd::INCREASE_RESERVATION, 0, 0, 0, 0, 0], -22, 0, 1);
        assert_eq!(describe(&refused), "memory_op(INCREASE_RESERVATION, gfns=0, count=0, order=0) = -EINVAL");
        let unknown_command = call(Hypercall::SCHED_OP, [9, 1, 2, 3, 0, 0], -22, 0, 1);
        assert_eq!(describe(&unknown_command), "sched_op(cmd=9, a=1, b=2, c=3) = -EINVAL");
        assert_eq!(label(&unknown_command), "sched_op");
        let unknown = call(Hypercall(50), [1, 2, 3, 4, 5, 6], -38, 0, 1);
        assert_eq!(describe(&unknown), "hypercall 50(1, 2, 3, 4, 5, 6) = -ENOSYS");
        let mut shutdown = call(Hypercall::SCHED_OP, [sched_cmd::SHUTDOWN, 0, 0, 0, 0, 0], 0, 0, 1);
        shutdown.flags = 0;
        assert_eq!(describe(&shutdown), "sched_op(SHUTDOWN, reason=0, code=0) (no return)");
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
}
