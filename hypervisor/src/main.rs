//! ringfence: a paravirtualizing x86_64 microhypervisor. This binary is the machine
//! (`arch::x86_64`: every instruction, the descriptor tables, entry/exit, devices), the
//! boot sequence (`startup`) and the entry points the assembly calls afterwards
//! (`entry_points`), around the policy library.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("hypervisor is a ringfence kernel image; build it with `cargo xtask build`");
    std::process::exit(2);
}

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
#[macro_use]
mod arch;
#[cfg(target_os = "none")]
mod entry_points;
#[cfg(target_os = "none")]
mod startup;

#[cfg(target_os = "none")]
mod bare_metal {
    use super::arch::x86_64::{console, exit_device};
    use core::sync::atomic::{AtomicBool, Ordering};
    use hypercall_abi::exit::ExitStatus;

    static PANICKING: AtomicBool = AtomicBool::new(false);

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
        if PANICKING.swap(true, Ordering::SeqCst) {
            // A panic while reporting a panic: stop without touching anything else.
            exit_device::exit(ExitStatus::HYPERVISOR_PANIC);
        }
        console::break_lock_for_panic();
        match info.location() {
            Some(location) => {
                hvprintln!("PANIC at {}:{}: {}", location.file(), location.line(), info.message())
            }
            None => hvprintln!("PANIC: {}", info.message()),
        }
        exit_device::exit(ExitStatus::HYPERVISOR_PANIC)
    }
}
