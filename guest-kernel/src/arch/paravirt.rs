//! The ringfence paravirtual platform (ABI 0.4).
//!
//! [`ParavirtMachine`] is the kernel's [`Machine`](super::machine::Machine) here (the list of
//! its operations is in the crate documentation):
//!
//! * [`machine`]: starting it and the trait's methods;
//! * [`entry`]: the asm into guest-user mode and the one entry every event comes back
//!   through, with the stack events from user mode land on;
//! * [`user_run`]: what a run checks and installs first, and what ended it;
//! * [`interrupts`]: upcalls, the timer, console input, `idle`;
//! * [`spaces`]: user address spaces and their pages; [`frames`]: heap pages as gfns;
//! * [`extended_state`]: XSAVE or FXSAVE, and making a saved area safe to restore;
//! * [`initramfs`]: the archive the domain was started with;
//! * [`boot`](mod@boot): the entry point around the kernel's main function ([`run_kernel`]).
//!

mod boot;
mod entry;
mod error;
mod extended_state;
mod frames;
mod initramfs;
mod interrupts;
mod machine;
mod spaces;
mod user_run;

pub(crate) use boot::boot;
pub use boot::{run_kernel, START_FAILED_CRASH_CODE};
pub use entry::KERNEL_EXCEPTION_CRASH_CODE;
pub use machine::ParavirtMachine;
