//! Exception handling for guest kernels (SPEC.md §11): one asm entry that every trap-table
//! vector (and the system-call callback) points at, a Rust dispatcher behind it, and a
//! table of Rust handlers.
//!
//! The hypervisor enters a handler with an [`ExceptionFrame`] at RSP and every other
//! general register as it was when the event happened. The entry pushes the registers the
//! frame does not carry (RAX, RCX and R11 are in `frame.iret`), hands the dispatcher a
//! [`TrapContext`] over all of it, then restores the registers, steps over the frame
//! header and issues `iret`, which resumes whatever the handler left in `frame.iret`. So
//! a handler returns somewhere else by changing `rip`, and changes registers by writing
//! them in the context.
//!
//! ```ignore
//! guest_rt::trap::install()?;
//! guest_rt::trap::set_handler(vector::INVALID_OPCODE, |context| {
//!     context.skip(2); // over the ud2
//!     TrapAction::Resume
//! })?;
//! ```

use core::fmt;

use hypercall_abi::trap::{
    exception_flags, trap_flags, vector, ExceptionFrame, IretFrame, TrapTableEntry, SYSCALL_VECTOR, VECTORS,
};
use hypercall_abi::Errno;
use spin::Mutex;

use crate::hypercall::HYPERVISOR;

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
    /// The vector ([`SYSCALL_VECTOR`] for a guest-user `syscall`).
    pub fn vector(&self) -> u64 {
        self.frame.vector
    }

    /// The error code.
    pub fn error_code(&self) -> u64 {
        self.frame.error_code
    }

    /// The faulting address of a #PF.
    pub fn fault_address(&self) -> u64 {
        self.frame.fault_address
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
    /// Abandon the interrupted guest-user context: [`crate::user::run`] returns
    /// [`crate::user::UserExit::Ended`] with this code. Only valid for an event from
    /// guest-user mode during `user::run`; otherwise the domain crashes.
    EndUserRun(u64),
}

/// A Rust trap handler.
pub type TrapHandler = fn(&mut TrapContext) -> TrapAction;

static HANDLERS: Mutex<[Option<TrapHandler>; VECTORS]> = Mutex::new([None; VECTORS]);

/// A one-value mailbox a handler fills and the interrupted code empties (handlers cannot
/// capture state: they are plain `fn`s).
pub struct Record<T: Copy> {
    value: Mutex<Option<T>>,
}

impl<T: Copy> Record<T> {
    /// An empty record.
    pub const fn new() -> Self {
        Self { value: Mutex::new(None) }
    }

    /// Stores `value` (replacing any earlier one).
    pub fn put(&self, value: T) {
        *self.value.lock() = Some(value);
    }

    /// Takes the stored value, leaving the record empty.
    pub fn take(&self) -> Option<T> {
        self.value.lock().take()
    }
}

impl<T: Copy> Default for Record<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// Code passed to `crash` when a trap has no handler.
pub const UNHANDLED_CRASH_CODE: u32 = 3;

/// The address every trap-table entry (and the system-call callback) points at.
pub fn entry_address() -> u64 {
    #[cfg(all(target_arch = "x86_64", target_os = "none"))]
    {
        extern "C" {
            fn ringfence_trap_entry();
        }
        ringfence_trap_entry as *const () as u64
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "none")))]
    {
        0
    }
}

/// A trap-table entry for `vector` pointing at the common entry.
pub fn entry_for(vector: u8, flags: u8) -> TrapTableEntry {
    TrapTableEntry { vector, flags, reserved: [0; 6], handler: entry_address() }
}

fn set_table(entries: &[TrapTableEntry]) -> Result<(), Errno> {
    // SAFETY: every handler in the entries is guest-rt's common entry (or 0), which
    // follows the exception-frame protocol.
    unsafe { HYPERVISOR.set_trap_table(entries) }.map(|_| ())
}

/// Points exception vectors 0..32 at the common entry (no Rust handlers yet: an exception
/// without one prints a report and crashes the domain).
pub fn install() -> Result<(), Errno> {
    let mut entries = [TrapTableEntry::default(); vector::FIRST_SOFTWARE as usize];
    for (index, entry) in entries.iter_mut().enumerate() {
        *entry = entry_for(index as u8, 0);
    }
    set_table(&entries)
}

/// Sets the Rust handler of `vector` and points that trap-table vector at the common
/// entry (keeping guest-user mode out of it: see [`grant_user`]).
pub fn set_handler(vector: u8, handler: TrapHandler) -> Result<(), Errno> {
    HANDLERS.lock()[usize::from(vector)] = Some(handler);
    set_table(&[entry_for(vector, 0)])
}

/// Forgets the Rust handler of `vector` (the trap-table entry stays: the dispatcher then
/// reports the vector as unhandled).
pub fn clear_handler(vector: u8) {
    HANDLERS.lock()[usize::from(vector)] = None;
}

/// Removes `vector` from the hypervisor's trap table (an event on it then kills the
/// domain: there is no handler).
pub fn remove_vector(vector: u8) -> Result<(), Errno> {
    set_table(&[TrapTableEntry { vector, flags: 0, reserved: [0; 6], handler: 0 }])
}

/// Lets guest-user code raise `vector` with `int n` (`int3` for 3); the hypervisor accepts
/// this for vectors 3, 4 and 32..=255.
pub fn grant_user(vector: u8) -> Result<(), Errno> {
    set_table(&[entry_for(vector, trap_flags::USER_MAY_RAISE)])
}

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

fn handler_for(vector: u64) -> Option<TrapHandler> {
    let handlers = HANDLERS.lock();
    handlers.get(vector as usize).copied().flatten()
}

/// Called by the entry stub with the context on the handler's stack.
#[cfg_attr(not(all(target_arch = "x86_64", target_os = "none")), allow(dead_code))]
extern "C" fn dispatch(context: &mut TrapContext) {
    let vector = context.frame.vector;
    let action = if vector == SYSCALL_VECTOR {
        crate::user::dispatch_syscall(context)
    } else {
        match handler_for(vector) {
            Some(handler) => handler(context),
            None => {
                crate::println!("trap: unhandled {}", ShowFrame(&context.frame));
                crate::hypercall::crash(UNHANDLED_CRASH_CODE)
            }
        }
    };
    match action {
        TrapAction::Resume => {}
        TrapAction::EndUserRun(code) => crate::user::end_run(code, &context.frame),
    }
}

/// Resumes the context in `frame` with the `iret` hypercall; registers other than RAX,
/// RCX, R11, RIP, RSP and RFLAGS keep the values they have here.
///
/// # Safety
///
/// The frame must name a context that is sound to continue in: its code, its stack and
/// everything Rust state it relies on. (A frame the hypervisor refuses kills the domain:
/// that is what conformance tests use this for.)
pub unsafe fn iret(frame: &IretFrame) -> ! {
    #[cfg(all(target_arch = "x86_64", target_os = "none"))]
    {
        // SAFETY: copies the 72-byte frame below the current stack pointer (no red zone on
        // this target, and nothing of ours lives there) and issues `iret`, which consumes
        // it and never returns here; the caller vouches for the context it resumes.
        unsafe {
            core::arch::asm!(
                "sub rsp, 80",
                "and rsp, -16",
                "mov rax, [rsi]", "mov [rsp], rax",
                "mov rax, [rsi + 8]", "mov [rsp + 8], rax",
                "mov rax, [rsi + 16]", "mov [rsp + 16], rax",
                "mov rax, [rsi + 24]", "mov [rsp + 24], rax",
                "mov rax, [rsi + 32]", "mov [rsp + 32], rax",
                "mov rax, [rsi + 40]", "mov [rsp + 40], rax",
                "mov rax, [rsi + 48]", "mov [rsp + 48], rax",
                "mov rax, [rsi + 56]", "mov [rsp + 56], rax",
                "mov rax, [rsi + 64]", "mov [rsp + 64], rax",
                "mov eax, {iret}",
                crate::hypercall::hypercall_instruction!(),
                "ud2",
                in("rsi") frame as *const IretFrame,
                iret = const hypercall_abi::Hypercall::IRET.0,
                options(noreturn),
            )
        }
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "none")))]
    {
        let _ = frame;
        panic!("iret outside a ringfence domain")
    }
}

/// Emits an entry stub named `$label` that saves the registers as a [`TrapContext`],
/// calls `$handler(&mut TrapContext)` and returns with the `iret` hypercall. At the first
/// instruction RSP points at the ExceptionFrame, which the hypervisor placed at
/// (stack & !15) - 104, so RSP = 8 (mod 16). Twelve pushes and the alignment slot make
/// RSP = 0 (mod 16) at the call, as the C ABI requires. After the handler, the registers
/// come back (possibly changed), RSP steps over the 32-byte header to the IretFrame, and
/// `iret` resumes frame.iret (RAX = the hypercall number is fine: iret loads RAX from the
/// frame, and the upcall mask from its IF).
macro_rules! entry_stub {
    ($label:literal, $handler:path) => {
        #[cfg(all(target_arch = "x86_64", target_os = "none"))]
        core::arch::global_asm!(
            concat!(".pushsection .text.", $label, ", \"ax\", @progbits"),
            concat!(".global ", $label),
            ".balign 16",
            concat!($label, ":"),
            "push rbx",
            "push rdx",
            "push rsi",
            "push rdi",
            "push rbp",
            "push r8",
            "push r9",
            "push r10",
            "push r12",
            "push r13",
            "push r14",
            "push r15",
            "sub rsp, 8",
            "mov rdi, rsp",
            "cld",
            "call {handler}",
            "add rsp, 8",
            "pop r15",
            "pop r14",
            "pop r13",
            "pop r12",
            "pop r10",
            "pop r9",
            "pop r8",
            "pop rbp",
            "pop rdi",
            "pop rsi",
            "pop rdx",
            "pop rbx",
            "add rsp, {header}",
            "mov eax, {iret}",
            $crate::hypercall::hypercall_instruction!(),
            "ud2",
            ".popsection",
            handler = sym $handler,
            header = const hypercall_abi::trap::EXCEPTION_HEADER_BYTES,
            iret = const hypercall_abi::Hypercall::IRET.0,
        );
    };
}
pub(crate) use entry_stub;

// The common exception entry.
entry_stub!("ringfence_trap_entry", dispatch);

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
