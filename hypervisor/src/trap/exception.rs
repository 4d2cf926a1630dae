//! Names of x86 exception vectors, for the one-line reports of killed domains.

use core::fmt;
use hypercall_abi::event::EVENT_VECTOR;
use hypercall_abi::trap::SYSCALL_VECTOR;

/// Short name of `vector` as the manuals write it; [`SYSCALL_VECTOR`] is "syscall" and
/// [`EVENT_VECTOR`] (an upcall) "event".
pub fn name(vector: u64) -> &'static str {
    match vector {
        0 => "#DE",
        1 => "#DB",
        2 => "NMI",
        3 => "#BP",
        4 => "#OF",
        5 => "#BR",
        6 => "#UD",
        7 => "#NM",
        8 => "#DF",
        10 => "#TS",
        11 => "#NP",
        12 => "#SS",
        13 => "#GP",
        14 => "#PF",
        16 => "#MF",
        17 => "#AC",
        18 => "#MC",
        19 => "#XM",
        20 => "#VE",
        21 => "#CP",
        9 | 15 | 22..=31 => "reserved exception",
        SYSCALL_VECTOR => "syscall",
        EVENT_VECTOR => "event",
        _ => "interrupt",
    }
}

/// A vector as reports print it: the exception's name, "syscall", or "vector 0x80" for
/// interrupts, whose shared name alone would not say which one.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct VectorName(pub u64);

impl fmt::Display for VectorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0..=31 | SYSCALL_VECTOR | EVENT_VECTOR => f.write_str(name(self.0)),
            vector => write!(f, "vector {vector:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn names() {
        assert_eq!(name(13), "#GP");
        assert_eq!(name(14), "#PF");
        assert_eq!(name(15), "reserved exception");
        assert_eq!(name(32), "interrupt");
        assert_eq!(name(SYSCALL_VECTOR), "syscall");
        assert_eq!(name(EVENT_VECTOR), "event");
    }

    #[test]
    fn vector_names() {
        assert_eq!(VectorName(14).to_string(), "#PF");
        assert_eq!(VectorName(0x80).to_string(), "vector 0x80");
        assert_eq!(VectorName(SYSCALL_VECTOR).to_string(), "syscall");
        assert_eq!(VectorName(EVENT_VECTOR).to_string(), "event");
    }
}
