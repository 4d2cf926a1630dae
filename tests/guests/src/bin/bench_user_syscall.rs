//! Benchmark `user_syscall`: guest-user → guest kernel → guest-user. A user program (asm,
//! in its own pages mapped into a user address space) reads the TSC, makes a `syscall`,
//! which the hypervisor bounces to guest-rt's system-call entry in guest-kernel mode; the
//! Rust handler returns 0 and the entry goes back with the `iret` hypercall; the program
//! reads the TSC again and stores the difference. Compared with `getppid` on the host.
//! Argument: `iterations=<n>` (default 2 000); prints
//! `bench user_syscall median <c> p99 <c> iterations <n>`.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[path = "bench_support/mod.rs"]
mod bench_support;

use core::sync::atomic::{AtomicU64, Ordering};

use guest_rt::abi::layout::PAGE_SIZE;
use guest_rt::abi::StartInfo;
use guest_rt::test::Reporter;
use guest_rt::trap::{self, TrapContext};
use guest_rt::tsc;
use guest_rt::user::{self, SyscallAction, UserExit, UserSpace};

guest_rt::entry!(bench_user_syscall);

/// The system-call number the user program uses (any number but `user::SYSCALL_EXIT`).
const SYSCALL_NULL: u64 = 39;

static SYSCALLS: AtomicU64 = AtomicU64::new(0);

fn on_syscall(context: &mut TrapContext) -> SyscallAction {
    let (number, _) = context.syscall();
    if number != SYSCALL_NULL {
        return SyscallAction::Exit(number);
    }
    SYSCALLS.fetch_add(1, Ordering::Relaxed);
    SyscallAction::Return(0)
}

// The user program. RDI = a buffer: [0] = how many system calls to time, then one u64
// per call. Each sample is `lfence; rdtsc` → syscall → `lfence; rdtsc`, the same
// serialized reads `guest_rt::tsc` uses. It ends with the exit system call (code 0).
// It touches no stack and calls nothing: only its own pages and the buffer are mapped.
#[cfg(target_os = "none")]
core::arch::global_asm!(
    ".pushsection .text.bench_user_program, \"ax\", @progbits",
    ".balign 4096",
    ".global bench_user_program_start",
    "bench_user_program_start:",
    "mov r8, [rdi]",
    "lea r9, [rdi + 8]",
    "test r8, r8",
    "jz 3f",
    "2:",
    "lfence",
    "rdtsc",
    "shl rdx, 32",
    "or rax, rdx",
    "mov r10, rax",
    "mov eax, {null}",
    "syscall",
    "lfence",
    "rdtsc",
    "shl rdx, 32",
    "or rax, rdx",
    "sub rax, r10",
    "mov [r9], rax",
    "add r9, 8",
    "dec r8",
    "jnz 2b",
    "3:",
    "mov eax, {exit}",
    "xor edi, edi",
    "syscall",
    "ud2",
    ".balign 4096",
    ".global bench_user_program_end",
    "bench_user_program_end:",
    ".popsection",
    null = const SYSCALL_NULL,
    exit = const user::SYSCALL_EXIT,
);

#[cfg(target_os = "none")]
fn program() -> (u64, u64) {
    extern "C" {
        fn bench_user_program_start();
        fn bench_user_program_end();
    }
    (bench_user_program_start as *const () as u64, bench_user_program_end as *const () as u64)
}

#[cfg(not(target_os = "none"))]
fn program() -> (u64, u64) {
    (0, 0)
}

fn bench_user_syscall(start: &'static StartInfo) -> u32 {
    let mut reporter = Reporter::new();
    let iterations = bench_support::iterations(start);
    let calls = bench_support::warmup(iterations) + iterations;
    let buffer_pages = ((calls as u64 + 1) * 8).div_ceil(PAGE_SIZE);
    let (program_start, program_end) = program();
    let space = reporter.expect_ok(UserSpace::create(), "create the user space");
    let Some(space) = space else { reporter.finish() };
    let setup = (|| {
        trap::install()?;
        user::init(on_syscall)?;
        space.map_kernel_range(program_start, program_end, 0)?;
        let buffer = space.allocate(buffer_pages)?;
        let stack = space.allocate(1)?;
        space.activate()?;
        Ok((buffer, stack + PAGE_SIZE))
    })();
    let Some((buffer, stack_top)) = reporter.expect_ok(setup, "user program, buffer and stack mapped") else {
        reporter.finish()
    };
    // SAFETY: `buffer` is ours (heap pages, also mapped for the user program), at least
    // `calls + 1` u64s long, and no Rust reference to it exists.
    unsafe { (buffer as *mut u64).write_volatile(calls as u64) };
    match user::run(program_start, stack_top, buffer) {
        Ok(UserExit::Exit(0)) => {}
        other => {
            reporter.error(format_args!("the user program did not exit with 0: {other:?}"));
            reporter.finish()
        }
    }
    reporter.expect_eq(SYSCALLS.load(Ordering::Relaxed), calls as u64, "every timed syscall reached the handler");
    // SAFETY: the user program has ended; the buffer holds `calls` samples after the count
    // and nothing else refers to it.
    let samples = unsafe { core::slice::from_raw_parts_mut((buffer as *mut u64).add(1), calls) };
    bench_support::report(
        &mut reporter,
        "user_syscall",
        Ok(tsc::summarize(&mut samples[bench_support::warmup(iterations)..])),
    );
    reporter.finish()
}
