//! One end of a socket pair: a bidirectional byte channel made of two pipe buffers, the
//! one it receives from and the one it sends into (its peer's receiving buffer).
//!
//! Each buffer has exactly one receiving and one sending end, so the buffer's open
//! counts are that end's state: a receiving end that stopped (its `shutdown(SHUT_RD)` or
//! close) makes the buffer readerless, so the peer's writes fail with EPIPE; a sending
//! end that stopped (`shutdown(SHUT_WR)` or close) makes it writerless, so the receiver
//! reads what is left and then end of file. `shutdown(SHUT_RD)` also stops the sending
//! side of the buffer it reads, as Linux ends the peer's sending too.
//!
//! A `SOCK_SEQPACKET` end keeps each write as one record: a [`RECORD_HEADER`] with its
//! length, then its bytes, written whole.

use linux_raw_sys::net;

use super::open_file::SharedPipe;
use crate::pipe::{ATOMIC_WRITE, CAPACITY};

/// The bytes in front of each record of a packet socket: its length (little-endian).
pub(crate) const RECORD_HEADER: usize = 4;

/// The largest record a packet socket carries (EMSGSIZE past it): one that fills its
/// buffer.
pub(crate) const MAX_RECORD: usize = CAPACITY - RECORD_HEADER;

/// What a socket carries.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum SocketKind {
    /// `SOCK_STREAM`: bytes, as a pipe.
    Stream,
    /// `SOCK_SEQPACKET`: records, each read whole by one read (what does not fit is
    /// dropped).
    Packet,
}

impl SocketKind {
    /// The `SOCK_*` number (`SO_TYPE`).
    pub(crate) const fn number(self) -> u32 {
        match self {
            SocketKind::Stream => net::SOCK_STREAM,
            SocketKind::Packet => net::SOCK_SEQPACKET,
        }
    }
}

/// One end of a socket pair.
pub(crate) struct SocketEnd {
    /// Stream or packets.
    pub kind: SocketKind,
    /// The buffer this end reads.
    pub receive: SharedPipe,
    /// The buffer this end writes (the one its peer reads).
    pub send: SharedPipe,
}

impl SocketEnd {
    /// Whether reading ends once the receiving buffer is empty: the peer stopped sending
    /// (`SHUT_WR`, close) or this end stopped receiving (`SHUT_RD`).
    pub(crate) fn reading_over(&self) -> bool {
        !self.receive.borrow().pipe.has_writers()
    }

    /// Whether writing fails with EPIPE: this end stopped sending or its peer stopped
    /// receiving.
    pub(crate) fn writing_over(&self) -> bool {
        let send = self.send.borrow();
        !send.pipe.has_writers() || !send.pipe.has_readers()
    }

    /// Whether a write would not sleep: it fails at once, or a write of `PIPE_BUF` bytes
    /// (as a record, for packets) fits.
    pub(crate) fn writable(&self) -> bool {
        let wanted = match self.kind {
            SocketKind::Stream => ATOMIC_WRITE,
            SocketKind::Packet => RECORD_HEADER + ATOMIC_WRITE,
        };
        self.writing_over() || self.send.borrow().pipe.room() >= wanted
    }

    /// The bytes waiting to be read (`FIONREAD`): for packets, every record's bytes
    /// without their headers, as Linux counts them.
    pub(crate) fn waiting(&self) -> usize {
        let receive = self.receive.borrow();
        let pipe = &receive.pipe;
        match self.kind {
            SocketKind::Stream => pipe.len(),
            SocketKind::Packet => {
                let (mut at, mut total) = (0, 0);
                let mut header = [0u8; RECORD_HEADER];
                while pipe.peek_at(at, &mut header) == RECORD_HEADER {
                    let length = u32::from_le_bytes(header) as usize;
                    total += length;
                    at += RECORD_HEADER + length;
                }
                total
            }
        }
    }
}
