//! One module per `cargo xtask` subcommand; each `main` returns the process exit code.

pub mod bench;
mod bench_kernel;
mod bench_xen;
pub mod build;
mod first_steps;
pub mod fuzz;
pub mod gdb;
pub mod gen_header;
mod host_reference;
mod kernel_suite;
pub mod lint;
pub mod new_guest;
pub mod run;
mod stress;
pub mod test;
