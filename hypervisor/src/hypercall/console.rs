//! `console_io`: writing to and reading from the console.

use crate::hypercall::guest::{error, Disposition, Guest};
use hypercall_abi::hypercall::console_cmd;
use hypercall_abi::Errno;

/// `console_io(WRITE | READ, count, buffer)`.
pub(super) fn console_io(arguments: &[u64; 6], guest: &mut dyn Guest) -> Disposition {
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
        console_cmd::READ => console_read(count, buffer, guest),
        _ => error(Errno::EINVAL),
    }
}

/// `console_io(READ, count, buffer)`: moves up to `count` pending input bytes to
/// `buffer`. The whole `[buffer, buffer + count)` must be writable, whether or not input
/// is waiting, so the result does not depend on timing; on -EFAULT nothing is consumed
/// and guest memory is unchanged (the checked copy validates every page before writing).
pub(super) fn console_read(count: u64, buffer: u64, guest: &mut dyn Guest) -> Disposition {
    if count > console_cmd::WRITE_MAX {
        return error(Errno::EINVAL);
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
