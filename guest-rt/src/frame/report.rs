//! How guest-rt reports an event nobody handles: a one-line description of its frame,
//! then a crash with [`UNHANDLED_CRASH_CODE`].

use core::fmt;

use hypercall_abi::trap::{ExceptionFrame, SYSCALL_VECTOR};

/// Code passed to `crash` when a trap has no handler.
pub const UNHANDLED_CRASH_CODE: u32 = 3;

/// Short name of an exception vector.
pub fn vector_name(vector: u64) -> &'static str {
    match vector {
        0 => "#DE",
        1 => "#DB",
        3 => "#BP",
        4 => "#OF",
        5 => "#BR",
        6 => "#UD",
        7 => "#NM",
        8 => "#DF",
        12 => "#SS",
        13 => "#GP",
        14 => "#PF",
        16 => "#MF",
        17 => "#AC",
        19 => "#XM",
        SYSCALL_VECTOR => "syscall",
        _ => "vector",
    }
}

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
