//! Exceptions and system calls through guest-rt's trap entry (SPEC.md §11): each vector
//! the kernel cares about gets a Rust handler that turns the hypervisor's frame into the
//! core's terms and the core's verdict back into a frame to `iret` to.

use guest_rt::abi::trap::{page_fault, vector};
use guest_rt::hypercall::HYPERVISOR;
use guest_rt::trap::{self, ShowFrame, TrapAction, TrapContext};
use guest_rt::user;

use super::error::failed;
use super::platform::{instance, Paravirt};
use super::process;
use crate::arch::interface::{Access, ArchError, Breakpoint, ExceptionHandlers, FaultResolution, PageFault};

/// The crash code of an exception the kernel cannot survive.
const FATAL_EXCEPTION: u32 = 3;

/// Exceptions the core has no fix-up for: they end a user process, and in the kernel
/// they are bugs. (#DF, NMI and #MC keep guest-rt's report-and-crash.)
const FATAL_VECTORS: [u8; 11] = [
    vector::DIVIDE_ERROR,
    vector::GENERAL_PROTECTION,
    vector::DEBUG,
    vector::OVERFLOW,
    vector::BOUND_RANGE,
    vector::INVALID_OPCODE,
    vector::DEVICE_NOT_AVAILABLE,
    vector::STACK_SEGMENT,
    vector::X87_FLOATING_POINT,
    vector::ALIGNMENT_CHECK,
    vector::SIMD_FLOATING_POINT,
];

/// Points every exception vector at guest-rt's entry with the handlers below, and
/// registers the system-call callback.
pub(super) fn install<H: ExceptionHandlers<Paravirt>>() -> Result<(), ArchError> {
    trap::install().map_err(failed("set_trap_table"))?;
    trap::set_handler(vector::PAGE_FAULT, on_page_fault::<H>).map_err(failed("set_trap_table"))?;
    trap::set_handler(vector::BREAKPOINT, on_breakpoint::<H>).map_err(failed("set_trap_table"))?;
    for fatal in FATAL_VECTORS {
        trap::set_handler(fatal, on_fatal).map_err(failed("set_trap_table"))?;
    }
    user::init(process::system_call).map_err(failed("callback_op"))
}

/// `int3`: in guest-kernel mode a software interrupt the hypervisor bounces to vector 3
/// (we have a handler, so it is permitted, SPEC.md §4.4).
pub(super) fn breakpoint() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the #BP handler returns to the next instruction with every register as it
    // was (guest-rt's entry restores them; our handler changes no register). It does
    // write memory — the exception frame below RSP, the core's counters — so the asm is
    // declared with neither `nomem` nor `nostack`.
    unsafe {
        core::arch::asm!("int3");
    }
}

fn on_page_fault<H: ExceptionHandlers<Paravirt>>(context: &mut TrapContext) -> TrapAction {
    let error = context.error_code();
    let access = if error & page_fault::FETCH != 0 {
        Access::Execute
    } else if error & page_fault::WRITE != 0 {
        Access::Write
    } else {
        Access::Read
    };
    let fault = PageFault {
        address: context.fault_address(),
        instruction: context.rip(),
        access,
        present: error & page_fault::PRESENT != 0,
        user: context.from_user(),
    };
    match H::page_fault(instance(), &fault) {
        FaultResolution::Retry => TrapAction::Resume,
        FaultResolution::Unhandled => unresolved(context),
    }
}

fn on_breakpoint<H: ExceptionHandlers<Paravirt>>(context: &mut TrapContext) -> TrapAction {
    // The frame's rip is already past the `int3` (a trap, SPEC.md §11.4.1).
    H::breakpoint(instance(), &Breakpoint { resume: context.rip(), user: context.from_user() });
    TrapAction::Resume
}

fn on_fatal(context: &mut TrapContext) -> TrapAction {
    unresolved(context)
}

/// An exception nobody fixed: the end of a user process, or of the kernel.
fn unresolved(context: &mut TrapContext) -> TrapAction {
    if context.from_user() {
        // `user::run` returns `UserExit::Ended` with this frame.
        return TrapAction::EndUserRun(context.vector());
    }
    guest_rt::println!("guest-kernel: fatal exception in the kernel: {}", ShowFrame(&context.frame));
    HYPERVISOR.crash(FATAL_EXCEPTION)
}
