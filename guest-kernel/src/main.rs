//! guest-kernel: a small kernel shaped for porting. Its core ([`kernel`], [`memory`],
//! [`process`], [`syscall`], [`shell`] and the rest) never names a platform: it is generic
//! over [`arch::Arch`], and every sensitive operation goes through that trait:
//!
//! * console output, and console input;
//! * the interrupt flag: starting delivery, enabling, disabling, reading it;
//! * idling until an interrupt (or another domain's turn) may have come;
//! * the timer and the wallclock;
//! * what the machine told the kernel at boot;
//! * shutdown and crash;
//! * installing exception and system-call entry (page faults and breakpoints reach the
//!   core, other exceptions end a user process or the kernel), and executing a breakpoint;
//! * mapping fresh zeroed kernel pages and unmapping them;
//! * running a user program in an address space of its own, with its system calls, and
//!   copying from its memory.
//!
//! The entry point, heap and panic handler come from the platform too ([`arch::boot!`]).
//! Today the platform is ringfence's paravirtual one ([`arch::paravirt`]: ABI 0.3, ring 3,
//! hypercalls via guest-rt); a native implementation can be added beside it without
//! touching the core. The core uses guest-rt's platform-independent helpers (the line
//! buffer, the calendar) through [`portable`] only.
#![cfg_attr(target_os = "none", no_std, no_main)]

extern crate alloc;

pub mod arch;
pub mod console;
pub mod init;
pub mod kernel_old;
pub mod kernel;
pub mod memory;
pub mod portable;
pub mod process;
pub mod shell;
pub mod syscall;
pub mod user_abi;

arch::boot!(kernel_main);

/// Runs the kernel, then shuts down through the platform.
fn kernel_main() -> u32 {
    use arch::Arch;
    let platform = arch::platform();
    let code = kernel_old::run(platform);
    platform.shutdown(code)
}
