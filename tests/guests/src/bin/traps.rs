//! Conformance: exception delivery to guest-kernel handlers and the return with `iret`.
//!
//! Argument: the sub-case. Each provoking sub-case loads known values into every general
//! register (R11 holds the address the instruction uses), sets DF, executes one
//! instruction, and checks what the handler saw (vector, error code, fault address,
//! flags, the iret part: rip, cs, ss, rsp, rflags, rax/rcx/r11, and every other register
//! at the handler's first instruction) and what execution resumed with: the handler
//! moves RIP past the instruction and changes RAX and R12, everything else must be as it
//! was. `repeat` does that 200 times; `validation` checks the refusals of
//! `set_trap_table`, `stack_switch` and `callback_op`.
//!
//! `empty_valid` and `empty_unmapped`: `set_trap_table(entries, 0)` returns 0 and removes
//! every handler without reading `entries` (SPEC.md §11.1), whether `entries` is an
//! ordinary readable address or an unmapped one. Each shows one installed handler working,
//! empties the table, and provokes that exception again: the hypervisor must kill the
//! domain with "no handler" (the runner checks the line), so these sub-cases never print a
//! result unless something is wrong. `empty_noncanonical` and `empty_hypervisor`: with
//! `entries` non-canonical or in the hypervisor range, count 0 is `-EFAULT` by the
//! zero-length rule (SPEC.md §5.4, ABI 0.4) and the table is unchanged: the handler still
//! runs.
#![cfg_attr(target_os = "none", no_std, no_main)]

use core::sync::atomic::{AtomicU64, Ordering};

use conformance_guests::words;
use guest_rt::abi::layout::HYPERVISOR_START;
use guest_rt::abi::shared_info::cr2_offset;
use guest_rt::abi::trap::{
    page_fault, trap_flags, vector, ExceptionFrame, TrapTableEntry, KERNEL_CS, KERNEL_SS, USER_SS,
};
use guest_rt::abi::{Errno, GuestVirtualAddress, Hypercall, StartInfo};
use guest_rt::events;
use guest_rt::hypercall::HYPERVISOR;
use guest_rt::println;
use guest_rt::test::Reporter;
use guest_rt::trap::{self, Record, SavedRegisters, TrapAction, TrapContext};

guest_rt::entry!(traps);

/// Register order of [`After`]: rax rcx rdx rsi rdi r8 r9 r10 r11 r12 r13 r14 r15.
const NAMES: [&str; 13] = ["rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"];
const MAGIC: [u64; 13] = [
    0xa0a0_0000_0000_00a0,
    0xc1c1_0000_0000_00c1,
    0xd2d2_0000_0000_00d2,
    0x5353_0000_0000_0053,
    0xd4d4_0000_0000_00d4,
    0x0808_0000_0000_0008,
    0x0909_0000_0000_0009,
    0x1010_0000_0000_0010,
    0, // r11: the target address
    0x1212_0000_0000_0012,
    0x1313_0000_0000_0013,
    0x1414_0000_0000_0014,
    0x1515_0000_0000_0015,
];
/// What the handler puts in RAX and R12.
const NEW_RAX: u64 = 0x0a11_ce00_0000_0001;
const NEW_R12: u64 = 0x0b0b_0000_0000_0012;
const RFLAGS_DIRECTION: u64 = 1 << 10;
const RFLAGS_INTERRUPT: u64 = 1 << 9;

static FAULT_RIP: AtomicU64 = AtomicU64::new(0);
static RESUME_RIP: AtomicU64 = AtomicU64::new(0);
static STACK: AtomicU64 = AtomicU64::new(0);
static TARGET: AtomicU64 = AtomicU64::new(0);
static ZERO: AtomicU64 = AtomicU64::new(0);
static SEEN: Record<(ExceptionFrame, SavedRegisters)> = Record::new();

type After = [u64; 13];

/// Defines `fn $name() -> After` that runs `$instruction` between labels 2 (fault rip)
/// and 3 (resume rip) with every register loaded from MAGIC (R11 from TARGET) and DF set.
macro_rules! provoker {
    ($name:ident, $instruction:literal $(, $($extra:tt)+)?) => {
        #[cfg(target_arch = "x86_64")]
        fn $name() -> After {
            let (rax, rcx, rdx, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15): (
                u64, u64, u64, u64, u64, u64, u64, u64, u64, u64, u64, u64, u64,
            );
            // SAFETY: records the two label addresses and RSP, loads known values into
            // registers that are all declared as outputs, runs one instruction whose
            // exception the installed handler turns into a jump to label 3, and clears DF
            // again before the compiler sees the registers. Nothing is pushed: the stack
            // is as the compiler left it at both labels.
            unsafe {
                core::arch::asm!(
                    "lea rax, [rip + 2f]",
                    "mov qword ptr [rip + {fault}], rax",
                    "lea rax, [rip + 3f]",
                    "mov qword ptr [rip + {resume}], rax",
                    "mov qword ptr [rip + {stack}], rsp",
                    "mov r11, qword ptr [rip + {target}]",
                    "mov rax, {m0}", "mov rcx, {m1}", "mov rdx, {m2}", "mov rsi, {m3}", "mov rdi, {m4}",
                    "mov r8, {m5}", "mov r9, {m6}", "mov r10, {m7}", "mov r12, {m9}", "mov r13, {m10}",
                    "mov r14, {m11}", "mov r15, {m12}",
                    "std",
                    "2:",
                    $instruction,
                    "3:",
                    "cld",
                    "nop",
                    fault = sym FAULT_RIP,
                    resume = sym RESUME_RIP,
                    stack = sym STACK,
                    target = sym TARGET,
                    $($($extra)+,)?
                    m0 = const MAGIC[0], m1 = const MAGIC[1], m2 = const MAGIC[2], m3 = const MAGIC[3],
                    m4 = const MAGIC[4], m5 = const MAGIC[5], m6 = const MAGIC[6], m7 = const MAGIC[7],
                    m9 = const MAGIC[9], m10 = const MAGIC[10], m11 = const MAGIC[11], m12 = const MAGIC[12],
                    lateout("rax") rax, lateout("rcx") rcx, lateout("rdx") rdx, lateout("rsi") rsi,
                    lateout("rdi") rdi, lateout("r8") r8, lateout("r9") r9, lateout("r10") r10,
                    lateout("r11") r11, lateout("r12") r12, lateout("r13") r13, lateout("r14") r14,
                    lateout("r15") r15,
                )
            }
            [rax, rcx, rdx, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15]
        }
    };
}

provoker!(divide, "div qword ptr [rip + {zero}]", zero = sym ZERO);
provoker!(undefined, "ud2");
provoker!(breakpoint, "int3");
provoker!(halt, "hlt");
provoker!(clear_interrupts, "cli");
provoker!(read_target, "cmp qword ptr [r11], 0");
provoker!(write_target, "mov qword ptr [r11], 0");
provoker!(jump_target, "jmp r11");
provoker!(int_80, "int 0x80");
provoker!(int_81, "int 0x81");

/// Where the frame's RIP must point.
#[derive(Copy, Clone, PartialEq, Eq)]
enum RipIs {
    /// At the faulting instruction.
    Instruction,
    /// After it (traps: int3, int n).
    After,
    /// At the target (an instruction fetch fault).
    Target,
}

/// An address derived from the start-info page.
type Target = fn(&StartInfo) -> u64;

struct Provoke {
    name: &'static str,
    run: fn() -> After,
    vector: u8,
    error_code: u64,
    /// Target address (R11) from the start info; also the expected fault address for #PF.
    target: Target,
    page_fault: bool,
    rip: RipIs,
}

fn nothing(_: &StartInfo) -> u64 {
    0x7a7a_0000_0000_0011
}
fn unmapped(_: &StartInfo) -> u64 {
    0x1000
}
fn start_info_page(start: &StartInfo) -> u64 {
    start.start_info_address.0
}
fn noncanonical(_: &StartInfo) -> u64 {
    0x8000_0000_0000_0000
}

const PROVOKE: &[Provoke] = &[
    Provoke {
        name: "de",
        run: divide,
        vector: vector::DIVIDE_ERROR,
        error_code: 0,
        target: nothing,
        page_fault: false,
        rip: RipIs::Instruction,
    },
    Provoke {
        name: "ud",
        run: undefined,
        vector: vector::INVALID_OPCODE,
        error_code: 0,
        target: nothing,
        page_fault: false,
        rip: RipIs::Instruction,
    },
    Provoke {
        name: "bp",
        run: breakpoint,
        vector: vector::BREAKPOINT,
        error_code: 0,
        target: nothing,
        page_fault: false,
        rip: RipIs::After,
    },
    Provoke {
        name: "gp_hlt",
        run: halt,
        vector: vector::GENERAL_PROTECTION,
        error_code: 0,
        target: nothing,
        page_fault: false,
        rip: RipIs::Instruction,
    },
    Provoke {
        name: "gp_cli",
        run: clear_interrupts,
        vector: vector::GENERAL_PROTECTION,
        error_code: 0,
        target: nothing,
        page_fault: false,
        rip: RipIs::Instruction,
    },
    Provoke {
        name: "gp_noncanonical",
        run: read_target,
        vector: vector::GENERAL_PROTECTION,
        error_code: 0,
        target: noncanonical,
        page_fault: false,
        rip: RipIs::Instruction,
    },
    Provoke {
        name: "pf_read",
        run: read_target,
        vector: vector::PAGE_FAULT,
        error_code: 0,
        target: unmapped,
        page_fault: true,
        rip: RipIs::Instruction,
    },
    Provoke {
        name: "pf_write",
        run: write_target,
        vector: vector::PAGE_FAULT,
        error_code: page_fault::WRITE,
        target: unmapped,
        page_fault: true,
        rip: RipIs::Instruction,
    },
    Provoke {
        name: "pf_protect",
        run: write_target,
        vector: vector::PAGE_FAULT,
        error_code: page_fault::PRESENT | page_fault::WRITE,
        target: start_info_page,
        page_fault: true,
        rip: RipIs::Instruction,
    },
    Provoke {
        name: "pf_fetch",
        run: jump_target,
        vector: vector::PAGE_FAULT,
        error_code: page_fault::PRESENT | page_fault::FETCH,
        target: start_info_page,
        page_fault: true,
        rip: RipIs::Target,
    },
    Provoke {
        name: "int_handled",
        run: int_80,
        vector: 0x80,
        error_code: 0,
        target: nothing,
        page_fault: false,
        rip: RipIs::After,
    },
    Provoke {
        name: "int_unhandled",
        run: int_81,
        vector: vector::GENERAL_PROTECTION,
        error_code: 0x81 * 8 + 2,
        target: nothing,
        page_fault: false,
        rip: RipIs::Instruction,
    },
];

/// The `empty_*` sub-cases: where `entries` points, the exception provoked before and
/// after (a different one each, so several installed handlers are seen to go or stay), and
/// whether the table is kept (`-EFAULT`) rather than emptied: (sub-case, `entries`, the
/// [`PROVOKE`] case, kept).
const EMPTY_TABLE: &[(&str, Target, &str, bool)] = &[
    ("empty_noncanonical", noncanonical, "ud", true),
    ("empty_hypervisor", hypervisor_range, "pf_read", true),
    ("empty_valid", start_info_page, "de", false),
    ("empty_unmapped", unmapped, "ud", false),
];

fn hypervisor_range(_: &StartInfo) -> u64 {
    HYPERVISOR_START
}

fn record_and_skip(context: &mut TrapContext) -> TrapAction {
    SEEN.put((context.frame, context.registers));
    context.set_rip(RESUME_RIP.load(Ordering::Relaxed));
    context.set_rax(NEW_RAX);
    context.registers.r12 = NEW_R12;
    TrapAction::Resume
}

fn install(reporter: &mut Reporter) -> bool {
    if reporter.expect_ok(trap::install(), "trap::install").is_none() {
        return false;
    }
    for vector in [
        vector::DIVIDE_ERROR,
        vector::BREAKPOINT,
        vector::INVALID_OPCODE,
        vector::GENERAL_PROTECTION,
        vector::PAGE_FAULT,
        0x80,
    ] {
        if reporter
            .expect_ok(trap::set_handler(vector, record_and_skip), format_args!("set_handler({vector:#x})"))
            .is_none()
        {
            return false;
        }
    }
    true
}

fn check(reporter: &mut Reporter, start: &StartInfo, case: &Provoke, round: u32) {
    let target = (case.target)(start);
    TARGET.store(target, Ordering::Relaxed);
    SEEN.take();
    let after = (case.run)();
    let name = case.name;
    let Some((frame, registers)) = SEEN.take() else {
        reporter.fail(format_args!("{name} #{round}: the handler did not run"));
        return;
    };
    let fault_rip = FAULT_RIP.load(Ordering::Relaxed);
    let resume_rip = RESUME_RIP.load(Ordering::Relaxed);
    let expected_rip = match case.rip {
        RipIs::Instruction => fault_rip,
        RipIs::After => resume_rip,
        RipIs::Target => target,
    };
    let expected_address = if case.page_fault { target } else { 0 };
    let ok = reporter.expect_eq(frame.vector, u64::from(case.vector), format_args!("{name}: vector"))
        & reporter.expect_eq(frame.error_code, case.error_code, format_args!("{name}: error code"))
        & reporter.expect_eq(frame.fault_address.0, expected_address, format_args!("{name}: fault address"))
        & reporter.expect_eq(frame.flags, 0, format_args!("{name}: flags"))
        & reporter.expect_eq(frame.iret.rip, expected_rip, format_args!("{name}: rip"))
        & reporter.expect_eq(frame.iret.cs, KERNEL_CS, format_args!("{name}: cs"))
        & reporter.expect_eq(frame.iret.ss, KERNEL_SS, format_args!("{name}: ss"))
        & reporter.expect_eq(frame.iret.rsp, STACK.load(Ordering::Relaxed), format_args!("{name}: rsp"))
        & reporter.expect_eq(frame.iret.flags, 0, format_args!("{name}: iret flags"))
        & reporter.check(frame.iret.rflags & RFLAGS_DIRECTION != 0, format_args!("{name}: rflags {:#x} lost DF", frame.iret.rflags))
        // IF in a frame is the virtual interrupt flag: the inverse of the upcall mask
        // at the interrupted instruction, which iret has restored by now.
        & reporter.expect_eq(
            frame.iret.rflags & RFLAGS_INTERRUPT != 0,
            !events::irqs_disabled(),
            format_args!("{name}: IF in rflags {:#x} against the upcall mask", frame.iret.rflags),
        )
        & reporter.expect_eq(frame.iret.rax, MAGIC[0], format_args!("{name}: frame rax"))
        & reporter.expect_eq(frame.iret.rcx, MAGIC[1], format_args!("{name}: frame rcx"))
        & reporter.expect_eq(frame.iret.r11, target, format_args!("{name}: frame r11"));
    let at_handler = [
        ("rdx", registers.rdx, MAGIC[2]),
        ("rsi", registers.rsi, MAGIC[3]),
        ("rdi", registers.rdi, MAGIC[4]),
        ("r8", registers.r8, MAGIC[5]),
        ("r9", registers.r9, MAGIC[6]),
        ("r10", registers.r10, MAGIC[7]),
        ("r12", registers.r12, MAGIC[9]),
        ("r13", registers.r13, MAGIC[10]),
        ("r14", registers.r14, MAGIC[11]),
        ("r15", registers.r15, MAGIC[12]),
    ];
    let mut registers_ok = true;
    for (register, seen, expected) in at_handler {
        registers_ok &= reporter.expect_eq(seen, expected, format_args!("{name}: {register} at the handler"));
    }
    for (index, (&seen, register)) in after.iter().zip(NAMES).enumerate() {
        let expected = match index {
            0 => NEW_RAX,
            8 => target,
            9 => NEW_R12,
            _ => MAGIC[index],
        };
        registers_ok &= reporter.expect_eq(seen, expected, format_args!("{name}: {register} after iret"));
    }
    if case.page_fault {
        let cr2_address = start.shared_info_address.0 + cr2_offset(0) as u64;
        // SAFETY: the shared-info page is mapped readable for the whole life of the
        // domain; volatile because the hypervisor writes it.
        let cr2 = unsafe { core::ptr::read_volatile(cr2_address as *const u64) };
        registers_ok &= reporter.expect_eq(cr2, target, format_args!("{name}: shared_info vcpu_info[0].cr2"));
    }
    if round == 0 && ok && registers_ok {
        println!(
            "{name}: vector {:#x} error {:#x} address {:#x} rip {:#x} rflags {:#x}: ok",
            frame.vector, frame.error_code, frame.fault_address, frame.iret.rip, frame.iret.rflags
        );
    }
}

fn validation(reporter: &mut Reporter) {
    let entry = trap::entry_address();
    let good = TrapTableEntry {
        vector: vector::INVALID_OPCODE,
        flags: 0,
        reserved: [0; 6],
        handler: GuestVirtualAddress(entry),
    };
    let bad_entries: [(&str, TrapTableEntry); 6] = [
        ("reserved byte", TrapTableEntry { reserved: [0, 0, 1, 0, 0, 0], ..good }),
        ("unknown flag", TrapTableEntry { flags: 2, ..good }),
        (
            "USER_MAY_RAISE on #GP",
            TrapTableEntry { vector: vector::GENERAL_PROTECTION, flags: trap_flags::USER_MAY_RAISE, ..good },
        ),
        (
            "USER_MAY_RAISE on #PF",
            TrapTableEntry { vector: vector::PAGE_FAULT, flags: trap_flags::USER_MAY_RAISE, ..good },
        ),
        ("non-canonical handler", TrapTableEntry { handler: GuestVirtualAddress(0x0000_8000_0000_0000), ..good }),
        (
            "handler in the hypervisor",
            TrapTableEntry { handler: GuestVirtualAddress(HYPERVISOR_START + 0x1000), ..good },
        ),
    ];
    for (what, bad) in bad_entries {
        // All-or-nothing: the first entry would remove #UD's handler, the second is bad.
        let table = [TrapTableEntry { handler: GuestVirtualAddress(0), ..good }, bad];
        // SAFETY: the only handler named is guest-rt's entry (or refused garbage).
        let result = unsafe { HYPERVISOR.set_trap_table(&table) };
        reporter.expect_errno(result, Errno::EINVAL, format_args!("set_trap_table with {what}"));
    }
    for (what, flags, vector) in [
        ("int3", trap_flags::USER_MAY_RAISE, 3u8),
        ("into", trap_flags::USER_MAY_RAISE, 4),
        ("0x20", trap_flags::USER_MAY_RAISE, 0x20),
        ("0xff", trap_flags::USER_MAY_RAISE, 0xff),
    ] {
        let table = [TrapTableEntry { vector, flags, reserved: [0; 6], handler: GuestVirtualAddress(entry) }];
        // SAFETY: guest-rt's entry.
        let result = unsafe { HYPERVISOR.set_trap_table(&table) };
        reporter.expect_eq(result, Ok(0), format_args!("set_trap_table granting {what}"));
    }
    let too_many = [good; 257];
    // SAFETY: guest-rt's entry.
    reporter.expect_errno(
        unsafe { HYPERVISOR.set_trap_table(&too_many) },
        Errno::EINVAL,
        "set_trap_table with 257 entries",
    );
    // SAFETY: the pointer is unmapped; the hypervisor refuses it.
    let unreadable = unsafe { guest_rt::raw::hypercall(0, [0x1000, 1, 0, 0, 0, 0]) };
    reporter.expect_errno(Errno::from_return(unreadable), Errno::EFAULT, "set_trap_table from an unmapped table");
    // SAFETY: a table that straddles into the hypervisor range is refused.
    let hostile = unsafe { guest_rt::raw::hypercall(0, [HYPERVISOR_START, 1, 0, 0, 0, 0]) };
    reporter.expect_errno(Errno::from_return(hostile), Errno::EFAULT, "set_trap_table from the hypervisor range");

    // The refused tables changed nothing: #UD still reaches the handler.
    let undefined_case = &PROVOKE[1];
    SEEN.take();
    let _ = (undefined_case.run)();
    reporter.check(SEEN.take().is_some_and(|(frame, _)| frame.vector == 6), "#UD handler survives refused tables");

    let stack = conformance_guests::stack_pointer() - 4096;
    for (what, ss, rsp) in [
        ("ss USER_SS", USER_SS, stack),
        ("ss 0", 0, stack),
        ("non-canonical rsp", KERNEL_SS, 0x0000_8000_0000_0000),
        ("rsp in the hypervisor", KERNEL_SS, HYPERVISOR_START + 0x10_0000),
    ] {
        // SAFETY: refused; nothing is registered.
        reporter.expect_errno(
            unsafe { HYPERVISOR.stack_switch(ss, rsp) },
            Errno::EINVAL,
            format_args!("stack_switch with {what}"),
        );
    }
    // SAFETY: no events from guest-user mode happen in this guest.
    reporter.expect_eq(unsafe { HYPERVISOR.stack_switch(KERNEL_SS, stack) }, Ok(0), "stack_switch(KERNEL_SS, stack)");
    for (what, command, kind, address) in [
        ("type 1", 0, 1, entry),
        ("non-canonical entry", 0, 0, 0x0000_8000_0000_0000),
        ("entry in the hypervisor", 0, 0, HYPERVISOR_START),
    ] {
        // SAFETY: refused.
        reporter.expect_errno(
            unsafe { HYPERVISOR.callback_op(command, kind, address) },
            Errno::EINVAL,
            format_args!("callback_op with {what}"),
        );
    }
    // SAFETY: guest-rt's entry; no guest-user code runs here anyway.
    reporter.expect_eq(unsafe { HYPERVISOR.callback_op(0, 0, entry) }, Ok(0), "callback_op(REGISTER, SYSCALL, entry)");
    // SAFETY: unregistering.
    reporter.expect_eq(unsafe { HYPERVISOR.callback_op(0, 0, 0) }, Ok(0), "callback_op unregister");
}

fn empty_table(reporter: &mut Reporter, start: &StartInfo, entries: u64, probe: &Provoke, kept: bool) {
    check(reporter, start, probe, 0);
    if reporter.failures() > 0 {
        return;
    }
    // SAFETY: with count 0 the hypervisor reads and writes no guest memory (SPEC.md §11.1).
    let result = unsafe { guest_rt::raw::hypercall(Hypercall::SET_TRAP_TABLE.0, [entries, 0, 0, 0, 0, 0]) };
    if kept {
        let what = format_args!("set_trap_table({entries:#x}, 0)");
        if reporter.expect_eq(Errno::from_return(result), Err(Errno::EFAULT), what) {
            println!("traps: set_trap_table({entries:#x}, 0) = -EFAULT; the table is unchanged");
            check(reporter, start, probe, 1);
        }
        return;
    }
    if !reporter.expect_eq(Errno::from_return(result), Ok(0), format_args!("set_trap_table({entries:#x}, 0)")) {
        return;
    }
    println!("traps: set_trap_table({entries:#x}, 0) = 0; {} again must kill the domain", probe.name);
    TARGET.store((probe.target)(start), Ordering::Relaxed);
    SEEN.take();
    let _ = (probe.run)();
    let how = if SEEN.take().is_some() { "its handler still ran" } else { "execution went on" };
    reporter.fail(format_args!("{} after set_trap_table({entries:#x}, 0): {how}", probe.name));
}

fn traps(start: &'static StartInfo) -> u32 {
    let mut reporter = Reporter::new();
    let wanted = words(start).next().unwrap_or("");
    if !install(&mut reporter) {
        reporter.finish();
    }
    match wanted {
        "validation" => validation(&mut reporter),
        "repeat" => {
            for round in 0..200 {
                if round % 2 == 0 {
                    events::irq_disable();
                } else {
                    events::irq_enable();
                }
                for case in PROVOKE.iter().filter(|case| matches!(case.name, "ud" | "pf_read" | "bp")) {
                    check(&mut reporter, start, case, round);
                }
                if reporter.failures() > 0 {
                    break;
                }
            }
            println!("repeat: 600 exceptions delivered and returned from");
        }
        _ if wanted.starts_with("empty_") => {
            let found = EMPTY_TABLE.iter().find(|(name, _, _, _)| *name == wanted);
            match found.and_then(|(_, entries, probe, kept)| {
                Some((entries(start), PROVOKE.iter().find(|case| case.name == *probe)?, *kept))
            }) {
                Some((entries, probe, kept)) => empty_table(&mut reporter, start, entries, probe, kept),
                None => reporter.error(format_args!("unknown sub-case '{wanted}'")),
            }
        }
        _ => match PROVOKE.iter().find(|case| case.name == wanted) {
            Some(case) => {
                // A domain starts with events masked (IF = 0 in the frame); the second
                // round runs with them enabled (IF = 1).
                reporter.check(events::irqs_disabled(), "events are masked at start");
                check(&mut reporter, start, case, 0);
                events::irq_enable();
                check(&mut reporter, start, case, 1);
            }
            None => reporter.error(format_args!("unknown sub-case '{wanted}'")),
        },
    }
    reporter.finish()
}
