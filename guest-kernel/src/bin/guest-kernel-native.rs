//! guest-kernel's native build: the kernel in ring 0 on a PC (PVH boot under QEMU), on the
//! platform of `arch::native`. The crate's documentation, with every sensitive operation
//! of both platforms, is in src/main.rs (the paravirtualized build's root).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
compile_error!("the native kernel is built for x86_64-unknown-none: cargo xtask run --native builds and boots it");

extern crate alloc;

#[path = "../arch/mod.rs"]
pub mod arch;
#[path = "../console.rs"]
pub mod console;
#[path = "../kernel/mod.rs"]
pub mod kernel;

arch::native::entry!(main);

fn main(machine: &'static arch::native::Native) -> u32 {
    kernel::main(machine)
}
