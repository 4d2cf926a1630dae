//! What a source's bytes may put on the console wire (SPEC.md §6.2). Printable ASCII, tab
//! and well-formed UTF-8 for characters from U+00A0 on pass through; every other byte is
//! written as `\xNN`. That covers the C0 controls and DEL (a guest could otherwise end a
//! line and forge another source's), and the C1 controls in both spellings a terminal may
//! act on: the raw bytes 0x80–0x9f (0x9b is CSI to an 8-bit terminal) and U+0080–U+009F
//! in UTF-8 (`c2 9b` is CSI to a UTF-8 one). Invalid UTF-8 is escaped byte by byte, so
//! what reaches the terminal is always valid UTF-8 without a control character.
//!
//! Newline is the caller's: it ends a line, after [`Escaper::flush`].

/// Bytes of one UTF-8 sequence, at most.
const SEQUENCE_MAX: usize = 4;

/// One source's escaping state: the start of a multi-byte sequence whose remaining bytes
/// have not arrived yet (a sequence may be split across two writes).
#[derive(Clone, Debug, Default)]
pub struct Escaper {
    pending: [u8; SEQUENCE_MAX],
    length: usize,
}

impl Escaper {
    /// An escaper with nothing pending.
    pub const fn new() -> Self {
        Escaper { pending: [0; SEQUENCE_MAX], length: 0 }
    }

    /// Whether part of a sequence is held back.
    pub fn is_pending(&self) -> bool {
        self.length != 0
    }

    /// Passes `byte` (never a newline: see the module) to `put`, escaped or held back as
    /// the rules say.
    pub fn push(&mut self, byte: u8, put: &mut impl FnMut(u8)) {
        if self.length != 0 {
            if continues(self.pending[0], self.length, byte) {
                self.pending[self.length] = byte;
                self.length += 1;
                if self.length == sequence_length(self.pending[0]) {
                    self.complete(put);
                }
                return;
            }
            // The sequence broke off: what came so far is not a character.
            self.flush(put);
        }
        match byte {
            b'\t' | 0x20..=0x7e => put(byte),
            _ if sequence_length(byte) > 1 => {
                self.pending[0] = byte;
                self.length = 1;
            }
            _ => escape(byte, put),
        }
    }

    /// Escapes whatever part of a sequence is held back (the line ends, another source
    /// takes the wire, or the bytes stop).
    pub fn flush(&mut self, put: &mut impl FnMut(u8)) {
        for &byte in &self.pending[..self.length] {
            escape(byte, put);
        }
        self.length = 0;
    }

    fn complete(&mut self, put: &mut impl FnMut(u8)) {
        // Two-byte sequences c2 80 ..= c2 9f are U+0080 ..= U+009F, the C1 controls.
        let control = self.pending[0] == 0xc2 && self.pending[1] <= 0x9f;
        for &byte in &self.pending[..self.length] {
            if control {
                escape(byte, put);
            } else {
                put(byte);
            }
        }
        self.length = 0;
    }
}

/// The length of the well-formed sequence `lead` starts, or 1 (ASCII, or a byte that
/// starts none: a continuation byte, c0, c1, f5..=ff).
fn sequence_length(lead: u8) -> usize {
    match lead {
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => 1,
    }
}

/// Whether `byte` may be byte `index` (from 1) of a sequence led by `lead`: the Unicode
/// table of well-formed sequences, which leaves out overlong forms, surrogates and code
/// points above U+10FFFF.
fn continues(lead: u8, index: usize, byte: u8) -> bool {
    let range = match (lead, index) {
        (0xe0, 1) => 0xa0..=0xbf,
        (0xed, 1) => 0x80..=0x9f,
        (0xf0, 1) => 0x90..=0xbf,
        (0xf4, 1) => 0x80..=0x8f,
        _ => 0x80..=0xbf,
    };
    range.contains(&byte)
}

fn escape(byte: u8, put: &mut impl FnMut(u8)) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for escaped in [b'\\', b'x', HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0xf)]] {
        put(escaped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wire bytes for `writes`, one write after another, then a flush.
    fn wire(writes: &[&[u8]]) -> String {
        let mut escaper = Escaper::new();
        let mut out = Vec::new();
        for write in writes {
            for &byte in *write {
                escaper.push(byte, &mut |byte| out.push(byte));
            }
        }
        escaper.flush(&mut |byte| out.push(byte));
        String::from_utf8(out).expect("the wire is always UTF-8")
    }

    #[test]
    fn printable_ascii_and_tab_pass_and_c0_and_del_are_escaped() {
        assert_eq!(wire(&[b"a b\t~"]), "a b\t~");
        assert_eq!(wire(&[b"\x00\x07\x08\x0b\x0d\x1b[2J\x1f\x7f"]), "\\x00\\x07\\x08\\x0b\\x0d\\x1b[2J\\x1f\\x7f");
    }

    #[test]
    fn raw_c1_bytes_are_escaped() {
        assert_eq!(wire(&[b"\x80\x9b31m\x9f"]), "\\x80\\x9b31m\\x9f");
        // Every byte 0x80..=0xff alone is escaped: none is a character by itself.
        for byte in 0x80..=0xffu8 {
            assert_eq!(wire(&[&[byte]]), format!("\\x{byte:02x}"), "{byte:#x}");
        }
    }

    #[test]
    fn c1_controls_in_utf8_are_escaped() {
        assert_eq!(wire(&["\u{9b}1m".as_bytes()]), "\\xc2\\x9b1m");
        assert_eq!(wire(&["\u{80}\u{85}\u{9f}".as_bytes()]), "\\xc2\\x80\\xc2\\x85\\xc2\\x9f");
        for code in 0x80..=0x9fu32 {
            let text = char::from_u32(code).unwrap().to_string();
            assert!(wire(&[text.as_bytes()]).starts_with("\\xc2\\x"), "U+{code:04X}");
        }
    }

    #[test]
    fn characters_from_u00a0_pass_even_when_split_across_writes() {
        for text in ["\u{a0}", "é", "€", "日本", "\u{ffff}", "😀", "\u{10ffff}", "\u{d7ff}\u{e000}"] {
            assert_eq!(wire(&[text.as_bytes()]), text);
            let bytes = text.as_bytes();
            for split in 1..bytes.len() {
                assert_eq!(wire(&[&bytes[..split], &bytes[split..]]), text, "{text} split at {split}");
            }
        }
        // A C1 control split across writes is still one.
        assert_eq!(wire(&[b"\xc2", b"\x9b"]), "\\xc2\\x9b");
    }

    #[test]
    fn malformed_sequences_are_escaped_byte_by_byte() {
        // Overlong forms, a surrogate, above U+10FFFF, a stray continuation.
        assert_eq!(wire(&[b"\xc0\xaf"]), "\\xc0\\xaf");
        assert_eq!(wire(&[b"\xe0\x80\xaf"]), "\\xe0\\x80\\xaf");
        assert_eq!(wire(&[b"\xed\xa0\x80"]), "\\xed\\xa0\\x80");
        assert_eq!(wire(&[b"\xf4\x90\x80\x80"]), "\\xf4\\x90\\x80\\x80");
        assert_eq!(wire(&[b"\xf0\x8f\xbf\xbf"]), "\\xf0\\x8f\\xbf\\xbf", "overlong four-byte form");
        assert_eq!(wire(&[b"\xa9"]), "\\xa9");
        // A sequence broken off by ASCII, by a control or by another lead: the partial
        // bytes are escaped and what broke it is read afresh.
        assert_eq!(wire(&[b"\xe2\x82A"]), "\\xe2\\x82A");
        assert_eq!(wire(&[b"\xe2\x1b"]), "\\xe2\\x1b");
        assert_eq!(wire(&[b"\xe2\xc3\xa9"]), "\\xe2é");
        // Cut off at the end: flushed escaped.
        assert_eq!(wire(&[b"ok\xf0\x9f\x98"]), "ok\\xf0\\x9f\\x98");
    }

    #[test]
    fn a_control_byte_is_escaped_at_once_not_held() {
        let mut escaper = Escaper::new();
        let mut out = Vec::new();
        escaper.push(0x07, &mut |byte| out.push(byte));
        assert!(!escaper.is_pending());
        assert_eq!(out, b"\\x07");
    }

    #[test]
    fn pending_is_reported_and_cleared_by_flush() {
        let mut escaper = Escaper::new();
        let mut out = Vec::new();
        escaper.push(0xe2, &mut |byte| out.push(byte));
        assert!(escaper.is_pending() && out.is_empty());
        escaper.flush(&mut |byte| out.push(byte));
        assert!(!escaper.is_pending());
        assert_eq!(out, b"\\xe2");
    }
}
