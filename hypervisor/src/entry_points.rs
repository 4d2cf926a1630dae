//! The Rust entry points the assembly calls after boot: `hypercall_dispatch` (the
//! `syscall` entry) and `trap_dispatch` (every exception and interrupt). Each locks
//! the system, lets it decide, and carries out the [`Step`] it returns — halting with
//! the system unlocked when nothing can run, so console input still reaches it.

use crate::arch::x86_64::platform::Machine;
use crate::arch::x86_64::{apic, console, cpu, entry, exit_device};
use hypervisor::mm::frames::FrameAllocator;
use hypervisor::system::{Step, System};
use hypervisor::trap::frame::{ReturnPath, TrapFrame, RFLAGS_TRAP};
use spin::Mutex;

/// Every free frame.
pub static FRAMES: Mutex<FrameAllocator> = Mutex::new(FrameAllocator::new());
/// The system, once boot has built it.
pub static SYSTEM: Mutex<Option<System<Machine>>> = Mutex::new(None);

fn running(system: &mut Option<System<Machine>>) -> &mut System<Machine> {
    system.as_mut().expect("guests run only after boot installed the system")
}

/// Carries out `step` until it is a return to a guest with `frame`. Inline for the common
/// case, a plain return: every hypercall and trap ends here, and a call and return more
/// per hypercall showed in the null-hypercall bench under TCG.
#[inline(always)]
pub fn drive(step: Step, frame: &mut TrapFrame) -> ReturnPath {
    match step {
        Step::Resume(path) => path,
        other => drive_slowly(other, frame),
    }
}

/// [`drive`] for an exit, an idle CPU or a preempted hypercall going on.
#[cold]
fn drive_slowly(mut step: Step, frame: &mut TrapFrame) -> ReturnPath {
    loop {
        match step {
            Step::Resume(path) => return path,
            Step::Exit(status) => exit_device::exit(status),
            Step::Idle => {
                entry::idle_halt();
                step = running(&mut SYSTEM.lock()).resume_after_idle(frame);
            }
            Step::Continue => step = running(&mut SYSTEM.lock()).continue_hypercall(frame),
        }
    }
}

/// Rust side of the `syscall` entry. Returns how to go back to the guest.
#[no_mangle]
extern "C" fn hypercall_dispatch(frame: &mut TrapFrame) -> u64 {
    let step = running(&mut SYSTEM.lock()).system_call(frame);
    drive(step, frame) as u64
}

/// Rust side of every exception and interrupt.
#[no_mangle]
extern "C" fn trap_dispatch(frame: &mut TrapFrame) -> u64 {
    if !frame.from_guest() {
        // The idle loop halts with interrupts on; it finds out what happened itself.
        match frame.vector {
            vector if vector == u64::from(apic::TIMER_VECTOR) => {
                apic::timer_interrupt();
                return ReturnPath::Iret as u64;
            }
            vector if vector == u64::from(apic::SPURIOUS_VECTOR) => return ReturnPath::Iret as u64,
            // A #DB in ring 0 can only be one a guest deferred into the hypervisor (TF or
            // a breakpoint across `mov ss` + `syscall`, XSA-260); it arrived on its own
            // IST stack. Single-stepping the hypervisor is never wanted: drop TF and go on.
            vector if vector == u64::from(hypercall_abi::trap::vector::DEBUG) => {
                frame.rflags &= !RFLAGS_TRAP;
                return ReturnPath::Iret as u64;
            }
            vector if vector == u64::from(apic::CONSOLE_VECTOR) => {
                // The idle loop halts with the system unlocked, so this cannot deadlock;
                // try_lock keeps it that way should an interrupt ever land elsewhere.
                match SYSTEM.try_lock().as_mut().and_then(|guard| guard.as_mut()) {
                    Some(system) => system.receive_console_input(),
                    // Draining is what re-arms the UART's edge; the bytes are lost.
                    None => while console::receive().is_some() {},
                }
                apic::eoi();
                return ReturnPath::Iret as u64;
            }
            _ => {}
        }
        panic!(
            "hypervisor {} (vector {}) at rip {:#x} error {:#x} cr2 {:#x}",
            hypercall_abi::trap::vector::name(frame.vector),
            frame.vector,
            frame.rip,
            frame.error_code,
            cpu::fault_address()
        );
    }
    let step = {
        let mut guard = SYSTEM.lock();
        let system = running(&mut guard);
        match frame.vector {
            vector if vector == u64::from(apic::TIMER_VECTOR) => {
                apic::timer_interrupt();
                system.timer_interrupt(frame)
            }
            vector if vector == u64::from(apic::CONSOLE_VECTOR) => system.console_interrupt(frame),
            _ => system.exception(frame),
        }
    };
    drive(step, frame) as u64
}
