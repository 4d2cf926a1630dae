//! Waiting for several files at once: `poll`, `ppoll`, `select`, `pselect6`.
//!
//! Each open file says what it is ready for now: pipes and sockets by their contents and
//! open ends (a socket whose reading is over is readable, with `POLLRDHUP`; with its
//! writing over too, `POLLHUP`), the console by completed input, everything else always
//! (as Linux's default). When nothing asked for is ready and the timeout is not zero, the call blocks on the events
//! that could make one ready, with the timeout; when it runs again after the timeout
//! ([`super::Caller::timed_out`]), it answers with what is ready, perhaps nothing. The
//! timeout argument is written back as zero after a timeout and otherwise left as it
//! was (Linux writes the time left; programs must not rely on either, as POSIX says).

use alloc::vec::Vec;
use core::mem::size_of;
use linux_raw_sys::general as uapi;

use super::caller::Caller;
use super::open_file::{Device, FileRef, Node};
use super::outcome::{done, CallResult, Event, Outcome, Wait};
use super::world::Files;
use crate::descriptors::LIMIT;
use crate::linux::layouts::{PollDescriptor, Timespec, Timeval};
use crate::linux::Errno;
use crate::pipe::ATOMIC_WRITE;
use crate::signal::SignalSet;
use crate::user_memory::{read_value, write_value, UserMemory};

const _: () = assert!(size_of::<Timeval>() == 16 && size_of::<Timespec>() == 16);

const READABLE: u32 = uapi::POLLIN | uapi::POLLRDNORM;
const WRITABLE: u32 = uapi::POLLOUT | uapi::POLLWRNORM;

/// What a file is ready for, and the events that would change that.
struct Readiness {
    mask: u32,
    readable_when: Option<Event>,
    writable_when: Option<Event>,
}

fn readiness(files: &Files, file: &FileRef) -> Readiness {
    let always = Readiness { mask: READABLE | WRITABLE, readable_when: None, writable_when: None };
    let open = file.borrow();
    match &open.node {
        Node::Device { device: Device::Console, .. } => Readiness {
            mask: WRITABLE | if files.console.line.readable() { READABLE } else { 0 },
            readable_when: Some(Event::ConsoleReadable),
            writable_when: None,
        },
        Node::PipeReader(pipe) => {
            let state = pipe.borrow();
            let mut mask = if state.pipe.is_empty() { 0 } else { READABLE };
            if !state.pipe.has_writers() {
                mask |= uapi::POLLHUP;
            }
            Readiness { mask, readable_when: Some(Event::PipeReadable(state.id)), writable_when: None }
        }
        Node::PipeWriter(pipe) => {
            let state = pipe.borrow();
            // Writable when an atomic write would go in whole (Linux: a free page).
            let mut mask = if state.pipe.room() >= ATOMIC_WRITE { WRITABLE } else { 0 };
            if !state.pipe.has_readers() {
                mask |= uapi::POLLERR;
            }
            Readiness { mask, readable_when: None, writable_when: Some(Event::PipeWritable(state.id)) }
        }
        Node::Socket(end) => {
            let receive = end.receive.borrow();
            let (reading_over, writing_over) = (end.reading_over(), end.writing_over());
            let mut mask = if receive.pipe.is_empty() && !reading_over { 0 } else { READABLE };
            if reading_over {
                mask |= uapi::POLLRDHUP;
            }
            if reading_over && writing_over {
                mask |= uapi::POLLHUP;
            }
            if end.writable() {
                mask |= WRITABLE;
            }
            Readiness {
                mask,
                readable_when: Some(Event::PipeReadable(receive.id)),
                writable_when: Some(Event::PipeWritable(end.send.borrow().id)),
            }
        }
        _ => always,
    }
}

/// The wait for `events` (each once: several descriptors may name one pipe).
fn wait(mut events: Vec<Event>, timeout_ns: Option<u64>, signal_mask: Option<SignalSet>) -> Wait {
    events.sort_unstable();
    events.dedup();
    Wait { events, timeout_ns, signal_mask }
}

/// A timeout in milliseconds (`poll`): negative waits forever.
fn milliseconds(timeout: u64) -> Option<u64> {
    let timeout = timeout as u32 as i32;
    u64::try_from(timeout).ok().map(|ms| ms * 1_000_000)
}

/// `poll(fds, nfds, timeout)`.
pub fn poll(files: &mut Files, caller: &mut Caller<'_>, address: u64, count: u64, timeout: u64) -> CallResult {
    poll_with(files, caller, address, count, milliseconds(timeout), None)
}

/// `ppoll(fds, nfds, timeout, sigmask, sigsetsize)`: the mask is held while asleep.
pub fn ppoll(
    files: &mut Files,
    caller: &mut Caller<'_>,
    address: u64,
    count: u64,
    timeout: u64,
    mask: u64,
    mask_size: u64,
) -> CallResult {
    let timeout = timespec_timeout(&*caller.memory, timeout)?;
    let mask = signal_mask(&*caller.memory, mask, mask_size)?;
    poll_with(files, caller, address, count, timeout, mask)
}

fn timespec_timeout(memory: &dyn UserMemory, address: u64) -> Result<Option<u64>, Errno> {
    if address == 0 {
        return Ok(None);
    }
    let timeout: Timespec = read_value(memory, address)?;
    timeout.to_nanoseconds().map(Some).ok_or(Errno::EINVAL)
}

fn signal_mask(memory: &dyn UserMemory, address: u64, size: u64) -> Result<Option<SignalSet>, Errno> {
    if address == 0 {
        return Ok(None);
    }
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    Ok(Some(SignalSet(read_value(memory, address)?)))
}

fn poll_with(
    files: &mut Files,
    caller: &mut Caller<'_>,
    address: u64,
    count: u64,
    timeout_ns: Option<u64>,
    signal_mask: Option<SignalSet>,
) -> CallResult {
    if count > LIMIT as u64 {
        return Err(Errno::EINVAL);
    }
    let mut entries: Vec<PollDescriptor> = Vec::with_capacity(count as usize);
    for index in 0..count {
        entries.push(read_value(&*caller.memory, address.wrapping_add(index * 8))?);
    }
    let mut ready = 0u64;
    let mut events = Vec::new();
    for entry in &mut entries {
        entry.returned = 0;
        let Ok(descriptor) = u64::try_from(entry.descriptor) else { continue };
        let Ok(file) = caller.process.descriptors().get(descriptor).cloned() else {
            entry.returned = uapi::POLLNVAL as i16;
            ready += 1;
            continue;
        };
        let asked = u32::from(entry.events as u16) | uapi::POLLERR | uapi::POLLHUP;
        let state = readiness(files, &file);
        let returned = state.mask & asked;
        if returned != 0 {
            entry.returned = returned as i16;
            ready += 1;
            continue;
        }
        if asked & READABLE != 0 {
            events.extend(state.readable_when);
        }
        if asked & WRITABLE != 0 {
            events.extend(state.writable_when);
        }
    }
    if ready == 0 && timeout_ns != Some(0) && !caller.timed_out {
        return Ok(Outcome::Block(wait(events, timeout_ns, signal_mask)));
    }
    for (index, entry) in entries.iter().enumerate() {
        write_value(caller.memory, address.wrapping_add(index as u64 * 8), entry)?;
    }
    done(ready)
}

/// One `fd_set` argument: its address (0 if none) and bits.
struct Set {
    address: u64,
    words: Vec<u64>,
}

impl Set {
    fn read(memory: &dyn UserMemory, address: u64, words: usize) -> Result<Set, Errno> {
        let mut set = Set { address, words: alloc::vec![0; words] };
        if address != 0 {
            for (index, word) in set.words.iter_mut().enumerate() {
                *word = read_value(memory, address.wrapping_add(index as u64 * 8))?;
            }
        }
        Ok(set)
    }

    fn has(&self, descriptor: usize) -> bool {
        self.words[descriptor / 64] & (1 << (descriptor % 64)) != 0
    }

    fn write(&self, memory: &mut dyn UserMemory, bits: &[u64]) -> Result<(), Errno> {
        if self.address == 0 {
            return Ok(());
        }
        for (index, word) in bits.iter().enumerate() {
            write_value(memory, self.address.wrapping_add(index as u64 * 8), word)?;
        }
        Ok(())
    }
}

/// `select(nfds, readfds, writefds, exceptfds, timeout)`; `sets` are the three set
/// addresses in that order.
pub fn select(files: &mut Files, caller: &mut Caller<'_>, count: u64, sets: [u64; 3], timeout: u64) -> CallResult {
    let timeout_ns = if timeout == 0 {
        None
    } else {
        let value: Timeval = read_value(&*caller.memory, timeout)?;
        Some(value.to_nanoseconds().ok_or(Errno::EINVAL)?)
    };
    select_with(files, caller, count, sets, timeout_ns, None, timeout)
}

/// `pselect6(nfds, readfds, writefds, exceptfds, timeout, sigmask_data)`: the timeout
/// is a `timespec`; the last argument points at the mask's address and size.
pub fn pselect6(
    files: &mut Files,
    caller: &mut Caller<'_>,
    count: u64,
    sets: [u64; 3],
    timeout: u64,
    mask_data: u64,
) -> CallResult {
    let timeout_ns = timespec_timeout(&*caller.memory, timeout)?;
    let mask = if mask_data == 0 {
        None
    } else {
        let [address, size]: [u64; 2] = read_value(&*caller.memory, mask_data)?;
        signal_mask(&*caller.memory, address, size)?
    };
    select_with(files, caller, count, sets, timeout_ns, mask, timeout)
}

/// `select` and `pselect6`; `timeout_address` is where the timeout is (a `timeval` or a
/// `timespec`: both 16 bytes, zero after a timeout).
fn select_with(
    files: &mut Files,
    caller: &mut Caller<'_>,
    count: u64,
    sets: [u64; 3],
    timeout_ns: Option<u64>,
    signal_mask: Option<SignalSet>,
    timeout_address: u64,
) -> CallResult {
    let count = count as u32 as i32;
    let count = usize::try_from(count).map_err(|_| Errno::EINVAL)?.min(LIMIT);
    let words = count.div_ceil(64);
    let [read, write, except] = sets.map(|address| Set::read(&*caller.memory, address, words));
    let (read, write, except) = (read?, write?, except?);
    let mut out = [alloc::vec![0u64; words], alloc::vec![0u64; words], alloc::vec![0u64; words]];
    let mut ready = 0u64;
    let mut events = Vec::new();
    for descriptor in 0..count {
        let wanted = [read.has(descriptor), write.has(descriptor), except.has(descriptor)];
        if !wanted.contains(&true) {
            continue;
        }
        let file = caller.process.descriptors().get(descriptor as u64)?.clone();
        let state = readiness(files, &file);
        let conditions = [READABLE | uapi::POLLHUP | uapi::POLLERR, WRITABLE | uapi::POLLERR, uapi::POLLPRI];
        for (set, (&asked, condition)) in wanted.iter().zip(conditions).enumerate() {
            if !asked {
                continue;
            }
            if state.mask & condition != 0 {
                out[set][descriptor / 64] |= 1 << (descriptor % 64);
                ready += 1;
            } else if set == 0 {
                events.extend(state.readable_when);
            } else if set == 1 {
                events.extend(state.writable_when);
            }
        }
    }
    if ready == 0 && timeout_ns != Some(0) && !caller.timed_out {
        return Ok(Outcome::Block(wait(events, timeout_ns, signal_mask)));
    }
    for (set, bits) in [&read, &write, &except].into_iter().zip(&out) {
        set.write(caller.memory, bits)?;
    }
    if ready == 0 && timeout_address != 0 {
        caller.memory.write(timeout_address, &[0u8; 16])?;
    }
    done(ready)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{World, BAD, BUFFER, STRINGS2};
    use super::*;
    use crate::user_memory::read_value;
    use uapi::{__NR_close, __NR_poll, __NR_ppoll, __NR_pselect6, __NR_select, O_RDWR};

    fn poll_entries(world: &mut World, entries: &[(i32, u32)]) {
        for (index, &(descriptor, events)) in entries.iter().enumerate() {
            let entry = PollDescriptor { descriptor, events: events as i16, returned: -1 };
            write_value(&mut world.memory, BUFFER + index as u64 * 8, &entry).unwrap();
        }
    }

    fn returned(world: &World, index: u64) -> u32 {
        u32::from(read_value::<PollDescriptor>(&world.memory, BUFFER + index * 8).unwrap().returned as u16)
    }

    #[test]
    fn poll_reports_ready_files_and_waits_for_the_rest() {
        let mut world = World::new();
        let (read_end, write_end) = world.pipe(0);
        let file = world.open(b"/etc/motd", uapi::O_RDONLY);
        poll_entries(&mut world, &[(read_end as i32, uapi::POLLIN), (-1, uapi::POLLIN), (40, uapi::POLLIN)]);
        assert_eq!(world.ok(__NR_poll, &[BUFFER, 3, 0]), 1, "only the closed descriptor: POLLNVAL");
        assert_eq!([returned(&world, 0), returned(&world, 1), returned(&world, 2)], [0, 0, uapi::POLLNVAL]);
        poll_entries(&mut world, &[(read_end as i32, uapi::POLLIN), (write_end as i32, uapi::POLLOUT)]);
        assert_eq!(world.ok(__NR_poll, &[BUFFER, 2, 0]), 1);
        assert_eq!(returned(&world, 1), uapi::POLLOUT, "an empty pipe can be written");
        let copy = world.ok(uapi::__NR_dup, &[read_end]);
        poll_entries(&mut world, &[(read_end as i32, uapi::POLLIN), (copy as i32, uapi::POLLIN)]);
        let outcome = world.call(__NR_poll, &[BUFFER, 2, 2500]);
        let expected =
            Wait { events: alloc::vec![Event::PipeReadable(1)], timeout_ns: Some(2_500_000_000), signal_mask: None };
        assert_eq!(outcome, Ok(Outcome::Block(expected)), "one event for both descriptors of the pipe");
        assert_eq!(returned(&world, 0) as u16, u16::MAX, "nothing written while blocked");
        world.timed_out = true;
        assert_eq!(world.ok(__NR_poll, &[BUFFER, 1, 2500]), 0, "the timeout passed");
        world.timed_out = false;
        world.write(write_end, b"x");
        poll_entries(&mut world, &[(read_end as i32, uapi::POLLIN)]);
        assert_eq!(world.ok(__NR_poll, &[BUFFER, 1, u64::from(u32::MAX)]), 1, "-1 waits forever, but it is ready");
        assert_eq!(returned(&world, 0), uapi::POLLIN);
        world.ok(__NR_close, &[write_end]);
        world.ok(__NR_poll, &[BUFFER, 1, 0]);
        assert_eq!(returned(&world, 0), uapi::POLLIN | uapi::POLLHUP, "data, and no writer left");
        poll_entries(&mut world, &[(file as i32, uapi::POLLIN | uapi::POLLOUT)]);
        world.ok(__NR_poll, &[BUFFER, 1, 0]);
        assert_eq!(returned(&world, 0), uapi::POLLIN | uapi::POLLOUT, "files are always ready");
        assert_eq!(world.error(__NR_poll, &[BUFFER, 1025, 0]), Errno::EINVAL);
        assert_eq!(world.error(__NR_poll, &[BAD, 1, 0]), Errno::EFAULT);
    }

    #[test]
    fn a_closed_reader_and_the_console_show_in_poll() {
        let mut world = World::new();
        let (read_end, write_end) = world.pipe(0);
        world.ok(__NR_close, &[read_end]);
        poll_entries(&mut world, &[(write_end as i32, uapi::POLLOUT)]);
        world.ok(__NR_poll, &[BUFFER, 1, 0]);
        assert_eq!(returned(&world, 0), uapi::POLLOUT | uapi::POLLERR);
        let console = world.open(b"/dev/console", O_RDWR);
        poll_entries(&mut world, &[(console as i32, uapi::POLLIN)]);
        let outcome = world.call(__NR_poll, &[BUFFER, 1, u64::from(u32::MAX)]);
        let expected = Wait { events: alloc::vec![Event::ConsoleReadable], timeout_ns: None, signal_mask: None };
        assert_eq!(outcome, Ok(Outcome::Block(expected)));
        world.files.console_input(b"y\r");
        assert_eq!(world.ok(__NR_poll, &[BUFFER, 1, u64::from(u32::MAX)]), 1);
        assert_eq!(returned(&world, 0), uapi::POLLIN);
    }

    #[test]
    fn ppoll_takes_a_timespec_and_a_mask() {
        let mut world = World::new();
        let (read_end, _) = world.pipe(0);
        poll_entries(&mut world, &[(read_end as i32, uapi::POLLIN)]);
        write_value(&mut world.memory, STRINGS2, &Timespec { seconds: 1, nanoseconds: 5 }).unwrap();
        write_value(&mut world.memory, STRINGS2 + 16, &0x4u64).unwrap();
        let outcome = world.call(__NR_ppoll, &[BUFFER, 1, STRINGS2, STRINGS2 + 16, 8]);
        let Ok(Outcome::Block(wait)) = outcome else { panic!("{outcome:?}") };
        assert_eq!((wait.timeout_ns, wait.signal_mask), (Some(1_000_000_005), Some(SignalSet(4))));
        assert_eq!(world.error(__NR_ppoll, &[BUFFER, 1, STRINGS2, STRINGS2 + 16, 4]), Errno::EINVAL, "sigsetsize");
        write_value(&mut world.memory, STRINGS2, &Timespec { seconds: 0, nanoseconds: -1 }).unwrap();
        assert_eq!(world.error(__NR_ppoll, &[BUFFER, 1, STRINGS2, 0, 0]), Errno::EINVAL);
    }

    #[test]
    fn select_uses_fd_sets() {
        let mut world = World::new();
        let (read_end, write_end) = world.pipe(0);
        let (read_set, write_set, timeout) = (STRINGS2, STRINGS2 + 8, STRINGS2 + 16);
        let bit = |fd: u64| 1u64 << fd;
        write_value(&mut world.memory, read_set, &bit(read_end)).unwrap();
        write_value(&mut world.memory, write_set, &bit(write_end)).unwrap();
        assert_eq!(world.ok(__NR_select, &[8, read_set, write_set, 0, 0]), 1);
        assert_eq!(read_value::<u64>(&world.memory, read_set), Ok(0), "the pipe has nothing to read");
        assert_eq!(read_value::<u64>(&world.memory, write_set), Ok(bit(write_end)));
        write_value(&mut world.memory, read_set, &bit(read_end)).unwrap();
        write_value(&mut world.memory, timeout, &Timeval { seconds: 0, microseconds: 1500 }).unwrap();
        let outcome = world.call(__NR_select, &[8, read_set, 0, 0, timeout]);
        let Ok(Outcome::Block(wait)) = outcome else { panic!("{outcome:?}") };
        assert_eq!((wait.events, wait.timeout_ns), (alloc::vec![Event::PipeReadable(1)], Some(1_500_000)));
        world.timed_out = true;
        assert_eq!(world.ok(__NR_select, &[8, read_set, 0, 0, timeout]), 0);
        assert_eq!(read_value::<Timeval>(&world.memory, timeout), Ok(Timeval::default()), "no time left");
        world.timed_out = false;
        write_value(&mut world.memory, read_set, &bit(30)).unwrap();
        assert_eq!(world.error(__NR_select, &[31, read_set, 0, 0, 0]), Errno::EBADF);
        assert_eq!(world.ok(__NR_select, &[30, read_set, 0, 0, timeout]), 0, "descriptors past nfds are not looked at");
        assert_eq!(world.error(__NR_select, &[u64::from(u32::MAX), read_set, 0, 0, 0]), Errno::EINVAL);
        world.write(write_end, b"go");
        write_value(&mut world.memory, read_set, &bit(read_end)).unwrap();
        write_value(&mut world.memory, BUFFER, &[0u64, 0]).unwrap();
        assert_eq!(world.ok(__NR_pselect6, &[8, read_set, 0, 0, 0, 0]), 1);
        write_value(&mut world.memory, BUFFER, &[STRINGS2 + 24, 4u64]).unwrap();
        assert_eq!(world.error(__NR_pselect6, &[8, read_set, 0, 0, 0, BUFFER]), Errno::EINVAL, "mask size");
    }
}
