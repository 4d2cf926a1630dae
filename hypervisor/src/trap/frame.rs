//! The register frame every entry into the hypervisor saves (hypercall, exception,
//! interrupt) and every return to a guest restores. The entry assembly fixes the layout:
//! general registers pushed in reverse order, then vector and error code, then the
//! hardware interrupt frame. A domain that is not running keeps one of these as its state.

/// Vector number the hypercall entry stores, above every hardware vector, so one frame
/// type records how the hypervisor was entered.
pub const HYPERCALL_VECTOR: u64 = 0x100;

/// Guest code selector (ring 3, 64-bit), as loaded by `sysretq` from STAR.
pub const GUEST_CODE_SELECTOR: u64 = 0x23;
/// Guest stack selector (ring 3).
pub const GUEST_STACK_SELECTOR: u64 = 0x1b;

/// RFLAGS bits a guest may set freely: status flags, TF, DF, AC and ID. IF is forced on;
/// IOPL, NT, RF, VM, VIF and VIP are forced off so a frame can never raise privilege.
pub const RFLAGS_GUEST_MASK: u64 = 0x0000_0000_0024_0dd5;
/// RFLAGS.IF.
pub const RFLAGS_INTERRUPT: u64 = 1 << 9;
/// RFLAGS.TF, the guest's single-step flag.
pub const RFLAGS_TRAP: u64 = 1 << 8;
/// RFLAGS bit 1 always reads as one.
pub const RFLAGS_RESERVED_ONE: u64 = 1 << 1;

/// Saved guest registers. Field order is the stack layout built by the entry code.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct TrapFrame {
    /// R15.
    pub r15: u64,
    /// R14.
    pub r14: u64,
    /// R13.
    pub r13: u64,
    /// R12.
    pub r12: u64,
    /// R11.
    pub r11: u64,
    /// R10.
    pub r10: u64,
    /// R9.
    pub r9: u64,
    /// R8.
    pub r8: u64,
    /// RBP.
    pub rbp: u64,
    /// RDI.
    pub rdi: u64,
    /// RSI.
    pub rsi: u64,
    /// RDX.
    pub rdx: u64,
    /// RCX.
    pub rcx: u64,
    /// RBX.
    pub rbx: u64,
    /// RAX.
    pub rax: u64,
    /// Exception or interrupt vector, or [`HYPERCALL_VECTOR`].
    pub vector: u64,
    /// The CPU's error code, or 0 where the vector has none.
    pub error_code: u64,
    /// RIP.
    pub rip: u64,
    /// CS.
    pub cs: u64,
    /// RFLAGS.
    pub rflags: u64,
    /// RSP.
    pub rsp: u64,
    /// SS.
    pub ss: u64,
}

/// How the exit path may return to the guest. One byte, not a register's width: the
/// system's `Step` holding it then fits a register, so every handler returns it in RAX
/// instead of through memory (the entry asm gets it widened, `as u64`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ReturnPath {
    /// `sysretq`: RCX and R11 already equal RIP and RFLAGS, so nothing is lost.
    Sysret = 0,
    /// `iretq`: restores every register exactly.
    Iret = 1,
}

impl TrapFrame {
    /// The initial state of a new domain (SPEC.md §4.3): all general registers zero,
    /// RDI = start-info address, RSP = stack top - 8, interrupts on.
    pub fn new_guest(entry: u64, start_info: u64, stack_top: u64) -> Self {
        Self {
            rdi: start_info,
            rip: entry,
            cs: GUEST_CODE_SELECTOR,
            rflags: RFLAGS_INTERRUPT | RFLAGS_RESERVED_ONE,
            rsp: stack_top - 8,
            ss: GUEST_STACK_SELECTOR,
            ..Self::default()
        }
    }

    /// Hypercall arguments in the order of SPEC.md §5.1: RDI, RSI, RDX, R10, R8, R9.
    pub fn hypercall_arguments(&self) -> [u64; 6] {
        [self.rdi, self.rsi, self.rdx, self.r10, self.r8, self.r9]
    }

    /// True if the frame was saved while the CPU ran guest code (ring 3).
    pub fn from_guest(&self) -> bool {
        self.cs & 3 == 3
    }

    /// Forces the frame into a state that can only return to ring 3 with no privilege
    /// gained, and picks the cheapest exit that restores it exactly. `None` if RIP is not
    /// canonical: returning there would fault inside the hypervisor (on Intel, `sysretq`
    /// to a non-canonical RCX raises #GP in ring 0 on the guest's stack — XSA-7), so the
    /// caller must kill the domain instead.
    #[inline(always)]
    pub fn prepare_return(&mut self) -> Option<ReturnPath> {
        if !hypercall_abi::layout::is_canonical(self.rip) {
            return None;
        }
        self.cs = GUEST_CODE_SELECTOR;
        self.ss = GUEST_STACK_SELECTOR;
        self.rflags = (self.rflags & RFLAGS_GUEST_MASK) | RFLAGS_INTERRUPT | RFLAGS_RESERVED_ONE;
        // `sysretq` with TF set raises the single-step #DB at once, before the instruction at
        // RIP runs (the CPU treats it as the end of the guest's `syscall`); `iretq` runs that
        // instruction first. A guest stepping with `iret` must make progress, and both
        // hypercall forms must step alike (SPEC.md §5.1), so TF always takes `iretq`.
        if self.rcx == self.rip && self.r11 == self.rflags && self.rflags & RFLAGS_TRAP == 0 {
            Some(ReturnPath::Sysret)
        } else {
            Some(ReturnPath::Iret)
        }
    }
}

/// Byte offsets the entry assembly uses; checked against the struct at compile time.
pub mod offsets {
    /// Of `rip`.
    pub const RIP: usize = 17 * 8;
    /// Of `rflags`.
    pub const RFLAGS: usize = 19 * 8;
    /// Of `rsp`.
    pub const RSP: usize = 20 * 8;
    /// Of the whole frame.
    pub const SIZE: usize = 22 * 8;
}

const _: () = {
    assert!(core::mem::offset_of!(TrapFrame, rip) == offsets::RIP);
    assert!(core::mem::offset_of!(TrapFrame, rflags) == offsets::RFLAGS);
    assert!(core::mem::offset_of!(TrapFrame, rsp) == offsets::RSP);
    assert!(core::mem::size_of::<TrapFrame>() == offsets::SIZE);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_guest_state() {
        let frame = TrapFrame::new_guest(0xffff_ffff_8000_1000, 0x5000, 0x9000);
        assert_eq!(frame.rsp, 0x8ff8);
        assert_eq!(frame.rdi, 0x5000);
        assert!(frame.from_guest());
        assert_eq!(frame.rax | frame.rbx | frame.rcx | frame.r15, 0);
        assert_eq!((frame.cs, frame.ss), (GUEST_CODE_SELECTOR, GUEST_STACK_SELECTOR));
        assert_eq!(frame.rflags, 0x202, "IF and the always-one bit 1");
    }

    #[test]
    fn only_ring_3_frames_are_from_the_guest() {
        let mut frame = TrapFrame::new_guest(0x1000, 0, 0x2000);
        for (cs, guest) in [(0x08, false), (0x10, false), (0x2b, true), (0x33, true), (0x1a, false)] {
            frame.cs = cs;
            assert_eq!(frame.from_guest(), guest, "cs {cs:#x}");
        }
    }

    #[test]
    fn privilege_bits_are_stripped() {
        let mut frame = TrapFrame::new_guest(0x1000, 0, 0x2000);
        frame.rflags = u64::MAX;
        frame.cs = 0x08;
        assert_eq!(frame.prepare_return(), Some(ReturnPath::Iret));
        assert_eq!(frame.cs, GUEST_CODE_SELECTOR);
        assert_eq!(frame.rflags & (3 << 12), 0, "IOPL cleared");
        assert_eq!(frame.rflags & (1 << 14), 0, "NT cleared");
        assert_eq!(frame.rflags & (1 << 17), 0, "VM cleared");
        assert_ne!(frame.rflags & RFLAGS_INTERRUPT, 0, "IF forced on");
    }

    #[test]
    fn sysret_only_when_nothing_is_lost() {
        let mut frame = TrapFrame::new_guest(0x1000, 0, 0x2000);
        frame.rcx = 0x1000;
        frame.r11 = frame.rflags;
        assert_eq!(frame.prepare_return(), Some(ReturnPath::Sysret));
        frame.r11 = 0;
        assert_eq!(frame.prepare_return(), Some(ReturnPath::Iret));
    }

    #[test]
    fn a_single_stepped_guest_returns_by_iret() {
        let mut frame = TrapFrame::new_guest(0x1000, 0, 0x2000);
        frame.rflags |= RFLAGS_TRAP;
        frame.rcx = 0x1000;
        frame.r11 = frame.rflags;
        assert_eq!(frame.prepare_return(), Some(ReturnPath::Iret));
        assert_ne!(frame.rflags & RFLAGS_TRAP, 0, "TF is the guest's");
    }

    #[test]
    fn non_canonical_rip_is_never_returned_to() {
        let mut frame = TrapFrame::new_guest(0x0000_8000_0000_0000, 0, 0x2000);
        frame.rcx = frame.rip;
        frame.r11 = frame.rflags;
        assert_eq!(frame.prepare_return(), None);
    }
}
