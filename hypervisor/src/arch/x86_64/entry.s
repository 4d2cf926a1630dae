/* Every way into the hypervisor from a guest, and the one way back.
 * All entries build a TrapFrame (src/trap_frame.rs) on the hypervisor stack and call
 * Rust with a pointer to it; Rust may rewrite the whole frame (to switch domains) and
 * answers 0 (return by sysretq) or 1 (return by iretq). The hypervisor runs with
 * interrupts off, so the single stack is never re-entered. #DB (and NMI, #DF, #MC)
 * arrive on their own IST stacks instead (descriptors.rs), which the hypervisor leaves
 * before any guest runs again, so a guest event cannot find one of them in use. */

    .macro SAVE_GENERAL_REGISTERS
    push rax
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
    .endm

    .macro RESTORE_GENERAL_REGISTERS
    pop r15
    pop r14
    pop r13
    pop r12
    pop r11
    pop r10
    pop r9
    pop r8
    pop rbp
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rbx
    pop rax
    .endm

    .section .text.entry, "ax"

/* syscall from ring 3: RCX = guest RIP, R11 = guest RFLAGS, RSP still the guest's.
 * FMASK has cleared IF, DF, TF, AC and NT. */
    .global hypercall_entry
    .p2align 6
hypercall_entry:
    mov [rip + guest_stack_scratch], rsp
    lea rsp, [rip + hypervisor_stack_top]
    push 0x1b                           /* ss */
    push [rip + guest_stack_scratch]    /* rsp */
    push r11                            /* rflags */
    push 0x23                           /* cs */
    push rcx                            /* rip */
    push 0                              /* error code */
    push 0x100                          /* HYPERCALL_VECTOR */
    SAVE_GENERAL_REGISTERS
    mov rdi, rsp
    call hypercall_dispatch
    jmp return_to_guest

trap_common:
    SAVE_GENERAL_REGISTERS
    cld
    /* A guest may enter with RFLAGS.AC set; clear it so SMAP stays in force. */
    pushfq
    and qword ptr [rsp], ~0x40000
    popfq
    mov rdi, rsp
    call trap_dispatch
    jmp return_to_guest

/* RAX = 0: sysretq, else iretq. RSP points at a TrapFrame. */
return_to_guest:
    test rax, rax
    jnz 1f
    RESTORE_GENERAL_REGISTERS
    mov rcx, [rsp + 16]                 /* rip (after vector, error code) */
    mov r11, [rsp + 32]                 /* rflags */
    mov rsp, [rsp + 40]                 /* rsp */
    sysretq
1:  RESTORE_GENERAL_REGISTERS
    add rsp, 16
    iretq

/* fn enter_guest(frame: *const TrapFrame) -> ! : first entry into a domain. The frame
 * lives in a static, not on the stack this abandons. */
    .global enter_guest
enter_guest:
    mov rsp, rdi
    mov rax, 1
    jmp return_to_guest

/* Exceptions and interrupts. Stubs push a zero error code where the CPU pushes none,
 * then the vector. They have a section of their own, placed after the hot Rust code
 * (hypervisor.ld), so that the paths every entry shares stay on one page with it; the
 * stubs guests hit (exceptions, the timer) are the first 33 of these 16-byte slots. */
    .macro TRAP_STUB vector, has_error_code
    .p2align 4
trap_stub_\vector:
    .if \has_error_code == 0
    push 0
    .endif
    push \vector
    jmp trap_common
    .endm

    .altmacro
    .macro TRAP_STUBS first, last
    .set vector, \first
    .rept \last - \first + 1
    .if vector == 8 || (vector >= 10 && vector <= 14) || vector == 17 || vector == 21 || vector == 29 || vector == 30
    TRAP_STUB %vector, 1
    .else
    TRAP_STUB %vector, 0
    .endif
    .set vector, vector + 1
    .endr
    .endm

    .section .text.trap_stubs, "ax"
    TRAP_STUBS 0, 255

    .section .text.entry, "ax"

/* fn idle_halt(): waits for an interrupt with interrupts on, then turns them off again.
 * `sti` holds interrupts off for one more instruction, so none is taken between it and
 * `hlt` (which would sleep through its wake-up). */
    .global idle_halt
idle_halt:
    sti
    hlt
    cli
    ret

/* Extended (x87/SSE/AVX) state of the running domain, saved and restored on every
 * domain switch (SPEC.md: eager switching). RDI = 64-byte aligned area, RSI =
 * requested-feature bitmap (EDX:EAX for xsave/xrstor). */
    .global extended_state_xsave
extended_state_xsave:
    mov eax, esi
    mov rdx, rsi
    shr rdx, 32
    xsave64 [rdi]
    ret

    .global extended_state_xrstor
extended_state_xrstor:
    mov eax, esi
    mov rdx, rsi
    shr rdx, 32
    xrstor64 [rdi]
    ret

    .global extended_state_fxsave
extended_state_fxsave:
    fxsave64 [rdi]
    ret

    .global extended_state_fxrstor
extended_state_fxrstor:
    fxrstor64 [rdi]
    ret

    .macro STUB_ADDRESS vector
    .quad trap_stub_\vector
    .endm

    .section .rodata.trap_stubs, "a"
    .p2align 3
    .global trap_stub_table
trap_stub_table:
    .set vector, 0
    .rept 256
    STUB_ADDRESS %vector
    .set vector, vector + 1
    .endr

    .section .bss.stacks, "aw", @nobits
    .p2align 12
    .global hypervisor_stack_bottom
hypervisor_stack_bottom:
    .space 65536 - 16
    .global hypervisor_stack_top
hypervisor_stack_top:
/* Above the stack, on the page its top uses (one page fewer per entry for the TLB to
 * refill after a guest page-table switch): where `hypercall_entry` keeps the guest's RSP
 * until it pushes it. */
guest_stack_scratch:
    .quad 0, 0
    .global boot_stack_top
    .set boot_stack_top, hypervisor_stack_top
    .p2align 12
    .global critical_stack_bottom
critical_stack_bottom:
    .space 16384
    .global critical_stack_top
critical_stack_top:
    .p2align 12
    .global debug_stack_bottom
debug_stack_bottom:
    .space 16384
    .global debug_stack_top
debug_stack_top:
