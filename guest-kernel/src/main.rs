//! guest-kernel: a small kernel shaped for porting. Its core ([`kernel`]) is generic over
//! the [`arch::Arch`] boundary, through which every sensitive operation goes; today it is
//! built for ringfence's paravirtual platform (ring 3, hypercalls via guest-rt), and a
//! native implementation can be added beside it later without touching the core.
#![cfg_attr(target_os = "none", no_std, no_main)]

extern crate alloc;

pub mod arch;
pub mod console;
pub mod kernel;

use guest_rt::abi::StartInfo;

guest_rt::entry!(kernel_main);

/// Entry from guest-rt: runs the kernel, then shuts down through the platform.
fn kernel_main(_start: &'static StartInfo) -> u32 {
    use arch::Arch;
    let platform = arch::platform();
    let code = kernel::run(platform);
    platform.shutdown(code)
}
