//! Guest-user mode (SPEC.md §11): an address space for user code, entry to it with an
//! `iret` frame, system calls back into the kernel, and the way home.
//!
//! [`run`] saves the kernel's callee-saved registers and stack pointer, registers that
//! stack with `stack_switch` (events from guest-user mode land just below it) and `iret`s
//! to the user entry. Every event from guest-user mode reaches [`crate::trap`]'s common
//! entry in guest-kernel mode: a `syscall` goes to the [`SyscallHandler`], an exception to
//! its trap handler. When one of them ends the run ([`SyscallAction::Exit`],
//! [`TrapAction::EndUserRun`](crate::trap::TrapAction::EndUserRun)), the saved kernel
//! stack pointer is reloaded and `run` returns the [`UserExit`].
//!
//! User code cannot call kernel code (its pages are not in the user address space), so it
//! is written in asm in its own page-aligned section, e.g.
//!
//! ```ignore
//! core::arch::global_asm!(
//!     ".pushsection .text.user_program, \"ax\", @progbits",
//!     ".balign 4096", ".global user_program_start", "user_program_start:",
//!     "mov eax, 60", "syscall",
//!     ".balign 4096", ".global user_program_end", "user_program_end:",
//!     ".popsection",
//! );
//! ```
//!
//! and [`UserSpace::map_kernel_range`] maps those pages (same addresses, same gfns) into
//! the user space.

extern crate alloc;

use alloc::alloc::{alloc_zeroed, Layout};

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use hypercall_abi::hypercall::callback_cmd;
use hypercall_abi::layout::PAGE_SIZE;
use hypercall_abi::memory::map_flags;
use hypercall_abi::trap::{callback_type, ExceptionFrame, IretFrame, USER_CS, USER_SS};
use hypercall_abi::Errno;
use spin::Mutex;

use crate::hypercall::HYPERVISOR;
use crate::memory::{self, Space};
use crate::trap::{TrapAction, TrapContext};

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

/// Registers guest-rt's trap entry as the `syscall` callback and `handler` as the Rust
/// system-call handler (call [`crate::trap::install`] too, for exceptions).
pub fn init(handler: SyscallHandler) -> Result<(), Errno> {
    *SYSCALL_HANDLER.lock() = Some(handler);
    // SAFETY: the common trap entry follows the exception-frame protocol.
    unsafe { HYPERVISOR.callback_op(callback_cmd::REGISTER, callback_type::SYSCALL, crate::trap::entry_address()) }
        .map(drop)
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
    if frame.flags & hypercall_abi::trap::exception_flags::FROM_USER == 0 {
        crate::println!("user: a handler ended a user run for an event from guest-kernel mode: {}", crate::trap::ShowFrame(frame));
        crate::hypercall::crash(crate::trap::UNHANDLED_CRASH_CODE)
    }
    finish(UserExit::Ended { code, frame: *frame })
}

fn finish(exit: UserExit) -> ! {
    if !RUNNING.load(Ordering::Acquire) {
        crate::println!("user: {exit:?} but no user run is active");
        crate::hypercall::crash(crate::trap::UNHANDLED_CRASH_CODE)
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
/// The user root must be installed (e.g. [`UserSpace::activate`]) with `entry`'s code and
/// the stack mapped [`map_flags::USER`]; the common trap entry should be in the trap table
/// ([`crate::trap::install`]) and the system-call callback registered ([`init`]). Events
/// from guest-user mode land on the current stack, below this call.
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

/// A guest-user address space: a handle from `address_space_op(CREATE)` and helpers to
/// map kernel pages into it for user code and data.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct UserSpace {
    space: Space,
}

impl UserSpace {
    /// A new empty address space.
    pub fn create() -> Result<Self, Errno> {
        memory::create_space().map(|space| Self { space })
    }

    /// The handle.
    pub fn space(&self) -> Space {
        self.space
    }

    /// Maps the page holding kernel address `kernel_address` (its gfn, found with QUERY in
    /// the initial space) at `user_address` with `flags` ([`map_flags::USER`] is added).
    pub fn map_kernel_page(&self, user_address: u64, kernel_address: u64, flags: u32) -> Result<u64, Errno> {
        let (gfn, _) = memory::query(Space::INITIAL, kernel_address & !(PAGE_SIZE - 1))?;
        memory::map_page(self.space, user_address & !(PAGE_SIZE - 1), gfn, flags | map_flags::USER)?;
        Ok(gfn)
    }

    /// Maps every page of the kernel range `[start, end)` at the same addresses with
    /// `flags` (+ USER). For user code: `0` (read-only, executable).
    pub fn map_kernel_range(&self, start: u64, end: u64, flags: u32) -> Result<(), Errno> {
        let mut page = start & !(PAGE_SIZE - 1);
        while page < end {
            self.map_kernel_page(page, page, flags)?;
            page += PAGE_SIZE;
        }
        Ok(())
    }

    /// Allocates `pages` zeroed kernel pages from the heap and maps them at the same
    /// addresses, writable and not executable, for a user stack or data. Returns the
    /// lowest address (the memory is never freed: user code may use it at any time).
    pub fn allocate(&self, pages: u64) -> Result<u64, Errno> {
        if pages == 0 {
            return Err(Errno::EINVAL);
        }
        let layout = Layout::from_size_align((pages * PAGE_SIZE) as usize, PAGE_SIZE as usize)
            .map_err(|_| Errno::EINVAL)?;
        // SAFETY: `layout` has a non-zero size.
        let start = unsafe { alloc_zeroed(layout) } as u64;
        if start == 0 {
            return Err(Errno::ENOMEM);
        }
        self.map_kernel_range(start, start + pages * PAGE_SIZE, map_flags::WRITABLE | map_flags::NO_EXECUTE)?;
        Ok(start)
    }

    /// Installs the initial space as the kernel root and this one as the user root.
    pub fn activate(&self) -> Result<(), Errno> {
        memory::switch_space(Space::INITIAL, Some(self.space))
    }
}
