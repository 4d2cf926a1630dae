//! The panic handler of every guest: one console line, then shutdown with reason crash.

use core::panic::PanicInfo;

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    match info.location() {
        Some(location) => {
            crate::println!("panic: {}:{}:{}: {}", location.file(), location.line(), location.column(), info.message())
        }
        None => crate::println!("panic: <unknown location>: {}", info.message()),
    }
    crate::hypercall::crash(1)
}
