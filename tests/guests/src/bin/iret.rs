//! Conformance: the `iret` hypercall.
//!
//! `ok`: an iret frame built by hand resumes at its RIP and RSP with its RAX, RCX, R11 and
//! RFLAGS, and every other register keeps its value. Every other sub-case hands `iret` a
//! frame with one bad field; the hypervisor must kill the domain (reporting the field) and
//! the companion domain keeps running. If `iret` comes back, the guest reports FAILURE.
#![cfg_attr(target_os = "none", no_std, no_main)]

use conformance_guests::{stack_pointer, words};
use guest_rt::abi::layout::HYPERVISOR_START;
use guest_rt::abi::trap::{IretFrame, KERNEL_CS, KERNEL_SS, USER_CS, USER_SS};
use guest_rt::abi::StartInfo;
use guest_rt::println;
use guest_rt::test::Reporter;

guest_rt::entry!(iret);

/// Makes one field of a valid frame bad.
type Spoil = fn(&mut IretFrame);

/// Sub-cases with a bad frame: (name, change to a valid frame).
const BAD: &[(&str, Spoil)] = &[
    ("noncanonical_rip", |frame| frame.rip = 0x0123_4567_89ab_cdef),
    // XSA-7: the first non-canonical address, where a `sysret` would fault in ring 0.
    ("sysret_rip", |frame| frame.rip = 0x0000_8000_0000_0000),
    ("hypervisor_rip", |frame| frame.rip = HYPERVISOR_START + 0x1000),
    ("ring0_cs", |frame| frame.cs = 0x08),
    ("hardware_cs", |frame| frame.cs = 0x23),
    ("mismatched_ss", |frame| frame.ss = USER_SS),
    ("iopl", |frame| frame.rflags |= 3 << 12),
    ("nested_task", |frame| frame.rflags |= 1 << 14),
    ("vm86", |frame| frame.rflags |= 1 << 17),
    ("flags", |frame| frame.flags = 1),
    ("noncanonical_rsp", |frame| frame.rsp = 0x8000_0000_0000_0000),
    ("user_without_root", |frame| {
        frame.cs = USER_CS;
        frame.ss = USER_SS;
    }),
];

fn valid_frame() -> IretFrame {
    IretFrame {
        rax: 0,
        r11: 0,
        rcx: 0,
        flags: 0,
        rip: iret as *const () as u64,
        cs: KERNEL_CS,
        rflags: 0x202,
        rsp: stack_pointer() & !15,
        ss: KERNEL_SS,
    }
}

fn iret(start: &'static StartInfo) -> u32 {
    let mut reporter = Reporter::new();
    let wanted = words(start).next().unwrap_or("");
    if wanted == "ok" {
        ok(&mut reporter);
        reporter.finish();
    }
    if wanted == "unreadable" {
        println!("iret with RSP on an unmapped page");
        unreadable();
    }
    match BAD.iter().find(|(name, _)| *name == wanted) {
        Some((name, change)) => {
            let mut frame = valid_frame();
            change(&mut frame);
            println!("iret with {name}: {frame:x?}");
            // SAFETY: the hypervisor must refuse this frame and kill the domain; were it
            // to accept it, execution would continue at `iret`'s entry (valid fields) or
            // somewhere the hypervisor let through, which the case reports either way.
            unsafe { guest_rt::trap::iret(&frame) }
        }
        None => reporter.error(format_args!("unknown sub-case '{wanted}'")),
    }
    reporter.finish()
}

#[cfg(target_arch = "x86_64")]
fn unreadable() -> ! {
    // SAFETY: RSP points at an unmapped page when `iret` reads its frame: the domain is
    // killed. Nothing runs after it.
    unsafe {
        core::arch::asm!(
            "mov rsp, 0x2000",
            "mov eax, {iret}",
            "ud2",
            ".byte 0x72, 0x66",
            "ud2",
            iret = const guest_rt::abi::Hypercall::IRET.0,
            options(noreturn),
        )
    }
}

/// Values `ok` gives the frame (RAX, RCX, R11) and other registers.
const FRAME_RAX: u64 = 0x1111_2222_3333_4444;
const FRAME_RCX: u64 = 0x5555_6666_7777_8888;
const FRAME_R11: u64 = 0x9999_aaaa_bbbb_cccc;
const KEEP: [u64; 8] = [
    0xd0d0_0000_0000_0001,
    0x5151_0000_0000_0002,
    0xd1d1_0000_0000_0003,
    0x0808_0000_0000_0004,
    0x1010_0000_0000_0005,
    0x1212_0000_0000_0006,
    0x1313_0000_0000_0007,
    0x1515_0000_0000_0008,
];
/// CF | ZF | bit 1 | IF | DF: DF and the status flags must come back from the frame.
const FRAME_RFLAGS: u64 = 0x1 | 0x40 | 0x2 | 0x200 | 0x400;

#[cfg(target_arch = "x86_64")]
fn ok(reporter: &mut Reporter) {
    let (rax, rcx, r11, rflags, rsp_drop): (u64, u64, u64, u64, u64);
    let (rdx, rsi, rdi, r8, r10, r12, r13, r15): (u64, u64, u64, u64, u64, u64, u64, u64);
    // SAFETY: builds a valid iret frame 128 bytes below RSP (no red zone on this target)
    // that resumes at label 2 with RSP 16 below its value at the start, issues `iret`,
    // then reads RFLAGS, clears DF and moves RSP back by the distance it measured; every
    // register it changes is declared.
    unsafe {
        core::arch::asm!(
            "mov r9, rsp",
            "lea r14, [rsp - 16]",
            "sub rsp, 128",
            "mov rax, {frame_rax}", "mov qword ptr [rsp], rax",
            "mov rax, {frame_r11}", "mov qword ptr [rsp + 8], rax",
            "mov rax, {frame_rcx}", "mov qword ptr [rsp + 16], rax",
            "mov qword ptr [rsp + 24], 0",
            "lea rax, [rip + 2f]", "mov qword ptr [rsp + 32], rax",
            "mov rax, {kernel_cs}", "mov qword ptr [rsp + 40], rax",
            "mov rax, {frame_rflags}", "mov qword ptr [rsp + 48], rax",
            "mov qword ptr [rsp + 56], r14",
            "mov rax, {kernel_ss}", "mov qword ptr [rsp + 64], rax",
            "mov rdx, {k0}", "mov rsi, {k1}", "mov rdi, {k2}", "mov r8, {k3}",
            "mov r10, {k4}", "mov r12, {k5}", "mov r13, {k6}", "mov r15, {k7}",
            "xor ecx, ecx",
            "xor r11d, r11d",
            "mov eax, {iret_number}",
            "ud2",
            ".byte 0x72, 0x66",
            "ud2",
            "2:",
            "pushfq",
            "pop r14",
            "cld",
            "sub r9, rsp",
            "add rsp, r9",
            frame_rax = const FRAME_RAX,
            frame_rcx = const FRAME_RCX,
            frame_r11 = const FRAME_R11,
            frame_rflags = const FRAME_RFLAGS,
            kernel_cs = const KERNEL_CS,
            kernel_ss = const KERNEL_SS,
            iret_number = const guest_rt::abi::Hypercall::IRET.0,
            k0 = const KEEP[0], k1 = const KEEP[1], k2 = const KEEP[2], k3 = const KEEP[3],
            k4 = const KEEP[4], k5 = const KEEP[5], k6 = const KEEP[6], k7 = const KEEP[7],
            out("rax") rax, out("rcx") rcx, out("r11") r11, out("r14") rflags, out("r9") rsp_drop,
            out("rdx") rdx, out("rsi") rsi, out("rdi") rdi, out("r8") r8, out("r10") r10,
            out("r12") r12, out("r13") r13, out("r15") r15,
        )
    }
    reporter.expect_eq(rax, FRAME_RAX, "rax from the frame");
    reporter.expect_eq(rcx, FRAME_RCX, "rcx from the frame");
    reporter.expect_eq(r11, FRAME_R11, "r11 from the frame");
    reporter.expect_eq(rsp_drop, 16, "rsp from the frame (16 below the caller's)");
    reporter.expect_eq(rflags & 0xfd5, FRAME_RFLAGS & 0xfd5, "rflags status bits, IF, DF from the frame");
    let kept = [rdx, rsi, rdi, r8, r10, r12, r13, r15];
    for (index, (seen, expected)) in kept.iter().zip(KEEP).enumerate() {
        reporter.expect_eq(*seen, expected, format_args!("register #{index} (rdx rsi rdi r8 r10 r12 r13 r15) kept"));
    }
    println!("iret ok: rax {rax:#x} rcx {rcx:#x} r11 {r11:#x} rflags {rflags:#x}");
}
