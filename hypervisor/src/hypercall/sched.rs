//! `sched_op`: yield, BLOCK, POLL and shutdown.

use crate::domain::outcome::Outcome;
use crate::hypercall::guest::{empty_array, error, Disposition, Guest, PollRequest, POLL_PORTS_MAX};
use hypercall_abi::event::PORTS_MAX;
use hypercall_abi::hypercall::{sched_cmd, shutdown_reason, SHUTDOWN_CODE_MAX};
use hypercall_abi::Errno;

/// `sched_op(YIELD | BLOCK | POLL | SHUTDOWN, ...)`.
pub(super) fn sched_op(arguments: &[u64; 6], guest: &mut dyn Guest) -> Disposition {
    let [command, reason, code, ..] = *arguments;
    match command {
        sched_cmd::YIELD => Disposition::Yield(0),
        sched_cmd::BLOCK => Disposition::Block,
        // sched_op(POLL, ports, count, deadline_ns)
        sched_cmd::POLL => poll(reason, code, arguments[3], guest),
        sched_cmd::SHUTDOWN => {
            if code > SHUTDOWN_CODE_MAX {
                return error(Errno::EINVAL);
            }
            let code = code as u32;
            match reason {
                shutdown_reason::POWEROFF => Disposition::Shutdown(Outcome::Poweroff(code)),
                shutdown_reason::CRASH => Disposition::Shutdown(Outcome::Crash(code)),
                _ => error(Errno::EINVAL),
            }
        }
        _ => error(Errno::EINVAL),
    }
}

/// `sched_op(POLL, ports, count, deadline_ns)`: checked in this order: `count` (-EINVAL),
/// the array readable (-EFAULT), every port in `1..PORTS_MAX` (-EINVAL).
pub(super) fn poll(pointer: u64, count: u64, deadline_ns: u64, guest: &mut dyn Guest) -> Disposition {
    if count > POLL_PORTS_MAX as u64 {
        return error(Errno::EINVAL);
    }
    if count == 0 {
        if let Err(errno) = empty_array(pointer) {
            return error(errno);
        }
    }
    let count = count as usize;
    let Ok(ports) = guest.read_poll_ports(pointer, count) else {
        return error(Errno::EFAULT);
    };
    // The array was read as little-endian bytes; x86-64 is little-endian, so the u32s
    // are the guest's values.
    if ports.iter().any(|&port| port == 0 || u64::from(port) >= PORTS_MAX) {
        return error(Errno::EINVAL);
    }
    Disposition::Poll(PollRequest { count, deadline_ns })
}
