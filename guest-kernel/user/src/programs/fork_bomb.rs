//! A kernel cannot be taken down by forking: fork fails with EAGAIN (or ENOMEM) at the
//! kernel's bound, the forking process survives and keeps working, and once the processes
//! are gone fork works again. Two bombs: one process forking children that wait, counted
//! exactly; and the classic one, every process forking forever, killed as a group.
//!
//! `--limit N` treats N processes as the bound, for running on a host's Linux, where a
//! root user has no bound short of the machine's memory; the guest runs without it.

use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::check::{ensure, expect_eq};
use crate::check::{Outcome, Suite};
use crate::process::{
    close, errno_name, exit_now, fork, pipe, read, sleep_ms, wait, wait_for, write_all, Fork, Status,
};
use crate::signals::kill;

/// Forks past this many without an error mean the kernel has no bound.
const NO_BOUND: usize = 100_000;

fn is_bound(error: i32) -> bool {
    error == libc::EAGAIN || error == libc::ENOMEM
}

/// Forks children that wait on a pipe until fork fails (or `limit` are running).
fn linear(limit: Option<usize>) -> Outcome {
    let (release_reader, release_writer) = pipe()?;
    let (read_end, write_end) = (release_reader.as_raw_fd(), release_writer.as_raw_fd());
    let mut children = Vec::new();
    let cap = limit.unwrap_or(NO_BOUND);
    let refused = loop {
        if children.len() >= cap {
            break None;
        }
        match fork() {
            Ok(Fork::Child) => {
                close(write_end);
                let mut byte = [0u8];
                // Blocks until the parent closes the write end.
                let code = match read(read_end, &mut byte) {
                    Ok(0) => 0,
                    _ => 1,
                };
                exit_now(code)
            }
            Ok(Fork::Parent(pid)) => children.push(pid),
            Err(error) => break Some(error),
        }
    };
    let count = children.len();
    // At the bound the parent still works: a pipe round trip, and fork is still refused.
    let alive = (|| -> Outcome {
        let (reader, writer) = pipe()?;
        write_all(writer.as_raw_fd(), b"alive").map_err(errno_name)?;
        let mut buffer = [0u8; 8];
        let got = read(reader.as_raw_fd(), &mut buffer).map_err(errno_name)?;
        expect_eq("a pipe round trip at the bound", &buffer[..got], b"alive")
    })();
    let again = if limit.is_none() {
        match fork() {
            Ok(Fork::Child) => exit_now(0),
            Ok(Fork::Parent(pid)) => {
                children.push(pid);
                Some(Ok(pid))
            }
            Err(error) => Some(Err(error)),
        }
    } else {
        None
    };
    // Release and reap every child, whatever was found.
    drop(release_writer);
    drop(release_reader);
    let mut reaped_ok = 0;
    for &child in &children {
        if wait_for(child) == Ok(Status::Exited(0)) {
            reaped_ok += 1;
        }
    }
    println!(
        "# fork-bomb: {count} children before fork was refused ({})",
        refused.map_or("the --limit".into(), errno_name)
    );
    alive?;
    match (limit, refused) {
        (None, None) => return Err(format!("{NO_BOUND} forks succeeded: the kernel has no bound")),
        (_, Some(error)) if !is_bound(error) => return Err(format!("fork failed with {}", errno_name(error))),
        _ => {}
    }
    if let Some(again) = again {
        ensure(again.is_err_and(is_bound), || format!("a fork at the bound gave {again:?}"))?;
    }
    ensure(count > 0, || "not a single fork succeeded".into())?;
    expect_eq("children reaped with exit 0", reaped_ok, children.len())?;
    fork_works_again()
}

/// After the processes are gone, fork succeeds again (init may still be reaping orphans:
/// up to 10 s).
fn fork_works_again() -> Outcome {
    let start = Instant::now();
    loop {
        match fork() {
            Ok(Fork::Child) => exit_now(7),
            Ok(Fork::Parent(pid)) => return expect_eq("a child after the bomb", wait_for(pid)?, Status::Exited(7)),
            Err(error) if is_bound(error) && start.elapsed() < Duration::from_secs(10) => sleep_ms(50),
            Err(error) => return Err(format!("fork after the bomb: {}", errno_name(error))),
        }
    }
}

/// With `--limit`, the processes of the classic bomb share this counter (a shared
/// anonymous page) and stop at the limit.
fn shared_counter() -> Result<&'static AtomicUsize, String> {
    // SAFETY: a fresh shared anonymous page, zero-filled, which stays mapped for the
    // program's life; an AtomicUsize of zero is valid at its start.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if page == libc::MAP_FAILED {
        return Err(format!("mmap(MAP_SHARED): {}", errno_name(crate::process::errno())));
    }
    // SAFETY: the page is mapped for the rest of the program and aligned for the atomic.
    Ok(unsafe { &*(page as *const AtomicUsize) })
}

fn pause_forever() -> ! {
    loop {
        // SAFETY: pause takes no arguments.
        unsafe { libc::pause() };
    }
}

/// Every process forks for ever; a process whose fork is refused waits to be killed.
fn classic(limit: Option<usize>) -> Outcome {
    let budget = match limit {
        Some(limit) => Some((shared_counter()?, limit)),
        None => None,
    };
    let leader = match fork() {
        Err(error) => return Err(format!("fork of the bomb's leader: {}", errno_name(error))),
        Ok(Fork::Child) => {
            // SAFETY: setpgid(0, 0): the bomb is one process group, killed as one.
            unsafe { libc::setpgid(0, 0) };
            loop {
                if let Some((counter, limit)) = budget {
                    if counter.fetch_add(1, Ordering::SeqCst) >= limit {
                        pause_forever();
                    }
                }
                if fork().is_err() {
                    pause_forever();
                }
            }
        }
        Ok(Fork::Parent(pid)) => pid,
    };
    // SAFETY: the parent sets the group too, so the kill below cannot miss it.
    unsafe { libc::setpgid(leader, leader) };
    // Wait until the bomb fills the system: this process's own fork is refused (or, with
    // --limit, the counter reaches it). The parent keeps working meanwhile.
    let start = Instant::now();
    let saturated = loop {
        if start.elapsed() > Duration::from_secs(30) {
            break false;
        }
        if let Some((counter, limit)) = budget {
            if counter.load(Ordering::SeqCst) >= limit {
                break true;
            }
            sleep_ms(20);
            continue;
        }
        match fork() {
            Ok(Fork::Child) => exit_now(0),
            Ok(Fork::Parent(pid)) => {
                let _ = wait_for(pid);
                sleep_ms(20);
            }
            Err(error) if is_bound(error) => break true,
            Err(_) => sleep_ms(20),
        }
    };
    // Kill the group until none of it is left; orphans are reaped by init.
    let kill_start = Instant::now();
    let mut gone = false;
    while kill_start.elapsed() < Duration::from_secs(30) {
        if kill(-leader, libc::SIGKILL) == Err(libc::ESRCH) {
            gone = true;
            break;
        }
        // Reap the leader when it dies, so it does not keep the group alive as a zombie.
        let _ = wait(leader, libc::WNOHANG);
        sleep_ms(20);
    }
    let _ = wait(leader, libc::WNOHANG);
    ensure(saturated, || "the bomb did not fill the process table within 30 s".into())?;
    ensure(gone, || format!("the bomb's group {leader} was still there 30 s after SIGKILL"))?;
    fork_works_again()?;
    let output = std::process::Command::new("sh")
        .args(["-c", "echo alive"])
        .output()
        .map_err(|error| format!("cannot run sh after the bomb: {error}"))?;
    expect_eq("sh after the bomb", String::from_utf8_lossy(&output.stdout).into_owned(), "alive\n".to_string())
}

fn limit_argument(arguments: &[String]) -> Result<Option<usize>, String> {
    match arguments {
        [] => Ok(None),
        [flag, value] if flag == "--limit" => {
            value.parse().map(Some).map_err(|_| format!("--limit takes a number of processes, not {value:?}"))
        }
        _ => Err("usage: test-fork-bomb [--limit PROCESSES]".to_string()),
    }
}

/// Runs the cases; `arguments` may hold the host cap.
pub fn main(arguments: &[String]) -> ExitCode {
    let limit = match limit_argument(arguments) {
        Ok(limit) => limit,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let mut suite = Suite::new("fork-bomb");
    suite.case("linear_bound", || linear(limit));
    suite.case("classic_bomb", || classic(limit));
    suite.finish()
}
