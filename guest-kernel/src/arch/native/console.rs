//! The console: the 16550 UART at COM1. Output is polled (the kernel's bytes as they are,
//! and the platform's own lines, `\n` as `\r\n`); input is interrupt-driven: each
//! received byte raises ISA IRQ 4, routed by the I/O APIC to [`super::traps::CONSOLE_VECTOR`],
//! whose handler moves the UART's bytes into a ring that `console_read` drains.

use core::fmt::{self, Write};
use spin::Mutex;
use uart_16550::SerialPort;
use x86_64::instructions::port::Port;

const COM1: u16 = 0x3f8;
/// Bytes of input kept until the kernel reads them; more is dropped (and counted).
const INPUT_CAPACITY: usize = 4096;

struct Output {
    port: Option<SerialPort>,
    /// The last byte sent, so the platform's lines start on a line of their own.
    last: u8,
}

struct Input {
    bytes: [u8; INPUT_CAPACITY],
    /// Index of the oldest unread byte.
    head: usize,
    length: usize,
    dropped: u64,
}

static OUTPUT: Mutex<Output> = Mutex::new(Output { port: None, last: b'\n' });
static INPUT: Mutex<Input> = Mutex::new(Input { bytes: [0; INPUT_CAPACITY], head: 0, length: 0, dropped: 0 });

/// Programs the UART for output; before this, output is dropped. The first thing boot
/// does, so that every later failure can be reported.
pub fn init() {
    // SAFETY: COM1's ports belong to the UART on every PC QEMU emulates, and nothing
    // else in the kernel drives them.
    let mut port = unsafe { SerialPort::new(COM1) };
    port.init();
    // The driver turns the receive interrupt on; it stays off until the I/O APIC routes
    // it ([`enable_input`]), so that no interrupt arrives at a vector not yet handled.
    // SAFETY: COM1's interrupt-enable register; zero only silences the UART.
    unsafe { Port::<u8>::new(COM1 + 1).write(0) };
    OUTPUT.lock().port = Some(port);
}

/// Turns on the receive interrupt, one per byte (a receive-FIFO trigger level of 1, so a
/// keystroke does not wait for the FIFO's timeout). The I/O APIC pin must be unmasked
/// first, or the first edge is lost.
pub fn enable_input() {
    // SAFETY: COM1's FIFO-control and interrupt-enable registers: FIFOs on with a 1-byte
    // trigger (bytes typed during boot stay queued), "received data available" as the
    // only interrupt source.
    unsafe {
        Port::<u8>::new(COM1 + 2).write(0x01);
        Port::<u8>::new(COM1 + 1).write(0x01);
    }
}

impl Output {
    fn send(&mut self, byte: u8) {
        if let Some(port) = self.port.as_mut() {
            port.send_raw(byte);
            self.last = byte;
        }
    }
}

/// Writes the kernel's bytes as they are.
pub fn write(bytes: &[u8]) {
    let mut output = OUTPUT.lock();
    for &byte in bytes {
        output.send(byte);
    }
}

/// Writes one line of the platform's own (`\n` sent as `\r\n`), starting a new line
/// first if the kernel left one open.
pub fn print_line(arguments: fmt::Arguments<'_>) {
    let mut output = OUTPUT.lock();
    struct Lines<'a>(&'a mut Output);
    impl Write for Lines<'_> {
        fn write_str(&mut self, text: &str) -> fmt::Result {
            for byte in text.bytes() {
                if byte == b'\n' {
                    self.0.send(b'\r');
                }
                self.0.send(byte);
            }
            Ok(())
        }
    }
    let mut lines = Lines(&mut output);
    if lines.0.last != b'\n' {
        let _ = lines.write_str("\n");
    }
    let _ = lines.write_fmt(arguments);
    let _ = lines.write_str("\n");
}

/// Makes the console usable by a report of a fatal error even if the error struck while
/// the console's lock was held: there is one processor and interrupts are off, so the
/// holder is the failing code itself, which never resumes.
pub fn break_locks_for_fatal_report() {
    // SAFETY: see above; after this only the fatal report writes, then the machine stops.
    unsafe { OUTPUT.force_unlock() };
}

/// The interrupt handler's work: moves every byte the UART holds into the ring. It must
/// drain the UART completely, because the I/O APIC pin is edge-triggered: a byte left
/// behind would keep the line raised and no new edge would ever come.
pub fn receive() {
    let mut input = INPUT.lock();
    let mut output = OUTPUT.lock();
    let Some(port) = output.port.as_mut() else { return };
    while let Ok(byte) = port.try_receive() {
        if input.length == INPUT_CAPACITY {
            input.dropped += 1;
            continue;
        }
        let tail = (input.head + input.length) % INPUT_CAPACITY;
        input.bytes[tail] = byte;
        input.length += 1;
    }
}

/// Moves received bytes into `buffer`; how many.
pub fn read(buffer: &mut [u8]) -> usize {
    let mut input = INPUT.lock();
    let count = buffer.len().min(input.length);
    for slot in &mut buffer[..count] {
        *slot = input.bytes[input.head];
        input.head = (input.head + 1) % INPUT_CAPACITY;
        input.length -= 1;
    }
    count
}

/// Bytes of input dropped because the kernel did not read them in time.
pub fn dropped_input() -> u64 {
    INPUT.lock().dropped
}

/// `println!` for the platform's own lines, prefixed `native: `.
macro_rules! report {
    ($($argument:tt)*) => {
        $crate::arch::native::console::print_line(format_args!("native: {}", format_args!($($argument)*)))
    };
}
pub(crate) use report;
