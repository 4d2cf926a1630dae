//! The vector registers — x87, SSE and (where the processor and kernel offer it) AVX —
//! are each process's own: values a process holds survive its system calls, blocking while
//! another process runs with other values, preemption in the middle of a loop, and a
//! signal handler that changes them (the signal frame shows them as they were); a forked
//! child starts with the values its parent held at `fork`; `execve` starts from the
//! initial state (MXCSR 0x1f80, x87 control word 0x037f, AVX upper halves zero).
//!
//! Rust code may use the SSE registers for anything, so every check holds its values only
//! inside one `asm!` block: load them, make one system call (or spin), store what the
//! registers hold then. Each hold loads values of its own (a pattern of the process and
//! the round), so a stale copy of a process's own earlier values is caught as surely as
//! another process's.
//!
//! `test-vector --initial-state` is the program `execve` runs: it checks the state it
//! started with and exits 0 if it is the initial one.

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::check::{ensure, expect_eq, Outcome, Suite};
use crate::process::{close, errno_name, exit_now, fork, pipe, wait_for, Fork, Status};
use crate::signals::{install, Action};

/// Round trips of the ping-pong between two processes.
const ROUNDS: u32 = 100;
/// How long each of two processes spins holding its values: several time slices of
/// guest-kernel (10 ms), so that on one processor each is preempted while the other runs.
const SPIN_MS: u64 = 50;
/// The state `execve` starts a program with.
const INITIAL_MXCSR: u32 = 0x1f80;
const INITIAL_FCW: u16 = 0x037f;

/// What one hold loads into the registers, or found in them afterwards.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(C, align(32))]
struct Held {
    /// xmm0–15 in the low 16 bytes of each, the upper halves of ymm0–15 in the high 16
    /// (left zero, and neither loaded nor stored, without AVX).
    vectors: [[u8; 32]; 16],
    mxcsr: u32,
    /// The x87 control word.
    fcw: u16,
    _padding: u16,
    /// Loaded as st(0) and stored from it.
    x87: i64,
}

// The holds address the vectors from the structure's start.
const _: () = assert!(core::mem::offset_of!(Held, vectors) == 0);
const MXCSR: usize = core::mem::offset_of!(Held, mxcsr);
const FCW: usize = core::mem::offset_of!(Held, fcw);
const X87: usize = core::mem::offset_of!(Held, x87);

/// Where a hold keeps the caller's MXCSR and x87 control word meanwhile.
#[repr(C)]
struct Saved {
    mxcsr: u32,
    fcw: u16,
}

fn avx() -> bool {
    std::arch::is_x86_feature_detected!("avx")
}

impl Held {
    /// Values no other `seed` gives: every byte, the rounding modes and st(0) depend on it.
    fn pattern(seed: u32) -> Held {
        let mut vectors = [[0u8; 32]; 16];
        let width = if avx() { 32 } else { 16 };
        for (register, bytes) in vectors.iter_mut().enumerate() {
            for (index, byte) in bytes.iter_mut().enumerate().take(width) {
                let mixed = seed.wrapping_mul(0x9e37_79b9) ^ (register as u32 * 0x0101_0101) ^ (index as u32 * 0x3b);
                *byte = (mixed ^ (mixed >> 11) ^ (mixed >> 23)) as u8;
            }
        }
        // MXCSR: every exception masked, the rounding control (bits 13–14) and
        // flush-to-zero (bit 15) from the seed. FCW: the rounding control (bits 10–11).
        Held {
            vectors,
            mxcsr: INITIAL_MXCSR | (seed % 8) << 13,
            fcw: INITIAL_FCW | ((seed / 8 % 4) as u16) << 10,
            _padding: 0,
            x87: i64::from(seed) * 1_000_003 - 77,
        }
    }

    fn empty() -> Held {
        Held { vectors: [[0; 32]; 16], mxcsr: 0, fcw: 0, _padding: 0, x87: 0 }
    }

    /// Where `self` (found) differs from `expected`, or `None`.
    fn difference(&self, expected: &Held) -> Option<String> {
        let name = if avx() { "ymm" } else { "xmm" };
        for (register, (found, wanted)) in self.vectors.iter().zip(&expected.vectors).enumerate() {
            if found != wanted {
                return Some(format!("{name}{register} holds {} instead of {}", hex(found), hex(wanted)));
            }
        }
        if self.mxcsr != expected.mxcsr {
            return Some(format!("MXCSR is {:#x} instead of {:#x}", self.mxcsr, expected.mxcsr));
        }
        if self.fcw != expected.fcw {
            return Some(format!("the x87 control word is {:#x} instead of {:#x}", self.fcw, expected.fcw));
        }
        if self.x87 != expected.x87 {
            return Some(format!("st(0) is {} instead of {}", self.x87, expected.x87));
        }
        None
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().rev().map(|byte| format!("{byte:02x}")).collect()
}

/// What ends a hold: a system call, or spinning until the TSC reaches a deadline.
#[derive(Clone, Copy)]
enum Then {
    Call(i64, [u64; 3]),
    SpinUntil(u64),
}

/// Loads `values` into the registers, does `action` with them held, and returns what the
/// registers held after it and the system call's result (0 for a spin).
fn hold(values: &Held, then: Then) -> (Held, i64) {
    let mut after = Held::empty();
    let mut saved = Saved { mxcsr: 0, fcw: 0 };
    let (number, arguments, deadline) = match then {
        Then::Call(number, arguments) => (number, arguments, 0),
        Then::SpinUntil(deadline) => (0, [0; 3], deadline),
    };
    let result: i64;
    macro_rules! hold_asm {
        ($load:literal, $store:literal) => {
            // SAFETY: the block reads `values`, writes `after` and `saved` (exclusive
            // locals, 32-byte aligned), and gives back the MXCSR and x87 control word it
            // found; the x87 stack is empty before and after (one load, one store). The
            // system call is one the caller chose with valid arguments; its registers and
            // every vector register are declared clobbered (`clobber_abi`). A signal
            // handler may run during the call: the kernel restores all of this after it.
            unsafe {
                core::arch::asm!(
                    "stmxcsr [r10]",
                    "fnstcw [r10 + 4]",
                    "ldmxcsr [r8 + {mxcsr}]",
                    "fldcw [r8 + {fcw}]",
                    "fild qword ptr [r8 + {x87}]",
                    $load,
                    "test r11, r11",
                    "jz 3f",
                    "2:",
                    "pause",
                    "rdtsc",
                    "shl rdx, 32",
                    "or rax, rdx",
                    "cmp rax, r11",
                    "jb 2b",
                    "xor eax, eax",
                    "jmp 4f",
                    "3:",
                    "syscall",
                    "4:",
                    $store,
                    "fistp qword ptr [r9 + {x87}]",
                    "stmxcsr [r9 + {mxcsr}]",
                    "fnstcw [r9 + {fcw}]",
                    "ldmxcsr [r10]",
                    "fldcw [r10 + 4]",
                    mxcsr = const MXCSR,
                    fcw = const FCW,
                    x87 = const X87,
                    inlateout("rax") number => result,
                    in("rdi") arguments[0],
                    in("rsi") arguments[1],
                    in("rdx") arguments[2],
                    in("r8") values as *const Held,
                    in("r9") &raw mut after,
                    in("r10") &raw mut saved,
                    in("r11") deadline,
                    clobber_abi("C"),
                )
            }
        };
    }
    if avx() {
        hold_asm!(
            "vmovdqu ymm0, [r8]\nvmovdqu ymm1, [r8 + 32]\nvmovdqu ymm2, [r8 + 64]\nvmovdqu ymm3, [r8 + 96]\n\
             vmovdqu ymm4, [r8 + 128]\nvmovdqu ymm5, [r8 + 160]\nvmovdqu ymm6, [r8 + 192]\nvmovdqu ymm7, [r8 + 224]\n\
             vmovdqu ymm8, [r8 + 256]\nvmovdqu ymm9, [r8 + 288]\nvmovdqu ymm10, [r8 + 320]\n\
             vmovdqu ymm11, [r8 + 352]\nvmovdqu ymm12, [r8 + 384]\nvmovdqu ymm13, [r8 + 416]\n\
             vmovdqu ymm14, [r8 + 448]\nvmovdqu ymm15, [r8 + 480]",
            "vmovdqu [r9], ymm0\nvmovdqu [r9 + 32], ymm1\nvmovdqu [r9 + 64], ymm2\nvmovdqu [r9 + 96], ymm3\n\
             vmovdqu [r9 + 128], ymm4\nvmovdqu [r9 + 160], ymm5\nvmovdqu [r9 + 192], ymm6\nvmovdqu [r9 + 224], ymm7\n\
             vmovdqu [r9 + 256], ymm8\nvmovdqu [r9 + 288], ymm9\nvmovdqu [r9 + 320], ymm10\n\
             vmovdqu [r9 + 352], ymm11\nvmovdqu [r9 + 384], ymm12\nvmovdqu [r9 + 416], ymm13\n\
             vmovdqu [r9 + 448], ymm14\nvmovdqu [r9 + 480], ymm15\nvzeroupper"
        );
    } else {
        hold_asm!(
            "movdqu xmm0, [r8]\nmovdqu xmm1, [r8 + 32]\nmovdqu xmm2, [r8 + 64]\nmovdqu xmm3, [r8 + 96]\n\
             movdqu xmm4, [r8 + 128]\nmovdqu xmm5, [r8 + 160]\nmovdqu xmm6, [r8 + 192]\nmovdqu xmm7, [r8 + 224]\n\
             movdqu xmm8, [r8 + 256]\nmovdqu xmm9, [r8 + 288]\nmovdqu xmm10, [r8 + 320]\n\
             movdqu xmm11, [r8 + 352]\nmovdqu xmm12, [r8 + 384]\nmovdqu xmm13, [r8 + 416]\n\
             movdqu xmm14, [r8 + 448]\nmovdqu xmm15, [r8 + 480]",
            "movdqu [r9], xmm0\nmovdqu [r9 + 32], xmm1\nmovdqu [r9 + 64], xmm2\nmovdqu [r9 + 96], xmm3\n\
             movdqu [r9 + 128], xmm4\nmovdqu [r9 + 160], xmm5\nmovdqu [r9 + 192], xmm6\nmovdqu [r9 + 224], xmm7\n\
             movdqu [r9 + 256], xmm8\nmovdqu [r9 + 288], xmm9\nmovdqu [r9 + 320], xmm10\n\
             movdqu [r9 + 352], xmm11\nmovdqu [r9 + 384], xmm12\nmovdqu [r9 + 416], xmm13\n\
             movdqu [r9 + 448], xmm14\nmovdqu [r9 + 480], xmm15"
        );
    }
    (after, result)
}

/// Holds `values` through system call `number` and checks they survived; returns the
/// call's result. `what` names the hold in a failure.
fn call_keeping(what: &str, values: &Held, number: i64, arguments: [u64; 3]) -> Result<i64, String> {
    let (after, result) = hold(values, Then::Call(number, arguments));
    match after.difference(values) {
        Some(difference) => Err(format!("{what}: {difference}")),
        None => Ok(result),
    }
}

fn system_calls_keep_them() -> Outcome {
    let calls: [(&str, i64, [u64; 3]); 3] = [
        ("getppid", libc::SYS_getppid, [0; 3]),
        ("sched_yield", libc::SYS_sched_yield, [0; 3]),
        ("write of nothing", libc::SYS_write, [1, 0, 0]),
    ];
    for (round, (what, number, arguments)) in calls.into_iter().enumerate() {
        call_keeping(&format!("across {what}"), &Held::pattern(round as u32 + 1), number, arguments)?;
    }
    Ok(())
}

/// One side of the ping-pong: `rounds` times, reads a byte from `input` (waiting while the
/// other side runs) and writes it to `output`, or the other way round when `first` is
/// set, each with values of `process` and the round.
fn ping_pong(process: u32, first: bool, input: i32, output: i32) -> Outcome {
    let mut byte = [0u8; 1];
    let buffer = byte.as_mut_ptr() as u64;
    for round in 0..ROUNDS {
        let seed = process * 10_000 + round * 2;
        let read = |seed| {
            let count = call_keeping(
                &format!("process {process}, round {round}, a read that waited"),
                &Held::pattern(seed),
                libc::SYS_read,
                [input as u64, buffer, 1],
            )?;
            expect_eq("read", count, 1)
        };
        let write = |seed| {
            let count = call_keeping(
                &format!("process {process}, round {round}, a write"),
                &Held::pattern(seed),
                libc::SYS_write,
                [output as u64, buffer, 1],
            )?;
            expect_eq("write", count, 1)
        };
        if first {
            write(seed)?;
            read(seed + 1)?;
        } else {
            read(seed)?;
            write(seed + 1)?;
        }
    }
    Ok(())
}

fn two_processes_ping_pong() -> Outcome {
    let (child_input, parent_output) = pipe()?;
    let (parent_input, child_output) = pipe()?;
    let child = match fork() {
        Err(error) => return Err(format!("fork: {}", errno_name(error))),
        Ok(Fork::Child) => {
            // The parent's ends go, so that the child sees the end of file if it fails.
            close(parent_input.as_raw_fd());
            close(parent_output.as_raw_fd());
            exit_now(match ping_pong(2, false, child_input.as_raw_fd(), child_output.as_raw_fd()) {
                Ok(()) => 0,
                Err(why) => {
                    eprintln!("test-vector: the child of ping_pong: {why}");
                    1
                }
            })
        }
        Ok(Fork::Parent(pid)) => pid,
    };
    drop((child_input, child_output));
    let outcome = ping_pong(1, true, parent_input.as_raw_fd(), parent_output.as_raw_fd());
    drop((parent_input, parent_output));
    let status = wait_for(child)?;
    outcome?;
    expect_eq("the child (its values checked after every call)", status, Status::Exited(0))
}

/// TSC ticks per millisecond, measured over a 20 ms sleep.
fn ticks_per_ms() -> u64 {
    let start = tsc();
    crate::process::sleep_ms(20);
    (tsc() - start) / 20
}

fn tsc() -> u64 {
    // SAFETY: RDTSC reads the time-stamp counter; user mode may (both kernels leave
    // CR4.TSD clear).
    unsafe { core::arch::x86_64::_rdtsc() }
}

fn preemption_keeps_them() -> Outcome {
    let spin = ticks_per_ms() * SPIN_MS;
    let (ready, started) = pipe()?;
    let child = match fork() {
        Err(error) => return Err(format!("fork: {}", errno_name(error))),
        Ok(Fork::Child) => {
            drop(ready);
            let values = Held::pattern(77);
            // The parent starts spinning once this byte arrives; this one spins longer
            // than a slice from here, so the two overlap.
            let (after, _) =
                hold(&values, Then::Call(libc::SYS_write, [started.as_raw_fd() as u64, b"!".as_ptr() as u64, 1]));
            let (spun, _) = hold(&values, Then::SpinUntil(tsc() + spin));
            let failure = after.difference(&values).or_else(|| spun.difference(&values));
            if let Some(difference) = &failure {
                eprintln!("test-vector: the spinning child: {difference}");
            }
            exit_now(i32::from(failure.is_some()))
        }
        Ok(Fork::Parent(pid)) => pid,
    };
    drop(started);
    let mut byte = [0u8; 1];
    let count = crate::process::read(ready.as_raw_fd(), &mut byte).map_err(errno_name)?;
    expect_eq("the child's start", count, 1)?;
    let values = Held::pattern(78);
    let (spun, _) = hold(&values, Then::SpinUntil(tsc() + spin));
    let status = wait_for(child)?;
    if let Some(difference) = spun.difference(&values) {
        return Err(format!("spinning {SPIN_MS} ms beside another spinning process: {difference}"));
    }
    expect_eq("the child, which spun the same way", status, Status::Exited(0))
}

fn fork_child_starts_with_them() -> Outcome {
    let values = Held::pattern(5);
    let (after, pid) = hold(&values, Then::Call(libc::SYS_fork, [0; 3]));
    if pid == 0 {
        exit_now(i32::from(after.difference(&values).is_some()));
    }
    ensure(pid > 0, || format!("fork failed: {}", errno_name(-pid as i32)))?;
    // Waiting lets the child run, after this process's values were replaced by others.
    let status = wait_for(pid as libc::pid_t)?;
    if let Some(difference) = after.difference(&values) {
        return Err(format!("the parent after fork: {difference}"));
    }
    expect_eq("the child, exiting 1 unless it found the parent's values", status, Status::Exited(0))
}

/// What the handler found in the signal frame: xmm0–15 (low and high halves), MXCSR.
static FRAME_XMM: [AtomicU64; 32] = [const { AtomicU64::new(0) }; 32];
static FRAME_MXCSR: AtomicU32 = AtomicU32::new(0);
/// Byte offsets in the x87/SSE state the frame's `fpregs` points at (the FXSAVE layout).
const FPSTATE_MXCSR: usize = 24;
const FPSTATE_XMM: usize = 160;

/// Where `struct ucontext` (Linux x86-64) has `uc_mcontext.fpregs`: after uc_flags,
/// uc_link, uc_stack (40 bytes) and the 23 words of `gregs` (musl's `mcontext_t` names no
/// field there, glibc's does).
const UCONTEXT_FPREGS: usize = 40 + 23 * 8;

extern "C" fn record_and_clobber(_signal: i32, _information: *mut libc::siginfo_t, context: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid ucontext to an SA_SIGINFO handler, whose fpregs
    // points at the interrupted code's x87/SSE state (512 bytes at least) or is null.
    let state = unsafe { context.cast::<u8>().add(UCONTEXT_FPREGS).cast::<*const u8>().read_unaligned() };
    if !state.is_null() {
        for (index, slot) in FRAME_XMM.iter().enumerate() {
            // SAFETY: within the 512-byte legacy area (xmm15 ends at byte 416).
            let word = unsafe { state.add(FPSTATE_XMM + index * 8).cast::<u64>().read_unaligned() };
            slot.store(word, Ordering::Relaxed);
        }
        // SAFETY: as above.
        FRAME_MXCSR.store(unsafe { state.add(FPSTATE_MXCSR).cast::<u32>().read_unaligned() }, Ordering::Relaxed);
    }
    // Other values, live when the handler returns: sigreturn must bring the interrupted
    // ones back.
    let _ = hold(&Held::pattern(999), Then::Call(libc::SYS_getppid, [0; 3]));
}

fn signal_handler_sees_and_restores_them() -> Outcome {
    install(libc::SIGUSR1, Action::InfoHandler(record_and_clobber, 0))?;
    let values = Held::pattern(6);
    // SAFETY: getpid has no arguments and no failure.
    let pid = unsafe { libc::getpid() } as u64;
    let result =
        call_keeping("after a handler that changed them", &values, libc::SYS_kill, [pid, libc::SIGUSR1 as u64, 0]);
    install(libc::SIGUSR1, Action::Default)?;
    expect_eq("kill", result?, 0)?;
    for (register, bytes) in values.vectors.iter().enumerate() {
        let mut low = [0u8; 16];
        for (half, slot) in FRAME_XMM[register * 2..register * 2 + 2].iter().enumerate() {
            low[half * 8..half * 8 + 8].copy_from_slice(&slot.load(Ordering::Relaxed).to_le_bytes());
        }
        ensure(low == bytes[..16], || {
            format!("the signal frame's xmm{register} is {} instead of {}", hex(&low), hex(&bytes[..16]))
        })?;
    }
    expect_eq("the signal frame's MXCSR", FRAME_MXCSR.load(Ordering::Relaxed), values.mxcsr)
}

fn exec_starts_from_the_initial_state() -> Outcome {
    let path = std::env::args().next().filter(|path| path.contains('/')).map_or_else(
        || std::env::current_exe().map_err(|error| format!("cannot find this program: {error}")),
        |path| Ok(path.into()),
    )?;
    let path = CString::new(path.into_os_string().into_encoded_bytes()).map_err(|_| "a NUL in the program's path")?;
    // Named test-vector, the program runs as this one whatever the file is called.
    let argv = [c"test-vector".as_ptr(), c"--initial-state".as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null::<libc::c_char>()];
    let status = crate::process::in_child(|| {
        let (_, result) = hold(
            &Held::pattern(13),
            Then::Call(libc::SYS_execve, [path.as_ptr() as u64, argv.as_ptr() as u64, envp.as_ptr() as u64]),
        );
        eprintln!("test-vector: execve failed: {}", errno_name(-result as i32));
        100
    })?;
    expect_eq("the program execve ran, exiting 1 unless its state was the initial one", status, Status::Exited(0))
}

/// `--initial-state`: what this program started with (Rust's start-up code changes
/// neither control register, and no baseline x86-64 code touches the AVX upper halves).
fn initial_state() -> ExitCode {
    let mut mxcsr = 0u32;
    let mut fcw = 0u16;
    let mut upper = [[0u8; 16]; 16];
    // SAFETY: stores the control registers into locals.
    unsafe {
        core::arch::asm!("stmxcsr [{}]", "fnstcw [{}]", in(reg) &raw mut mxcsr, in(reg) &raw mut fcw, options(nostack));
    }
    if avx() {
        // SAFETY: reads the upper halves of ymm0–15 into `upper` (256 bytes); the xmm
        // registers it uses are declared clobbered.
        unsafe {
            core::arch::asm!(
                "vextractf128 [{0}], ymm0, 1", "vextractf128 [{0} + 16], ymm1, 1",
                "vextractf128 [{0} + 32], ymm2, 1", "vextractf128 [{0} + 48], ymm3, 1",
                "vextractf128 [{0} + 64], ymm4, 1", "vextractf128 [{0} + 80], ymm5, 1",
                "vextractf128 [{0} + 96], ymm6, 1", "vextractf128 [{0} + 112], ymm7, 1",
                "vextractf128 [{0} + 128], ymm8, 1", "vextractf128 [{0} + 144], ymm9, 1",
                "vextractf128 [{0} + 160], ymm10, 1", "vextractf128 [{0} + 176], ymm11, 1",
                "vextractf128 [{0} + 192], ymm12, 1", "vextractf128 [{0} + 208], ymm13, 1",
                "vextractf128 [{0} + 224], ymm14, 1", "vextractf128 [{0} + 240], ymm15, 1",
                in(reg) upper.as_mut_ptr(),
                options(nostack),
            );
        }
    }
    let mut wrong = Vec::new();
    if mxcsr != INITIAL_MXCSR {
        wrong.push(format!("MXCSR {mxcsr:#x} instead of {INITIAL_MXCSR:#x}"));
    }
    if fcw != INITIAL_FCW {
        wrong.push(format!("x87 control word {fcw:#x} instead of {INITIAL_FCW:#x}"));
    }
    for (register, half) in upper.iter().enumerate() {
        if half.iter().any(|&byte| byte != 0) {
            wrong.push(format!("ymm{register}'s upper half {} instead of zero", hex(half)));
        }
    }
    if wrong.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("test-vector --initial-state: after execve: {}", wrong.join(", "));
        ExitCode::FAILURE
    }
}

pub fn main(arguments: &[String]) -> ExitCode {
    if arguments.len() == 1 && arguments[0] == "--initial-state" {
        return initial_state();
    }
    if let Err(code) = crate::check::no_arguments(arguments) {
        return code;
    }
    let mut suite = Suite::new("vector");
    suite.note(if avx() { "x87, SSE and AVX registers" } else { "x87 and SSE registers (no AVX here)" });
    suite.case("system_calls_keep_them", system_calls_keep_them);
    suite.case("two_processes_ping_pong", two_processes_ping_pong);
    suite.case("preemption_keeps_them", preemption_keeps_them);
    suite.case("fork_child_starts_with_them", fork_child_starts_with_them);
    suite.case("signal_handler_sees_and_restores_them", signal_handler_sees_and_restores_them);
    suite.case("exec_starts_from_the_initial_state", exec_starts_from_the_initial_state);
    suite.finish()
}
