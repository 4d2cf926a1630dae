//! The asm around a Rust handler: the entry stub that saves the registers as a
//! [`TrapContext`](super::TrapContext), and `iret`, which resumes a frame.

use hypercall_abi::trap::IretFrame;

/// Resumes the context in `frame` with the `iret` hypercall; registers other than RAX,
/// RCX, R11, RIP, RSP and RFLAGS keep the values they have here.
///
/// # Safety
///
/// The frame must name a context that is sound to continue in: its code, its stack and
/// everything Rust state it relies on. (A frame the hypervisor refuses kills the domain:
/// that is what conformance tests use this for.)
pub unsafe fn iret(frame: &IretFrame) -> ! {
    #[cfg(all(target_arch = "x86_64", target_os = "none"))]
    {
        // SAFETY: copies the 72-byte frame below the current stack pointer (no red zone on
        // this target, and nothing of ours lives there) and issues `iret`, which consumes
        // it and never returns here; the caller vouches for the context it resumes.
        unsafe {
            core::arch::asm!(
                "sub rsp, 80",
                "and rsp, -16",
                "mov rax, [rsi]", "mov [rsp], rax",
                "mov rax, [rsi + 8]", "mov [rsp + 8], rax",
                "mov rax, [rsi + 16]", "mov [rsp + 16], rax",
                "mov rax, [rsi + 24]", "mov [rsp + 24], rax",
                "mov rax, [rsi + 32]", "mov [rsp + 32], rax",
                "mov rax, [rsi + 40]", "mov [rsp + 40], rax",
                "mov rax, [rsi + 48]", "mov [rsp + 48], rax",
                "mov rax, [rsi + 56]", "mov [rsp + 56], rax",
                "mov rax, [rsi + 64]", "mov [rsp + 64], rax",
                "mov eax, {iret}",
                crate::hypercall::hypercall_instruction!(),
                "ud2",
                in("rsi") frame as *const IretFrame,
                iret = const hypercall_abi::Hypercall::IRET.0,
                options(noreturn),
            )
        }
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "none")))]
    {
        let _ = frame;
        panic!("iret outside a ringfence domain")
    }
}

/// Emits an entry stub named `$label` that saves the registers as a
/// [`TrapContext`](super::TrapContext), calls `$handler(&mut TrapContext)` and returns
/// with the `iret` hypercall. At the first instruction RSP points at the ExceptionFrame,
/// which the hypervisor placed at (stack & !15) - 104, so RSP = 8 (mod 16). Twelve pushes
/// and the alignment slot make RSP = 0 (mod 16) at the call, as the C ABI requires. After
/// the handler, the registers come back (possibly changed), RSP steps over the 32-byte
/// header to the IretFrame, and `iret` resumes frame.iret (RAX = the hypercall number is
/// fine: iret loads RAX from the frame, and the upcall mask from its IF).
macro_rules! entry_stub {
    ($label:literal, $handler:path) => {
        #[cfg(all(target_arch = "x86_64", target_os = "none"))]
        core::arch::global_asm!(
            concat!(".pushsection .text.", $label, ", \"ax\", @progbits"),
            concat!(".global ", $label),
            ".balign 16",
            concat!($label, ":"),
            "push rbx",
            "push rdx",
            "push rsi",
            "push rdi",
            "push rbp",
            "push r8",
            "push r9",
            "push r10",
            "push r12",
            "push r13",
            "push r14",
            "push r15",
            "sub rsp, 8",
            "mov rdi, rsp",
            "cld",
            "call {handler}",
            "add rsp, 8",
            "pop r15",
            "pop r14",
            "pop r13",
            "pop r12",
            "pop r10",
            "pop r9",
            "pop r8",
            "pop rbp",
            "pop rdi",
            "pop rsi",
            "pop rdx",
            "pop rbx",
            "add rsp, {header}",
            "mov eax, {iret}",
            $crate::hypercall::hypercall_instruction!(),
            "ud2",
            ".popsection",
            handler = sym $handler,
            header = const hypercall_abi::trap::EXCEPTION_HEADER_BYTES,
            iret = const hypercall_abi::Hypercall::IRET.0,
        );
    };
}
pub(crate) use entry_stub;
