/* PVH entry: QEMU (or any PVH loader) jumps here in 32-bit protected mode, paging off,
 * with %ebx holding the physical address of struct hvm_start_info. We record the TSC,
 * build just enough page tables to reach long mode (the first GiB identity-mapped and
 * the same GiB in PML4 slot 256, where the image is linked), and call into Rust on the
 * hypervisor stack. Rust then builds the real tables and drops the identity map. */

    .section .note.Xen, "a", @note
    .p2align 2
    .long 4                     /* namesz: "Xen\0" */
    .long 4                     /* descsz */
    .long 18                    /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .long pvh_start

    .section .boot.text, "ax"
    .code32
    .global pvh_start
pvh_start:
    cli
    cld
    mov %ebx, %edi
    rdtsc
    mov %eax, boot_entry_tsc
    mov %edx, boot_entry_tsc + 4
    mov %edi, boot_start_info

    /* Long mode needs CPUID leaf 0x80000001 EDX bit 29; say so on COM1 if absent. */
    mov $0x80000000, %eax
    cpuid
    cmp $0x80000001, %eax
    jb no_long_mode
    mov $0x80000001, %eax
    cpuid
    bt $29, %edx
    jnc no_long_mode

    /* Loaders that skip firmware (microvm, PVH) may leave the MTRRs disabled, which
     * makes all memory uncached: ~9 cycles per byte stored. Default to write-back. */
    mov $1, %eax
    cpuid
    bt $12, %edx
    jnc 6f
    mov $0x2ff, %ecx            /* IA32_MTRR_DEF_TYPE */
    rdmsr
    test $0x800, %eax           /* already enabled by firmware: keep its setup */
    jnz 6f
    mov $0x806, %eax            /* enabled, default type write-back */
    wrmsr
6:
    /* PML4[0] and PML4[256] -> one PDPT whose entry 0 -> a PD of 512 2-MiB pages. */
    mov $boot_pdpt, %eax
    or $0x3, %eax
    mov %eax, boot_pml4
    mov %eax, boot_pml4 + 256 * 8
    mov $boot_pd, %eax
    or $0x3, %eax
    mov %eax, boot_pdpt
    xor %ecx, %ecx
1:  mov %ecx, %eax
    shl $21, %eax
    or $0x83, %eax              /* present, writable, 2 MiB */
    mov %eax, boot_pd(,%ecx,8)
    inc %ecx
    cmp $512, %ecx
    jne 1b

    mov %cr4, %eax
    or $0x20, %eax              /* PAE */
    mov %eax, %cr4
    mov $boot_pml4, %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx       /* EFER */
    rdmsr
    or $0x100, %eax             /* LME */
    wrmsr
    mov %cr0, %eax
    or $0x80010001, %eax        /* PG, WP, PE */
    mov %eax, %cr0

    lgdt boot_gdt_pointer
    push $0x08
    push $long_mode_entry
    lret

no_long_mode:
    mov $no_long_mode_message, %esi
2:  movb (%esi), %al
    test %al, %al
    jz 3f
    mov $0x3f8, %dx
    outb %al, %dx
    inc %esi
    jmp 2b
3:  mov $0xf4, %dx
    mov $100, %eax              /* ExitStatus::HYPERVISOR_PANIC */
    outl %eax, %dx
4:  hlt
    jmp 4b

    .code64
long_mode_entry:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %eax, %eax
    mov %ax, %fs
    mov %ax, %gs

    /* Zero .bss (the loader should have, but PVH does not promise it). Eight bytes a
     * step: the linker script aligns both ends, and an emulator (TCG) runs each step of
     * a rep string instruction as one loop iteration, so stosb took 8x as long. */
    movabs $__bss_start, %rdi
    movabs $__bss_end, %rcx
    sub %rdi, %rcx
    shr $3, %rcx
    xor %eax, %eax
    rep stosq

    movabs $boot_stack_top, %rsp
    xor %ebp, %ebp
    mov boot_start_info, %edi   /* zero-extends: the physical address of hvm_start_info */
    movabs $hypervisor_main, %rax
    call *%rax
5:  hlt
    jmp 5b

    .section .boot.data, "aw"
    .p2align 12
boot_pml4:
    .fill 512, 8, 0
boot_pdpt:
    .fill 512, 8, 0
boot_pd:
    .fill 512, 8, 0
    .p2align 3
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff    /* 64-bit code, ring 0 */
    .quad 0x00cf92000000ffff    /* data, ring 0 */
boot_gdt_end:
boot_gdt_pointer:
    .word boot_gdt_end - boot_gdt - 1
    .long boot_gdt
    .global boot_start_info
boot_start_info:
    .long 0
    .p2align 3
    .global boot_entry_tsc
boot_entry_tsc:
    .quad 0
no_long_mode_message:
    .asciz "ringfence: this CPU has no long mode (x86_64); cannot boot\n"
