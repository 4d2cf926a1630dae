//! Moving bytes between user buffers and the kernel: a transfer's buffers as segments
//! (one for `read`, an `iovec` array for `readv`), copied a page at a time so that a
//! transfer running into unmapped memory moves what came before it (as Linux's partial
//! copies do), and bounded like Linux's (`MAX_RW_COUNT`, `UIO_MAXIOV`).

use alloc::vec::Vec;
use linux_raw_sys::general as uapi;

use crate::linux::layouts::IoVector;
use crate::linux::Errno;
use crate::user_memory::{read_value, UserMemory};

/// Most bytes one call moves (Linux's `MAX_RW_COUNT`: `INT_MAX` rounded down to a page).
pub(crate) const MAX_TRANSFER: u64 = 0x7fff_f000;

/// Most bytes moved through a kernel buffer at once; at least `PIPE_BUF`, so an atomic
/// pipe write is one copy.
pub(crate) const CHUNK: usize = 16 * 1024;

const PAGE: u64 = 4096;

/// A transfer's user buffers and how far it has come.
pub(crate) struct Segments {
    list: Vec<IoVector>,
    index: usize,
    offset: u64,
    remaining: u64,
}

impl Segments {
    /// One buffer (`read`, `write`), cut to [`MAX_TRANSFER`].
    pub(crate) fn single(base: u64, length: u64) -> Segments {
        let length = length.min(MAX_TRANSFER);
        Segments { list: alloc::vec![IoVector { base, length }], index: 0, offset: 0, remaining: length }
    }

    /// An `iovec` array of `count` entries at `address` (`readv`, `writev`): EINVAL for
    /// more than `UIO_MAXIOV` entries or lengths summing past `SSIZE_MAX`, EFAULT if the
    /// array is unreadable; the total is cut to [`MAX_TRANSFER`] as Linux does.
    pub(crate) fn vector(memory: &dyn UserMemory, address: u64, count: u64) -> Result<Segments, Errno> {
        if count > u64::from(uapi::UIO_MAXIOV) {
            return Err(Errno::EINVAL);
        }
        let mut list = Vec::with_capacity(count as usize);
        let mut total = 0u64;
        for index in 0..count {
            let at = address.checked_add(index * 16).ok_or(Errno::EFAULT)?;
            let mut vector: IoVector = read_value(memory, at)?;
            if vector.length > i64::MAX as u64 {
                return Err(Errno::EINVAL);
            }
            total = total.checked_add(vector.length).filter(|&total| total <= i64::MAX as u64).ok_or(Errno::EINVAL)?;
            // Past the cut, buffers shrink (and the rest vanish), as Linux cuts them.
            let before = total - vector.length;
            vector.length = vector.length.min(MAX_TRANSFER.saturating_sub(before));
            list.push(vector);
        }
        let remaining = total.min(MAX_TRANSFER);
        Ok(Segments { list, index: 0, offset: 0, remaining })
    }

    /// Bytes still to move.
    pub(crate) const fn remaining(&self) -> u64 {
        self.remaining
    }

    /// The next user span to copy: at most `limit` bytes, within one buffer and one page.
    fn next_span(&mut self, limit: usize) -> Option<(u64, usize)> {
        while let Some(vector) = self.list.get(self.index) {
            if self.offset < vector.length {
                let address = vector.base.wrapping_add(self.offset);
                let to_page_end = PAGE - address % PAGE;
                let length = (vector.length - self.offset).min(to_page_end).min(limit as u64);
                return Some((address, length as usize));
            }
            self.index += 1;
            self.offset = 0;
        }
        None
    }

    fn advance(&mut self, count: usize) {
        self.offset += count as u64;
        self.remaining -= count as u64;
    }

    /// Copies `bytes` out to the buffers: how many were copied, and whether the copy
    /// stopped at memory the process may not write.
    pub(crate) fn copy_out(&mut self, memory: &mut dyn UserMemory, bytes: &[u8]) -> Copied {
        let mut copied = 0;
        while copied < bytes.len() {
            let Some((address, length)) = self.next_span(bytes.len() - copied) else { break };
            if memory.write(address, &bytes[copied..copied + length]).is_err() {
                return Copied { count: copied, faulted: true };
            }
            self.advance(length);
            copied += length;
        }
        Copied { count: copied, faulted: false }
    }

    /// Fills `into` from the buffers: how many bytes came, and whether the copy stopped
    /// at memory the process may not read.
    pub(crate) fn copy_in(&mut self, memory: &dyn UserMemory, into: &mut [u8]) -> Copied {
        let mut copied = 0;
        while copied < into.len() {
            let Some((address, length)) = self.next_span(into.len() - copied) else { break };
            if memory.read(address, &mut into[copied..copied + length]).is_err() {
                return Copied { count: copied, faulted: true };
            }
            self.advance(length);
            copied += length;
        }
        Copied { count: copied, faulted: false }
    }
}

/// What a copy did.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Copied {
    /// Bytes copied.
    pub count: usize,
    /// It stopped at an inaccessible address.
    pub faulted: bool,
}

/// The result of a transfer that moved `count` bytes in total: the count, or EFAULT if
/// nothing moved because the first byte was inaccessible (Linux's rule: a partial
/// transfer reports what moved).
pub(crate) fn transferred(count: usize, faulted: bool) -> Result<u64, Errno> {
    if count == 0 && faulted {
        Err(Errno::EFAULT)
    } else {
        Ok(count as u64)
    }
}

/// A kernel buffer of `length` bytes (at most [`CHUNK`]), ENOMEM rather than a stop if
/// the heap cannot give it.
pub(crate) fn buffer(length: usize) -> Result<Vec<u8>, Errno> {
    let length = length.min(CHUNK);
    let mut bytes = Vec::new();
    bytes.try_reserve_exact(length).map_err(|_| Errno::ENOMEM)?;
    bytes.resize(length, 0);
    Ok(bytes)
}
