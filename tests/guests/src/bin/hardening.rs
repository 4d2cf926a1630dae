//! Conformance: the hardening findings and blind spots of issue 15. The argument picks one
//! sub-case; each is one case of `tests/src/cases_hardening.rs`.
//!
//! * `umip` — `sgdt`, `sidt`, `sldt`, `smsw` and `str` each raise #GP(0) at the
//!   instruction, delivered to the guest's handler (CR4.UMIP, SPEC.md §4.1); `umip_<insn>`
//!   runs one with no handler, which must kill the domain with #GP.
//! * `controls` — console output with C0, DEL and C1 controls (raw and in UTF-8), valid
//!   and invalid UTF-8, and a character split across two writes; the runner checks the
//!   escaped line (SPEC.md §6.2).
//! * `debug_step` — TF set, then `mov ss` immediately before a hypercall (both `syscall`
//!   and the trapping form): the hypercall returns its result, and the #DB handler sees
//!   exactly two single steps, at the `mov ss` and after the instruction that follows the
//!   hypercall — none inside the hypervisor (the XSA-260 shape), and the `iret` that
//!   resumes with TF set makes progress; `debug_unhandled` steps with no handler, which
//!   must kill the domain with #DB.
//! * `hypercall_stack` — hypercalls (both forms) with RSP non-canonical and inside the
//!   hypervisor range return their result: the hypervisor never uses the guest's RSP.
//! * `iret_rf`, `iret_vif`, `iret_vip`, `iret_rpl0`, `iret_hypervisor_rsp` — an `iret`
//!   frame with RF, VIF or VIP set, a ring-0 RPL in `cs`, or RSP in the hypervisor range
//!   kills the domain naming the field (SPEC.md §11.5).
//! * `int_vectors` — `int n` for all 256 n from guest-kernel mode with only a #GP handler:
//!   #GP(n·8+2) at the instruction for every n but 13, and vector 13 itself (a software
//!   interrupt with error code 0, after the instruction) for n = 13 (SPEC.md §4.4).
//! * `int_vectors_user` — `int n` for all 256 n from guest-user mode, every vector with a
//!   handler: `grant_user` is refused (-EINVAL) for 0–2 and 5–31; of the rest, vectors 3, 4
//!   and the odd ones from 33 are granted. A granted n arrives as vector n (error code 0,
//!   FROM_USER, after the instruction); every other n, 13 included, as #GP(n·8+2) at the
//!   instruction — never as a hypervisor vector or a ring-0 event (SPEC.md §4.4, §11.4.1).
//! * `decrease_self_array` — a `DECREASE_RESERVATION` whose gfn array lies on the first
//!   page it releases: every extent is read before any frame is freed (SPEC.md §12.2), so
//!   both pages are released (result 2, each then unpopulated: -EINVAL again).
//! * `timer_max` — deadlines u64::MAX, u64::MAX − 1 and 2^63 are accepted and never fire
//!   (no overflow into "already passed"); a near deadline set afterwards still fires.
//! * `forged_entry entry=<LSTAR>` — a jump straight to the hypervisor's `syscall` entry
//!   with RAX = `version`, RCX = a return address and R11 = RFLAGS with IOPL 3, NT, RF,
//!   VIF and VIP set: the hypervisor treats it as that `syscall` (SPEC.md §11.4.3), so the
//!   result arrives and none of those flags does; `forged_rcx_noncanonical` and
//!   `forged_rcx_hypervisor` forge RCX = 0x800000000000 (killed: XSA-7 guard) and
//!   RCX in the hypervisor range (killed: #PF fetching there).
//! * `multicall_rewrite` — an `mmu_update` entry of a multicall whose `done` pointer
//!   points into the next entry: the next entry runs as rewritten (each entry is read
//!   just before it runs, SPEC.md §13), and a rewrite into `iret` (23) or `multicall` (13)
//!   is refused like a written one (XSA-213: the check is on what runs, not on what was
//!   there first).
//! * `batch_self_unmap` — an `mmu_update` whose first entry unmaps the page holding its
//!   own entry array (the next entry is unreadable: `-EFAULT`, done 1), and a multicall
//!   whose first entry unmaps the page holding the multicall array (its result is
//!   unwritable: `-EFAULT`, the unmapping stands).
//! * `upcall_<stack>` — an event is pending when a hypercall returns with upcalls
//!   unmasked and RSP on a bad stack: `readonly` (the start-info page), `hypervisor`
//!   (inside the hypervisor range), `below_hypervisor` (RSP just above
//!   HYPERVISOR_START: the frame would start below it, non-canonical),
//!   `above_hypervisor` (RSP just above HYPERVISOR_END: the frame would reach into the
//!   range), `lower_half_top` (RSP just past the lower half: the frame would end in the
//!   non-canonical hole). Each must kill the domain with a delivery failure (§11.4.8).
//! * `frame_reuse` (two domains, `mem=4M,maxmem=8M`) — 12 rounds each of: a 2 MiB extent
//!   and 64 pages from `INCREASE_RESERVATION` read as zero throughout, are filled with
//!   the domain's pattern, given back, then a yield. Whole 2 MiB blocks are handed out
//!   first-fit, so the two domains keep getting blocks the other just dirtied and freed.
//! * `quota_odd` (`mem=4M,maxmem=7M`: a quota that is not a multiple of 2 MiB) — one
//!   2 MiB extent fits, a second is `-ENOMEM`; the 256 pages left fit exactly (a batch of
//!   300 does 256), the next is `-ENOMEM`; everything given back returns the count.
//! * `edge_<where>` — the trapping hypercall `ud2 "rf"` (or a lone `ud2`) as the last
//!   bytes of a page mapped at the top of the lower half (`edge_lower_trapping`: its
//!   return address 0x800000000000 is non-canonical, XSA-7) or of the address space
//!   (`edge_top_trapping`: there is no return address; `edge_top_ud2`: the four bytes
//!   would wrap, so it is an ordinary #UD). Each must kill the domain with its reason.
//! * `bases` — FS and GS_KERNEL bases set per domain survive 50 rounds of yields to a
//!   domain that set its own (run two of them).
#![cfg_attr(target_os = "none", no_std, no_main)]

use core::sync::atomic::{AtomicU64, Ordering};

use conformance_guests::{argument, words, Accel};
use guest_rt::abi::layout::HYPERVISOR_START;
use guest_rt::abi::trap::{vector, IretFrame, KERNEL_CS, KERNEL_SS};
use guest_rt::abi::{Hypercall, StartInfo, ABI_VERSION};
use guest_rt::hypercall::HYPERVISOR;
use guest_rt::println;
use guest_rt::test::Reporter;
use guest_rt::trap::{self, TrapAction, TrapContext};

guest_rt::entry!(hardening);

fn hardening(start: &'static StartInfo) -> u32 {
    let mut reporter = Reporter::new();
    let wanted = words(start).next().unwrap_or("");
    if let Some(insn) = wanted.strip_prefix("umip_") {
        match UMIP.iter().find(|(name, _)| *name == insn) {
            Some((name, run)) => {
                println!("{name} with no #GP handler");
                // SAFETY: see `umip_instruction`.
                unsafe { run() };
                reporter.fail(format_args!("{name} did not fault"));
            }
            None => reporter.error(format_args!("unknown instruction '{insn}'")),
        }
        reporter.finish();
    }
    if let Some(field) = wanted.strip_prefix("iret_") {
        bad_iret(&mut reporter, field);
        reporter.finish();
    }
    match wanted {
        "umip" => umip(&mut reporter),
        "controls" => controls(&mut reporter),
        "debug_step" => debug_step(&mut reporter),
        "debug_unhandled" => debug_unhandled(&mut reporter),
        "hypercall_stack" => hypercall_stack(&mut reporter),
        "int_vectors" => int_vectors(&mut reporter),
        "int_vectors_user" => int_vectors_user(&mut reporter),
        "timer_max" => timer_max(&mut reporter),
        "bases" => bases(start, &mut reporter),
        sub if sub.starts_with("edge_") => edge(start, &sub[5..], &mut reporter),
        "frame_reuse" => frame_reuse(start, &mut reporter),
        "decrease_self_array" => decrease_self_array(&mut reporter),
        "quota_odd" => quota_odd(&mut reporter),
        upcall if upcall.starts_with("upcall_") => upcall_on_bad_stack(start, &upcall[7..], &mut reporter),
        "multicall_rewrite" => multicall_rewrite(&mut reporter),
        "batch_self_unmap" => batch_self_unmap(&mut reporter),
        "forged_entry" | "forged_rcx_noncanonical" | "forged_rcx_hypervisor" => forged(start, wanted, &mut reporter),
        _ => reporter.error(format_args!("unknown sub-case '{wanted}'")),
    }
    reporter.finish()
}

// ---- UMIP ----------------------------------------------------------------------------

/// Start and end of the instruction a `umip_instruction` function runs.
static UMIP_AT: AtomicU64 = AtomicU64::new(0);
static UMIP_AFTER: AtomicU64 = AtomicU64::new(0);

/// Defines `unsafe fn $name()` that runs `$instruction` (storing to a stack buffer or a
/// register) between labels recorded in `UMIP_AT` and `UMIP_AFTER`.
macro_rules! umip_instruction {
    ($name:ident, $instruction:literal) => {
        /// # Safety
        ///
        /// Only stores to its own stack buffer or a scratch register, if the CPU lets it run.
        #[cfg(target_arch = "x86_64")]
        unsafe fn $name() {
            let mut buffer = [0u8; 16];
            // SAFETY: records two label addresses, then runs one instruction that writes at
            // most 10 bytes to `buffer` (or RAX); the #GP handler, if any, resumes at label 3.
            unsafe {
                core::arch::asm!(
                    "lea rax, [rip + 2f]",
                    "mov qword ptr [rip + {at}], rax",
                    "lea rax, [rip + 3f]",
                    "mov qword ptr [rip + {after}], rax",
                    "2:",
                    $instruction,
                    "3:",
                    at = sym UMIP_AT,
                    after = sym UMIP_AFTER,
                    buffer = in(reg) buffer.as_mut_ptr(),
                    out("rax") _,
                    options(nostack),
                )
            }
            core::hint::black_box(buffer);
        }
    };
}

umip_instruction!(store_gdt, "sgdt [{buffer}]");
umip_instruction!(store_idt, "sidt [{buffer}]");
umip_instruction!(store_ldt, "sldt word ptr [{buffer}]");
umip_instruction!(store_msw, "smsw word ptr [{buffer}]");
umip_instruction!(store_task, "str word ptr [{buffer}]");

type Instruction = unsafe fn();
const UMIP: &[(&str, Instruction)] =
    &[("sgdt", store_gdt), ("sidt", store_idt), ("sldt", store_ldt), ("smsw", store_msw), ("str", store_task)];

/// (vector, error code, rip) of the last #GP.
static GP_SEEN: [AtomicU64; 3] = [AtomicU64::new(u64::MAX), AtomicU64::new(u64::MAX), AtomicU64::new(u64::MAX)];

fn record_gp(context: &mut TrapContext) -> TrapAction {
    GP_SEEN[0].store(context.vector(), Ordering::Relaxed);
    GP_SEEN[1].store(context.error_code(), Ordering::Relaxed);
    GP_SEEN[2].store(context.rip(), Ordering::Relaxed);
    context.set_rip(RESUME.load(Ordering::Relaxed));
    TrapAction::Resume
}

/// Where the #GP handler resumes.
static RESUME: AtomicU64 = AtomicU64::new(0);

fn take_gp() -> (u64, u64, u64) {
    let seen =
        (GP_SEEN[0].load(Ordering::Relaxed), GP_SEEN[1].load(Ordering::Relaxed), GP_SEEN[2].load(Ordering::Relaxed));
    for slot in &GP_SEEN {
        slot.store(u64::MAX, Ordering::Relaxed);
    }
    seen
}

fn umip(reporter: &mut Reporter) {
    if reporter.expect_ok(trap::set_handler(vector::GENERAL_PROTECTION, record_gp_umip), "#GP handler").is_none() {
        return;
    }
    for (name, run) in UMIP {
        // The handler resumes after the instruction: the label the function records is
        // not known before it runs, so the handler reads it at fault time.
        RESUME.store(0, Ordering::Relaxed);
        RESUME_FROM_AFTER.store(true, Ordering::Relaxed);
        // SAFETY: see `umip_instruction`; the handler resumes at its label 3.
        unsafe { run() };
        let (vector, error, rip) = take_gp();
        let at = UMIP_AT.load(Ordering::Relaxed);
        if reporter.expect_eq((vector, error, rip), (u64::from(vector::GENERAL_PROTECTION), 0, at), name) {
            println!("{name}: #GP(0) at {at:#x}");
        }
    }
    RESUME_FROM_AFTER.store(false, Ordering::Relaxed);
}

/// While set, the #GP handler resumes at `UMIP_AFTER` (read when the fault happens).
static RESUME_FROM_AFTER: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

fn record_gp_umip(context: &mut TrapContext) -> TrapAction {
    if RESUME_FROM_AFTER.load(Ordering::Relaxed) {
        RESUME.store(UMIP_AFTER.load(Ordering::Relaxed), Ordering::Relaxed);
    }
    record_gp(context)
}

// ---- console controls ------------------------------------------------------------------

/// The bytes `controls` writes in its first write, then [`CONTROLS_TAIL`] in a second.
/// The runner expects exactly `CONTROLS_EXPECTED` of `tests/src/cases_hardening.rs`.
const CONTROLS_HEAD: &[u8] = b"controls: esc\x1b[31m bel\x07 del\x7f csi\x9b31m c1\x80\x9f utf8-csi\xc2\x9b1m \
nel\xc2\x85 ok\xc2\xa0\xc3\xa9\xe2\x82\xac bad\xc0\xaf\xed\xa0\x80 split\xe2\x82";
const CONTROLS_TAIL: &[u8] = b"\xac end\n";

fn controls(reporter: &mut Reporter) {
    for part in [CONTROLS_HEAD, CONTROLS_TAIL] {
        let written = HYPERVISOR.console_write_once(part);
        reporter.expect_eq(written, Ok(part.len()), "console_io(WRITE) of control bytes");
    }
}

// ---- #DB ---------------------------------------------------------------------------------

const TRAP_FLAG: u64 = 1 << 8;
/// RIPs of the single steps the #DB handler saw.
static STEPS: [AtomicU64; 16] = [const { AtomicU64::new(0) }; 16];
static STEP_COUNT: AtomicU64 = AtomicU64::new(0);
/// The RIP at which the handler clears TF.
static STEP_END: AtomicU64 = AtomicU64::new(0);

fn record_step(context: &mut TrapContext) -> TrapAction {
    let count = STEP_COUNT.fetch_add(1, Ordering::Relaxed);
    if let Some(slot) = STEPS.get(count as usize) {
        slot.store(context.rip(), Ordering::Relaxed);
    }
    if context.rip() == STEP_END.load(Ordering::Relaxed) || count >= STEPS.len() as u64 {
        context.frame.iret.rflags &= !TRAP_FLAG;
    }
    TrapAction::Resume
}

/// Label addresses of one stepped hypercall: (the `mov ss`, the instruction after the
/// hypercall, the one after that, where the handler clears TF).
static STEP_LABELS: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];

/// Defines `fn $name() -> u64` that sets TF, reloads SS with `mov ss` right before
/// `$hypercall` (a `version(0)` call) and returns its result.
macro_rules! stepped_hypercall {
    ($name:ident, $($hypercall:literal),+) => {
        #[cfg(target_arch = "x86_64")]
        fn $name() -> u64 {
            let result: u64;
            // SAFETY: sets TF (the #DB handler clears it at label 5), reloads SS with the
            // value it already holds, makes one `version` hypercall and clears TF again;
            // every register written is declared. pushfq/popfq keep the stack balanced.
            unsafe {
                core::arch::asm!(
                    "lea rax, [rip + 3f]",
                    "mov qword ptr [rip + {labels}], rax",
                    "lea rax, [rip + 4f]",
                    "mov qword ptr [rip + {labels} + 8], rax",
                    "lea rax, [rip + 5f]",
                    "mov qword ptr [rip + {labels} + 16], rax",
                    "mov qword ptr [rip + {end}], rax",
                    "mov eax, ss",
                    "mov r8d, eax",
                    "mov eax, {version}",
                    "xor edi, edi",
                    "pushfq",
                    "or qword ptr [rsp], {tf}",
                    "popfq",
                    "nop",
                    "3:",
                    "mov ss, r8d",
                    $($hypercall,)+
                    "4:",
                    "nop",
                    "5:",
                    "pushfq",
                    "and qword ptr [rsp], {not_tf}",
                    "popfq",
                    labels = sym STEP_LABELS,
                    end = sym STEP_END,
                    version = const Hypercall::VERSION.0,
                    tf = const TRAP_FLAG,
                    not_tf = const !TRAP_FLAG as i32,
                    out("rax") result, out("rdi") _, out("r8") _, out("rcx") _, out("r11") _,
                )
            }
            result
        }
    };
}

stepped_hypercall!(stepped_syscall, "syscall");
stepped_hypercall!(stepped_trapping, "ud2", ".byte 0x72, 0x66");

fn debug_step(reporter: &mut Reporter) {
    if reporter.expect_ok(trap::set_handler(vector::DEBUG, record_step), "#DB handler").is_none() {
        return;
    }
    for (form, run) in [("syscall", stepped_syscall as fn() -> u64), ("ud2 rf", stepped_trapping)] {
        STEP_COUNT.store(0, Ordering::Relaxed);
        let result = run();
        let count = STEP_COUNT.load(Ordering::Relaxed);
        let labels: [u64; 3] = core::array::from_fn(|index| STEP_LABELS[index].load(Ordering::Relaxed));
        let seen: [u64; 16] = core::array::from_fn(|index| STEPS[index].load(Ordering::Relaxed));
        let seen = &seen[..(count as usize).min(seen.len())];
        println!("{form}: result {result:#x}, {count} single steps at {seen:x?} (labels {labels:x?})");
        reporter.expect_eq(
            result,
            u64::from(ABI_VERSION.packed()),
            format_args!("version through {form} with TF and mov ss"),
        );
        // The step after the first `nop` lands at the `mov ss`; the hypercall is one
        // instruction that is not itself stepped (SPEC.md §5.1), so the next step lands
        // after the instruction that follows it. Nothing lands in between and nothing in
        // the hypervisor.
        reporter.expect_eq(seen, &[labels[0], labels[2]][..], format_args!("{form}: single steps"));
    }
}

fn debug_unhandled(reporter: &mut Reporter) {
    println!("single step with no #DB handler");
    // SAFETY: sets TF; the #DB after the `nop` must kill the domain. Were it to return,
    // TF is cleared again and the stack balanced.
    unsafe {
        core::arch::asm!(
            "pushfq",
            "or qword ptr [rsp], {tf}",
            "popfq",
            "nop",
            "nop",
            "pushfq",
            "and qword ptr [rsp], {not_tf}",
            "popfq",
            tf = const TRAP_FLAG,
            not_tf = const !TRAP_FLAG as i32,
        )
    }
    reporter.fail("a single step with no handler did not kill the domain");
}

// ---- hypercalls on a bad stack ------------------------------------------------------------

/// Defines `fn $name(rsp) -> u64`: `version(0)` through `$hypercall` with RSP = `rsp`.
macro_rules! hypercall_on_stack {
    ($name:ident, $($hypercall:literal),+) => {
        #[cfg(target_arch = "x86_64")]
        fn $name(rsp: u64) -> u64 {
            let result: u64;
            // SAFETY: RSP holds `rsp` only across the hypercall instruction, which does not
            // use the stack; R12 keeps the real RSP and restores it at once. Nothing can
            // be delivered on the bad stack: no handler is installed and events are masked.
            unsafe {
                core::arch::asm!(
                    "mov r12, rsp",
                    "mov rsp, {rsp}",
                    $($hypercall,)+
                    "mov rsp, r12",
                    rsp = in(reg) rsp,
                    inout("rax") Hypercall::VERSION.0 => result,
                    in("rdi") 0u64,
                    out("r12") _, out("rcx") _, out("r11") _,
                )
            }
            result
        }
    };
}

hypercall_on_stack!(syscall_on_stack, "syscall");
hypercall_on_stack!(trapping_on_stack, "ud2", ".byte 0x72, 0x66");

fn hypercall_stack(reporter: &mut Reporter) {
    let stacks = [
        ("non-canonical", 0x8000_0000_0000_0000),
        ("non-canonical high", 0x0000_8000_0000_1000),
        ("hypervisor range", HYPERVISOR_START + 0x10_0000),
        ("hypervisor top", !15),
        ("zero", 0),
    ];
    for (what, rsp) in stacks {
        for (form, call) in [("syscall", syscall_on_stack as fn(u64) -> u64), ("ud2 rf", trapping_on_stack)] {
            let result = call(rsp);
            reporter.expect_eq(
                result,
                u64::from(ABI_VERSION.packed()),
                format_args!("{form} with RSP {rsp:#x} ({what})"),
            );
        }
    }
}

// ---- iret frames ----------------------------------------------------------------------------

fn bad_iret(reporter: &mut Reporter, field: &str) {
    let mut frame = IretFrame {
        rax: 0,
        r11: 0,
        rcx: 0,
        flags: 0,
        rip: hardening as *const () as u64,
        cs: KERNEL_CS,
        rflags: 0x202,
        rsp: conformance_guests::stack_pointer() & !15,
        ss: KERNEL_SS,
    };
    match field {
        "rf" => frame.rflags |= 1 << 16,
        "vif" => frame.rflags |= 1 << 19,
        "vip" => frame.rflags |= 1 << 20,
        "rpl0" => frame.cs = KERNEL_CS & !3,
        "hypervisor_rsp" => frame.rsp = HYPERVISOR_START + 0x10_0000,
        _ => {
            reporter.error(format_args!("unknown iret sub-case '{field}'"));
            return;
        }
    }
    println!("iret with {field}: {frame:x?}");
    // SAFETY: the hypervisor must refuse the frame and kill the domain; accepted, it would
    // resume at this guest's entry with a valid stack, which the case reports.
    unsafe { trap::iret(&frame) }
}

// ---- int n ----------------------------------------------------------------------------------

#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    ".pushsection .text.hardening_int, \"ax\"",
    ".p2align 4",
    ".global hardening_int_table",
    "hardening_int_table:",
    ".set hardening_vector, 0",
    ".rept 256",
    ".byte 0xcd, hardening_vector",
    "ret",
    "nop",
    ".set hardening_vector, hardening_vector + 1",
    ".endr",
    ".popsection",
);

extern "C" {
    static hardening_int_table: [u8; 1024];
}

/// Vectors whose `int n` a PVM-based KVM host (the "KVM" of this project's machines)
/// mangles before the hypervisor sees anything: `int 0x17` and `int 0x19` arrive as #GP(0)
/// after the instruction, and `int 0x1a` never reaches the hypervisor at all and comes back
/// with the guest's registers changed. No hypervisor can present SPEC.md's events for
/// these on such a host, so under KVM they are left out, and named, not judged.
const HOST_MANGLED_UNDER_KVM: &[u64] = &[0x17, 0x19, 0x1a];

/// Writes numbers as `[0x17, 0x19]`.
struct HexList<'a>(&'a [u64]);

impl core::fmt::Display for HexList<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("[")?;
        for (index, number) in self.0.iter().enumerate() {
            write!(f, "{}{number:#x}", if index == 0 { "" } else { ", " })?;
        }
        f.write_str("]")
    }
}

fn int_vectors(reporter: &mut Reporter) {
    if reporter.expect_ok(trap::set_handler(vector::GENERAL_PROTECTION, record_gp), "#GP handler").is_none() {
        return;
    }
    let skipped = if Accel::detect() == Accel::Kvm { HOST_MANGLED_UNDER_KVM } else { &[] };
    let table = &raw const hardening_int_table as u64;
    let mut right = 0;
    for n in (0..=255u64).filter(|n| !skipped.contains(n)) {
        let stub = table + 4 * n;
        RESUME.store(stub + 2, Ordering::Relaxed);
        // SAFETY: the stub is `int n; ret`; the #GP handler (the only vector with a
        // handler) resumes at the `ret`. The call needs the stack, which is ours.
        unsafe { core::arch::asm!("call {stub}", stub = in(reg) stub, clobber_abi("C")) };
        let seen = take_gp();
        let expected = if n == u64::from(vector::GENERAL_PROTECTION) {
            (n, 0, stub + 2)
        } else {
            (u64::from(vector::GENERAL_PROTECTION), n * 8 + 2, stub)
        };
        if reporter.expect_eq(seen, expected, format_args!("int {n:#x}: (vector, error code, rip)")) {
            right += 1;
        }
    }
    if !skipped.is_empty() {
        println!("int n: not judged on this KVM host, which mangles them itself: {}", HexList(skipped));
    }
    println!("int n: {right} of {} vectors delivered as SPEC.md §4.4 says", 256 - skipped.len());
}

// ---- int n from guest-user mode -----------------------------------------------------------

// One 16-byte stub per vector on a page of its own (the only code user mode can reach):
// `int n`, then an exit with 0x600d, which only a swallowed `int n` would reach.
#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    ".pushsection .text.hardening_user_int, \"ax\", @progbits",
    ".balign 4096",
    ".global hardening_user_int_table",
    "hardening_user_int_table:",
    ".set hardening_user_vector, 0",
    ".rept 256",
    ".byte 0xcd, hardening_user_vector",
    "mov edi, 0x600d",
    "mov eax, {exit}",
    "syscall",
    "ud2",
    ".set hardening_user_vector, hardening_user_vector + 1",
    ".endr",
    ".balign 4096",
    ".global hardening_user_int_end",
    "hardening_user_int_end:",
    ".popsection",
    exit = const guest_rt::user::SYSCALL_EXIT,
);

extern "C" {
    static hardening_user_int_table: [u8; 4096];
    static hardening_user_int_end: u8;
}

/// Ends the user run on any event; the frame comes back in `UserExit::Ended`.
fn end_user_run(context: &mut TrapContext) -> TrapAction {
    TrapAction::EndUserRun(context.vector())
}

/// The stubs make no system call but the exit.
fn no_syscalls(_context: &mut TrapContext) -> guest_rt::user::SyscallAction {
    guest_rt::user::SyscallAction::Exit(0xbad)
}

/// Whether SPEC.md §9 lets `USER_MAY_RAISE` be set on `n`.
fn grantable(n: u8) -> bool {
    n == 3 || n == 4 || n >= vector::FIRST_SOFTWARE
}

fn int_vectors_user(reporter: &mut Reporter) {
    use guest_rt::abi::trap::{exception_flags, USER_CS, USER_SS};
    use guest_rt::user::{self, UserExit, UserSpace};
    let table = &raw const hardening_user_int_table as u64;
    let end = &raw const hardening_user_int_end as u64;
    let setup = (|| -> Result<(UserSpace, u64), guest_rt::abi::Errno> {
        trap::install()?;
        for n in 0..=255u8 {
            trap::set_handler(n, end_user_run)?;
        }
        user::init(no_syscalls)?;
        let space = UserSpace::create()?;
        space.map_kernel_range(table, end, 0)?;
        let stack = space.allocate(1)?;
        space.activate()?;
        Ok((space, stack + guest_rt::abi::layout::PAGE_SIZE))
    })();
    let Some((_space, stack_top)) = reporter.expect_ok(setup, "user setup") else { return };
    let skipped = if Accel::detect() == Accel::Kvm { HOST_MANGLED_UNDER_KVM } else { &[] };
    let mut right = 0;
    let mut granted = 0;
    for n in 0..=255u8 {
        let grant = grantable(n) && (n % 2 == 1 || n < vector::FIRST_SOFTWARE);
        let answer = trap::grant_user(n);
        if grantable(n) {
            // Refresh the entry so only the wanted vectors carry the grant.
            let answer = if grant { answer } else { trap::set_handler(n, end_user_run) };
            reporter.expect_ok(answer, format_args!("trap table entry of vector {n:#x}"));
        } else {
            reporter.expect_eq(answer, Err(guest_rt::abi::Errno::EINVAL), format_args!("grant_user({n:#x})"));
        }
        granted += u64::from(grant);
        let stub = table + 16 * u64::from(n);
        let n = u64::from(n);
        if skipped.contains(&n) {
            continue;
        }
        let expected = if grant {
            (n, n, 0, stub + 2)
        } else {
            let gp = u64::from(vector::GENERAL_PROTECTION);
            (gp, gp, n * 8 + 2, stub)
        };
        let seen = match user::run(stub, stack_top, 0) {
            Ok(UserExit::Ended { code, frame }) => {
                let user_frame = frame.flags == exception_flags::FROM_USER
                    && frame.iret.cs == USER_CS
                    && frame.iret.ss == USER_SS
                    && frame.fault_address.0 == 0;
                if !user_frame {
                    reporter.fail(format_args!("int {n:#x}: not a guest-user frame: {}", trap::ShowFrame(&frame)));
                }
                (code, frame.vector, frame.error_code, frame.iret.rip)
            }
            other => {
                reporter.fail(format_args!("int {n:#x}: the user run ended with {other:?}, not an event"));
                continue;
            }
        };
        if reporter.expect_eq(seen, expected, format_args!("int {n:#x}: (handler, vector, error code, rip)")) {
            right += 1;
        }
    }
    // Under 64 bytes: one console_io group, which a companion's line cannot split (SPEC.md §5).
    if !skipped.is_empty() {
        println!("user int n: KVM host mangles {}", HexList(skipped));
    }
    println!("user int n: {right}/{} right, {granted} granted", 256 - skipped.len());
}

// ---- timer deadlines near u64::MAX --------------------------------------------------------------

fn timer_max(reporter: &mut Reporter) {
    use guest_rt::time::{self, now};
    if reporter.expect_ok(guest_rt::events::init(), "events::init").is_none()
        || reporter.expect_ok(time::timer_port(), "bind VIRQ_TIMER").is_none()
    {
        return;
    }
    guest_rt::events::irq_enable();
    let (before, _) = time::timer_firings();
    for deadline in [u64::MAX, u64::MAX - 1, 1 << 63, u64::MAX - now()] {
        reporter.expect_eq(time::set_timer(deadline), Ok(()), format_args!("set_timer_op({deadline:#x})"));
    }
    // 30 ms of yields: a far deadline that overflowed would have fired by now.
    let until = now() + 30_000_000;
    while now() < until {
        let _ = HYPERVISOR.yield_now();
    }
    let (after_far, _) = time::timer_firings();
    reporter.expect_eq(after_far - before, 0, "firings of deadlines near u64::MAX");
    // The timer still works afterwards.
    let near = now() + 2_000_000;
    reporter.expect_eq(time::sleep_until(near), Ok(()), "sleep_until 2 ms ahead");
    let (after_near, at) = time::timer_firings();
    reporter.check(after_near == after_far + 1 && at >= near, "the near deadline fired once, not before its time");
    reporter.expect_eq(time::set_timer(u64::MAX), Ok(()), "set_timer_op(u64::MAX) again");
    reporter.expect_eq(time::cancel_timer(), Ok(()), "cancel");
}

// ---- segment bases across domains ---------------------------------------------------------------

#[repr(C, align(4096))]
struct Page([u64; 512]);

/// Word i holds `MARK + i`: a base of `&page + 8·id` reads `MARK + id` at offset 0.
static mut FS_PAGE: Page = Page([0; 512]);
static mut GS_PAGE: Page = Page([0; 512]);
const FS_MARK: u64 = 0xf500_0000_0000_0000;
const GS_MARK: u64 = 0x6500_0000_0000_0000;

fn bases(start: &StartInfo, reporter: &mut Reporter) {
    let id = u64::from(start.domain_id);
    // SAFETY: one thread of execution; the pages are this domain's own (each domain has
    // its own copy of the image) and no reference to them outlives these writes.
    let (fs_page, gs_page) = unsafe {
        let (fs, gs) = (&raw mut FS_PAGE, &raw mut GS_PAGE);
        for index in 0..512 {
            (*fs).0[index] = FS_MARK + index as u64;
            (*gs).0[index] = GS_MARK + index as u64;
        }
        (fs as u64, gs as u64)
    };
    let index = id % 256;
    reporter.expect_eq(guest_rt::segment::set_fs_base(fs_page + 8 * index), Ok(()), "FS base");
    reporter.expect_eq(guest_rt::segment::set_gs_kernel_base(gs_page + 8 * index), Ok(()), "GS_KERNEL base");
    let mut kept = 0;
    for round in 0..50 {
        let _ = HYPERVISOR.yield_now();
        // SAFETY: both bases point into this domain's pages with room for offset 0.
        let (fs, gs) = unsafe { (guest_rt::segment::read_fs(0), guest_rt::segment::read_gs(0)) };
        if reporter.expect_eq((fs, gs), (FS_MARK + index, GS_MARK + index), format_args!("bases after yield {round}")) {
            kept += 1;
        }
    }
    println!("domain {id}: FS and GS bases kept across {kept} of 50 yields");
}

// ---- a forged jump to the syscall entry ---------------------------------------------------------

/// RFLAGS a forged R11 carries: IF and bit 1, plus IOPL 3, NT, RF, VIF and VIP, none of
/// which a guest may have.
const FORGED_FLAGS: u64 = 0x202 | 3 << 12 | 1 << 14 | 1 << 16 | 1 << 19 | 1 << 20;
const FORBIDDEN_FLAGS: u64 = 3 << 12 | 1 << 14 | 1 << 16 | 1 << 17 | 1 << 19 | 1 << 20;

fn forged(start: &StartInfo, wanted: &str, reporter: &mut Reporter) {
    let Some(entry) = argument(start, "entry") else {
        reporter.error("no entry=<address of the hypervisor's syscall entry> argument");
        return;
    };
    let return_to = match wanted {
        "forged_rcx_noncanonical" => Some(0x0000_8000_0000_0000),
        "forged_rcx_hypervisor" => Some(HYPERVISOR_START + 0x1000),
        _ => None,
    };
    println!("jump to the syscall entry {entry:#x} with rcx {return_to:x?} and r11 {FORGED_FLAGS:#x}");
    let (result, flags): (u64, u64);
    // SAFETY: jumps to the hypervisor's entry, which a guest cannot execute: the fetch
    // faults and the hypervisor runs a `version` hypercall that returns to RCX with R11's
    // flags, sanitized. RCX is label 2 (or, for the kill sub-cases, an address that must
    // get the domain killed). RFLAGS is read and the stack balanced after label 2.
    unsafe {
        core::arch::asm!(
            "lea rcx, [rip + 2f]",
            "test {target}, {target}",
            "cmovnz rcx, {target}",
            "mov r11, {flags}",
            "jmp {entry}",
            "2:",
            "pushfq",
            "pop {out_flags}",
            entry = in(reg) entry,
            target = in(reg) return_to.unwrap_or(0),
            flags = const FORGED_FLAGS,
            out_flags = lateout(reg) flags,
            inout("rax") Hypercall::VERSION.0 => result,
            in("rdi") 0u64,
            out("rcx") _, out("r11") _,
        )
    }
    if return_to.is_some() {
        reporter.fail(format_args!("the forged return to {return_to:x?} came back to the guest"));
        return;
    }
    reporter.expect_eq(result, u64::from(ABI_VERSION.packed()), "version through a forged syscall entry");
    reporter.expect_eq(flags & FORBIDDEN_FLAGS, 0, format_args!("forbidden RFLAGS bits after it (RFLAGS {flags:#x})"));
    reporter.check(flags & 0x200 != 0, "IF set after it");
}

// ---- batches that rewrite or unmap their own arguments ------------------------------------------

use guest_rt::abi::memory::{map_flags, map_op, MapEntry};
use guest_rt::abi::multicall::MulticallEntry;
use guest_rt::abi::{Errno, Gfn, GuestVirtualAddress};
use guest_rt::memory::{self, Space};

/// A page the batches below PROTECT (with the flags it has) and the entries doing it.
static mut TARGET: Page = Page([0; 512]);
static mut PROTECTS: [MapEntry; 32] =
    [MapEntry { virtual_address: GuestVirtualAddress(0), gfn: Gfn(0), op: map_op::PROTECT, flags: 0 }; 32];
static mut CALLS: [MulticallEntry; 3] = [MulticallEntry { op: 0, args: [0; 6], result: 0 }; 3];
/// What a result slot holds until the hypervisor writes it.
const UNWRITTEN: i64 = 0x5a5a;

/// `multicall(calls, count)`, raw.
fn multicall(calls: u64, count: u64) -> Result<u64, Errno> {
    // SAFETY: the caller passes its own array (or one the hypervisor must refuse).
    unsafe { conformance_guests::raw_result(Hypercall::MULTICALL.0, [calls, count, 0, 0, 0, 0]) }
}

/// Fills CALLS with: [mmu_update(INITIAL, PROTECTS, `protects`, done = `done`), version(`cmd`), version(0)].
fn prepare_calls(protects: u64, done: u64, cmd: u64) -> u64 {
    let target = &raw mut TARGET as u64;
    let flags = memory::query(Space::INITIAL, target).map(|(_, flags)| flags).unwrap_or(map_flags::WRITABLE);
    let protects_address = &raw mut PROTECTS;
    let calls = &raw mut CALLS;
    // SAFETY: one thread of execution; no reference to the statics is held across the
    // multicall, and they are read back through raw pointers with volatile reads.
    unsafe {
        for entry in (*protects_address).iter_mut() {
            *entry = MapEntry { virtual_address: GuestVirtualAddress(target), gfn: Gfn(0), op: map_op::PROTECT, flags };
        }
        let version = Hypercall::VERSION.0;
        (*calls)[0] = MulticallEntry {
            op: Hypercall::MMU_UPDATE.0,
            args: [Space::INITIAL.raw(), protects_address as u64, protects, done, 0, 0],
            result: UNWRITTEN,
        };
        (*calls)[1] = MulticallEntry { op: version, args: [cmd, 0, 0, 0, 0, 0], result: UNWRITTEN };
        (*calls)[2] = MulticallEntry { op: version, args: [0; 6], result: UNWRITTEN };
    }
    calls as u64
}

fn results() -> [i64; 3] {
    let calls = &raw const CALLS;
    // SAFETY: as in `prepare_calls`; volatile because the hypervisor wrote them.
    core::array::from_fn(|index| unsafe { core::ptr::read_volatile(&raw const (*calls)[index].result) })
}

fn multicall_rewrite(reporter: &mut Reporter) {
    let calls = &raw mut CALLS;
    // SAFETY: only addresses are taken.
    let (op_1, cmd_1) = unsafe { (&raw mut (*calls)[1].op as u64, &raw mut (*calls)[1].args[0] as u64) };
    let version = u64::from(ABI_VERSION.packed()) as i64;
    // done (1) lands in entry 1's `cmd`: version(FEATURES) runs instead of version(5).
    let array = prepare_calls(1, cmd_1, 5);
    let result = multicall(array, 3);
    reporter.expect_eq(result, Ok(3), "multicall with done rewriting the next entry's cmd");
    reporter.expect_eq(
        results(),
        [1, guest_rt::abi::hypercall::features::ALL as i64, version],
        "results: the rewritten entry ran as rewritten",
    );
    // done (23, 13) lands in entry 1's `op`: iret and multicall are refused and end the batch.
    for (count, what) in [(Hypercall::IRET.0, "iret"), (Hypercall::MULTICALL.0, "multicall")] {
        let array = prepare_calls(count, op_1, 0);
        let result = multicall(array, 3);
        reporter.expect_eq(result, Ok(2), format_args!("multicall whose entry 1 became {what}"));
        reporter.expect_eq(
            results(),
            [count as i64, Errno::EINVAL.to_return(), UNWRITTEN],
            format_args!("results: {what} refused, nothing after it ran"),
        );
    }
}

/// A window of lower-half address space nothing else uses.
const WINDOW: u64 = 0x0000_4200_0000_0000;
static mut SCRATCH: Page = Page([0; 512]);

fn batch_self_unmap(reporter: &mut Reporter) {
    let scratch = &raw mut SCRATCH as u64;
    let Some((gfn, _)) = reporter.expect_ok(memory::query(Space::INITIAL, scratch), "query the scratch page") else {
        return;
    };
    let target = &raw mut TARGET as u64;
    let target_flags = memory::query(Space::INITIAL, target).map(|(_, flags)| flags).unwrap_or(map_flags::WRITABLE);
    let unmap_window =
        MapEntry { virtual_address: GuestVirtualAddress(WINDOW), gfn: Gfn(0), op: map_op::UNMAP, flags: 0 };
    // mmu_update whose entry 0 unmaps the page its entries are read from.
    reporter.expect_eq(memory::map_page(Space::INITIAL, WINDOW, gfn.0, map_flags::WRITABLE), Ok(()), "map the window");
    let entries = WINDOW as *mut MapEntry;
    // SAFETY: the window maps the scratch page, writable, and holds two entries.
    unsafe {
        entries.write_volatile(unmap_window);
        entries.add(1).write_volatile(MapEntry {
            virtual_address: GuestVirtualAddress(target),
            gfn: Gfn(0),
            op: map_op::PROTECT,
            flags: target_flags,
        });
    }
    // SAFETY: the array is ours; the hypervisor must find entry 1 unreadable.
    let (done, result) = unsafe { guest_rt::hypercall::HYPERVISOR.mmu_update_raw(Space::INITIAL, entries, 2) };
    reporter.expect_eq((done, result), (1, Err(Errno::EFAULT)), "mmu_update unmapping its own array: (done, result)");
    reporter.expect_errno(memory::query(Space::INITIAL, WINDOW), Errno::ENOENT, "the window is unmapped");
    // multicall whose entry 0 unmaps the page the multicall array is in.
    reporter.expect_eq(memory::map_page(Space::INITIAL, WINDOW, gfn.0, map_flags::WRITABLE), Ok(()), "map it again");
    let unmap_entry = &raw mut PROTECTS as *mut MapEntry;
    let calls = WINDOW as *mut MulticallEntry;
    // SAFETY: PROTECTS is ours (no reference held); the window is mapped and writable.
    unsafe {
        unmap_entry.write_volatile(unmap_window);
        calls.write_volatile(MulticallEntry {
            op: Hypercall::MMU_UPDATE.0,
            args: [Space::INITIAL.raw(), unmap_entry as u64, 1, 0, 0, 0],
            result: UNWRITTEN,
        });
        calls.add(1).write_volatile(MulticallEntry { op: Hypercall::VERSION.0, args: [0; 6], result: UNWRITTEN });
    }
    reporter.expect_errno(multicall(WINDOW, 2), Errno::EFAULT, "multicall unmapping its own array");
    reporter.expect_errno(memory::query(Space::INITIAL, WINDOW), Errno::ENOENT, "the unmapping stands");
    // The frame itself was never freed: still readable where it always was.
    // SAFETY: the scratch page is this image's own, mapped for its lifetime.
    let first = unsafe { core::ptr::read_volatile(&raw const SCRATCH.0[0]) };
    reporter.check(first != 0, "the scratch page kept what was written through the window");
}

// ---- upcalls onto bad stacks ---------------------------------------------------------------------

/// The RSP of each `upcall_<stack>` sub-case.
pub fn bad_upcall_stack(start: &StartInfo, which: &str) -> Option<u64> {
    use guest_rt::abi::layout::HYPERVISOR_END;
    Some(match which {
        // The top of the read-only start-info page.
        "readonly" => start.start_info_address.0 + 4096,
        "hypervisor" => HYPERVISOR_START + 0x10_0000,
        "below_hypervisor" => HYPERVISOR_START + 0x30,
        "above_hypervisor" => HYPERVISOR_END + 0x30,
        "lower_half_top" => 0x0000_8000_0000_0040,
        _ => return None,
    })
}

fn upcall_on_bad_stack(start: &StartInfo, which: &str, reporter: &mut Reporter) {
    let Some(rsp) = bad_upcall_stack(start, which) else {
        reporter.error(format_args!("unknown upcall stack '{which}'"));
        return;
    };
    if reporter.expect_ok(guest_rt::events::init(), "events::init").is_none() {
        return;
    }
    let Some(port) = reporter.expect_ok(guest_rt::events::Port::bind_ipi(), "bind an IPI") else {
        return;
    };
    // Pending while upcalls are still masked (they start masked).
    reporter.expect_ok(port.send(), "send it to myself");
    let mask = guest_rt::events::shared_info().address()
        + core::mem::offset_of!(guest_rt::abi::shared_info::SharedInfo, vcpu_info) as u64
        + core::mem::offset_of!(guest_rt::abi::shared_info::VcpuInfo, upcall_mask) as u64;
    println!("version() with RSP {rsp:#x} and an upcall due on its return");
    // SAFETY: unmasks upcalls by writing the shared-info byte (no hypercall, so nothing
    // is delivered yet), then makes one hypercall with RSP on the bad stack: the upcall
    // due on its return must kill the domain. Were it to return, RSP is restored at once.
    unsafe {
        core::arch::asm!(
            "mov r12, rsp",
            "mov byte ptr [{mask}], 0",
            "mov rsp, {rsp}",
            "syscall",
            "mov rsp, r12",
            mask = in(reg) mask,
            rsp = in(reg) rsp,
            inout("rax") Hypercall::VERSION.0 => _,
            in("rdi") 0u64,
            out("r12") _, out("rcx") _, out("r11") _,
        )
    }
    reporter.fail(format_args!("the upcall onto RSP {rsp:#x} was not refused"));
}

// ---- frame reuse and quotas ---------------------------------------------------------------------------

use guest_rt::abi::memory::{LARGE_PAGE_ORDER, LARGE_PAGE_PAGES, LARGE_PAGE_SIZE};

const REUSE_WINDOW: u64 = 0x0000_4400_0000_0000;

/// Counts the words in `[address, address + bytes)` that are not 0, then fills the range
/// with `pattern`.
fn check_zero_then_fill(address: u64, bytes: u64, pattern: u64) -> u64 {
    let mut dirty = 0;
    for offset in (0..bytes).step_by(8) {
        let word = (address + offset) as *mut u64;
        // SAFETY: the caller mapped the range writable for this domain alone.
        unsafe {
            dirty += u64::from(word.read_volatile() != 0);
            word.write_volatile(pattern ^ offset);
        }
    }
    dirty
}

fn frame_reuse(start: &StartInfo, reporter: &mut Reporter) {
    let pattern = 0xd1d1_0000_0000_0000 | u64::from(start.domain_id) << 40;
    let large = map_flags::LARGE | map_flags::WRITABLE | map_flags::NO_EXECUTE;
    let (mut dirty_large, mut dirty_small) = (0, 0);
    for round in 0..12 {
        let mut extent = [u64::MAX];
        if !reporter.expect_eq(memory::increase_reservation(&mut extent, LARGE_PAGE_ORDER), Ok(1), "a 2 MiB extent") {
            return;
        }
        reporter.expect_eq(memory::map_page(Space::INITIAL, REUSE_WINDOW, extent[0], large), Ok(()), "map it LARGE");
        dirty_large += check_zero_then_fill(REUSE_WINDOW, LARGE_PAGE_SIZE, pattern);
        let unmap = MapEntry {
            virtual_address: GuestVirtualAddress(REUSE_WINDOW),
            gfn: Gfn(0),
            op: map_op::UNMAP,
            flags: map_flags::LARGE,
        };
        reporter.expect_eq(memory::mmu_update(Space::INITIAL, &[unmap]).result, Ok(()), "unmap it");
        reporter.expect_eq(memory::decrease_reservation(&extent, LARGE_PAGE_ORDER), Ok(1), "give it back");
        let mut pages = [u64::MAX; 64];
        if !reporter.expect_eq(memory::increase_reservation(&mut pages, 0), Ok(64), "64 pages") {
            return;
        }
        for (index, &gfn) in pages.iter().enumerate() {
            let address = REUSE_WINDOW + index as u64 * 4096;
            reporter.expect_eq(
                memory::map_page(Space::INITIAL, address, gfn, map_flags::WRITABLE),
                Ok(()),
                "map a page",
            );
            dirty_small += check_zero_then_fill(address, 4096, pattern);
            reporter.expect_eq(memory::unmap_page(Space::INITIAL, address), Ok(()), "unmap a page");
        }
        reporter.expect_eq(memory::decrease_reservation(&pages, 0), Ok(64), "give the pages back");
        let _ = HYPERVISOR.yield_now();
        if round == 0 {
            println!("domain {}: round 0 done", start.domain_id);
        }
    }
    reporter.expect_eq((dirty_large, dirty_small), (0, 0), "non-zero words in new frames (2 MiB extents, pages)");
    println!("domain {}: 12 rounds, every new frame read as zero", start.domain_id);
}

fn decrease_self_array(reporter: &mut Reporter) {
    let mut pages = [u64::MAX; 2];
    if !reporter.expect_eq(memory::increase_reservation(&mut pages, 0), Ok(2), "2 pages") {
        return;
    }
    let mapped = memory::map_page(Space::INITIAL, REUSE_WINDOW, pages[0], map_flags::WRITABLE);
    if !reporter.expect_eq(mapped, Ok(()), "map the first page") {
        return;
    }
    let array = REUSE_WINDOW as *mut [u64; 2];
    // SAFETY: the page at REUSE_WINDOW was just mapped writable for this domain alone.
    unsafe { array.write_volatile(pages) };
    // SAFETY: as above; the slice is not used after the call, which unmaps its page.
    let released = memory::decrease_reservation(unsafe { &*array }, 0);
    reporter.expect_eq(released, Ok(2), "DECREASE of [page holding the array, another page]");
    for gfn in pages {
        let again = memory::decrease_reservation(&[gfn], 0);
        reporter.expect_eq(again, Err(Errno::EINVAL), format_args!("gfn {gfn:#x} released already"));
    }
    println!("decrease_self_array: both extents released");
}

fn quota_odd(reporter: &mut Reporter) {
    let (Some(before), Some(maximum)) = (
        reporter.expect_ok(memory::current_reservation(), "CURRENT_RESERVATION"),
        reporter.expect_ok(memory::maximum_reservation(), "MAXIMUM_RESERVATION"),
    ) else {
        return;
    };
    let room = maximum - before;
    reporter.expect_eq(room, 768, "headroom of mem=4M,maxmem=7M in pages");
    let mut first = [u64::MAX];
    reporter.expect_eq(memory::increase_reservation(&mut first, LARGE_PAGE_ORDER), Ok(1), "the first 2 MiB extent");
    let mut second = [u64::MAX];
    reporter.expect_errno(memory::increase_reservation(&mut second, LARGE_PAGE_ORDER), Errno::ENOMEM, "a second one");
    reporter.expect_eq(second, [u64::MAX], "a refused extent writes no gfn");
    let mut pages = [u64::MAX; 300];
    let left = (room - LARGE_PAGE_PAGES) as usize;
    reporter.expect_eq(memory::increase_reservation(&mut pages, 0), Ok(left), "300 pages with 256 left");
    reporter.check(pages[left..].iter().all(|&gfn| gfn == u64::MAX), "nothing written past the pages given");
    let mut one = [u64::MAX];
    reporter.expect_errno(memory::increase_reservation(&mut one, 0), Errno::ENOMEM, "one page more");
    reporter.expect_eq(memory::current_reservation(), Ok(maximum), "at the quota exactly");
    reporter.expect_eq(memory::decrease_reservation(&pages[..left], 0), Ok(left), "give the pages back");
    reporter.expect_eq(memory::decrease_reservation(&first, LARGE_PAGE_ORDER), Ok(1), "give the extent back");
    reporter.expect_eq(memory::current_reservation(), Ok(before), "back where it started");
}

// ---- hypercall instructions at the edges of the address space ------------------------------------------

fn edge(start: &StartInfo, which: &str, reporter: &mut Reporter) {
    let (page, code): (u64, &[u8]) = match which {
        "lower_trapping" => (0x0000_7fff_ffff_f000, &[0x0f, 0x0b, 0x72, 0x66]),
        "top_trapping" => (0xffff_ffff_ffff_f000, &[0x0f, 0x0b, 0x72, 0x66]),
        "top_ud2" => (0xffff_ffff_ffff_f000, &[0x0f, 0x0b]),
        _ => return reporter.error(format_args!("unknown edge '{which}'")),
    };
    // The last free page, aliased: the domain dies before the heap could notice.
    let Some(gfn) = (start.free_gfn.0 + start.free_pages).checked_sub(1).filter(|_| start.free_pages > 0) else {
        return reporter.error("no free page to alias");
    };
    // Kernel-only, writable and executable: the page holds the one instruction.
    if let Err(error) = memory::map_page(Space::INITIAL, page, gfn, map_flags::WRITABLE) {
        return reporter.error(format_args!("map {page:#x}: {error:?}"));
    }
    let at = page + 4096 - code.len() as u64;
    for (offset, &byte) in code.iter().enumerate() {
        // SAFETY: the page was just mapped writable for this domain.
        unsafe { core::ptr::write_volatile((at + offset as u64) as *mut u8, byte) };
    }
    println!("{code:02x?} at {at:#x}");
    // SAFETY: transfers control to the instruction just written; the hypervisor must end
    // the domain there, so nothing after this runs.
    unsafe {
        core::arch::asm!(
            "xor edi, edi",
            "jmp {at}",
            at = in(reg) at,
            in("rax") Hypercall::VERSION.0,
            options(noreturn),
        )
    }
}
