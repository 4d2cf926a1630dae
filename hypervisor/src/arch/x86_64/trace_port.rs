//! The trace port (SPEC.md §22): a second 16550 UART at COM2, which carries the hypercall
//! trace's binary records and nothing else, so the console stays readable.

use hypercall_abi::trace::TRACE_PORT;
use spin::Mutex;
use uart_16550::SerialPort;
use x86_64::instructions::port::Port;

static PORT: Mutex<Option<SerialPort>> = Mutex::new(None);

/// Programs COM2 if a UART answers there (its scratch register keeps what is written;
/// with no device the bus reads back all ones). Says whether one did.
pub fn init() -> bool {
    let mut scratch: Port<u8> = Port::new(TRACE_PORT + 7);
    // SAFETY: COM2's scratch register: writing it has no effect on any device, and
    // nothing else in the hypervisor uses the COM2 ports.
    let present = unsafe {
        scratch.write(0x5a);
        scratch.read() == 0x5a
    };
    if !present {
        return false;
    }
    // SAFETY: a UART answers at COM2 (checked above) and only this module drives it.
    let mut port = unsafe { SerialPort::new(TRACE_PORT) };
    port.init();
    let mut interrupt_enable: Port<u8> = Port::new(TRACE_PORT + 1);
    // SAFETY: COM2's interrupt-enable register: the trace port is written by polling,
    // and its IRQ is not routed, so it must raise none.
    unsafe { interrupt_enable.write(0) };
    *PORT.lock() = Some(port);
    true
}

/// Writes `bytes` to the trace port (dropped if [`init`] found none).
pub fn write(bytes: &[u8]) {
    if let Some(port) = PORT.lock().as_mut() {
        for &byte in bytes {
            port.send_raw(byte);
        }
    }
}
