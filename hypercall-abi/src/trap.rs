//! Trap virtualization (SPEC.md §11): the trap table, the frame the hypervisor pushes on
//! the guest kernel's stack when it bounces an exception or a guest-user `syscall`, the
//! frame the `iret` hypercall consumes, and the virtual selectors that tell guest-kernel
//! mode from guest-user mode.
//!
//! Both guest modes run in hardware ring 3; the selectors here are the *virtual* ones a
//! guest sees in frames and hands to `iret`. The hardware selectors never appear.

use crate::address::GuestVirtualAddress;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Virtual code selector of guest-kernel mode.
pub const KERNEL_CS: u64 = 0xe033;
/// Virtual stack selector of guest-kernel mode.
pub const KERNEL_SS: u64 = 0xe02b;
/// Virtual code selector of guest-user mode.
pub const USER_CS: u64 = 0x33;
/// Virtual stack selector of guest-user mode.
pub const USER_SS: u64 = 0x2b;

/// Number of vectors a trap table covers (0..=255).
pub const VECTORS: usize = 256;

/// Pseudo-vector of a bounced guest-user `syscall` in [`ExceptionFrame::vector`]; the
/// frame is delivered to the registered system-call entry, not a trap-table handler.
pub const SYSCALL_VECTOR: u64 = 0x100;

pub mod vector;

/// Page-fault error-code bits as delivered to the guest (SPEC.md §11.4). `USER` reports
/// the *virtual* mode: set only if the fault happened in guest-user mode.
pub mod page_fault {
    /// The page was present (a protection fault).
    pub const PRESENT: u64 = 1 << 0;
    /// The access was a write.
    pub const WRITE: u64 = 1 << 1;
    /// The access came from guest-user mode.
    pub const USER: u64 = 1 << 2;
    /// A reserved bit was set in a paging structure (never for hypervisor-written tables).
    pub const RESERVED: u64 = 1 << 3;
    /// The access was an instruction fetch.
    pub const FETCH: u64 = 1 << 4;
}

/// One trap-table entry, as `set_trap_table` reads them.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct TrapTableEntry {
    /// Vector 0..=255.
    pub vector: u8,
    /// [`trap_flags`] bits.
    pub flags: u8,
    /// Zero.
    pub reserved: [u8; 6],
    /// Handler address in guest-kernel mode; 0 removes the handler.
    pub handler: GuestVirtualAddress,
}

/// [`TrapTableEntry::flags`] bits.
pub mod trap_flags {
    /// Guest-user code may raise this vector with `int n` (and `int3` for vector 3).
    /// Only vectors 3, 4 and 32..=255 may carry it.
    pub const USER_MAY_RAISE: u8 = 1 << 0;
    /// Every bit this version defines.
    pub const ALL: u8 = USER_MAY_RAISE;
}

/// Largest `count` one `set_trap_table` accepts.
pub const TRAP_TABLE_MAX: u64 = VECTORS as u64;

/// What `iret` consumes from the guest stack, lowest address first. RAX, R11 and RCX
/// are here because the hypercall instruction itself uses them.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct IretFrame {
    /// Restored to RAX.
    pub rax: u64,
    /// Restored to R11.
    pub r11: u64,
    /// Restored to RCX.
    pub rcx: u64,
    /// [`iret_flags`] bits.
    pub flags: u64,
    /// Where execution resumes.
    pub rip: u64,
    /// [`KERNEL_CS`] or [`USER_CS`]: the mode execution resumes in.
    pub cs: u64,
    /// RFLAGS to resume with; only [`RFLAGS_GUEST_SETTABLE`] bits may be set.
    pub rflags: u64,
    /// Stack pointer to resume with.
    pub rsp: u64,
    /// [`KERNEL_SS`] with [`KERNEL_CS`], [`USER_SS`] with [`USER_CS`].
    pub ss: u64,
}

/// [`IretFrame::flags`] bits; none are defined in this version (the field MUST be 0).
pub mod iret_flags {
    /// Every bit this version defines.
    pub const ALL: u64 = 0;
}

/// RFLAGS bits an `iret` frame may carry: CF, PF, AF, ZF, SF, TF, IF, DF, OF, AC, ID and
/// the always-one bit 1. IOPL, NT, RF, VM, VIF, VIP or any reserved bit kills the domain.
pub const RFLAGS_GUEST_SETTABLE: u64 = 0x0000_0000_0024_0fd7;
/// RFLAGS.IF: in ABI 0.2 always on in hardware; kept in frames for the virtual flag.
pub const RFLAGS_INTERRUPT: u64 = 1 << 9;

/// The frame the hypervisor writes below the interrupted stack pointer (16-byte
/// aligned) of the guest kernel's stack before jumping to a handler. At the handler's
/// first instruction RSP points at `vector`; every general register other than RSP
/// holds the value it had when the event happened (RAX, R11 and RCX too: the copies in
/// `iret` are for the return). The handler returns by adding 32 to RSP, so that it
/// points at `iret`, and calling the `iret` hypercall.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct ExceptionFrame {
    /// Exception vector, a granted software-interrupt vector, or [`SYSCALL_VECTOR`].
    pub vector: u64,
    /// The exception's error code (with [`page_fault::USER`] rewritten to the virtual
    /// mode for #PF), `n * 8 + 2` for a refused `int n`, otherwise 0.
    pub error_code: u64,
    /// The faulting address for #PF (also in the vCPU's shared info), otherwise 0.
    pub fault_address: GuestVirtualAddress,
    /// [`exception_flags`] bits.
    pub flags: u64,
    /// The interrupted context, ready for `iret`.
    pub iret: IretFrame,
}

/// [`ExceptionFrame::flags`] bits.
pub mod exception_flags {
    /// The event happened in guest-user mode (the `iret.cs` is [`super::USER_CS`]).
    pub const FROM_USER: u64 = 1 << 0;
}

/// Bytes a handler adds to RSP to go from the [`ExceptionFrame`] to its [`IretFrame`].
pub const EXCEPTION_HEADER_BYTES: u64 = 32;

/// Segment registers `set_segment_base` can set (RDI).
pub mod segment {
    /// FS base, the same in both guest modes.
    pub const FS: u64 = 0;
    /// GS base of guest-kernel mode (live while in guest-kernel mode).
    pub const GS_KERNEL: u64 = 1;
    /// GS base of guest-user mode (live while in guest-user mode); the hypervisor swaps
    /// the two on every mode change, which is what `swapgs` would do.
    pub const GS_USER: u64 = 2;
}

/// Callback types of `callback_op(REGISTER, type, address)`.
pub mod callback_type {
    /// Entry for a guest-user `syscall`, reached in guest-kernel mode with an
    /// [`super::ExceptionFrame`] whose vector is [`super::SYSCALL_VECTOR`].
    pub const SYSCALL: u64 = 0;
}

const _: () = {
    assert!(core::mem::size_of::<TrapTableEntry>() == 16);
    assert!(core::mem::offset_of!(TrapTableEntry, handler) == 8);
    assert!(core::mem::size_of::<IretFrame>() == 72);
    assert!(core::mem::offset_of!(IretFrame, rip) == 32);
    assert!(core::mem::offset_of!(IretFrame, ss) == 64);
    assert!(core::mem::size_of::<ExceptionFrame>() == 104);
    assert!(core::mem::offset_of!(ExceptionFrame, iret) == EXCEPTION_HEADER_BYTES as usize);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settable_flags_exclude_privilege() {
        for bit in [12, 13, 14, 16, 17, 19, 20] {
            assert_eq!(RFLAGS_GUEST_SETTABLE & (1 << bit), 0, "bit {bit}");
        }
        assert_ne!(RFLAGS_GUEST_SETTABLE & RFLAGS_INTERRUPT, 0);
        assert_ne!(RFLAGS_GUEST_SETTABLE & (1 << 18), 0, "AC");
        assert_ne!(RFLAGS_GUEST_SETTABLE & (1 << 21), 0, "ID");
    }

    #[test]
    fn page_fault_bits_are_the_cpu_s() {
        // SPEC.md §11.4.6 hands the guest the CPU's #PF error code, so each bit is where the
        // Intel SDM (Vol. 3A §4.7, "Page-Fault Exceptions") and the AMD APM (Vol. 2 §8.4.2)
        // put it: P bit 0, W/R bit 1, U/S bit 2, RSVD bit 3, I/D bit 4.
        let bits = [page_fault::PRESENT, page_fault::WRITE, page_fault::USER, page_fault::RESERVED, page_fault::FETCH];
        assert_eq!(bits.map(u64::trailing_zeros), [0, 1, 2, 3, 4]);
        assert!(bits.iter().all(|bit| bit.count_ones() == 1));
    }

    #[test]
    fn modes_differ() {
        assert_ne!(KERNEL_CS, USER_CS);
        assert_ne!(KERNEL_SS, USER_SS);
        // Every virtual selector has RPL 3: both modes are ring 3 in hardware.
        for selector in [KERNEL_CS, KERNEL_SS, USER_CS, USER_SS] {
            assert_eq!(selector & 3, 3);
        }
    }
}
