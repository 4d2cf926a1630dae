//! The console's line discipline: what turns keystrokes into what `read` on `/dev/console`
//! returns, as Linux's N_TTY does for the modes programs use.
//!
//! In canonical mode (`ICANON`, the default) input is edited a line at a time: erase
//! (DEL or Backspace) removes a character, kill (Ctrl-U) the line, word-erase (Ctrl-W) a
//! word, and `read` returns only completed lines; end-of-file (Ctrl-D) completes the line
//! without a newline, so on an empty line `read` returns 0. With `ISIG`, interrupt
//! (Ctrl-C), quit (Ctrl-\) and suspend (Ctrl-Z) become signals for the foreground process
//! group and discard pending input. With `ECHO`, input is echoed (control characters as
//! `^C`, erasures as backspace-space-backspace). Raw mode (`ICANON` off: shells' line
//! editors) hands bytes over as they come. Output turns `\n` into `\r\n` (`OPOST`,
//! `ONLCR`). Input is bounded: past [`LINE_MAX`] bytes of unread input more is dropped
//! (and the terminal bell echoed), so typing cannot exhaust kernel memory.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use linux_raw_sys::general as uapi;

use crate::linux::layouts::Termios;
use crate::signal::Signal;

/// Most bytes of unread input kept (Linux's N_TTY buffer is 4096 bytes).
pub const LINE_MAX: usize = 4096;

const fn control(letter: u8) -> u8 {
    letter & 0x1f
}

/// The modes a console starts in (Linux's defaults for a new terminal).
pub fn default_termios() -> Termios {
    let mut characters = [0u8; uapi::NCCS as usize];
    for (index, value) in [
        (uapi::VINTR, control(b'C')),
        (uapi::VQUIT, control(b'\\')),
        (uapi::VERASE, 0x7f),
        (uapi::VKILL, control(b'U')),
        (uapi::VEOF, control(b'D')),
        (uapi::VTIME, 0),
        (uapi::VMIN, 1),
        (uapi::VSUSP, control(b'Z')),
        (uapi::VWERASE, control(b'W')),
    ] {
        characters[index as usize] = value;
    }
    Termios {
        input: uapi::ICRNL | uapi::IXON,
        output: uapi::OPOST | uapi::ONLCR,
        control: uapi::B38400 | uapi::CS8 | uapi::CREAD | uapi::HUPCL,
        local: uapi::ISIG
            | uapi::ICANON
            | uapi::ECHO
            | uapi::ECHOE
            | uapi::ECHOK
            | uapi::ECHOCTL
            | uapi::ECHOKE
            | uapi::IEXTEN,
        line: 0,
        characters,
    }
}

/// What a `read` gets now.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// This many bytes (at least one).
    Data(usize),
    /// End of file: Ctrl-D on an empty line.
    EndOfFile,
    /// Nothing is ready: the reader sleeps until input comes.
    WouldBlock,
}

/// What [`LineDiscipline::peek`] sees.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Peek<'a> {
    /// Bytes a read may take (at least one).
    Data(&'a [u8]),
    /// End of file: Ctrl-D on an empty line.
    EndOfFile,
    /// Nothing is ready.
    Nothing,
}

/// A terminal's input state.
pub struct LineDiscipline {
    termios: Termios,
    /// The line being edited (canonical mode).
    editing: Vec<u8>,
    /// Completed input: in canonical mode, whole lines, each a record (an empty record is
    /// end-of-file); in raw mode one record of bytes.
    ready: VecDeque<Vec<u8>>,
}

impl Default for LineDiscipline {
    fn default() -> Self {
        LineDiscipline { termios: default_termios(), editing: Vec::new(), ready: VecDeque::new() }
    }
}

impl LineDiscipline {
    /// The current modes (`TCGETS`).
    pub const fn termios(&self) -> &Termios {
        &self.termios
    }

    /// New modes (`TCSETS*`). Leaving canonical mode hands the edited line over as is.
    pub fn set_termios(&mut self, termios: Termios) {
        let was_canonical = self.canonical();
        self.termios = termios;
        if was_canonical && !self.canonical() && !self.editing.is_empty() {
            let line = core::mem::take(&mut self.editing);
            self.ready.push_back(line);
        }
    }

    fn canonical(&self) -> bool {
        self.termios.local & uapi::ICANON != 0
    }

    fn local(&self, flag: u32) -> bool {
        self.termios.local & flag != 0
    }

    fn character(&self, index: u32) -> u8 {
        self.termios.characters[index as usize]
    }

    fn unread(&self) -> usize {
        self.editing.len() + self.ready.iter().map(Vec::len).sum::<usize>()
    }

    /// Whether a `read` would return without waiting (`poll`).
    pub fn readable(&self) -> bool {
        !self.ready.is_empty()
    }

    /// One byte typed. Echo goes to `echo`; a signal for the foreground group is returned.
    pub fn receive(&mut self, byte: u8, echo: &mut Vec<u8>) -> Option<Signal> {
        let mut byte = byte;
        if byte == b'\r' && self.termios.input & uapi::IGNCR != 0 {
            return None;
        }
        if byte == b'\r' && self.termios.input & uapi::ICRNL != 0 {
            byte = b'\n';
        } else if byte == b'\n' && self.termios.input & uapi::INLCR != 0 {
            byte = b'\r';
        }
        if self.local(uapi::ISIG) && byte != 0 {
            let signal =
                [(uapi::VINTR, Signal::INTERRUPT), (uapi::VQUIT, Signal::QUIT), (uapi::VSUSP, Signal::TERMINAL_STOP)]
                    .into_iter()
                    .find(|(index, _)| self.character(*index) == byte)
                    .map(|(_, signal)| signal);
            if let Some(signal) = signal {
                self.editing.clear();
                self.ready.clear();
                self.echo_control(byte, echo);
                if self.local(uapi::ECHO) {
                    echo.push(b'\n');
                }
                return Some(signal);
            }
        }
        if !self.canonical() {
            if self.unread() >= LINE_MAX {
                echo.push(0x07);
                return None;
            }
            match self.ready.back_mut() {
                Some(record) => record.push(byte),
                None => self.ready.push_back(alloc::vec![byte]),
            }
            if self.local(uapi::ECHO) {
                echo.push(byte);
            }
            return None;
        }
        if (byte != 0 && byte == self.character(uapi::VERASE)) || byte == 0x08 {
            if let Some(erased) = self.editing.pop() {
                if self.local(uapi::ECHO) && self.local(uapi::ECHOE) {
                    let width = if erased < 0x20 && self.local(uapi::ECHOCTL) { 2 } else { 1 };
                    for _ in 0..width {
                        echo.extend_from_slice(b"\x08 \x08");
                    }
                }
            }
            return None;
        }
        if byte != 0 && byte == self.character(uapi::VKILL) {
            let count = self.editing.len();
            self.editing.clear();
            if self.local(uapi::ECHO) {
                for _ in 0..count {
                    echo.extend_from_slice(b"\x08 \x08");
                }
            }
            return None;
        }
        if byte != 0 && byte == self.character(uapi::VWERASE) && self.local(uapi::IEXTEN) {
            while self.editing.last() == Some(&b' ') {
                self.editing.pop();
                echo.extend_from_slice(b"\x08 \x08");
            }
            while self.editing.last().is_some_and(|&c| c != b' ') {
                self.editing.pop();
                echo.extend_from_slice(b"\x08 \x08");
            }
            return None;
        }
        if byte != 0 && byte == self.character(uapi::VEOF) {
            let line = core::mem::take(&mut self.editing);
            self.ready.push_back(line);
            return None;
        }
        // One byte stays free for the newline, so a full line can still be completed.
        if self.unread() >= LINE_MAX - 1 && byte != b'\n' {
            echo.push(0x07);
            return None;
        }
        self.editing.push(byte);
        if self.local(uapi::ECHO) {
            self.echo_control(byte, echo);
        } else if byte == b'\n' && self.local(uapi::ECHONL) {
            echo.push(b'\n');
        }
        if byte == b'\n' {
            let line = core::mem::take(&mut self.editing);
            self.ready.push_back(line);
        }
        None
    }

    fn echo_control(&self, byte: u8, echo: &mut Vec<u8>) {
        if !self.local(uapi::ECHO) {
            return;
        }
        if byte < 0x20 && byte != b'\n' && byte != b'\t' && self.local(uapi::ECHOCTL) {
            echo.extend_from_slice(&[b'^', byte + 0x40]);
        } else {
            echo.push(byte);
        }
    }

    /// What a `read` would get now, without taking it: the bytes of the first completed
    /// line (canonical mode) or everything that arrived (raw mode).
    pub fn peek(&self) -> Peek<'_> {
        match self.ready.front() {
            None => Peek::Nothing,
            Some(record) if record.is_empty() => Peek::EndOfFile,
            Some(record) => Peek::Data(record),
        }
    }

    /// Takes `count` bytes [`LineDiscipline::peek`] showed, or the end of file it showed.
    pub fn consume(&mut self, count: usize) {
        let Some(record) = self.ready.front_mut() else { return };
        let count = count.min(record.len());
        record.drain(..count);
        if record.is_empty() {
            self.ready.pop_front();
        }
    }

    /// Throws away typed input, completed or not (`TCSETSF`, `TCFLSH`).
    pub fn discard_input(&mut self) {
        self.editing.clear();
        self.ready.clear();
    }

    /// Bytes a `read` could take now (`FIONREAD`).
    pub fn ready_bytes(&self) -> usize {
        self.ready.iter().map(Vec::len).sum()
    }

    /// `read`: in canonical mode at most one line; in raw mode what has arrived.
    pub fn read(&mut self, into: &mut [u8]) -> ReadOutcome {
        if into.is_empty() {
            return ReadOutcome::Data(0);
        }
        let outcome = match self.peek() {
            Peek::Nothing => return ReadOutcome::WouldBlock,
            Peek::EndOfFile => ReadOutcome::EndOfFile,
            Peek::Data(bytes) => {
                let count = bytes.len().min(into.len());
                into[..count].copy_from_slice(&bytes[..count]);
                ReadOutcome::Data(count)
            }
        };
        self.consume(match outcome {
            ReadOutcome::Data(count) => count,
            _ => 0,
        });
        outcome
    }

    /// Output processing: `\n` becomes `\r\n` with `OPOST` and `ONLCR`.
    pub fn process_output(&self, bytes: &[u8], out: &mut Vec<u8>) {
        let translate = self.termios.output & uapi::OPOST != 0 && self.termios.output & uapi::ONLCR != 0;
        for &byte in bytes {
            if translate && byte == b'\n' {
                out.push(b'\r');
            }
            out.push(byte);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(tty: &mut LineDiscipline, bytes: &[u8]) -> (Vec<u8>, Vec<Signal>) {
        let mut echo = Vec::new();
        let signals = bytes.iter().filter_map(|&byte| tty.receive(byte, &mut echo)).collect();
        (echo, signals)
    }

    fn read_all(tty: &mut LineDiscipline) -> Vec<u8> {
        let mut buffer = [0u8; 256];
        match tty.read(&mut buffer) {
            ReadOutcome::Data(count) => buffer[..count].to_vec(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn lines_are_edited_before_they_are_read() {
        let mut tty = LineDiscipline::default();
        let (echo, _) = typed(&mut tty, b"ecno\x7f\x7fho hi");
        assert_eq!(tty.read(&mut [0; 8]), ReadOutcome::WouldBlock, "no line yet");
        assert!(!tty.readable());
        typed(&mut tty, b"\r");
        assert!(tty.readable());
        assert_eq!(read_all(&mut tty), b"echo hi\n", "CR becomes NL and completes the line");
        assert_eq!(&echo[..4], b"ecno");
        assert_eq!(&echo[4..10], b"\x08 \x08\x08 \x08", "each erasure is rubbed out");
    }

    #[test]
    fn kill_and_word_erase() {
        let mut tty = LineDiscipline::default();
        typed(&mut tty, b"garbage\x15ls -l /tmp\x17/\n");
        assert_eq!(read_all(&mut tty), b"ls -l /\n");
    }

    #[test]
    fn ctrl_d_is_end_of_file_on_an_empty_line_and_a_push_otherwise() {
        let mut tty = LineDiscipline::default();
        typed(&mut tty, b"abc\x04");
        assert_eq!(read_all(&mut tty), b"abc", "the line without a newline");
        typed(&mut tty, b"\x04");
        assert_eq!(tty.read(&mut [0; 8]), ReadOutcome::EndOfFile);
        assert_eq!(tty.read(&mut [0; 8]), ReadOutcome::WouldBlock, "end of file is read once");
    }

    #[test]
    fn ctrl_c_signals_and_discards_input() {
        let mut tty = LineDiscipline::default();
        let (echo, signals) = typed(&mut tty, b"sleep 100\x03");
        assert_eq!(signals, [Signal::INTERRUPT]);
        assert!(echo.ends_with(b"^C\n"));
        assert!(!tty.readable());
        let (_, signals) = typed(&mut tty, b"\x1a\x1c");
        assert_eq!(signals, [Signal::TERMINAL_STOP, Signal::QUIT]);
        let mut modes = *tty.termios();
        modes.local &= !uapi::ISIG;
        tty.set_termios(modes);
        let (_, signals) = typed(&mut tty, b"\x03\n");
        assert!(signals.is_empty(), "without ISIG Ctrl-C is a character");
        assert_eq!(read_all(&mut tty), b"\x03\n");
    }

    #[test]
    fn peeked_input_stays_until_consumed_and_can_be_discarded() {
        let mut tty = LineDiscipline::default();
        typed(&mut tty, b"one\ntwo\n");
        assert_eq!(tty.ready_bytes(), 8);
        assert_eq!(tty.peek(), Peek::Data(b"one\n"), "one line at a time");
        tty.consume(2);
        assert_eq!(tty.peek(), Peek::Data(b"e\n"));
        tty.consume(2);
        assert_eq!(tty.peek(), Peek::Data(b"two\n"));
        typed(&mut tty, b"thr");
        tty.discard_input();
        assert_eq!(tty.peek(), Peek::Nothing);
        typed(&mut tty, b"\x04");
        assert_eq!(tty.peek(), Peek::EndOfFile);
        tty.consume(0);
        assert_eq!(tty.peek(), Peek::Nothing, "consuming end of file takes it");
    }

    #[test]
    fn raw_mode_passes_bytes_as_they_come() {
        let mut tty = LineDiscipline::default();
        typed(&mut tty, b"half");
        let mut modes = *tty.termios();
        modes.local &= !(uapi::ICANON | uapi::ECHO);
        tty.set_termios(modes);
        let (echo, _) = typed(&mut tty, b"\x1b[A\x7f");
        assert!(echo.is_empty());
        assert_eq!(read_all(&mut tty), b"half\x1b[A\x7f", "the edited line, then the raw bytes");
        assert_eq!(tty.read(&mut [0; 8]), ReadOutcome::WouldBlock);
    }

    #[test]
    fn input_is_bounded() {
        let mut tty = LineDiscipline::default();
        let (echo, _) = typed(&mut tty, &[b'x'; LINE_MAX + 100]);
        assert!(echo.ends_with(&[0x07]), "the bell says input was dropped");
        typed(&mut tty, b"\n");
        let mut buffer = alloc::vec![0u8; LINE_MAX * 2];
        assert_eq!(tty.read(&mut buffer), ReadOutcome::Data(LINE_MAX), "the line still completes");
        assert_eq!(buffer[LINE_MAX - 1], b'\n');
    }

    #[test]
    fn output_turns_newlines_into_crlf() {
        let tty = LineDiscipline::default();
        let mut out = Vec::new();
        tty.process_output(b"a\nb\n", &mut out);
        assert_eq!(out, b"a\r\nb\r\n");
    }
}
