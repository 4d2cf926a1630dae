//! Guide chapter 2: the console and errors. Every hypercall returns a value or `-errno`;
//! guest-rt turns that into `Result<_, Errno>`.
#![cfg_attr(target_os = "none", no_std, no_main)]

use guest_rt::abi::{Errno, StartInfo};
use guest_rt::hypercall::{self, HYPERVISOR};
use guest_rt::memory::{self, Space};
use guest_rt::println;

guest_rt::entry!(errors);

// ANCHOR: main
fn errors(_start: &'static StartInfo) -> u32 {
    match tour() {
        Ok(()) => 0,
        Err(errno) => {
            println!("unexpected error: {errno:?}");
            1
        }
    }
}
// ANCHOR_END: main

fn tour() -> Result<(), Errno> {
    // ANCHOR: write
    let written = hypercall::console_write(b"written with one console_io(WRITE)\n")?;
    println!("console_write returned {written}");
    // ANCHOR_END: write

    // ANCHOR: einval
    // console_io takes at most 4096 bytes per call (SPEC.md §6.2); console_write splits
    // longer text, console_write_once does not.
    let long = [b'x'; 5000];
    match HYPERVISOR.console_write_once(&long) {
        Err(errno) => println!("5000 bytes in one call: {errno} / {errno:?}"),
        Ok(count) => println!("5000 bytes in one call were accepted ({count})?"),
    }
    // ANCHOR_END: einval

    // ANCHOR: enoent
    let nothing_there = memory::query(Space::INITIAL, 0x1000);
    println!("query 0x1000: {}", nothing_there.err().map_or("mapped?", |errno| errno.name().unwrap_or("?")));
    // ANCHOR_END: enoent

    // ANCHOR: raw
    // The safe wrappers cannot pass a bad buffer; the raw instruction can. The
    // hypervisor checks every guest address before touching it (SPEC.md §5.4).
    let hypervisor_range = 0xffff_8000_0000_0000u64;
    // SAFETY: console_io(WRITE) only reads the buffer, and the hypervisor refuses this
    // address before reading anything.
    let result = unsafe { guest_rt::raw::hypercall(18, [0, 16, hypervisor_range, 0, 0, 0]) };
    println!("console_io(WRITE) from the hypervisor's range: {result} = {}", Errno::from_return(result).unwrap_err());
    // SAFETY: number 2 is no hypercall; the hypervisor returns -ENOSYS and does nothing.
    let result = unsafe { guest_rt::raw::hypercall(2, [0; 6]) };
    println!("hypercall 2: {}", Errno::from_return(result).unwrap_err());
    // ANCHOR_END: raw

    // ANCHOR: question
    let version = hypercall::version()?;
    println!("still talking to ABI {version}");
    Ok(())
    // ANCHOR_END: question
}
