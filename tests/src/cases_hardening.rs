//! Conformance cases of issue 15's findings and blind spots, all run by the `hardening`
//! guest (one sub-case each): UMIP, console control escaping, #DB across `mov ss` +
//! hypercall, hypercalls on a bad RSP, `iret` frames with RF/VIF/VIP/RPL 0/a hypervisor
//! RSP, `int n` for all 256 vectors from guest-kernel and guest-user mode, timer deadlines
//! near u64::MAX and segment bases across domains. Kill cases run a `companion` beside the
//! guest, which must keep running.

use crate::cases::{case, domain, success, Case};
use crate::judge::{DomainOutcome, Source, Transcript};
use hypercall_abi::exit::ExitStatus;

/// The instructions CR4.UMIP makes fault outside ring 0 (SPEC.md §4.1).
pub const UMIP_INSTRUCTIONS: &[&str] = &["sgdt", "sidt", "sldt", "smsw", "str"];

/// `iret` frames the hypervisor must refuse: (sub-case, parts of the kill line after
/// `killed: `).
pub const IRET_KILLED: &[(&str, &[&str])] = &[
    ("rf", &["iret frame: rflags 0x10202 sets forbidden bits 0x10000 (RF"]),
    ("vif", &["iret frame: rflags 0x80202 sets forbidden bits 0x80000 (VIF"]),
    ("vip", &["iret frame: rflags 0x100202 sets forbidden bits 0x100000 (VIP"]),
    ("rpl0", &["iret frame: cs 0xe030 is not a guest selector"]),
    ("hypervisor_rsp", &["iret frame: rsp 0xffff800000100000 is in the hypervisor range"]),
];

/// Forged returns from a jump to the `syscall` entry that must kill: (sub-case, kill line
/// parts after `killed: `).
pub const FORGED_KILLED: &[(&str, &[&str])] = &[
    ("forged_rcx_noncanonical", &["return to non-canonical rip 0x800000000000 refused (XSA-7 guard)"]),
    ("forged_rcx_hypervisor", &["#PF at rip 0xffff800000001000 ", "no handler for #PF"]),
];

/// Upcalls due with RSP on a stack that cannot take the frame: (stack, kill line parts
/// after `killed: `). The stacks are the guest's `bad_upcall_stack`.
pub const UPCALL_KILLED: &[(&str, &[&str])] = &[
    ("readonly", &["event upcall at rip ", "fault delivering event: guest-kernel stack 0x", "is not writable"]),
    ("hypervisor", &["event upcall at rip ", "fault delivering event: guest stack 0xffff800000100000 cannot hold"]),
    (
        "below_hypervisor",
        &["event upcall at rip ", "fault delivering event: guest stack 0xffff800000000030 cannot hold"],
    ),
    (
        "above_hypervisor",
        &["event upcall at rip ", "fault delivering event: guest stack 0xffff880000000030 cannot hold"],
    ),
    ("lower_half_top", &["event upcall at rip ", "fault delivering event: guest stack 0x800000000040 cannot hold"]),
];

/// Hypercall instructions at the edges of the address space: (edge, kill line parts).
pub const EDGE_KILLED: &[(&str, &[&str])] = &[
    ("lower_trapping", &["return to non-canonical rip 0x800000000000 refused (XSA-7 guard)"]),
    ("top_trapping", &["trapping hypercall at the top of the address space has no return address"]),
    ("top_ud2", &["#UD at rip 0xfffffffffffffffe ", "no handler for #UD"]),
];

/// The `frame_lap` machine: small, so that two laps of its memory are few pages to touch
/// (each a shadow page fault, ~1 ms, on a kvm-pvm host), yet the dirtier's frames are a
/// quarter of it.
const LAP_MACHINE: &str = "64M";
/// The `frame_lap` dirtier's memory, and the frames it fills: its `maxmem` less its `mem`.
const LAP_DIRTIER_MEM: &str = "4M,maxmem=20M";
const LAP_DIRTIED: u64 = 4096;

/// Frames of a machine of `memory`, at least the frames the hypervisor manages on it.
fn machine_frames(memory: &str) -> u64 {
    let (_, bytes) = xtask::cmdline::parse_mem(memory).expect("a machine memory is a memory size");
    bytes / hypercall_abi::layout::PAGE_SIZE
}

/// The number before `key` in the first line of `lines` that contains it.
fn number_before<'a>(mut lines: impl Iterator<Item = &'a str>, key: &str) -> Option<u64> {
    let line = lines.find(|text| text.contains(key))?;
    let (before, _) = line.split_once(key)?;
    before.rsplit(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// The `frame_lap` checker was given more than twice the frames the hypervisor manages
/// (its boot line) after the dirtier ended. The allocator is next-fit: between two wraps
/// of its cursor it hands out increasing frame numbers, so at most `managed` frames; more
/// than 2·`managed` allocations span at least three passes, and the middle one swept all
/// of memory after the dirtier's frames were freed.
pub fn lapped_twice(transcript: &Transcript) -> Result<(), String> {
    let managed =
        number_before(transcript.hypervisor(), " frames managed").ok_or("no (hv) boot line says 'N frames managed'")?;
    let allocated = number_before(transcript.domain(2), " frames in ")
        .ok_or("no (d2) line says 'frame_lap: N frames in R rounds'")?;
    if allocated > 2 * managed {
        Ok(())
    } else {
        Err(format!("d2 was given {allocated} frames, not more than twice the {managed} managed: no proof of two laps"))
    }
}

/// Sub-cases where the guest must succeed alone.
pub const PASSING: &[&str] = &[
    "umip",
    "controls",
    "debug_step",
    "hypercall_stack",
    "int_vectors",
    "timer_max",
    "multicall_rewrite",
    "batch_self_unmap",
];

/// What the console must show for the `controls` sub-case's two writes (SPEC.md §6.2):
/// C0, DEL, raw C1 bytes, C1 controls in UTF-8 and malformed UTF-8 escaped byte by byte;
/// tab-free printable text and characters from U+00A0 on (one split across the two
/// writes) as they were.
pub const CONTROLS_EXPECTED: &str = "controls: esc\\x1b[31m bel\\x07 del\\x7f csi\\x9b31m c1\\x80\\x9f \
utf8-csi\\xc2\\x9b1m nel\\xc2\\x85 ok\u{a0}é€ bad\\xc0\\xaf\\xed\\xa0\\x80 split€ end";

/// The vectors a KVM host mangles itself (the guest's `HOST_MANGLED_UNDER_KVM`): the only
/// ones the `int n` sub-cases may leave out, and only where they say so.
const HOST_MANGLED: &str = "[0x17, 0x19, 0x1a]";

/// The first line of domain 1 that `wanted` accepts.
fn d1_line(transcript: &Transcript, wanted: impl Fn(&str) -> bool) -> Option<&str> {
    transcript
        .lines
        .iter()
        .find(|line| line.source == Source::Domain(1) && wanted(&line.text))
        .map(|line| line.text.as_str())
}

/// How many of the 256 vectors an `int n` sub-case had to judge: all of them, or all but
/// [`HOST_MANGLED`] when its line starting with `skipped` names exactly those.
fn vectors_to_judge(transcript: &Transcript, skipped: &str) -> Result<usize, String> {
    match d1_line(transcript, |text| text.starts_with(skipped)) {
        None => Ok(256),
        Some(line) if line.ends_with(HOST_MANGLED) => Ok(256 - HOST_MANGLED.split(", ").count()),
        Some(line) => Err(format!("left out other vectors than {HOST_MANGLED}: '{line}'")),
    }
}

/// Domain 1 printed `expected` as the `int n` sub-case's count line (the first accepted by
/// `is_count`).
fn count_line(transcript: &Transcript, is_count: impl Fn(&str) -> bool, expected: &str) -> Result<(), String> {
    match d1_line(transcript, is_count) {
        Some(line) if line == expected => Ok(()),
        Some(line) => Err(format!("'{line}': expected '{expected}'")),
        None => Err(format!("no line like '{expected}' from d1")),
    }
}

/// `int_vectors` judged all 256 vectors, or all but the named host-mangled ones, and
/// every judged one was right.
pub fn int_vectors_judged(transcript: &Transcript) -> Result<(), String> {
    let n = vectors_to_judge(transcript, "int n: not judged on this KVM host")?;
    let said = " vectors delivered as SPEC.md §4.4 says";
    count_line(transcript, |text| text.ends_with(said), &format!("int n: {n} of {n}{said}"))
}

/// `int_vectors_user` judged all 256 vectors (114 granted), or all but the named
/// host-mangled ones, and every judged one was right.
pub fn user_vectors_judged(transcript: &Transcript) -> Result<(), String> {
    let n = vectors_to_judge(transcript, "user int n: KVM host mangles")?;
    let is_count = |text: &str| text.starts_with("user int n: ") && text.contains(" right, ");
    count_line(transcript, is_count, &format!("user int n: {n}/{n} right, 114 granted"))
}

/// The `controls` line of domain 1 is exactly [`CONTROLS_EXPECTED`]: nothing raw (a raw
/// byte of 0x80 or above that is not UTF-8 would show here as U+FFFD) and nothing lost.
pub fn controls_escaped(transcript: &Transcript) -> Result<(), String> {
    let line = transcript
        .lines
        .iter()
        .find(|line| line.source == Source::Domain(1) && line.text.starts_with("controls: "))
        .ok_or("no 'controls: ' line from d1")?;
    if line.text != CONTROLS_EXPECTED {
        return Err(format!("the controls line is {:?}, expected {CONTROLS_EXPECTED:?}", line.text));
    }
    Ok(())
}

/// The placeholder an argument may hold for the address of the hypervisor's `syscall`
/// entry (LSTAR), filled in from the symbol table of the hypervisor under test.
pub const HYPERCALL_ENTRY: &str = "{hypercall_entry}";

/// `arg` with [`HYPERCALL_ENTRY`] replaced by the address of `hypercall_entry` in the
/// hypervisor ELF at `hypervisor` (in hex).
pub fn resolve_symbols(arg: &str, hypervisor: &std::path::Path) -> Result<String, String> {
    if !arg.contains(HYPERCALL_ENTRY) {
        return Ok(arg.to_string());
    }
    let bytes = std::fs::read(hypervisor).map_err(|error| format!("{}: {error}", hypervisor.display()))?;
    let address = symbol(&bytes, "hypercall_entry").map_err(|why| format!("{}: {why}", hypervisor.display()))?;
    Ok(arg.replace(HYPERCALL_ENTRY, &format!("{address:#x}")))
}

/// The value of symbol `name` in the ELF `bytes`.
fn symbol(bytes: &[u8], name: &str) -> Result<u64, String> {
    use elf::endian::LittleEndian;
    let file = elf::ElfBytes::<LittleEndian>::minimal_parse(bytes).map_err(|error| format!("not an ELF: {error}"))?;
    let (symbols, strings) = file
        .symbol_table()
        .map_err(|error| format!("symbol table: {error}"))?
        .ok_or("no symbol table (a stripped hypervisor cannot run the forged-entry cases)")?;
    symbols
        .iter()
        .find(|symbol| strings.get(symbol.st_name as usize).is_ok_and(|found| found == name))
        .map(|symbol| symbol.st_value)
        .ok_or_else(|| format!("no symbol '{name}'"))
}

/// `hardening <sub>` is killed with `d1 hardening: killed: <parts>`; a companion succeeds.
fn killed(name: String, sub: &str, parts: &[&str]) -> Case {
    let mut line = vec!["d1 hardening: killed: "];
    line.extend_from_slice(parts);
    let mut killed = case(
        name,
        vec![domain("hardening", &[sub], DomainOutcome::NoResult), success("companion", &[])],
        ExitStatus::KILLED,
        &[&line[..], &["d2 companion: exited: poweroff code 0"]],
    );
    killed.expectation.forbidden.push("(d1) Test result: SUCCESS".into());
    killed
}

/// Every hardening case.
pub fn all() -> Vec<Case> {
    let mut cases = Vec::new();
    for sub in PASSING {
        let mut passing =
            case(format!("hardening::{sub}"), vec![success("hardening", &[sub])], ExitStatus::SUCCESS, &[]);
        match *sub {
            "controls" => passing.expectation.checks.push(("console controls escaped", controls_escaped)),
            "umip" => {
                for insn in UMIP_INSTRUCTIONS {
                    passing.expectation.console_lines.push(vec![format!("(d1) {insn}: #GP(0) at 0x")]);
                }
            }
            "int_vectors" => {
                passing.expectation.checks.push(("every judged vector as SPEC.md says", int_vectors_judged))
            }
            _ => {}
        }
        cases.push(passing);
    }
    for insn in UMIP_INSTRUCTIONS {
        let sub = format!("umip_{insn}");
        cases.push(killed(format!("hardening::{sub}"), &sub, &["#GP at rip ", " error 0x0 ", "no handler for #GP"]));
    }
    let mut user_vectors = case(
        "hardening::int_vectors_user",
        vec![success("hardening", &["int_vectors_user"]), success("companion", &[])],
        ExitStatus::SUCCESS,
        &[&["d2 companion: exited: poweroff code 0"]],
    );
    user_vectors.expectation.checks.push(("every judged user vector as SPEC.md says", user_vectors_judged));
    cases.push(user_vectors);
    cases.push(killed("hardening::debug_unhandled".into(), "debug_unhandled", &["#DB at rip ", "no handler for #DB"]));
    for (field, parts) in IRET_KILLED {
        let sub = format!("iret_{field}");
        cases.push(killed(format!("hardening::{sub}"), &sub, parts));
    }
    for (edge, parts) in EDGE_KILLED {
        let sub = format!("edge_{edge}");
        cases.push(killed(format!("hardening::{sub}"), &sub, parts));
    }
    for (stack, parts) in UPCALL_KILLED {
        let sub = format!("upcall_{stack}");
        cases.push(killed(format!("hardening::{sub}"), &sub, parts));
    }
    // A jump to LSTAR with forged RCX/R11 is a `syscall` with those registers (SPEC.md
    // §11.4.3): the result comes back, the privileged flags do not, and a forged return
    // address is held to the rules of any return.
    let entry = format!("entry={HYPERCALL_ENTRY}");
    let mut forged = case(
        "hardening::forged_entry",
        vec![success("hardening", &["forged_entry", &entry])],
        ExitStatus::SUCCESS,
        &[],
    );
    forged.expectation.forbidden.push("d1 hardening: killed".into());
    cases.push(forged);
    for (sub, parts) in FORGED_KILLED {
        let mut forged = killed(format!("hardening::{sub}"), sub, parts);
        forged.domains[0].args.push(entry.clone());
        cases.push(forged);
    }
    // Two domains allocate, dirty and free 2 MiB extents and pages in turns.
    let mut reuse = case(
        "hardening::frame_reuse",
        vec![success("hardening", &["frame_reuse"]), success("hardening", &["frame_reuse"])],
        ExitStatus::SUCCESS,
        &[],
    );
    for spec in &mut reuse.domains {
        spec.mem = Some("4M,maxmem=8M");
    }
    reuse.expectation.checks.push(("frames returned", crate::cases_memory::frames_returned));
    for id in 1..=2 {
        reuse
            .expectation
            .console_lines
            .push(vec![format!("(d{id}) domain {id}: 12 rounds, every new frame read as zero")]);
    }
    cases.push(reuse);
    // Frames of a domain that ended come back zeroed after the allocator has lapped all of
    // machine memory twice (the `frame_lap` guest says why its count proves the laps).
    // On a kvm-pvm host every page either domain touches costs a shadow page fault: on the
    // usual 512 MiB machine the checker's 263 168 pages took over 30 min, so this case has
    // a machine of its own (64 MiB: 0.5 s under TCG, 225 s under kvm-pvm at load 4, still
    // too long for the KVM smoke subset).
    let frames = format!("frames={}", machine_frames(LAP_MACHINE));
    let mut lap = case(
        "hardening::frame_lap",
        vec![success("frame_lap", &["dirty"]), success("frame_lap", &["check", &frames])],
        ExitStatus::SUCCESS,
        &[],
    );
    lap.domains[0].mem = Some(LAP_DIRTIER_MEM);
    lap.domains[1].mem = Some("4M,maxmem=8M");
    lap.machine_memory = LAP_MACHINE;
    lap.expectation.console_lines.push(vec![format!("(d1) frame_lap: dirtied {LAP_DIRTIED} frames")]);
    lap.expectation.checks.push(("frames returned", crate::cases_memory::frames_returned));
    lap.expectation.checks.push(("the allocator lapped machine memory twice after d1 ended", lapped_twice));
    cases.push(lap);
    let mut quota = case("hardening::quota_odd", vec![success("hardening", &["quota_odd"])], ExitStatus::SUCCESS, &[]);
    quota.domains[0].mem = Some("4M,maxmem=7M");
    cases.push(quota);
    let mut decrease = case(
        "hardening::decrease_self_array",
        vec![success("hardening", &["decrease_self_array"])],
        ExitStatus::SUCCESS,
        &[],
    );
    decrease.domains[0].mem = Some("4M,maxmem=5M");
    decrease.expectation.console_lines.push(vec!["(d1) decrease_self_array: both extents released".into()]);
    cases.push(decrease);
    // Two domains that each set their own FS and GS_KERNEL bases and yield to each other.
    let mut bases = case(
        "hardening::bases",
        vec![success("hardening", &["bases"]), success("hardening", &["bases"])],
        ExitStatus::SUCCESS,
        &[],
    );
    for id in 1..=2 {
        bases
            .expectation
            .console_lines
            .push(vec![format!("(d{id}) domain {id}: FS and GS bases kept across 50 of 50")]);
    }
    cases.push(bases);
    cases
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_vectors_may_leave_out_only_the_named_host_mangled_vectors() {
        let judged = |text: &str| int_vectors_judged(&Transcript::parse(text));
        let said = " vectors delivered as SPEC.md §4.4 says\n";
        let skip = "(d1) int n: not judged on this KVM host, which mangles them itself: ";
        assert_eq!(judged(&format!("(d1) int n: 256 of 256{said}")), Ok(()));
        assert_eq!(judged(&format!("{skip}[0x17, 0x19, 0x1a]\n(d1) int n: 253 of 253{said}")), Ok(()));
        assert!(judged(&format!("(d1) int n: 255 of 256{said}")).is_err(), "a wrong vector");
        assert!(judged(&format!("(d1) int n: 253 of 253{said}")).is_err(), "left out without saying so");
        assert!(judged(&format!("{skip}[0x17, 0x80]\n(d1) int n: 254 of 254{said}")).is_err(), "other vectors");
        assert!(judged("(d1) Test result: SUCCESS\n").is_err(), "no count");
        let user = |text: &str| user_vectors_judged(&Transcript::parse(text));
        assert_eq!(user("(d1) user int n: 256/256 right, 114 granted\n"), Ok(()));
        let mangled = "(d1) user int n: KVM host mangles [0x17, 0x19, 0x1a]\n";
        assert_eq!(user(&format!("{mangled}(d1) user int n: 253/253 right, 114 granted\n")), Ok(()));
        assert!(user(&format!("{mangled}(d1) user int n: 252/253 right, 114 granted\n")).is_err());
        assert!(user("(d1) user int n: 253/253 right, 114 granted\n").is_err(), "left out without saying so");
    }

    #[test]
    fn every_sub_case_is_a_case_with_a_companion_when_killed() {
        let cases = all();
        assert_eq!(
            cases.len(),
            PASSING.len()
                + UMIP_INSTRUCTIONS.len()
                + 1
                + IRET_KILLED.len()
                + 1
                + FORGED_KILLED.len()
                + 1
                + UPCALL_KILLED.len()
                + EDGE_KILLED.len()
                + 5 // frame_reuse, frame_lap, quota_odd, decrease_self_array, bases
        );
        let user_vectors = cases.iter().find(|case| case.name == "hardening::int_vectors_user").unwrap();
        assert_eq!(user_vectors.domains[1].image, "companion");
        let rf = cases.iter().find(|case| case.name == "hardening::iret_rf").unwrap();
        assert_eq!(rf.expectation.status, ExitStatus::KILLED);
        assert_eq!(rf.domains[1].image, "companion");
        assert_eq!(rf.domains[0].args, ["iret_rf"]);
        let sgdt = cases.iter().find(|case| case.name == "hardening::umip_sgdt").unwrap();
        assert_eq!(sgdt.expectation.hypervisor_lines[0][1], "#GP at rip ");
        let forged = cases.iter().find(|case| case.name == "hardening::forged_rcx_hypervisor").unwrap();
        assert_eq!(forged.domains[0].args, ["forged_rcx_hypervisor", "entry={hypercall_entry}"]);
    }

    #[test]
    fn the_entry_placeholder_is_filled_from_the_symbol_table() {
        let missing = std::path::Path::new("/nonexistent/hypervisor.elf");
        assert_eq!(resolve_symbols("plain", missing), Ok("plain".into()), "no placeholder, no file read");
        assert!(resolve_symbols("entry={hypercall_entry}", missing).unwrap_err().contains("/nonexistent"));
        assert!(symbol(b"not an elf", "hypercall_entry").unwrap_err().contains("not an ELF"));
        // This test binary has a symbol table of its own.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(symbol(&me, "main").is_ok());
        assert!(symbol(&me, "no_such_symbol_in_this_binary").unwrap_err().contains("no symbol"));
    }

    #[test]
    fn the_controls_check_wants_the_exact_escaped_line() {
        let good = format!("(d1) {CONTROLS_EXPECTED}\n(d1) Test result: SUCCESS\n");
        assert_eq!(controls_escaped(&Transcript::parse(&good)), Ok(()));
        // A raw CSI that got through shows as U+FFFD after the runner's lossy decoding.
        let raw = good.replace("csi\\x9b31m", "csi\u{fffd}31m");
        assert!(controls_escaped(&Transcript::parse(&raw)).unwrap_err().contains("expected"));
        let raw_utf8 = good.replace("utf8-csi\\xc2\\x9b1m", "utf8-csi\u{9b}1m");
        assert!(controls_escaped(&Transcript::parse(&raw_utf8)).is_err());
        assert!(controls_escaped(&Transcript::parse("(d2) controls: x\n")).unwrap_err().contains("no 'controls: '"));
    }

    #[test]
    fn lapped_twice_needs_more_than_twice_the_managed_frames_from_d2() {
        let run = |managed: u64, allocated: u64| {
            format!(
                "(hv) ringfence 0.1.0 ABI 0.4: 511 MiB RAM, {managed} frames managed, 126221 free\n\
                 (d2) frame_lap: {allocated} frames in 257 rounds after domain 1 ended: 0 not zero\n"
            )
        };
        let lapped = |text: &str| lapped_twice(&Transcript::parse(text));
        assert_eq!(lapped(&run(130816, 263168)), Ok(()));
        assert_eq!(lapped(&run(130816, 261633)), Ok(()));
        assert!(lapped(&run(130816, 261632)).unwrap_err().contains("no proof of two laps"));
        assert!(lapped(&run(131584, 263168)).is_err(), "more managed than the guest was told of");
        let from_d1 = run(130816, 263168).replace("(d2)", "(d1)");
        assert!(lapped(&from_d1).unwrap_err().contains("no (d2) line"));
        assert!(lapped("(d2) frame_lap: 263168 frames in 257 rounds\n").unwrap_err().contains("boot line"));
    }

    #[test]
    fn the_frame_lap_dirtier_fills_its_headroom_and_the_checker_covers_the_machine() {
        let (mem, maxmem) = LAP_DIRTIER_MEM.split_once(",maxmem=").unwrap();
        let pages = |size: &str| xtask::cmdline::parse_mem(size).unwrap().1 / hypercall_abi::layout::PAGE_SIZE;
        assert_eq!(pages(maxmem) - pages(mem), LAP_DIRTIED);
        assert_eq!(machine_frames(LAP_MACHINE), 16384, "64M of machine memory");
        // The dirtier's frames are a quarter of the machine: the lap is no token sweep.
        assert!(LAP_DIRTIED * 4 >= machine_frames(LAP_MACHINE));
        let lap = crate::cases::all().into_iter().find(|case| case.name == "hardening::frame_lap").unwrap();
        assert_eq!(lap.machine_memory, LAP_MACHINE);
        assert!(lap.domains[1].args.iter().any(|arg| arg == "frames=16384"), "{:?}", lap.domains[1].args);
    }
}
