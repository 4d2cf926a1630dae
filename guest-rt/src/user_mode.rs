//! Guest-user mode runs (SPEC.md §11): [`run`] enters user code with an `iret` frame and
//! returns when a system call or a trap handler ends the run. The trap dispatcher hands
//! this module every guest-user `syscall` ([`dispatch_syscall`]) and every
//! [`TrapAction::EndUserRun`] ([`end_run`]); both end a run by reloading the kernel stack
//! pointer [`run`] saved. Guests reach these names through `user`.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use hypercall_abi::trap::{exception_flags, ExceptionFrame, IretFrame, USER_CS, USER_SS};
use hypercall_abi::Errno;
use spin::Mutex;

use crate::frame::{ShowFrame, TrapAction, TrapContext, UNHANDLED_CRASH_CODE};
use crate::hypercall::crash;

/// The system-call number that ends [`run`] with [`UserExit::Exit`] (RDI = the code). The
/// [`SyscallHandler`] never sees it.
pub const SYSCALL_EXIT: u64 = 60;

/// RFLAGS user code starts with: IF and the always-one bit.
pub const USER_RFLAGS: u64 = 0x202;

/// What a system-call handler wants.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SyscallAction {
    /// Return to user code with this RAX.
    Return(u64),
    /// End the run: [`run`] returns [`UserExit::Exit`] with this code.
    Exit(u64),
}

/// A system-call handler: `context.syscall()` gives the number and arguments.
pub type SyscallHandler = fn(&mut TrapContext) -> SyscallAction;

/// How a [`run`] ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserExit {
    /// The user code made the [`SYSCALL_EXIT`] system call, or a handler said
    /// [`SyscallAction::Exit`].
    Exit(u64),
    /// A trap handler ended the run ([`TrapAction::EndUserRun`]) for this frame.
    Ended {
        /// The handler's code.
        code: u64,
        /// The event that ended it.
        frame: ExceptionFrame,
    },
}

static SYSCALL_HANDLER: Mutex<Option<SyscallHandler>> = Mutex::new(None);
static RUNNING: AtomicBool = AtomicBool::new(false);
static EXIT: Mutex<Option<UserExit>> = Mutex::new(None);
/// The kernel stack pointer [`run`] left, with its callee-saved registers above it; the
/// asm stubs address it by symbol.
static RESUME_RSP: AtomicU64 = AtomicU64::new(0);

/// Sets the Rust system-call handler (`user::init` also registers the entry).
pub(crate) fn set_syscall_handler(handler: SyscallHandler) {
    *SYSCALL_HANDLER.lock() = Some(handler);
}

/// Called by the trap dispatcher for [`hypercall_abi::trap::SYSCALL_VECTOR`].
pub(crate) fn dispatch_syscall(context: &mut TrapContext) -> TrapAction {
    let (number, arguments) = context.syscall();
    let action = if number == SYSCALL_EXIT {
        SyscallAction::Exit(arguments[0])
    } else {
        let handler = *SYSCALL_HANDLER.lock();
        match handler {
            Some(handler) => handler(context),
            None => {
                crate::println!("user: system call {number:#x} with no handler; ending the run");
                SyscallAction::Exit(u64::MAX)
            }
        }
    };
    match action {
        SyscallAction::Return(value) => {
            context.set_rax(value);
            TrapAction::Resume
        }
        SyscallAction::Exit(code) => finish(UserExit::Exit(code)),
    }
}

/// Called by the trap dispatcher for [`TrapAction::EndUserRun`].
pub(crate) fn end_run(code: u64, frame: &ExceptionFrame) -> ! {
    if frame.flags & exception_flags::FROM_USER == 0 {
        crate::println!("user: a handler ended a user run for an event from guest-kernel mode: {}", ShowFrame(frame));
        crash(UNHANDLED_CRASH_CODE)
    }
    finish(UserExit::Ended { code, frame: *frame })
}

fn finish(exit: UserExit) -> ! {
    if !RUNNING.load(Ordering::Acquire) {
        crate::println!("user: {exit:?} but no user run is active");
        crash(UNHANDLED_CRASH_CODE)
    }
    *EXIT.lock() = Some(exit);
    #[cfg(all(target_arch = "x86_64", target_os = "none"))]
    {
        extern "C" {
            fn ringfence_user_resume() -> !;
        }
        // SAFETY: a run is active, so RESUME_RSP names the kernel stack `run` left, with
        // its callee-saved registers and return address above it; this handler's frames
        // (below it, on the same stack) are abandoned, and none holds a lock or a value
        // needing drop (the EXIT guard above is a temporary already released).
        unsafe { ringfence_user_resume() }
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "none")))]
    panic!("user mode outside a ringfence domain")
}

/// Runs user code at `entry` with `stack_top` as its RSP and RDI = `argument` (every other
/// general register zero) until it exits or a handler ends the run.
///
/// The user root must be installed (e.g. `UserSpace::activate`) with `entry`'s code and
/// the stack mapped [`USER`](hypercall_abi::memory::map_flags::USER); the common trap
/// entry should be in the trap table (`trap::install`) and the system-call callback
/// registered (`user::init`). Events from guest-user mode land on the current stack,
/// below this call.
///
/// # Errors
///
/// `stack_switch` failing (its error), or a run already active (`-EBUSY`).
pub fn run(entry: u64, stack_top: u64, argument: u64) -> Result<UserExit, Errno> {
    if RUNNING.swap(true, Ordering::AcqRel) {
        return Err(Errno::EBUSY);
    }
    let frame = IretFrame {
        rax: 0,
        r11: 0,
        rcx: 0,
        flags: 0,
        rip: entry,
        cs: USER_CS,
        rflags: USER_RFLAGS,
        rsp: stack_top,
        ss: USER_SS,
    };
    let result = enter(&frame, argument);
    RUNNING.store(false, Ordering::Release);
    RESUME_RSP.store(0, Ordering::Release);
    if result < 0 {
        return Errno::from_return(result).map(|_| UserExit::Exit(0));
    }
    Ok(EXIT.lock().take().unwrap_or(UserExit::Exit(u64::MAX)))
}

#[cfg(all(target_arch = "x86_64", target_os = "none"))]
fn enter(frame: &IretFrame, argument: u64) -> i64 {
    extern "C" {
        fn ringfence_user_enter(frame: *const IretFrame, argument: u64) -> i64;
    }
    // SAFETY: the stub saves the callee-saved registers and RSP, registers the stack with
    // `stack_switch` and `iret`s to guest-user mode; it returns (to here, with those
    // registers restored, as an ordinary C function) either with the negative
    // stack_switch error or, through `ringfence_user_resume`, with 0. The frame is only
    // read. The stack below this call is handed to the hypervisor for event frames; Rust
    // uses none of it until the call returns.
    unsafe { ringfence_user_enter(frame, argument) }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "none")))]
fn enter(_frame: &IretFrame, _argument: u64) -> i64 {
    panic!("user mode outside a ringfence domain")
}

// ringfence_user_enter(frame: *const IretFrame, argument: u64) -> i64
//   Saves RBP RBX R12-R15 and RSP (in RESUME_RSP), stack_switch(KERNEL_SS, RSP), copies
//   the frame below RSP, clears every register the user must not inherit, RDI = argument,
//   and issues iret. Returns only on a stack_switch error (RAX = -errno).
// ringfence_user_resume() -> !
//   Reloads RESUME_RSP and returns 0 from ringfence_user_enter.
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
core::arch::global_asm!(
    ".pushsection .text.ringfence_user_enter, \"ax\", @progbits",
    ".global ringfence_user_enter",
    ".balign 16",
    "ringfence_user_enter:",
    "push rbp",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "mov qword ptr [rip + {resume}], rsp",
    "mov r12, rdi",
    "mov r13, rsi",
    "mov edi, {kernel_ss}",
    "mov rsi, rsp",
    "mov eax, {stack_switch}",
    crate::hypercall::hypercall_instruction!(),
    "test rax, rax",
    "jnz 2f",
    "sub rsp, 72",
    "mov rax, [r12]", "mov [rsp], rax",
    "mov rax, [r12 + 8]", "mov [rsp + 8], rax",
    "mov rax, [r12 + 16]", "mov [rsp + 16], rax",
    "mov rax, [r12 + 24]", "mov [rsp + 24], rax",
    "mov rax, [r12 + 32]", "mov [rsp + 32], rax",
    "mov rax, [r12 + 40]", "mov [rsp + 40], rax",
    "mov rax, [r12 + 48]", "mov [rsp + 48], rax",
    "mov rax, [r12 + 56]", "mov [rsp + 56], rax",
    "mov rax, [r12 + 64]", "mov [rsp + 64], rax",
    "mov rdi, r13",
    "xor ebx, ebx",
    "xor edx, edx",
    "xor esi, esi",
    "xor ebp, ebp",
    "xor r8d, r8d",
    "xor r9d, r9d",
    "xor r10d, r10d",
    "xor r12d, r12d",
    "xor r13d, r13d",
    "xor r14d, r14d",
    "xor r15d, r15d",
    "mov eax, {iret}",
    crate::hypercall::hypercall_instruction!(),
    "ud2",
    "2:",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "ret",
    "",
    ".global ringfence_user_resume",
    ".balign 16",
    "ringfence_user_resume:",
    "mov rsp, qword ptr [rip + {resume}]",
    "xor eax, eax",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "ret",
    ".popsection",
    resume = sym RESUME_RSP,
    kernel_ss = const hypercall_abi::trap::KERNEL_SS,
    stack_switch = const hypercall_abi::Hypercall::STACK_SWITCH.0,
    iret = const hypercall_abi::Hypercall::IRET.0,
);
