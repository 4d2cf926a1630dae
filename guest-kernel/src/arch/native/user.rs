//! Running user mode: [`enter`] loads a context into the processor (general registers,
//! RIP and RFLAGS by `sysretq` or `iretq`, the FS base, the extended state unless the
//! processor holds it already) in an address space, and saves the general registers back
//! when user mode stops (the extended state stays in the processor until
//! [`save_extended`]).
//!
//! `sysretq` is faster, but loads RIP from RCX and RFLAGS from R11, and with a
//! non-canonical RCX it faults in ring 0 on the user's stack on Intel processors (the
//! classic SYSRET vulnerability). So it is used only when RCX and R11 already hold RIP and
//! RFLAGS (a return from a system call) and RIP is a user address; everything else leaves
//! by `iretq`. A context that cannot be loaded at all — a non-canonical RIP (`iretq`
//! would fault in ring 0), a non-canonical FS base, extended state with reserved bits —
//! does not enter user mode: the run ends at once with the #GP the processor would have
//! raised had user code made it so.

use super::descriptors;
use super::extended_state;
use super::paging;
use super::traps::user_trap;
use crate::arch::machine::{AddressSpace, Trap, UserContext, UserRegisters, USER_LIMIT};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use x86_64::instructions::segmentation::{Segment, DS, ES, FS, GS};
use x86_64::registers::model_specific::FsBase;
use x86_64::registers::rflags::RFlags;
use x86_64::registers::segmentation::SegmentSelector;
use x86_64::VirtAddr;

#[repr(C)]
struct TrapRecord {
    vector: u64,
    error_code: u64,
}

extern "C" {
    fn native_enter_user(registers: *mut UserRegisters, rsp0: *mut u64, sysret: u64) -> TrapRecord;
    static native_fault_address: u64;
    fn native_syscall_entry();
}

const PAGE_FAULT: u64 = 14;
/// The page-fault error code's bit for an instruction fetch.
const INSTRUCTION_FETCH: u64 = 1 << 4;

/// The flags user mode may set; IF is forced on, bit 1 is always 1, and IOPL, NT, RF, VM,
/// VIF and VIP stay off.
const USER_FLAGS: RFlags = RFlags::CARRY_FLAG
    .union(RFlags::PARITY_FLAG)
    .union(RFlags::AUXILIARY_CARRY_FLAG)
    .union(RFlags::ZERO_FLAG)
    .union(RFlags::SIGN_FLAG)
    .union(RFlags::TRAP_FLAG)
    .union(RFlags::DIRECTION_FLAG)
    .union(RFlags::OVERFLOW_FLAG)
    .union(RFlags::ALIGNMENT_CHECK)
    .union(RFlags::ID);
const ALWAYS_ONE: u64 = 1 << 1;

const GENERAL_PROTECTION: Trap = Trap::Exception { vector: 13, error_code: 0 };

/// The FS base last written to IA32_FS_BASE (so an unchanged one costs no WRMSR).
static LOADED_FS_BASE: AtomicU64 = AtomicU64::new(0);
/// An NMI from user mode returned here by `ret`, so NMIs stay blocked until the next
/// IRET: the next entry to user mode is by `iretq`, whatever the registers.
static NMI_BLOCKED: AtomicBool = AtomicBool::new(false);
const NMI: u64 = 2;

fn canonical(address: u64) -> bool {
    VirtAddr::try_new(address).is_ok()
}

/// Clears the data-segment selectors user mode may have loaded (so none passes to the
/// next process) and loads `fs_base`.
fn load_segments(fs_base: u64) {
    let mut reload = LOADED_FS_BASE.load(Ordering::Relaxed) != fs_base;
    let null = SegmentSelector(0);
    // SAFETY: the null selector is always loadable into DS, ES, FS and GS in 64-bit mode;
    // the kernel uses none of them (flat segments, no GS base).
    unsafe {
        if DS::get_reg().0 | ES::get_reg().0 != 0 {
            DS::set_reg(null);
            ES::set_reg(null);
        }
        if FS::get_reg().0 != 0 {
            FS::set_reg(null);
            // Loading a selector may have changed the base.
            reload = true;
        }
        if GS::get_reg().0 != 0 {
            GS::set_reg(null);
        }
    }
    if reload {
        // Checked canonical by the caller, so WRMSR cannot fault.
        FsBase::write(VirtAddr::new(fs_base));
        LOADED_FS_BASE.store(fs_base, Ordering::Relaxed);
    }
}

/// Runs `context` in `space` until user mode stops for a reason the kernel must hear.
pub fn enter(space: AddressSpace, context: &mut UserContext) -> Trap {
    if !paging::activate(space) {
        return GENERAL_PROTECTION;
    }
    loop {
        if !canonical(context.registers.rip) || !canonical(context.registers.fs_base) {
            return GENERAL_PROTECTION;
        }
        if !extended_state::RESIDENCE.load(context, |state| extended_state::restore(state).is_ok()) {
            return GENERAL_PROTECTION;
        }
        let registers = &mut context.registers;
        registers.rflags = (registers.rflags & USER_FLAGS.bits()) | RFlags::INTERRUPT_FLAG.bits() | ALWAYS_ONE;
        load_segments(registers.fs_base);
        let nmi_blocked = NMI_BLOCKED.swap(false, Ordering::Relaxed);
        let sysret = registers.rip < USER_LIMIT
            && registers.rcx == registers.rip
            && registers.r11 == registers.rflags
            && !nmi_blocked;
        // SAFETY: `registers` is a valid, exclusive UserRegisters for the whole call (entry.s
        // reads it, and writes it when user mode stops); the RSP0 slot is the TSS's; the
        // address space is loaded and shares the kernel's half; RIP is canonical (and a
        // user address for sysretq, with RCX and R11 as sysretq needs them); RFLAGS has IF
        // set and no privileged flag; FS base and extended state are loaded above.
        let record = unsafe { native_enter_user(registers, descriptors::rsp0_slot(), u64::from(sysret)) };
        let fs_base = FsBase::read().as_u64();
        LOADED_FS_BASE.store(fs_base, Ordering::Relaxed);
        context.registers.fs_base = fs_base;
        // SAFETY: written by entry.s on a page fault from user mode, before returning here;
        // a plain u64 in .bss.
        let fault_address = unsafe { core::ptr::read_volatile(&raw const native_fault_address) };
        if record.vector == NMI {
            NMI_BLOCKED.store(true, Ordering::Relaxed);
        }
        if record.vector == PAGE_FAULT
            && record.error_code & INSTRUCTION_FETCH != 0
            && context.registers.rip == native_syscall_entry as *const () as u64
        {
            // A PVM-based KVM host (this project's KVM hosts) runs a ring-3 `syscall` to
            // LSTAR without entering ring 0, so fetching the (supervisor) entry stub faults.
            // RCX and R11 hold what `syscall` put there: it is the system call it was. (A
            // program that jumps there itself gets a system call with registers it chose.)
            context.registers.rip = context.registers.rcx;
            context.registers.rflags = context.registers.r11;
            return Trap::SystemCall;
        }
        if let Some(trap) = user_trap(record.vector, record.error_code, fault_address) {
            return trap;
        }
    }
}

/// `Machine::save_extended`: writes the processor's extended state back into `context` if
/// it holds that context's.
pub fn save_extended(context: &mut UserContext) {
    extended_state::RESIDENCE.save(context, extended_state::save);
}
