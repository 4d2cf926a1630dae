//! Where the console's output goes: the machine's console.

use guest_kernel_core::files::ConsoleOutput;

use crate::arch::machine::Machine;

/// The file side's console output, written to the machine's console.
pub struct ConsoleSink<M: Machine + 'static>(pub &'static M);

impl<M: Machine> ConsoleOutput for ConsoleSink<M> {
    fn write(&mut self, bytes: &[u8]) {
        self.0.console_write(bytes);
    }
}
