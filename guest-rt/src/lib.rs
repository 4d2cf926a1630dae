//! guest-rt: the runtime a ringfence guest is written against.
//!
//! * [`entry!`] declares the guest's main function and emits the entry point and the
//!   ABI-version note;
//! * [`hypercall`] wraps every hypercall of the ABI (with [`raw`] for deliberate misuse);
//! * [`print!`]/[`println!`] write to the domain's console without allocating;
//! * [`heap`] makes `alloc` work over the domain's free memory; [`module()`] gives the
//!   domain's module (an initramfs, say) when it was started with one;
//! * [`events`] gives event channels, upcalls and the virtual interrupt flag, [`time`]
//!   system time, the wallclock and the one-shot timer;
//! * [`test`](mod@test) is the conformance suite's reporter, [`tsc`] its benchmark helper;
//! * a panic prints `panic: <location>: <message>` and crashes the domain with code 1.
//!
//! A minimal guest:
//!
//! ```ignore
//! #![cfg_attr(target_os = "none", no_std, no_main)]
//! use guest_rt::abi::StartInfo;
//! guest_rt::entry!(hello);
//! fn hello(_start: &'static StartInfo) -> u32 {
//!     guest_rt::println!("hello from a ringfence guest");
//!     0
//! }
//! ```
//!
//! Everything that is not an instruction compiles and is unit-tested on the host; the
//! `syscall` instruction, the global allocator and the panic handler exist only for
//! `target_os = "none"`.
#![cfg_attr(not(test), no_std)]
#![warn(missing_docs)]

pub use hypercall_abi as abi;

pub mod console;
pub mod entry;
pub mod events;
mod frame;
pub mod heap;
pub mod hypercall;
pub mod memory;
pub mod multicall;
pub mod segment;
pub mod test;
pub mod time;
pub mod trap;
pub mod tsc;
pub mod user;
mod user_mode;
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
pub mod xstate;

#[cfg(test)]
mod fake;
#[cfg(target_os = "none")]
mod panic;

pub use entry::{module, start_info, try_start_info};
pub use hypercall::raw;
