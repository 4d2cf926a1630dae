//! `cargo xtask gdb`: boot as `run` does, with QEMU halted and its gdbstub open, and gdb
//! attached with the hypervisor's and one guest's symbols (`xtask::gdb`).

use super::run::{self, Prepared, RunArgs};
use clap::Args;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use wait_timeout::ChildExt;
use xtask::accel::Accel;
use xtask::error::EXIT_TIMEOUT;
use xtask::gdb::{self, Session};
use xtask::qemu::{self, ConsoleInput, ConsoleMode};
use xtask::{Error, Result};

/// Options of `cargo xtask gdb`.
#[derive(Args, Debug)]
pub struct GdbArgs {
    #[command(flatten)]
    run: RunArgs,
    /// A gdb command to run once gdb is attached (repeatable, in order), like gdb's -ex.
    #[arg(long = "ex", value_name = "COMMAND")]
    commands: Vec<String>,
    /// Run gdb in batch mode: the --ex commands, then exit (and QEMU with it); ~/.gdbinit
    /// is not read.
    #[arg(long)]
    batch: bool,
    /// Whose guest symbols gdb gets: a domain's number (2 or d2) or name. Default: d1.
    /// Guests all link at the same addresses, so gdb can hold one image's at a time.
    #[arg(long, value_name = "DOMAIN")]
    symbols: Option<String>,
}

/// The domain `--symbols` names, as an index into `domains` (name, image).
fn chosen_domain(choice: Option<&str>, domains: &[(String, std::path::PathBuf)]) -> Result<usize> {
    let Some(choice) = choice else { return Ok(0) };
    let number = choice.strip_prefix('d').unwrap_or(choice).parse::<usize>().ok();
    let index = match number {
        Some(number) if (1..=domains.len()).contains(&number) => Some(number - 1),
        _ => domains.iter().position(|(name, _)| name == choice),
    };
    index.ok_or_else(|| {
        let known: Vec<String> =
            domains.iter().enumerate().map(|(index, (name, _))| format!("d{} {name}", index + 1)).collect();
        Error::usage(format!(
            "--symbols {choice} names no domain of this boot; give a number or a name of: {}",
            known.join(", ")
        ))
    })
}

/// Without `--timeout` a debugging session may last as long as the user wants.
const NO_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);
/// How long QEMU may take to open the gdbstub's socket.
const SOCKET_WAIT: Duration = Duration::from_secs(10);

/// Builds with full debug information, boots halted, and runs gdb attached.
pub fn main(mut args: GdbArgs) -> Result<u8> {
    // Full debug information (variables, types), so gdb can print locals. Cargo keeps these
    // builds apart from run's (the profile is part of each unit's hash), so switching
    // between run and gdb relinks nothing. Set before any thread exists: every cargo this
    // process starts inherits it.
    std::env::set_var("CARGO_PROFILE_RELEASE_DEBUG", "full");
    if args.run.trace.is_some() {
        return Err(Error::usage("--trace is an option of `cargo xtask run`; gdb sessions are not traced"));
    }
    let gdb_binary = gdb::ensure_gdb()?;
    if args.run.accel.is_none() {
        // Under TCG a breakpoint is exact in every mode and address space (xtask::gdb).
        eprintln!("gdb: accelerator tcg (QEMU's breakpoints are exact under TCG; --accel kvm to use KVM)");
        args.run.accel = Some(Accel::Tcg);
    }
    let Prepared { mut launch, domains, accel_lines, .. } = run::prepare(&args.run, "gdb", NO_TIMEOUT)?;
    let socket = gdb::socket_path();
    let _ = std::fs::remove_file(&socket);
    launch.extra.extend(gdb::qemu_args(&socket));
    for line in &accel_lines {
        eprintln!("{line}");
    }
    eprintln!("qemu: {}", launch.display());

    let chosen = chosen_domain(args.symbols.as_deref(), &domains)?;
    let (chosen_name, chosen_image) = domains.get(chosen).ok_or_else(|| Error::usage("nothing to boot"))?;
    eprintln!(
        "gdb: symbols of the hypervisor ({}) and of d{} {chosen_name} ({})",
        launch.hypervisor.display(),
        chosen + 1,
        chosen_image.display()
    );
    let mut hinted = vec![chosen_image];
    for (number, (name, image)) in domains.iter().enumerate() {
        if !hinted.contains(&image) {
            hinted.push(image);
            eprintln!(
                "gdb: d{} {name} links at the same addresses; to debug it instead: remove-symbol-file {}, then add-symbol-file {} (or --symbols d{})",
                number + 1,
                chosen_image.display(),
                image.display(),
                number + 1
            );
        }
    }
    let session = Session {
        hypervisor: &launch.hypervisor,
        guest: Some(chosen_image),
        socket: &socket,
        commands: &args.commands,
        batch: args.batch,
    };
    let gdb_args = session.args();

    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let (gdb_result, outcome) = std::thread::scope(|scope| {
        let qemu = scope.spawn(|| qemu::run_until(&launch, ConsoleMode::Stream, ConsoleInput::Detached, &stop));
        let gdb_result = attach(&gdb_binary, &gdb_args, &socket, &launch.timeout, start, || qemu.is_finished());
        stop.store(true, Ordering::Relaxed);
        let outcome = qemu.join().unwrap_or_else(|_| Err(Error::failed("the thread running QEMU panicked")));
        (gdb_result, outcome)
    });
    let _ = std::fs::remove_file(&socket);
    let outcome = outcome?;
    let gdb_end = gdb_result?;
    let run_ending = || {
        eprintln!("xtask: {} ({} ms)", outcome.describe(launch.timeout), outcome.wall.as_millis());
        Ok(u8::try_from(outcome.xtask_exit_code()).unwrap_or(125))
    };
    if outcome.status.is_some() || outcome.timed_out {
        // The run ended on its own while gdb was attached: its ending is the answer.
        return run_ending();
    }
    match gdb_end {
        GdbEnd::NoSocket => run_ending(),
        GdbEnd::Exited(0) => {
            eprintln!("xtask: gdb ended; QEMU stopped ({} ms)", outcome.wall.as_millis());
            Ok(0)
        }
        GdbEnd::Exited(code) => Err(Error::failed(format!("gdb exited with status {code}; QEMU stopped"))),
        GdbEnd::TimedOut => {
            eprintln!("xtask: gdb and QEMU killed after the timeout of {} s", launch.timeout.as_secs());
            Ok(EXIT_TIMEOUT as u8)
        }
    }
}

/// How gdb's part ended.
#[derive(Debug, PartialEq, Eq)]
enum GdbEnd {
    /// gdb exited with this status (a signal counts as 1).
    Exited(i32),
    /// The timeout passed; gdb was killed.
    TimedOut,
    /// QEMU ended before its gdbstub's socket appeared; gdb was not started.
    NoSocket,
}

/// Waits for QEMU's socket, then runs gdb on the terminal until it exits or the timeout
/// (counted from `start`) passes.
fn attach(
    gdb_binary: &std::path::Path,
    gdb_args: &[std::ffi::OsString],
    socket: &std::path::Path,
    timeout: &Duration,
    start: Instant,
    qemu_ended: impl Fn() -> bool,
) -> Result<GdbEnd> {
    while !socket.exists() {
        if qemu_ended() {
            return Ok(GdbEnd::NoSocket);
        }
        if start.elapsed() > SOCKET_WAIT {
            return Err(Error::failed(format!(
                "QEMU did not open its gdbstub socket {} within {} s",
                socket.display(),
                SOCKET_WAIT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut child = Command::new(gdb_binary)
        .args(gdb_args)
        .spawn()
        .map_err(|error| Error::environment(format!("cannot start {}: {error}", gdb_binary.display())))?;
    // Ctrl-C is gdb's (it interrupts the guest); QEMU has a process group of its own, and
    // this process ignores it while gdb runs.
    // SAFETY: signal(2) with SIG_IGN installs no handler code; nothing else here uses SIGINT.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
    let left = timeout.saturating_sub(start.elapsed());
    let waited = child.wait_timeout(left).map_err(|error| Error::failed(format!("waiting for gdb: {error}")))?;
    let end = match waited {
        Some(status) => GdbEnd::Exited(status.code().unwrap_or(1)),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            GdbEnd::TimedOut
        }
    };
    // SAFETY: as above; the default action again.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_DFL) };
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_name_a_domain_by_number_or_name() {
        let domains: Vec<(String, std::path::PathBuf)> =
            ["left", "right", "7"].iter().map(|name| (name.to_string(), format!("/g/{name}.elf").into())).collect();
        assert_eq!(chosen_domain(None, &domains).unwrap(), 0);
        assert_eq!(chosen_domain(Some("2"), &domains).unwrap(), 1);
        assert_eq!(chosen_domain(Some("d3"), &domains).unwrap(), 2);
        assert_eq!(chosen_domain(Some("right"), &domains).unwrap(), 1);
        assert_eq!(chosen_domain(Some("7"), &domains).unwrap(), 2, "no d7: the name");
        for bad in ["0", "d4", "nosuch", ""] {
            let error = chosen_domain(Some(bad), &domains).unwrap_err();
            assert_eq!(error.exit_code, xtask::error::EXIT_USAGE);
            assert!(error.message.contains("d1 left, d2 right, d3 7"), "{bad}: {}", error.message);
        }
    }
}
