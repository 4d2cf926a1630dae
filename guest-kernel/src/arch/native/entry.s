/* Every way between user mode and the kernel. The kernel has one stack: entering user
 * mode saves the callee-saved registers and the stack pointer (also as the TSS's RSP0,
 * so interrupts from user mode land just below) and leaves by sysretq or iretq; every way
 * back (syscall, an exception or interrupt from ring 3) stores the user registers into
 * the UserRegisters being run and returns from native_enter_user, on that same stack,
 * with the vector (SYSCALL_VECTOR for syscall) in RAX and the error code in RDX.
 * Interrupts are off throughout (FMASK clears IF on syscall; every IDT gate is an
 * interrupt gate). Traps from ring 0 (interrupts inside the idle halt, NMIs, kernel
 * bugs) take native_kernel_trap instead: registers pushed, Rust called, iretq. */

    .section .text.native_entry, "ax"

/* fn native_enter_user(registers: *mut UserRegisters, rsp0: *mut u64, sysret: u64)
 *     -> (vector, error code)
 * sysret != 0: leave by sysretq (the caller checked RIP is a canonical user address and
 * that RCX = RIP and R11 = RFLAGS, which sysretq loads from them). */
    .global native_enter_user
native_enter_user:
    push rbx
    push rbp
    push r12
    push r13
    push r14
    push r15
    mov [rip + native_kernel_rsp], rsp
    mov [rsi], rsp
    mov [rip + native_user_registers], rdi
    test rdx, rdx
    jz 1f
    mov rcx, [rdi + {rip}]
    mov r11, [rdi + {rflags}]
    mov rax, [rdi + {rax}]
    mov rbx, [rdi + {rbx}]
    mov rdx, [rdi + {rdx}]
    mov rsi, [rdi + {rsi}]
    mov rbp, [rdi + {rbp}]
    mov r8, [rdi + {r8}]
    mov r9, [rdi + {r9}]
    mov r10, [rdi + {r10}]
    mov r12, [rdi + {r12}]
    mov r13, [rdi + {r13}]
    mov r14, [rdi + {r14}]
    mov r15, [rdi + {r15}]
    mov rsp, [rdi + {rsp}]
    mov rdi, [rdi + {rdi}]
    sysretq
1:  push {user_data}
    push qword ptr [rdi + {rsp}]
    push qword ptr [rdi + {rflags}]
    push {user_code}
    push qword ptr [rdi + {rip}]
    mov rax, [rdi + {rax}]
    mov rbx, [rdi + {rbx}]
    mov rcx, [rdi + {rcx}]
    mov rdx, [rdi + {rdx}]
    mov rsi, [rdi + {rsi}]
    mov rbp, [rdi + {rbp}]
    mov r8, [rdi + {r8}]
    mov r9, [rdi + {r9}]
    mov r10, [rdi + {r10}]
    mov r11, [rdi + {r11}]
    mov r12, [rdi + {r12}]
    mov r13, [rdi + {r13}]
    mov r14, [rdi + {r14}]
    mov r15, [rdi + {r15}]
    mov rdi, [rdi + {rdi}]
    iretq

/* Back to native_enter_user's caller: RAX = vector, RDX = error code. An interrupt gate
 * leaves the user's DF and AC set, which Rust code (DF clear by the ABI) and SMAP (off
 * while AC is set) cannot have: the kernel's flags are reset to all clear. After an
 * interrupt from ring 3, SS holds a null selector; it gets the kernel's again, so that a
 * later sysretq (which on AMD keeps the hidden SS attributes) leaves a usable one. */
native_leave_user:
    mov rsp, [rip + native_kernel_rsp]
    push 0x2
    popfq
    mov ecx, {kernel_data}
    mov ss, ecx
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbp
    pop rbx
    ret

/* syscall from ring 3: RCX = return RIP, R11 = RFLAGS, RSP still the user's. */
    .global native_syscall_entry
    .p2align 6
native_syscall_entry:
    mov [rip + native_user_rsp_scratch], rsp
    mov rsp, [rip + native_user_registers]
    mov [rsp + {rax}], rax
    mov [rsp + {rbx}], rbx
    mov [rsp + {rcx}], rcx
    mov [rsp + {rdx}], rdx
    mov [rsp + {rsi}], rsi
    mov [rsp + {rdi}], rdi
    mov [rsp + {rbp}], rbp
    mov [rsp + {r8}], r8
    mov [rsp + {r9}], r9
    mov [rsp + {r10}], r10
    mov [rsp + {r11}], r11
    mov [rsp + {r12}], r12
    mov [rsp + {r13}], r13
    mov [rsp + {r14}], r14
    mov [rsp + {r15}], r15
    mov [rsp + {rip}], rcx
    mov [rsp + {rflags}], r11
    mov rax, [rip + native_user_rsp_scratch]
    mov [rsp + {rsp}], rax
    mov eax, {syscall_vector}
    xor edx, edx
    jmp native_leave_user

/* One stub per vector: a zero error code where the CPU pushes none, then the vector. */
    .macro TRAP_STUB vector, has_error_code
    .p2align 4
native_trap_\vector:
    .if \has_error_code == 0
    push 0
    .endif
    push \vector
    jmp native_trap_common
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

    TRAP_STUBS 0, 255

/* [rsp] vector, +8 error code, +16 RIP, +24 CS, +32 RFLAGS, +40 RSP, +48 SS. */
native_trap_common:
    test byte ptr [rsp + 24], 3
    jz native_kernel_trap
    push rax
    mov rax, [rip + native_user_registers]
    mov [rax + {rbx}], rbx
    mov [rax + {rcx}], rcx
    mov [rax + {rdx}], rdx
    mov [rax + {rsi}], rsi
    mov [rax + {rdi}], rdi
    mov [rax + {rbp}], rbp
    mov [rax + {r8}], r8
    mov [rax + {r9}], r9
    mov [rax + {r10}], r10
    mov [rax + {r11}], r11
    mov [rax + {r12}], r12
    mov [rax + {r13}], r13
    mov [rax + {r14}], r14
    mov [rax + {r15}], r15
    pop rbx
    mov [rax + {rax}], rbx
    mov rbx, [rsp + 16]
    mov [rax + {rip}], rbx
    mov rbx, [rsp + 32]
    mov [rax + {rflags}], rbx
    mov rbx, [rsp + 40]
    mov [rax + {rsp}], rbx
    mov rdx, [rsp + 8]
    mov rax, [rsp]
    cmp rax, 14
    jne 2f
    mov rcx, cr2
    mov [rip + native_fault_address], rcx
2:  jmp native_leave_user

/* A trap in ring 0. The processor aligned RSP to 16 before its 5 pushes; with the two of
 * the stub and these 15, the call below finds the alignment the ABI wants. */
native_kernel_trap:
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
    cld
    mov rdi, rsp
    call native_kernel_trap_handler
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
    add rsp, 16
    iretq

/* fn native_idle_halt(): waits with interrupts on until one has been taken, and returns
 * with them off. STI holds interrupts off for one more instruction, so an interrupt
 * already pending is taken after HLT has begun, waking it, and none slips in between
 * (which would sleep through its wake-up). */
    .global native_idle_halt
native_idle_halt:
    sti
    hlt
    cli
    ret

/* Extended state: RDI = the area (64-byte aligned), RSI = the XSAVE component mask. */
    .global native_xsave
native_xsave:
    mov eax, esi
    mov rdx, rsi
    shr rdx, 32
    xsave64 [rdi]
    ret

    .global native_xrstor
native_xrstor:
    mov eax, esi
    mov rdx, rsi
    shr rdx, 32
    xrstor64 [rdi]
    ret

    .global native_fxsave
native_fxsave:
    fxsave64 [rdi]
    ret

    .global native_fxrstor
native_fxrstor:
    fxrstor64 [rdi]
    ret

    .macro STUB_ADDRESS vector
    .quad native_trap_\vector
    .endm

    .section .rodata.native_trap_stubs, "a"
    .p2align 3
    .global native_trap_stubs
native_trap_stubs:
    .set vector, 0
    .rept 256
    STUB_ADDRESS %vector
    .set vector, vector + 1
    .endr

    .section .bss.native_entry, "aw", @nobits
    .p2align 3
native_kernel_rsp:
    .quad 0
native_user_registers:
    .quad 0
native_user_rsp_scratch:
    .quad 0
    .global native_fault_address
native_fault_address:
    .quad 0

    .section .stack.native_interrupts, "aw", @nobits
    .p2align 4
    .space 16384
    .global native_double_fault_stack_top
native_double_fault_stack_top:
    .space 16384
    .global native_nmi_stack_top
native_nmi_stack_top:
    .space 16384
    .global native_machine_check_stack_top
native_machine_check_stack_top:
    .space 16384
    .global native_debug_stack_top
native_debug_stack_top:

    .noaltmacro
