//! The asm of the paravirtual [`Machine`](crate::arch::machine::Machine)'s user runs (the
//! extended state's four instructions are `extended_state`'s): the way into guest-user
//! mode and the one entry every event comes back through (SPEC.md §11.4, §18.4).
//!
//! * [`run`] saves the kernel's callee-saved registers and stack pointer, loads the
//!   process's general registers and `iret`s (hypercall 23) to guest-user mode with IF = 1,
//!   so events are unmasked there.
//! * Every exception vector, the system-call callback and the event callback point at one
//!   entry. For an event from guest-user mode the hypervisor has put the frame on the
//!   [`EVENT_STACK`] (registered once with `stack_switch`): the entry stores the general
//!   registers the frame does not hold into the context, masks events (a `syscall` or an
//!   exception leaves them as user mode had them: on), and returns from [`run`] on the
//!   kernel stack [`run`] left, with the frame's address. Nothing else runs on the way, so
//!   a round trip costs two hypervisor entries: the event and the `iret`. The extended
//!   state is not touched: it stays in the registers (`user_run` loads it when another
//!   process's is there).
//! * An event from guest-kernel mode is either an upcall (the kernel runs masked, so it
//!   comes only where the kernel waits in `sched_op(BLOCK)`, or at the first instructions
//!   of this entry, before the mask store): it is acknowledged and the entry returns to
//!   where it struck; or an exception, a kernel bug: the frame is printed and the domain
//!   crashes with [`KERNEL_EXCEPTION_CRASH_CODE`].
//!
//! The hypercall instruction is `syscall`, as everywhere in guest-rt (SPEC.md §5.1).

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use guest_rt::abi::memory::NO_SPACE;
use guest_rt::abi::trap::ExceptionFrame;
use guest_rt::events::SharedInfoPage;
use guest_rt::trap::ShowFrame;

use super::extended_state::Format;
use super::interrupts;
use crate::arch::machine::{ExtendedResidence, UserContext};

/// The crash code of an exception in guest-kernel mode (guest-rt uses 1 for a panic, 2 for
/// a bad start info, 3 and 4 for its own unhandled traps).
pub const KERNEL_EXCEPTION_CRASH_CODE: u32 = 5;

/// Bytes of the stack events from guest-user mode land on. An event uses the top 104
/// bytes; below them there is room for one upcall nested at the entry's first
/// instructions and the Rust code that acknowledges it, or for the report of a kernel
/// exception taken there. Not a whole number of pages, so that the [`RunState`] above the
/// top shares a page with the frames written below it.
const EVENT_STACK_BYTES: usize = 16 * 1024 - 256;

/// The stack `stack_switch` names, and right above its top the [`RunState`]. Under TCG
/// every root load flushes the emulated TLB, so each page a round trip touches costs a
/// page walk: the frame, the entry's state and what the run path checks share one.
#[repr(C, align(4096))]
pub struct EventStack {
    stack: UnsafeCell<[u8; EVENT_STACK_BYTES]>,
    /// What every run and every event from user mode read or write.
    pub state: RunState,
}

// SAFETY: no Rust code reads or writes the array; the hypervisor writes frames into it and
// the entry's asm uses it as a stack, one event at a time (one vCPU). The state is atomics.
unsafe impl Sync for EventStack {}

/// The stack events from guest-user mode land on.
pub static EVENT_STACK: EventStack = EventStack {
    stack: UnsafeCell::new([0; EVENT_STACK_BYTES]),
    state: RunState {
        kernel_rsp: AtomicU64::new(0),
        context: AtomicU64::new(0),
        shared_info: AtomicU64::new(0),
        xsave_mask: AtomicU64::new(0),
        mxcsr_mask: AtomicU32::new(0),
        user_root: AtomicU64::new(NO_SPACE),
        fs_base: AtomicU64::new(0),
        unreported: AtomicBool::new(false),
        armed_deadline: AtomicU64::new(0),
        extended: ExtendedResidence::new(),
    },
};

impl EventStack {
    /// The address `stack_switch` is given: the end of the array.
    pub fn top(&self) -> u64 {
        self.stack.get() as u64 + EVENT_STACK_BYTES as u64
    }
}

/// The state of runs: what the asm reads and writes (through the symbol), and what the
/// run path checks on every round trip.
#[repr(C)]
pub struct RunState {
    /// The kernel stack pointer [`run`] left (its callee-saved registers are above it).
    kernel_rsp: AtomicU64,
    /// The `UserContext` of the run in progress.
    context: AtomicU64,
    /// The address of the shared-info page (the start-info page says it, but reading it
    /// there would touch two more pages per run).
    shared_info: AtomicU64,
    /// The XSAVE/XRSTOR component mask, or 0 to use FXSAVE/FXRSTOR.
    xsave_mask: AtomicU64,
    /// The MXCSR bits the CPU accepts (with `xsave_mask`: the extended-state [`Format`]).
    mxcsr_mask: AtomicU32,
    /// The user root the hypervisor has ([`NO_SPACE`]: none); `spaces` keeps it.
    pub user_root: AtomicU64,
    /// The FS base the hypervisor has recorded (0 at domain start, SPEC.md §4.3);
    /// `user_run` keeps it.
    pub fs_base: AtomicU64,
    /// An upcall was acknowledged in guest-kernel mode and the kernel has not been told;
    /// `interrupts` keeps it.
    pub unreported: AtomicBool,
    /// The deadline `set_timer_op` was last given, until its expiry is acknowledged (0 =
    /// none armed); `interrupts` keeps it.
    pub armed_deadline: AtomicU64,
    /// Whose extended state the registers hold; `user_run` and `save_extended` keep it.
    pub extended: ExtendedResidence,
}

const _: () = assert!(
    EVENT_STACK_BYTES % 4096 >= 104 + 16 && size_of::<EventStack>() == 16 * 1024,
    "a frame, the stack's top and the run state share the last page"
);

/// The run state.
pub fn state() -> &'static RunState {
    &EVENT_STACK.state
}

/// Gives the entry what it needs before the first run: where the shared-info page is and
/// how to save extended state.
pub fn configure(shared_info_address: u64, format: Format) {
    state().shared_info.store(shared_info_address, Ordering::Release);
    // XCR0 always has x87, so a mask is never 0, which means FXSAVE here.
    state().xsave_mask.store(format.xsave_mask.unwrap_or(0), Ordering::Release);
    state().mxcsr_mask.store(format.mxcsr_mask, Ordering::Release);
}

/// The shared-info page [`configure`] set.
pub fn shared_info() -> SharedInfoPage {
    // SAFETY: `configure` stored the address the start-info page gives, where the
    // hypervisor maps the shared-info page read-write for the domain's whole life (SPEC.md
    // §8); the view accesses it only atomically, as guest-rt's own view does. Nothing
    // calls this before `configure` (only runs and interrupts do, after the machine started).
    unsafe { SharedInfoPage::from_address(state().shared_info.load(Ordering::Acquire)) }
}

/// The extended-state format [`configure`] set.
pub fn format() -> Format {
    let xsave_mask = state().xsave_mask.load(Ordering::Acquire);
    Format {
        xsave_mask: (xsave_mask != 0).then_some(xsave_mask),
        mxcsr_mask: state().mxcsr_mask.load(Ordering::Acquire),
    }
}

/// The address the trap table, the system-call callback and the event callback point at.
pub fn address() -> u64 {
    #[cfg(all(target_arch = "x86_64", target_os = "none"))]
    {
        extern "C" {
            fn paravirt_event_entry();
        }
        paravirt_event_entry as *const () as u64
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "none")))]
    {
        0
    }
}

/// Runs `context` in guest-user mode until an event from there, and returns that event's
/// frame with the context holding every register but RAX, RCX, R11, RIP, RSP and RFLAGS
/// (which are in the frame's `iret`).
///
/// The caller has made the process's space the user root, its FS base the live one, and
/// its RIP and RSP acceptable to the hypervisor and its extended state loaded; events are
/// masked; the entry is registered with `stack_switch` on [`EVENT_STACK`] and [`configure`]d.
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
pub fn run(context: &mut UserContext) -> ExceptionFrame {
    extern "C" {
        // The context by address: the asm finds its fields by `offset_of!`.
        fn paravirt_enter_user(context: *mut ()) -> *const ExceptionFrame;
    }
    // SAFETY: the stub saves RBP, RBX, R12–R15 and RSP, and comes back (through the
    // event entry) as an ordinary C function would, with them restored and DF clear. In
    // between, only the stub and the hypervisor touch the context (through the pointer,
    // exclusively borrowed for the call), the event stack, and the kernel stack below
    // this frame, which Rust does not use until the call returns. Extended state is the
    // process's before and after (the stub and the kernel, soft-float, never touch it).
    let frame = unsafe { paravirt_enter_user((context as *mut UserContext).cast()) };
    // SAFETY: the entry returns the frame the hypervisor wrote on the event stack; it
    // stays there until the next event from guest-user mode, which needs another run.
    unsafe { frame.read() }
}

/// Outside a domain there is no guest-user mode (the host build of the kernel never runs).
#[cfg(not(all(target_arch = "x86_64", target_os = "none")))]
pub fn run(_context: &mut UserContext) -> ExceptionFrame {
    panic!("guest-user mode outside a ringfence domain")
}

/// The MXCSR bits this CPU accepts, as FXSAVE reports them (0: the CPU reports none).
pub fn mxcsr_mask() -> u32 {
    #[repr(C, align(16))]
    struct Area([u8; 512]);
    let mut area = Area([0; 512]);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: FXSAVE writes exactly 512 bytes at a 16-byte aligned address, here a local
    // exclusively borrowed; it reads the x87/SSE registers without changing them.
    unsafe {
        core::arch::asm!("fxsave64 [{}]", in(reg) area.0.as_mut_ptr(), options(nostack, preserves_flags));
    }
    u32::from_le_bytes([area.0[28], area.0[29], area.0[30], area.0[31]])
}

/// An upcall in guest-kernel mode: acknowledge, and return to the interrupted code.
#[cfg_attr(not(all(target_arch = "x86_64", target_os = "none")), allow(dead_code))]
extern "C" fn kernel_upcall() {
    interrupts::acknowledge_in_kernel();
}

/// An exception in guest-kernel mode: a kernel bug.
#[cfg_attr(not(all(target_arch = "x86_64", target_os = "none")), allow(dead_code))]
extern "C" fn kernel_exception(frame: &ExceptionFrame) -> ! {
    guest_rt::println!("guest-kernel: exception in the kernel: {}", ShowFrame(frame));
    guest_rt::hypercall::crash(KERNEL_EXCEPTION_CRASH_CODE)
}

// Byte offsets the asm uses, from the Rust types (never written out by hand).
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
mod offsets {
    use core::mem::offset_of;

    use guest_rt::abi::trap::{ExceptionFrame, IretFrame};

    use super::{EventStack, RunState};
    use crate::arch::machine::{UserContext, UserRegisters};

    const REGISTERS: usize = offset_of!(UserContext, registers);
    pub const RAX: usize = REGISTERS + offset_of!(UserRegisters, rax);
    pub const RBX: usize = REGISTERS + offset_of!(UserRegisters, rbx);
    pub const RCX: usize = REGISTERS + offset_of!(UserRegisters, rcx);
    pub const RDX: usize = REGISTERS + offset_of!(UserRegisters, rdx);
    pub const RSI: usize = REGISTERS + offset_of!(UserRegisters, rsi);
    pub const RDI: usize = REGISTERS + offset_of!(UserRegisters, rdi);
    pub const RBP: usize = REGISTERS + offset_of!(UserRegisters, rbp);
    pub const RSP: usize = REGISTERS + offset_of!(UserRegisters, rsp);
    pub const R8: usize = REGISTERS + offset_of!(UserRegisters, r8);
    pub const R9: usize = REGISTERS + offset_of!(UserRegisters, r9);
    pub const R10: usize = REGISTERS + offset_of!(UserRegisters, r10);
    pub const R11: usize = REGISTERS + offset_of!(UserRegisters, r11);
    pub const R12: usize = REGISTERS + offset_of!(UserRegisters, r12);
    pub const R13: usize = REGISTERS + offset_of!(UserRegisters, r13);
    pub const R14: usize = REGISTERS + offset_of!(UserRegisters, r14);
    pub const R15: usize = REGISTERS + offset_of!(UserRegisters, r15);
    pub const RIP: usize = REGISTERS + offset_of!(UserRegisters, rip);
    pub const RFLAGS: usize = REGISTERS + offset_of!(UserRegisters, rflags);

    pub const IRET_BYTES: usize = size_of::<IretFrame>();
    pub const IRET_RAX: usize = offset_of!(IretFrame, rax);
    pub const IRET_R11: usize = offset_of!(IretFrame, r11);
    pub const IRET_RCX: usize = offset_of!(IretFrame, rcx);
    pub const IRET_FLAGS: usize = offset_of!(IretFrame, flags);
    pub const IRET_RIP: usize = offset_of!(IretFrame, rip);
    pub const IRET_CS: usize = offset_of!(IretFrame, cs);
    pub const IRET_RFLAGS: usize = offset_of!(IretFrame, rflags);
    pub const IRET_RSP: usize = offset_of!(IretFrame, rsp);
    pub const IRET_SS: usize = offset_of!(IretFrame, ss);

    pub const FRAME_VECTOR: usize = offset_of!(ExceptionFrame, vector);
    pub const FRAME_FLAGS: usize = offset_of!(ExceptionFrame, flags);
    pub const FRAME_IRET: usize = offset_of!(ExceptionFrame, iret);

    const STATE: usize = offset_of!(EventStack, state);
    pub const KERNEL_RSP: usize = STATE + offset_of!(RunState, kernel_rsp);
    pub const CONTEXT: usize = STATE + offset_of!(RunState, context);
    pub const SHARED_INFO: usize = STATE + offset_of!(RunState, shared_info);
    // vcpu_info[0] is at the start of the page.
    pub const UPCALL_MASK: usize = offset_of!(guest_rt::abi::shared_info::VcpuInfo, upcall_mask);

    // The entry tests the FROM_USER bit with a byte access.
    const _: () = assert!(guest_rt::abi::trap::exception_flags::FROM_USER == 1);
}

// paravirt_enter_user(context: *mut UserContext) -> *const ExceptionFrame
//   Saves RBP RBX R12–R15, RSP (RunState::kernel_rsp) and the context (::context),
//   builds the IretFrame below RSP (CS/SS user, RFLAGS
//   restricted to what a frame may carry, with IF and bit 1 set), loads the general
//   registers and issues iret. Returns through paravirt_event_entry.
// paravirt_event_entry (RSP = the ExceptionFrame, RSP = 8 mod 16)
//   From guest-user mode: stores RBX RDX RSI RDI RBP R8–R10 R12–R15 into the context,
//   masks events, and returns the frame's address from
//   paravirt_enter_user. From guest-kernel mode: EVENT_VECTOR → kernel_upcall, then
//   iret to the interrupted code (RAX, RCX, R11 come back from the frame); anything else
//   → kernel_exception.
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
core::arch::global_asm!(
    ".pushsection .text.paravirt_enter_user, \"ax\", @progbits",
    ".global paravirt_enter_user",
    ".balign 16",
    "paravirt_enter_user:",
    "push rbp",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "mov qword ptr [rip + {state} + {kernel_rsp}], rsp",
    "mov qword ptr [rip + {state} + {context}], rdi",
    "sub rsp, {iret_bytes}",
    "mov rax, qword ptr [rdi + {rax}]",
    "mov qword ptr [rsp + {iret_rax}], rax",
    "mov rax, qword ptr [rdi + {r11}]",
    "mov qword ptr [rsp + {iret_r11}], rax",
    "mov rax, qword ptr [rdi + {rcx}]",
    "mov qword ptr [rsp + {iret_rcx}], rax",
    "mov qword ptr [rsp + {iret_flags}], 0",
    "mov rax, qword ptr [rdi + {rip}]",
    "mov qword ptr [rsp + {iret_rip}], rax",
    "mov qword ptr [rsp + {iret_cs}], {user_cs}",
    "mov rax, qword ptr [rdi + {rflags}]",
    "and rax, {settable}",
    "or rax, {forced}",
    "mov qword ptr [rsp + {iret_rflags}], rax",
    "mov rax, qword ptr [rdi + {rsp}]",
    "mov qword ptr [rsp + {iret_rsp}], rax",
    "mov qword ptr [rsp + {iret_ss}], {user_ss}",
    "mov rbx, qword ptr [rdi + {rbx}]",
    "mov rdx, qword ptr [rdi + {rdx}]",
    "mov rsi, qword ptr [rdi + {rsi}]",
    "mov rbp, qword ptr [rdi + {rbp}]",
    "mov r8, qword ptr [rdi + {r8}]",
    "mov r9, qword ptr [rdi + {r9}]",
    "mov r10, qword ptr [rdi + {r10}]",
    "mov r12, qword ptr [rdi + {r12}]",
    "mov r13, qword ptr [rdi + {r13}]",
    "mov r14, qword ptr [rdi + {r14}]",
    "mov r15, qword ptr [rdi + {r15}]",
    "mov rdi, qword ptr [rdi + {rdi}]",
    "mov eax, {iret}",
    "syscall",
    "ud2",
    "",
    ".global paravirt_event_entry",
    ".balign 16",
    "paravirt_event_entry:",
    "test byte ptr [rsp + {frame_flags}], 1",
    "jz 5f",
    "mov rax, qword ptr [rip + {state} + {context}]",
    "mov qword ptr [rax + {rbx}], rbx",
    "mov qword ptr [rax + {rdx}], rdx",
    "mov qword ptr [rax + {rsi}], rsi",
    "mov qword ptr [rax + {rdi}], rdi",
    "mov qword ptr [rax + {rbp}], rbp",
    "mov qword ptr [rax + {r8}], r8",
    "mov qword ptr [rax + {r9}], r9",
    "mov qword ptr [rax + {r10}], r10",
    "mov qword ptr [rax + {r12}], r12",
    "mov qword ptr [rax + {r13}], r13",
    "mov qword ptr [rax + {r14}], r14",
    "mov qword ptr [rax + {r15}], r15",
    "mov rbx, qword ptr [rip + {state} + {shared_info}]",
    "mov byte ptr [rbx + {upcall_mask}], 1",
    "mov rax, rsp",
    "mov rsp, qword ptr [rip + {state} + {kernel_rsp}]",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "cld",
    "ret",
    "5:",
    "cmp qword ptr [rsp + {frame_vector}], {event_vector}",
    "jne 7f",
    "push rdi",
    "push rsi",
    "push rdx",
    "push r8",
    "push r9",
    "push r10",
    "sub rsp, 8",
    "cld",
    "call {kernel_upcall}",
    "add rsp, 8",
    "pop r10",
    "pop r9",
    "pop r8",
    "pop rdx",
    "pop rsi",
    "pop rdi",
    "add rsp, {frame_iret}",
    "mov eax, {iret}",
    "syscall",
    "ud2",
    "7:",
    "mov rdi, rsp",
    "and rsp, -16",
    "cld",
    "call {kernel_exception}",
    "ud2",
    ".popsection",
    state = sym EVENT_STACK,
    kernel_rsp = const offsets::KERNEL_RSP,
    context = const offsets::CONTEXT,
    shared_info = const offsets::SHARED_INFO,
    upcall_mask = const offsets::UPCALL_MASK,
    rax = const offsets::RAX,
    rbx = const offsets::RBX,
    rcx = const offsets::RCX,
    rdx = const offsets::RDX,
    rsi = const offsets::RSI,
    rdi = const offsets::RDI,
    rbp = const offsets::RBP,
    rsp = const offsets::RSP,
    r8 = const offsets::R8,
    r9 = const offsets::R9,
    r10 = const offsets::R10,
    r11 = const offsets::R11,
    r12 = const offsets::R12,
    r13 = const offsets::R13,
    r14 = const offsets::R14,
    r15 = const offsets::R15,
    rip = const offsets::RIP,
    rflags = const offsets::RFLAGS,
    iret_bytes = const offsets::IRET_BYTES,
    iret_rax = const offsets::IRET_RAX,
    iret_r11 = const offsets::IRET_R11,
    iret_rcx = const offsets::IRET_RCX,
    iret_flags = const offsets::IRET_FLAGS,
    iret_rip = const offsets::IRET_RIP,
    iret_cs = const offsets::IRET_CS,
    iret_rflags = const offsets::IRET_RFLAGS,
    iret_rsp = const offsets::IRET_RSP,
    iret_ss = const offsets::IRET_SS,
    frame_vector = const offsets::FRAME_VECTOR,
    frame_flags = const offsets::FRAME_FLAGS,
    frame_iret = const offsets::FRAME_IRET,
    user_cs = const guest_rt::abi::trap::USER_CS,
    user_ss = const guest_rt::abi::trap::USER_SS,
    settable = const guest_rt::abi::trap::RFLAGS_GUEST_SETTABLE,
    forced = const guest_rt::abi::trap::RFLAGS_INTERRUPT | 2,
    event_vector = const guest_rt::abi::event::EVENT_VECTOR,
    iret = const guest_rt::abi::Hypercall::IRET.0,
    kernel_upcall = sym kernel_upcall,
    kernel_exception = sym kernel_exception,
);
