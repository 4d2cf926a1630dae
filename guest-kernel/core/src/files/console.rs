//! The console terminal: the line discipline ([`crate::tty`]) between the keyboard and
//! `read`, output processing between `write` and the screen, the window size, and the
//! foreground process group that Ctrl-C signals.
//!
//! There is one terminal and every process has it as its controlling terminal; a read
//! from a background process group is served like any other (Linux would stop the group
//! with SIGTTIN; shells here leave a background job's standard input elsewhere, as
//! scripts do).

use alloc::boxed::Box;
use alloc::vec::Vec;
use linux_raw_sys::general as uapi;

use crate::linux::layouts::{Termios, WindowSize};
use crate::process_tree::{Pid, INIT};
use crate::signal::Signal;
use crate::tty::LineDiscipline;

/// Where console output goes: the kernel implements it over its platform's console.
pub trait ConsoleOutput {
    /// Shows `bytes` (already processed: `\n` is `\r\n` where the modes say so).
    fn write(&mut self, bytes: &[u8]);
}

/// A signal typed at the console, for every process in `group`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ConsoleSignal {
    /// The signal (SIGINT for Ctrl-C, SIGQUIT for Ctrl-\, SIGTSTP for Ctrl-Z).
    pub signal: Signal,
    /// The foreground process group when it was typed.
    pub group: Pid,
}

/// The console terminal.
pub struct Console {
    pub(crate) line: LineDiscipline,
    pub(crate) foreground: Pid,
    pub(crate) window: WindowSize,
    output: Box<dyn ConsoleOutput>,
}

/// The window size until someone sets one (a VT100's).
const DEFAULT_WINDOW: WindowSize = WindowSize { rows: 24, columns: 80, x_pixels: 0, y_pixels: 0 };

impl Console {
    /// A console writing to `output`, with Linux's default modes; init's group is in the
    /// foreground.
    pub fn new(output: Box<dyn ConsoleOutput>) -> Console {
        Console { line: LineDiscipline::default(), foreground: INIT, window: DEFAULT_WINDOW, output }
    }

    /// The foreground process group.
    pub const fn foreground(&self) -> Pid {
        self.foreground
    }

    /// Sets the foreground process group (`TIOCSPGRP` checks its caller first).
    pub fn set_foreground(&mut self, group: Pid) {
        self.foreground = group;
    }

    /// The window size.
    pub const fn window(&self) -> WindowSize {
        self.window
    }

    /// Sets the window size (`TIOCSWINSZ`, or the kernel if its platform knows it).
    pub fn set_window(&mut self, window: WindowSize) {
        self.window = window;
    }

    /// The modes (`TCGETS`).
    pub const fn termios(&self) -> &Termios {
        self.line.termios()
    }

    /// Bytes typed: edited and echoed; returns the signals typed (for the foreground
    /// group) and whether a `read` could now take something.
    pub fn input(&mut self, bytes: &[u8]) -> (Vec<ConsoleSignal>, bool) {
        let mut echo = Vec::new();
        let mut signals = Vec::new();
        for &byte in bytes {
            if let Some(signal) = self.line.receive(byte, &mut echo) {
                signals.push(ConsoleSignal { signal, group: self.foreground });
            }
        }
        if !echo.is_empty() {
            self.write(&echo);
        }
        (signals, self.line.readable())
    }

    /// Writes to the screen through output processing.
    pub(crate) fn write(&mut self, bytes: &[u8]) {
        let mut processed = Vec::with_capacity(bytes.len() + bytes.len() / 8);
        self.line.process_output(bytes, &mut processed);
        self.output.write(&processed);
    }

    /// Non-canonical reads with `VMIN` 0 return at once (or after `VTIME` tenths of a
    /// second) when nothing came: that wait, or `None` for the usual wait for a byte.
    pub(crate) fn empty_read_timeout_ns(&self) -> Option<u64> {
        let termios = self.line.termios();
        let canonical = termios.local & uapi::ICANON != 0;
        if canonical || termios.characters[uapi::VMIN as usize] != 0 {
            return None;
        }
        Some(u64::from(termios.characters[uapi::VTIME as usize]) * 100_000_000)
    }
}
