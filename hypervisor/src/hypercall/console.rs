//! `console_io`: writing to and reading from the console.

use crate::hypercall::guest::{empty_array, error, Disposition, Guest, Progress};
use hypercall_abi::hypercall::console_cmd;
use hypercall_abi::Errno;

/// Bytes a `WRITE` sends to the console between two preemption points (SPEC.md §5.5):
/// each byte may be an I/O exit, ~1–6 µs under emulation.
const WRITE_GROUP: usize = 64;

/// `console_io(WRITE | READ, count, buffer)`; a `WRITE` preempted after `done` bytes
/// goes on from there.
pub(super) fn console_io(arguments: &[u64; 6], done: u64, guest: &mut dyn Guest) -> Disposition {
    let [command, count, buffer, ..] = *arguments;
    match command {
        console_cmd::WRITE => console_write(count, buffer, done, guest),
        console_cmd::READ => console_read(count, buffer, guest),
        _ => error(Errno::EINVAL),
    }
}

/// `console_io(WRITE, count, buffer)` from byte `from`. The whole buffer is read (and so
/// validated) before the first byte goes out, so a fault writes nothing; each run reads
/// it again, unchanged, because the caller cannot run before its hypercall returns.
fn console_write(count: u64, buffer: u64, from: u64, guest: &mut dyn Guest) -> Disposition {
    if count > console_cmd::WRITE_MAX {
        return error(Errno::EINVAL);
    }
    if count == 0 {
        return Disposition::Return(empty_array(buffer).map_or_else(Errno::to_return, |()| 0));
    }
    let mut bytes = [0u8; console_cmd::WRITE_MAX as usize];
    let bytes = &mut bytes[..count as usize];
    if guest.read(buffer, bytes).is_err() {
        return error(Errno::EFAULT);
    }
    let mut written = (from as usize).min(bytes.len());
    let start = written;
    while written < bytes.len() {
        if written > start && guest.preemption_due() {
            return Disposition::Preempted(Progress::at(written as u64));
        }
        let end = group_end(bytes, written + WRITE_GROUP);
        guest.console_write(&bytes[written..end]);
        written = end;
    }
    Disposition::Return(count as i64)
}

/// Where a group of bytes that should end at `wanted` ends: at the end of the bytes, or
/// past any UTF-8 continuation bytes there (at most 3), so a preemption never splits a
/// character the console decodes and escapes as a whole.
pub(super) fn group_end(bytes: &[u8], wanted: usize) -> usize {
    let mut end = wanted.min(bytes.len());
    while end < bytes.len() && end < wanted + 3 && bytes[end] & 0xc0 == 0x80 {
        end += 1;
    }
    end
}

/// `console_io(READ, count, buffer)`: moves up to `count` pending input bytes to
/// `buffer`. The whole `[buffer, buffer + count)` must be writable, whether or not input
/// is waiting, so the result does not depend on timing; on -EFAULT nothing is consumed
/// and guest memory is unchanged (the checked copy validates every page before writing).
pub(super) fn console_read(count: u64, buffer: u64, guest: &mut dyn Guest) -> Disposition {
    if count > console_cmd::WRITE_MAX {
        return error(Errno::EINVAL);
    }
    if count == 0 {
        return Disposition::Return(empty_array(buffer).map_or_else(Errno::to_return, |()| 0));
    }
    let mut bytes = [0u8; console_cmd::WRITE_MAX as usize];
    let bytes = &mut bytes[..count as usize];
    // The bytes past the input are written back as they were, so writing the whole
    // range checks it without changing what the guest had there.
    if guest.read(buffer, bytes).is_err() {
        return error(Errno::EFAULT);
    }
    let moved = guest.console_peek(bytes).min(bytes.len());
    if guest.write(buffer, bytes).is_err() {
        return error(Errno::EFAULT);
    }
    guest.console_consume(moved);
    Disposition::Return(moved as i64)
}
