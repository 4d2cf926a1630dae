//! The first user program ("init"), linked into the kernel image in a page-aligned
//! section of its own so that sharing its pages with user space shares nothing else.
//! It is position-independent (rip-relative data, relative jumps), because the kernel
//! maps it at a user address, not where it is linked.
//!
//! With RDI = n it: writes a greeting; checks that three bad buffers are refused with
//! -EFAULT (kernel data, a range that wraps around, the byte after its own text); calls
//! getpid n times and checks every answer is the same non-zero pid; writes a line built on
//! its stack; and exits with [`EXIT_SUCCESS`], or with the failure code of the first
//! check that went wrong.

use crate::user_abi::{errno, number};

/// The exit code of a run where every check passed.
pub const EXIT_SUCCESS: u64 = 42;
/// Exit codes of failed checks (in program order).
pub const EXIT_GREETING: u64 = 0xe1;
/// The kernel's data was not refused.
pub const EXIT_KERNEL_DATA: u64 = 0xe2;
/// A wrapping range was not refused.
pub const EXIT_WRAP: u64 = 0xe3;
/// A range past its text was not refused.
pub const EXIT_PAST_TEXT: u64 = 0xe4;
/// getpid gave zero or changed.
pub const EXIT_GETPID: u64 = 0xe5;
/// The write from the stack went wrong.
pub const EXIT_STACK_WRITE: u64 = 0xe6;

/// Kernel data the program tries to make the kernel print on its behalf.
#[used]
static KERNEL_SECRET: [u8; 16] = *b"kernel-only data";

/// "my pid i" of the stack line "my pid is N\n".
const STACK_LINE_HEAD: u64 = u64::from_le_bytes(*b"my pid i");
/// "s ", the pid digit slot (0) and "\n", to be or'ed with the digit << 16.
const STACK_LINE_TAIL: u64 = u32::from_le_bytes(*b"s \0\n") as u64;

#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    ".pushsection .text.user_program, \"ax\", @progbits",
    ".balign 4096",
    ".global guest_kernel_user_text_start",
    "guest_kernel_user_text_start:",
    ".global guest_kernel_user_entry",
    "guest_kernel_user_entry:",
    "mov r12, rdi",
    // write(greeting, its length) returns the length
    "lea rdi, [rip + 20f]",
    "lea rsi, [rip + 21f]",
    "sub rsi, rdi",
    "mov eax, {write}",
    "syscall",
    "mov edi, {exit_greeting}",
    "cmp rax, rsi",
    "jne 90f",
    // write(kernel data) is refused
    "movabs rdi, offset {secret}",
    "mov esi, 16",
    "mov eax, {write}",
    "syscall",
    "mov edi, {exit_kernel_data}",
    "cmp rax, {efault}",
    "jne 90f",
    // write(a range wrapping past the top of the address space) is refused
    "mov rdi, -0x100",
    "mov esi, 0x200",
    "mov eax, {write}",
    "syscall",
    "mov edi, {exit_wrap}",
    "cmp rax, {efault}",
    "jne 90f",
    // write(the first byte after this program's text) is refused
    "lea rdi, [rip + guest_kernel_user_text_end]",
    "mov esi, 1",
    "mov eax, {write}",
    "syscall",
    "mov edi, {exit_past_text}",
    "cmp rax, {efault}",
    "jne 90f",
    // getpid, r12 times, always the same non-zero value (kept in r13)
    "mov eax, {getpid}",
    "syscall",
    "mov r13, rax",
    "mov edi, {exit_getpid}",
    "test r13, r13",
    "jz 90f",
    "mov r14, 1",
    "10:",
    "cmp r14, r12",
    "jae 11f",
    "mov eax, {getpid}",
    "syscall",
    "cmp rax, r13",
    "jne 90f",
    "inc r14",
    "jmp 10b",
    "11:",
    // write(\"my pid is N\\n\" built on the stack, 12)
    "lea ecx, [r13 + 0x30]",
    "shl ecx, 16",
    "or ecx, {tail}",
    "push rcx",
    "movabs rax, {head}",
    "push rax",
    "mov rdi, rsp",
    "mov esi, 12",
    "mov eax, {write}",
    "syscall",
    "add rsp, 16",
    "mov edi, {exit_stack_write}",
    "cmp rax, 12",
    "jne 90f",
    "mov edi, {exit_success}",
    "90:",
    "mov eax, {exit}",
    "syscall",
    "ud2",
    "20:",
    ".ascii \"hello from user space: ring 3, my own address space\\n\"",
    "21:",
    ".balign 4096",
    ".global guest_kernel_user_text_end",
    "guest_kernel_user_text_end:",
    ".popsection",
    write = const number::WRITE,
    getpid = const number::GETPID,
    exit = const number::EXIT,
    efault = const -(errno::EFAULT as i64),
    secret = sym KERNEL_SECRET,
    head = const STACK_LINE_HEAD,
    tail = const STACK_LINE_TAIL,
    exit_success = const EXIT_SUCCESS,
    exit_greeting = const EXIT_GREETING,
    exit_kernel_data = const EXIT_KERNEL_DATA,
    exit_wrap = const EXIT_WRAP,
    exit_past_text = const EXIT_PAST_TEXT,
    exit_getpid = const EXIT_GETPID,
    exit_stack_write = const EXIT_STACK_WRITE,
);

/// Where the program lies in the kernel image.
#[derive(Copy, Clone, Debug)]
pub struct Program {
    /// First byte of its text (page-aligned).
    pub text_start: u64,
    /// One past its text (page-aligned).
    pub text_end: u64,
    /// Its entry point.
    pub entry: u64,
}

/// The program's addresses in the kernel image.
pub fn program() -> Program {
    extern "C" {
        fn guest_kernel_user_text_start();
        fn guest_kernel_user_text_end();
        fn guest_kernel_user_entry();
    }
    let address = |function: unsafe extern "C" fn()| function as *const () as u64;
    Program {
        text_start: address(guest_kernel_user_text_start),
        text_end: address(guest_kernel_user_text_end),
        entry: address(guest_kernel_user_entry),
    }
}
