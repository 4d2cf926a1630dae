//! How a process's x87/SSE/AVX registers are saved and restored (SPEC.md §14): XSAVE with
//! the components the hypervisor enabled where CPUID reports OSXSAVE, FXSAVE otherwise
//! (under KVM the hypervisor leaves OSXSAVE off). And what makes a saved area safe to
//! restore: the kernel may hand back an area it changed (a signal frame the process wrote),
//! and a bad MXCSR or XSAVE header would be a #GP in the kernel instead of the process's
//! problem.
//!
//! Both happen only when the processor's registers change hands
//! ([`ExtendedResidence`](crate::arch::machine::ExtendedResidence)): the hypervisor keeps a
//! domain's registers across hypercalls, events and `iret` (SPEC.md §14) and the kernel is
//! soft-float, so a process's values simply stay in them while the kernel serves it.

use core::fmt;

use crate::arch::machine::ExtendedState;

/// The components an [`ExtendedState`] has room for: x87, SSE and AVX (SPEC.md §14 enables
/// no others).
const COMPONENTS: u64 = 0b111;

/// MXCSR's offset in the FXSAVE/XSAVE legacy area.
const MXCSR: usize = 24;
/// The XSAVE header: XSTATE_BV, XCOMP_BV, then reserved bytes, to the end of the header.
const XSTATE_BV: usize = 512;
const XCOMP_BV: usize = 520;
const HEADER_END: usize = 576;

/// MXCSR bits a CPU that reports no MXCSR_MASK accepts (all but DAZ).
const DEFAULT_MXCSR_MASK: u32 = 0xffbf;

/// The save/restore instructions and their parameters on this CPU.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Format {
    /// The XSAVE component mask, or `None` for FXSAVE.
    pub xsave_mask: Option<u64>,
    /// MXCSR bits the CPU accepts.
    pub mxcsr_mask: u32,
}

impl Format {
    /// What this CPU and the hypervisor's settings allow.
    pub fn detect() -> Self {
        let xsave_mask = os_xsave_enabled().then(|| enabled_components() & COMPONENTS);
        let reported = super::entry::mxcsr_mask();
        Self { xsave_mask, mxcsr_mask: if reported == 0 { DEFAULT_MXCSR_MASK } else { reported } }
    }

    /// Makes `state` acceptable to XRSTOR/FXRSTOR: MXCSR without reserved bits; for
    /// XSAVE, components this CPU has not enabled cleared from XSTATE_BV and the rest of
    /// the header zero (the standard form). What a process's own save produced is
    /// unchanged by this.
    pub fn sanitize(&self, state: &mut ExtendedState) {
        let bytes = &mut state.0;
        let mxcsr = read_u32(bytes, MXCSR) & self.mxcsr_mask;
        bytes[MXCSR..MXCSR + 4].copy_from_slice(&mxcsr.to_le_bytes());
        if let Some(mask) = self.xsave_mask {
            let components = read_u64(bytes, XSTATE_BV) & mask;
            bytes[XSTATE_BV..XSTATE_BV + 8].copy_from_slice(&components.to_le_bytes());
            bytes[XCOMP_BV..HEADER_END].fill(0);
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.xsave_mask {
            Some(mask) => write!(f, "xsave (components {mask:#x})"),
            None => f.write_str("fxsave"),
        }
    }
}

/// Loads `state` into the registers, after making it restorable.
pub fn restore(format: Format, state: &mut ExtendedState) {
    format.sanitize(state);
    #[cfg(all(target_arch = "x86_64", target_os = "none"))]
    {
        let area = state.0.as_ptr();
        match format.xsave_mask {
            // SAFETY: the area is 64-byte aligned (ExtendedState's alignment) and 1024
            // bytes, more than XSAVE's x87+SSE+AVX layout; the mask names only components
            // XCR0 has (`detect` read them there), and `sanitize` left a header and an
            // MXCSR XRSTOR accepts. The vector registers it writes are caller-saved in the
            // C ABI the stub has (and the kernel, soft-float, holds nothing in them).
            Some(mask) => unsafe { paravirt_xrstor(area, mask) },
            // SAFETY: 16-byte aligned and at least 512 bytes; `sanitize` left an MXCSR
            // FXRSTOR accepts (the only field it faults on).
            None => unsafe { paravirt_fxrstor(area) },
        }
    }
}

/// Saves the registers into `state`.
pub fn save(format: Format, state: &mut ExtendedState) {
    #[cfg(all(target_arch = "x86_64", target_os = "none"))]
    {
        let area = state.0.as_mut_ptr();
        match format.xsave_mask {
            // SAFETY: 64-byte aligned, large enough (see `restore`) and exclusively
            // borrowed; the mask names only enabled components.
            Some(mask) => unsafe { paravirt_xsave(area, mask) },
            // SAFETY: 16-byte aligned, at least 512 bytes, exclusively borrowed.
            None => unsafe { paravirt_fxsave(area) },
        }
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "none")))]
    let _ = (format, state);
}

#[cfg(all(target_arch = "x86_64", target_os = "none"))]
extern "C" {
    fn paravirt_xsave(area: *mut u8, mask: u64);
    fn paravirt_xrstor(area: *const u8, mask: u64);
    fn paravirt_fxsave(area: *mut u8);
    fn paravirt_fxrstor(area: *const u8);
}

// RDI = the area, RSI = the XSAVE component mask (EDX:EAX for the instruction).
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
core::arch::global_asm!(
    ".pushsection .text.paravirt_extended_state, \"ax\", @progbits",
    ".global paravirt_xsave",
    "paravirt_xsave:",
    "mov eax, esi",
    "mov rdx, rsi",
    "shr rdx, 32",
    "xsave64 [rdi]",
    "ret",
    ".global paravirt_xrstor",
    "paravirt_xrstor:",
    "mov eax, esi",
    "mov rdx, rsi",
    "shr rdx, 32",
    "xrstor64 [rdi]",
    "ret",
    ".global paravirt_fxsave",
    "paravirt_fxsave:",
    "fxsave64 [rdi]",
    "ret",
    ".global paravirt_fxrstor",
    "paravirt_fxrstor:",
    "fxrstor64 [rdi]",
    "ret",
    ".popsection",
);

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// CPUID.1:ECX.OSXSAVE: the hypervisor set CR4.OSXSAVE, so XSAVE and XGETBV work.
fn os_xsave_enabled() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let leaf = core::arch::x86_64::__cpuid(1);
        leaf.ecx & (1 << 27) != 0
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// XCR0: the components the hypervisor enabled.
fn enabled_components() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: called only when CPUID reported OSXSAVE, which makes XGETBV(0) legal at
        // any privilege level.
        unsafe { core::arch::x86_64::_xgetbv(0) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    0
}
