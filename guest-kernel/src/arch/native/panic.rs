//! The panic handler of the native build: the location and message on the console, then
//! a crash. A panic while reporting one (the console itself failing) skips the report.

use super::console::{self, report};
use super::ending::Ending;
use core::sync::atomic::{AtomicBool, Ordering};

static PANICKING: AtomicBool = AtomicBool::new(false);

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    x86_64::instructions::interrupts::disable();
    if PANICKING.swap(true, Ordering::Relaxed) {
        super::exit_device(Ending::Crash, 1);
    }
    console::break_locks_for_fatal_report();
    match info.location() {
        Some(location) => report!("PANIC at {}:{}: {}", location.file(), location.line(), info.message()),
        None => report!("PANIC: {}", info.message()),
    }
    super::end(Ending::Crash, 1)
}
