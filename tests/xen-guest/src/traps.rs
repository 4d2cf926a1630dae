//! Xen's virtual IDT for this guest (set_trap_table, public/arch-x86/xen.h's trap_info)
//! and the entries Xen bounces to. On a bounce Xen has pushed RCX and R11 above the
//! iret frame (and the error code between them and RIP for the exceptions that have
//! one, public/arch-x86/xen-x86_64.h); each entry restores RCX and R11, saves the
//! registers a Rust function may clobber, calls its handler with the error code, and
//! returns through the `iret` hypercall, whose stub expects the flags word pushed on
//! top of the frame (0: not in a syscall context) and then pushes RCX, R11 and RAX.

use core::arch::global_asm;

use crate::xen::{self, FLAT_KERNEL_CS, HYPERVISOR_IRET, HYPERVISOR_SET_CALLBACKS, HYPERVISOR_SET_TRAP_TABLE};

global_asm!(
    r#"
    .macro bounce_entry name, handler, error
    .section .text.bounce, "ax"
    .global \name
\name:
    mov (%rsp), %rcx
    mov 8(%rsp), %r11
    add $16, %rsp
    push %rax
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %r8
    push %r9
    push %r10
    push %r11
    push %rbp
    .if \error
    mov 80(%rsp), %rdi
    .else
    xor %edi, %edi
    .endif
    mov %rsp, %rbp
    and $-16, %rsp
    call \handler
    mov %rbp, %rsp
    pop %rbp
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rax
    .if \error
    add $8, %rsp
    .endif
    pushq $0
    jmp hypercall_page + {iret}
    .endm

    bounce_entry xen_breakpoint_entry, {breakpoint}, 0
    bounce_entry xen_page_fault_entry, {page_fault}, 1
    bounce_entry xen_event_entry, {event}, 0
    bounce_entry xen_failsafe_entry, {failsafe}, 0
    "#,
    iret = const HYPERVISOR_IRET * 32,
    breakpoint = sym crate::exception::on_breakpoint,
    page_fault = sym crate::page_fault::on_page_fault,
    event = sym crate::timer::on_event,
    failsafe = sym on_failsafe,
    options(att_syntax)
);

extern "C" {
    fn xen_breakpoint_entry();
    fn xen_page_fault_entry();
    fn xen_event_entry();
    fn xen_failsafe_entry();
}

/// One virtual IDT entry.
#[repr(C)]
struct TrapInfo {
    vector: u8,
    /// Bits 0-1: the lowest ring that may raise it with `int n` (3: anyone); bit 2: mask
    /// events on entry.
    flags: u8,
    cs: u16,
    address: u64,
}

const BREAKPOINT: u8 = 3;
const PAGE_FAULT: u8 = 14;

/// Installs the #BP and #PF entries (the list ends with a zero address).
pub fn install() {
    let table = [
        TrapInfo {
            vector: BREAKPOINT,
            flags: 3,
            cs: FLAT_KERNEL_CS,
            address: xen_breakpoint_entry as *const () as u64,
        },
        TrapInfo {
            vector: PAGE_FAULT,
            flags: 0,
            cs: FLAT_KERNEL_CS,
            address: xen_page_fault_entry as *const () as u64,
        },
        TrapInfo { vector: 0, flags: 0, cs: 0, address: 0 },
    ];
    let result = xen::hypercall(HYPERVISOR_SET_TRAP_TABLE, table.as_ptr() as u64, 0, 0);
    if result != 0 {
        panic!("set_trap_table failed: {result}");
    }
}

/// Registers the event upcall (and a failsafe entry, which Xen uses when it cannot load
/// a segment on return; this guest never changes one).
pub fn set_event_callback() {
    let result = xen::hypercall(
        HYPERVISOR_SET_CALLBACKS,
        xen_event_entry as *const () as u64,
        xen_failsafe_entry as *const () as u64,
        0,
    );
    if result != 0 {
        panic!("set_callbacks failed: {result}");
    }
}

extern "C" fn on_failsafe(_: u64) {
    panic!("Xen's failsafe callback ran");
}
