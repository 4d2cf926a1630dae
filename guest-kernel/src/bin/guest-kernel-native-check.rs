//! The native platform's self-check (`arch::native::check`): the platform driven through
//! `Machine` alone, refusals included, without the kernel. It powers off with the number
//! after `--` on the command line, or crashes naming the first check that failed.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
compile_error!("the native check is built for x86_64-unknown-none: cargo xtask test builds and boots it");

extern crate alloc;

#[path = "../arch/mod.rs"]
pub mod arch;

arch::native::entry!(main);

fn main(machine: &'static arch::native::Native) -> u32 {
    arch::native::check::run(machine)
}
