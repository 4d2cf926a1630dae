//! Direct access to the SSE and AVX registers, for tests that the hypervisor keeps a
//! domain's extended state its own (SPEC.md §14: eager save and restore on every
//! domain switch).
//!
//! Guests are built for `x86_64-unknown-none`, which is soft-float: the compiler never
//! allocates an XMM or YMM register, so asm here may load and store them without
//! declaring them (it could not: the target has no vector register class). That is also
//! why this module exists only inside a domain.

/// The 16 XMM registers, two u64 each (low first).
pub type XmmState = [[u64; 2]; 16];
/// The 16 YMM registers, four u64 each (low first).
pub type YmmState = [[u64; 4]; 16];

/// MXCSR after reset / in the init state.
pub const MXCSR_INIT: u32 = 0x1f80;

/// CPUID leaf 1 ECX: (AVX, OSXSAVE).
fn cpuid_1_ecx() -> u32 {
    #[allow(unused_unsafe)]
    // SAFETY: CPUID exists on every x86_64 CPU and only writes the four result registers.
    let result = unsafe { core::arch::x86_64::__cpuid(1) };
    result.ecx
}

/// True if AVX instructions may be used: the CPU has AVX, the OS (the hypervisor) set
/// CR4.OSXSAVE, and XCR0 enables both SSE and AVX state.
pub fn avx_usable() -> bool {
    let ecx = cpuid_1_ecx();
    let avx = ecx & (1 << 28) != 0;
    let osxsave = ecx & (1 << 27) != 0;
    if !(avx && osxsave) {
        return false;
    }
    // SAFETY: XGETBV with ECX = 0 is allowed at any privilege once CR4.OSXSAVE is set,
    // which CPUID just reported (and OSXSAVE implies the CPU has XSAVE).
    let xcr0 = unsafe { core::arch::x86_64::_xgetbv(0) };
    xcr0 & 0b110 == 0b110
}

/// Loads XMM0..XMM15 from `values`.
pub fn write_xmm(values: &XmmState) {
    // SAFETY: unaligned loads from a live 256-byte array into registers the compiler never
    // uses on this soft-float target (see the module text).
    unsafe {
        core::arch::asm!(
            "movdqu xmm0, [{p}]", "movdqu xmm1, [{p} + 16]", "movdqu xmm2, [{p} + 32]", "movdqu xmm3, [{p} + 48]",
            "movdqu xmm4, [{p} + 64]", "movdqu xmm5, [{p} + 80]", "movdqu xmm6, [{p} + 96]", "movdqu xmm7, [{p} + 112]",
            "movdqu xmm8, [{p} + 128]", "movdqu xmm9, [{p} + 144]", "movdqu xmm10, [{p} + 160]", "movdqu xmm11, [{p} + 176]",
            "movdqu xmm12, [{p} + 192]", "movdqu xmm13, [{p} + 208]", "movdqu xmm14, [{p} + 224]", "movdqu xmm15, [{p} + 240]",
            p = in(reg) values.as_ptr(),
            options(nostack, readonly, preserves_flags),
        )
    }
}

/// Stores XMM0..XMM15.
pub fn read_xmm() -> XmmState {
    let mut values = [[0u64; 2]; 16];
    // SAFETY: unaligned stores of the vector registers into a live, exclusively borrowed
    // 256-byte array.
    unsafe {
        core::arch::asm!(
            "movdqu [{p}], xmm0", "movdqu [{p} + 16], xmm1", "movdqu [{p} + 32], xmm2", "movdqu [{p} + 48], xmm3",
            "movdqu [{p} + 64], xmm4", "movdqu [{p} + 80], xmm5", "movdqu [{p} + 96], xmm6", "movdqu [{p} + 112], xmm7",
            "movdqu [{p} + 128], xmm8", "movdqu [{p} + 144], xmm9", "movdqu [{p} + 160], xmm10", "movdqu [{p} + 176], xmm11",
            "movdqu [{p} + 192], xmm12", "movdqu [{p} + 208], xmm13", "movdqu [{p} + 224], xmm14", "movdqu [{p} + 240], xmm15",
            p = in(reg) values.as_mut_ptr(),
            options(nostack, preserves_flags),
        )
    };
    values
}

/// Loads YMM0..YMM15 from `values`. Only if [`avx_usable`] (else #UD).
pub fn write_ymm(values: &YmmState) {
    // SAFETY: as for `write_xmm`, 512 bytes; the caller checked AVX (a #UD otherwise is a
    // clean trap, not memory unsafety).
    unsafe {
        core::arch::asm!(
            "vmovdqu ymm0, [{p}]", "vmovdqu ymm1, [{p} + 32]", "vmovdqu ymm2, [{p} + 64]", "vmovdqu ymm3, [{p} + 96]",
            "vmovdqu ymm4, [{p} + 128]", "vmovdqu ymm5, [{p} + 160]", "vmovdqu ymm6, [{p} + 192]", "vmovdqu ymm7, [{p} + 224]",
            "vmovdqu ymm8, [{p} + 256]", "vmovdqu ymm9, [{p} + 288]", "vmovdqu ymm10, [{p} + 320]", "vmovdqu ymm11, [{p} + 352]",
            "vmovdqu ymm12, [{p} + 384]", "vmovdqu ymm13, [{p} + 416]", "vmovdqu ymm14, [{p} + 448]", "vmovdqu ymm15, [{p} + 480]",
            p = in(reg) values.as_ptr(),
            options(nostack, readonly, preserves_flags),
        )
    }
}

/// Stores YMM0..YMM15. Only if [`avx_usable`].
pub fn read_ymm() -> YmmState {
    let mut values = [[0u64; 4]; 16];
    // SAFETY: as for `read_xmm`, 512 bytes.
    unsafe {
        core::arch::asm!(
            "vmovdqu [{p}], ymm0", "vmovdqu [{p} + 32], ymm1", "vmovdqu [{p} + 64], ymm2", "vmovdqu [{p} + 96], ymm3",
            "vmovdqu [{p} + 128], ymm4", "vmovdqu [{p} + 160], ymm5", "vmovdqu [{p} + 192], ymm6", "vmovdqu [{p} + 224], ymm7",
            "vmovdqu [{p} + 256], ymm8", "vmovdqu [{p} + 288], ymm9", "vmovdqu [{p} + 320], ymm10", "vmovdqu [{p} + 352], ymm11",
            "vmovdqu [{p} + 384], ymm12", "vmovdqu [{p} + 416], ymm13", "vmovdqu [{p} + 448], ymm14", "vmovdqu [{p} + 480], ymm15",
            p = in(reg) values.as_mut_ptr(),
            options(nostack, preserves_flags),
        )
    };
    values
}

/// MXCSR.
pub fn read_mxcsr() -> u32 {
    let mut value = 0u32;
    // SAFETY: stores MXCSR into a live local.
    unsafe { core::arch::asm!("stmxcsr [{}]", in(reg) &mut value as *mut u32, options(nostack, preserves_flags)) };
    value
}

/// Loads MXCSR (reserved bits set raise #GP).
pub fn write_mxcsr(value: u32) {
    // SAFETY: loads MXCSR from a live local; the compiler does no floating point on this
    // target, so no code depends on its rounding or exception masks.
    unsafe {
        core::arch::asm!("ldmxcsr [{}]", in(reg) &value as *const u32, options(nostack, readonly, preserves_flags))
    };
}
