//! Every ABI constant SPEC.md states against this crate's value (test code only; here, not in
//! the conformance crate, so that `cargo test -p hypercall-abi` and cargo-mutants check it):
//! a number written next to a constant's name in the specification (`0 = \`YIELD\``,
//! `\`CLOSED\` (0)`, `| 4 \`CLOSE\` |`, `bit 1 \`SWITCHED\``, the errno, exit-status and
//! feature tables) must be that constant's value, and every such name must be one this test
//! knows — so a wrong value on either side, or a new constant nobody checked, fails here.

use crate::event::{self, event_cmd, status as port_status, virq};
use crate::exit::ExitStatus;
use crate::hypercall::version_cmd as version;
use crate::hypercall::{callback_cmd, console_cmd as console, features, sched_cmd, shutdown_reason};
use crate::memory::{map_flags, map_op, memory_cmd, space_cmd};
use crate::trace::flags as trace_flags;
use crate::trap::{self, exception_flags, page_fault, segment, trap_flags};
use crate::Errno;

/// One number the specification gives a backticked name, with the line it is on.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Claim {
    /// The name between backticks.
    name: String,
    /// The number written with it.
    value: u64,
    /// 1-based line in the text.
    line: usize,
}

fn number(text: &str) -> Option<u64> {
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// The leading number of `text` (decimal or `0x` hex) and what follows it.
fn leading_number(text: &str) -> Option<(u64, &str)> {
    let end = text.find(|c: char| !(c.is_ascii_hexdigit() || c == 'x')).unwrap_or(text.len());
    Some((number(&text[..end])?, &text[end..]))
}

/// The trailing number of `text` (decimal or `0x` hex).
fn trailing_number(text: &str) -> Option<u64> {
    let start = text.rfind(|c: char| !(c.is_ascii_hexdigit() || c == 'x')).map_or(0, |at| at + 1);
    number(&text[start..])
}

fn constant_name(name: &str) -> bool {
    name.len() > 1 && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// The bit number of a flag written `bit <n> ` before its name.
fn bit_number(text: &str) -> Option<u32> {
    let head = text.trim_end_matches(|c: char| c.is_ascii_digit());
    if head.ends_with("bit ") {
        text[head.len()..].parse().ok()
    } else {
        None
    }
}

/// The claims in `spec`: `<n> = \`NAME\``, `\`NAME\` (<n>)` / `\`NAME\` (<n>:`, a table
/// row starting `| <n> \`NAME\`` and a flag `bit <n> \`NAME\`` (whose value is `1 << n`).
fn claims(spec: &str) -> Vec<Claim> {
    let mut found = Vec::new();
    for (index, line) in spec.lines().enumerate() {
        let pieces: Vec<&str> = line.split('`').collect();
        // Odd pieces are inside backticks.
        for at in (1..pieces.len().saturating_sub(1)).step_by(2) {
            let name = pieces[at];
            if !constant_name(name) {
                continue;
            }
            let (before, after) = (pieces[at - 1], pieces[at + 1]);
            let mut value = None;
            if let Some(rest) = after.strip_prefix(" (") {
                if let Some((n, tail)) = leading_number(rest) {
                    if tail.starts_with(')') || tail.starts_with(':') {
                        value = Some(n);
                    }
                }
            }
            if let Some(head) = before.strip_suffix(" = ") {
                value = value.or(trailing_number(head));
            }
            if let Some(head) = before.strip_suffix(' ') {
                value = value.or(bit_number(head).and_then(|bit| 1u64.checked_shl(bit)));
            }
            if at == 1 {
                if let Some(cell) = before.strip_prefix("| ").and_then(|rest| rest.strip_suffix(' ')) {
                    value = value.or(number(cell));
                }
            }
            if let Some(value) = value {
                found.push(Claim { name: name.to_string(), value, line: index + 1 });
            }
        }
    }
    found
}

/// The ABI's value(s) for a name SPEC.md uses, from hypercall-abi.
fn abi_values(name: &str) -> Option<&'static [u64]> {
    Some(match name {
        "ABI_VERSION" => &[version::ABI_VERSION],
        "FEATURES" => &[version::FEATURES],
        "WRITE" => &[console::WRITE],
        "READ" => &[console::READ],
        "YIELD" => &[sched_cmd::YIELD],
        "BLOCK" => &[sched_cmd::BLOCK],
        "SHUTDOWN" => &[sched_cmd::SHUTDOWN],
        "POLL" => &[sched_cmd::POLL],
        "POWEROFF" => &[shutdown_reason::POWEROFF],
        "CRASH" => &[shutdown_reason::CRASH],
        "REGISTER" => &[callback_cmd::REGISTER],
        "FS" => &[segment::FS],
        "GS_KERNEL" => &[segment::GS_KERNEL],
        "GS_USER" => &[segment::GS_USER],
        "SYSCALL_VECTOR" => &[trap::SYSCALL_VECTOR],
        "EVENT_VECTOR" => &[event::EVENT_VECTOR],
        "RFLAGS_GUEST_SETTABLE" => &[trap::RFLAGS_GUEST_SETTABLE],
        "DOMAIN_SELF" => &[event::DOMAIN_SELF],
        "CLOSED" => &[port_status::CLOSED],
        "UNBOUND" => &[port_status::UNBOUND],
        "INTERDOMAIN" => &[port_status::INTERDOMAIN],
        "VIRQ" => &[port_status::VIRQ],
        "IPI" => &[port_status::IPI],
        "ALLOC_UNBOUND" => &[event_cmd::ALLOC_UNBOUND],
        "BIND_INTERDOMAIN" => &[event_cmd::BIND_INTERDOMAIN],
        "BIND_VIRQ" => &[event_cmd::BIND_VIRQ],
        "BIND_IPI" => &[event_cmd::BIND_IPI],
        "CLOSE" => &[event_cmd::CLOSE],
        "SEND" => &[event_cmd::SEND],
        "STATUS" => &[event_cmd::STATUS],
        "UNMASK" => &[event_cmd::UNMASK],
        "VIRQ_TIMER" => &[virq::TIMER],
        "VIRQ_DEBUG" => &[virq::DEBUG],
        "VIRQ_CONSOLE" => &[virq::CONSOLE],
        "MODULE" => &[features::MODULE],
        "USER_MAY_RAISE" => &[trap_flags::USER_MAY_RAISE as u64],
        "FROM_USER" => &[exception_flags::FROM_USER],
        "RESULT" => &[trace_flags::RESULT as u64],
        "SWITCHED" => &[trace_flags::SWITCHED as u64],
        "WRITABLE" => &[map_flags::WRITABLE as u64],
        "BATCH_MAX" => &[crate::memory::BATCH_MAX],
        "WRITE_MAX" => &[console::WRITE_MAX],
        "PORTS_MAX" => &[event::PORTS_MAX],
        "E2BIG" => &[Errno::E2BIG.0 as u64],
        "CURRENT_RESERVATION" => &[memory_cmd::CURRENT_RESERVATION],
        "MAXIMUM_RESERVATION" => &[memory_cmd::MAXIMUM_RESERVATION],
        "INCREASE_RESERVATION" => &[memory_cmd::INCREASE_RESERVATION],
        "DECREASE_RESERVATION" => &[memory_cmd::DECREASE_RESERVATION],
        "MAXIMUM_GFN" => &[memory_cmd::MAXIMUM_GFN],
        "CREATE" => &[space_cmd::CREATE],
        "DESTROY" => &[space_cmd::DESTROY],
        "SWITCH" => &[space_cmd::SWITCH],
        "FLUSH_VA" => &[space_cmd::FLUSH_VA],
        "FLUSH_ALL" => &[space_cmd::FLUSH_ALL],
        "QUERY" => &[space_cmd::QUERY],
        _ => return None,
    })
}

/// Every claim whose name the ABI does not know or whose value it does not have.
fn disagreements(spec: &str) -> Vec<String> {
    claims(spec)
        .into_iter()
        .filter_map(|claim| match abi_values(&claim.name) {
            Some(values) if values.contains(&claim.value) => None,
            Some(values) => Some(format!(
                "SPEC.md line {}: `{}` is {:#x} there but {values:#x?} in hypercall-abi",
                claim.line, claim.name, claim.value
            )),
            None => Some(format!(
                "SPEC.md line {}: `{}` ({:#x}) is not a constant hypercall-abi/src/spec_tables.rs knows; add it to abi_values",
                claim.line, claim.name, claim.value
            )),
        })
        .collect()
}

/// The rows of the table whose header row is `header`, split into trimmed cells.
fn table(spec: &str, header: &str) -> Result<Vec<Vec<String>>, String> {
    let section = spec.split_once(&format!("\n{header}\n")).ok_or_else(|| format!("no table '{header}' in SPEC.md"))?.1;
    Ok(section
        .lines()
        .take_while(|line| line.starts_with('|'))
        // The separator row.
        .skip(1)
        .map(|row| row.trim_matches('|').split('|').map(|cell| cell.trim().to_string()).collect())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = include_str!("../../SPEC.md");

    #[test]
    fn every_numbered_constant_in_the_spec_is_the_abi_value() {
        let found = claims(SPEC);
        assert!(found.len() >= 30, "the scanner found only {} claims: {found:#?}", found.len());
        let wrong = disagreements(SPEC);
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn the_errno_table_is_the_crate_s() {
        let rows = table(SPEC, "| errno | value | meaning in 0.2 and 0.3 |").unwrap();
        assert!(rows.len() >= 10);
        for row in &rows {
            let value: i64 = row[1].parse().unwrap();
            assert_eq!(Errno(value).name(), Some(row[0].as_str()), "SPEC.md §5.3 row {row:?}");
        }
        // Every errno the crate names is in the table or named as unused in the text.
        for value in 0..256 {
            if let Some(name) = Errno(value).name() {
                let listed = rows.iter().any(|row| row[0] == name);
                assert!(listed || SPEC.contains(&format!("`{name}` ({value})")), "{name} ({value})");
            }
        }
        // And the other way: an errno the text names outside the table is one the crate names.
        let unlisted: Vec<Claim> = claims(SPEC).into_iter().filter(|claim| claim.name == "E2BIG").collect();
        assert!(!unlisted.is_empty(), "SPEC.md no longer names `E2BIG` (7)");
        for claim in unlisted {
            assert_eq!(Errno(claim.value as i64).name(), Some("E2BIG"), "SPEC.md line {}", claim.line);
        }
    }

    #[test]
    fn the_exit_status_table_is_the_crate_s() {
        let rows = table(SPEC, "| `v` | QEMU status | meaning |").unwrap();
        let statuses = [
            ExitStatus::SUCCESS,
            ExitStatus::NONZERO_CODE,
            ExitStatus::CRASHED,
            ExitStatus::KILLED,
            ExitStatus::REFUSED,
            ExitStatus::NOTHING_TO_RUN,
            ExitStatus::HYPERVISOR_PANIC,
        ];
        assert_eq!(rows.len(), statuses.len(), "SPEC.md §10 rows");
        for (row, status) in rows.iter().zip(statuses) {
            assert_eq!(row[0].parse::<u8>().unwrap(), status.0, "{row:?}");
            assert_eq!(row[1].parse::<i32>().unwrap(), status.qemu_status(), "{row:?}");
        }
    }

    #[test]
    fn the_feature_table_is_the_crate_s() {
        let rows = table(SPEC, "| bit | name | meaning | since |").unwrap();
        let named = [
            ("CONSOLE_WRITE", features::CONSOLE_WRITE),
            ("SCHED_YIELD", features::SCHED_YIELD),
            ("TRAPS", features::TRAPS),
            ("MEMORY", features::MEMORY),
            ("MULTICALL", features::MULTICALL),
            ("SEGMENT_BASES", features::SEGMENT_BASES),
            ("EXTENDED_STATE", features::EXTENDED_STATE),
            ("EVENTS", features::EVENTS),
            ("TIME", features::TIME),
            ("TIMERS", features::TIMERS),
            ("CONSOLE_READ", features::CONSOLE_READ),
            ("MODULE", features::MODULE),
        ];
        let spec: Vec<(String, u64)> = rows
            .iter()
            .map(|row| (row[1].trim_matches('`').to_string(), 1 << row[0].parse::<u32>().unwrap()))
            .collect();
        let abi: Vec<(String, u64)> = named.iter().map(|(name, bit)| (name.to_string(), *bit)).collect();
        assert_eq!(spec, abi, "SPEC.md §6.1 feature bits");
        assert_eq!(named.iter().fold(0, |all, (_, bit)| all | bit), features::ALL);
    }

    #[test]
    fn map_entry_ops_and_flags_are_the_crate_s() {
        let flat = SPEC.replace('\n', " ");
        let ops = format!("({} `MAP`, {} `UNMAP`, {} `PROTECT`)", map_op::MAP, map_op::UNMAP, map_op::PROTECT);
        assert!(flat.contains(&ops), "SPEC.md §12.4 MapEntry ops: {ops}");
        let bits =
            [map_flags::WRITABLE, map_flags::USER, map_flags::NO_EXECUTE, map_flags::LARGE, map_flags::WRITE_THROUGH]
                .map(u32::trailing_zeros);
        // The closing parenthesis: these five are every flag the specification defines.
        let flags = format!(
            "bit {} `WRITABLE`, {} `USER`, {} `NO_EXECUTE`, {} `LARGE`, {} `WRITE_THROUGH`)",
            bits[0], bits[1], bits[2], bits[3], bits[4]
        );
        assert!(flat.contains(&flags), "SPEC.md §12.4 MapEntry flags: {flags}");
        assert_eq!(map_flags::ALL, bits.iter().fold(0, |all, bit| all | 1 << bit), "map_flags::ALL");
    }

    #[test]
    fn the_large_page_is_the_spec_s() {
        use crate::memory::{LARGE_PAGE_ORDER, LARGE_PAGE_PAGES, LARGE_PAGE_SIZE};
        let flat = SPEC.replace('\n', " ");
        let extent = format!("or {LARGE_PAGE_ORDER} ({} MiB, `LARGE_PAGE_ORDER`)", LARGE_PAGE_SIZE >> 20);
        assert!(flat.contains(&extent), "SPEC.md §12 extent: {extent}");
        let gfns = format!(
            "| order-{LARGE_PAGE_ORDER} extent | {LARGE_PAGE_PAGES} gfns starting at a multiple of {LARGE_PAGE_PAGES},"
        );
        assert!(flat.contains(&gfns), "SPEC.md §12 order-9 extent: {gfns}");
        assert_eq!(LARGE_PAGE_SIZE % (1 << 20), 0, "a whole number of MiB");
    }

    #[test]
    fn the_page_fault_user_bit_is_the_spec_s() {
        let text = format!("with bit {} (`page_fault::USER`) rewritten", page_fault::USER.trailing_zeros());
        assert!(SPEC.replace('\n', " ").contains(&text), "SPEC.md §11.4.6: {text}");
        assert_eq!(page_fault::USER.count_ones(), 1);
    }

    #[test]
    fn the_hypervisor_range_is_the_spec_s() {
        use crate::layout::{HYPERVISOR_END, HYPERVISOR_START};
        let flat = SPEC.replace('\n', " ");
        let range = format!("`{:#x}` – `{:#x}`", HYPERVISOR_START, HYPERVISOR_END - 1);
        assert!(flat.replace('_', "").contains(&range), "SPEC.md §3.1: {range}");
    }

    #[test]
    fn the_scanner_sees_each_form_and_a_drifted_value() {
        let text = "| RDI `cmd` | 0 = `YIELD`, 2 = `SHUTDOWN` |\n| `CLOSED` (0) | x |\n| 4 `CLOSE` | y |\n\
                    `RFLAGS_GUEST_SETTABLE` (0x240fd7: CF)\n| `flags` | bit 0 `RESULT`; bit 1 `SWITCHED` |\n";
        let found: Vec<(String, u64)> = claims(text).into_iter().map(|claim| (claim.name, claim.value)).collect();
        assert_eq!(
            found,
            [
                ("YIELD".into(), 0),
                ("SHUTDOWN".into(), 2),
                ("CLOSED".into(), 0),
                ("CLOSE".into(), 4),
                ("RFLAGS_GUEST_SETTABLE".into(), 0x24_0fd7),
                ("RESULT".into(), 1),
                ("SWITCHED".into(), 2)
            ]
        );
        assert!(disagreements(text).is_empty());
        let drifted = text.replace("| 4 `CLOSE`", "| 3 `CLOSE`");
        assert!(disagreements(&drifted)[0].contains("`CLOSE` is 0x3 there"));
        let drifted = text.replace("bit 1 `SWITCHED`", "bit 2 `SWITCHED`");
        assert!(disagreements(&drifted)[0].contains("`SWITCHED` is 0x4 there"));
        assert!(disagreements("1 = `NEW_THING`")[0].contains("add it to abi_values"));
    }
}
