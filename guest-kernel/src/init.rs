//! Process 1: runs the built-in user program ([`user_program`]) through [`Arch::run_user`],
//! serves its system calls ([`syscall`]) and checks what it did.

use crate::arch::{user_program, Arch, SystemCall, UserExit, UserImage};
use crate::console::kprintln;
use crate::process::{Process, STACK_TOP};
use crate::syscall;

/// getpid calls the first process makes (modest: each system call is a round trip
/// through the hypervisor).
const GETPID_ROUNDS: u64 = 100;

/// Runs the built-in user program as process 1 and checks what it did.
pub fn check<A: Arch>(arch: &A) -> bool {
    let mut process = Process::new(1, &user_program::program());
    let regions = process.regions();
    let image = UserImage { regions: &regions, entry: process.entry(), stack_top: STACK_TOP, argument: GETPID_ROUNDS };
    kprintln!(
        "guest-kernel: process {}: text {:#x}..{:#x}, stack {:#x}..{:#x}",
        process.pid,
        regions[0].start,
        regions[0].end(),
        regions[1].start,
        regions[1].end()
    );
    let exit = arch.run_user(&image, &mut |call: &SystemCall| syscall::dispatch(arch, &mut process, call));
    process.flush();
    let counts = process.counts;
    let ok = exit == Ok(UserExit::Exited(user_program::EXIT_SUCCESS))
        && counts.writes == 2
        && counts.refused == 3
        && counts.getpid == GETPID_ROUNDS
        && counts.unknown == 0;
    let verdict = if ok { "ok" } else { "WRONG" };
    match exit {
        Ok(UserExit::Exited(code)) => kprintln!(
            "guest-kernel: process {}: exit code {code} after {} system calls ({} writes, {} refused with EFAULT, {} getpid) ({verdict})",
            process.pid,
            counts.calls,
            counts.writes,
            counts.refused,
            counts.getpid
        ),
        Ok(UserExit::Faulted { exception, instruction, address }) => kprintln!(
            "guest-kernel: process {}: killed by {exception} at {instruction:#x} (address {address:#x}) after {} system calls ({verdict})",
            process.pid,
            counts.calls
        ),
        Err(error) => kprintln!("guest-kernel: process {}: could not run: {error} ({verdict})", process.pid),
    }
    ok
}
