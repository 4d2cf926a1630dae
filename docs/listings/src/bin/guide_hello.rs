//! Guide chapter 1: the smallest useful guest. It reads the start-info page the hypervisor
//! mapped for it and asks the hypervisor which ABI it speaks.
// ANCHOR: all
#![cfg_attr(target_os = "none", no_std, no_main)]

use guest_rt::abi::hypercall::features;
use guest_rt::abi::StartInfo;
use guest_rt::println;

guest_rt::entry!(hello);

fn hello(start: &'static StartInfo) -> u32 {
    println!("hello from domain {}", start.domain_id);
    // ANCHOR: layout
    println!("image {:#x}..{:#x}", start.image_start.0, start.image_end.0);
    println!("stack {:#x}..{:#x}", start.stack_bottom.0, start.stack_top.0);
    println!("{} pages populated, {} of them free from {:#x}", start.nr_pages, start.free_pages, start.free_start.0);
    println!("command line: '{}'", start.cmd_line());
    // ANCHOR_END: layout
    // ANCHOR: version
    match guest_rt::hypercall::version() {
        Ok(version) => println!("hypervisor ABI {version}"),
        Err(errno) => println!("version: {errno}"),
    }
    let bits = guest_rt::hypercall::features().unwrap_or(0);
    println!("events: {}, timers: {}", bits & features::EVENTS != 0, bits & features::TIMERS != 0);
    // ANCHOR_END: version
    0
}
// ANCHOR_END: all
