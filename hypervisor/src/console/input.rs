//! Console input policy (SPEC.md §21): each domain's input ring, the Ctrl-] escape that
//! moves the input focus, and which domain the focus moves to. The system feeds it the
//! bytes the UART received and carries out what it decides.

use alloc::collections::VecDeque;

/// Bytes a domain's ring holds (SPEC.md §21.1).
pub const RING_BYTES: usize = 4096;
/// Ctrl-]: starts an escape.
pub const ESCAPE: u8 = 0x1d;

/// A domain's console input: the oldest byte is dropped when a new one finds it full.
#[derive(Debug, Default)]
pub struct InputRing {
    bytes: VecDeque<u8>,
    dropped: u64,
}

impl InputRing {
    /// An empty ring.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a received byte; a full ring drops it and counts it.
    pub fn push(&mut self, byte: u8) {
        if self.bytes.len() == RING_BYTES {
            self.bytes.pop_front();
            self.dropped += 1;
        }
        self.bytes.push_back(byte);
    }

    /// Copies the oldest bytes into `buffer` without consuming them; returns how many.
    pub fn peek(&self, buffer: &mut [u8]) -> usize {
        let count = buffer.len().min(self.bytes.len());
        for (slot, &byte) in buffer.iter_mut().zip(self.bytes.iter()) {
            *slot = byte;
        }
        count
    }

    /// Removes the oldest `count` bytes (those a `peek` just returned).
    pub fn consume(&mut self, count: usize) {
        let count = count.min(self.bytes.len());
        self.bytes.drain(..count);
    }

    /// Bytes waiting to be read.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether no byte is waiting.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Bytes lost to a full ring.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// What one received byte means.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Give this byte to the focused domain.
    Deliver(u8),
    /// Move the focus to domain `id` (Ctrl-] then a digit 1..=9).
    FocusTo(u32),
    /// Move the focus to the next live domain (Ctrl-] n).
    FocusNext,
    /// Raise VIRQ_DEBUG in the focused domain (Ctrl-] d).
    Debug,
    /// Nothing (the first byte of an escape, or an escape that means nothing).
    Nothing,
}

/// The escape state across receive interrupts.
#[derive(Copy, Clone, Debug, Default)]
pub struct EscapeDecoder {
    escaped: bool,
}

impl EscapeDecoder {
    /// A decoder outside any escape.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes one received byte.
    pub fn feed(&mut self, byte: u8) -> Input {
        if !self.escaped {
            if byte == ESCAPE {
                self.escaped = true;
                return Input::Nothing;
            }
            return Input::Deliver(byte);
        }
        self.escaped = false;
        match byte {
            b'1'..=b'9' => Input::FocusTo(u32::from(byte - b'0')),
            b'n' => Input::FocusNext,
            b'd' => Input::Debug,
            ESCAPE => Input::Deliver(ESCAPE),
            _ => Input::Nothing,
        }
    }
}

/// The live domain after `current` in id order, wrapping; `current` itself if it is the
/// only one; the lowest live id if `current` is `None` or no longer live.
pub fn next_focus(live: impl Iterator<Item = u32> + Clone, current: Option<u32>) -> Option<u32> {
    let lowest = live.clone().min()?;
    let Some(current) = current else { return Some(lowest) };
    Some(live.filter(|&id| id > current).min().unwrap_or(lowest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn decode(bytes: &[u8]) -> Vec<Input> {
        let mut decoder = EscapeDecoder::new();
        bytes.iter().map(|&byte| decoder.feed(byte)).filter(|input| *input != Input::Nothing).collect()
    }

    #[test]
    fn plain_bytes_are_delivered() {
        assert_eq!(decode(b"ab\n"), [Input::Deliver(b'a'), Input::Deliver(b'b'), Input::Deliver(b'\n')]);
    }

    #[test]
    fn escapes_move_the_focus_and_are_not_delivered() {
        assert_eq!(decode(b"x\x1d2y"), [Input::Deliver(b'x'), Input::FocusTo(2), Input::Deliver(b'y')]);
        assert_eq!(decode(b"\x1d9\x1dn\x1dd"), [Input::FocusTo(9), Input::FocusNext, Input::Debug]);
    }

    #[test]
    fn a_doubled_escape_delivers_one_and_unknown_escapes_vanish() {
        assert_eq!(decode(b"\x1d\x1d"), [Input::Deliver(ESCAPE)]);
        assert_eq!(decode(b"\x1d0a\x1dxb"), [Input::Deliver(b'a'), Input::Deliver(b'b')]);
        // The escape state survives between interrupts (one decoder, bytes fed apart).
        let mut decoder = EscapeDecoder::new();
        assert_eq!(decoder.feed(ESCAPE), Input::Nothing);
        assert_eq!(decoder.feed(b'3'), Input::FocusTo(3));
        assert_eq!(decoder.feed(b'3'), Input::Deliver(b'3'));
    }

    #[test]
    fn a_full_ring_drops_the_oldest() {
        let mut ring = InputRing::new();
        for index in 0..RING_BYTES + 10 {
            ring.push(index as u8);
        }
        assert_eq!(ring.len(), RING_BYTES);
        assert_eq!(ring.dropped(), 10);
        let mut first = [0u8; 2];
        assert_eq!(ring.peek(&mut first), 2);
        assert_eq!(first, [10, 11]);
    }

    #[test]
    fn peek_then_consume_reads_in_order() {
        let mut ring = InputRing::new();
        for &byte in b"hello" {
            ring.push(byte);
        }
        let mut buffer = [0u8; 3];
        assert_eq!(ring.peek(&mut buffer), 3);
        assert_eq!(&buffer, b"hel");
        // Peeking twice without consuming sees the same bytes (a failed copy-out loses nothing).
        assert_eq!(ring.peek(&mut buffer), 3);
        ring.consume(3);
        assert!(!ring.is_empty());
        let mut rest = [0u8; 8];
        assert_eq!(ring.peek(&mut rest), 2);
        assert_eq!(&rest[..2], b"lo");
        ring.consume(99);
        assert!(ring.is_empty());
        assert_eq!(ring.peek(&mut rest), 0);
    }

    #[test]
    fn the_focus_cycles_through_live_domains() {
        let live = [1u32, 3, 4];
        assert_eq!(next_focus(live.iter().copied(), Some(1)), Some(3));
        assert_eq!(next_focus(live.iter().copied(), Some(4)), Some(1));
        // A focused domain that died: the next one after its id.
        assert_eq!(next_focus(live.iter().copied(), Some(2)), Some(3));
        assert_eq!(next_focus(live.iter().copied(), None), Some(1));
        assert_eq!(next_focus([5u32].iter().copied(), Some(5)), Some(5));
        assert_eq!(next_focus([0u32; 0].iter().copied(), Some(5)), None);
    }
}
