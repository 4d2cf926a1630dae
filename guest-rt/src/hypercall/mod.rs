//! Hypercalls: the hypercall instruction behind a trait, and safe wrappers for every
//! hypercall (SPEC.md §5.1: RAX = number, RDI RSI RDX R10 R8 R9, result in RAX,
//! negative = `-errno`, RCX and R11 clobbered).
//!
//! The wrappers are written once, generic over [`HypercallInterface`], so host unit tests
//! drive them with a fake that records every call; inside a domain the free functions of
//! this module use [`Syscall`], the real instruction.

use core::convert::Infallible;

use hypercall_abi::{AbiVersion, Errno};

mod event;
mod hypercalls;
mod instruction;
mod trap;

pub use hypercalls::{Hypercalls, HYPERVISOR};
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
pub(crate) use instruction::hypercall_instruction;
pub use instruction::{HypercallInterface, Syscall};

/// `version(ABI_VERSION)` on this domain's hypervisor.
pub fn version() -> Result<AbiVersion, Errno> {
    HYPERVISOR.version()
}

/// `version(FEATURES)` on this domain's hypervisor.
pub fn features() -> Result<u64, Errno> {
    HYPERVISOR.features()
}

/// Writes all of `bytes` to the console (see [`Hypercalls::console_write`]).
pub fn console_write(bytes: &[u8]) -> Result<usize, Errno> {
    HYPERVISOR.console_write(bytes)
}

/// Gives the CPU to the next runnable domain.
pub fn yield_now() -> Result<(), Errno> {
    HYPERVISOR.yield_now()
}

/// `sched_op(SHUTDOWN, reason, code)`; returns only on error.
pub fn shutdown(reason: u64, code: u64) -> Result<Infallible, Errno> {
    HYPERVISOR.shutdown(reason, code)
}

/// Powers the domain off with `code`.
pub fn poweroff(code: u32) -> ! {
    HYPERVISOR.poweroff(code)
}

/// Ends the domain with reason crash and `code`.
pub fn crash(code: u32) -> ! {
    HYPERVISOR.crash(code)
}

/// `set_segment_base(which, base)` on this domain's hypervisor.
pub fn set_segment_base(which: u64, base: u64) -> Result<u64, Errno> {
    HYPERVISOR.set_segment_base(which, base)
}

/// `console_io(READ, ...)` on this domain's hypervisor.
pub fn console_read(buffer: &mut [u8]) -> Result<usize, Errno> {
    HYPERVISOR.console_read(buffer)
}

/// The raw hypercall instruction, for conformance tests that pass bad arguments.
pub mod raw {
    use super::{HypercallInterface, Syscall};

    /// Issues hypercall `number` with `arguments`; returns RAX (negative = `-errno`).
    ///
    /// # Safety
    ///
    /// As for [`HypercallInterface::call`]: any argument the hypercall treats as a pointer
    /// it writes through must point to memory no Rust reference is using. Pointers it only
    /// reads, and invalid pointers (which the hypervisor refuses with `-EFAULT`), are fine.
    pub unsafe fn hypercall(number: u64, arguments: [u64; 6]) -> i64 {
        // SAFETY: the caller upholds `call`'s contract.
        unsafe { Syscall.call(number, arguments) }
    }
}
