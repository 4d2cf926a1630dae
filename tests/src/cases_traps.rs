//! Conformance cases of the trap ABI (SPEC.md §11): exception delivery and `iret`
//! (`traps`, `iret`, `nested`), guest-user mode (`user`), segment bases (`segment`) and
//! per-domain extended state (`fpu`). Cases where the hypervisor must kill a domain run a
//! `companion` beside it and expect the hypervisor's one-line reason.

use crate::cases::{domain as spec, success, Case, DomainSpec};
use crate::judge::{DomainExpectation, DomainOutcome, Expectation};
use hypercall_abi::exit::ExitStatus;
use hypercall_abi::layout::HYPERVISOR_START;

/// Sub-cases of the `traps` guest (each provokes one exception, or checks refusals).
pub const TRAPS: &[&str] = &[
    "de",
    "ud",
    "bp",
    "gp_hlt",
    "gp_cli",
    "gp_noncanonical",
    "pf_read",
    "pf_write",
    "pf_protect",
    "pf_fetch",
    "int_handled",
    "int_unhandled",
    "repeat",
    "validation",
];

/// Sub-cases of the `user` guest.
pub const USER: &[&str] = &[
    "syscalls",
    "kernel_page",
    "write_code",
    "hypercall",
    "int80_granted",
    "int80_refused",
    "int3_refused",
    "privileged",
];

/// Sub-cases of the `segment` guest.
pub const SEGMENT: &[&str] = &["bases", "modes"];

/// Sub-cases of the `iret` guest that must be killed, with the parts of the kill line
/// after `d1 iret: killed: `.
pub const IRET_KILLED: &[(&str, &[&str])] = &[
    ("noncanonical_rip", &["iret frame: rip 0x123456789abcdef is not canonical"]),
    ("sysret_rip", &["iret frame: rip 0x800000000000 is not canonical"]),
    ("hypervisor_rip", &["iret frame: rip 0xffff800000001000 is in the hypervisor range"]),
    ("ring0_cs", &["iret frame: cs 0x8 is not a guest selector"]),
    ("hardware_cs", &["iret frame: cs 0x23 is not a guest selector"]),
    ("mismatched_ss", &["iret frame: ss 0x2b does not match cs 0xe033"]),
    ("iopl", &["iret frame: rflags ", "IOPL"]),
    ("nested_task", &["iret frame: rflags ", "NT"]),
    ("vm86", &["iret frame: rflags ", "VM"]),
    ("flags", &["iret frame: flags 0x1 has undefined bits"]),
    ("noncanonical_rsp", &["iret frame: rsp 0x8000000000000000 is not canonical"]),
    ("user_without_root", &["iret frame: cs 0x33 returns to guest-user mode but there is no user address space"]),
    ("unreadable", &["iret frame at rsp 0x2000 is not readable"]),
];

/// Sub-cases of the `nested` guest that must be killed, with the kill line's parts.
pub const NESTED_KILLED: &[(&str, &[&str])] = &[
    ("no_handler", &["#PF at rip ", " cr2 0x3000", "no handler for #PF at rip "]),
    // The frame goes at (0x5000 & !15) - 104.
    ("stack", &["#UD at rip ", "fault delivering #UD: ", "stack 0x4f98 ", "not writable"]),
    ("recursive", &["#PF at rip ", "fault delivering #PF: ", "stack 0x", "not writable"]),
];

/// Sub-cases of the `traps` guest that empty the trap table with `set_trap_table(entries,
/// 0)` (SPEC.md §11.1: 0, every handler removed, `entries` not read) and then provoke an
/// exception that had a handler: (sub-case, `entries` when the guest uses a fixed one,
/// the kill line's parts after `d1 traps: killed: `).
pub const EMPTY_TABLE_KILLED: &[(&str, Option<u64>, &[&str])] = &[
    ("empty_valid", None, &["#DE at rip ", "no handler for #DE at rip "]),
    ("empty_unmapped", Some(0x1000), &["#UD at rip ", "no handler for #UD at rip "]),
];

/// Sub-cases of the `traps` guest whose `set_trap_table(entries, 0)` is `-EFAULT` by the
/// zero-length rule (SPEC.md §5.4, 0.4) and leaves the table as it was: (sub-case,
/// `entries`).
pub const EMPTY_TABLE_KEPT: &[(&str, u64)] =
    &[("empty_noncanonical", 0x8000_0000_0000_0000), ("empty_hypervisor", HYPERVISOR_START)];

fn case(name: String, domains: Vec<DomainSpec>, status: ExitStatus, hypervisor_lines: Vec<Vec<String>>) -> Case {
    let expectation = Expectation {
        status,
        domains: domains
            .iter()
            .map(|spec| DomainExpectation { image: spec.image.clone(), outcome: spec.outcome.clone() })
            .collect(),
        hypervisor_lines,
        console_lines: Vec::new(),
        forbidden: Vec::new(),
        checks: Vec::new(),
    };
    Case::new(name, domains, expectation)
}

/// `bin sub` is killed with a line `d1 <bin>: killed: ...<parts, in order>`; a companion
/// succeeds.
fn killed(bin: &'static str, sub: &str, parts: &[&str]) -> Case {
    let mut line = vec![format!("d1 {bin}: killed: ")];
    line.extend(parts.iter().map(|part| part.to_string()));
    let mut case = case(
        format!("{bin}::{sub}"),
        vec![spec(bin, &[sub], DomainOutcome::NoResult), success("companion", &[])],
        ExitStatus::KILLED,
        vec![line, vec!["d2 companion: exited: poweroff code 0".into()]],
    );
    // Killed before it could report anything good.
    case.expectation.forbidden.push("(d1) Test result: SUCCESS".into());
    case
}

fn passes(bin: &'static str, sub: &str) -> Case {
    case(format!("{bin}::{sub}"), vec![success(bin, &[sub])], ExitStatus::SUCCESS, Vec::new())
}

/// Every trap case.
pub fn all() -> Vec<Case> {
    let mut cases = Vec::new();
    for sub in TRAPS {
        cases.push(passes("traps", sub));
    }
    for (sub, entries, parts) in EMPTY_TABLE_KILLED {
        let mut empty = killed("traps", sub, parts);
        let returned =
            format!("traps: set_trap_table({}", entries.map(|entries| format!("{entries:#x}")).unwrap_or_default());
        empty.expectation.console_lines.push(vec!["(d1) ".into(), returned, ", 0) = 0".into()]);
        cases.push(empty);
    }
    for (sub, entries) in EMPTY_TABLE_KEPT {
        let mut kept = passes("traps", sub);
        let refused = format!("traps: set_trap_table({entries:#x}, 0) = -EFAULT; the table is unchanged");
        kept.expectation.console_lines.push(vec!["(d1) ".into(), refused]);
        cases.push(kept);
    }
    cases.push(passes("iret", "ok"));
    for (sub, parts) in IRET_KILLED {
        cases.push(killed("iret", sub, parts));
    }
    cases.push(passes("nested", "handled"));
    for (sub, parts) in NESTED_KILLED {
        cases.push(killed("nested", sub, parts));
    }
    for sub in USER {
        let mut user = passes("user", sub);
        // The user program's hypercall would power the domain off with code 99.
        user.expectation.forbidden.push("poweroff code 99".into());
        cases.push(user);
    }
    for sub in SEGMENT {
        cases.push(passes("segment", sub));
    }
    // Two domains fill and check their registers in turns; each must see only its own.
    let mut fpu =
        case("fpu::isolation".into(), vec![success("fpu", &[]), success("fpu", &[])], ExitStatus::SUCCESS, Vec::new());
    fpu.expectation.console_lines.push(vec!["(d1) domain 1: ".into(), " registers kept across ".into()]);
    fpu.expectation.console_lines.push(vec!["(d2) domain 2: ".into(), " registers kept across ".into()]);
    cases.push(fpu);
    cases
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn killed_cases_expect_the_reason_and_a_running_companion() {
        let cases = all();
        let sysret = cases.iter().find(|case| case.name == "iret::sysret_rip").unwrap();
        assert_eq!(sysret.expectation.status, ExitStatus::KILLED);
        assert_eq!(
            sysret.expectation.hypervisor_lines[0],
            ["d1 iret: killed: ", "iret frame: rip 0x800000000000 is not canonical"]
        );
        assert_eq!(sysret.domains[1].image, "companion");
        let empty = cases.iter().find(|case| case.name == "traps::empty_unmapped").unwrap();
        assert_eq!(empty.domains[0].outcome, DomainOutcome::NoResult);
        assert_eq!(empty.expectation.hypervisor_lines[0][0], "d1 traps: killed: ");
        assert_eq!(empty.expectation.console_lines[0], ["(d1) ", "traps: set_trap_table(0x1000", ", 0) = 0"]);
        let kept = cases.iter().find(|case| case.name == "traps::empty_hypervisor").unwrap();
        assert_eq!(kept.domains[0].outcome, DomainOutcome::Verdict(crate::judge::Verdict::Success));
        assert_eq!(
            kept.expectation.console_lines[0],
            ["(d1) ", "traps: set_trap_table(0xffff800000000000, 0) = -EFAULT; the table is unchanged"]
        );
        let names: Vec<&str> = cases.iter().map(|case| case.name.as_str()).collect();
        assert!(
            names.contains(&"user::syscalls") && names.contains(&"fpu::isolation") && names.contains(&"traps::pf_read")
        );
    }
}
