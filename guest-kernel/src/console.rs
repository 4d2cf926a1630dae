//! The kernel's own messages: `kprint!`/`kprintln!` format into a fixed line buffer and
//! write it to the machine's console whole lines at a time, never allocating (they work
//! before the heap and when it is exhausted).

use core::fmt;

use spin::Once;

use crate::arch::machine::Machine;

/// The machine the kernel's messages go to, set once at boot.
static CONSOLE: Once<&'static dyn Machine> = Once::new();

/// Sends the kernel's messages to `machine` from now on.
pub fn attach(machine: &'static dyn Machine) {
    CONSOLE.call_once(|| machine);
}

/// Collects formatted text and writes it out a line (or a full buffer) at a time.
struct LineBuffer {
    machine: &'static dyn Machine,
    bytes: [u8; 256],
    length: usize,
}

impl LineBuffer {
    fn flush(&mut self) {
        if self.length > 0 {
            self.machine.console_write(&self.bytes[..self.length]);
            self.length = 0;
        }
    }
}

impl fmt::Write for LineBuffer {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for &byte in text.as_bytes() {
            if self.length == self.bytes.len() {
                self.flush();
            }
            self.bytes[self.length] = byte;
            self.length += 1;
            if byte == b'\n' {
                self.flush();
            }
        }
        Ok(())
    }
}

/// Backend of the print macros; prints nothing before [`attach`].
pub fn print(arguments: fmt::Arguments<'_>) {
    let Some(&machine) = CONSOLE.get() else { return };
    let mut buffer = LineBuffer { machine, bytes: [0; 256], length: 0 };
    let _ = fmt::write(&mut buffer, arguments);
    buffer.flush();
}

/// Prints a line to the kernel console.
macro_rules! kprintln {
    ($($argument:tt)*) => {
        $crate::console::print(::core::format_args!("{}\n", ::core::format_args!($($argument)*)))
    };
}
pub(crate) use kprintln;
