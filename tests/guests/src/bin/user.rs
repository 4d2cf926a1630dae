//! Conformance: guest-user mode. The kernel builds a user address space holding only the
//! user programs' page (read-only, executable) and a user stack, and runs one program:
//!
//! * `syscalls`: 10 000 system calls whose results the user program checks (and that
//!   R12-R15 survive them); the kernel checks every frame.
//! * `kernel_page`: user code reads a kernel page: #PF with the USER bit and FROM_USER.
//! * `write_code`: user code writes its read-only code page: #PF PRESENT|WRITE|USER.
//! * `hypercall`: user code issues the trapping hypercall (a shutdown with code 99): it
//!   must arrive as #UD in the kernel, not be executed.
//! * `int80_granted` / `int80_refused`: `int 0x80` with and without USER_MAY_RAISE.
//! * `int3_refused`: `int3` without USER_MAY_RAISE: #GP(3*8+2).
//! * `privileged`: `cli` in user mode: #GP(0) to the kernel, not a kill.
//!
//! Each event from user mode is checked for vector, error code, fault address, FROM_USER,
//! the user selectors and the exact RIP.
#![cfg_attr(target_os = "none", no_std, no_main)]

use core::sync::atomic::{AtomicU64, Ordering};

use conformance_guests::words;
use guest_rt::abi::layout::PAGE_SIZE;
use guest_rt::abi::trap::{exception_flags, page_fault, vector, ExceptionFrame, SYSCALL_VECTOR, USER_CS, USER_SS};
use guest_rt::abi::StartInfo;
use guest_rt::println;
use guest_rt::test::Reporter;
use guest_rt::trap::{self, TrapAction, TrapContext};
use guest_rt::user::{self, SyscallAction, UserExit, UserSpace};

guest_rt::entry!(user_main);

/// System call: returns 3*a0 + a1 + a2 + a3 + a4 + a5.
const SYS_SUM: u64 = 1;
const SYSCALLS: u64 = 10_000;
/// R14 in the user program across its system calls.
const USER_R14: u64 = 0x7e57_0000_1234_5678;

// The user programs: one page-aligned page of their own, nothing else in it.
#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    ".pushsection .text.user_programs, \"ax\", @progbits",
    ".balign 4096",
    ".global user_programs_start",
    "user_programs_start:",
    // syscalls(count in RDI)
    ".global user_syscalls",
    "user_syscalls:",
    "mov r12, rdi",
    "xor r13d, r13d",
    "movabs r14, {r14}",
    "mov r15, rsp",
    "10:",
    "cmp r13, r12",
    "jae 13f",
    "mov eax, {sum}",
    "mov rdi, r13",
    "mov esi, 0x1000",
    "mov edx, 7",
    "mov r10d, 0x10",
    "mov r8d, 0x20",
    "mov r9d, 0x40",
    "syscall",
    "lea rbx, [r13 + r13 * 2 + 0x1077]",
    "cmp rax, rbx",
    "jne 14f",
    "movabs rbx, {r14}",
    "cmp r14, rbx",
    "jne 15f",
    "cmp r15, rsp",
    "jne 15f",
    "inc r13",
    "jmp 10b",
    "13:",
    "mov eax, {exit}",
    "xor edi, edi",
    "syscall",
    "ud2",
    "14:",
    "mov eax, {exit}",
    "lea rdi, [r13 + 0x10000]",
    "syscall",
    "ud2",
    "15:",
    "mov eax, {exit}",
    "lea rdi, [r13 + 0x20000]",
    "syscall",
    "ud2",
    // read(address in RDI)
    ".global user_read",
    "user_read:",
    "mov rax, qword ptr [rdi]",
    "mov rdi, rax",
    "mov eax, {exit}",
    "syscall",
    "ud2",
    // write(address in RDI)
    ".global user_write",
    "user_write:",
    "mov qword ptr [rdi], 0",
    "xor edi, edi",
    "mov eax, {exit}",
    "syscall",
    "ud2",
    // hypercall: sched_op(SHUTDOWN, POWEROFF, 99) through the trapping instruction
    ".global user_hypercall",
    "user_hypercall:",
    "mov eax, {sched_op}",
    "mov edi, 2",
    "xor esi, esi",
    "mov edx, 99",
    ".global user_hypercall_ud",
    "user_hypercall_ud:",
    "ud2",
    ".byte 0x72, 0x66",
    "mov edi, 98",
    "mov eax, {exit}",
    "syscall",
    "ud2",
    // int 0x80 with RAX = 0x77; exits with the RAX it gets back
    ".global user_int80",
    "user_int80:",
    "mov eax, 0x77",
    ".global user_int80_at",
    "user_int80_at:",
    "int 0x80",
    ".global user_int80_after",
    "user_int80_after:",
    "mov rdi, rax",
    "mov eax, {exit}",
    "syscall",
    "ud2",
    ".global user_int3",
    "user_int3:",
    "int3",
    "xor edi, edi",
    "mov eax, {exit}",
    "syscall",
    "ud2",
    ".global user_cli",
    "user_cli:",
    "cli",
    "xor edi, edi",
    "mov eax, {exit}",
    "syscall",
    "ud2",
    ".balign 4096",
    ".global user_programs_end",
    "user_programs_end:",
    ".popsection",
    r14 = const USER_R14,
    sum = const SYS_SUM,
    exit = const user::SYSCALL_EXIT,
    sched_op = const guest_rt::abi::Hypercall::SCHED_OP.0,
);

extern "C" {
    fn user_programs_start();
    fn user_programs_end();
    fn user_syscalls();
    fn user_read();
    fn user_write();
    fn user_hypercall();
    fn user_hypercall_ud();
    fn user_int80();
    fn user_int80_at();
    fn user_int80_after();
    fn user_int3();
    fn user_cli();
}

fn address(function: unsafe extern "C" fn()) -> u64 {
    function as *const () as u64
}

static SYSCALLS_SEEN: AtomicU64 = AtomicU64::new(0);
static BAD_FRAMES: AtomicU64 = AtomicU64::new(0);
static KERNEL_DATA: AtomicU64 = AtomicU64::new(0x6b65_726e_656c);

fn sum(context: &mut TrapContext) -> SyscallAction {
    SYSCALLS_SEEN.fetch_add(1, Ordering::Relaxed);
    let frame = &context.frame;
    let good = frame.vector == SYSCALL_VECTOR
        && frame.flags & exception_flags::FROM_USER != 0
        && frame.iret.cs == USER_CS
        && frame.iret.ss == USER_SS;
    if !good && BAD_FRAMES.fetch_add(1, Ordering::Relaxed) == 0 {
        println!("bad system-call frame: {}", trap::ShowFrame(frame));
    }
    let (number, [a0, a1, a2, a3, a4, a5]) = context.syscall();
    match number {
        SYS_SUM => SyscallAction::Return(a0.wrapping_mul(3) + a1 + a2 + a3 + a4 + a5),
        _ => SyscallAction::Exit(0xbad),
    }
}

/// Ends the user run on any exception; the frame comes back in `UserExit::Ended`.
fn end_run(context: &mut TrapContext) -> TrapAction {
    TrapAction::EndUserRun(context.vector())
}

/// The granted `int 0x80`: checks nothing itself, returns 0x4242 + the vector seen.
fn int80(context: &mut TrapContext) -> TrapAction {
    if !context.from_user() || context.rip() != address(user_int80_after) || context.rax() != 0x77 {
        println!("int 0x80 frame: {}", trap::ShowFrame(&context.frame));
        return TrapAction::EndUserRun(0xbad);
    }
    context.set_rax(0x4242);
    TrapAction::Resume
}

struct Expected {
    vector: u64,
    error_code: u64,
    fault_address: u64,
    rip: u64,
}

fn expect_ended(reporter: &mut Reporter, what: &str, exit: Result<UserExit, guest_rt::abi::Errno>, expected: Expected) {
    let Some(exit) = reporter.expect_ok(exit, format_args!("{what}: user::run")) else { return };
    let UserExit::Ended { code, frame } = exit else {
        reporter.fail(format_args!("{what}: the user program ended with {exit:?}, not an exception"));
        return;
    };
    let frame: ExceptionFrame = frame;
    println!("{what}: {}", trap::ShowFrame(&frame));
    reporter.expect_eq(code, expected.vector, format_args!("{what}: handler of vector"));
    reporter.expect_eq(frame.vector, expected.vector, format_args!("{what}: vector"));
    reporter.expect_eq(frame.error_code, expected.error_code, format_args!("{what}: error code"));
    reporter.expect_eq(frame.fault_address.0, expected.fault_address, format_args!("{what}: fault address"));
    reporter.expect_eq(frame.flags, exception_flags::FROM_USER, format_args!("{what}: flags"));
    reporter.expect_eq(frame.iret.cs, USER_CS, format_args!("{what}: cs"));
    reporter.expect_eq(frame.iret.ss, USER_SS, format_args!("{what}: ss"));
    reporter.expect_eq(frame.iret.rip, expected.rip, format_args!("{what}: rip"));
}

fn user_main(start: &'static StartInfo) -> u32 {
    let mut reporter = Reporter::new();
    let wanted = words(start).next().unwrap_or("");
    let setup = (|| -> Result<(UserSpace, u64), guest_rt::abi::Errno> {
        trap::install()?;
        for vector in [vector::PAGE_FAULT, vector::INVALID_OPCODE, vector::GENERAL_PROTECTION, vector::BREAKPOINT] {
            trap::set_handler(vector, end_run)?;
        }
        trap::set_handler(0x80, int80)?;
        user::init(sum)?;
        let space = UserSpace::create()?;
        space.map_kernel_range(address(user_programs_start), address(user_programs_end), 0)?;
        let stack = space.allocate(4)?;
        space.activate()?;
        Ok((space, stack + 4 * PAGE_SIZE))
    })();
    let Some((_space, stack_top)) = reporter.expect_ok(setup, "user setup") else { reporter.finish() };
    println!(
        "user programs {:#x}..{:#x}, user stack top {stack_top:#x}",
        address(user_programs_start),
        address(user_programs_end)
    );
    let code_page = address(user_programs_start);
    match wanted {
        "syscalls" => {
            let exit = user::run(address(user_syscalls), stack_top, SYSCALLS);
            reporter.expect_eq(
                exit,
                Ok(UserExit::Exit(0)),
                "user program result (0x1xxxx: wrong sum at xxxx, 0x2xxxx: register lost)",
            );
            // The exit itself is a system call too.
            reporter.expect_eq(SYSCALLS_SEEN.load(Ordering::Relaxed), SYSCALLS, "system calls handled");
            reporter.expect_eq(BAD_FRAMES.load(Ordering::Relaxed), 0, "bad system-call frames");
            println!("{} system calls from guest-user mode", SYSCALLS_SEEN.load(Ordering::Relaxed));
        }
        "kernel_page" => {
            let target = &KERNEL_DATA as *const AtomicU64 as u64;
            let exit = user::run(address(user_read), stack_top, target);
            expect_ended(
                &mut reporter,
                "read of a kernel page",
                exit,
                Expected {
                    vector: u64::from(vector::PAGE_FAULT),
                    error_code: page_fault::USER,
                    fault_address: target,
                    rip: address(user_read),
                },
            );
            reporter.expect_eq(KERNEL_DATA.load(Ordering::Relaxed), 0x6b65_726e_656c, "kernel data untouched");
        }
        "write_code" => {
            let exit = user::run(address(user_write), stack_top, code_page + 8);
            expect_ended(
                &mut reporter,
                "write to the user code page",
                exit,
                Expected {
                    vector: u64::from(vector::PAGE_FAULT),
                    error_code: page_fault::PRESENT | page_fault::WRITE | page_fault::USER,
                    fault_address: code_page + 8,
                    rip: address(user_write),
                },
            );
        }
        "hypercall" => {
            let exit = user::run(address(user_hypercall), stack_top, 0);
            expect_ended(
                &mut reporter,
                "hypercall from guest-user mode",
                exit,
                Expected {
                    vector: u64::from(vector::INVALID_OPCODE),
                    error_code: 0,
                    fault_address: 0,
                    rip: address(user_hypercall_ud),
                },
            );
        }
        "int80_granted" => {
            let _ = reporter.expect_ok(trap::grant_user(0x80), "grant_user(0x80)");
            let exit = user::run(address(user_int80), stack_top, 0);
            reporter.expect_eq(exit, Ok(UserExit::Exit(0x4242)), "int 0x80 returned 0x4242 to the user program");
        }
        "int80_refused" => {
            let exit = user::run(address(user_int80), stack_top, 0);
            expect_ended(
                &mut reporter,
                "int 0x80 not granted",
                exit,
                Expected {
                    vector: u64::from(vector::GENERAL_PROTECTION),
                    error_code: 0x80 * 8 + 2,
                    fault_address: 0,
                    rip: address(user_int80_at),
                },
            );
        }
        "int3_refused" => {
            let exit = user::run(address(user_int3), stack_top, 0);
            expect_ended(
                &mut reporter,
                "int3 not granted",
                exit,
                Expected {
                    vector: u64::from(vector::GENERAL_PROTECTION),
                    error_code: 3 * 8 + 2,
                    fault_address: 0,
                    rip: address(user_int3),
                },
            );
        }
        "privileged" => {
            let exit = user::run(address(user_cli), stack_top, 0);
            expect_ended(
                &mut reporter,
                "cli in guest-user mode",
                exit,
                Expected {
                    vector: u64::from(vector::GENERAL_PROTECTION),
                    error_code: 0,
                    fault_address: 0,
                    rip: address(user_cli),
                },
            );
        }
        _ => reporter.error(format_args!("unknown sub-case '{wanted}'")),
    }
    // Back in guest-kernel mode: hypercalls and kernel memory work.
    reporter.expect_eq(KERNEL_DATA.load(Ordering::Relaxed), 0x6b65_726e_656c, "kernel memory after the user run");
    reporter.finish()
}
