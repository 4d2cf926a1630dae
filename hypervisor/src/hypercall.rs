//! Hypercall dispatch: one table from number to handler, every argument validated before
//! use. The machine shell calls [`dispatch`] with the saved registers and a [`Guest`]
//! view of the calling domain; this module decides, the shell carries it out.

use crate::guest_memory::GuestFault;
use crate::outcome::Outcome;
use hypercall_abi::hypercall::{console_cmd, features, sched_cmd, shutdown_reason, version_cmd};
use hypercall_abi::hypercall::SHUTDOWN_CODE_MAX;
use hypercall_abi::{Errno, Hypercall, ABI_VERSION};

/// The calling domain as a handler may see it.
pub trait Guest {
    /// Copies guest virtual memory through the checked accessor.
    fn read(&self, address: u64, buffer: &mut [u8]) -> Result<(), GuestFault>;
    /// Sends bytes to the console under this domain's prefix.
    fn console_write(&mut self, bytes: &[u8]);
}

/// What the shell must do after a hypercall.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Put the value in RAX and return to the caller.
    Return(i64),
    /// RAX = 0, then run the next runnable domain (the caller resumes later).
    Yield,
    /// The caller is finished; release it and run the next domain.
    Shutdown(Outcome),
}

type Handler = fn(&[u64; 6], &mut dyn Guest) -> Disposition;

const fn table() -> [Option<Handler>; Hypercall::TABLE_SIZE as usize] {
    let mut table: [Option<Handler>; Hypercall::TABLE_SIZE as usize] = [None; Hypercall::TABLE_SIZE as usize];
    table[Hypercall::VERSION.0 as usize] = Some(version);
    table[Hypercall::CONSOLE_IO.0 as usize] = Some(console_io);
    table[Hypercall::SCHED_OP.0 as usize] = Some(sched_op);
    table
}

static HANDLERS: [Option<Handler>; Hypercall::TABLE_SIZE as usize] = table();

/// Runs hypercall `number` with `arguments` (RDI, RSI, RDX, R10, R8, R9) for `guest`.
pub fn dispatch(number: u64, arguments: [u64; 6], guest: &mut dyn Guest) -> Disposition {
    let handler = usize::try_from(number).ok().and_then(|index| HANDLERS.get(index).copied().flatten());
    match handler {
        Some(handler) => handler(&arguments, guest),
        None => Disposition::Return(Errno::ENOSYS.to_return()),
    }
}

fn error(errno: Errno) -> Disposition {
    Disposition::Return(errno.to_return())
}

fn version(arguments: &[u64; 6], _guest: &mut dyn Guest) -> Disposition {
    match arguments[0] {
        version_cmd::ABI_VERSION => Disposition::Return(i64::from(ABI_VERSION.packed())),
        version_cmd::FEATURES => Disposition::Return(features::ALL as i64),
        _ => error(Errno::EINVAL),
    }
}

fn console_io(arguments: &[u64; 6], guest: &mut dyn Guest) -> Disposition {
    let [command, count, buffer, ..] = *arguments;
    match command {
        console_cmd::WRITE => {
            if count > console_cmd::WRITE_MAX {
                return error(Errno::EINVAL);
            }
            let mut bytes = [0u8; console_cmd::WRITE_MAX as usize];
            let bytes = &mut bytes[..count as usize];
            match guest.read(buffer, bytes) {
                Ok(()) => {
                    guest.console_write(bytes);
                    Disposition::Return(count as i64)
                }
                Err(_) => error(Errno::EFAULT),
            }
        }
        _ => error(Errno::EINVAL),
    }
}

fn sched_op(arguments: &[u64; 6], _guest: &mut dyn Guest) -> Disposition {
    let [command, reason, code, ..] = *arguments;
    match command {
        sched_cmd::YIELD => Disposition::Yield,
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

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// A guest with one readable window of memory.
    struct FakeGuest {
        base: u64,
        memory: Vec<u8>,
        console: Vec<u8>,
    }

    impl Guest for FakeGuest {
        fn read(&self, address: u64, buffer: &mut [u8]) -> Result<(), GuestFault> {
            // Like the real accessor: an empty range needs no mapped page.
            if buffer.is_empty() {
                return Ok(());
            }
            let offset = address.checked_sub(self.base).ok_or(GuestFault::NotMapped { address })?;
            let end = offset.checked_add(buffer.len() as u64).ok_or(GuestFault::Wraps)?;
            if end > self.memory.len() as u64 {
                return Err(GuestFault::NotMapped { address });
            }
            buffer.copy_from_slice(&self.memory[offset as usize..end as usize]);
            Ok(())
        }
        fn console_write(&mut self, bytes: &[u8]) {
            self.console.extend_from_slice(bytes);
        }
    }

    fn guest() -> FakeGuest {
        FakeGuest { base: 0x10_000, memory: (0..8192u32).map(|value| value as u8).collect(), console: Vec::new() }
    }

    fn call(guest: &mut FakeGuest, number: Hypercall, arguments: [u64; 3]) -> Disposition {
        dispatch(number.0, [arguments[0], arguments[1], arguments[2], 0, 0, 0], guest)
    }

    #[test]
    fn version_and_features() {
        let mut guest = guest();
        assert_eq!(call(&mut guest, Hypercall::VERSION, [0, 0, 0]), Disposition::Return(i64::from(ABI_VERSION.packed())));
        assert_eq!(call(&mut guest, Hypercall::VERSION, [1, 0, 0]), Disposition::Return(features::ALL as i64));
        assert_eq!(call(&mut guest, Hypercall::VERSION, [2, 0, 0]), Disposition::Return(-22));
        assert_eq!(call(&mut guest, Hypercall::VERSION, [u64::MAX, 0, 0]), Disposition::Return(-22));
    }

    #[test]
    fn unknown_numbers_are_enosys() {
        let mut guest = guest();
        for number in [0, 1, 16, 63, 64, 65, 1 << 32, 1 << 63, u64::MAX] {
            assert_eq!(dispatch(number, [0; 6], &mut guest), Disposition::Return(-38), "number {number}");
        }
    }

    #[test]
    fn console_write_bounds() {
        let mut guest = guest();
        assert_eq!(call(&mut guest, Hypercall::CONSOLE_IO, [0, 5, 0x10_000]), Disposition::Return(5));
        assert_eq!(guest.console, [0, 1, 2, 3, 4]);
        assert_eq!(call(&mut guest, Hypercall::CONSOLE_IO, [0, 0, 0]), Disposition::Return(0));
        assert_eq!(call(&mut guest, Hypercall::CONSOLE_IO, [0, 4096, 0x10_000]), Disposition::Return(4096));
        assert_eq!(call(&mut guest, Hypercall::CONSOLE_IO, [0, 4097, 0x10_000]), Disposition::Return(-22));
        assert_eq!(call(&mut guest, Hypercall::CONSOLE_IO, [0, u64::MAX, 0x10_000]), Disposition::Return(-22));
        let before = guest.console.len();
        assert_eq!(call(&mut guest, Hypercall::CONSOLE_IO, [0, 16, 0x10_000 + 8190]), Disposition::Return(-14));
        assert_eq!(guest.console.len(), before, "a refused write prints nothing");
        assert_eq!(call(&mut guest, Hypercall::CONSOLE_IO, [1, 1, 0x10_000]), Disposition::Return(-22));
    }

    #[test]
    fn sched_op_commands() {
        let mut guest = guest();
        assert_eq!(call(&mut guest, Hypercall::SCHED_OP, [0, 0, 0]), Disposition::Yield);
        assert_eq!(call(&mut guest, Hypercall::SCHED_OP, [2, 0, 42]), Disposition::Shutdown(Outcome::Poweroff(42)));
        assert_eq!(call(&mut guest, Hypercall::SCHED_OP, [2, 3, 7]), Disposition::Shutdown(Outcome::Crash(7)));
        assert_eq!(call(&mut guest, Hypercall::SCHED_OP, [2, 0, u64::from(u32::MAX)]), Disposition::Shutdown(Outcome::Poweroff(u32::MAX)));
        assert_eq!(call(&mut guest, Hypercall::SCHED_OP, [2, 0, 1 << 32]), Disposition::Return(-22));
        for reason in [1, 2, 4, 5, u64::MAX] {
            assert_eq!(call(&mut guest, Hypercall::SCHED_OP, [2, reason, 0]), Disposition::Return(-22));
        }
        for command in [1, 3, 99, u64::MAX] {
            assert_eq!(call(&mut guest, Hypercall::SCHED_OP, [command, 0, 0]), Disposition::Return(-22));
        }
    }
}
