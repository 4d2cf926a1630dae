//! User x87/SSE/AVX state ([`ExtendedState`], XSAVE layout, or the FXSAVE layout in its
//! first 512 bytes): restored when a context runs whose state the processor does not hold
//! ([`RESIDENCE`]), saved when the kernel asks. The kernel is built soft-float and never
//! touches these registers, so in between the user's values simply stay in the processor,
//! across system calls, exceptions and interrupts.
//!
//! XSAVE where CPUID offers it, with XCR0 = x87 | SSE (| AVX): AVX's upper halves are
//! user state too. FXSAVE otherwise — and under KVM: the project's KVM hosts are
//! PVM-based, and their emulation of ring 0 cannot execute XRSTOR (a KVM internal error
//! that kills the VM; the hypervisor falls back the same way). Without XSAVE, OSXSAVE
//! stays off, so user programs see no AVX and use none.
//!
//! A context's state comes from the kernel, which may have copied it from user memory (a
//! signal frame): XRSTOR and FXRSTOR fault in ring 0 on reserved MXCSR bits or a bad
//! XSAVE header, so [`restore`] checks those first and refuses instead.

use super::cpu::{cpuid, Features};
use crate::arch::machine::{ExtendedResidence, ExtendedState, EXTENDED_STATE_BYTES};
use spin::Once;
use x86_64::registers::control::{Cr4, Cr4Flags};
use x86_64::registers::xcontrol::XCr0;

extern "C" {
    fn native_xsave(area: *mut u8, mask: u64);
    fn native_xrstor(area: *const u8, mask: u64);
    fn native_fxsave(area: *mut u8);
    fn native_fxrstor(area: *const u8);
}

/// XSAVE components user programs may use: x87, SSE, AVX.
const USER_COMPONENTS: u64 = 0b111;
const X87: u64 = 0b001;
const MXCSR_OFFSET: usize = 24;
const MXCSR_MASK_OFFSET: usize = 28;
/// The XSAVE header: XSTATE_BV, XCOMP_BV, then reserved bytes.
const HEADER_OFFSET: usize = 512;
/// MXCSR_MASK's value when FXSAVE reports 0 (processors without DAZ).
const DEFAULT_MXCSR_MASK: u32 = 0xffbf;

/// How state is saved on this processor.
#[derive(Copy, Clone, Debug)]
pub struct Method {
    /// XSAVE components (XCR0); `None`: FXSAVE.
    xsave: Option<u64>,
    /// MXCSR bits that may be set.
    mxcsr_mask: u32,
    /// Bytes XSAVE writes for the enabled components.
    size: usize,
}

static METHOD: Once<Method> = Once::new();

/// Whose extended state the processor holds (one processor).
pub static RESIDENCE: ExtendedResidence = ExtendedResidence::new();

impl Method {
    /// Bytes one save writes.
    pub fn area_bytes(&self) -> usize {
        self.size
    }

    /// For the boot banner.
    pub fn describe(&self) -> &'static str {
        match self.xsave {
            Some(mask) if mask & 0b100 != 0 => "xsave x87+SSE+AVX",
            Some(_) => "xsave x87+SSE",
            None => "fxsave x87+SSE",
        }
    }
}

fn method() -> &'static Method {
    METHOD.get().expect("extended_state::init ran at boot")
}

/// Turns SSE (and XSAVE) on and decides how state is switched; before the first user run.
pub fn init(features: &Features) -> Result<&'static Method, &'static str> {
    // SAFETY: OSFXSR and OSXMMEXCPT exist on every x86_64 processor; they let user code
    // run SSE instructions and report SIMD exceptions as #XM, and the kernel saves the
    // state they concern.
    unsafe { Cr4::update(|flags| flags.insert(Cr4Flags::OSFXSR | Cr4Flags::OSXMMEXCPT_ENABLE)) };
    let mut xsave = None;
    if features.xsave && !features.under_kvm() {
        // Leaf 0xD exists when CPUID.1:ECX.XSAVE is set.
        let (low, _, _, high) = cpuid(0xd, 0);
        let supported = (u64::from(high) << 32 | u64::from(low)) & USER_COMPONENTS;
        let mask = if features.avx { supported } else { supported & !0b100 } | X87;
        // SAFETY: CPUID reports XSAVE, and XCR0 gets only components leaf 0xD lists, with
        // x87 as XSETBV requires (and AVX only with SSE, which `supported` has whenever
        // it has AVX).
        unsafe {
            Cr4::update(|flags| flags.insert(Cr4Flags::OSXSAVE));
            XCr0::write_raw(mask);
        }
        // EBX of leaf 0xD: the area's size for the components now enabled.
        let size = cpuid(0xd, 0).1 as usize;
        if size > EXTENDED_STATE_BYTES {
            return Err("the XSAVE area for x87+SSE+AVX is larger than UserContext holds");
        }
        xsave = Some(mask);
    }
    let mut probe = ExtendedState::initial();
    // SAFETY: the area is 64-byte aligned (ExtendedState's alignment) and 1024 bytes,
    // more than FXSAVE's 512; FXSAVE is usable now that OSFXSR is set.
    unsafe { native_fxsave(probe.0.as_mut_ptr()) };
    let mask = u32::from_le_bytes(bytes_at(&probe.0, MXCSR_MASK_OFFSET));
    let size = xsave.map_or(512, |_| cpuid(0xd, 0).1 as usize);
    let mxcsr_mask = if mask == 0 { DEFAULT_MXCSR_MASK } else { mask };
    Ok(METHOD.call_once(|| Method { xsave, mxcsr_mask, size }))
}

fn bytes_at<const N: usize>(area: &[u8], offset: usize) -> [u8; N] {
    let mut bytes = [0u8; N];
    bytes.copy_from_slice(&area[offset..offset + N]);
    bytes
}

/// Why a context's extended state cannot be loaded.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Invalid;

/// Loads `state` into the processor, if it is loadable (see the module comment).
pub fn restore(state: &ExtendedState) -> Result<(), Invalid> {
    let method = method();
    let mxcsr = u32::from_le_bytes(bytes_at(&state.0, MXCSR_OFFSET));
    if mxcsr & !method.mxcsr_mask != 0 {
        return Err(Invalid);
    }
    match method.xsave {
        Some(mask) => {
            let header = &state.0[HEADER_OFFSET..HEADER_OFFSET + 64];
            let components = u64::from_le_bytes(bytes_at(header, 0));
            // Standard (uncompacted) form: XCOMP_BV and the reserved rest of the header
            // must be zero, and only enabled components may be marked present.
            if components & !mask != 0 || header[8..].iter().any(|&byte| byte != 0) {
                return Err(Invalid);
            }
            // SAFETY: 64-byte aligned, EXTENDED_STATE_BYTES >= the enabled size (checked
            // at init), and the checks above rule out every reason XRSTOR faults.
            unsafe { native_xrstor(state.0.as_ptr(), mask) };
        }
        // SAFETY: 16-byte aligned and at least 512 bytes; MXCSR checked above (the only
        // field FXRSTOR faults on).
        None => unsafe { native_fxrstor(state.0.as_ptr()) },
    }
    Ok(())
}

/// Saves the processor's extended state into `state`.
pub fn save(state: &mut ExtendedState) {
    let method = method();
    match method.xsave {
        // SAFETY: 64-byte aligned, at least the enabled size (checked at init).
        Some(mask) => unsafe { native_xsave(state.0.as_mut_ptr(), mask) },
        // SAFETY: 16-byte aligned and at least 512 bytes.
        None => unsafe { native_fxsave(state.0.as_mut_ptr()) },
    }
}
