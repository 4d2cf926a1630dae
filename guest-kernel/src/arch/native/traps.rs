//! Interrupts and exceptions: the vectors, the legacy PICs (masked), what each
//! interrupt means, and the handler of traps taken in ring 0 (`native_kernel_trap` in
//! entry.s). Traps from ring 3 end a user run instead ([`super::user`]).

use super::console::{self, report};
use super::{apic, clock};
use crate::arch::machine::{Access, Trap};
use core::sync::atomic::{AtomicBool, Ordering};
use x86_64::instructions::port::Port;

/// The local APIC timer's vector.
pub const TIMER_VECTOR: u8 = 0x40;
/// COM1's receive interrupt, routed by the I/O APIC.
pub const CONSOLE_VECTOR: u8 = 0x41;
/// The APIC's spurious vector (no end-of-interrupt).
pub const SPURIOUS_VECTOR: u8 = 0xff;
/// What `entry.s` reports for `syscall` (beyond the 256 vectors).
pub const SYSCALL_VECTOR: u64 = 0x100;

const NMI: u64 = 2;
const DOUBLE_FAULT: u64 = 8;
const PAGE_FAULT: u64 = 14;
const MACHINE_CHECK: u64 = 18;

/// Set by an interrupt the kernel must hear about; cleared by `idle` before it halts.
static EVENT: AtomicBool = AtomicBool::new(false);

/// Masks both 8259 PICs: the I/O APIC delivers the one device interrupt the kernel
/// takes, and a PIC left programmed by firmware onto vectors 8–15 would look like CPU
/// exceptions.
pub fn mask_legacy_controllers() {
    // SAFETY: the PICs' interrupt-mask registers; masking every line is all this does, and
    // on a machine without PICs the ports are unclaimed.
    unsafe {
        Port::<u8>::new(0x21).write(0xff);
        Port::<u8>::new(0xa1).write(0xff);
    }
}

/// Handles interrupt `vector` (32–255): `true` if the kernel must hear about it (the
/// timer's deadline passed, console input, an unexpected device), `false` if it was the
/// platform's alone (a countdown that ended early, a spurious interrupt).
pub fn interrupt(vector: u64) -> bool {
    match vector {
        v if v == u64::from(TIMER_VECTOR) => apic::timer_interrupt(clock::hz()),
        v if v == u64::from(CONSOLE_VECTOR) => {
            console::receive();
            apic::end_of_interrupt();
            true
        }
        v if v == u64::from(SPURIOUS_VECTOR) => false,
        _ => {
            // No other source is programmed; acknowledge it, and let the kernel look.
            apic::end_of_interrupt();
            true
        }
    }
}

/// Takes the event flag (see [`EVENT`]).
pub fn take_event() -> bool {
    EVENT.swap(false, Ordering::Relaxed)
}

/// What a trap from user mode means for the kernel; `None` if it was the platform's alone
/// and the user run simply continues. Fatal hardware errors end the machine here.
pub fn user_trap(vector: u64, error_code: u64, fault_address: u64) -> Option<Trap> {
    match vector {
        SYSCALL_VECTOR => Some(Trap::SystemCall),
        PAGE_FAULT => {
            let access = if error_code & (1 << 4) != 0 {
                Access::Execute
            } else if error_code & (1 << 1) != 0 {
                Access::Write
            } else {
                Access::Read
            };
            Some(Trap::PageFault { address: fault_address, access, present: error_code & 1 != 0 })
        }
        // An NMI ends the run like any interrupt; the kernel decides what is due.
        NMI => Some(Trap::Interrupt),
        MACHINE_CHECK | DOUBLE_FAULT => {
            console::break_locks_for_fatal_report();
            report!("{} in user mode: the machine cannot continue (error code {error_code:#x})", name(vector));
            super::end(super::ending::Ending::Crash, 1);
        }
        0..=31 => Some(Trap::Exception { vector: vector as u8, error_code }),
        _ => interrupt(vector).then_some(Trap::Interrupt),
    }
}

/// The registers `native_kernel_trap` pushes, then what the stub and the processor did.
#[repr(C)]
pub struct KernelFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// A trap in ring 0: an interrupt while idle, an NMI, or a kernel bug.
#[no_mangle]
extern "C" fn native_kernel_trap_handler(frame: &mut KernelFrame) {
    match frame.vector {
        // An NMI (a watchdog, QEMU's `nmi` command) means nothing to this kernel.
        NMI => {}
        0..=31 => {
            console::break_locks_for_fatal_report();
            report!(
                "kernel {} (vector {}) at rip {:#x}, error code {:#x}, cr2 {:#x}",
                name(frame.vector),
                frame.vector,
                frame.rip,
                frame.error_code,
                x86_64::registers::control::Cr2::read_raw()
            );
            report!(
                "  rax {:#x} rbx {:#x} rcx {:#x} rdx {:#x} rsi {:#x} rdi {:#x} rbp {:#x} rsp {:#x}",
                frame.rax,
                frame.rbx,
                frame.rcx,
                frame.rdx,
                frame.rsi,
                frame.rdi,
                frame.rbp,
                frame.rsp
            );
            report!(
                "  r8 {:#x} r9 {:#x} r10 {:#x} r11 {:#x} r12 {:#x} r13 {:#x} r14 {:#x} r15 {:#x} rflags {:#x}",
                frame.r8,
                frame.r9,
                frame.r10,
                frame.r11,
                frame.r12,
                frame.r13,
                frame.r14,
                frame.r15,
                frame.rflags
            );
            super::end(super::ending::Ending::Crash, 1);
        }
        vector => {
            if interrupt(vector) {
                EVENT.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// The exception's name, for reports.
pub fn name(vector: u64) -> &'static str {
    const NAMES: [&str; 32] = [
        "divide error",
        "debug exception",
        "NMI",
        "breakpoint",
        "overflow",
        "bound range exceeded",
        "invalid opcode",
        "device not available",
        "double fault",
        "coprocessor segment overrun",
        "invalid TSS",
        "segment not present",
        "stack-segment fault",
        "general protection fault",
        "page fault",
        "reserved exception 15",
        "x87 floating-point error",
        "alignment check",
        "machine check",
        "SIMD floating-point exception",
        "virtualization exception",
        "control protection exception",
        "reserved exception 22",
        "reserved exception 23",
        "reserved exception 24",
        "reserved exception 25",
        "reserved exception 26",
        "reserved exception 27",
        "hypervisor injection exception",
        "VMM communication exception",
        "security exception",
        "reserved exception 31",
    ];
    usize::try_from(vector).ok().and_then(|index| NAMES.get(index)).copied().unwrap_or("interrupt")
}
