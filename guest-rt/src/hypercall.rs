//! Hypercalls: the hypercall instruction behind a trait, and safe wrappers for every
//! hypercall (SPEC.md §5.1: RAX = number, RDI RSI RDX R10 R8 R9, result in RAX,
//! negative = `-errno`, RCX and R11 clobbered).
//!
//! The wrappers are written once, generic over [`HypercallInterface`], so host unit tests
//! drive them with a fake that records every call; inside a domain the free functions of
//! this module use [`Syscall`], the real instruction.

use core::convert::Infallible;

use hypercall_abi::hypercall::{console_cmd, sched_cmd, shutdown_reason, version_cmd};
use hypercall_abi::{AbiVersion, Errno, Hypercall};

/// The way hypercalls reach the hypervisor.
///
/// Implementors: [`Syscall`] (the real `syscall` instruction, inside a domain) and test
/// fakes on the host.
pub trait HypercallInterface {
    /// Issues hypercall `number` with `arguments` (RDI, RSI, RDX, R10, R8, R9) and returns
    /// RAX unchanged (negative values are `-errno`).
    ///
    /// # Safety
    ///
    /// Every argument the hypercall interprets as a guest pointer must be valid for what that
    /// hypercall does with it: readable for the bytes it reads, and writable (with no Rust
    /// reference alive to them) for the bytes it writes. The hypervisor checks pointers
    /// against the page tables, not against Rust's aliasing rules. A hypercall that ends the
    /// domain (`sched_op(SHUTDOWN)`) is always sound: it simply never returns.
    unsafe fn call(&self, number: u64, arguments: [u64; 6]) -> i64;

    /// [`HypercallInterface::call`] with a number fixed at compile time, which the real
    /// implementation encodes as an immediate instead of loading it from a register.
    ///
    /// # Safety
    ///
    /// As for [`HypercallInterface::call`].
    unsafe fn call_fixed<const NUMBER: u64>(&self, arguments: [u64; 6]) -> i64 {
        // SAFETY: the caller upholds `call`'s contract, which is this function's contract.
        unsafe { self.call(NUMBER, arguments) }
    }

    /// Ends execution when a shutdown hypercall returned although it must not (a broken
    /// hypervisor). The real implementation executes `ud2` so the hypervisor kills the
    /// domain with a clear reason instead of leaving it spinning.
    fn unreachable_after_shutdown(&self) -> ! {
        loop {
            core::hint::spin_loop();
        }
    }
}

impl<T: HypercallInterface + ?Sized> HypercallInterface for &T {
    unsafe fn call(&self, number: u64, arguments: [u64; 6]) -> i64 {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { (**self).call(number, arguments) }
    }

    unsafe fn call_fixed<const NUMBER: u64>(&self, arguments: [u64; 6]) -> i64 {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { (**self).call_fixed::<NUMBER>(arguments) }
    }

    fn unreachable_after_shutdown(&self) -> ! {
        (**self).unreachable_after_shutdown()
    }
}

/// The real hypercall instruction. Only functional inside a ringfence domain (target
/// `x86_64-unknown-none`); on the host its calls panic, which lets guest crates compile
/// (but never run) there.
#[derive(Copy, Clone, Debug, Default)]
pub struct Syscall;

/// The instruction every hypercall of guest-rt uses: `syscall` (SPEC.md §5.1), which
/// returns by `sysret` on hardware and TCG. On a PVM-based KVM host it reaches the
/// hypervisor as a #PF at its entry point, which the hypervisor treats as the same
/// `syscall` (SPEC.md §11.4.3), so it works on every host. The trapping form
/// (`hypercall_abi::hypercall::TRAPPING_HYPERCALL`) stays in the ABI for guests that
/// want it; the conformance suite exercises both.
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
macro_rules! hypercall_instruction {
    () => {
        "syscall"
    };
}

#[cfg(all(target_arch = "x86_64", target_os = "none"))]
impl HypercallInterface for Syscall {
    #[inline(always)]
    unsafe fn call(&self, number: u64, arguments: [u64; 6]) -> i64 {
        let result: i64;
        // SAFETY: `syscall` in guest-kernel context is a hypercall (SPEC.md §5.1). RCX
        // and R11 are declared clobbered and RAX holds the result; the hypervisor runs on its own stack, so the
        // guest stack is untouched (`nostack`). Memory effects are those of the hypercall,
        // which the caller vouched for; no `nomem`/`readonly`, so the compiler keeps every
        // memory access in program order around it. RFLAGS status flags are not declared
        // preserved.
        unsafe {
            core::arch::asm!(
                hypercall_instruction!(),
                inlateout("rax") number => result,
                in("rdi") arguments[0],
                in("rsi") arguments[1],
                in("rdx") arguments[2],
                in("r10") arguments[3],
                in("r8") arguments[4],
                in("r9") arguments[5],
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        result
    }

    #[inline(always)]
    unsafe fn call_fixed<const NUMBER: u64>(&self, arguments: [u64; 6]) -> i64 {
        let result: i64;
        // SAFETY: as in `call`; the number is an immediate loaded into RAX, which is
        // declared as an output.
        unsafe {
            core::arch::asm!(
                "mov rax, {number}",
                hypercall_instruction!(),
                number = const NUMBER,
                lateout("rax") result,
                in("rdi") arguments[0],
                in("rsi") arguments[1],
                in("rdx") arguments[2],
                in("r10") arguments[3],
                in("r8") arguments[4],
                in("r9") arguments[5],
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        result
    }

    fn unreachable_after_shutdown(&self) -> ! {
        // SAFETY: `ud2` raises #UD; the hypervisor kills the domain. Nothing follows.
        unsafe { core::arch::asm!("ud2", options(noreturn, nomem, nostack)) }
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "none")))]
impl HypercallInterface for Syscall {
    unsafe fn call(&self, number: u64, _arguments: [u64; 6]) -> i64 {
        panic!("hypercall {number} outside a ringfence domain: guests run only under the hypervisor")
    }
}

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
        let value = unsafe {
            self.interface.call_fixed::<{ Hypercall::VERSION.0 }>([command, 0, 0, 0, 0, 0])
        };
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
        let value = unsafe {
            self.interface.call_fixed::<{ Hypercall::SCHED_OP.0 }>([sched_cmd::YIELD, 0, 0, 0, 0, 0])
        };
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
        let value = unsafe {
            self.interface
                .call_fixed::<{ Hypercall::SCHED_OP.0 }>([command, argument1, argument2, 0, 0, 0])
        };
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

/// `version(ABI_VERSION)` on this domain's hypervisor.
pub fn version() -> Result<AbiVersion, Errno> {
    HYPERVISOR.version()
}

/// `version(FEATURES)` on this domain's hypervisor.
pub fn features() -> Result<u64, Errno> {
    HYPERVISOR.features()
}

/// Writes all of `bytes` to the console (see [`Hypercalls::console_write`]).
pub fn console_write(bytes: &[u8]) -> Result<usize, Errno> {
    HYPERVISOR.console_write(bytes)
}

/// Gives the CPU to the next runnable domain.
pub fn yield_now() -> Result<(), Errno> {
    HYPERVISOR.yield_now()
}

/// `sched_op(SHUTDOWN, reason, code)`; returns only on error.
pub fn shutdown(reason: u64, code: u64) -> Result<Infallible, Errno> {
    HYPERVISOR.shutdown(reason, code)
}

/// Powers the domain off with `code`.
pub fn poweroff(code: u32) -> ! {
    HYPERVISOR.poweroff(code)
}

/// Ends the domain with reason crash and `code`.
pub fn crash(code: u32) -> ! {
    HYPERVISOR.crash(code)
}

/// The raw hypercall instruction, for conformance tests that pass bad arguments.
pub mod raw {
    use super::{HypercallInterface, Syscall};

    /// Issues hypercall `number` with `arguments`; returns RAX (negative = `-errno`).
    ///
    /// # Safety
    ///
    /// As for [`HypercallInterface::call`]: any argument the hypercall treats as a pointer
    /// it writes through must point to memory no Rust reference is using. Pointers it only
    /// reads, and invalid pointers (which the hypervisor refuses with `-EFAULT`), are fine.
    pub unsafe fn hypercall(number: u64, arguments: [u64; 6]) -> i64 {
        // SAFETY: the caller upholds `call`'s contract.
        unsafe { Syscall.call(number, arguments) }
    }
}

// ---------------------------------------------------------------------------------------
// ABI 0.2 trap hypercalls (SPEC.md §11): trap table, guest-kernel stack, system-call entry,
// segment bases. `iret` has no wrapper here: it consumes a frame at RSP and resumes
// somewhere else, so only asm can issue it (the entry stubs and user runs).

/// The hypercall instruction, for the asm entry/exit stubs and user runs.
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
pub(crate) use hypercall_instruction;

impl<I: HypercallInterface> Hypercalls<I> {
    /// `set_trap_table(entries, count)`: sets the listed vectors (handler 0 removes one);
    /// an empty slice clears the whole table. All-or-nothing: one bad entry is `-EINVAL`
    /// with no change.
    ///
    /// # Safety
    ///
    /// Every nonzero handler becomes a place the hypervisor jumps to with an
    /// [`hypercall_abi::trap::ExceptionFrame`] at RSP: it must be code that follows that
    /// protocol (guest-rt's `trap` entry does).
    pub unsafe fn set_trap_table(&self, entries: &[hypercall_abi::trap::TrapTableEntry]) -> Result<u64, Errno> {
        // SAFETY: the hypervisor only reads `entries.len()` entries at `entries`; the
        // caller vouches for the handlers.
        let value = unsafe {
            self.interface.call_fixed::<{ Hypercall::SET_TRAP_TABLE.0 }>([
                entries.as_ptr() as u64,
                entries.len() as u64,
                0,
                0,
                0,
                0,
            ])
        };
        Errno::from_return(value)
    }

    /// `stack_switch(ss, rsp)`: the guest-kernel stack events from guest-user mode land on.
    ///
    /// # Safety
    ///
    /// The hypervisor writes exception frames below `rsp` whenever an event arrives in
    /// guest-user mode: the memory there must be a stack no Rust reference uses meanwhile.
    pub unsafe fn stack_switch(&self, ss: u64, rsp: u64) -> Result<u64, Errno> {
        // SAFETY: the caller vouches for the stack; the call itself reads no memory.
        let value =
            unsafe { self.interface.call_fixed::<{ Hypercall::STACK_SWITCH.0 }>([ss, rsp, 0, 0, 0, 0]) };
        Errno::from_return(value)
    }

    /// `callback_op(command, kind, address)` (`callback_cmd::REGISTER`,
    /// `trap::callback_type::SYSCALL`); address 0 unregisters.
    ///
    /// # Safety
    ///
    /// A registered address is jumped to on every guest-user `syscall` with an exception
    /// frame at RSP: it must follow that protocol.
    pub unsafe fn callback_op(&self, command: u64, kind: u64, address: u64) -> Result<u64, Errno> {
        // SAFETY: the call reads no memory; the caller vouches for the entry.
        let value =
            unsafe { self.interface.call_fixed::<{ Hypercall::CALLBACK_OP.0 }>([command, kind, address, 0, 0, 0]) };
        Errno::from_return(value)
    }

    /// `set_segment_base(which, base)` (`trap::segment::{FS, GS_KERNEL, GS_USER}`); a
    /// non-canonical base is `-EINVAL`. Sound: guest-rt code never addresses through FS or GS.
    pub fn set_segment_base(&self, which: u64, base: u64) -> Result<u64, Errno> {
        // SAFETY: takes no pointers; the base only matters to explicit FS/GS accesses.
        let value =
            unsafe { self.interface.call_fixed::<{ Hypercall::SET_SEGMENT_BASE.0 }>([which, base, 0, 0, 0, 0]) };
        Errno::from_return(value)
    }
}

/// `set_segment_base(which, base)` on this domain's hypervisor.
pub fn set_segment_base(which: u64, base: u64) -> Result<u64, Errno> {
    HYPERVISOR.set_segment_base(which, base)
}

// ---------------------------------------------------------------------------------------
// ABI 0.3 events, timers and console input (SPEC.md §17–§19): `event_channel_op`,
// `set_callbacks`, `set_timer_op`, `sched_op(BLOCK | POLL)`, `console_io(READ)`. The typed
// layers on top are the `events` and `time` modules.

impl<I: HypercallInterface> Hypercalls<I> {
    /// `event_channel_op(command, a, b)` with any sub-command
    /// ([`hypercall_abi::event::event_cmd`]); returns the raw value (a port, a packed
    /// status, or 0).
    pub fn event_channel_op(&self, command: u64, a: u64, b: u64) -> Result<u64, Errno> {
        // SAFETY: no event_channel_op sub-command takes a pointer.
        let value =
            unsafe { self.interface.call_fixed::<{ Hypercall::EVENT_CHANNEL_OP.0 }>([command, a, b, 0, 0, 0]) };
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
            unsafe { self.interface.call_fixed::<{ Hypercall::SET_CALLBACKS.0 }>([event, failsafe, 0, 0, 0, 0]) };
        Errno::from_return(value)
    }

    /// `set_timer_op(deadline_ns)`: the domain's one-shot timer at absolute system time
    /// `deadline_ns`; 0 cancels it.
    pub fn set_timer_op(&self, deadline_ns: u64) -> Result<u64, Errno> {
        // SAFETY: takes no pointers.
        let value = unsafe { self.interface.call_fixed::<{ Hypercall::SET_TIMER_OP.0 }>([deadline_ns, 0, 0, 0, 0, 0]) };
        Errno::from_return(value)
    }

    /// `sched_op(BLOCK)`: clears the upcall mask and sleeps until an event is pending
    /// (returns at once if one is); pending upcalls are delivered before it returns.
    pub fn block(&self) -> Result<(), Errno> {
        // SAFETY: BLOCK takes no pointers.
        let value =
            unsafe { self.interface.call_fixed::<{ Hypercall::SCHED_OP.0 }>([sched_cmd::BLOCK, 0, 0, 0, 0, 0]) };
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
            self.interface.call_fixed::<{ Hypercall::SCHED_OP.0 }>([sched_cmd::POLL, ports, count, timeout_ns, 0, 0])
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
            self.interface.call_fixed::<{ Hypercall::CONSOLE_IO.0 }>([
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

/// `console_io(READ, ...)` on this domain's hypervisor.
pub fn console_read(buffer: &mut [u8]) -> Result<usize, Errno> {
    HYPERVISOR.console_read(buffer)
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
