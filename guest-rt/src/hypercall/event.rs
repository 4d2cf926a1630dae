//! ABI 0.3 events, timers and console input (SPEC.md §17–§19): `event_channel_op`,
//! `set_callbacks`, `set_timer_op`, `sched_op(BLOCK | POLL)`, `console_io(READ)`. The typed
//! layers on top are the `events` and `time` modules.

use hypercall_abi::hypercall::{console_cmd, sched_cmd};
use hypercall_abi::{Errno, Hypercall};

use super::hypercalls::Hypercalls;
use super::instruction::HypercallInterface;

impl<I: HypercallInterface> Hypercalls<I> {
    /// `event_channel_op(command, a, b)` with any sub-command
    /// ([`hypercall_abi::event::event_cmd`]); returns the raw value (a port, a packed
    /// status, or 0).
    pub fn event_channel_op(&self, command: u64, a: u64, b: u64) -> Result<u64, Errno> {
        // SAFETY: no event_channel_op sub-command takes a pointer.
        let value =
            unsafe { self.interface().call_fixed::<{ Hypercall::EVENT_CHANNEL_OP.0 }>([command, a, b, 0, 0, 0]) };
        Errno::from_return(value)
    }

    /// `set_callbacks(event, failsafe)`: where event upcalls are delivered (0 = none).
    ///
    /// # Safety
    ///
    /// A nonzero `event` is jumped to with an [`hypercall_abi::trap::ExceptionFrame`] (vector
    /// [`hypercall_abi::event::EVENT_VECTOR`]) at RSP whenever an event is delivered: it
    /// must follow that protocol (guest-rt's `events` entry does).
    pub unsafe fn set_callbacks(&self, event: u64, failsafe: u64) -> Result<u64, Errno> {
        // SAFETY: reads no memory; the caller vouches for the entry points.
        let value =
            unsafe { self.interface().call_fixed::<{ Hypercall::SET_CALLBACKS.0 }>([event, failsafe, 0, 0, 0, 0]) };
        Errno::from_return(value)
    }

    /// `set_timer_op(deadline_ns)`: the domain's one-shot timer at absolute system time
    /// `deadline_ns`; 0 cancels it.
    pub fn set_timer_op(&self, deadline_ns: u64) -> Result<u64, Errno> {
        // SAFETY: takes no pointers.
        let value =
            unsafe { self.interface().call_fixed::<{ Hypercall::SET_TIMER_OP.0 }>([deadline_ns, 0, 0, 0, 0, 0]) };
        Errno::from_return(value)
    }

    /// `sched_op(BLOCK)`: clears the upcall mask and sleeps until an event is pending
    /// (returns at once if one is); pending upcalls are delivered before it returns.
    pub fn block(&self) -> Result<(), Errno> {
        // SAFETY: BLOCK takes no pointers.
        let value =
            unsafe { self.interface().call_fixed::<{ Hypercall::SCHED_OP.0 }>([sched_cmd::BLOCK, 0, 0, 0, 0, 0]) };
        Errno::from_return(value).map(drop)
    }

    /// `sched_op(POLL, ports, count, timeout_ns)` with a raw array pointer (conformance
    /// tests pass bad ones).
    ///
    /// # Safety
    ///
    /// The hypervisor only reads the array; a pointer it cannot read is `-EFAULT`, so any
    /// value is sound. (Marked unsafe for symmetry with the other raw forms.)
    pub unsafe fn poll_raw(&self, ports: u64, count: u64, timeout_ns: u64) -> Result<u64, Errno> {
        // SAFETY: POLL only reads `count` u32s at `ports`.
        let value = unsafe {
            self.interface().call_fixed::<{ Hypercall::SCHED_OP.0 }>([sched_cmd::POLL, ports, count, timeout_ns, 0, 0])
        };
        Errno::from_return(value)
    }

    /// `sched_op(POLL, ports, ports.len(), timeout_ns)`: sleeps until one of `ports` is
    /// pending or the absolute system time `timeout_ns` passes (0 = no timeout). Upcalls
    /// stay as they are (no unmasking).
    pub fn poll(&self, ports: &[u32], timeout_ns: u64) -> Result<(), Errno> {
        // SAFETY: the hypervisor reads `ports.len()` u32s at `ports`, all readable.
        unsafe { self.poll_raw(ports.as_ptr() as u64, ports.len() as u64, timeout_ns) }.map(drop)
    }

    /// `console_io(READ, buffer.len(), buffer)`: moves pending console input into
    /// `buffer`; returns the bytes moved (0 if none).
    pub fn console_read(&self, buffer: &mut [u8]) -> Result<usize, Errno> {
        // SAFETY: the hypervisor writes at most `buffer.len()` bytes at `buffer`, which is
        // exclusively borrowed here.
        let value = unsafe {
            self.interface().call_fixed::<{ Hypercall::CONSOLE_IO.0 }>([
                console_cmd::READ,
                buffer.len() as u64,
                buffer.as_mut_ptr() as u64,
                0,
                0,
                0,
            ])
        };
        Errno::from_return(value).map(|count| count as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::Fake;

    #[test]
    fn events_wrappers_encode_their_arguments() {
        let fake = Fake::default();
        fake.replies.borrow_mut().extend([0, 0, 0, 0, 5, Errno::ENOSPC.to_return()]);
        let hypercalls = Hypercalls::new(&fake);
        assert_eq!(hypercalls.event_channel_op(0, 7, 0), Err(Errno::ENOSPC));
        assert_eq!(hypercalls.set_timer_op(123), Ok(5));
        assert_eq!(hypercalls.block(), Ok(()));
        let ports = [3u32, 4];
        assert_eq!(hypercalls.poll(&ports, 99), Ok(()));
        let mut buffer = [0u8; 8];
        assert_eq!(hypercalls.console_read(&mut buffer), Ok(0));
        let calls = fake.calls.borrow();
        assert_eq!(calls[0].number, Hypercall::EVENT_CHANNEL_OP.0);
        assert_eq!(calls[0].arguments, [0, 7, 0, 0, 0, 0]);
        assert_eq!(calls[1].number, Hypercall::SET_TIMER_OP.0);
        assert_eq!(calls[1].arguments[0], 123);
        assert_eq!(calls[2].arguments[0], sched_cmd::BLOCK);
        assert_eq!(calls[3].arguments[..4], [sched_cmd::POLL, ports.as_ptr() as u64, 2, 99]);
        assert_eq!(calls[4].number, Hypercall::CONSOLE_IO.0);
        assert_eq!(calls[4].arguments[..3], [console_cmd::READ, 8, buffer.as_ptr() as u64]);
    }
}
