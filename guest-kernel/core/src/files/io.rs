//! `read`, `write` and their vectored and positioned forms, and `lseek`: each kind of
//! open file moves bytes its own way.
//!
//! * Regular files and `/proc` files: from the offset (or the given position), never
//!   blocking; writes grow the file (`O_APPEND`: at its end, even for `pwrite`, as on
//!   Linux).
//! * Pipes: a read takes what is there, sleeps on an empty pipe with a writer
//!   ([`Event::PipeReadable`]) and returns 0 at end of file. A write of at most
//!   `PIPE_BUF` bytes goes in whole or sleeps ([`Event::PipeWritable`]); a larger one
//!   writes what fits and returns that count, sleeping only when nothing fits. (Linux
//!   would sleep in the middle and finish the whole write; a restarted call cannot
//!   resume in the middle, so the count is returned and the writer's loop — every
//!   libc's `fwrite`, busybox's `full_write`, Rust's `write_all` — writes the rest.)
//!   With `O_NONBLOCK`, EAGAIN instead of sleeping. No reader: EPIPE and SIGPIPE.
//! * Socket pairs: a stream end reads and writes its two buffers as a pipe's ends do;
//!   a write after its own `shutdown(SHUT_WR)` is EPIPE and SIGPIPE too. A
//!   `SOCK_SEQPACKET` end writes each call as one record, whole or not at all (sleeping
//!   until it fits; EMSGSIZE if it cannot fit even an empty buffer, past 64 KiB less a
//!   4-byte header, where Linux's limit is its socket buffer), and reads one record a call, dropping what does not fit the buffers, as Linux does; its EPIPE
//!   comes without SIGPIPE, as Linux's. Where Linux reports ECONNRESET once to a reader
//!   whose peer closed with bytes unread, the reader here sees end of file.
//! * The console: a read returns one line (canonical mode) or what has arrived (raw
//!   mode), sleeping on [`Event::ConsoleReadable`]; a write is shown at once, at most
//!   [`CONSOLE_WRITE_LIMIT`] bytes a call (the kernel cannot be preempted while it
//!   writes; the count tells the writer's loop where to go on).
//! * `/dev/null` reads end at once, `/dev/zero` reads give zeros (at most
//!   [`ZERO_READ_LIMIT`] bytes a call: the kernel cannot be preempted, so a huge read is
//!   cut short, as Linux cuts it when a signal is pending); writes to either vanish.

use linux_raw_sys::general as uapi;

use super::caller::Caller;
use super::open_file::{Device, FileRef, Node, SharedPipe};
use super::outcome::{done, CallResult, Event, Outcome, Wait};
use super::socket_end::{SocketEnd, SocketKind, MAX_RECORD, RECORD_HEADER};
use super::transfer::{buffer, transferred, Segments, CHUNK};
use super::world::Files;
use crate::linux::Errno;
use crate::pipe::{Transfer, ATOMIC_WRITE};
use crate::signal::Signal;
use crate::tty::Peek;

/// Most bytes one read of `/dev/zero` gives.
pub const ZERO_READ_LIMIT: usize = 1 << 20;

/// Most bytes one write to the console shows.
pub const CONSOLE_WRITE_LIMIT: usize = 64 * 1024;

static ZEROS: [u8; 4096] = [0; 4096];

/// `read(fd, buffer, count)`.
pub fn read(files: &mut Files, caller: &mut Caller<'_>, fd: u64, address: u64, count: u64) -> CallResult {
    let file = caller.file(fd)?;
    read_from(files, caller, &file, Segments::single(address, count), None)
}

/// `write(fd, buffer, count)`.
pub fn write(files: &mut Files, caller: &mut Caller<'_>, fd: u64, address: u64, count: u64) -> CallResult {
    let file = caller.file(fd)?;
    write_to(files, caller, &file, Segments::single(address, count), None)
}

/// `readv(fd, iov, iovcnt)`.
pub fn readv(files: &mut Files, caller: &mut Caller<'_>, fd: u64, vector: u64, count: u64) -> CallResult {
    let file = caller.file(fd)?;
    let segments = Segments::vector(&*caller.memory, vector, count)?;
    read_from(files, caller, &file, segments, None)
}

/// `writev(fd, iov, iovcnt)`.
pub fn writev(files: &mut Files, caller: &mut Caller<'_>, fd: u64, vector: u64, count: u64) -> CallResult {
    let file = caller.file(fd)?;
    let segments = Segments::vector(&*caller.memory, vector, count)?;
    write_to(files, caller, &file, segments, None)
}

fn position(offset: u64) -> Result<u64, Errno> {
    if (offset as i64) < 0 {
        Err(Errno::EINVAL)
    } else {
        Ok(offset)
    }
}

/// `pread64(fd, buffer, count, offset)`: ESPIPE on pipes, sockets and the console.
pub fn pread64(
    files: &mut Files,
    caller: &mut Caller<'_>,
    fd: u64,
    address: u64,
    count: u64,
    offset: u64,
) -> CallResult {
    let offset = position(offset)?;
    let file = caller.file(fd)?;
    read_from(files, caller, &file, Segments::single(address, count), Some(offset))
}

/// `pwrite64(fd, buffer, count, offset)`.
pub fn pwrite64(
    files: &mut Files,
    caller: &mut Caller<'_>,
    fd: u64,
    address: u64,
    count: u64,
    offset: u64,
) -> CallResult {
    let offset = position(offset)?;
    let file = caller.file(fd)?;
    write_to(files, caller, &file, Segments::single(address, count), Some(offset))
}

/// `preadv(fd, iov, iovcnt, offset)`.
pub fn preadv(files: &mut Files, caller: &mut Caller<'_>, fd: u64, vector: u64, count: u64, offset: u64) -> CallResult {
    let offset = position(offset)?;
    let file = caller.file(fd)?;
    let segments = Segments::vector(&*caller.memory, vector, count)?;
    read_from(files, caller, &file, segments, Some(offset))
}

/// `pwritev(fd, iov, iovcnt, offset)`.
pub fn pwritev(
    files: &mut Files,
    caller: &mut Caller<'_>,
    fd: u64,
    vector: u64,
    count: u64,
    offset: u64,
) -> CallResult {
    let offset = position(offset)?;
    let file = caller.file(fd)?;
    let segments = Segments::vector(&*caller.memory, vector, count)?;
    write_to(files, caller, &file, segments, Some(offset))
}

/// Whether positioned transfers are allowed (ESPIPE otherwise).
fn seekable(node: &Node) -> bool {
    matches!(
        node,
        Node::Regular { .. }
            | Node::Generated { .. }
            | Node::Directory { .. }
            | Node::Device { device: Device::Null | Device::Zero, .. }
    )
}

/// Reads from `file` into `segments`, from its offset or from `at`.
pub(crate) fn read_from(
    files: &mut Files,
    caller: &mut Caller<'_>,
    file: &FileRef,
    mut segments: Segments,
    at: Option<u64>,
) -> CallResult {
    let mut open = file.borrow_mut();
    if at.is_some() && !seekable(&open.node) {
        return Err(Errno::ESPIPE);
    }
    if !open.access.reads() {
        return Err(Errno::EBADF);
    }
    let nonblocking = open.nonblocking;
    match &mut open.node {
        Node::Regular { inode, offset } => {
            let contents = files.fs.contents(*inode)?;
            read_bytes(caller, contents, offset, at, segments)
        }
        Node::Generated { bytes, offset, .. } => read_bytes(caller, bytes, offset, at, segments),
        Node::Directory { .. } => Err(Errno::EISDIR),
        Node::Device { device: Device::Null, .. } => done(0u64),
        Node::Device { device: Device::Zero, .. } => {
            let mut moved = 0;
            while segments.remaining() > 0 && moved < ZERO_READ_LIMIT {
                let length = ZEROS.len().min(ZERO_READ_LIMIT - moved);
                let copied = segments.copy_out(caller.memory, &ZEROS[..length]);
                moved += copied.count;
                if copied.faulted {
                    return done(transferred(moved, true)?);
                }
            }
            done(moved as u64)
        }
        Node::Device { device: Device::Console, .. } => read_console(files, caller, segments, nonblocking),
        Node::PipeReader(pipe) => read_pipe(files, caller, pipe, segments, nonblocking),
        Node::Socket(end) => read_socket(files, caller, end, segments, nonblocking),
        Node::PipeWriter(_) | Node::Path(_) => Err(Errno::EBADF),
    }
}

fn read_bytes(
    caller: &mut Caller<'_>,
    contents: &[u8],
    offset: &mut u64,
    at: Option<u64>,
    mut segments: Segments,
) -> CallResult {
    let start = at.unwrap_or(*offset);
    let available = usize::try_from(start).ok().and_then(|start| contents.get(start..)).unwrap_or(&[]);
    let length = available.len().min(segments.remaining() as usize);
    let copied = segments.copy_out(caller.memory, &available[..length]);
    let count = transferred(copied.count, copied.faulted)?;
    if at.is_none() {
        *offset = start + count;
    }
    done(count)
}

fn read_console(files: &mut Files, caller: &mut Caller<'_>, mut segments: Segments, nonblocking: bool) -> CallResult {
    if segments.remaining() == 0 {
        return done(0u64);
    }
    let console = &mut files.console;
    let copied = match console.line.peek() {
        Peek::Data(bytes) => {
            let length = bytes.len().min(segments.remaining() as usize);
            segments.copy_out(caller.memory, &bytes[..length])
        }
        Peek::EndOfFile => {
            console.line.consume(0);
            return done(0u64);
        }
        Peek::Nothing => {
            if nonblocking {
                return Err(Errno::EAGAIN);
            }
            return match console.empty_read_timeout_ns() {
                None => Ok(Outcome::Block(Wait::on(Event::ConsoleReadable))),
                Some(0) => done(0u64),
                Some(_) if caller.timed_out => done(0u64),
                Some(timeout) => Ok(Outcome::Block(Wait {
                    events: alloc::vec![Event::ConsoleReadable],
                    timeout_ns: Some(timeout),
                    signal_mask: None,
                })),
            };
        }
    };
    console.line.consume(copied.count);
    done(transferred(copied.count, copied.faulted)?)
}

fn read_pipe(
    files: &mut Files,
    caller: &mut Caller<'_>,
    pipe: &SharedPipe,
    mut segments: Segments,
    nonblocking: bool,
) -> CallResult {
    if segments.remaining() == 0 {
        return done(0u64);
    }
    let mut state = pipe.borrow_mut();
    let id = state.id;
    if state.pipe.is_empty() {
        return if !state.pipe.has_writers() {
            done(0u64)
        } else if nonblocking {
            Err(Errno::EAGAIN)
        } else {
            Ok(Outcome::Block(Wait::on(Event::PipeReadable(id))))
        };
    }
    let mut chunk = buffer((segments.remaining() as usize).min(state.pipe.len()))?;
    let mut moved = 0;
    loop {
        let wanted = chunk.len().min(segments.remaining() as usize).min(state.pipe.len());
        let Transfer::Moved(count) = state.pipe.peek(&mut chunk[..wanted]) else { break };
        if count == 0 {
            break;
        }
        let copied = segments.copy_out(caller.memory, &chunk[..count]);
        state.pipe.consume(copied.count);
        moved += copied.count;
        if copied.faulted {
            break;
        }
    }
    let result = transferred(moved, moved == 0)?;
    files.raise(Event::PipeWritable(id));
    done(result)
}

/// Writes `segments` to `file`, at its offset or at `at`.
pub(crate) fn write_to(
    files: &mut Files,
    caller: &mut Caller<'_>,
    file: &FileRef,
    mut segments: Segments,
    at: Option<u64>,
) -> CallResult {
    let mut open = file.borrow_mut();
    if at.is_some() && !seekable(&open.node) {
        return Err(Errno::ESPIPE);
    }
    if !open.access.writes() {
        return Err(Errno::EBADF);
    }
    let (append, nonblocking) = (open.append, open.nonblocking);
    match &mut open.node {
        Node::Regular { inode, offset } => {
            let inode = *inode;
            let mut position = if append { files.fs.metadata(inode)?.size } else { at.unwrap_or(*offset) };
            let mut chunk = buffer(segments.remaining() as usize)?;
            let mut written = 0usize;
            while segments.remaining() > 0 {
                let copied = segments.copy_in(&*caller.memory, &mut chunk);
                if copied.count > 0 {
                    match files.fs.write(inode, position, &chunk[..copied.count]) {
                        Ok(count) => {
                            written += count;
                            position += count as u64;
                        }
                        Err(error) if written == 0 => return Err(error),
                        Err(_) => break,
                    }
                }
                if copied.faulted {
                    transferred(written, true)?;
                    break;
                }
            }
            if at.is_none() {
                *offset = position;
            }
            done(written as u64)
        }
        Node::Device { device: Device::Null | Device::Zero, .. } => done(segments.remaining()),
        Node::Device { device: Device::Console, .. } => {
            let mut chunk = buffer(segments.remaining() as usize)?;
            let mut written = 0usize;
            while segments.remaining() > 0 && written < CONSOLE_WRITE_LIMIT {
                let length = chunk.len().min(CONSOLE_WRITE_LIMIT - written);
                let copied = segments.copy_in(&*caller.memory, &mut chunk[..length]);
                files.console.write(&chunk[..copied.count]);
                written += copied.count;
                if copied.faulted {
                    return done(transferred(written, true)?);
                }
            }
            done(written as u64)
        }
        Node::PipeWriter(pipe) => write_pipe(files, caller, pipe, segments, nonblocking),
        Node::Socket(end) => write_socket(files, caller, end, segments, nonblocking),
        Node::Directory { .. } => Err(Errno::EISDIR),
        Node::Generated { .. } | Node::PipeReader(_) | Node::Path(_) => Err(Errno::EBADF),
    }
}

fn write_pipe(
    files: &mut Files,
    caller: &mut Caller<'_>,
    pipe: &SharedPipe,
    mut segments: Segments,
    nonblocking: bool,
) -> CallResult {
    let total = segments.remaining() as usize;
    if total == 0 {
        return done(0u64);
    }
    let mut state = pipe.borrow_mut();
    let id = state.id;
    if !state.pipe.has_readers() {
        return Ok(Outcome::FailAndSignal { error: Errno::EPIPE, signal: Signal::PIPE });
    }
    let room = state.pipe.room();
    if room == 0 || (total <= ATOMIC_WRITE && total > room) {
        return if nonblocking { Err(Errno::EAGAIN) } else { Ok(Outcome::Block(Wait::on(Event::PipeWritable(id)))) };
    }
    let mut chunk = buffer(total.min(room))?;
    let mut written = 0usize;
    loop {
        let wanted = chunk.len().min(segments.remaining() as usize).min(state.pipe.room());
        if wanted == 0 {
            break;
        }
        let copied = segments.copy_in(&*caller.memory, &mut chunk[..wanted]);
        if copied.count > 0 {
            match state.pipe.write(&chunk[..copied.count]) {
                Ok(Transfer::Moved(count)) => written += count,
                Ok(_) => break,
                Err(error) if written == 0 => return Err(error),
                Err(_) => break,
            }
        }
        if copied.faulted {
            break;
        }
    }
    let result = transferred(written, written == 0)?;
    files.raise(Event::PipeReadable(id));
    done(result)
}

/// Reads from socket end `end` (`read`, `readv`, `recvfrom`).
pub(crate) fn read_socket(
    files: &mut Files,
    caller: &mut Caller<'_>,
    end: &SocketEnd,
    segments: Segments,
    nonblocking: bool,
) -> CallResult {
    match end.kind {
        SocketKind::Stream => read_pipe(files, caller, &end.receive, segments, nonblocking),
        SocketKind::Packet => read_record(files, caller, &end.receive, segments, nonblocking),
    }
}

/// Writes to socket end `end` (`write`, `writev`, `sendto`).
pub(crate) fn write_socket(
    files: &mut Files,
    caller: &mut Caller<'_>,
    end: &SocketEnd,
    segments: Segments,
    nonblocking: bool,
) -> CallResult {
    match end.kind {
        SocketKind::Stream => {
            // The buffer still has its reader after this end's own SHUT_WR.
            if segments.remaining() > 0 && end.writing_over() {
                return Ok(Outcome::FailAndSignal { error: Errno::EPIPE, signal: Signal::PIPE });
            }
            write_pipe(files, caller, &end.send, segments, nonblocking)
        }
        SocketKind::Packet => write_record(files, caller, end, segments, nonblocking),
    }
}

/// A zeroed kernel buffer of `length` bytes (a record: at most a pipe's capacity), ENOMEM
/// if the heap cannot give it.
fn record_buffer(length: usize) -> Result<alloc::vec::Vec<u8>, Errno> {
    let mut bytes = alloc::vec::Vec::new();
    bytes.try_reserve_exact(length).map_err(|_| Errno::ENOMEM)?;
    bytes.resize(length, 0);
    Ok(bytes)
}

/// Reads the next record: as much as the buffers take, the rest of it dropped. A copy
/// that faults is EFAULT and leaves the record for the next read.
fn read_record(
    files: &mut Files,
    caller: &mut Caller<'_>,
    pipe: &SharedPipe,
    mut segments: Segments,
    nonblocking: bool,
) -> CallResult {
    if segments.remaining() == 0 {
        return done(0u64);
    }
    let mut state = pipe.borrow_mut();
    let id = state.id;
    let mut header = [0u8; RECORD_HEADER];
    match state.pipe.peek(&mut header) {
        Transfer::Moved(_) => {}
        Transfer::EndOfFile => return done(0u64),
        Transfer::WouldBlock if nonblocking => return Err(Errno::EAGAIN),
        Transfer::WouldBlock => return Ok(Outcome::Block(Wait::on(Event::PipeReadable(id)))),
    }
    let length = u32::from_le_bytes(header) as usize;
    let mut bytes = record_buffer(length.min(segments.remaining() as usize))?;
    let count = state.pipe.peek_at(RECORD_HEADER, &mut bytes);
    let copied = segments.copy_out(caller.memory, &bytes[..count]);
    if copied.faulted {
        return Err(Errno::EFAULT);
    }
    state.pipe.consume(RECORD_HEADER + length);
    files.raise(Event::PipeWritable(id));
    done(copied.count as u64)
}

/// Writes `segments` as one record, whole or not at all. A copy that faults is EFAULT
/// and sends nothing.
fn write_record(
    files: &mut Files,
    caller: &mut Caller<'_>,
    end: &SocketEnd,
    mut segments: Segments,
    nonblocking: bool,
) -> CallResult {
    let length = segments.remaining() as usize;
    if length > MAX_RECORD {
        return Err(Errno::EMSGSIZE);
    }
    if end.writing_over() {
        return Err(Errno::EPIPE);
    }
    let mut state = end.send.borrow_mut();
    let id = state.id;
    let blocked =
        || if nonblocking { Err(Errno::EAGAIN) } else { Ok(Outcome::Block(Wait::on(Event::PipeWritable(id)))) };
    if state.pipe.room() < RECORD_HEADER + length {
        return blocked();
    }
    let mut record = record_buffer(RECORD_HEADER + length)?;
    record[..RECORD_HEADER].copy_from_slice(&(length as u32).to_le_bytes());
    if segments.copy_in(&*caller.memory, &mut record[RECORD_HEADER..]).faulted {
        return Err(Errno::EFAULT);
    }
    match state.pipe.write_whole(&record)? {
        Transfer::Moved(_) => {}
        _ => return blocked(),
    }
    files.raise(Event::PipeReadable(id));
    done(length as u64)
}

/// `lseek(fd, offset, whence)`: `SEEK_SET`, `SEEK_CUR`, `SEEK_END`, and `SEEK_DATA` /
/// `SEEK_HOLE` (a file here is all data); on a directory, 0 rewinds and `n` moves to the
/// `n`th entry; `/dev/null` and `/dev/zero` stay at 0; ESPIPE on pipes, sockets and the console.
pub fn lseek(files: &mut Files, caller: &mut Caller<'_>, fd: u64, offset: u64, whence: u64) -> CallResult {
    let file = caller.file(fd)?;
    let mut open = file.borrow_mut();
    let offset = offset as i64;
    let whence = u32::try_from(whence).map_err(|_| Errno::EINVAL)?;
    let (current, size) = match &open.node {
        Node::Regular { inode, offset } => (*offset, files.fs.metadata(*inode)?.size),
        Node::Generated { bytes, offset, .. } => (*offset, bytes.len() as u64),
        Node::Directory { .. } => {
            drop(open);
            return super::directories::seek_directory(files, caller, &file, offset, whence);
        }
        Node::Device { device: Device::Null | Device::Zero, .. } => return done(0u64),
        Node::Device { device: Device::Console, .. } | Node::PipeReader(_) | Node::PipeWriter(_) | Node::Socket(_) => {
            return Err(Errno::ESPIPE)
        }
        Node::Path(_) => return Err(Errno::EBADF),
    };
    let target = match whence {
        uapi::SEEK_SET => Some(offset),
        uapi::SEEK_CUR => (current as i64).checked_add(offset),
        uapi::SEEK_END => (size as i64).checked_add(offset),
        uapi::SEEK_DATA | uapi::SEEK_HOLE => {
            if offset < 0 {
                return Err(Errno::EINVAL);
            }
            if offset as u64 >= size {
                return Err(Errno::ENXIO);
            }
            Some(if whence == uapi::SEEK_DATA { offset } else { size as i64 })
        }
        _ => return Err(Errno::EINVAL),
    };
    let target = target.filter(|&target| target >= 0).ok_or(Errno::EINVAL)? as u64;
    match &mut open.node {
        Node::Regular { offset, .. } | Node::Generated { offset, .. } => *offset = target,
        _ => {}
    }
    done(target)
}

/// What `CHUNK` guarantees: an atomic pipe write is one copy.
const _: () = assert!(CHUNK >= ATOMIC_WRITE);

#[cfg(test)]
mod tests {
    use super::super::testing::{World, BAD, BASE, BUFFER, SIZE, STRINGS2};
    use super::*;
    use crate::linux::layouts::IoVector;
    use crate::pipe::CAPACITY;
    use crate::user_memory::write_value;
    use uapi::*;

    fn blocked_on(outcome: CallResult) -> Vec<Event> {
        match outcome {
            Ok(Outcome::Block(wait)) => wait.events,
            other => panic!("should block: {other:?}"),
        }
    }

    #[test]
    fn pipes_carry_bytes_block_when_empty_and_end_when_writers_close() {
        let mut world = World::new();
        let (read_end, write_end) = world.pipe(0);
        let id = 1;
        assert_eq!(blocked_on(world.call(__NR_read, &[read_end, BUFFER, 10])), [Event::PipeReadable(id)]);
        assert!(world.files.take_events().is_empty(), "blocking changed nothing");
        assert_eq!(world.write(write_end, b"ping"), 4);
        assert_eq!(world.files.take_events(), [Event::PipeReadable(id)], "the sleeping reader is woken");
        assert_eq!(world.read(read_end, 10), b"ping", "the restarted read completes");
        assert_eq!(world.files.take_events(), [Event::PipeWritable(id)]);
        let copy = world.ok(__NR_dup, &[write_end]);
        world.ok(__NR_close, &[write_end]);
        assert!(world.files.take_events().is_empty(), "one writer is still open");
        assert_eq!(blocked_on(world.call(__NR_read, &[read_end, BUFFER, 10])), [Event::PipeReadable(id)]);
        world.ok(__NR_close, &[copy]);
        assert_eq!(world.files.take_events(), [Event::PipeReadable(id)], "the last writer wakes readers");
        assert_eq!(world.read(read_end, 10), b"", "end of file");
        assert_eq!(world.ok(__NR_read, &[read_end, BAD, 0]), 0, "a read of nothing touches nothing");
    }

    #[test]
    fn small_pipe_writes_are_atomic_and_large_ones_return_what_fit() {
        let mut world = World::new();
        let (read_end, write_end) = world.pipe(0);
        let fill = alloc::vec![b'a'; CAPACITY - 100];
        let mut written = 0;
        while written < fill.len() {
            written += world.write(write_end, &fill[written..(written + 0x1_0000).min(fill.len())]) as usize;
        }
        world.files.take_events();
        world.put(BUFFER, &[b'b'; 8192]);
        let atomic = world.call(__NR_write, &[write_end, BUFFER, ATOMIC_WRITE as u64]);
        assert_eq!(blocked_on(atomic), [Event::PipeWritable(1)], "PIPE_BUF bytes do not fit: nothing is written");
        assert!(world.files.take_events().is_empty());
        assert_eq!(world.ok(__NR_write, &[write_end, BUFFER, 100]), 100, "100 fit whole");
        assert_eq!(blocked_on(world.call(__NR_write, &[write_end, BUFFER, 1])), [Event::PipeWritable(1)], "full");
        assert_eq!(world.read(read_end, 200).len(), 200);
        assert_eq!(world.ok(__NR_write, &[write_end, BUFFER, 8192]), 200, "a large write takes the room there is");
        world.ok(__NR_fcntl, &[write_end, u64::from(F_SETFL), u64::from(O_NONBLOCK)]);
        assert_eq!(world.error(__NR_write, &[write_end, BUFFER, 8192]), Errno::EAGAIN);
        let mut total = 0;
        loop {
            let chunk = world.read(read_end, 0x1_0000);
            if chunk.is_empty() {
                break;
            }
            total += chunk.len();
            if total == CAPACITY {
                break;
            }
        }
        assert_eq!(total, CAPACITY, "every byte came through");
    }

    #[test]
    fn writing_to_a_pipe_without_readers_is_epipe_with_sigpipe() {
        let mut world = World::new();
        let (read_end, write_end) = world.pipe(0);
        world.ok(__NR_close, &[read_end]);
        assert_eq!(world.files.take_events(), [Event::PipeWritable(1)], "sleeping writers wake to see it");
        let outcome = world.call(__NR_write, &[write_end, BUFFER, 5]);
        assert_eq!(outcome, Ok(Outcome::FailAndSignal { error: Errno::EPIPE, signal: Signal::PIPE }));
        assert_eq!(world.ok(__NR_write, &[write_end, BUFFER, 0]), 0, "an empty write is not an error");
        assert_eq!(world.error(__NR_read, &[write_end, BUFFER, 1]), Errno::EBADF, "the write end cannot be read");
    }

    #[test]
    fn a_copy_that_faults_moves_what_came_before_it() {
        let mut world = World::new();
        let fd = world.open(b"/bin/busybox", O_RDONLY);
        let end = BASE + SIZE;
        assert_eq!(world.ok(__NR_read, &[fd, end - 10, 100]), 10, "10 bytes fit before unmapped memory");
        assert_eq!(world.bytes(end - 10, 10), (0..10).collect::<Vec<u8>>());
        assert_eq!(world.error(__NR_read, &[fd, BAD, 100]), Errno::EFAULT);
        assert_eq!(world.read(fd, 2), [10, 11], "the offset moved by what was copied, and no more");
        let (read_end, write_end) = world.pipe(0);
        world.write(write_end, b"kept");
        assert_eq!(world.error(__NR_read, &[read_end, BAD, 4]), Errno::EFAULT);
        assert_eq!(world.ok(__NR_read, &[read_end, end - 2, 4]), 2);
        assert_eq!(world.read(read_end, 4), b"pt", "bytes that did not reach memory stay in the pipe");
        assert_eq!(world.error(__NR_write, &[write_end, BAD, 4]), Errno::EFAULT);
        world.put(end - 3, b"abc");
        assert_eq!(world.ok(__NR_write, &[write_end, end - 3, 10]), 3);
        let out = world.open(b"/tmp/out", O_CREAT | O_WRONLY);
        assert_eq!(world.error(__NR_write, &[out, BAD, 4]), Errno::EFAULT);
        assert_eq!(world.ok(__NR_write, &[out, end - 3, 10]), 3);
    }

    #[test]
    fn vectored_transfers_scatter_and_gather() {
        let mut world = World::new();
        let out = world.open(b"/tmp/v", O_CREAT | O_RDWR);
        world.put(BUFFER, b"onetwothree");
        let vectors = [
            IoVector { base: BUFFER, length: 3 },
            IoVector { base: 0, length: 0 },
            IoVector { base: BUFFER + 3, length: 8 },
        ];
        for (index, vector) in vectors.iter().enumerate() {
            write_value(&mut world.memory, STRINGS2 + index as u64 * 16, vector).unwrap();
        }
        assert_eq!(world.ok(__NR_writev, &[out, STRINGS2, 3]), 11);
        world.ok(__NR_lseek, &[out, 0, u64::from(SEEK_SET)]);
        world.put(BUFFER, &[0; 11]);
        let scatter = [IoVector { base: BUFFER + 100, length: 4 }, IoVector { base: BUFFER, length: 20 }];
        for (index, vector) in scatter.iter().enumerate() {
            write_value(&mut world.memory, STRINGS2 + index as u64 * 16, vector).unwrap();
        }
        assert_eq!(world.ok(__NR_readv, &[out, STRINGS2, 2]), 11);
        assert_eq!(world.bytes(BUFFER + 100, 4), b"onet");
        assert_eq!(world.bytes(BUFFER, 7), b"wothree");
        assert_eq!(world.error(__NR_readv, &[out, STRINGS2, 1025]), Errno::EINVAL, "more than UIO_MAXIOV");
        assert_eq!(world.error(__NR_readv, &[out, BAD, 1]), Errno::EFAULT);
        write_value(&mut world.memory, STRINGS2, &IoVector { base: BUFFER, length: u64::MAX }).unwrap();
        assert_eq!(world.error(__NR_writev, &[out, STRINGS2, 1]), Errno::EINVAL, "a length past SSIZE_MAX");
        assert_eq!(world.error(__NR_writev, &[99, STRINGS2, 1]), Errno::EBADF);
    }

    #[test]
    fn positioned_transfers_leave_the_offset() {
        let mut world = World::new();
        let fd = world.open(b"/etc/motd", O_RDWR);
        assert_eq!(world.ok(__NR_pread64, &[fd, BUFFER, 3, 2]), 3);
        assert_eq!(world.bytes(BUFFER, 3), b"llo");
        world.put(BUFFER, b"J");
        assert_eq!(world.ok(__NR_pwrite64, &[fd, BUFFER, 1, 0]), 1);
        assert_eq!(world.read(fd, 10), b"Jello\n", "the offset stayed at 0");
        assert_eq!(world.error(__NR_pread64, &[fd, BUFFER, 1, u64::MAX]), Errno::EINVAL, "a negative offset");
        let (read_end, _) = world.pipe(0);
        assert_eq!(world.error(__NR_pread64, &[read_end, BUFFER, 1, 0]), Errno::ESPIPE);
        let append = world.open(b"/etc/motd", O_WRONLY | O_APPEND);
        world.put(BUFFER, b"!");
        world.ok(__NR_pwrite64, &[append, BUFFER, 1, 0]);
        assert_eq!(world.ok(__NR_pread64, &[fd, BUFFER, 10, 0]), 7, "pwrite with O_APPEND appends, as on Linux");
    }

    #[test]
    fn seeking_follows_whence() {
        let mut world = World::new();
        let fd = world.open(b"/etc/motd", O_RDWR);
        let seek = |world: &mut World, offset: i64, whence: u32| {
            world.call(__NR_lseek, &[fd, offset as u64, u64::from(whence)])
        };
        assert_eq!(seek(&mut world, 2, SEEK_SET), Ok(Outcome::Done(2)));
        assert_eq!(seek(&mut world, 1, SEEK_CUR), Ok(Outcome::Done(3)));
        assert_eq!(seek(&mut world, -1, SEEK_END), Ok(Outcome::Done(5)));
        assert_eq!(world.read(fd, 5), b"\n");
        assert_eq!(seek(&mut world, -10, SEEK_CUR), Err(Errno::EINVAL));
        assert_eq!(seek(&mut world, 0, 7), Err(Errno::EINVAL));
        assert_eq!(seek(&mut world, 3, SEEK_DATA), Ok(Outcome::Done(3)));
        assert_eq!(seek(&mut world, 3, SEEK_HOLE), Ok(Outcome::Done(6)));
        assert_eq!(seek(&mut world, 6, SEEK_DATA), Err(Errno::ENXIO));
        assert_eq!(seek(&mut world, 10, SEEK_SET), Ok(Outcome::Done(10)));
        assert_eq!(world.read(fd, 5), b"", "past the end reads nothing");
        world.write(fd, b"X");
        world.ok(__NR_lseek, &[fd, 0, u64::from(SEEK_SET)]);
        assert_eq!(world.read(fd, 20), b"hello\n\0\0\0\0X", "writing past the end fills the gap with zeros");
        let (read_end, _) = world.pipe(0);
        assert_eq!(world.error(__NR_lseek, &[read_end, 0, 0]), Errno::ESPIPE);
        let null = world.open(b"/dev/null", O_RDONLY);
        assert_eq!(world.ok(__NR_lseek, &[null, 100, 0]), 0);
    }

    #[test]
    fn the_console_reads_lines_and_writes_with_crlf() {
        let mut world = World::new();
        let console = world.open(b"/dev/console", O_RDWR);
        assert_eq!(world.write(console, b"$ \nok\n"), 6);
        assert_eq!(world.screen(), b"$ \r\nok\r\n");
        assert_eq!(blocked_on(world.call(__NR_read, &[console, BUFFER, 100])), [Event::ConsoleReadable]);
        assert!(world.files.console_input(b"ls").is_empty());
        assert!(world.files.take_events().is_empty(), "no line yet");
        world.files.console_input(b" -l\r");
        assert_eq!(world.files.take_events(), [Event::ConsoleReadable]);
        assert_eq!(world.screen(), b"ls -l\r\n", "echoed, the newline as CR LF");
        assert_eq!(world.read(console, 3), b"ls ", "a short buffer takes part of the line");
        assert_eq!(world.read(console, 100), b"-l\n");
        world.files.console_input(b"\x04");
        assert_eq!(world.read(console, 100), b"", "Ctrl-D on an empty line is end of file");
        world.put(BUFFER, &[b'x'; 0x1_8000]);
        assert_eq!(world.ok(__NR_write, &[console, BUFFER, 0x1_8000]), CONSOLE_WRITE_LIMIT as u64, "a bounded write");
        assert_eq!(world.screen().len(), CONSOLE_WRITE_LIMIT);
        let signals = world.files.console_input(b"sleep 9\x03");
        assert_eq!(signals, [crate::files::ConsoleSignal { signal: Signal::INTERRUPT, group: 1 }]);
        world.ok(__NR_fcntl, &[console, u64::from(F_SETFL), u64::from(O_NONBLOCK)]);
        assert_eq!(world.error(__NR_read, &[console, BUFFER, 100]), Errno::EAGAIN, "Ctrl-C discarded the line");
    }

    #[test]
    fn zero_reads_are_bounded() {
        let mut world = World::new();
        let zero = world.open(b"/dev/zero", O_RDONLY);
        assert_eq!(world.ok(__NR_read, &[zero, BASE, SIZE]), SIZE);
        let end = BASE + SIZE;
        assert_eq!(world.ok(__NR_read, &[zero, end - 5, 100]), 5);
        assert_eq!(world.error(__NR_read, &[zero, BAD, 100]), Errno::EFAULT);
        let mut big = World::new();
        big.memory.bytes = alloc::vec![1; 2 * ZERO_READ_LIMIT];
        let zero = big.open(b"/dev/zero", O_RDONLY);
        assert_eq!(big.ok(__NR_read, &[zero, BASE, 2 * ZERO_READ_LIMIT as u64]), ZERO_READ_LIMIT as u64);
        assert!(big.bytes(BASE + 0x1_0000, ZERO_READ_LIMIT - 0x1_0000).iter().all(|&byte| byte == 0));
        assert_eq!(big.bytes(BASE + ZERO_READ_LIMIT as u64, 1), [1], "and not a byte more");
    }
}
