//! How guest-rt reports an event nobody handles: a one-line description of its frame,
//! then a crash with [`UNHANDLED_CRASH_CODE`].

use core::fmt;

use hypercall_abi::trap::ExceptionFrame;

/// Code passed to `crash` when a trap has no handler.
pub const UNHANDLED_CRASH_CODE: u32 = 3;

/// Short name of a vector, as the hypervisor's kill reports print it: the ABI's one table.
pub use hypercall_abi::trap::vector::name as vector_name;

/// One-line description of a frame, for reports.
pub struct ShowFrame<'a>(pub &'a ExceptionFrame);

impl fmt::Display for ShowFrame<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let frame = self.0;
        write!(
            f,
            "{} (vector {:#x}) error {:#x} address {:#x} flags {:#x} rip {:#x} cs {:#x} rsp {:#x} rflags {:#x}",
            vector_name(frame.vector),
            frame.vector,
            frame.error_code,
            frame.fault_address,
            frame.flags,
            frame.iret.rip,
            frame.iret.cs,
            frame.iret.rsp,
            frame.iret.rflags
        )
    }
}
