//! guest-kernel: a small kernel shaped for porting. Its core ([`kernel`], [`memory`],
//! [`process`], [`syscall`]) is generic over the [`arch::Arch`] boundary, through which
//! every sensitive operation goes — exceptions, page mappings and user mode included;
//! today it is built for ringfence's paravirtual platform (ABI 0.3: ring 3, hypercalls via
//! guest-rt), and a native implementation can be added beside it later without touching
//! the core.
#![cfg_attr(target_os = "none", no_std, no_main)]

extern crate alloc;

pub mod arch;
pub mod console;
pub mod kernel;
pub mod memory;
pub mod process;
pub mod shell;
pub mod syscall;
pub mod user_program;

use guest_rt::abi::StartInfo;

guest_rt::entry!(kernel_main);

/// Entry from guest-rt: runs the kernel, then shuts down through the platform.
fn kernel_main(_start: &'static StartInfo) -> u32 {
    use arch::Arch;
    let platform = arch::platform();
    let code = kernel::run(platform);
    platform.shutdown(code)
}
