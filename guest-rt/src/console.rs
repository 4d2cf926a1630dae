//! Console output: `print!`/`println!` format into a fixed line buffer on the stack and
//! flush it with `console_io(WRITE)`. Nothing here allocates, so printing works before the
//! heap exists, after it is exhausted, and from the panic handler.

use core::fmt;

use crate::hypercall::{HypercallInterface, Hypercalls, HYPERVISOR};

/// Bytes one `print!` collects before it must flush early. A line shorter than this goes
/// out in a single hypercall, so lines of different domains never interleave mid-line.
pub const LINE_BUFFER_SIZE: usize = 256;

/// A [`fmt::Write`] sink that collects bytes in a fixed buffer and hands them to `flush`
/// when the buffer is full and on [`LineWriter::flush`] (also on drop).
pub struct LineWriter<F: FnMut(&[u8])> {
    buffer: [u8; LINE_BUFFER_SIZE],
    length: usize,
    flush: F,
}

impl<F: FnMut(&[u8])> LineWriter<F> {
    /// A writer that passes its bytes to `flush`.
    pub fn new(flush: F) -> Self {
        Self { buffer: [0; LINE_BUFFER_SIZE], length: 0, flush }
    }

    /// Appends `bytes`, flushing whenever the buffer fills.
    pub fn write_bytes(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let room = LINE_BUFFER_SIZE - self.length;
            let taken = room.min(bytes.len());
            self.buffer[self.length..self.length + taken].copy_from_slice(&bytes[..taken]);
            self.length += taken;
            bytes = &bytes[taken..];
            if self.length == LINE_BUFFER_SIZE {
                self.flush();
            }
        }
    }

    /// Hands the collected bytes to the sink (nothing if empty).
    pub fn flush(&mut self) {
        if self.length > 0 {
            (self.flush)(&self.buffer[..self.length]);
            self.length = 0;
        }
    }
}

impl<F: FnMut(&[u8])> fmt::Write for LineWriter<F> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.write_bytes(text.as_bytes());
        Ok(())
    }
}

impl<F: FnMut(&[u8])> Drop for LineWriter<F> {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Formats `arguments` to the console of `hypercalls`. Console errors are dropped: there
/// is nowhere else to report them.
pub fn print_to<I: HypercallInterface>(hypercalls: &Hypercalls<I>, arguments: fmt::Arguments<'_>) {
    let mut writer = LineWriter::new(|bytes: &[u8]| {
        let _ = hypercalls.console_write(bytes);
    });
    let _ = fmt::write(&mut writer, arguments);
}

/// Backend of [`print!`](crate::print) and [`println!`](crate::println).
#[doc(hidden)]
pub fn _print(arguments: fmt::Arguments<'_>) {
    print_to(&HYPERVISOR, arguments);
}

/// Prints to the domain's console.
#[macro_export]
macro_rules! print {
    ($($argument:tt)*) => {
        $crate::console::_print(::core::format_args!($($argument)*))
    };
}

/// Prints a line to the domain's console (one hypercall for lines up to
/// [`LINE_BUFFER_SIZE`](crate::console::LINE_BUFFER_SIZE) bytes).
#[macro_export]
macro_rules! println {
    () => {
        $crate::print!("\n")
    };
    ($($argument:tt)*) => {
        $crate::console::_print(::core::format_args!("{}\n", ::core::format_args!($($argument)*)))
    };
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::fake::Fake;
    use core::fmt::Write;
    use std::vec::Vec;

    #[test]
    fn short_line_is_one_hypercall() {
        let fake = Fake::default();
        print_to(&Hypercalls::new(&fake), format_args!("value {} and {:#x}\n", 42, 255));
        assert_eq!(fake.console_text(), "value 42 and 0xff\n");
        assert_eq!(fake.calls.borrow().len(), 1);
    }

    #[test]
    fn long_output_flushes_in_buffer_sized_pieces() {
        let fake = Fake::default();
        let long = "z".repeat(LINE_BUFFER_SIZE * 2 + 10);
        print_to(&Hypercalls::new(&fake), format_args!("{long}"));
        let counts: Vec<u64> = fake.calls.borrow().iter().map(|call| call.arguments[1]).collect();
        assert_eq!(counts, [LINE_BUFFER_SIZE as u64, LINE_BUFFER_SIZE as u64, 10]);
        assert_eq!(fake.console_text(), long);
    }

    #[test]
    fn nothing_printed_means_no_hypercall() {
        let fake = Fake::default();
        print_to(&Hypercalls::new(&fake), format_args!(""));
        assert!(fake.calls.borrow().is_empty());
    }

    #[test]
    fn line_writer_flushes_on_drop() {
        let mut pieces = Vec::new();
        {
            let mut writer = LineWriter::new(|bytes: &[u8]| pieces.push(bytes.to_vec()));
            write!(writer, "a{}", 1).unwrap();
        }
        assert_eq!(pieces, [b"a1".to_vec()]);
    }
}
