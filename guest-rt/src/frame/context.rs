//! The registers and frame a handler sees, and the action it returns.

use hypercall_abi::trap::{exception_flags, ExceptionFrame};

/// The registers the entry stub saves, in the order it leaves them on the stack (lowest
/// address first). RAX, RCX and R11 are not here: their values are in `frame.iret`, and
/// `iret` restores them from there.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct SavedRegisters {
    /// Padding that keeps the dispatcher's stack 16-byte aligned.
    pub alignment: u64,
    /// R15.
    pub r15: u64,
    /// R14.
    pub r14: u64,
    /// R13.
    pub r13: u64,
    /// R12.
    pub r12: u64,
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
    /// RBX.
    pub rbx: u64,
}

/// Everything a handler sees and may change: the saved registers and the hypervisor's
/// frame, contiguous on the handler's stack.
#[derive(Clone, Debug)]
#[repr(C)]
pub struct TrapContext {
    /// Registers other than RSP, RAX, RCX, R11.
    pub registers: SavedRegisters,
    /// The hypervisor's frame; `frame.iret` is what execution resumes with.
    pub frame: ExceptionFrame,
}

const _: () = assert!(core::mem::size_of::<SavedRegisters>() == 13 * 8);

impl TrapContext {
    /// The vector ([`SYSCALL_VECTOR`](hypercall_abi::trap::SYSCALL_VECTOR) for a
    /// guest-user `syscall`).
    pub fn vector(&self) -> u64 {
        self.frame.vector
    }

    /// The error code.
    pub fn error_code(&self) -> u64 {
        self.frame.error_code
    }

    /// The faulting address of a #PF.
    pub fn fault_address(&self) -> u64 {
        self.frame.fault_address.0
    }

    /// True if the event happened in guest-user mode.
    pub fn from_user(&self) -> bool {
        self.frame.flags & exception_flags::FROM_USER != 0
    }

    /// Where execution resumes (for a fault: the faulting instruction).
    pub fn rip(&self) -> u64 {
        self.frame.iret.rip
    }

    /// Resume at `rip` instead.
    pub fn set_rip(&mut self, rip: u64) {
        self.frame.iret.rip = rip;
    }

    /// Resume `bytes` further on (skips a faulting instruction of that length).
    pub fn skip(&mut self, bytes: u64) {
        self.frame.iret.rip = self.frame.iret.rip.wrapping_add(bytes);
    }

    /// RAX of the interrupted context (restored by `iret`).
    pub fn rax(&self) -> u64 {
        self.frame.iret.rax
    }

    /// Sets the RAX execution resumes with.
    pub fn set_rax(&mut self, value: u64) {
        self.frame.iret.rax = value;
    }

    /// The system-call number and arguments of a guest-user `syscall` (RAX; RDI, RSI,
    /// RDX, R10, R8, R9).
    pub fn syscall(&self) -> (u64, [u64; 6]) {
        let r = &self.registers;
        (self.frame.iret.rax, [r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9])
    }
}

/// What the dispatcher does after a handler.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum TrapAction {
    /// `iret` to `frame.iret` (as the handler may have changed it).
    Resume,
    /// Abandon the interrupted guest-user context: `user::run` returns
    /// `UserExit::Ended` with this code. Only valid for an event from guest-user mode
    /// during `user::run`; otherwise the domain crashes.
    EndUserRun(u64),
}

/// A Rust trap handler.
pub type TrapHandler = fn(&mut TrapContext) -> TrapAction;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_layout_matches_the_entry_stub() {
        // 12 pushes + the alignment slot, then the frame.
        assert_eq!(core::mem::offset_of!(TrapContext, frame), 13 * 8);
        assert_eq!(core::mem::offset_of!(SavedRegisters, r15), 8);
        assert_eq!(core::mem::offset_of!(SavedRegisters, rbx), 12 * 8);
        assert_eq!((13 * 8) % 16, 8, "frame at 8 mod 16 puts the context at 0 mod 16");
    }

    #[test]
    fn skip_and_syscall_arguments() {
        let mut context = TrapContext { registers: SavedRegisters::default(), frame: ExceptionFrame::default() };
        context.frame.iret.rip = 0x1000;
        context.skip(2);
        assert_eq!(context.rip(), 0x1002);
        context.set_rax(60);
        context.registers.rdi = 1;
        context.registers.r10 = 4;
        assert_eq!(context.syscall(), (60, [1, 0, 0, 4, 0, 0]));
        context.frame.flags = exception_flags::FROM_USER;
        assert!(context.from_user());
    }
}
