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
//! * `native` (feature `native`): ring 0 on a PC, booted by PVH under QEMU; implements
//!   [`machine::Machine`] with its own descriptor tables, page tables, APIC timer and
//!   serial console.

#[cfg(all(feature = "paravirt", feature = "native"))]
compile_error!(
    "guest-kernel: the features `paravirt` and `native` exclude each other; build the native kernel with \
     `--no-default-features --features native`"
);
#[cfg(not(any(feature = "paravirt", feature = "native")))]
compile_error!("guest-kernel: choose a platform: feature `paravirt` (the default) or `native`");

#[cfg(feature = "paravirt")]
mod interface;
#[cfg(feature = "paravirt")]
mod interrupt_guard;
pub mod machine;
#[cfg(feature = "native")]
pub mod native;
#[cfg(feature = "paravirt")]
pub mod paravirt;
#[cfg(feature = "paravirt")]
pub mod user_program;

#[cfg(feature = "paravirt")]
pub use interface::{
    Access, Arch, ArchError, Backing, BootInfo, Breakpoint, ExceptionHandlers, FaultResolution, PageFault,
    SyscallDispatcher, SyscallResult, SystemCall, UserExit, UserImage, UserRegion, PAGE_SIZE,
};
#[cfg(feature = "paravirt")]
pub use interrupt_guard::InterruptGuard;
#[cfg(feature = "paravirt")]
pub(crate) use paravirt::boot;

/// The platform this build runs on.
#[cfg(feature = "paravirt")]
pub type Platform = paravirt::Paravirt;

/// The platform's [`Arch`] implementation.
#[cfg(feature = "paravirt")]
pub fn platform() -> &'static Platform {
    paravirt::instance()
}
