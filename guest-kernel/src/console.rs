//! The kernel console: `kprint!`/`kprintln!` format into a line buffer and write it
//! through [`Arch::console_write`], never allocating.

use core::fmt;

use crate::arch::{platform, Arch};
use crate::portable::LineWriter;

/// Backend of the print macros.
pub fn print(arguments: fmt::Arguments<'_>) {
    let arch = platform();
    let mut writer = LineWriter::new(|bytes: &[u8]| arch.console_write(bytes));
    let _ = fmt::write(&mut writer, arguments);
}

/// Prints to the kernel console.
macro_rules! kprint {
    ($($argument:tt)*) => {
        $crate::console::print(::core::format_args!($($argument)*))
    };
}

/// Prints a line to the kernel console.
macro_rules! kprintln {
    () => {
        $crate::console::kprint!("\n")
    };
    ($($argument:tt)*) => {
        $crate::console::print(::core::format_args!("{}\n", ::core::format_args!($($argument)*)))
    };
}
pub(crate) use {kprint, kprintln};
