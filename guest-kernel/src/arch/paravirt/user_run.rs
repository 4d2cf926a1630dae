//! `Machine::enter_user` on ringfence: what is checked and installed before the entry's
//! `iret`, and what the event that ended the run means.
//!
//! Per run the hypervisor is entered twice — the `iret` and the event back — plus a
//! `SWITCH` only when the process's space is not the user root already and a
//! `set_segment_base(FS)` only when its FS base is not the live one. The hypervisor
//! reloads the recorded FS base on every mode change (SPEC.md §11.6), and user mode has
//! no way to change the record, so the base the context holds stays true without being
//! read back. Likewise the extended state is loaded only when the registers hold another
//! context's (a process switch, or a state the kernel replaced): the hypervisor preserves
//! them across the run's hypercalls and events (SPEC.md §14).

use core::sync::atomic::Ordering;

use guest_rt::abi::event::EVENT_VECTOR;
use guest_rt::abi::trap::{page_fault, segment, vector, ExceptionFrame, SYSCALL_VECTOR};
use guest_rt::hypercall::HYPERVISOR;
use guest_rt::trap::ShowFrame;

use super::entry::{self, KERNEL_EXCEPTION_CRASH_CODE};
use super::{extended_state, interrupts, spaces};
use crate::arch::machine::{Access, AddressSpace, Trap, UserContext, USER_LIMIT};

/// Runs `context` in `space` until user mode stops, and says why. An interrupt the kernel
/// has not been told of yet (one pending, or acknowledged while the kernel ran) stops the
/// run before it starts, as it would at the first user instruction.
///
/// What the hypervisor would refuse by killing the domain, or the CPU by faulting in the
/// kernel, never reaches them: a RIP outside user space is a page fault at it (nothing
/// can be mapped there for the process), an RSP outside user space or a non-canonical FS
/// base a #GP, a space `create_space` did not make a page fault at RIP; an extended state
/// to load is made restorable (`Format::sanitize`) and RFLAGS restricted by the entry.
pub fn enter_user(space: AddressSpace, context: &mut UserContext) -> Trap {
    if interrupts::take_unreported() {
        return Trap::Interrupt;
    }
    let registers = &context.registers;
    let nothing_at_rip = Trap::PageFault { address: registers.rip, access: Access::Execute, present: false };
    let protection = Trap::Exception { vector: vector::GENERAL_PROTECTION, error_code: 0 };
    if registers.rip >= USER_LIMIT {
        return nothing_at_rip;
    }
    if registers.rsp >= USER_LIMIT {
        return protection;
    }
    if spaces::make_user_root(space).is_err() {
        return nothing_at_rip;
    }
    let fs_base = registers.fs_base;
    if entry::state().fs_base.load(Ordering::Acquire) != fs_base {
        if HYPERVISOR.set_segment_base(segment::FS, fs_base).is_err() {
            return protection;
        }
        entry::state().fs_base.store(fs_base, Ordering::Release);
    }
    entry::state().extended.load(context, |state| {
        extended_state::restore(entry::format(), state);
        true
    });
    let frame = entry::run(context);
    let registers = &mut context.registers;
    registers.rax = frame.iret.rax;
    registers.rcx = frame.iret.rcx;
    registers.r11 = frame.iret.r11;
    registers.rip = frame.iret.rip;
    registers.rsp = frame.iret.rsp;
    registers.rflags = frame.iret.rflags;
    trap_of(&frame)
}

/// The trap an event from guest-user mode is.
fn trap_of(frame: &ExceptionFrame) -> Trap {
    match frame.vector {
        SYSCALL_VECTOR => Trap::SystemCall,
        EVENT_VECTOR => {
            interrupts::acknowledge_from_user();
            Trap::Interrupt
        }
        vector if vector == u64::from(vector::PAGE_FAULT) => {
            let error = frame.error_code;
            let access = if error & page_fault::FETCH != 0 {
                Access::Execute
            } else if error & page_fault::WRITE != 0 {
                Access::Write
            } else {
                Access::Read
            };
            Trap::PageFault { address: frame.fault_address.0, access, present: error & page_fault::PRESENT != 0 }
        }
        vector if vector < u64::from(vector::FIRST_SOFTWARE) => {
            Trap::Exception { vector: vector as u8, error_code: frame.error_code }
        }
        _ => {
            // The trap table grants user mode no other vector: the hypervisor broke the ABI.
            guest_rt::println!("guest-kernel: an event from user mode on no vector it can raise: {}", ShowFrame(frame));
            guest_rt::hypercall::crash(KERNEL_EXCEPTION_CRASH_CODE)
        }
    }
}

/// `Machine::save_extended`: writes the registers back into `context` if they hold its
/// state.
pub fn save_extended(context: &mut UserContext) {
    let format = entry::format();
    entry::state().extended.save(context, |state| extended_state::save(format, state));
}
