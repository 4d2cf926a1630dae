//! User processes: the kernel lays out a process's address space — its program text
//! shared from the kernel image at [`TEXT_START`], a zeroed stack below [`STACK_TOP`] —
//! and collects what it prints. The layout is the process's memory map:
//! [`Process::owns`] checks user pointers against it.

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;

use crate::arch::user_program::Program;
use crate::arch::{Backing, UserRegion, PAGE_SIZE};
use crate::console::kprintln;

/// Where a process's text starts (as in a classic ELF executable).
pub const TEXT_START: u64 = 0x40_0000;
/// The top of a process's stack: just under the top of user space, leaving the last
/// pages unmapped.
pub const STACK_TOP: u64 = 0x7fff_ffff_0000;
/// Stack size in pages.
pub const STACK_PAGES: u64 = 4;
/// Longest line of process output kept before it is printed anyway.
const LINE_MAX: usize = 200;

/// System calls a process made, by kind.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct SyscallCounts {
    /// Every call the dispatcher saw (an exit the platform handles itself is not seen).
    pub calls: u64,
    /// Successful writes.
    pub writes: u64,
    /// Calls refused because a buffer was not the process's.
    pub refused: u64,
    /// getpid calls.
    pub getpid: u64,
    /// Unknown numbers.
    pub unknown: u64,
}

/// A user process.
pub struct Process {
    /// Its id.
    pub pid: u64,
    /// Its address space: text, then stack.
    regions: [UserRegion; 2],
    /// Its entry point (a user address).
    entry: u64,
    /// Output not yet printed (no newline yet).
    line: Vec<u8>,
    /// What it asked for.
    pub counts: SyscallCounts,
}

impl Process {
    /// A process `pid` running `program`.
    pub fn new(pid: u64, program: &Program) -> Self {
        let text_pages = (program.text_end - program.text_start).div_ceil(PAGE_SIZE);
        let text = UserRegion { start: TEXT_START, pages: text_pages, backing: Backing::Kernel(program.text_start) };
        let stack =
            UserRegion { start: STACK_TOP - STACK_PAGES * PAGE_SIZE, pages: STACK_PAGES, backing: Backing::Zeroed };
        Self {
            pid,
            regions: [text, stack],
            entry: TEXT_START + (program.entry - program.text_start),
            line: Vec::new(),
            counts: SyscallCounts::default(),
        }
    }

    /// True if `[address, address + length)` lies inside one of the process's regions.
    pub fn owns(&self, address: u64, length: u64) -> bool {
        let Some(end) = address.checked_add(length) else { return false };
        self.regions.iter().any(|region| region.start <= address && end <= region.end())
    }

    /// Its address space: text, then stack.
    pub fn regions(&self) -> [UserRegion; 2] {
        self.regions
    }

    /// Its entry point (a user address).
    pub fn entry(&self) -> u64 {
        self.entry
    }

    /// Takes bytes the process wrote: every complete line goes to the console.
    pub fn output(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if byte == b'\n' || self.line.len() >= LINE_MAX {
                self.flush();
            }
            if byte != b'\n' {
                self.line.push(byte);
            }
        }
    }

    /// Prints what is left of the output.
    pub fn flush(&mut self) {
        if !self.line.is_empty() {
            kprintln!("guest-kernel: user: {}", String::from_utf8_lossy(&self.line));
            self.line.clear();
        }
    }
}
