//! Conformance: the `syscall` hypercall instruction (SPEC.md §5.1), which guest-rt does
//! not use (it uses the trapping form, which works on every host).
//!
//! Arguments:
//! * `version`: `version(ABI_VERSION)` and `version(FEATURES)` through `syscall`, with
//!   every register the ABI preserves checked after the call.
//! * `xsa7`: a `syscall` as the last two bytes below the non-canonical hole, so the
//!   return address the CPU puts in RCX is 0x0000_8000_0000_0000. Returning there with
//!   `sysret` would fault in ring 0 on the guest's stack on Intel (XSA-7); the hypervisor
//!   must kill the domain instead. Never prints a result.
#![cfg_attr(target_os = "none", no_std, no_main)]

use conformance_guests::words;
use guest_rt::abi::hypercall::{features, version_cmd, Hypercall};
use guest_rt::abi::memory::map_flags;
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
        Some("xsa7") => xsa7(&mut reporter, start),
        other => reporter.error(format_args!("unknown sub-case {other:?}")),
    }
    reporter.finish()
}

/// A hypercall by `syscall`, with RBX, RBP and R12–R15 loaded with patterns the call
/// must preserve; returns (RAX, whether every pattern survived).
#[cfg(target_os = "none")]
fn syscall_hypercall(number: u64, argument: u64) -> (i64, bool) {
    let result: i64;
    let intact: u64;
    // SAFETY: `syscall` from guest-kernel mode is a hypercall (SPEC.md §5.1): it
    // clobbers RCX and R11 only (declared), and `version` reads no memory. The callee-
    // saved registers are saved and restored around the call by the asm itself.
    unsafe {
        core::arch::asm!(
            "push rbx", "push rbp", "push r12", "push r13", "push r14", "push r15",
            "mov rbx, 0x1111", "mov rbp, 0x2222", "mov r12, 0x3333",
            "mov r13, 0x4444", "mov r14, 0x5555", "mov r15, 0x6666",
            "syscall",
            "xor edx, edx",
            "cmp rbx, 0x1111", "jne 2f", "cmp rbp, 0x2222", "jne 2f",
            "cmp r12, 0x3333", "jne 2f", "cmp r13, 0x4444", "jne 2f",
            "cmp r14, 0x5555", "jne 2f", "cmp r15, 0x6666", "jne 2f",
            "mov edx, 1",
            "2:",
            "pop r15", "pop r14", "pop r13", "pop r12", "pop rbp", "pop rbx",
            inout("rax") number as i64 => result,
            in("rdi") argument,
            out("rdx") intact,
            out("rcx") _,
            out("r11") _,
        );
    }
    (result, intact == 1)
}

#[cfg(not(target_os = "none"))]
fn syscall_hypercall(_number: u64, _argument: u64) -> (i64, bool) {
    (0, false)
}

fn version(reporter: &mut Reporter) {
    let (abi, preserved) = syscall_hypercall(Hypercall::VERSION.0, version_cmd::ABI_VERSION);
    println!("syscall_entry: version(ABI_VERSION) = {abi:#x}");
    reporter.expect_eq(abi, i64::from(ABI_VERSION.packed()), "version through syscall");
    reporter.check(preserved, "RBX, RBP, R12-R15 preserved across the syscall hypercall");
    let (bits, preserved) = syscall_hypercall(Hypercall::VERSION.0, version_cmd::FEATURES);
    reporter.expect_eq(bits, features::ALL as i64, "features through syscall");
    reporter.check(preserved, "registers preserved (second call)");
    let (unknown, _) = syscall_hypercall(Hypercall::TABLE_SIZE, 0);
    reporter.expect_eq(unknown, -38, "unknown number through syscall is -ENOSYS");
}

fn xsa7(reporter: &mut Reporter, start: &StartInfo) {
    // The last free page, aliased: the domain dies before the heap could notice.
    let Some(gfn) = (start.free_gfn + start.free_pages).checked_sub(1).filter(|_| start.free_pages > 0) else {
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
    unsafe { core::arch::asm!("xor edi, edi", "jmp {address}", address = in(reg) address, in("rax") number, options(noreturn)) }
}

#[cfg(not(target_os = "none"))]
fn jump_to(_address: u64, _number: u64) {}
