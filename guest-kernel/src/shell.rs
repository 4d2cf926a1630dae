//! An interactive console (`arg=shell`): reads lines typed at the hypervisor's console
//! while this domain has the input focus, and runs a few commands. Input arrives raw
//! (SPEC.md §21.1): the shell echoes it, ends a line at CR or LF, and erases with DEL or
//! backspace.

extern crate alloc;

use alloc::string::String;

use crate::arch::Arch;
use crate::console::{kprint, kprintln};
use crate::portable::Date;

/// Longest line kept; further bytes are ignored until the line ends.
const LINE_MAX: usize = 160;

const HELP: &str = "commands: help, uptime, date, sleep <ms>, echo <text>, exit [code]";

/// What a command asks of the loop.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Next {
    Continue,
    Exit(u32),
}

/// Runs the shell until `exit`; returns the code it was given.
pub fn run<A: Arch>(arch: &A) -> u32 {
    kprintln!("guest-kernel: shell: type 'help'. Ctrl-] then a domain number moves the console's input focus.");
    let mut line = String::new();
    prompt(arch);
    loop {
        let mut input = [0u8; 64];
        let count = arch.console_read(&mut input);
        if count == 0 {
            arch.idle();
            continue;
        }
        for &byte in &input[..count] {
            match byte {
                b'\r' | b'\n' => {
                    kprintln!();
                    if let Next::Exit(code) = execute(arch, line.trim()) {
                        kprintln!("guest-kernel: shell: exit {code}");
                        return code;
                    }
                    line.clear();
                    prompt(arch);
                }
                // The console shows control bytes escaped, so an erase is redrawn.
                0x7f | 0x08 => {
                    line.pop();
                    kprintln!();
                    prompt(arch);
                    kprint!("{line}");
                }
                b' '..=b'~' if line.len() < LINE_MAX => {
                    line.push(char::from(byte));
                    kprint!("{}", char::from(byte));
                }
                _ => {}
            }
        }
    }
}

fn prompt<A: Arch>(arch: &A) {
    match arch.boot_info().domain_id {
        Some(id) => kprint!("d{id}> "),
        None => kprint!("> "),
    }
}

/// Runs one command line.
pub fn execute<A: Arch>(arch: &A, line: &str) -> Next {
    let mut words = line.split_whitespace();
    let Some(command) = words.next() else { return Next::Continue };
    match command {
        "help" => kprintln!("{HELP}"),
        "uptime" => {
            let ns = arch.timer_read();
            kprintln!(
                "up {}.{:03} s (system time, since the hypervisor booted)",
                ns / 1_000_000_000,
                ns / 1_000_000 % 1000
            );
        }
        "date" => match arch.wallclock_seconds() {
            Some(seconds) => kprintln!("{} UTC", Date::from_unix_seconds(seconds)),
            None => kprintln!("no wallclock"),
        },
        "sleep" => match words.next().and_then(|word| word.parse::<u64>().ok()) {
            Some(milliseconds) if milliseconds <= 60_000 => {
                let start = arch.timer_read();
                let deadline = start + milliseconds * 1_000_000;
                while arch.timer_read() < deadline {
                    arch.idle();
                }
                kprintln!("slept {} us", (arch.timer_read() - start) / 1000);
            }
            _ => kprintln!("usage: sleep <milliseconds, at most 60000>"),
        },
        "echo" => kprintln!("{}", line.strip_prefix("echo").unwrap_or("").trim_start()),
        "exit" => match words.next().map(str::parse::<u32>) {
            None => return Next::Exit(0),
            Some(Ok(code)) => return Next::Exit(code),
            Some(Err(_)) => kprintln!("usage: exit [code]"),
        },
        other => kprintln!("{other}: unknown command; {HELP}"),
    }
    Next::Continue
}
