/* The PVH entry. QEMU (or any PVH loader) jumps to native_pvh_start in 32-bit protected
 * mode with paging off and EBX holding the physical address of the start info. This
 * records the TSC and the start info, turns on long mode with the static tables below
 * (the first GiB identity-mapped for this code, the same GiB at the direct map's base
 * for the start info, and the kernel image at its link address) and calls
 * native_boot_main on the kernel stack. Rust then builds the real tables, without the
 * identity map. */

    .section .note.Xen, "a", @note
    .p2align 2
    .long 4                         /* name size: "Xen\0" */
    .long 4                         /* descriptor size */
    .long 18                        /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .long native_pvh_start

    .section .boot.text, "ax"
    .code32
    .global native_pvh_start
native_pvh_start:
    cli
    cld
    mov esi, ebx
    rdtsc
    mov dword ptr [native_boot_entry_tsc], eax
    mov dword ptr [native_boot_entry_tsc + 4], edx
    mov dword ptr [native_boot_start_info], esi

    /* Long mode (CPUID 0x80000001 EDX bit 29) and no-execute (bit 20) are required. */
    mov eax, 0x80000000
    cpuid
    cmp eax, 0x80000001
    jb 8f
    mov eax, 0x80000001
    cpuid
    bt edx, 29
    jnc 8f
    bt edx, 20
    jnc 8f

    mov eax, cr4
    or eax, 0x20                    /* PAE */
    mov cr4, eax
    mov eax, offset boot_pml4
    mov cr3, eax
    mov ecx, 0xc0000080             /* IA32_EFER */
    rdmsr
    or eax, 0x900                   /* LME, NXE */
    wrmsr
    mov eax, cr0
    or eax, 0x80000001              /* PG, PE */
    mov cr0, eax

    lgdt [boot_gdt_pointer]
    push 0x08
    mov eax, offset long_mode_entry
    push eax
    retf

    /* No long mode: say so on COM1 and end the run as a crash (the last line and the
     * device value of ending.rs, for code 1). */
8:  mov esi, offset no_long_mode_message
1:  mov al, byte ptr [esi]
    test al, al
    jz 2f
    mov dx, 0x3f8
    out dx, al
    inc esi
    jmp 1b
2:  mov dx, {exit_port}
    mov eax, {crash_value}
    out dx, eax
3:  hlt
    jmp 3b

    .code64
long_mode_entry:
    mov eax, 0x10
    mov ds, eax
    mov es, eax
    mov ss, eax
    xor eax, eax
    mov fs, eax
    mov gs, eax

    /* .bss is zero-filled by QEMU's loader, but PVH does not promise it. (The stacks lie
     * past it: their contents do not matter, and touching each of their pages costs a
     * host exit under shadow paging.) */
    movabs rdi, offset __bss_start
    movabs rcx, offset __bss_end
    sub rcx, rdi
    xor eax, eax
    rep stosb

    movabs rsp, offset native_stack_top
    xor ebp, ebp
    mov edi, dword ptr [rip + native_boot_start_info]
    mov rsi, qword ptr [rip + native_boot_entry_tsc]
    movabs rax, offset native_boot_main
    call rax
4:  hlt
    jmp 4b

    .section .boot.data, "aw"
    .p2align 12
boot_pml4:
    .quad boot_pdpt_low + 0x3       /* slot 0: the identity map of the first GiB */
    .fill 383, 8, 0
    .quad boot_pdpt_low + 0x3       /* slot 384: the same GiB at the direct map's base */
    .fill 126, 8, 0
    .quad boot_pdpt_high + 0x3      /* slot 511: the kernel image */
boot_pdpt_low:
    .quad boot_pd_low + 0x3
    .fill 511, 8, 0
boot_pdpt_high:
    .fill 510, 8, 0
    .quad boot_pd_kernel + 0x3      /* 0xffff_ffff_8000_0000 */
    .quad 0
boot_pd_low:
    .set page, 0
    .rept 512
    .quad (page << 21) + 0x83       /* present, writable, 2 MiB */
    .set page, page + 1
    .endr
boot_pd_kernel:
    .set page, 0
    .rept 512
    .quad KERNEL_PHYSICAL_BASE + (page << 21) + 0x83
    .set page, page + 1
    .endr

    .p2align 3
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff        /* 64-bit code, ring 0 */
    .quad 0x00cf92000000ffff        /* data, ring 0 */
boot_gdt_pointer:
    .word boot_gdt_pointer - boot_gdt - 1
    .long boot_gdt

    .p2align 3
    .global native_boot_entry_tsc
native_boot_entry_tsc:
    .quad 0
native_boot_start_info:
    .long 0
no_long_mode_message:
    .ascii "native: cannot boot: this CPU has no long mode or no no-execute bit (x86_64 with NX is required)\r\n"
    .asciz "native: crash, code 1\r\n"

    /* The kernel stack, above a guard page the kernel's tables leave unmapped, so an
     * overflow is a page fault (then a double fault on its own stack), not corruption. */
    .section .stack.native_kernel, "aw", @nobits
    .p2align 12
    .global native_stack_guard
native_stack_guard:
    .space 4096
native_stack_bottom:
    .space {stack_size}
    .global native_stack_top
native_stack_top:

    /* The physical layout the linker script chose, for the kernel's tables (paging.rs,
     * ImageLayout): read from the image's rodata, so the numbers live only in native.ld. */
    .section .rodata.native_layout, "a"
    .p2align 3
    .global native_layout
native_layout:
    .quad KERNEL_PHYSICAL_BASE
    .quad __boot_start
    .quad __boot_end
