//! Exception vectors (Intel SDM vol. 3, 6.3.1) and their names as reports print them. A
//! vector in an [`super::ExceptionFrame`] is one of these, a software-interrupt vector
//! (32..=255), [`super::SYSCALL_VECTOR`] or [`crate::event::EVENT_VECTOR`].

use crate::event::EVENT_VECTOR;
use crate::trap::SYSCALL_VECTOR;
use core::fmt;

/// Divide error.
pub const DIVIDE_ERROR: u8 = 0;
/// Debug.
pub const DEBUG: u8 = 1;
/// Non-maskable interrupt (never a guest's).
pub const NMI: u8 = 2;
/// Breakpoint (`int3`).
pub const BREAKPOINT: u8 = 3;
/// Overflow.
pub const OVERFLOW: u8 = 4;
/// BOUND range exceeded.
pub const BOUND_RANGE: u8 = 5;
/// Invalid opcode.
pub const INVALID_OPCODE: u8 = 6;
/// Device not available.
pub const DEVICE_NOT_AVAILABLE: u8 = 7;
/// Double fault (never a guest's).
pub const DOUBLE_FAULT: u8 = 8;
/// Invalid TSS.
pub const INVALID_TSS: u8 = 10;
/// Segment not present.
pub const SEGMENT_NOT_PRESENT: u8 = 11;
/// Stack-segment fault.
pub const STACK_SEGMENT: u8 = 12;
/// General protection.
pub const GENERAL_PROTECTION: u8 = 13;
/// Page fault.
pub const PAGE_FAULT: u8 = 14;
/// x87 floating-point error.
pub const X87_FLOATING_POINT: u8 = 16;
/// Alignment check.
pub const ALIGNMENT_CHECK: u8 = 17;
/// Machine check (never a guest's).
pub const MACHINE_CHECK: u8 = 18;
/// SIMD floating-point exception.
pub const SIMD_FLOATING_POINT: u8 = 19;
/// Virtualization exception.
pub const VIRTUALIZATION: u8 = 20;
/// Control-protection exception.
pub const CONTROL_PROTECTION: u8 = 21;
/// First vector a trap table may grant to guest-user `int n` (and the first that is
/// never an exception).
pub const FIRST_SOFTWARE: u8 = 32;

/// Short name of `vector` as the manuals write it ("#GP"); a vector below
/// [`FIRST_SOFTWARE`] the architecture does not define is "reserved exception",
/// [`SYSCALL_VECTOR`] "syscall", [`EVENT_VECTOR`] (an upcall) "event", any other
/// "interrupt".
pub const fn name(vector: u64) -> &'static str {
    match vector {
        SYSCALL_VECTOR => "syscall",
        EVENT_VECTOR => "event",
        _ if vector >= FIRST_SOFTWARE as u64 => "interrupt",
        _ => match vector as u8 {
            DIVIDE_ERROR => "#DE",
            DEBUG => "#DB",
            NMI => "NMI",
            BREAKPOINT => "#BP",
            OVERFLOW => "#OF",
            BOUND_RANGE => "#BR",
            INVALID_OPCODE => "#UD",
            DEVICE_NOT_AVAILABLE => "#NM",
            DOUBLE_FAULT => "#DF",
            INVALID_TSS => "#TS",
            SEGMENT_NOT_PRESENT => "#NP",
            STACK_SEGMENT => "#SS",
            GENERAL_PROTECTION => "#GP",
            PAGE_FAULT => "#PF",
            X87_FLOATING_POINT => "#MF",
            ALIGNMENT_CHECK => "#AC",
            MACHINE_CHECK => "#MC",
            SIMD_FLOATING_POINT => "#XM",
            VIRTUALIZATION => "#VE",
            CONTROL_PROTECTION => "#CP",
            _ => "reserved exception",
        },
    }
}

/// A vector as reports print it: [`name`] for exceptions (defined or reserved), the
/// syscall and the event pseudo-vectors, and "vector 0x80" for interrupts, whose shared
/// name alone would not say which one.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct VectorName(pub u64);

impl fmt::Display for VectorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let vector = self.0;
        if vector < u64::from(FIRST_SOFTWARE) || vector == SYSCALL_VECTOR || vector == EVENT_VECTOR {
            f.write_str(name(vector))
        } else {
            write!(f, "vector {vector:#x}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_vector_has_its_name() {
        let exceptions = [
            "#DE",
            "#DB",
            "NMI",
            "#BP",
            "#OF",
            "#BR",
            "#UD",
            "#NM",
            "#DF",
            "reserved exception",
            "#TS",
            "#NP",
            "#SS",
            "#GP",
            "#PF",
            "reserved exception",
            "#MF",
            "#AC",
            "#MC",
            "#XM",
            "#VE",
            "#CP",
        ];
        for (vector, expected) in exceptions.iter().enumerate() {
            assert_eq!(name(vector as u64), *expected, "vector {vector}");
        }
        for vector in 22..32 {
            assert_eq!(name(vector), "reserved exception", "vector {vector}");
        }
        for vector in [32, 0x80, 0xff, 0x102, 0x1_0000_0000, u64::MAX] {
            assert_eq!(name(vector), "interrupt", "vector {vector:#x}");
        }
        // A vector whose low byte is an exception's is still not that exception.
        assert_eq!(name(0x10e), "interrupt");
        assert_eq!(name(SYSCALL_VECTOR), "syscall");
        assert_eq!(name(EVENT_VECTOR), "event");
    }

    #[test]
    fn vector_names_tell_interrupts_apart() {
        assert_eq!(VectorName(u64::from(PAGE_FAULT)).to_string(), "#PF");
        assert_eq!(VectorName(9).to_string(), "reserved exception");
        assert_eq!(VectorName(0x80).to_string(), "vector 0x80");
        assert_eq!(VectorName(0x20).to_string(), "vector 0x20");
        assert_eq!(VectorName(SYSCALL_VECTOR).to_string(), "syscall");
        assert_eq!(VectorName(EVENT_VECTOR).to_string(), "event");
    }
}
