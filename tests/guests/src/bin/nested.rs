//! Conformance: exceptions inside exception handlers.
//!
//! * `handled`: the #GP handler touches an unmapped page; the #PF handler skips that
//!   access; both return with `iret` and the interrupted code resumes after the `hlt`.
//! * `no_handler`: the same, but #PF has no trap-table entry: the domain is killed.
//! * `stack`: a #UD with RSP on an unmapped page: the frame cannot be written, the domain
//!   is killed (no loop, no hypervisor fault).
//! * `recursive`: a #PF handler that faults again on every entry until the stack runs
//!   into its guard page: killed when the frame no longer fits.
#![cfg_attr(target_os = "none", no_std, no_main)]

use core::sync::atomic::{AtomicU64, Ordering};

use conformance_guests::words;
use guest_rt::abi::trap::vector;
use guest_rt::abi::StartInfo;
use guest_rt::println;
use guest_rt::test::Reporter;
use guest_rt::trap::{self, TrapAction, TrapContext};

guest_rt::entry!(nested);

static GP_SEEN: AtomicU64 = AtomicU64::new(0);
static PF_SEEN: AtomicU64 = AtomicU64::new(0);
static PF_ADDRESS: AtomicU64 = AtomicU64::new(0);
static DEPTH: AtomicU64 = AtomicU64::new(0);

/// Reads 0x3000 (unmapped) with a 7-byte instruction the #PF handler skips.
#[cfg(target_arch = "x86_64")]
fn touch_unmapped() -> u64 {
    let value: u64;
    // SAFETY: a load from an unmapped address: #PF, which the handler (if any) skips by
    // the instruction's length (`mov rax, [0x3000]` with a SIB absolute address: 8 bytes).
    unsafe {
        core::arch::asm!(
            "mov rax, 0x5eed",
            "mov rax, qword ptr [0x3000]",
            out("rax") value,
            options(nostack, readonly),
        )
    };
    value
}

fn general_protection(context: &mut TrapContext) -> TrapAction {
    GP_SEEN.fetch_add(1, Ordering::Relaxed);
    // A fault inside this handler, on this handler's stack.
    let value = touch_unmapped();
    if value == 0x5eed {
        context.skip(1); // over the hlt
    }
    TrapAction::Resume
}

fn page_fault(context: &mut TrapContext) -> TrapAction {
    PF_SEEN.fetch_add(1, Ordering::Relaxed);
    PF_ADDRESS.store(context.fault_address(), Ordering::Relaxed);
    context.skip(8);
    TrapAction::Resume
}

fn page_fault_again(_context: &mut TrapContext) -> TrapAction {
    DEPTH.fetch_add(1, Ordering::Relaxed);
    let _ = touch_unmapped();
    TrapAction::Resume
}

#[cfg(target_arch = "x86_64")]
fn halt() {
    // SAFETY: #GP in ring 3; the handler skips it.
    unsafe { core::arch::asm!("hlt", options(nomem, nostack)) }
}

fn nested(start: &'static StartInfo) -> u32 {
    let mut reporter = Reporter::new();
    let wanted = words(start).next().unwrap_or("");
    if reporter.expect_ok(trap::install(), "trap::install").is_none() {
        reporter.finish();
    }
    match wanted {
        "handled" | "no_handler" => {
            let _ = reporter.expect_ok(trap::set_handler(vector::GENERAL_PROTECTION, general_protection), "set #GP");
            if wanted == "handled" {
                let _ = reporter.expect_ok(trap::set_handler(vector::PAGE_FAULT, page_fault), "set #PF");
            } else {
                let _ = reporter.expect_ok(trap::remove_vector(vector::PAGE_FAULT), "remove #PF");
                println!("#GP handler will fault with no #PF handler");
            }
            halt();
            reporter.expect_eq(GP_SEEN.load(Ordering::Relaxed), 1, "#GP deliveries");
            reporter.expect_eq(PF_SEEN.load(Ordering::Relaxed), 1, "#PF deliveries (inside the #GP handler)");
            reporter.expect_eq(PF_ADDRESS.load(Ordering::Relaxed), 0x3000, "#PF address");
            println!("nested #PF inside #GP handled; both returned");
        }
        "stack" => {
            let _ = reporter.expect_ok(trap::set_handler(vector::INVALID_OPCODE, page_fault), "set #UD");
            println!("#UD with RSP on an unmapped page");
            // SAFETY: the hypervisor cannot write the exception frame below 0x5000 (unmapped)
            // and kills the domain; nothing runs afterwards.
            unsafe { core::arch::asm!("mov rsp, 0x5000", "ud2", "ud2", options(noreturn)) }
        }
        "recursive" => {
            let _ = reporter.expect_ok(trap::set_handler(vector::PAGE_FAULT, page_fault_again), "set #PF");
            println!("#PF handler faulting on every entry");
            let _ = touch_unmapped();
            reporter.fail(format_args!("recursion ended after {} faults", DEPTH.load(Ordering::Relaxed)));
        }
        _ => reporter.error(format_args!("unknown sub-case '{wanted}'")),
    }
    reporter.finish()
}
