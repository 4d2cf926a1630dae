//! Conformance cases of guest-kernel, the ported kernel, as a ringfence domain: it boots
//! with its initramfs as the domain's module (SPEC.md §2.4), runs the command its command
//! line names, and powers off with that command's exit status; several run side by side;
//! and a kernel that cannot start (no initramfs, a malformed command line) says why in one
//! line and powers off with its documented code. Its own test suite (`/tests/run` in the
//! initramfs) is `cargo xtask test`'s, on both builds.

use crate::cases::{case, Case, DomainSpec, ImageSource, ModuleSpec};
use crate::judge::{DomainOutcome, Transcript};
use hypercall_abi::exit::ExitStatus;
use hypercall_abi::ABI_VERSION;

/// The kernel's image, as `cargo xtask build` names it.
const IMAGE: &str = "guest-kernel";
/// The archive member holding the initramfs (`cargo xtask run` names it the same).
const INITRAMFS: &str = "initramfs";

/// guest-kernel's shutdown code when its command line cannot be parsed
/// (`BAD_COMMAND_LINE` in guest-kernel/src/kernel/boot.rs).
pub const BAD_COMMAND_LINE: u8 = 125;
/// guest-kernel's shutdown code when its initramfs is missing or damaged
/// (`BAD_INITRAMFS` in guest-kernel/src/kernel/boot.rs).
pub const BAD_INITRAMFS: u8 = 126;

/// The command of issue 13's "Done when": a shell loop through a pipe, counted.
pub const PIPELINE: &[&str] = &["sh", "-c", "for i in 1 2 3; do echo $i; done | wc -l"];

/// A guest-kernel domain with `cargo xtask run`'s memory, its initramfs as module (if
/// `with_initramfs`), and `args` as its command-line words.
fn kernel(args: Vec<String>, with_initramfs: bool) -> DomainSpec {
    DomainSpec {
        image: IMAGE.to_string(),
        source: ImageSource::Bin(IMAGE),
        mem: Some(xtask::kernel_args::MEMORY),
        args,
        module: with_initramfs.then(|| ModuleSpec { member: INITRAMFS.to_string(), source: ImageSource::Initramfs }),
        token_options: &[],
        outcome: DomainOutcome::Started,
    }
}

/// A guest-kernel domain whose init runs `command` (encoded as `cargo xtask run -- ...`
/// encodes it).
fn running(command: &[&str]) -> DomainSpec {
    let words: Vec<std::ffi::OsString> = command.iter().map(std::ffi::OsString::from).collect();
    kernel(xtask::kernel_args::tokens(&[], &words).expect("the cases' commands encode"), true)
}

/// The hypervisor's line for domain `id` powering off with `code`.
fn powered_off(id: u32, code: u8) -> String {
    format!("d{id} {IMAGE}: exited: poweroff code {code}")
}

/// The parts of guest-kernel's banner, in order: its name and version (the workspace's,
/// which this crate shares), then the ABI version and feature bits it read from the
/// hypervisor with `version` (SPEC.md §6.1), so a banner proves the two hypercalls worked.
pub fn banner_parts() -> Vec<String> {
    vec![
        format!("guest-kernel {}: ", env!("CARGO_PKG_VERSION")),
        format!("hypervisor ABI {ABI_VERSION}, "),
        format!("features {:#x}", hypercall_abi::hypercall::features::ALL),
    ]
}

/// The first line of the first domain is the kernel's banner.
pub fn banner(transcript: &Transcript) -> Result<(), String> {
    let id = transcript.started().first().map(|(id, _)| *id).ok_or("no domain started")?;
    let first = transcript.domain(id).next().ok_or_else(|| format!("d{id} printed nothing"))?;
    let parts = banner_parts();
    match first.starts_with(parts[0].as_str()) && crate::judge::contains_in_order(first, &parts) {
        true => Ok(()),
        false => Err(format!("d{id}'s first line '{first}' is not a banner with, in order, {parts:?}")),
    }
}

/// Domain `id` printed a line that is exactly `expected` (a `contains` would take `30`
/// or `left 420` for it).
fn printed_exactly(transcript: &Transcript, id: u32, expected: &str) -> Result<(), String> {
    match transcript.domain(id).any(|line| line == expected) {
        true => Ok(()),
        false => Err(format!("d{id} printed no line that is exactly '{expected}'")),
    }
}

/// [`PIPELINE`] printed its count.
fn printed_three(transcript: &Transcript) -> Result<(), String> {
    printed_exactly(transcript, 1, "3")
}

/// Each of the two domains printed its own command's line.
fn printed_own_lines(transcript: &Transcript) -> Result<(), String> {
    printed_exactly(transcript, 1, "left 42")?;
    printed_exactly(transcript, 2, "right 56")
}

/// The interactive shell printed what the typed line (with its erased character) asks.
fn printed_ping(transcript: &Transcript) -> Result<(), String> {
    printed_exactly(transcript, 1, "ping 42")
}

/// The refusal is the domain's only line: the kernel stopped before its banner.
fn only_one_line(transcript: &Transcript) -> Result<(), String> {
    let lines: Vec<&str> = transcript.domain(1).collect();
    match lines.len() {
        1 => Ok(()),
        count => Err(format!("d1 printed {count} lines, expected only its refusal: {lines:?}")),
    }
}

/// Every guest-kernel case, in order.
pub fn all() -> Vec<Case> {
    let mut cases = Vec::new();

    // Issue 13's "Done when" on ringfence: busybox's sh forks a loop and `wc` through a
    // pipe; the count is printed and the command's status 0 is the domain's code.
    let mut pipeline =
        case("guest_kernel::pipeline", vec![running(PIPELINE)], ExitStatus::SUCCESS, &[&[&powered_off(1, 0)]]);
    pipeline.expectation.checks.push(("banner", banner));
    pipeline.expectation.checks.push(("the pipeline printed 3", printed_three));
    cases.push(pipeline);

    // The command's exit status is the domain's poweroff code.
    cases.push(case(
        "guest_kernel::exit_status",
        vec![running(&["sh", "-c", "exit 7"])],
        ExitStatus::NONZERO_CODE,
        &[&[&powered_off(1, 7)]],
    ));

    // Two kernels at once, each with its own command and its own code; neither sees the
    // other's output.
    let mut two = case(
        "guest_kernel::two_domains",
        vec![
            running(&["sh", "-c", "echo left $((6*7)) | cat"]),
            running(&["sh", "-c", "echo right $((7*8)) | cat; exit 3"]),
        ],
        ExitStatus::NONZERO_CODE,
        &[&[&powered_off(1, 0)], &[&powered_off(2, 3)]],
    );
    two.expectation.checks.push(("each domain printed its own line", printed_own_lines));
    two.expectation.forbidden.extend(["(d1) right".to_string(), "(d2) left".to_string()]);
    cases.push(two);

    // No command: /etc/rc starts an interactive sh on the console, typed at as a terminal
    // would (CR ends a line, DEL erases); `exit 5` powers off with 5.
    let mut shell =
        case("guest_kernel::shell", vec![kernel(Vec::new(), true)], ExitStatus::NONZERO_CODE, &[&[&powered_off(1, 5)]]);
    shell.input = Some(("(d1) guest-kernel: no command given; starting sh", b"echo pinx\x7fg $((6*7))\rexit 5\r"));
    shell.expectation.checks.push(("the typed line ran", printed_ping));
    cases.push(shell);

    // A domain without its module: one line saying what is missing, and the kernel's
    // code for it.
    let mut no_initramfs = case(
        "guest_kernel::no_initramfs",
        vec![kernel(Vec::new(), false)],
        ExitStatus::NONZERO_CODE,
        &[&[&powered_off(1, BAD_INITRAMFS)]],
    );
    no_initramfs.expectation.console_lines.push(vec!["(d1) guest-kernel: no initramfs: boot with one".into()]);
    no_initramfs.expectation.forbidden.push("(d1) guest-kernel: no command given".into());
    cases.push(no_initramfs);

    // A command word that is not percent-encoded (`%` then two hex digits): the kernel
    // names the word and stops before its banner.
    let mut bad_word = case(
        "guest_kernel::bad_command_line",
        vec![kernel(vec!["--".into(), "sh".into(), "%zz".into()], true)],
        ExitStatus::NONZERO_CODE,
        &[&[&powered_off(1, BAD_COMMAND_LINE)]],
    );
    bad_word.expectation.console_lines.push(vec![
        "(d1) guest-kernel: command line '-- sh %zz': ".into(),
        "command word 1 '%zz' is not percent-encoded".into(),
    ]);
    bad_word.expectation.checks.push(("only the refusal", only_one_line));
    cases.push(bad_word);
    cases
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_codes_are_the_kernels() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../guest-kernel/src/kernel/boot.rs");
        let source = std::fs::read_to_string(path).expect("guest-kernel's boot source");
        for (name, code) in [("BAD_COMMAND_LINE", BAD_COMMAND_LINE), ("BAD_INITRAMFS", BAD_INITRAMFS)] {
            let declaration = format!("pub const {name}: u32 = {code};");
            assert!(source.contains(&declaration), "{path} does not declare `{declaration}`");
        }
    }

    #[test]
    fn commands_reach_init_as_cargo_xtask_run_sends_them() {
        let spec = running(PIPELINE);
        let parsed = guest_kernel_core::command_line::parse(spec.args.join(" ").as_bytes()).expect("a valid line");
        let words: Vec<&[u8]> = parsed.command.iter().map(Vec::as_slice).collect();
        let expected: Vec<&[u8]> = PIPELINE.iter().map(|word| word.as_bytes()).collect();
        assert_eq!(words, expected);
        assert_eq!(spec.module.map(|module| module.member), Some(INITRAMFS.to_string()));
        assert_eq!(spec.mem, Some("128M"));
        let bad = kernel(vec!["--".into(), "sh".into(), "%zz".into()], true);
        assert!(guest_kernel_core::command_line::parse(bad.args.join(" ").as_bytes()).is_err());
    }

    #[test]
    fn exact_lines_are_exact() {
        let transcript = Transcript::parse("(hv) d1 guest-kernel: started\n(d1) 30\n(d2) 3\n");
        assert!(printed_three(&transcript).unwrap_err().contains("exactly '3'"));
        assert_eq!(printed_three(&Transcript::parse("(d1) x\n(d1) 3\n")), Ok(()));
        let both = "(d1) left 42\n(d2) right 56\n";
        assert_eq!(printed_own_lines(&Transcript::parse(both)), Ok(()));
        assert!(printed_own_lines(&Transcript::parse("(d1) left 42\n(d1) right 56\n")).is_err());
        assert!(only_one_line(&Transcript::parse("(d1) a\n(d1) b\n")).is_err());
        assert_eq!(only_one_line(&Transcript::parse("(hv) x\n(d1) a\n")), Ok(()));
    }

    #[test]
    fn banner_must_name_kernel_abi_and_features() {
        let started = "(hv) d1 guest-kernel: started\n";
        let good = format!(
            "{started}(d1) guest-kernel {}: paravirtualized on ringfence, hypervisor ABI {ABI_VERSION}, features {:#x}, extended state xsave\n(d1) more\n",
            env!("CARGO_PKG_VERSION"),
            hypercall_abi::hypercall::features::ALL
        );
        assert_eq!(banner(&Transcript::parse(&good)), Ok(()));
        assert!(banner(&Transcript::parse(started)).unwrap_err().contains("printed nothing"));
        let any_line = format!("{started}(d1) tiny kernel 0.1\n");
        assert!(banner(&Transcript::parse(&any_line)).unwrap_err().contains("not a banner"));
        let unknown_version = good.replace(&format!("ABI {ABI_VERSION}"), "ABI unknown (-38)");
        assert!(banner(&Transcript::parse(&unknown_version)).is_err());
        let fewer_features = good.replace(&format!("{:#x}", hypercall_abi::hypercall::features::ALL), "0x7f");
        assert!(banner(&Transcript::parse(&fewer_features)).is_err());
        let banner_not_first = good.replace("(d1) guest-kernel", "(d1) early noise\n(d1) guest-kernel");
        assert!(banner(&Transcript::parse(&banner_not_first)).is_err());
    }
}
