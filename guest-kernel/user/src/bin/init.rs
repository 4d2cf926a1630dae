//! `/sbin/init`, the first process guest-kernel starts.
//!
//! The kernel passes the command after `--` on its command line as init's arguments
//! (`/sbin/init sh -c 'echo hi'`); with none, init runs `/bin/sh /etc/rc`. It gives the
//! command a standard environment and its own session on the console, reaps every process
//! that ends up its child (orphans are given to init), and when the command ends it exits
//! with the command's status: its exit code, or 128 plus the signal that killed it. The
//! kernel makes that its shutdown code. A command that cannot be started gets one line on
//! standard error and the shell's codes: 127 when it was not found, 126 when it was found
//! but could not be run.

use std::ffi::{CString, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::process::ExitCode;

use guest_kernel_user::process::{errno, exit_now, fork, wait, Fork, Status};

/// The environment a command gets unless the kernel passed the variable.
const ENVIRONMENT: &[(&str, &str)] = &[
    ("PATH", "/bin:/sbin:/usr/bin:/usr/sbin"),
    ("HOME", "/root"),
    ("SHELL", "/bin/sh"),
    ("USER", "root"),
    ("LOGNAME", "root"),
    ("TERM", "vt100"),
];

/// Signals init itself must not die of (the kernel sends the console's Ctrl-C to the
/// command's process group, but a stray `kill -TERM 1` must not power off the machine);
/// the command gets their default actions back.
const SHIELDED: &[i32] =
    &[libc::SIGINT, libc::SIGQUIT, libc::SIGTERM, libc::SIGHUP, libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU];

/// The command to run: init's arguments, or the default script.
fn command() -> Vec<OsString> {
    let arguments: Vec<OsString> = std::env::args_os().skip(1).collect();
    if arguments.is_empty() {
        vec!["/bin/sh".into(), "/etc/rc".into()]
    } else {
        arguments
    }
}

/// Opens the console as descriptors 0, 1 and 2 if the kernel did not.
fn ensure_standard_descriptors() {
    // SAFETY: F_GETFD on a descriptor number only reads the descriptor table.
    let open = |fd: i32| unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1;
    if (0..3).all(open) {
        return;
    }
    // SAFETY: the path is a NUL-terminated literal.
    let console = unsafe { libc::open(c"/dev/console".as_ptr(), libc::O_RDWR | libc::O_NOCTTY) };
    if console == -1 {
        return;
    }
    for fd in 0..3 {
        if !open(fd) {
            // SAFETY: dup2 of an open descriptor onto a free number.
            unsafe { libc::dup2(console, fd) };
        }
    }
    if console > 2 {
        // SAFETY: the descriptor opened above, not one of 0..3.
        unsafe { libc::close(console) };
    }
}

fn set_disposition(signals: &[i32], handler: libc::sighandler_t) {
    for &signal in signals {
        // SAFETY: SIG_IGN and SIG_DFL need no handler code.
        unsafe { libc::signal(signal, handler) };
    }
}

/// In the child: a session of its own with the console as controlling terminal (so the
/// console's Ctrl-C reaches it and a shell gets job control), every signal at its default
/// action (exec keeps an ignored signal ignored: init's shielded ones, and SIGPIPE, which
/// Rust's runtime ignores in every Rust program, so that `yes | head -n 1` would never
/// end) and none blocked, then the program. Returns only if exec failed, with the exit
/// code to use.
fn exec_command(words: &[CString]) -> i32 {
    // SAFETY: setsid and the TIOCSCTTY ioctl take no pointers; failing (a kernel without
    // sessions on its console) leaves the command without a controlling terminal, which
    // only costs job control.
    unsafe {
        libc::setsid();
        libc::ioctl(0, libc::TIOCSCTTY, 0);
    }
    let every: Vec<i32> = (1..32).filter(|&signal| signal != libc::SIGKILL && signal != libc::SIGSTOP).collect();
    set_disposition(&every, libc::SIG_DFL);
    // SAFETY: an empty set, valid for sigprocmask.
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
    let mut argv: Vec<*const libc::c_char> = words.iter().map(|word| word.as_ptr()).collect();
    argv.push(std::ptr::null());
    // SAFETY: argv is a NULL-terminated array of NUL-terminated strings that outlive the
    // call; execvp searches PATH from the environment set in main.
    unsafe { libc::execvp(argv[0], argv.as_ptr()) };
    let error = errno();
    let program = String::from_utf8_lossy(words[0].as_bytes());
    eprintln!("init: cannot run {program}: {}", std::io::Error::from_raw_os_error(error));
    if error == libc::ENOENT || error == libc::ENOTDIR {
        127
    } else {
        126
    }
}

fn main() -> ExitCode {
    ensure_standard_descriptors();
    for (name, value) in ENVIRONMENT {
        if std::env::var_os(name).is_none() {
            std::env::set_var(name, value);
        }
    }
    let _ = std::env::set_current_dir("/");
    let words: Vec<CString> =
        match command().into_iter().map(|word| CString::new(word.into_vec())).collect::<Result<_, _>>() {
            Ok(words) => words,
            Err(_) => {
                eprintln!("init: a command word holds a NUL byte");
                return ExitCode::from(127);
            }
        };
    set_disposition(SHIELDED, libc::SIG_IGN);
    let child = match fork() {
        Ok(Fork::Child) => exit_now(exec_command(&words)),
        Ok(Fork::Parent(pid)) => pid,
        Err(error) => {
            eprintln!(
                "init: cannot start {}: fork failed: {}",
                String::from_utf8_lossy(words[0].as_bytes()),
                std::io::Error::from_raw_os_error(error)
            );
            return ExitCode::from(127);
        }
    };
    // Reap everything until the command itself ends: its orphans are ours too.
    let status = loop {
        match wait(-1, 0) {
            Ok((pid, status)) if pid == child => break status,
            Ok(_) => continue,
            Err(error) => {
                eprintln!("init: wait4 failed: {}", std::io::Error::from_raw_os_error(error));
                return ExitCode::from(127);
            }
        }
    };
    if let Status::Signaled(_) = status {
        let program = std::path::Path::new(std::ffi::OsStr::from_bytes(words[0].as_bytes()));
        eprintln!("init: {} {status}", program.display());
    }
    ExitCode::from(u8::try_from(status.shell_code()).unwrap_or(255))
}
