//! Hypercall dispatch: one table from number to handler (the handlers live in the
//! family files beside this one), every argument validated before use, and `multicall`,
//! which dispatches a batch through the same table. The system calls [`dispatch`] with
//! the saved registers and a [`Guest`] view of the calling domain; the handlers decide,
//! the system carries it out.

use crate::hypercall::guest::{empty_array, error, Disposition, Guest, PendingEntry, Progress};
use crate::hypercall::{console, sched, vcpu, version};
use hypercall_abi::hypercall::sched_cmd;
use hypercall_abi::multicall::{MulticallEntry, MULTICALL_MAX};
use hypercall_abi::{Errno, Hypercall};
use zerocopy::{FromZeros, IntoBytes};

/// A handler: the arguments, where a preempted run of the same call stopped
/// ([`Progress::START`] for a new call; only the preemptible calls look at it, SPEC.md
/// §5.5), and the calling domain.
type Handler = fn(&[u64; 6], &Progress, &mut dyn Guest) -> Disposition;

const fn table() -> [Option<Handler>; Hypercall::TABLE_SIZE as usize] {
    let mut table: [Option<Handler>; Hypercall::TABLE_SIZE as usize] = [None; Hypercall::TABLE_SIZE as usize];
    table[Hypercall::SET_TRAP_TABLE.0 as usize] = Some(|arguments, _, guest| vcpu::set_trap_table(arguments, guest));
    table[Hypercall::MMU_UPDATE.0 as usize] =
        Some(|arguments, progress, guest| guest.mmu_update(arguments, progress.done).disposition());
    table[Hypercall::STACK_SWITCH.0 as usize] = Some(|arguments, _, guest| vcpu::stack_switch(arguments, guest));
    table[Hypercall::MEMORY_OP.0 as usize] =
        Some(|arguments, progress, guest| guest.memory_op(arguments, progress.done).disposition());
    table[Hypercall::MULTICALL.0 as usize] = Some(multicall);
    table[Hypercall::VERSION.0 as usize] = Some(|arguments, _, guest| version::version(arguments, guest));
    table[Hypercall::CONSOLE_IO.0 as usize] =
        Some(|arguments, progress, guest| console::console_io(arguments, progress.done, guest));
    table[Hypercall::IRET.0 as usize] = Some(|arguments, _, guest| vcpu::iret(arguments, guest));
    table[Hypercall::SET_SEGMENT_BASE.0 as usize] =
        Some(|arguments, _, guest| vcpu::set_segment_base(arguments, guest));
    table[Hypercall::ADDRESS_SPACE_OP.0 as usize] =
        Some(|arguments, _, guest| Disposition::Return(guest.address_space_op(arguments)));
    table[Hypercall::SCHED_OP.0 as usize] = Some(|arguments, _, guest| sched::sched_op(arguments, guest));
    table[Hypercall::CALLBACK_OP.0 as usize] = Some(|arguments, _, guest| vcpu::callback_op(arguments, guest));
    table[Hypercall::SET_CALLBACKS.0 as usize] = Some(|arguments, _, guest| vcpu::set_callbacks(arguments, guest));
    // Any deadline is valid (0 cancels, the past fires at once); the system owns the timer.
    table[Hypercall::SET_TIMER_OP.0 as usize] =
        Some(|arguments, _, guest| Disposition::Return(guest.set_timer(arguments[0])));
    table[Hypercall::EVENT_CHANNEL_OP.0 as usize] =
        Some(|arguments, _, guest| Disposition::Return(guest.event_channel_op(arguments)));
    table
}

const TABLE: [Option<Handler>; Hypercall::TABLE_SIZE as usize] = table();

// The ABI's one list of hypercalls (`Hypercall::ALL`, which SPEC.md §6.4 is checked
// against) and this table name the same numbers: a hypercall without a handler, or a
// handler for a number the ABI does not list, does not compile.
const _: () = {
    let mut listed = 0;
    while listed < Hypercall::ALL.len() {
        assert!(TABLE[Hypercall::ALL[listed].0 .0 as usize].is_some(), "a hypercall of Hypercall::ALL has no handler");
        listed += 1;
    }
    let mut handlers = 0;
    let mut number = 0;
    while number < TABLE.len() {
        if TABLE[number].is_some() {
            handlers += 1;
        }
        number += 1;
    }
    assert!(handlers == Hypercall::ALL.len(), "a handler is installed for a number Hypercall::ALL does not list");
};

/// [`TABLE`] with every empty slot answering ENOSYS, so a call costs a bounds check and
/// the indirect call, not also a test of which slots are filled.
static HANDLERS: [Handler; Hypercall::TABLE_SIZE as usize] = {
    let mut handlers: [Handler; Hypercall::TABLE_SIZE as usize] = [unknown; Hypercall::TABLE_SIZE as usize];
    let mut number = 0;
    while number < TABLE.len() {
        if let Some(handler) = TABLE[number] {
            handlers[number] = handler;
        }
        number += 1;
    }
    handlers
};

/// A number the ABI does not list: -ENOSYS, no other effect (SPEC.md §5.3).
fn unknown(_: &[u64; 6], _: &Progress, _: &mut dyn Guest) -> Disposition {
    Disposition::Return(Errno::ENOSYS.to_return())
}

/// Runs hypercall `number` with `arguments` (RDI, RSI, RDX, R10, R8, R9) for `guest`.
pub fn dispatch(number: u64, arguments: [u64; 6], guest: &mut dyn Guest) -> Disposition {
    resume(number, &arguments, &Progress::START, guest)
}

/// Runs hypercall `number` on from `progress`, where a [`Disposition::Preempted`] run of
/// it with the same `arguments` stopped (SPEC.md §5.5).
///
/// Both are borrowed: a new call's progress is [`Progress::START`], and copying it (an
/// optional multicall entry) and the arguments into every call would cost the null
/// hypercall more than its handler does.
pub fn resume(number: u64, arguments: &[u64; 6], progress: &Progress, guest: &mut dyn Guest) -> Disposition {
    let handler = usize::try_from(number).ok().and_then(|index| HANDLERS.get(index)).unwrap_or(&(unknown as Handler));
    handler(arguments, progress, guest)
}

const ENTRY_BYTES: u64 = core::mem::size_of::<MulticallEntry>() as u64;
const RESULT_OFFSET: u64 = core::mem::offset_of!(MulticallEntry, result) as u64;

/// How one multicall entry lets the batch go on.
enum After {
    Next,
    /// Refused (`iret`, nested `multicall`) or a yield: the batch ends after this entry.
    End,
    Yield,
}

/// `multicall(entries, count)`: runs the entries in order from `progress`, writing each
/// result back. Returns the number of entries whose result was written; a fault on the
/// first entry is -EFAULT. `iret` and `multicall` are not run inside a batch (XSA-213: an
/// `iret` would change the registers the batch itself returns with, a nested batch would
/// recurse); neither are `sched_op(BLOCK)` and `sched_op(POLL)` (-EINVAL, or the invalid
/// POLL's own error; the batch ends there either way). Between entries, and inside a
/// preemptible entry, the batch stops when a preemption is due (SPEC.md §5.5); the entry
/// that was running is resumed from its own progress, never read from the array again.
fn multicall(arguments: &[u64; 6], progress: &Progress, guest: &mut dyn Guest) -> Disposition {
    let [pointer, count, ..] = *arguments;
    if count > MULTICALL_MAX {
        return error(Errno::EINVAL);
    }
    if count == 0 {
        return Disposition::Return(empty_array(pointer).map_or_else(Errno::to_return, |()| 0));
    }
    let stopped = |done: u64| if done == 0 { Errno::EFAULT.to_return() } else { done as i64 };
    let mut pending = progress.entry;
    for index in progress.done..count {
        if index > progress.done && guest.preemption_due() {
            return Disposition::Preempted(Progress::at(index));
        }
        let Some(address) = pointer.checked_add(index * ENTRY_BYTES) else {
            return Disposition::Return(stopped(index));
        };
        let (op, entry_arguments, from) = match pending.take() {
            Some(entry) => (entry.op, entry.arguments, Progress::at(entry.done)),
            None => {
                let mut entry = MulticallEntry::new_zeroed();
                if guest.read(address, entry.as_mut_bytes()).is_err() {
                    return Disposition::Return(stopped(index));
                }
                (entry.op, entry.args, Progress::START)
            }
        };
        // BLOCK and POLL end the batch whether or not their arguments were valid (SPEC.md
        // §13), so a batch never goes on past an entry that could have slept.
        let sleeper =
            Hypercall(op) == Hypercall::SCHED_OP && matches!(entry_arguments[0], sched_cmd::BLOCK | sched_cmd::POLL);
        let (result, after) = match Hypercall(op) {
            Hypercall::IRET | Hypercall::MULTICALL => (Errno::EINVAL.to_return(), After::End),
            _ => match resume(op, &entry_arguments, &from, guest) {
                Disposition::Return(value) => (value, After::Next),
                Disposition::Yield(value) => (value, After::Yield),
                Disposition::Shutdown(outcome) => return Disposition::Shutdown(outcome),
                // Only the `iret` handler answers this, and it was excluded above.
                Disposition::Iret => (Errno::EINVAL.to_return(), After::End),
                // Sleeping inside a batch would need the batch's results written after
                // the wake-up; BLOCK and POLL are refused there, like `iret`. Their
                // arguments were validated already, and validation has no effect.
                Disposition::Block | Disposition::Poll(_) => (Errno::EINVAL.to_return(), After::End),
                // The entry itself stopped at a preemption point: so does the batch, with
                // the entry's own progress (a multicall entry is never a multicall).
                Disposition::Preempted(inner) => {
                    let entry = PendingEntry { op, arguments: entry_arguments, done: inner.done };
                    return Disposition::Preempted(Progress { done: index, entry: Some(entry) });
                }
            },
        };
        let after = if sleeper { After::End } else { after };
        // `address + RESULT_OFFSET` cannot wrap: the whole entry was read there.
        let written = guest.write(address + RESULT_OFFSET, &result.to_le_bytes()).is_ok();
        let done = if written { index + 1 } else { index };
        match after {
            // The yield already happened as far as the guest can tell; it still runs.
            After::Yield => return Disposition::Yield(stopped(done)),
            After::End => return Disposition::Return(stopped(done)),
            After::Next if !written => return Disposition::Return(stopped(done)),
            After::Next => {}
        }
    }
    Disposition::Return(count as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::domain::outcome::Outcome;
    use crate::domain::vcpu::Vcpu;
    use crate::mm::guest_memory::GuestFault;

    use crate::domain::vcpu::{Mode, TrapHandler};
    use crate::hypercall::console::group_end;
    use crate::hypercall::guest::{Batch, PollPorts, POLL_PORTS_MAX};
    use crate::mm::guest_memory::check_range;
    use alloc::vec::Vec;
    use core::ops::Range;
    use hypercall_abi::hypercall::{console_cmd, features, shutdown_reason};
    use hypercall_abi::layout::{HYPERVISOR_END, HYPERVISOR_START};
    use hypercall_abi::trap::TrapTableEntry;
    use hypercall_abi::trap::{segment, KERNEL_SS};
    use hypercall_abi::ABI_VERSION;

    const BASE: u64 = 0x10_000;

    /// A guest with one window of memory, part of which may be read-only.
    struct FakeGuest {
        memory: Vec<u8>,
        read_only: Range<u64>,
        console: Vec<u8>,
        vcpu: Vcpu,
        forwarded: Vec<(&'static str, [u64; 6])>,
        /// Pending console input, oldest first.
        input: Vec<u8>,
        timers: Vec<u64>,
        /// `preemption_due` answers true once every this many questions; 0 never.
        preempt_every: u32,
        asked: u32,
        poll_ports: PollPorts,
    }

    impl FakeGuest {
        fn range(&self, address: u64, length: usize) -> Result<Range<usize>, GuestFault> {
            let offset = address.checked_sub(BASE).ok_or(GuestFault::NotMapped { address })?;
            let end = offset.checked_add(length as u64).ok_or(GuestFault::Wraps)?;
            if end > self.memory.len() as u64 {
                return Err(GuestFault::NotMapped { address });
            }
            Ok(offset as usize..end as usize)
        }

        fn put(&mut self, address: u64, bytes: &[u8]) {
            let range = self.range(address, bytes.len()).unwrap();
            self.memory[range].copy_from_slice(bytes);
        }

        fn result(&self, address: u64) -> i64 {
            let range = self.range(address + RESULT_OFFSET, 8).unwrap();
            i64::from_le_bytes(self.memory[range].try_into().unwrap())
        }
    }

    impl Guest for FakeGuest {
        fn read(&self, address: u64, buffer: &mut [u8]) -> Result<(), GuestFault> {
            // As strict as the real accessor: an empty range needs no mapped page, but
            // its address must still be a guest address.
            if buffer.is_empty() {
                return check_range(address, 0).map(drop);
            }
            let range = self.range(address, buffer.len())?;
            buffer.copy_from_slice(&self.memory[range]);
            Ok(())
        }
        fn write(&mut self, address: u64, bytes: &[u8]) -> Result<(), GuestFault> {
            if bytes.is_empty() {
                return check_range(address, 0).map(drop);
            }
            let range = self.range(address, bytes.len())?;
            let end = address + bytes.len() as u64;
            if address < self.read_only.end && end > self.read_only.start {
                return Err(GuestFault::ReadOnly { address });
            }
            self.memory[range].copy_from_slice(bytes);
            Ok(())
        }
        fn console_write(&mut self, bytes: &[u8]) {
            self.console.extend_from_slice(bytes);
        }
        fn vcpu(&mut self) -> &mut Vcpu {
            &mut self.vcpu
        }
        fn read_poll_ports(&mut self, address: u64, count: usize) -> Result<&[u32], GuestFault> {
            let mut ports = self.poll_ports;
            self.read(address, ports[..count].as_mut_bytes())?;
            self.poll_ports = ports;
            Ok(&self.poll_ports[..count])
        }
        fn memory_op(&mut self, arguments: &[u64; 6], _: u64) -> Batch {
            self.forwarded.push(("memory_op", *arguments));
            Batch::Finished(7)
        }
        fn address_space_op(&mut self, arguments: &[u64; 6]) -> i64 {
            self.forwarded.push(("address_space_op", *arguments));
            -3
        }
        /// A batch of `arguments[2]` elements that does one per run when asked to stop.
        fn mmu_update(&mut self, arguments: &[u64; 6], done: u64) -> Batch {
            self.forwarded.push(("mmu_update", *arguments));
            if done + 1 < arguments[2] && self.preemption_due() {
                return Batch::Preempted(done + 1);
            }
            Batch::Finished(9)
        }
        fn preemption_due(&mut self) -> bool {
            self.asked += 1;
            self.preempt_every != 0 && self.asked.is_multiple_of(self.preempt_every)
        }
        fn event_channel_op(&mut self, arguments: &[u64; 6]) -> i64 {
            self.forwarded.push(("event_channel_op", *arguments));
            4
        }
        fn set_timer(&mut self, deadline_ns: u64) -> i64 {
            self.timers.push(deadline_ns);
            0
        }
        fn console_peek(&mut self, buffer: &mut [u8]) -> usize {
            let count = buffer.len().min(self.input.len());
            buffer[..count].copy_from_slice(&self.input[..count]);
            count
        }
        fn console_consume(&mut self, count: usize) {
            self.input.drain(..count.min(self.input.len()));
        }
    }

    fn guest() -> FakeGuest {
        FakeGuest {
            memory: (0..8192u32).map(|value| value as u8).collect(),
            read_only: 0..0,
            console: Vec::new(),
            vcpu: Vcpu::new(),
            forwarded: Vec::new(),
            input: Vec::new(),
            timers: Vec::new(),
            preempt_every: 0,
            asked: 0,
            poll_ports: [0; POLL_PORTS_MAX],
        }
    }

    fn call(guest: &mut FakeGuest, number: Hypercall, arguments: [u64; 3]) -> Disposition {
        dispatch(number.0, [arguments[0], arguments[1], arguments[2], 0, 0, 0], guest)
    }

    #[test]
    fn version_and_features() {
        let mut guest = guest();
        assert_eq!(
            call(&mut guest, Hypercall::VERSION, [0, 0, 0]),
            Disposition::Return(i64::from(ABI_VERSION.packed()))
        );
        assert_eq!(call(&mut guest, Hypercall::VERSION, [1, 0, 0]), Disposition::Return(features::ALL as i64));
        assert_eq!(call(&mut guest, Hypercall::VERSION, [2, 0, 0]), Disposition::Return(-22));
        assert_eq!(call(&mut guest, Hypercall::VERSION, [u64::MAX, 0, 0]), Disposition::Return(-22));
    }

    #[test]
    fn unknown_numbers_are_enosys() {
        let mut guest = guest();
        for number in [2, 16, 63, 64, 65, 1 << 32, 1 << 63, u64::MAX] {
            assert_eq!(dispatch(number, [0; 6], &mut guest), Disposition::Return(-38), "number {number}");
        }
    }

    #[test]
    fn console_write_bounds() {
        let mut guest = guest();
        assert_eq!(call(&mut guest, Hypercall::CONSOLE_IO, [0, 5, BASE]), Disposition::Return(5));
        assert_eq!(guest.console, [0, 1, 2, 3, 4]);
        assert_eq!(call(&mut guest, Hypercall::CONSOLE_IO, [0, 0, 0]), Disposition::Return(0));
        assert_eq!(call(&mut guest, Hypercall::CONSOLE_IO, [0, 4096, BASE]), Disposition::Return(4096));
        assert_eq!(call(&mut guest, Hypercall::CONSOLE_IO, [0, 4097, BASE]), Disposition::Return(-22));
        assert_eq!(call(&mut guest, Hypercall::CONSOLE_IO, [0, u64::MAX, BASE]), Disposition::Return(-22));
        let before = guest.console.len();
        assert_eq!(call(&mut guest, Hypercall::CONSOLE_IO, [0, 16, BASE + 8190]), Disposition::Return(-14));
        assert_eq!(guest.console.len(), before, "a refused write prints nothing");
        for command in [2, 99, u64::MAX] {
            assert_eq!(call(&mut guest, Hypercall::CONSOLE_IO, [command, 1, BASE]), Disposition::Return(-22));
        }
    }

    #[test]
    fn console_read_moves_and_consumes() {
        let mut guest = guest();
        guest.input = b"hello".to_vec();
        assert_eq!(call(&mut guest, Hypercall::CONSOLE_IO, [1, 3, BASE]), Disposition::Return(3));
        assert_eq!(&guest.memory[..4], b"hel\x03", "bytes past the input are untouched");
        assert_eq!(guest.input, b"lo");
        assert_eq!(call(&mut guest, Hypercall::CONSOLE_IO, [1, 100, BASE + 8]), Disposition::Return(2));
        assert_eq!(&guest.memory[8..11], b"lo\x0a");
        assert_eq!(call(&mut guest, Hypercall::CONSOLE_IO, [1, 100, BASE]), Disposition::Return(0), "nothing waiting");
        assert_eq!(call(&mut guest, Hypercall::CONSOLE_IO, [1, 0, 0]), Disposition::Return(0));
        // The whole buffer must be writable, with or without input.
        assert_eq!(call(&mut guest, Hypercall::CONSOLE_IO, [1, 4, BASE + 8190]), Disposition::Return(-14));
        assert_eq!(call(&mut guest, Hypercall::CONSOLE_IO, [1, 1, 0]), Disposition::Return(-14));
        assert_eq!(call(&mut guest, Hypercall::CONSOLE_IO, [1, 4097, BASE]), Disposition::Return(-22));
        assert_eq!(call(&mut guest, Hypercall::CONSOLE_IO, [1, u64::MAX, BASE]), Disposition::Return(-22));
        // -EFAULT consumes nothing and writes nothing.
        guest.input = b"abc".to_vec();
        guest.read_only = BASE + 4096..BASE + 4097;
        let before = guest.memory.clone();
        assert_eq!(call(&mut guest, Hypercall::CONSOLE_IO, [1, 8, BASE + 4090]), Disposition::Return(-14));
        assert_eq!(call(&mut guest, Hypercall::CONSOLE_IO, [1, 8, BASE + 8190]), Disposition::Return(-14));
        assert_eq!(guest.input, b"abc");
        assert_eq!(guest.memory, before);
        // The full 4096 bytes are accepted.
        assert_eq!(call(&mut guest, Hypercall::CONSOLE_IO, [1, 4096, BASE]), Disposition::Return(3));
        assert!(guest.input.is_empty());
    }

    #[test]
    fn sched_op_commands() {
        let mut guest = guest();
        assert_eq!(call(&mut guest, Hypercall::SCHED_OP, [0, 0, 0]), Disposition::Yield(0));
        assert_eq!(call(&mut guest, Hypercall::SCHED_OP, [2, 0, 42]), Disposition::Shutdown(Outcome::Poweroff(42)));
        assert_eq!(call(&mut guest, Hypercall::SCHED_OP, [2, 3, 7]), Disposition::Shutdown(Outcome::Crash(7)));
        assert_eq!(
            call(&mut guest, Hypercall::SCHED_OP, [2, 0, u64::from(u32::MAX)]),
            Disposition::Shutdown(Outcome::Poweroff(u32::MAX))
        );
        assert_eq!(call(&mut guest, Hypercall::SCHED_OP, [2, 0, 1 << 32]), Disposition::Return(-22));
        for reason in [1, 2, 4, 5, u64::MAX] {
            assert_eq!(call(&mut guest, Hypercall::SCHED_OP, [2, reason, 0]), Disposition::Return(-22));
        }
        assert_eq!(call(&mut guest, Hypercall::SCHED_OP, [1, 0, 0]), Disposition::Block);
        for command in [4, 99, u64::MAX] {
            assert_eq!(call(&mut guest, Hypercall::SCHED_OP, [command, 0, 0]), Disposition::Return(-22));
        }
    }

    fn poll(guest: &mut FakeGuest, pointer: u64, count: u64, deadline: u64) -> Disposition {
        dispatch(Hypercall::SCHED_OP.0, [sched_cmd::POLL, pointer, count, deadline, 0, 0], guest)
    }

    fn put_ports(guest: &mut FakeGuest, address: u64, ports: &[u32]) {
        guest.put(address, ports.as_bytes());
    }

    #[test]
    fn poll_validation() {
        let mut guest = guest();
        put_ports(&mut guest, BASE, &[3, 1, 1023]);
        let Disposition::Poll(request) = poll(&mut guest, BASE, 3, 5_000_000) else {
            panic!("not a poll");
        };
        assert_eq!(request.ports(&guest.poll_ports), [3, 1, 1023]);
        assert_eq!((request.count, request.deadline_ns), (3, 5_000_000));
        // No ports at all: a plain sleep until the deadline; the pointer is not read.
        let Disposition::Poll(request) = poll(&mut guest, 0, 0, 0) else { panic!("not a poll") };
        assert_eq!((request.ports(&guest.poll_ports), request.deadline_ns), (&[][..], 0));
        // ...but even then an address no array may have is -EFAULT (SPEC.md §5.4).
        assert_eq!(poll(&mut guest, 0x8000_0000_0000_0000, 0, 0), Disposition::Return(-14));
        // The full 128.
        let all: Vec<u32> = (1..=128).collect();
        put_ports(&mut guest, BASE, &all);
        let Disposition::Poll(request) = poll(&mut guest, BASE, 128, 1) else { panic!("not a poll") };
        assert_eq!(request.ports(&guest.poll_ports), &all[..]);
        // Too many (checked before the array is read), unreadable, bad ports.
        assert_eq!(poll(&mut guest, BASE, 129, 0), Disposition::Return(-22));
        assert_eq!(poll(&mut guest, 0, 129, 0), Disposition::Return(-22));
        assert_eq!(poll(&mut guest, BASE, u64::MAX, 0), Disposition::Return(-22));
        assert_eq!(poll(&mut guest, BASE + 8192 - 8, 3, 0), Disposition::Return(-14));
        assert_eq!(poll(&mut guest, u64::MAX - 3, 2, 0), Disposition::Return(-14));
        for bad in [0, 1024, 4096, u32::MAX] {
            put_ports(&mut guest, BASE, &[5, bad]);
            assert_eq!(poll(&mut guest, BASE, 2, 0), Disposition::Return(-22), "port {bad}");
        }
        // Only the listed ports are checked.
        put_ports(&mut guest, BASE, &[5, 0]);
        assert!(matches!(poll(&mut guest, BASE, 1, 0), Disposition::Poll(_)));
    }

    #[test]
    fn block_and_poll_are_refused_inside_a_multicall() {
        let mut guest = guest();
        put_ports(&mut guest, BASE + 4096, &[1]);
        put_calls(
            &mut guest,
            BASE,
            &[
                (Hypercall::VERSION, [0, 0, 0]),
                (Hypercall::SCHED_OP, [sched_cmd::BLOCK, 0, 0]),
                (Hypercall::VERSION, [0, 0, 0]),
            ],
        );
        assert_eq!(multicall(&mut guest, BASE, 3), Disposition::Return(2));
        assert_eq!(guest.result(BASE + ENTRY_BYTES), -22);
        assert_eq!(guest.result(BASE + 2 * ENTRY_BYTES), 0x5555, "the batch ended there");
        put_calls(
            &mut guest,
            BASE,
            &[(Hypercall::SCHED_OP, [sched_cmd::POLL, BASE + 4096, 1]), (Hypercall::VERSION, [0, 0, 0])],
        );
        assert_eq!(multicall(&mut guest, BASE, 2), Disposition::Return(1));
        assert_eq!(guest.result(BASE), -22);
        // An invalid POLL keeps its own error and still ends the batch.
        put_calls(
            &mut guest,
            BASE,
            &[(Hypercall::SCHED_OP, [sched_cmd::POLL, BASE + 4096, 129]), (Hypercall::VERSION, [0, 0, 0])],
        );
        assert_eq!(multicall(&mut guest, BASE, 2), Disposition::Return(1));
        assert_eq!(guest.result(BASE), -22);
        assert_eq!(guest.result(BASE + ENTRY_BYTES), 0x5555, "the batch ended at the invalid POLL");
        put_calls(
            &mut guest,
            BASE,
            &[(Hypercall::SCHED_OP, [sched_cmd::POLL, u64::MAX - 3, 2]), (Hypercall::VERSION, [0, 0, 0])],
        );
        assert_eq!(multicall(&mut guest, BASE, 2), Disposition::Return(1));
        assert_eq!(guest.result(BASE), -14);
        assert_eq!(guest.result(BASE + ENTRY_BYTES), 0x5555);
    }

    #[test]
    fn set_callbacks_validation() {
        let mut guest = guest();
        let (event, failsafe) = (0xffff_ffff_8000_6000, 0xffff_ffff_8000_6100);
        assert_eq!(call(&mut guest, Hypercall::SET_CALLBACKS, [event, failsafe, 0]), Disposition::Return(0));
        assert_eq!((guest.vcpu.event_callback, guest.vcpu.failsafe_callback), (Some(event), Some(failsafe)));
        for (bad_event, bad_failsafe) in [
            (0x0000_8000_0000_0000, 0),
            (event, HYPERVISOR_START),
            (HYPERVISOR_START + 0x1000, failsafe),
            (0, u64::MAX >> 1),
        ] {
            assert_eq!(
                call(&mut guest, Hypercall::SET_CALLBACKS, [bad_event, bad_failsafe, 0]),
                Disposition::Return(-22)
            );
            assert_eq!(
                (guest.vcpu.event_callback, guest.vcpu.failsafe_callback),
                (Some(event), Some(failsafe)),
                "unchanged"
            );
        }
        assert_eq!(call(&mut guest, Hypercall::SET_CALLBACKS, [0, 0, 0]), Disposition::Return(0));
        assert_eq!((guest.vcpu.event_callback, guest.vcpu.failsafe_callback), (None, None));
    }

    #[test]
    fn timer_and_event_channel_go_to_the_system() {
        let mut guest = guest();
        for deadline in [0, 1, u64::MAX] {
            assert_eq!(call(&mut guest, Hypercall::SET_TIMER_OP, [deadline, 7, 7]), Disposition::Return(0));
        }
        assert_eq!(guest.timers, [0, 1, u64::MAX]);
        assert_eq!(dispatch(Hypercall::EVENT_CHANNEL_OP.0, [5, 1, 2, 3, 4, 5], &mut guest), Disposition::Return(4));
        assert_eq!(guest.forwarded, [("event_channel_op", [5, 1, 2, 3, 4, 5])]);
    }

    fn put_trap_entries(guest: &mut FakeGuest, address: u64, entries: &[TrapTableEntry]) {
        guest.put(address, entries.as_bytes());
    }

    fn trap_entry(vector: u8, flags: u8, handler: u64) -> TrapTableEntry {
        TrapTableEntry { vector, flags, reserved: [0; 6], handler: hypercall_abi::GuestVirtualAddress(handler) }
    }

    #[test]
    fn set_trap_table_reads_validates_and_clears() {
        let mut guest = guest();
        let handler = 0xffff_ffff_8000_1000;
        put_trap_entries(&mut guest, BASE, &[trap_entry(14, 0, handler), trap_entry(0x80, 1, handler + 8)]);
        assert_eq!(call(&mut guest, Hypercall::SET_TRAP_TABLE, [BASE, 2, 0]), Disposition::Return(0));
        assert_eq!(guest.vcpu.trap_handler(14), Some(TrapHandler { handler, user_may_raise: false }));
        assert_eq!(guest.vcpu.trap_handler(0x80), Some(TrapHandler { handler: handler + 8, user_may_raise: true }));
        // A bad entry after a good one: nothing changes.
        put_trap_entries(&mut guest, BASE + 64, &[trap_entry(13, 0, handler), trap_entry(14, 1, handler)]);
        assert_eq!(call(&mut guest, Hypercall::SET_TRAP_TABLE, [BASE + 64, 2, 0]), Disposition::Return(-22));
        assert_eq!(guest.vcpu.trap_handler(13), None);
        // Unreadable, too many.
        assert_eq!(call(&mut guest, Hypercall::SET_TRAP_TABLE, [BASE + 8192 - 16, 2, 0]), Disposition::Return(-14));
        assert_eq!(call(&mut guest, Hypercall::SET_TRAP_TABLE, [0, 1, 0]), Disposition::Return(-14));
        assert_eq!(call(&mut guest, Hypercall::SET_TRAP_TABLE, [BASE, 257, 0]), Disposition::Return(-22));
        assert!(guest.vcpu.trap_handler(14).is_some());
        // The full 256 entries are accepted (the window holds 8 KiB = 512 entries).
        let all: Vec<_> = (0..=255u8).map(|vector| trap_entry(vector, 0, handler)).collect();
        put_trap_entries(&mut guest, BASE, &all);
        assert_eq!(call(&mut guest, Hypercall::SET_TRAP_TABLE, [BASE, 256, 0]), Disposition::Return(0));
        assert!((0..=255).all(|vector| guest.vcpu.trap_handler(vector).is_some()));
        // Count 0 clears everything, whatever the pointer.
        assert_eq!(call(&mut guest, Hypercall::SET_TRAP_TABLE, [0, 0, 0]), Disposition::Return(0));
        assert!((0..=255).all(|vector| guest.vcpu.trap_handler(vector).is_none()));
    }

    /// SPEC.md §5.4, §11.1: count 0 reads nothing, so an unmapped address is fine, but an
    /// address no array may have (non-canonical, the hypervisor's) is -EFAULT and the
    /// table stays as it was.
    #[test]
    fn set_trap_table_with_count_zero_follows_the_zero_length_rule() {
        let mut guest = guest();
        let handler = 0xffff_ffff_8000_1000;
        for pointer in [0x0000_8000_0000_0000, HYPERVISOR_START, HYPERVISOR_END - 1] {
            put_trap_entries(&mut guest, BASE, &[trap_entry(14, 0, handler)]);
            assert_eq!(call(&mut guest, Hypercall::SET_TRAP_TABLE, [BASE, 1, 0]), Disposition::Return(0));
            assert_eq!(call(&mut guest, Hypercall::SET_TRAP_TABLE, [pointer, 0, 0]), Disposition::Return(-14));
            assert!(guest.vcpu.trap_handler(14).is_some(), "unchanged after -EFAULT");
        }
        for pointer in [0, 0x1234, BASE + 8192, HYPERVISOR_END, u64::MAX] {
            assert_eq!(call(&mut guest, Hypercall::SET_TRAP_TABLE, [pointer, 0, 0]), Disposition::Return(0));
            assert_eq!(guest.vcpu.trap_handler(14), None, "cleared");
            put_trap_entries(&mut guest, BASE, &[trap_entry(14, 0, handler)]);
            assert_eq!(call(&mut guest, Hypercall::SET_TRAP_TABLE, [BASE, 1, 0]), Disposition::Return(0));
        }
    }

    /// SPEC.md §5.4's one zero-length rule, as every array-taking call of this table
    /// applies it: count 0 at an unmapped guest address succeeds and does nothing; at a
    /// non-canonical or hypervisor address it is -EFAULT.
    #[test]
    fn every_array_call_applies_the_zero_length_rule() {
        type Arguments = fn(u64) -> [u64; 3];
        let calls: [(Hypercall, Arguments); 4] = [
            (Hypercall::MULTICALL, |pointer| [pointer, 0, 0]),
            (Hypercall::CONSOLE_IO, |pointer| [console_cmd::WRITE, 0, pointer]),
            (Hypercall::CONSOLE_IO, |pointer| [console_cmd::READ, 0, pointer]),
            (Hypercall::SET_TRAP_TABLE, |pointer| [pointer, 0, 0]),
        ];
        for (number, arguments) in calls {
            let mut guest = guest();
            guest.input = b"waiting".to_vec();
            for pointer in [0x0000_8000_0000_0000, 0xffff_7fff_ffff_ffff, HYPERVISOR_START, HYPERVISOR_END - 1] {
                assert_eq!(
                    call(&mut guest, number, arguments(pointer)),
                    Disposition::Return(-14),
                    "{number:?} {pointer:#x}"
                );
            }
            for pointer in [0, 0x1234, BASE + 8192, HYPERVISOR_END, u64::MAX] {
                assert_eq!(
                    call(&mut guest, number, arguments(pointer)),
                    Disposition::Return(0),
                    "{number:?} {pointer:#x}"
                );
            }
            assert!(guest.console.is_empty() && guest.input == b"waiting", "{number:?} did something");
        }
        // POLL's array (its count 0 is valid; nothing pending, so it sleeps).
        let mut guest = guest();
        let poll = |pointer| [sched_cmd::POLL, pointer, 0];
        assert_eq!(call(&mut guest, Hypercall::SCHED_OP, poll(HYPERVISOR_START)), Disposition::Return(-14));
        assert_eq!(call(&mut guest, Hypercall::SCHED_OP, poll(0x0000_8000_0000_0000)), Disposition::Return(-14));
        assert!(matches!(call(&mut guest, Hypercall::SCHED_OP, poll(0x1234)), Disposition::Poll(_)));
    }

    /// Runs a call to its end as the system does, resuming each preemption from its
    /// progress; returns the final disposition and how many times it stopped.
    fn complete(guest: &mut FakeGuest, number: Hypercall, arguments: [u64; 3]) -> (Disposition, u32) {
        let arguments = [arguments[0], arguments[1], arguments[2], 0, 0, 0];
        let mut progress = Progress::START;
        let mut stops = 0;
        loop {
            match resume(number.0, &arguments, &progress, guest) {
                Disposition::Preempted(next) => {
                    assert_ne!(next, progress, "a continuation made no progress");
                    progress = next;
                    stops += 1;
                }
                other => return (other, stops),
            }
        }
    }

    #[test]
    fn a_preempted_console_write_writes_every_byte_once() {
        let mut guest = guest();
        guest.preempt_every = 1;
        let (result, stops) = complete(&mut guest, Hypercall::CONSOLE_IO, [console_cmd::WRITE, 4096, BASE]);
        assert_eq!(result, Disposition::Return(4096));
        assert_eq!(stops, 4096 / 64 - 1, "one stop between groups of 64");
        assert_eq!(guest.console, guest.memory[..4096]);
        // A fault is found before the first byte, preempted or not.
        let (result, _) = complete(&mut guest, Hypercall::CONSOLE_IO, [console_cmd::WRITE, 200, BASE + 8100]);
        assert_eq!(result, Disposition::Return(-14));
        assert_eq!(guest.console.len(), 4096);
    }

    #[test]
    fn groups_never_split_a_utf8_character() {
        let text = "ab\u{e9}\u{20ac}\u{1f600}".as_bytes();
        // "ab", é (2 bytes), € (3), 😀 (4): a group wanted to end inside one ends after it.
        assert_eq!(group_end(text, 3), 4);
        assert_eq!(group_end(text, 5), 7);
        assert_eq!(group_end(text, 6), 7);
        assert_eq!(group_end(text, 8), 11);
        assert_eq!(group_end(text, 2), 2);
        assert_eq!(group_end(text, 99), text.len());
        // Stray continuation bytes (raw C1 bytes) extend a group by at most 3.
        assert_eq!(group_end(&[0x9b; 16], 4), 7);
    }

    #[test]
    fn a_preempted_multicall_resumes_its_entries_and_their_own_progress() {
        let mut guest = guest();
        let calls = [
            (Hypercall::VERSION, [0, 0, 0]),
            (Hypercall::CONSOLE_IO, [console_cmd::WRITE, 200, BASE]),
            (Hypercall::MMU_UPDATE, [0, BASE, 3]),
            (Hypercall(50), [0, 0, 0]),
            (Hypercall::VERSION, [0, 0, 0]),
        ];
        let array = BASE + 4096;
        put_calls(&mut guest, array, &calls);
        assert_eq!(multicall(&mut guest, array, 5), Disposition::Return(5));
        let unpreempted: Vec<_> = (0..5).map(|index| guest.result(array + index * ENTRY_BYTES)).collect();
        let console = core::mem::take(&mut guest.console);
        guest.forwarded.clear();
        put_calls(&mut guest, array, &calls);
        guest.preempt_every = 1;
        let (result, stops) = complete(&mut guest, Hypercall::MULTICALL, [array, 5, 0]);
        assert_eq!(result, Disposition::Return(5));
        // Between the 5 entries (4), inside the console write (groups of 64, 64, 64 and 8:
        // 3), inside the mmu_update (3 runs: 2).
        assert_eq!(stops, 4 + 3 + 2);
        let preempted: Vec<_> = (0..5).map(|index| guest.result(array + index * ENTRY_BYTES)).collect();
        assert_eq!(preempted, unpreempted, "the same results, preempted or not");
        assert_eq!(guest.console, console, "every byte once");
        assert_eq!(guest.forwarded, [("mmu_update", [0, BASE, 3, 0, 0, 0]); 3]);
    }

    #[test]
    fn a_preempted_entry_is_not_read_again() {
        let mut guest = guest();
        let array = BASE + 4096;
        put_calls(&mut guest, array, &[(Hypercall::MMU_UPDATE, [0, BASE, 2]), (Hypercall::VERSION, [0, 0, 0])]);
        guest.preempt_every = 1;
        let arguments = [array, 2, 0, 0, 0, 0];
        let Disposition::Preempted(progress) = resume(Hypercall::MULTICALL.0, &arguments, &Progress::START, &mut guest)
        else {
            panic!("the mmu_update entry stops after its first element");
        };
        assert_eq!(progress.done, 0);
        assert_eq!(progress.entry.map(|entry| (entry.op, entry.done)), Some((Hypercall::MMU_UPDATE.0, 1)));
        // Whatever the array says now (the guest cannot run, but a batch can rewrite it),
        // the entry goes on as it was read.
        put_calls(&mut guest, array, &[(Hypercall::MEMORY_OP, [9, 9, 9])]);
        guest.preempt_every = 0;
        assert_eq!(resume(Hypercall::MULTICALL.0, &arguments, &progress, &mut guest), Disposition::Return(2));
        assert_eq!(guest.result(array), 9);
        assert!(guest.forwarded.iter().all(|(name, _)| *name == "mmu_update"));
    }

    /// The fake accessor refuses what `guest_memory::copy_from_guest` refuses, empty
    /// ranges included, so a handler that reads when it should not cannot hide.
    #[test]
    fn the_fake_guest_is_as_strict_as_the_accessor() {
        let mut guest = guest();
        assert_eq!(guest.read(0x0000_8000_0000_0000, &mut []), Err(GuestFault::NonCanonical));
        assert_eq!(guest.read(HYPERVISOR_START, &mut []), Err(GuestFault::HypervisorRange));
        assert_eq!(guest.write(HYPERVISOR_START, &[]), Err(GuestFault::HypervisorRange));
        assert_eq!(guest.read(0x1234, &mut []), Ok(()), "an empty range at an unmapped guest address is no fault");
    }

    #[test]
    fn stack_callback_and_segment_hypercalls() {
        let mut guest = guest();
        assert_eq!(
            call(&mut guest, Hypercall::STACK_SWITCH, [KERNEL_SS, 0xffff_ffff_8010_0000, 0]),
            Disposition::Return(0)
        );
        assert_eq!(guest.vcpu.kernel_stack, Some(0xffff_ffff_8010_0000));
        assert_eq!(call(&mut guest, Hypercall::STACK_SWITCH, [0x2b, 0x1000, 0]), Disposition::Return(-22));
        assert_eq!(
            call(&mut guest, Hypercall::STACK_SWITCH, [KERNEL_SS, HYPERVISOR_START, 0]),
            Disposition::Return(-22)
        );

        assert_eq!(call(&mut guest, Hypercall::CALLBACK_OP, [0, 0, 0xffff_ffff_8000_4000]), Disposition::Return(0));
        assert_eq!(guest.vcpu.syscall_entry, Some(0xffff_ffff_8000_4000));
        assert_eq!(
            call(&mut guest, Hypercall::CALLBACK_OP, [1, 0, 0x1000]),
            Disposition::Return(-22),
            "unknown command"
        );
        assert_eq!(call(&mut guest, Hypercall::CALLBACK_OP, [0, 1, 0x1000]), Disposition::Return(-22), "unknown type");
        assert_eq!(call(&mut guest, Hypercall::CALLBACK_OP, [0, 0, 0x0000_8000_0000_0000]), Disposition::Return(-22));
        assert_eq!(call(&mut guest, Hypercall::CALLBACK_OP, [0, 0, 0]), Disposition::Return(0));
        assert_eq!(guest.vcpu.syscall_entry, None);

        assert_eq!(
            call(&mut guest, Hypercall::SET_SEGMENT_BASE, [segment::GS_USER, 0x5000, 0]),
            Disposition::Return(0)
        );
        assert!(guest.vcpu.segments_dirty);
        assert_eq!(guest.vcpu.gs_user, 0x5000);
        assert_eq!(
            call(&mut guest, Hypercall::SET_SEGMENT_BASE, [segment::FS, 0x0000_8000_0000_0000, 0]),
            Disposition::Return(-22)
        );
        assert_eq!(call(&mut guest, Hypercall::SET_SEGMENT_BASE, [3, 0, 0]), Disposition::Return(-22));
        assert_eq!(guest.vcpu.mode, Mode::Kernel);
    }

    #[test]
    fn iret_and_memory_hypercalls_go_to_the_system() {
        let mut guest = guest();
        assert_eq!(dispatch(Hypercall::IRET.0, [1, 2, 3, 4, 5, 6], &mut guest), Disposition::Iret);
        assert_eq!(dispatch(Hypercall::MEMORY_OP.0, [1, 2, 3, 4, 5, 6], &mut guest), Disposition::Return(7));
        assert_eq!(dispatch(Hypercall::ADDRESS_SPACE_OP.0, [6, 5, 4, 3, 2, 1], &mut guest), Disposition::Return(-3));
        assert_eq!(dispatch(Hypercall::MMU_UPDATE.0, [0, 0, 0, 0, 0, 9], &mut guest), Disposition::Return(9));
        assert_eq!(
            guest.forwarded,
            [
                ("memory_op", [1, 2, 3, 4, 5, 6]),
                ("address_space_op", [6, 5, 4, 3, 2, 1]),
                ("mmu_update", [0, 0, 0, 0, 0, 9])
            ]
        );
    }

    fn put_calls(guest: &mut FakeGuest, address: u64, calls: &[(Hypercall, [u64; 3])]) {
        for (index, &(op, [a, b, c])) in calls.iter().enumerate() {
            let entry = MulticallEntry { op: op.0, args: [a, b, c, 0, 0, 0], result: 0x5555 };
            guest.put(address + index as u64 * ENTRY_BYTES, entry.as_bytes());
        }
    }

    fn multicall(guest: &mut FakeGuest, address: u64, count: u64) -> Disposition {
        call(guest, Hypercall::MULTICALL, [address, count, 0])
    }

    #[test]
    fn multicall_writes_every_result() {
        let mut guest = guest();
        put_calls(
            &mut guest,
            BASE + 4096,
            &[
                (Hypercall::VERSION, [0, 0, 0]),
                (Hypercall::VERSION, [9, 0, 0]),
                (Hypercall::CONSOLE_IO, [0, 3, BASE]),
                (Hypercall(50), [0, 0, 0]),
                (Hypercall::MEMORY_OP, [1, 0, 0]),
            ],
        );
        assert_eq!(multicall(&mut guest, BASE + 4096, 5), Disposition::Return(5));
        let results: Vec<_> = (0..5).map(|index| guest.result(BASE + 4096 + index * ENTRY_BYTES)).collect();
        assert_eq!(results, [i64::from(ABI_VERSION.packed()), -22, 3, -38, 7], "errors do not stop the batch");
        assert_eq!(guest.console, [0, 1, 2]);
        assert_eq!(multicall(&mut guest, BASE, 0), Disposition::Return(0));
        assert_eq!(multicall(&mut guest, 0, 0), Disposition::Return(0));
    }

    #[test]
    fn multicall_count_limit() {
        let mut guest = guest();
        let calls = [(Hypercall::VERSION, [0, 0, 0]); 65];
        put_calls(&mut guest, BASE, &calls);
        assert_eq!(multicall(&mut guest, BASE, 65), Disposition::Return(-22));
        assert_eq!(guest.result(BASE), 0x5555, "nothing ran");
        assert_eq!(multicall(&mut guest, BASE, u64::MAX), Disposition::Return(-22));
        assert_eq!(multicall(&mut guest, BASE, 64), Disposition::Return(64));
        assert_eq!(guest.result(BASE + 63 * ENTRY_BYTES), i64::from(ABI_VERSION.packed()));
        assert_eq!(guest.result(BASE + 64 * ENTRY_BYTES), 0x5555);
    }

    #[test]
    fn multicall_refuses_iret_and_nested_multicall() {
        for refused in [Hypercall::IRET, Hypercall::MULTICALL] {
            let mut guest = guest();
            put_calls(
                &mut guest,
                BASE,
                &[
                    (Hypercall::CONSOLE_IO, [0, 1, BASE + 4096]),
                    (refused, [BASE, 1, 0]),
                    (Hypercall::CONSOLE_IO, [0, 1, BASE + 4096]),
                ],
            );
            assert_eq!(multicall(&mut guest, BASE, 3), Disposition::Return(2), "{refused:?}");
            assert_eq!(guest.result(BASE), 1);
            assert_eq!(guest.result(BASE + ENTRY_BYTES), -22);
            assert_eq!(guest.result(BASE + 2 * ENTRY_BYTES), 0x5555, "the batch ended at the refused entry");
            assert_eq!(guest.console.len(), 1);
        }
    }

    #[test]
    fn multicall_yield_ends_the_batch_and_shutdown_ends_the_domain() {
        let mut guest = guest();
        put_calls(
            &mut guest,
            BASE,
            &[
                (Hypercall::VERSION, [0, 0, 0]),
                (Hypercall::SCHED_OP, [sched_cmd::YIELD, 0, 0]),
                (Hypercall::VERSION, [0, 0, 0]),
            ],
        );
        assert_eq!(multicall(&mut guest, BASE, 3), Disposition::Yield(2));
        assert_eq!(guest.result(BASE + ENTRY_BYTES), 0);
        assert_eq!(guest.result(BASE + 2 * ENTRY_BYTES), 0x5555);

        let mut guest = super::tests::guest();
        put_calls(
            &mut guest,
            BASE,
            &[
                (Hypercall::VERSION, [0, 0, 0]),
                (Hypercall::SCHED_OP, [sched_cmd::SHUTDOWN, shutdown_reason::POWEROFF, 5]),
                (Hypercall::CONSOLE_IO, [0, 1, BASE]),
            ],
        );
        assert_eq!(multicall(&mut guest, BASE, 3), Disposition::Shutdown(Outcome::Poweroff(5)));
        assert!(guest.console.is_empty());
    }

    #[test]
    fn multicall_stops_at_unreadable_or_unwritable_entries() {
        let mut guest = guest();
        // Entries 0 and 1 readable, entry 2 past the window.
        let start = BASE + 8192 - 2 * ENTRY_BYTES;
        put_calls(&mut guest, start, &[(Hypercall::VERSION, [0, 0, 0]), (Hypercall::VERSION, [0, 0, 0])]);
        assert_eq!(multicall(&mut guest, start, 3), Disposition::Return(2));
        assert_eq!(multicall(&mut guest, BASE + 8192, 1), Disposition::Return(-14), "first entry unreadable");
        assert_eq!(multicall(&mut guest, 0, 2), Disposition::Return(-14));
        assert_eq!(multicall(&mut guest, u64::MAX - 63, 2), Disposition::Return(-14), "wrapping address");
        // Entry 1's result cannot be written back: the batch stops after running it.
        put_calls(
            &mut guest,
            BASE,
            &[
                (Hypercall::CONSOLE_IO, [0, 1, BASE + 4096]),
                (Hypercall::CONSOLE_IO, [0, 1, BASE + 4096]),
                (Hypercall::CONSOLE_IO, [0, 1, BASE + 4096]),
            ],
        );
        guest.read_only = BASE + ENTRY_BYTES + RESULT_OFFSET..BASE + 2 * ENTRY_BYTES;
        assert_eq!(multicall(&mut guest, BASE, 3), Disposition::Return(1));
        assert_eq!(guest.console.len(), 2);
        guest.read_only = BASE + RESULT_OFFSET..BASE + ENTRY_BYTES;
        assert_eq!(multicall(&mut guest, BASE, 3), Disposition::Return(-14), "first result unwritable");
        // A yield whose result cannot be written still yields.
        put_calls(&mut guest, BASE, &[(Hypercall::SCHED_OP, [sched_cmd::YIELD, 0, 0])]);
        assert_eq!(multicall(&mut guest, BASE, 1), Disposition::Yield(-14));
    }
}
