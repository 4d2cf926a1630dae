//! Conformance: the two hypercall instructions (SPEC.md §5.1). guest-rt makes every
//! hypercall with `syscall`; the trapping form (`ud2` followed by `"rf"`,
//! [`TRAPPING_HYPERCALL`](guest_rt::abi::hypercall::TRAPPING_HYPERCALL)) is exercised here, beside `syscall`, with the same calls.
//!
//! Arguments:
//! * `version`: `version(ABI_VERSION)` and `version(FEATURES)` through `syscall`, with
//!   every register the ABI preserves checked after the call.
//! * `forms`: the same hypercalls (successes and errors) through `syscall` and through the
//!   trapping form: each result is what SPEC.md says, identical for both, and the
//!   preserved registers survive both.
//! * `xsa7`: a `syscall` as the last two bytes below the non-canonical hole, so the
//!   return address the CPU puts in RCX is 0x0000_8000_0000_0000. Returning there with
//!   `sysret` would fault in ring 0 on the guest's stack on Intel (XSA-7); the hypervisor
//!   must kill the domain instead. Never prints a result.
#![cfg_attr(target_os = "none", no_std, no_main)]

use conformance_guests::words;
use guest_rt::abi::hypercall::{console_cmd, features, version_cmd, Hypercall};
use guest_rt::abi::memory::map_flags;
use guest_rt::abi::Errno;
use guest_rt::abi::{StartInfo, ABI_VERSION};
use guest_rt::memory::{self, Space};
use guest_rt::println;
use guest_rt::test::Reporter;

guest_rt::entry!(syscall_entry);

/// The last page of the lower half.
const TOP_PAGE: u64 = 0x0000_7fff_ffff_f000;

fn syscall_entry(start: &'static StartInfo) -> u32 {
    let mut reporter = Reporter::new();
    match words(start).next() {
        Some("version") => version(&mut reporter),
        Some("forms") => forms(&mut reporter),
        Some("xsa7") => xsa7(&mut reporter, start),
        other => reporter.error(format_args!("unknown sub-case {other:?}")),
    }
    reporter.finish()
}

/// Defines `fn $name(number, [RDI, RSI, RDX]) -> (RAX, preserved)`: a hypercall made with
/// `$instruction`, with RBX, RBP and R12–R15 loaded with patterns the call must preserve;
/// `preserved` says whether every pattern survived.
macro_rules! hypercall_through {
    ($name:ident, $instruction:literal $(, $($constants:tt)+)?) => {
        #[cfg(target_os = "none")]
        fn $name(number: u64, arguments: [u64; 3]) -> (i64, bool) {
            let result: i64;
            let intact: u64;
            // SAFETY: either hypercall instruction from guest-kernel mode is a hypercall
            // (SPEC.md §5.1): RCX and R11 count as clobbered (declared), RDX carries the
            // verdict out. The callers pass only buffers that are valid for the call's
            // reads; no call here writes guest memory. The callee-saved registers are
            // saved and restored around the call by the asm itself.
            unsafe {
                core::arch::asm!(
                    "push rbx", "push rbp", "push r12", "push r13", "push r14", "push r15",
                    "mov rbx, 0x1111", "mov rbp, 0x2222", "mov r12, 0x3333",
                    "mov r13, 0x4444", "mov r14, 0x5555", "mov r15, 0x6666",
                    $instruction,
                    "xor edx, edx",
                    "cmp rbx, 0x1111", "jne 2f", "cmp rbp, 0x2222", "jne 2f",
                    "cmp r12, 0x3333", "jne 2f", "cmp r13, 0x4444", "jne 2f",
                    "cmp r14, 0x5555", "jne 2f", "cmp r15, 0x6666", "jne 2f",
                    "mov edx, 1",
                    "2:",
                    "pop r15", "pop r14", "pop r13", "pop r12", "pop rbp", "pop rbx",
                    $($($constants)+,)?
                    inout("rax") number as i64 => result,
                    in("rdi") arguments[0],
                    in("rsi") arguments[1],
                    inout("rdx") arguments[2] => intact,
                    out("rcx") _,
                    out("r11") _,
                );
            }
            (result, intact == 1)
        }

        #[cfg(not(target_os = "none"))]
        fn $name(_number: u64, _arguments: [u64; 3]) -> (i64, bool) {
            (0, false)
        }
    };
}

hypercall_through!(syscall_hypercall, "syscall");
hypercall_through!(
    trapping_hypercall,
    ".byte {b0}, {b1}, {b2}, {b3}",
    b0 = const guest_rt::abi::hypercall::TRAPPING_HYPERCALL[0],
    b1 = const guest_rt::abi::hypercall::TRAPPING_HYPERCALL[1],
    b2 = const guest_rt::abi::hypercall::TRAPPING_HYPERCALL[2],
    b3 = const guest_rt::abi::hypercall::TRAPPING_HYPERCALL[3]
);

/// A line both forms write, so `console_io(WRITE)` has the same count through each.
const LINE: &[u8] = b"syscall_entry: a console_io(WRITE) through one of the two forms\n";

/// `forms`: (what, number, arguments, the result SPEC.md gives).
fn form_calls() -> [(&'static str, u64, [u64; 3], i64); 8] {
    let line = LINE.as_ptr() as u64;
    let errno = |errno: Errno| -errno.0;
    [
        (
            "version(ABI_VERSION)",
            Hypercall::VERSION.0,
            [version_cmd::ABI_VERSION, 0, 0],
            i64::from(ABI_VERSION.packed()),
        ),
        ("version(FEATURES)", Hypercall::VERSION.0, [version_cmd::FEATURES, 0, 0], features::ALL as i64),
        ("version(99)", Hypercall::VERSION.0, [99, 0, 0], errno(Errno::EINVAL)),
        (
            "console_io(WRITE, line)",
            Hypercall::CONSOLE_IO.0,
            [console_cmd::WRITE, LINE.len() as u64, line],
            LINE.len() as i64,
        ),
        (
            "console_io(WRITE) from a non-canonical buffer",
            Hypercall::CONSOLE_IO.0,
            [console_cmd::WRITE, 1, 1 << 63],
            errno(Errno::EFAULT),
        ),
        ("number 2 (no hypercall)", 2, [0; 3], errno(Errno::ENOSYS)),
        ("number TABLE_SIZE", Hypercall::TABLE_SIZE, [0; 3], errno(Errno::ENOSYS)),
        ("number u64::MAX", u64::MAX, [0; 3], errno(Errno::ENOSYS)),
    ]
}

fn forms(reporter: &mut Reporter) {
    let calls = form_calls();
    for (what, number, arguments, expected) in calls {
        let (by_syscall, syscall_preserved) = syscall_hypercall(number, arguments);
        let (by_trap, trap_preserved) = trapping_hypercall(number, arguments);
        reporter.expect_eq(by_syscall, expected, format_args!("{what} through syscall"));
        reporter.expect_eq(by_trap, by_syscall, format_args!("{what}: trapping form against syscall"));
        reporter.check(syscall_preserved, format_args!("{what}: RBX, RBP, R12-R15 preserved by syscall"));
        reporter.check(trap_preserved, format_args!("{what}: RBX, RBP, R12-R15 preserved by the trapping form"));
    }
    println!("syscall_entry: {} hypercalls, each with the same result through syscall and ud2 \"rf\"", calls.len());
}

fn version(reporter: &mut Reporter) {
    let (abi, preserved) = syscall_hypercall(Hypercall::VERSION.0, [version_cmd::ABI_VERSION, 0, 0]);
    println!("syscall_entry: version(ABI_VERSION) = {abi:#x}");
    reporter.expect_eq(abi, i64::from(ABI_VERSION.packed()), "version through syscall");
    reporter.check(preserved, "RBX, RBP, R12-R15 preserved across the syscall hypercall");
    let (bits, preserved) = syscall_hypercall(Hypercall::VERSION.0, [version_cmd::FEATURES, 0, 0]);
    reporter.expect_eq(bits, features::ALL as i64, "features through syscall");
    reporter.check(preserved, "registers preserved (second call)");
    let (unknown, _) = syscall_hypercall(Hypercall::TABLE_SIZE, [0; 3]);
    reporter.expect_eq(unknown, -38, "unknown number through syscall is -ENOSYS");
}

fn xsa7(reporter: &mut Reporter, start: &StartInfo) {
    // The last free page, aliased: the domain dies before the heap could notice.
    let Some(gfn) = (start.free_gfn.0 + start.free_pages).checked_sub(1).filter(|_| start.free_pages > 0) else {
        return reporter.error("no free page to alias");
    };
    // Kernel-only, writable and executable: the page holds the one instruction.
    if let Err(error) = memory::map_page(Space::INITIAL, TOP_PAGE, gfn, map_flags::WRITABLE) {
        return reporter.error(format_args!("map {TOP_PAGE:#x}: {error:?}"));
    }
    let syscall_address = TOP_PAGE + 4096 - 2;
    // SAFETY: the page was just mapped writable for this domain.
    unsafe { core::ptr::write_volatile(syscall_address as *mut [u8; 2], [0x0f, 0x05]) };
    println!("syscall_entry: syscall at {syscall_address:#x}; RCX will be 0x800000000000");
    jump_to(syscall_address, Hypercall::VERSION.0);
    reporter.fail("the hypervisor returned to a non-canonical address");
}

#[cfg(target_os = "none")]
fn jump_to(address: u64, number: u64) {
    // SAFETY: deliberately transfers control to the `syscall` placed at `address`; the
    // hypervisor must end the domain there, so nothing after this runs.
    unsafe {
        core::arch::asm!("xor edi, edi", "jmp {address}", address = in(reg) address, in("rax") number, options(noreturn))
    }
}

#[cfg(not(target_os = "none"))]
fn jump_to(_address: u64, _number: u64) {}
