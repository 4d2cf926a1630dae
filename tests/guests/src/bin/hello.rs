//! The smallest ringfence guest: one line, poweroff code 0.
#![cfg_attr(target_os = "none", no_std, no_main)]

use guest_rt::abi::StartInfo;

guest_rt::entry!(hello);

fn hello(_start: &'static StartInfo) -> u32 {
    guest_rt::println!("hello from a ringfence guest");
    0
}
