//! The COM1 console. Every line carries its source: `(hv) ` for the hypervisor,
//! `(d<id>) ` for a domain, so interleaved output stays attributable.

use core::fmt::{self, Write};
use hypervisor::console::output::Escaper;
use spin::Mutex;
use uart_16550::SerialPort;
use x86_64::instructions::port::Port;

const COM1: u16 = 0x3f8;

struct Console {
    port: Option<SerialPort>,
    /// The source whose line is currently open on the wire, if any (0 = hypervisor).
    open_line: Option<u32>,
    /// The open line's escaping state (a UTF-8 sequence it has begun).
    escaper: Escaper,
}

static CONSOLE: Mutex<Console> = Mutex::new(Console { port: None, open_line: None, escaper: Escaper::new() });

/// Programs the UART. Before this, console output is dropped.
pub fn init() {
    // SAFETY: COM1 at 0x3f8 is the console port of every machine xtask configures and
    // nothing else in the hypervisor drives it.
    let mut port = unsafe { SerialPort::new(COM1) };
    port.init();
    // The driver enables the receive interrupt; keep it off until boot has routed and
    // unmasked the I/O APIC pin and turns it on with `enable_receive_interrupt` (console
    // input, SPEC.md §21): an unexpected IRQ must not reach a guest.
    let mut interrupt_enable: Port<u8> = Port::new(COM1 + 1);
    // SAFETY: the UART's interrupt-enable register; clearing it only silences the UART.
    unsafe { interrupt_enable.write(0) };
    CONSOLE.lock().port = Some(port);
}

/// Turns on the UART's receive interrupt, one interrupt per byte (FIFO trigger level 1,
/// so a lone keystroke does not wait for the FIFO's character timeout). The I/O APIC pin
/// must be routed and unmasked first, or the first edge is lost.
pub fn enable_receive_interrupt() {
    let mut fifo_control: Port<u8> = Port::new(COM1 + 2);
    let mut interrupt_enable: Port<u8> = Port::new(COM1 + 1);
    // SAFETY: COM1's FIFO-control and interrupt-enable registers: FIFOs on with a 1-byte
    // receive trigger (not cleared: bytes typed during boot wait there), and "received
    // data available" as the only source.
    unsafe {
        fifo_control.write(0x01);
        interrupt_enable.write(0x01);
    }
}

/// The next byte the UART received, if any (drains the receive FIFO one byte a call).
pub fn receive() -> Option<u8> {
    CONSOLE.lock().port.as_mut()?.try_receive().ok()
}

fn send(port: &mut Option<SerialPort>, byte: u8) {
    if let Some(port) = port.as_mut() {
        port.send_raw(byte);
    }
}

impl Console {
    fn put(&mut self, byte: u8) {
        send(&mut self.port, byte);
    }

    fn flush_escaper(&mut self) {
        let Console { port, escaper, .. } = self;
        escaper.flush(&mut |byte| send(port, byte));
    }

    fn write_from(&mut self, source: u32, bytes: &[u8]) {
        for &byte in bytes {
            if self.open_line != Some(source) {
                // Another source left its line open: end it so prefixes never mix. Its
                // continuation gets a fresh prefix when it writes again.
                if self.open_line.is_some() {
                    self.flush_escaper();
                    self.put(b'\r');
                    self.put(b'\n');
                }
                self.prefix(source);
                self.open_line = Some(source);
            }
            if byte == b'\n' {
                self.flush_escaper();
                self.put(b'\r');
                self.put(b'\n');
                self.open_line = None;
            } else {
                // Controls (C0, DEL, C1 raw or in UTF-8) would let a guest forge other
                // sources' lines or drive the terminal: the escaper shows them as `\xNN`.
                let Console { port, escaper, .. } = self;
                escaper.push(byte, &mut |byte| send(port, byte));
            }
        }
    }

    fn prefix(&mut self, source: u32) {
        let mut buffer = PrefixBuffer { bytes: [0; 16], length: 0 };
        if source == 0 {
            let _ = buffer.write_str("(hv) ");
        } else {
            let _ = write!(buffer, "(d{source}) ");
        }
        for index in 0..buffer.length {
            let byte = buffer.bytes[index];
            self.put(byte);
        }
    }
}

struct PrefixBuffer {
    bytes: [u8; 16],
    length: usize,
}

impl Write for PrefixBuffer {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for &byte in text.as_bytes() {
            if self.length < self.bytes.len() {
                self.bytes[self.length] = byte;
                self.length += 1;
            }
        }
        Ok(())
    }
}

/// Writes a domain's bytes, prefixing each of its lines.
pub fn write_domain(domain_id: u32, bytes: &[u8]) {
    CONSOLE.lock().write_from(domain_id, bytes);
}

struct HypervisorWriter;

impl Write for HypervisorWriter {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        CONSOLE.lock().write_from(0, text.as_bytes());
        Ok(())
    }
}

#[doc(hidden)]
pub fn print_hypervisor(arguments: fmt::Arguments<'_>) {
    let _ = HypervisorWriter.write_fmt(arguments);
}

/// Makes the console usable from the panic handler even if the panic struck while the
/// console lock was held (interrupts are off and there is one CPU, so the holder is the
/// panicking code itself and will never release it).
pub fn break_lock_for_panic() {
    // SAFETY: see above: the only possible holder is this same, now-panicking, thread of
    // execution, which will not touch the console state again except through this path.
    unsafe { CONSOLE.force_unlock() };
}

/// `println!` for hypervisor messages: one `(hv) ` line.
macro_rules! hvprintln {
    ($($argument:tt)*) => {
        $crate::arch::x86_64::console::print_hypervisor(format_args!("{}\n", format_args!($($argument)*)))
    };
}
