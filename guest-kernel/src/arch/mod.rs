//! The architecture boundary: the core decides *what* happens (which faults are fixed up,
//! which system calls exist, where a process's memory lies); the platform only carries it
//! out, and nothing outside this module executes a privileged instruction or a hypercall.
//! So exceptions and system calls reach the core as plain data ([`PageFault`],
//! [`Breakpoint`], [`SystemCall`]) and leave it as decisions ([`FaultResolution`],
//! [`SyscallResult`]).
//!
//! [`user_program`] is the machine code of the first user program, the same on every
//! x86-64 platform.
//!
//! Implementations:
//! * [`paravirt`]: ringfence PV (ABI 0.3), every operation a hypercall or a guest-rt
//!   primitive built on them. This is the one built today.
//! * native: bare hardware (serial port I/O, `cli`/`sti`, `hlt`, an IDT, page tables,
//!   `sysret`). Not written yet — it needs only a second `impl Arch` plus its own
//!   [`boot!`] (entry, panic handler and heap setup: guest-rt's today); the core is
//!   generic over the trait.

mod interface;
mod interrupt_guard;
pub mod machine;
pub mod paravirt;
pub mod user_program;

pub use interface::{
    Access, Arch, ArchError, Backing, BootInfo, Breakpoint, ExceptionHandlers, FaultResolution, PageFault,
    SyscallDispatcher, SyscallResult, SystemCall, UserExit, UserImage, UserRegion, PAGE_SIZE,
};
pub use interrupt_guard::InterruptGuard;
pub(crate) use paravirt::boot;

/// The platform this build runs on.
pub type Platform = paravirt::Paravirt;

/// The platform's [`Arch`] implementation.
pub fn platform() -> &'static Platform {
    paravirt::instance()
}
