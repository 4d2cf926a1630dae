//! A process that takes all the memory it can is stopped, not the kernel and not its
//! parent: a child allocates and touches memory a MiB at a time until it dies (killed, or
//! aborted when an allocation is refused). The parent survives, a second hog gets about as
//! far as the first (the first one's memory came back), and the parent can still allocate
//! and fork.
//!
//! `--limit-mib N` caps the hog's address space with RLIMIT_AS, for running on a host's
//! Linux, whose memory is not to be exhausted; the guest runs without it.

use std::os::fd::AsRawFd;
use std::process::ExitCode;

use crate::check::{ensure, expect_eq};
use crate::check::{Outcome, Suite};
use crate::process::{errno_name, exit_now, fork, in_child, pipe, read_to_end, wait_for, write_all, Fork, Status};

const MIB: usize = 1 << 20;

/// Runs one hog; returns how it ended and how many MiB it had touched.
fn hog(limit_mib: Option<usize>) -> Result<(Status, usize), String> {
    let (reader, writer) = pipe()?;
    let write_end = writer.as_raw_fd();
    let child = match fork() {
        Err(error) => return Err(format!("fork: {}", errno_name(error))),
        Ok(Fork::Child) => {
            // The allocator's "memory allocation failed" message is expected; keep it off
            // the console.
            if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
                // SAFETY: dup2 onto this child's standard error.
                unsafe { libc::dup2(null.as_raw_fd(), 2) };
            }
            if let Some(limit) = limit_mib {
                let bytes = (limit * MIB) as libc::rlim_t;
                let cap = libc::rlimit { rlim_cur: bytes, rlim_max: bytes };
                // SAFETY: `cap` is a valid rlimit for the kernel to read.
                unsafe { libc::setrlimit(libc::RLIMIT_AS, &cap) };
            }
            let mut kept: Vec<Vec<u8>> = Vec::new();
            loop {
                // Touched: every page is written, so memory is really taken.
                kept.push(vec![0xa5; MIB]);
                if write_all(write_end, &[1]).is_err() {
                    exit_now(3);
                }
            }
        }
        Ok(Fork::Parent(pid)) => pid,
    };
    drop(writer);
    // One byte per MiB, until the child is gone and the pipe ends.
    let progress = read_to_end(reader.as_raw_fd()).map_err(errno_name)?;
    let status = wait_for(child)?;
    Ok((status, progress.len()))
}

fn dies_without_harm(status: Status) -> bool {
    matches!(status, Status::Signaled(_) | Status::Exited(1..))
}

fn hogs_are_stopped(limit_mib: Option<usize>) -> Outcome {
    let (first, first_mib) = hog(limit_mib)?;
    let (second, second_mib) = hog(limit_mib)?;
    println!("# memory-hog: the first hog touched {first_mib} MiB ({first}), the second {second_mib} MiB ({second})");
    ensure(dies_without_harm(first), || format!("the first hog ended with {first}"))?;
    ensure(dies_without_harm(second), || format!("the second hog ended with {second}"))?;
    ensure(first_mib > 0, || "the hog could not allocate a single MiB".into())?;
    ensure(second_mib * 2 >= first_mib, || {
        format!("the second hog got {second_mib} MiB, the first {first_mib}: memory did not come back")
    })
}

fn the_parent_goes_on() -> Outcome {
    let mut memory = vec![0u8; 4 * MIB];
    memory.iter_mut().enumerate().for_each(|(index, byte)| *byte = index as u8);
    ensure(memory.iter().enumerate().all(|(index, &byte)| byte == index as u8), || "4 MiB came back altered".into())?;
    expect_eq("a child", in_child(|| 5)?, Status::Exited(5))
}

fn limit_argument(arguments: &[String]) -> Result<Option<usize>, String> {
    match arguments {
        [] => Ok(None),
        [flag, value] if flag == "--limit-mib" => {
            value.parse().map(Some).map_err(|_| format!("--limit-mib takes a number of MiB, not {value:?}"))
        }
        _ => Err("usage: test-memory-hog [--limit-mib MIB]".to_string()),
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
    let mut suite = Suite::new("memory-hog");
    suite.case("hogs_are_stopped", || hogs_are_stopped(limit));
    suite.case("parent_goes_on", the_parent_goes_on);
    suite.finish()
}
