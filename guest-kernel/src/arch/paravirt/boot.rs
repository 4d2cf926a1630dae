//! The domain's entry point: guest-rt's start code (ABI note, start info, heap, panic
//! handler) around the kernel's main function.

use guest_rt::hypercall::crash;

use super::machine::ParavirtMachine;
use crate::arch::machine::Machine;

/// The crash code of a domain whose machine cannot start (a hypervisor without the
/// features it needs, a hypercall of the setup refused).
pub const START_FAILED_CRASH_CODE: u32 = 6;

/// Declares the kernel's main function, a `fn() -> u32` whose result is the poweroff
/// code, and emits the platform's entry point around it.
macro_rules! boot {
    ($main:path) => {
        fn ringfence_entry(_start: &'static ::guest_rt::abi::StartInfo) -> u32 {
            $main()
        }
        ::guest_rt::entry!(ringfence_entry);
    };
}
pub(crate) use boot;

/// Starts the [`ParavirtMachine`], runs the kernel's `main` on it and powers off with its
/// result. guest-rt's start code has run (start info, heap, panic handler): call this from
/// the function named in `guest_rt::entry!`.
pub fn run_kernel(main: fn(&'static ParavirtMachine) -> u32) -> ! {
    match ParavirtMachine::start() {
        Ok(machine) => {
            let code = main(machine);
            machine.shutdown(code)
        }
        Err(error) => {
            guest_rt::println!("guest-kernel: the paravirtual machine cannot start: {error}");
            crash(START_FAILED_CRASH_CODE)
        }
    }
}
