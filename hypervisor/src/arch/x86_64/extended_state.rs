//! Per-domain x87/SSE/AVX state, switched eagerly: every domain switch saves the
//! outgoing domain's registers and restores the incoming one's, so no register content
//! can cross domains and no #NM trap is needed (lazy switching leaks through
//! speculation — CVE-2018-3665 — and costs a trap per first use after a switch).
//!
//! XSAVE where the CPU has it (area size from CPUID leaf 0xD for the enabled
//! components), FXSAVE otherwise — and on KVM, whose PVM-based hosts cannot run XRSTOR
//! in the hypervisor's (emulated) ring 0. With FXSAVE, XCR0 is left alone and OSXSAVE
//! off, so guests cannot enable AVX state that FXSAVE would not switch. The hypervisor
//! itself is built without SSE and never touches these registers.

use super::cpu::cpuid;
use super::entry;
use alloc::vec;
use alloc::vec::Vec;
use x86_64::registers::control::{Cr4, Cr4Flags};
use x86_64::registers::xcontrol::XCr0;

/// XSAVE components a guest may use: x87, SSE, AVX.
const GUEST_COMPONENTS: u64 = 0b111;
/// Size of the legacy FXSAVE area.
const LEGACY_AREA: usize = 512;
/// Offset of MXCSR in the legacy area; its power-on value masks every SIMD exception.
const MXCSR_OFFSET: usize = 24;
const MXCSR_INIT: u32 = 0x1f80;
/// Offset of the x87 control word; its FNINIT value masks every x87 exception.
const FCW_OFFSET: usize = 0;
const FCW_INIT: u16 = 0x037f;
/// XSAVE areas must be 64-byte aligned.
const ALIGNMENT: usize = 64;

/// How extended state is saved on this CPU.
#[derive(Copy, Clone, Debug)]
pub struct Method {
    /// Components saved with XSAVE; `None` means FXSAVE.
    xsave_mask: Option<u64>,
    /// Bytes of one save area.
    size: usize,
}

impl Method {
    pub fn describe(&self) -> &'static str {
        match self.xsave_mask {
            Some(mask) if mask & 0b100 != 0 => "xsave x87+SSE+AVX",
            Some(_) => "xsave x87+SSE",
            None => "fxsave x87+SSE",
        }
    }

    pub fn area_size(&self) -> usize {
        self.size
    }
}

/// Turns on SSE (and XSAVE with the components guests may use) and says how state is
/// switched. Must run before the first guest instruction.
pub fn enable(xsave: bool) -> Method {
    // SAFETY: OSFXSR and OSXMMEXCPT are architectural on every x86_64 CPU; they only
    // let ring-3 code use SSE instructions (which it cannot otherwise) and report SIMD
    // exceptions as #XM.
    unsafe {
        Cr4::update(|flags| *flags |= Cr4Flags::OSFXSR | Cr4Flags::OSXMMEXCPT_ENABLE);
    }
    if !xsave {
        return Method { xsave_mask: None, size: LEGACY_AREA };
    }
    // Leaf 0xD exists when CPUID.1:ECX.XSAVE is set (checked by the caller).
    let (low, _, _, high) = cpuid(0xd, 0);
    let mask = (u64::from(high) << 32 | u64::from(low)) & GUEST_COMPONENTS;
    // SAFETY: OSXSAVE is supported (CPUID.1:ECX.XSAVE) and XCR0 gets only components
    // the CPU reports in leaf 0xD, always including x87 (bit 0) as XSETBV requires.
    unsafe {
        Cr4::update(|flags| *flags |= Cr4Flags::OSXSAVE);
        // write_raw, not write: write reads XCR0 first (XGETBV), which a PVM-based KVM
        // host cannot emulate in its ring 0, and no reserved XCR0 bit needs keeping.
        XCr0::write_raw(mask | 1);
    }
    // EBX of leaf 0xD now reports the size for the enabled XCR0.
    let size = cpuid(0xd, 0).1 as usize;
    Method { xsave_mask: Some(mask | 1), size: size.max(LEGACY_AREA + 64) }
}

/// Cycles of one save plus one restore (the eager cost added to every domain switch),
/// the median of a few rounds on a scratch area, measured at boot for the banner.
pub fn measure_switch_cost(method: &Method) -> u64 {
    let mut area = Area::new(method);
    area.restore(method);
    let mut samples = [0u64; 33];
    for sample in &mut samples {
        let start = super::cpu::rdtsc();
        area.save(method);
        area.restore(method);
        *sample = super::cpu::rdtsc().wrapping_sub(start);
    }
    samples.sort_unstable();
    samples[samples.len() / 2]
}

/// One domain's saved extended state.
pub struct Area {
    buffer: Vec<u8>,
    offset: usize,
}

impl Area {
    /// The architectural initial state: x87 and SIMD exceptions masked, every register
    /// zero (an XSAVE header of zeros makes XRSTOR initialise every component).
    pub fn new(method: &Method) -> Self {
        let mut buffer = vec![0u8; method.size + ALIGNMENT];
        let offset = buffer.as_ptr().align_offset(ALIGNMENT);
        let area = &mut buffer[offset..offset + method.size];
        area[FCW_OFFSET..FCW_OFFSET + 2].copy_from_slice(&FCW_INIT.to_le_bytes());
        area[MXCSR_OFFSET..MXCSR_OFFSET + 4].copy_from_slice(&MXCSR_INIT.to_le_bytes());
        Self { buffer, offset }
    }

    fn pointer(&mut self) -> *mut u8 {
        self.buffer[self.offset..].as_mut_ptr()
    }

    /// Saves the CPU's extended state here.
    pub fn save(&mut self, method: &Method) {
        let area = self.pointer();
        // SAFETY: `area` is 64-byte aligned with `method.size` bytes owned by this Area
        // (checked at construction), which is what XSAVE (or FXSAVE: 512 bytes, 16-byte
        // aligned) writes for the enabled components.
        unsafe {
            match method.xsave_mask {
                Some(mask) => entry::extended_state_xsave(area, mask),
                None => entry::extended_state_fxsave(area),
            }
        }
    }

    /// Loads the extended state saved here into the CPU.
    pub fn restore(&mut self, method: &Method) {
        let area = self.pointer();
        // SAFETY: as in `save`; the area holds either the initial image built by `new`
        // (valid for XRSTOR/FXRSTOR: zero header, MXCSR without reserved bits) or what
        // XSAVE/FXSAVE wrote, so the restore cannot fault.
        unsafe {
            match method.xsave_mask {
                Some(mask) => entry::extended_state_xrstor(area, mask),
                None => entry::extended_state_fxrstor(area),
            }
        }
    }
}
