//! `cargo xtask run --native`: guest-kernel's native build (package `guest-kernel`,
//! feature `native`, binary [`BIN`]) booted directly under QEMU, no hypervisor: QEMU loads
//! it by PVH (`-kernel`), with the isa-debug-exit device, the serial console on stdio, the
//! initramfs as `-initrd` and the kernel command line as `-append`.
//!
//! The command line: the `--arg` words as options, then `--` and the words after `--`,
//! each percent-encoded as for a guest-kernel domain on ringfence
//! ([`crate::kernel_args`]), so that a word may hold spaces or anything else and still be
//! one token. Without `--initrd` the kernel gets the initramfs `cargo xtask build` makes.
//!
//! The exit code: the kernel ends every run with a console line and a write to the exit
//! device (the protocol is guest-kernel's `arch/native/ending.rs`, included below, so the
//! two sides cannot disagree). A power-off with code N exits with N (255 if N does not
//! fit an exit status); a crash (a panic, a kernel bug, a boot that could not finish)
//! exits with 2, as a crashed domain makes `cargo xtask run` do; xtask's own failures keep
//! their codes (timeout 124, QEMU refusing to start 123, QEMU ending without the kernel
//! ending the run 125).

// The port is the kernel's side only (xtask's QEMU command line names the device; a test
// checks the two agree).
#[allow(dead_code)]
#[path = "../../guest-kernel/src/arch/native/ending.rs"]
mod ending;

use crate::accel::{self, Accel};
use crate::error::{EXIT_NO_ENDING, EXIT_QEMU_REFUSED, EXIT_TIMEOUT};
use crate::qemu::{self, ConsoleInput, ConsoleMode, Launch, Machine, RunOutcome};
use crate::{build, workspace, Error, Result};
use ending::Ending;
use std::path::PathBuf;
use std::time::Duration;

/// The package and binary of the native kernel.
pub const PACKAGE: &str = "guest-kernel";
pub const BIN: &str = "guest-kernel-native";

/// The exit code of a run whose kernel crashed (a crashed domain's status on ringfence).
pub const EXIT_CRASHED: u8 = hypercall_abi::exit::ExitStatus::CRASHED.0;

/// The cargo arguments that build the native kernel.
pub fn cargo_args() -> Vec<String> {
    [
        "build",
        "--release",
        "--target",
        build::TARGET,
        "--message-format=json-render-diagnostics",
        "-p",
        PACKAGE,
        "--no-default-features",
        "--features",
        "native",
        "--bin",
        BIN,
    ]
    .map(str::to_string)
    .into()
}

/// The built native kernel.
pub fn image() -> PathBuf {
    workspace::artifact_dir().join(format!("{BIN}.elf"))
}

/// The kernel command line: `options`, then `--` and `words` encoded (no `--` without
/// words), exactly as a guest-kernel domain on ringfence gets them
/// ([`crate::kernel_args::tokens`]).
pub fn command_line(options: &[String], words: &[String]) -> Result<String> {
    let command: Vec<std::ffi::OsString> = words.iter().map(std::ffi::OsString::from).collect();
    let mut tokens = crate::kernel_args::tokens(options, &command)?;
    if words.is_empty() {
        tokens.pop();
    }
    Ok(tokens.join(" "))
}

/// How a native run ended, and what `cargo xtask run --native` exits with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The exit code.
    pub code: u8,
    /// One line saying how the run ended.
    pub description: String,
}

/// The last `native: <ending>, code N` line of `console`, if any.
fn last_ending(console: &str) -> Option<(Ending, u32)> {
    console.lines().rev().find_map(|line| {
        let rest = line.trim_end().strip_prefix(ending::LINE_PREFIX)?;
        [Ending::PowerOff, Ending::Crash].into_iter().find_map(|ending| {
            let code = rest.strip_prefix(ending.words())?.strip_prefix(", code ")?;
            Some((ending, code.parse().ok()?))
        })
    })
}

/// Reads QEMU's ending: its process status, the console and its own complaints.
pub fn verdict(outcome: &RunOutcome) -> Verdict {
    if outcome.timed_out {
        return Verdict { code: EXIT_TIMEOUT as u8, description: "QEMU timed out and was killed".to_string() };
    }
    let device = outcome.raw_exit.and_then(Ending::from_status);
    match (device, last_ending(&outcome.output)) {
        (Some((kind, low_bits)), Some((line_kind, code))) if kind == line_kind && kind.agrees(code, low_bits) => {
            match kind {
                Ending::PowerOff => Verdict {
                    code: u8::try_from(code).unwrap_or(u8::MAX),
                    description: format!("the native kernel powered off with code {code}"),
                },
                Ending::Crash => Verdict {
                    code: EXIT_CRASHED,
                    description: format!("the native kernel crashed (code {code}); exit status {EXIT_CRASHED}"),
                },
            }
        }
        (Some((kind, low_bits)), line) => Verdict {
            code: EXIT_NO_ENDING as u8,
            description: format!(
                "QEMU's exit device says {} (code {low_bits} in its low bits) but the console's last ending line is {}",
                kind.words(),
                match line {
                    Some((kind, code)) => format!("'{}{}, code {code}'", ending::LINE_PREFIX, kind.words()),
                    None => "missing".to_string(),
                }
            ),
        },
        (None, _) => {
            let how = match outcome.raw_exit {
                Some(status) => format!("status {status}"),
                None => "killed by a signal".to_string(),
            };
            let refused = outcome.output.trim().is_empty() && outcome.raw_exit.is_some_and(|status| status != 0);
            let (code, what) = if refused {
                (EXIT_QEMU_REFUSED, "QEMU refused to start")
            } else {
                (EXIT_NO_ENDING, "QEMU ended without the native kernel ending the run")
            };
            let description = match outcome.stderr.lines().map(str::trim).find(|line| !line.is_empty()) {
                Some(complaint) => format!("{what} ({how}): {complaint}"),
                None => format!("{what} ({how})"),
            };
            Verdict { code: code as u8, description }
        }
    }
}

/// One `cargo xtask run --native`.
#[derive(Clone, Debug)]
pub struct Run {
    /// Accelerator (`None`: chosen as for every run).
    pub accel: Option<Accel>,
    /// QEMU machine type.
    pub machine: Machine,
    /// Kill QEMU after this long.
    pub timeout: Duration,
    /// Extra QEMU arguments.
    pub qemu_args: Vec<String>,
    /// The initramfs; none: the kernel gets no module.
    pub initrd: Option<PathBuf>,
    /// Kernel options (before `--`).
    pub options: Vec<String>,
    /// The command's words (after `--`).
    pub words: Vec<String>,
}

/// Builds the native kernel and boots it; the exit code.
pub fn run(run: &Run) -> Result<u8> {
    let append = command_line(&run.options, &run.words)?;
    let initrd = match &run.initrd {
        Some(path) if path.is_file() => path.clone(),
        Some(path) => return Err(Error::usage(format!("--initrd {} is not a file", path.display()))),
        None => crate::initramfs::initramfs()?,
    };
    let qemu_binary = qemu::ensure_qemu()?;
    qemu::check_accel_request(run.accel)?;
    let kernel = build::build_native_kernel()?;
    let (accel, accel_lines) = match run.accel {
        Some(accel) => {
            (accel, vec![format!("qemu: accelerator {} (as requested): {}", accel.name(), accel.args().join(" "))])
        }
        None => {
            // The choice every run makes (measured with the hypervisor's probe, cached).
            let probe = build::guest_bins()?.into_iter().filter(|guest| guest.bin == accel::PROBE_GUEST).collect();
            build::build(&build::Images::Hypervisor(probe))?;
            let choice = qemu::choose_accel(None, &qemu_binary, &workspace::hypervisor_elf())?;
            (choice.accel, choice.lines)
        }
    };
    let launch = Launch {
        qemu: qemu_binary,
        hypervisor: kernel,
        initrd,
        append,
        accel,
        machine: run.machine,
        // The machine's memory is the domain's on ringfence; a later `-m` in --qemu-arg wins.
        memory: crate::kernel_args::MEMORY,
        extra: run.qemu_args.clone(),
        timeout: run.timeout,
    };
    for line in &accel_lines {
        eprintln!("{line}");
    }
    eprintln!("qemu: {}", launch.display());
    let outcome = qemu::run_with_input(&launch, ConsoleMode::Stream, ConsoleInput::Terminal)?;
    let verdict = verdict(&outcome);
    eprintln!("xtask: {} ({} ms)", verdict.description, outcome.wall.as_millis());
    Ok(verdict.code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &[&str]) -> Vec<String> {
        text.iter().map(|word| word.to_string()).collect()
    }

    #[test]
    fn the_command_line_is_options_then_the_encoded_words() {
        let line =
            command_line(&words(&["verbose", "init=/bin/sh"]), &words(&["sh", "-c", "echo hi | wc -l"])).unwrap();
        assert_eq!(line, "verbose init=/bin/sh -- sh -c echo%20hi%20%7C%20wc%20-l");
        assert_eq!(command_line(&words(&["quiet"]), &[]).unwrap(), "quiet");
        assert_eq!(command_line(&[], &[]).unwrap(), "");
        for bad in ["", "--", "two words", "tab\t", "é"] {
            let error = command_line(&words(&[bad]), &[]).unwrap_err();
            assert_eq!(error.exit_code, crate::error::EXIT_USAGE, "{bad:?}");
        }
        assert_eq!(command_line(&[], &words(&["sh", ""])).unwrap(), "-- sh %00");
    }

    fn outcome(status: Option<i32>, console: &str, stderr: &str, timed_out: bool) -> RunOutcome {
        RunOutcome::from_parts(status, timed_out, console.to_string(), stderr.to_string(), Duration::ZERO)
    }

    fn status(ending: Ending, code: u32) -> Option<i32> {
        Some((ending.device_value(code) as i32) << 1 | 1)
    }

    #[test]
    fn the_exit_protocol_round_trips_and_never_meets_qemus_own_statuses() {
        for code in [0, 1, 7, 42, 63, 64, 255, 1000, u32::MAX] {
            for ending in [Ending::PowerOff, Ending::Crash] {
                let (decoded, low_bits) = Ending::from_status(status(ending, code).unwrap()).unwrap();
                assert_eq!(decoded, ending);
                assert!(ending.agrees(code, low_bits), "{ending:?} {code}");
            }
        }
        for qemu_itself in [0, 1, 2, 3, 31, 63, 256, -1] {
            assert_eq!(Ending::from_status(qemu_itself), None, "{qemu_itself}");
        }
        assert!(!Ending::PowerOff.agrees(3, 4));
    }

    #[test]
    fn a_power_off_exits_with_its_code() {
        let console = "check: all fine\r\nnative: power off, code 7\r\n";
        let seven = verdict(&outcome(status(Ending::PowerOff, 7), console, "", false));
        assert_eq!(seven, Verdict { code: 7, description: "the native kernel powered off with code 7".into() });
        let console = "native: power off, code 300\n";
        assert_eq!(verdict(&outcome(status(Ending::PowerOff, 300), console, "", false)).code, 255);
    }

    #[test]
    fn a_crash_exits_with_the_crashed_status() {
        let console = "native: PANIC at x.rs:1: boom\r\nnative: crash, code 1\r\n";
        let crashed = verdict(&outcome(status(Ending::Crash, 1), console, "", false));
        assert_eq!(crashed.code, EXIT_CRASHED);
        assert!(crashed.description.contains("crashed (code 1)"), "{}", crashed.description);
    }

    #[test]
    fn a_line_printed_by_a_program_is_not_an_ending() {
        // A program printed a power-off line, then the kernel crashed: the device decides.
        let console = "native: power off, code 0\nnative: crash, code 1\n";
        assert_eq!(verdict(&outcome(status(Ending::Crash, 1), console, "", false)).code, EXIT_CRASHED);
        // The device says power off, code 5; the only line claims code 0.
        let forged = verdict(&outcome(status(Ending::PowerOff, 5), "native: power off, code 0\n", "", false));
        assert_eq!(forged.code, EXIT_NO_ENDING as u8);
        assert!(
            forged.description.contains("last ending line is 'native: power off, code 0'"),
            "{}",
            forged.description
        );
        let missing = verdict(&outcome(status(Ending::PowerOff, 0), "hello\n", "", false));
        assert_eq!(missing.code, EXIT_NO_ENDING as u8);
        assert!(missing.description.ends_with("is missing"), "{}", missing.description);
    }

    #[test]
    fn qemus_own_endings_keep_xtasks_codes() {
        let refused = verdict(&outcome(Some(1), "", "qemu-system-x86_64: -initrd x: No such file\n", false));
        assert_eq!(refused.code, EXIT_QEMU_REFUSED as u8);
        assert!(refused.description.ends_with("(status 1): qemu-system-x86_64: -initrd x: No such file"));
        let triple_fault = verdict(&outcome(Some(0), "native: booting\n", "", false));
        assert_eq!(triple_fault.code, EXIT_NO_ENDING as u8);
        assert_eq!(verdict(&outcome(None, "", "", true)).code, EXIT_TIMEOUT as u8);
        assert_eq!(verdict(&outcome(None, "x", "", false)).code, EXIT_NO_ENDING as u8);
    }

    #[test]
    fn the_kernel_writes_where_qemu_has_the_exit_device() {
        assert_eq!(ending::DEBUG_EXIT_PORT, hypercall_abi::exit::ExitStatus::DEBUG_EXIT_PORT);
        let launch = Launch {
            qemu: "qemu".into(),
            hypervisor: "k".into(),
            initrd: "i".into(),
            append: String::new(),
            accel: Accel::Tcg,
            machine: Machine::Microvm,
            memory: crate::kernel_args::MEMORY,
            extra: Vec::new(),
            timeout: Duration::ZERO,
        };
        assert!(launch.display().contains(&format!("isa-debug-exit,iobase={:#x}", ending::DEBUG_EXIT_PORT)));
    }

    #[test]
    fn the_build_selects_the_native_feature_without_the_default() {
        let args = cargo_args().join(" ");
        assert!(
            args.ends_with("-p guest-kernel --no-default-features --features native --bin guest-kernel-native"),
            "{args}"
        );
    }
}
