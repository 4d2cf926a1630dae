//! The vDSO's machine code, the same on both platforms: user mode reads the TSC itself
//! (`rdtsc` is allowed in ring 3 on both), so a clock read is the clock page's seqlock,
//! `rdtsc` and the formula of [`ClockParameters`](guest_kernel_core::vdso::clock::ClockParameters),
//! with no system call. Clocks the page cannot serve (the CPU-time clocks, unknown ids)
//! go to the kernel with the real `syscall`, whose answer (e.g. `-EINVAL`) is returned as
//! is, as Linux's vDSO does.
//!
//! The code is position-independent and self-contained: the kernel copies these bytes
//! into the vDSO image (guest_kernel_core::vdso::image) at `TEXT_OFFSET`, and the code
//! finds the clock page at a fixed distance below its own first byte. It lies in the
//! kernel's read-only data: the kernel never runs it.
//!
//! Each function is a leaf and follows the SysV calling convention, so it clobbers only
//! caller-saved registers; the time-reading routine is a macro expanded in each (a call
//! and a return would be two more branches, each a translation-block lookup under TCG).

use core::arch::global_asm;

use guest_kernel_core::vdso::clock::offsets;
use guest_kernel_core::vdso::image::{Function, TEXT_TO_CLOCK_PAGE};
use linux_raw_sys::general as uapi;

/// The clocks the page serves: the real-time and the monotonic ones.
const REALTIME_CLOCKS: u32 = 1 << uapi::CLOCK_REALTIME | 1 << uapi::CLOCK_REALTIME_COARSE;
const SERVED_CLOCKS: u32 = REALTIME_CLOCKS
    | 1 << uapi::CLOCK_MONOTONIC
    | 1 << uapi::CLOCK_MONOTONIC_RAW
    | 1 << uapi::CLOCK_MONOTONIC_COARSE
    | 1 << uapi::CLOCK_BOOTTIME;
const COARSE_CLOCKS: u32 = 1 << uapi::CLOCK_REALTIME_COARSE | 1 << uapi::CLOCK_MONOTONIC_COARSE;
/// The highest clock id in the masks (they are tested with `bt`, ids above go to the kernel).
const LAST_CLOCK: u32 = 31 - SERVED_CLOCKS.leading_zeros();
/// The coarse clocks' resolution: a tick, as the kernel's `clock_getres` answers.
const TICK_NS: u64 = 1_000_000_000 / guest_kernel_core::files::CLOCK_TICKS_PER_SECOND;
const _: () = assert!(TICK_NS < 1_000_000_000 && TICK_NS > 0);

/// The exported functions, in the order of the asm's table.
const NAMES: [&str; 5] =
    ["__vdso_clock_gettime", "__vdso_gettimeofday", "__vdso_time", "__vdso_clock_getres", "__vdso_getcpu"];

global_asm!(
    // The nanoseconds of the clock whose base field is at offset %rdi of the clock page, in
    // %rax. Clobbers %rcx, %rdx, %r8–%r11; keeps %rsi and %rdi.
    ".macro vdso_ns",
    "lea vdso_code_start - {to_clock_page}(%rip), %r8",
    "1:",
    "mov {sequence}(%r8), %r9d",
    "test $1, %r9d",
    "jnz 2f",
    "mov {tsc_base}(%r8), %r10",
    "mov {multiplier}(%r8), %r11",
    "mov {shift}(%r8), %rcx",
    // The TSC is read after the fields, never speculatively before them.
    "lfence",
    "rdtsc",
    "shl $32, %rdx",
    "or %rdx, %rax",
    "mov (%r8,%rdi), %rdx",
    "cmp {sequence}(%r8), %r9d",
    "jne 1b",
    // delta = TSC − base, 0 if the TSC is before the base.
    "xor %r9d, %r9d",
    "sub %r10, %rax",
    "cmovb %r9, %rax",
    "shr %cl, %rax",
    "mov %rdx, %r10",
    "mul %r11",
    "shrd $32, %rdx, %rax",
    "add %r10, %rax",
    "jmp 3f",
    "2:",
    "pause",
    "jmp 1b",
    "3:",
    ".endm",
    // %rdi = the offset of clock %edi's base field in the clock page; a clock the page
    // does not serve jumps to the function's label 9 with %edi unchanged. Clobbers %eax.
    ".macro vdso_clock_base",
    "cmp ${last_clock}, %edi",
    "ja 9f",
    "mov ${served}, %eax",
    "bt %edi, %eax",
    "jnc 9f",
    "mov ${realtime_clocks}, %eax",
    "bt %edi, %eax",
    "mov ${monotonic_base}, %edi",
    "mov ${realtime_base}, %eax",
    "cmovc %eax, %edi",
    ".endm",
    // %rax = seconds, %rdx = nanoseconds of the nanoseconds in %rax. Clobbers %rcx.
    ".macro vdso_split",
    "xor %edx, %edx",
    "mov $1000000000, %ecx",
    "div %rcx",
    ".endm",
    ".pushsection .rodata.vdso_code, \"a\"",
    ".balign 16",
    ".globl guest_kernel_vdso_code_start",
    "guest_kernel_vdso_code_start:",
    "vdso_code_start:",
    // int clock_gettime(clockid_t clock, struct timespec *time)
    "vdso_clock_gettime:",
    "vdso_clock_base",
    "vdso_ns",
    "vdso_split",
    "mov %rax, (%rsi)",
    "mov %rdx, 8(%rsi)",
    "xor %eax, %eax",
    "ret",
    "9:",
    "movslq %edi, %rdi",
    "mov ${clock_gettime}, %eax",
    "syscall",
    "ret",
    "vdso_clock_gettime_end:",
    // int gettimeofday(struct timeval *time, struct timezone *zone)
    "vdso_gettimeofday:",
    "test %rdi, %rdi",
    "jz 7f",
    // A leaf may use the red zone below the stack pointer.
    "mov %rdi, -8(%rsp)",
    "mov ${realtime_base}, %edi",
    "vdso_ns",
    "mov -8(%rsp), %rdi",
    "vdso_split",
    "mov %rax, (%rdi)",
    "mov %rdx, %rax",
    "xor %edx, %edx",
    "mov $1000, %ecx",
    "div %rcx",
    "mov %rax, 8(%rdi)",
    "7:",
    "test %rsi, %rsi",
    "jz 8f",
    "movq $0, (%rsi)",
    "8:",
    "xor %eax, %eax",
    "ret",
    "vdso_gettimeofday_end:",
    // time_t time(time_t *seconds)
    "vdso_time:",
    "mov %rdi, %rsi",
    "mov ${realtime_base}, %edi",
    "vdso_ns",
    "vdso_split",
    "test %rsi, %rsi",
    "jz 8f",
    "mov %rax, (%rsi)",
    "8:",
    "ret",
    "vdso_time_end:",
    // int clock_getres(clockid_t clock, struct timespec *resolution)
    "vdso_clock_getres:",
    "cmp ${last_clock}, %edi",
    "ja 9f",
    "mov ${served}, %eax",
    "bt %edi, %eax",
    "jnc 9f",
    "test %rsi, %rsi",
    "jz 8f",
    "mov ${coarse}, %eax",
    "bt %edi, %eax",
    "mov $1, %ecx",
    "mov ${tick}, %edx",
    "cmovc %edx, %ecx",
    "movq $0, (%rsi)",
    "mov %rcx, 8(%rsi)",
    "8:",
    "xor %eax, %eax",
    "ret",
    "9:",
    "movslq %edi, %rdi",
    "mov ${clock_getres}, %eax",
    "syscall",
    "ret",
    "vdso_clock_getres_end:",
    // int getcpu(unsigned *cpu, unsigned *node, void *cache): the kernel runs on one
    // processor and one node, 0, as its `getcpu` answers.
    "vdso_getcpu:",
    "test %rdi, %rdi",
    "jz 7f",
    "movl $0, (%rdi)",
    "7:",
    "test %rsi, %rsi",
    "jz 8f",
    "movl $0, (%rsi)",
    "8:",
    "xor %eax, %eax",
    "ret",
    "vdso_getcpu_end:",
    ".globl guest_kernel_vdso_code_end",
    "guest_kernel_vdso_code_end:",
    // Offset and size of each function, in the order of NAMES.
    ".balign 8",
    ".globl guest_kernel_vdso_functions",
    "guest_kernel_vdso_functions:",
    ".quad vdso_clock_gettime - vdso_code_start, vdso_clock_gettime_end - vdso_clock_gettime",
    ".quad vdso_gettimeofday - vdso_code_start, vdso_gettimeofday_end - vdso_gettimeofday",
    ".quad vdso_time - vdso_code_start, vdso_time_end - vdso_time",
    ".quad vdso_clock_getres - vdso_code_start, vdso_clock_getres_end - vdso_clock_getres",
    ".quad vdso_getcpu - vdso_code_start, vdso_getcpu_end - vdso_getcpu",
    ".popsection",
    to_clock_page = const TEXT_TO_CLOCK_PAGE,
    sequence = const offsets::SEQUENCE,
    tsc_base = const offsets::TSC_BASE,
    multiplier = const offsets::MULTIPLIER,
    shift = const offsets::SHIFT,
    monotonic_base = const offsets::MONOTONIC_BASE,
    realtime_base = const offsets::REALTIME_BASE,
    last_clock = const LAST_CLOCK,
    served = const SERVED_CLOCKS,
    realtime_clocks = const REALTIME_CLOCKS,
    coarse = const COARSE_CLOCKS,
    tick = const TICK_NS,
    clock_gettime = const uapi::__NR_clock_gettime,
    clock_getres = const uapi::__NR_clock_getres,
    options(att_syntax)
);

extern "C" {
    static guest_kernel_vdso_code_start: u8;
    static guest_kernel_vdso_code_end: u8;
    static guest_kernel_vdso_functions: [u64; 2 * NAMES.len()];
}

/// The code's bytes.
pub fn code() -> &'static [u8] {
    let start = &raw const guest_kernel_vdso_code_start;
    let end = &raw const guest_kernel_vdso_code_end;
    // SAFETY: both labels are in one read-only section of the kernel image, `end` after
    // `start`; the bytes between them are the assembled code, never written.
    unsafe { core::slice::from_raw_parts(start, end as usize - start as usize) }
}

/// The exported functions, where they are in [`code`].
pub fn functions() -> [Function<'static>; NAMES.len()] {
    // SAFETY: the table is initialized read-only data of the kernel image.
    let table = unsafe { guest_kernel_vdso_functions };
    core::array::from_fn(|index| Function {
        name: NAMES[index],
        offset: table[2 * index] as usize,
        size: table[2 * index + 1] as usize,
    })
}
