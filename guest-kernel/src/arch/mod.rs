//! The platform door: [`machine::Machine`] is every operation the kernel cannot perform
//! on its own on both platforms, as plain data in and out (a [`machine::Trap`] when user
//! mode stops, a [`machine::PageUpdate`] for an address space). Nothing outside this
//! module executes a privileged instruction or a hypercall.
//!
//! [`vdso`] is the one piece of machine code shared by both builds: the vDSO's functions,
//! which run in user mode.
//!
//! Implementations, one per build:
//! * `paravirt` (feature `paravirt`, the default): ringfence PV (ABI 0.4), every
//!   operation a hypercall, a shared-info access or an unprivileged instruction;
//! * `native` (feature `native`): ring 0 on a PC, booted by PVH under QEMU, with its own
//!   descriptor tables, page tables, APIC timer and serial console.

#[cfg(all(feature = "paravirt", feature = "native"))]
compile_error!(
    "guest-kernel: the features `paravirt` and `native` exclude each other; build the native kernel with \
     `--no-default-features --features native`"
);
#[cfg(not(any(feature = "paravirt", feature = "native")))]
compile_error!("guest-kernel: choose a platform: feature `paravirt` (the default) or `native`");

pub mod machine;
#[cfg(feature = "native")]
pub mod native;
#[cfg(feature = "paravirt")]
pub mod paravirt;
pub mod vdso;
