//! System calls: the dispatcher the platform calls for each `syscall` of a process (the
//! numbers are in [`user_abi`](crate::user_abi)).

use crate::arch::{Arch, SyscallResult, SystemCall};
use crate::process::Process;
use crate::user_abi::{errno, number};

/// The most one `write` takes (larger ones are -EINVAL, not a partial write).
pub const WRITE_MAX: u64 = 4096;

/// Bytes copied from the process per [`Arch::copy_from_user`].
const COPY_CHUNK: usize = 256;

fn error(number: u64) -> SyscallResult {
    SyscallResult::Return(number.wrapping_neg())
}

/// Handles one system call of `process`.
pub fn dispatch<A: Arch>(arch: &A, process: &mut Process, call: &SystemCall) -> SyscallResult {
    process.counts.calls += 1;
    let [first, second, ..] = call.arguments;
    match call.number {
        number::WRITE => write(arch, process, first, second),
        number::GETPID => {
            process.counts.getpid += 1;
            SyscallResult::Return(process.pid)
        }
        number::EXIT => SyscallResult::Exit(first),
        _ => {
            process.counts.unknown += 1;
            error(errno::ENOSYS)
        }
    }
}

/// `write(address, length)`: the range must lie inside one of the process's regions (the
/// kernel never copies from memory the process does not own, whatever maps it).
fn write<A: Arch>(arch: &A, process: &mut Process, address: u64, length: u64) -> SyscallResult {
    if length > WRITE_MAX {
        return error(errno::EINVAL);
    }
    if !process.owns(address, length) {
        process.counts.refused += 1;
        return error(errno::EFAULT);
    }
    let mut buffer = [0u8; COPY_CHUNK];
    let mut copied = 0;
    while copied < length {
        let chunk = (length - copied).min(COPY_CHUNK as u64) as usize;
        if arch.copy_from_user(address + copied, &mut buffer[..chunk]).is_err() {
            process.counts.refused += 1;
            return error(errno::EFAULT);
        }
        process.output(&buffer[..chunk]);
        copied += chunk as u64;
    }
    process.counts.writes += 1;
    SyscallResult::Return(length)
}
