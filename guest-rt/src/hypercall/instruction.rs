//! How a hypercall reaches the hypervisor: the [`HypercallInterface`] trait, and
//! [`Syscall`], the real instruction (SPEC.md §5.1).

/// The way hypercalls reach the hypervisor.
///
/// Implementors: [`Syscall`] (the real `syscall` instruction, inside a domain) and test
/// fakes on the host.
pub trait HypercallInterface {
    /// Issues hypercall `number` with `arguments` (RDI, RSI, RDX, R10, R8, R9) and returns
    /// RAX unchanged (negative values are `-errno`).
    ///
    /// # Safety
    ///
    /// Every argument the hypercall interprets as a guest pointer must be valid for what that
    /// hypercall does with it: readable for the bytes it reads, and writable (with no Rust
    /// reference alive to them) for the bytes it writes. The hypervisor checks pointers
    /// against the page tables, not against Rust's aliasing rules. A hypercall that ends the
    /// domain (`sched_op(SHUTDOWN)`) is always sound: it simply never returns.
    unsafe fn call(&self, number: u64, arguments: [u64; 6]) -> i64;

    /// [`HypercallInterface::call`] with a number fixed at compile time, which the real
    /// implementation encodes as an immediate instead of loading it from a register.
    ///
    /// # Safety
    ///
    /// As for [`HypercallInterface::call`].
    unsafe fn call_fixed<const NUMBER: u64>(&self, arguments: [u64; 6]) -> i64 {
        // SAFETY: the caller upholds `call`'s contract, which is this function's contract.
        unsafe { self.call(NUMBER, arguments) }
    }

    /// Ends execution when a shutdown hypercall returned although it must not (a broken
    /// hypervisor). The real implementation executes `ud2` so the hypervisor kills the
    /// domain with a clear reason instead of leaving it spinning.
    fn unreachable_after_shutdown(&self) -> ! {
        loop {
            core::hint::spin_loop();
        }
    }
}

impl<T: HypercallInterface + ?Sized> HypercallInterface for &T {
    unsafe fn call(&self, number: u64, arguments: [u64; 6]) -> i64 {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { (**self).call(number, arguments) }
    }

    unsafe fn call_fixed<const NUMBER: u64>(&self, arguments: [u64; 6]) -> i64 {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { (**self).call_fixed::<NUMBER>(arguments) }
    }

    fn unreachable_after_shutdown(&self) -> ! {
        (**self).unreachable_after_shutdown()
    }
}

/// The real hypercall instruction. Only functional inside a ringfence domain (target
/// `x86_64-unknown-none`); on the host its calls panic, which lets guest crates compile
/// (but never run) there.
#[derive(Copy, Clone, Debug, Default)]
pub struct Syscall;

/// The instruction every hypercall of guest-rt uses: `syscall` (SPEC.md §5.1), which
/// returns by `sysret` on hardware and TCG. On a PVM-based KVM host it reaches the
/// hypervisor as a #PF at its entry point, which the hypervisor treats as the same
/// `syscall` (SPEC.md §11.4.3), so it works on every host. The trapping form
/// (`hypercall_abi::hypercall::TRAPPING_HYPERCALL`) stays in the ABI for guests that
/// want it; the conformance suite exercises both.
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
macro_rules! hypercall_instruction {
    () => {
        "syscall"
    };
}

#[cfg(all(target_arch = "x86_64", target_os = "none"))]
impl HypercallInterface for Syscall {
    #[inline(always)]
    unsafe fn call(&self, number: u64, arguments: [u64; 6]) -> i64 {
        let result: i64;
        // SAFETY: `syscall` in guest-kernel context is a hypercall (SPEC.md §5.1). RCX
        // and R11 are declared clobbered and RAX holds the result; the hypervisor runs on its own stack, so the
        // guest stack is untouched (`nostack`). Memory effects are those of the hypercall,
        // which the caller vouched for; no `nomem`/`readonly`, so the compiler keeps every
        // memory access in program order around it. RFLAGS status flags are not declared
        // preserved.
        unsafe {
            core::arch::asm!(
                hypercall_instruction!(),
                inlateout("rax") number => result,
                in("rdi") arguments[0],
                in("rsi") arguments[1],
                in("rdx") arguments[2],
                in("r10") arguments[3],
                in("r8") arguments[4],
                in("r9") arguments[5],
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        result
    }

    #[inline(always)]
    unsafe fn call_fixed<const NUMBER: u64>(&self, arguments: [u64; 6]) -> i64 {
        let result: i64;
        // SAFETY: as in `call`; the number is an immediate loaded into RAX, which is
        // declared as an output.
        unsafe {
            core::arch::asm!(
                "mov rax, {number}",
                hypercall_instruction!(),
                number = const NUMBER,
                lateout("rax") result,
                in("rdi") arguments[0],
                in("rsi") arguments[1],
                in("rdx") arguments[2],
                in("r10") arguments[3],
                in("r8") arguments[4],
                in("r9") arguments[5],
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        result
    }

    fn unreachable_after_shutdown(&self) -> ! {
        // SAFETY: `ud2` raises #UD; the hypervisor kills the domain. Nothing follows.
        unsafe { core::arch::asm!("ud2", options(noreturn, nomem, nostack)) }
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "none")))]
impl HypercallInterface for Syscall {
    unsafe fn call(&self, number: u64, _arguments: [u64; 6]) -> i64 {
        panic!("hypercall {number} outside a ringfence domain: guests run only under the hypervisor")
    }
}

/// The hypercall instruction, for the asm entry/exit stubs and user runs.
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
pub(crate) use hypercall_instruction;
