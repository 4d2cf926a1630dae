//! [`Hypercalls`]: safe wrappers over some [`HypercallInterface`], here those for version,
//! console output, scheduling and shutdown; `trap`, `event` and guest-rt's `memory` add
//! the others.

use core::convert::Infallible;

use hypercall_abi::hypercall::{console_cmd, sched_cmd, shutdown_reason, version_cmd};
use hypercall_abi::{AbiVersion, Errno, Hypercall};

use super::instruction::{HypercallInterface, Syscall};

/// Safe wrappers for every hypercall over some [`HypercallInterface`].
#[derive(Copy, Clone, Debug, Default)]
pub struct Hypercalls<I> {
    interface: I,
}

/// The hypervisor this guest runs on, through the real instruction.
pub const HYPERVISOR: Hypercalls<Syscall> = Hypercalls::new(Syscall);

impl<I: HypercallInterface> Hypercalls<I> {
    /// Wraps `interface`.
    pub const fn new(interface: I) -> Self {
        Self { interface }
    }

    /// The interface underneath.
    pub fn interface(&self) -> &I {
        &self.interface
    }

    /// Any hypercall with any arguments: the escape hatch for conformance tests.
    ///
    /// # Safety
    ///
    /// As for [`HypercallInterface::call`].
    pub unsafe fn raw(&self, number: u64, arguments: [u64; 6]) -> i64 {
        // SAFETY: the caller upholds `call`'s contract.
        unsafe { self.interface.call(number, arguments) }
    }

    /// `version(cmd)` with any sub-command, raw result split into value or error.
    pub fn version_op(&self, command: u64) -> Result<u64, Errno> {
        // SAFETY: `version` takes no pointers.
        let value = unsafe { self.interface.call_fixed::<{ Hypercall::VERSION.0 }>([command, 0, 0, 0, 0, 0]) };
        Errno::from_return(value)
    }

    /// The hypervisor's ABI version (`version(ABI_VERSION)`).
    pub fn version(&self) -> Result<AbiVersion, Errno> {
        let packed = self.version_op(version_cmd::ABI_VERSION)?;
        Ok(AbiVersion::from_packed(packed as u32))
    }

    /// The hypervisor's feature bits (`version(FEATURES)`; see
    /// [`hypercall_abi::hypercall::features`]). Unknown bits must be ignored.
    pub fn features(&self) -> Result<u64, Errno> {
        self.version_op(version_cmd::FEATURES)
    }

    /// Exactly one `console_io(WRITE, bytes.len(), bytes)`, whatever the length (a length
    /// over [`console_cmd::WRITE_MAX`] is the hypervisor's to refuse). Returns the count the
    /// hypervisor reports.
    pub fn console_write_once(&self, bytes: &[u8]) -> Result<usize, Errno> {
        // SAFETY: the hypervisor only reads `bytes.len()` bytes at `bytes`, all readable.
        let value = unsafe {
            self.interface.call_fixed::<{ Hypercall::CONSOLE_IO.0 }>([
                console_cmd::WRITE,
                bytes.len() as u64,
                bytes.as_ptr() as u64,
                0,
                0,
                0,
            ])
        };
        Errno::from_return(value).map(|count| count as usize)
    }

    /// Writes all of `bytes` to the console in pieces of at most
    /// [`console_cmd::WRITE_MAX`] bytes. An empty slice makes one zero-length call. Returns
    /// the bytes written: all of them, or fewer if the hypervisor stopped accepting (a
    /// zero count for a non-empty piece); the first error ends the write.
    pub fn console_write(&self, bytes: &[u8]) -> Result<usize, Errno> {
        if bytes.is_empty() {
            return self.console_write_once(bytes);
        }
        let mut written = 0;
        while written < bytes.len() {
            let end = bytes.len().min(written + console_cmd::WRITE_MAX as usize);
            let accepted = self.console_write_once(&bytes[written..end])?;
            if accepted == 0 {
                break;
            }
            written += accepted.min(end - written);
        }
        Ok(written)
    }

    /// `sched_op(YIELD)`: lets the next runnable domain run.
    pub fn yield_now(&self) -> Result<(), Errno> {
        // SAFETY: `sched_op(YIELD)` takes no pointers.
        let value =
            unsafe { self.interface.call_fixed::<{ Hypercall::SCHED_OP.0 }>([sched_cmd::YIELD, 0, 0, 0, 0, 0]) };
        Errno::from_return(value).map(|_| ())
    }

    /// `sched_op(cmd, argument1, argument2)` with any sub-command and arguments
    /// (conformance tests of bad sub-commands).
    ///
    /// # Safety
    ///
    /// `POLL` reads a port array at `argument1`, and a sub-command this crate does not
    /// know might take a pointer too: for such a `command`, its pointer arguments must
    /// meet [`HypercallInterface::call`]'s contract. The other known sub-commands take none.
    pub unsafe fn sched_op(&self, command: u64, argument1: u64, argument2: u64) -> Result<u64, Errno> {
        // SAFETY: the caller vouches for any pointer the sub-command takes.
        let value =
            unsafe { self.interface.call_fixed::<{ Hypercall::SCHED_OP.0 }>([command, argument1, argument2, 0, 0, 0]) };
        Errno::from_return(value)
    }

    /// `sched_op(SHUTDOWN, reason, code)`. Never returns on success; an invalid reason or
    /// code comes back as the error (reason and code are raw so tests can pass bad ones).
    pub fn shutdown(&self, reason: u64, code: u64) -> Result<Infallible, Errno> {
        // SAFETY: SHUTDOWN takes no pointers; if it succeeds it does not return.
        match unsafe { self.sched_op(sched_cmd::SHUTDOWN, reason, code) } {
            Err(errno) => Err(errno),
            // A successful shutdown does not return; a hypervisor that says "success" and
            // returns anyway broke the ABI. EINVAL is the least misleading report.
            Ok(_) => Err(Errno::EINVAL),
        }
    }

    /// Ends the domain with reason poweroff and `code` (0 = success).
    pub fn poweroff(&self, code: u32) -> ! {
        let _ = self.shutdown(shutdown_reason::POWEROFF, u64::from(code));
        let _ = self.shutdown(shutdown_reason::CRASH, u64::from(code));
        self.interface.unreachable_after_shutdown()
    }

    /// Ends the domain with reason crash and `code`.
    pub fn crash(&self, code: u32) -> ! {
        let _ = self.shutdown(shutdown_reason::CRASH, u64::from(code));
        self.interface.unreachable_after_shutdown()
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::fake::Fake;
    use hypercall_abi::ABI_VERSION;
    use std::vec::Vec;

    #[test]
    fn version_encoding_and_decoding() {
        let fake = Fake::default();
        fake.replies.borrow_mut().push(i64::from(ABI_VERSION.packed()));
        let hypercalls = Hypercalls::new(&fake);
        assert_eq!(hypercalls.version(), Ok(ABI_VERSION));
        let calls = fake.calls.borrow();
        assert_eq!(calls[0].number, Hypercall::VERSION.0);
        assert_eq!(calls[0].arguments, [version_cmd::ABI_VERSION, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn features_and_errors() {
        let fake = Fake::default();
        fake.replies.borrow_mut().extend([Errno::EINVAL.to_return(), 3]);
        let hypercalls = Hypercalls::new(&fake);
        assert_eq!(hypercalls.features(), Ok(3));
        assert_eq!(hypercalls.version_op(2), Err(Errno::EINVAL));
        assert_eq!(fake.calls.borrow()[0].arguments[0], version_cmd::FEATURES);
        assert_eq!(fake.calls.borrow()[1].arguments[0], 2);
    }

    #[test]
    fn console_write_passes_count_and_pointer() {
        let fake = Fake::default();
        let text = b"hello\n";
        assert_eq!(Hypercalls::new(&fake).console_write(text), Ok(6));
        let calls = fake.calls.borrow();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].number, Hypercall::CONSOLE_IO.0);
        assert_eq!(calls[0].arguments[..3], [console_cmd::WRITE, 6, text.as_ptr() as u64]);
        assert_eq!(calls[0].arguments[3..], [0, 0, 0]);
    }

    #[test]
    fn console_write_splits_into_write_max_pieces() {
        let fake = Fake::default();
        let max = console_cmd::WRITE_MAX as usize;
        let text: Vec<u8> = (0..2 * max + 5).map(|index| (index % 251) as u8).collect();
        assert_eq!(Hypercalls::new(&fake).console_write(&text), Ok(text.len()));
        let calls = fake.calls.borrow();
        let counts: Vec<u64> = calls.iter().map(|call| call.arguments[1]).collect();
        assert_eq!(counts, [max as u64, max as u64, 5]);
        assert!(calls.iter().all(|call| call.arguments[1] <= console_cmd::WRITE_MAX));
        let joined: Vec<u8> = calls.iter().filter_map(|call| call.console.clone()).flatten().collect();
        assert_eq!(joined, text);
    }

    #[test]
    fn console_write_exact_max_is_one_call_and_empty_is_one_zero_call() {
        let fake = Fake::default();
        let text = [b'x'; console_cmd::WRITE_MAX as usize];
        assert_eq!(Hypercalls::new(&fake).console_write(&text), Ok(text.len()));
        assert_eq!(Hypercalls::new(&fake).console_write(&[]), Ok(0));
        let calls = fake.calls.borrow();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[1].arguments[1], 0);
    }

    #[test]
    fn console_write_resumes_after_short_write_and_stops_on_error() {
        let fake = Fake { console_limit: Some(3), ..Fake::default() };
        assert_eq!(Hypercalls::new(&fake).console_write(b"abcdefg"), Ok(7));
        assert_eq!(fake.console_text(), "abcdefg");

        let failing = Fake::default();
        failing.replies.borrow_mut().push(Errno::EFAULT.to_return());
        assert_eq!(Hypercalls::new(&failing).console_write(b"abc"), Err(Errno::EFAULT));

        let stalled = Fake::default();
        stalled.replies.borrow_mut().push(0);
        assert_eq!(Hypercalls::new(&stalled).console_write(b"abc"), Ok(0));
    }

    #[test]
    fn console_write_once_does_not_split() {
        let fake = Fake::default();
        fake.replies.borrow_mut().push(Errno::EINVAL.to_return());
        let text = [b'y'; console_cmd::WRITE_MAX as usize + 1];
        assert_eq!(Hypercalls::new(&fake).console_write_once(&text), Err(Errno::EINVAL));
        assert_eq!(fake.calls.borrow()[0].arguments[1], console_cmd::WRITE_MAX + 1);
    }

    #[test]
    fn yield_and_sched_op() {
        let fake = Fake::default();
        fake.replies.borrow_mut().extend([Errno::EINVAL.to_return(), 0]);
        let hypercalls = Hypercalls::new(&fake);
        assert_eq!(hypercalls.yield_now(), Ok(()));
        // SAFETY: the fake reads no pointers for sched_op.
        assert_eq!(unsafe { hypercalls.sched_op(99, 1, 2) }, Err(Errno::EINVAL));
        let calls = fake.calls.borrow();
        assert_eq!(calls[0].number, Hypercall::SCHED_OP.0);
        assert_eq!(calls[0].arguments, [sched_cmd::YIELD, 0, 0, 0, 0, 0]);
        assert_eq!(calls[1].arguments, [99, 1, 2, 0, 0, 0]);
    }

    #[test]
    fn shutdown_reports_errors_and_poweroff_encodes_reason_and_code() {
        let fake = Fake::default();
        fake.replies.borrow_mut().push(Errno::EINVAL.to_return());
        assert_eq!(Hypercalls::new(&fake).shutdown(1, 0).unwrap_err(), Errno::EINVAL);

        let fake = Fake::default();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Hypercalls::new(&fake).poweroff(7);
        }));
        assert!(result.is_err());
        let calls = fake.calls.borrow();
        assert_eq!(calls.last().unwrap().arguments[..3], [sched_cmd::SHUTDOWN, shutdown_reason::POWEROFF, 7]);
    }

    #[test]
    fn crash_encodes_reason() {
        let fake = Fake::default();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Hypercalls::new(&fake).crash(u32::MAX);
        }));
        let message = result.unwrap_err();
        assert_eq!(message.downcast_ref::<std::string::String>().unwrap(), "shutdown reason 3 code 4294967295");
    }

    #[test]
    fn poweroff_falls_back_to_crash_then_gives_up() {
        let fake = Fake::default();
        // Both shutdowns "fail": poweroff tries crash, then the interface's last resort.
        fake.replies.borrow_mut().extend([Errno::EINVAL.to_return(), Errno::EINVAL.to_return()]);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Hypercalls::new(&fake).poweroff(0);
        }));
        assert_eq!(*result.unwrap_err().downcast_ref::<&str>().unwrap(), "shutdown returned");
        let reasons: Vec<u64> = fake.calls.borrow().iter().map(|call| call.arguments[1]).collect();
        assert_eq!(reasons, [shutdown_reason::POWEROFF, shutdown_reason::CRASH]);
    }

    #[test]
    fn a_shutdown_that_returns_success_is_still_an_error() {
        let fake = Fake::default();
        fake.replies.borrow_mut().push(0);
        assert_eq!(Hypercalls::new(&fake).shutdown(0, 0).unwrap_err(), Errno::EINVAL);
    }
}
