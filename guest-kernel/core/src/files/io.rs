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
//! * The console: a read returns one line (canonical mode) or what has arrived (raw
//!   mode), sleeping on [`Event::ConsoleReadable`]; a write is shown at once.
//! * `/dev/null` reads end at once, `/dev/zero` reads give zeros (at most
//!   [`ZERO_READ_LIMIT`] bytes a call: the kernel cannot be preempted, so a huge read is
//!   cut short, as Linux cuts it when a signal is pending); writes to either vanish.

use linux_raw_sys::general as uapi;

use super::caller::Caller;
use super::open_file::{Device, FileRef, Node, SharedPipe};
use super::outcome::{done, CallResult, Event, Outcome, Wait};
use super::transfer::{buffer, transferred, Segments, CHUNK};
use super::world::Files;
use crate::linux::Errno;
use crate::pipe::{Transfer, ATOMIC_WRITE};
use crate::signal::Signal;
use crate::tty::Peek;

/// Most bytes one read of `/dev/zero` gives.
pub const ZERO_READ_LIMIT: usize = 1 << 20;

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

/// `pread64(fd, buffer, count, offset)`: ESPIPE on pipes and the console.
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
            while segments.remaining() > 0 {
                let copied = segments.copy_in(&*caller.memory, &mut chunk);
                files.console.write(&chunk[..copied.count]);
                written += copied.count;
                if copied.faulted {
                    return done(transferred(written, true)?);
                }
            }
            done(written as u64)
        }
        Node::PipeWriter(pipe) => write_pipe(files, caller, pipe, segments, nonblocking),
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

/// `lseek(fd, offset, whence)`: `SEEK_SET`, `SEEK_CUR`, `SEEK_END`, and `SEEK_DATA` /
/// `SEEK_HOLE` (a file here is all data); on a directory, 0 rewinds and `n` moves to the
/// `n`th entry; `/dev/null` and `/dev/zero` stay at 0; ESPIPE on pipes and the console.
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
        Node::Device { device: Device::Console, .. } | Node::PipeReader(_) | Node::PipeWriter(_) => {
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
