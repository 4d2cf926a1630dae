//! The buffer behind a pipe: a bounded byte queue with Linux's pipe semantics, leaving
//! the blocking to the scheduler.
//!
//! A write of at most [`ATOMIC_WRITE`] bytes goes in whole or not at all (POSIX's
//! `PIPE_BUF` guarantee, so lines from several writers never interleave); a larger write
//! may go in part. A read takes what is there. Whether a caller blocks, gets EAGAIN, EOF
//! or EPIPE depends on the other end, which [`Pipe`] tracks as open counts.
//!
//! The buffer grows with what it holds (up to [`CAPACITY`]) and its growth is fallible, so
//! an idle pipe costs nothing and a kernel short of memory answers ENOMEM instead of
//! stopping. A reader may look at the bytes before taking them ([`Pipe::peek`],
//! [`Pipe::consume`]), so bytes are only taken once they reached the reader's memory.
//!
//! Each direction of a socket pair is a pipe buffer too; a packet socket's records go in
//! with [`Pipe::write_whole`], never split.

use alloc::collections::VecDeque;

use crate::linux::Errno;

/// Bytes a pipe holds (Linux's default, 16 pages).
pub const CAPACITY: usize = 16 * 4096;

/// Writes up to this size are atomic (Linux's `PIPE_BUF`).
pub const ATOMIC_WRITE: usize = linux_raw_sys::general::PIPE_BUF as usize;

/// What a read or write would do now.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Transfer {
    /// This many bytes moved (more than zero).
    Moved(usize),
    /// Nothing can move yet: the caller sleeps on the pipe, or gets EAGAIN if non-blocking.
    WouldBlock,
    /// Read: every writer is gone and the buffer is empty.
    EndOfFile,
}

/// One pipe: the buffer and how many open descriptions each end has.
pub struct Pipe {
    buffer: VecDeque<u8>,
    readers: usize,
    writers: usize,
}

impl Default for Pipe {
    fn default() -> Self {
        Self::new()
    }
}

impl Pipe {
    /// An empty pipe with one reader and one writer (as `pipe2` returns it).
    pub fn new() -> Pipe {
        Pipe { buffer: VecDeque::new(), readers: 1, writers: 1 }
    }

    /// Bytes waiting to be read.
    pub fn len(&self) -> usize {
        self.buffer.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.buffer.is_empty()
    }

    /// Room for writing.
    pub fn room(&self) -> usize {
        CAPACITY - self.buffer.len()
    }

    /// Whether a read end is still open (a write would not be EPIPE).
    pub const fn has_readers(&self) -> bool {
        self.readers > 0
    }

    /// Whether a write end is still open (an empty pipe is not at end of file).
    pub const fn has_writers(&self) -> bool {
        self.writers > 0
    }

    /// Another description of the read end (dup, fork).
    pub fn add_reader(&mut self) {
        self.readers += 1;
    }

    /// Another description of the write end.
    pub fn add_writer(&mut self) {
        self.writers += 1;
    }

    /// A read end closed; returns whether none is left.
    pub fn close_reader(&mut self) -> bool {
        self.readers = self.readers.saturating_sub(1);
        self.readers == 0
    }

    /// A write end closed; returns whether none is left.
    pub fn close_writer(&mut self) -> bool {
        self.writers = self.writers.saturating_sub(1);
        self.writers == 0
    }

    /// Copies up to `into.len()` waiting bytes into `into` without taking them; what a
    /// read would do ([`Transfer::Moved`] counts the bytes copied).
    pub fn peek(&self, into: &mut [u8]) -> Transfer {
        if into.is_empty() {
            return Transfer::Moved(0);
        }
        if self.buffer.is_empty() {
            return if self.writers == 0 { Transfer::EndOfFile } else { Transfer::WouldBlock };
        }
        let count = into.len().min(self.buffer.len());
        let (front, back) = self.buffer.as_slices();
        let first = count.min(front.len());
        into[..first].copy_from_slice(&front[..first]);
        into[first..count].copy_from_slice(&back[..count - first]);
        Transfer::Moved(count)
    }

    /// Copies the waiting bytes from `offset` on into `into` without taking them; how many
    /// were copied (fewer than `into.len()` if fewer wait there).
    pub fn peek_at(&self, offset: usize, into: &mut [u8]) -> usize {
        let count = into.len().min(self.buffer.len().saturating_sub(offset));
        if count == 0 {
            return 0;
        }
        for (slot, byte) in into.iter_mut().zip(self.buffer.range(offset..offset + count)) {
            *slot = *byte;
        }
        count
    }

    /// Takes `count` bytes that [`Pipe::peek`] showed (fewer if fewer are waiting).
    pub fn consume(&mut self, count: usize) {
        let count = count.min(self.buffer.len());
        self.buffer.drain(..count);
        if self.buffer.is_empty() {
            // An emptied pipe gives its memory back; a busy one keeps it.
            self.buffer = VecDeque::new();
        }
    }

    /// Moves up to `into.len()` waiting bytes into `into`.
    pub fn read(&mut self, into: &mut [u8]) -> Transfer {
        let transfer = self.peek(into);
        if let Transfer::Moved(count) = transfer {
            self.consume(count);
        }
        transfer
    }

    /// Appends from `from`: an atomic-sized write whole or not at all, a larger one as
    /// much as fits. EPIPE when no reader is left (the caller also raises SIGPIPE);
    /// ENOMEM if the buffer cannot grow.
    pub fn write(&mut self, from: &[u8]) -> Result<Transfer, Errno> {
        if self.readers == 0 {
            return Err(Errno::EPIPE);
        }
        if from.is_empty() {
            return Ok(Transfer::Moved(0));
        }
        let room = self.room();
        if room == 0 || (from.len() <= ATOMIC_WRITE && from.len() > room) {
            return Ok(Transfer::WouldBlock);
        }
        let count = from.len().min(room);
        self.buffer.try_reserve(count).map_err(|_| Errno::ENOMEM)?;
        self.buffer.extend(&from[..count]);
        Ok(Transfer::Moved(count))
    }

    /// Appends all of `from` or nothing ([`Transfer::WouldBlock`] while it does not fit),
    /// whatever its size: a packet socket's record is never split. EPIPE when no reader is
    /// left; ENOMEM if the buffer cannot grow.
    pub fn write_whole(&mut self, from: &[u8]) -> Result<Transfer, Errno> {
        if self.readers == 0 {
            return Err(Errno::EPIPE);
        }
        if from.len() > self.room() {
            return Ok(Transfer::WouldBlock);
        }
        self.buffer.try_reserve(from.len()).map_err(|_| Errno::ENOMEM)?;
        self.buffer.extend(from);
        Ok(Transfer::Moved(from.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_come_out_in_order_across_the_wrap() {
        let mut pipe = Pipe::new();
        let mut sink = alloc::vec![0u8; CAPACITY];
        let chunk: Vec<u8> = (0..=255u8).cycle().take(CAPACITY - 100).collect();
        assert_eq!(pipe.write(&chunk), Ok(Transfer::Moved(CAPACITY - 100)));
        assert_eq!(pipe.read(&mut sink[..CAPACITY - 200]), Transfer::Moved(CAPACITY - 200));
        // 100 bytes left near the end; the next write wraps.
        let more: Vec<u8> = (0..300u32).map(|value| (value * 7) as u8).collect();
        assert_eq!(pipe.write(&more), Ok(Transfer::Moved(300)));
        assert_eq!(pipe.read(&mut sink), Transfer::Moved(400));
        assert_eq!(&sink[..100], &chunk[CAPACITY - 200..]);
        assert_eq!(&sink[100..400], &more[..]);
        assert!(pipe.is_empty());
    }

    #[test]
    fn small_writes_are_atomic_and_large_ones_partial() {
        let mut pipe = Pipe::new();
        let fill = alloc::vec![1u8; CAPACITY - 10];
        assert_eq!(pipe.write(&fill), Ok(Transfer::Moved(CAPACITY - 10)));
        assert_eq!(pipe.write(&[2u8; 20]), Ok(Transfer::WouldBlock), "20 bytes do not fit whole");
        assert_eq!(pipe.write(&[2u8; 10]), Ok(Transfer::Moved(10)));
        assert_eq!(pipe.write(&[3u8; 1]), Ok(Transfer::WouldBlock), "full");
        let mut sink = [0u8; 5000];
        assert_eq!(pipe.read(&mut sink), Transfer::Moved(5000));
        let large = alloc::vec![4u8; ATOMIC_WRITE + 1000];
        assert_eq!(pipe.write(&large), Ok(Transfer::Moved(5000)), "a large write goes in part");
    }

    #[test]
    fn peeked_bytes_stay_until_consumed() {
        let mut pipe = Pipe::new();
        pipe.write(b"hello").unwrap();
        let mut sink = [0u8; 3];
        assert_eq!(pipe.peek(&mut sink), Transfer::Moved(3));
        assert_eq!(&sink, b"hel");
        assert_eq!(pipe.len(), 5, "peeking takes nothing");
        pipe.consume(3);
        assert_eq!(pipe.read(&mut sink), Transfer::Moved(2));
        assert_eq!(&sink[..2], b"lo");
        pipe.consume(100);
        assert!(pipe.is_empty());
    }

    #[test]
    fn whole_writes_go_in_whole_and_bytes_can_be_peeked_anywhere() {
        let mut pipe = Pipe::new();
        let large = alloc::vec![5u8; CAPACITY - 10];
        assert_eq!(pipe.write_whole(&large), Ok(Transfer::Moved(CAPACITY - 10)), "larger than PIPE_BUF, still whole");
        assert_eq!(pipe.write_whole(&[6u8; 11]), Ok(Transfer::WouldBlock), "11 bytes do not fit: none go in");
        assert_eq!(pipe.len(), CAPACITY - 10);
        assert_eq!(pipe.write_whole(&[6, 7, 8]), Ok(Transfer::Moved(3)));
        let mut sink = [0u8; 8];
        assert_eq!(pipe.peek_at(CAPACITY - 11, &mut sink), 4);
        assert_eq!(&sink[..4], &[5, 6, 7, 8]);
        assert_eq!(pipe.peek_at(CAPACITY, &mut sink), 0, "past the end");
        assert!(pipe.close_reader());
        assert_eq!(pipe.write_whole(b"x"), Err(Errno::EPIPE));
    }

    #[test]
    fn the_ends_decide_eof_and_epipe() {
        let mut pipe = Pipe::new();
        let mut sink = [0u8; 8];
        assert_eq!(pipe.read(&mut sink), Transfer::WouldBlock);
        pipe.write(b"last").unwrap();
        pipe.add_writer();
        assert!(!pipe.close_writer());
        assert!(pipe.close_writer());
        assert_eq!(pipe.read(&mut sink), Transfer::Moved(4), "what was written is still read");
        assert_eq!(pipe.read(&mut sink), Transfer::EndOfFile);
        assert!(!pipe.has_writers());
        assert!(pipe.close_reader());
        assert!(!pipe.has_readers());
        assert_eq!(pipe.write(b"x"), Err(Errno::EPIPE));
    }
}
