//! CPU features, control registers and model-specific registers the hypervisor sets up.

use core::arch::x86_64::{__cpuid, __cpuid_count, _rdtsc};
use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::registers::control::{Cr0, Cr0Flags, Cr4, Cr4Flags};
use x86_64::registers::model_specific::{Efer, EferFlags, LStar, SFMask, Star};
use x86_64::registers::rflags::RFlags;
use x86_64::registers::segmentation::SegmentSelector;
use x86_64::VirtAddr;

/// What the CPU offers that the hypervisor uses or reports.
#[derive(Copy, Clone, Debug, Default)]
pub struct Features {
    pub no_execute: bool,
    pub smep: bool,
    pub smap: bool,
    pub pcid: bool,
    pub tsc_deadline: bool,
    pub xsave: bool,
    pub invariant_tsc: bool,
    pub global_pages: bool,
    /// User-mode instruction prevention: `sgdt`, `sidt`, `sldt`, `smsw` and `str` fault
    /// outside ring 0 once CR4.UMIP is set.
    pub umip: bool,
    /// TSC frequency in kHz and where it came from, if any source knows it.
    pub tsc_khz: Option<(u64, &'static str)>,
}

pub fn cpuid(leaf: u32, subleaf: u32) -> (u32, u32, u32, u32) {
    // SAFETY: CPUID exists on every x86_64 CPU; asking for an unsupported leaf is
    // harmless (it returns the highest basic leaf's data).
    #[allow(unused_unsafe)]
    let result = unsafe { __cpuid_count(leaf, subleaf) };
    (result.eax, result.ebx, result.ecx, result.edx)
}

fn max_leaf(base: u32) -> u32 {
    // SAFETY: as in `cpuid`.
    #[allow(unused_unsafe)]
    unsafe { __cpuid(base) }.eax
}

/// Reads CPUID once at boot.
pub fn detect() -> Features {
    let basic = max_leaf(0);
    let extended = max_leaf(0x8000_0000);
    let (_, _, ecx1, edx1) = cpuid(1, 0);
    let (_, ebx7, ecx7, _) = if basic >= 7 { cpuid(7, 0) } else { (0, 0, 0, 0) };
    let (_, _, _, edx_ext1) = if extended >= 0x8000_0001 { cpuid(0x8000_0001, 0) } else { (0, 0, 0, 0) };
    let (_, _, _, edx_ext7) = if extended >= 0x8000_0007 { cpuid(0x8000_0007, 0) } else { (0, 0, 0, 0) };
    Features {
        no_execute: edx_ext1 & (1 << 20) != 0,
        smep: ebx7 & (1 << 7) != 0,
        smap: ebx7 & (1 << 20) != 0,
        pcid: ecx1 & (1 << 17) != 0,
        tsc_deadline: ecx1 & (1 << 24) != 0,
        xsave: ecx1 & (1 << 26) != 0,
        global_pages: edx1 & (1 << 13) != 0,
        umip: ecx7 & (1 << 2) != 0,
        invariant_tsc: edx_ext7 & (1 << 8) != 0,
        tsc_khz: tsc_frequency(basic),
    }
}

/// True under KVM (CPUID hypervisor signature "KVMKVMKVM"). The project's KVM hosts are
/// PVM-based: their emulation of the hypervisor's ring 0 cannot execute XRSTOR (a KVM
/// internal error, fatal to the VM), so extended state falls back to FXSAVE there.
pub fn under_kvm() -> bool {
    let (_, b, c, d) = cpuid(0x4000_0000, 0);
    [b, c, d] == [0x4b4d_564b, 0x564b_4d56, 0x0000_004d]
}

/// The hypervisor-timing leaf 0x40000010 as (TSC kHz, APIC bus kHz), when leaf
/// 0x40000000 has a non-zero vendor signature and reaches it (QEMU/KVM with `+invtsc`).
pub fn hypervisor_timing() -> Option<(u32, u32)> {
    let (hypervisor_max, signature_b, signature_c, signature_d) = cpuid(0x4000_0000, 0);
    let known_vendor = [signature_b, signature_c, signature_d] != [0, 0, 0];
    (known_vendor && hypervisor_max >= 0x4000_0010).then(|| {
        let (tsc_khz, bus_khz, _, _) = cpuid(0x4000_0010, 0);
        (tsc_khz, bus_khz)
    })
}

/// SPEC.md §19.1: the hypervisor-timing leaf QEMU/KVM expose with
/// `+invtsc` (only when leaf 0x40000000 has a non-zero vendor signature and reaches
/// 0x40000010), then the architectural leaves 0x15/0x16. `None` here is not the end:
/// boot then calibrates against the PIT, or the RTC (`start::calibrate_clock`), and only
/// if neither gives agreeing measurements does it stop with `cannot boot`.
fn tsc_frequency(basic: u32) -> Option<(u64, &'static str)> {
    if let Some((khz, _)) = hypervisor_timing() {
        if khz != 0 {
            return Some((u64::from(khz), "cpuid 0x40000010"));
        }
    }
    if basic >= 0x15 {
        let (denominator, numerator, crystal_hz, _) = cpuid(0x15, 0);
        if denominator != 0 && numerator != 0 && crystal_hz != 0 {
            let hz = u64::from(crystal_hz) * u64::from(numerator) / u64::from(denominator);
            return Some((hz / 1000, "cpuid 0x15"));
        }
    }
    if basic >= 0x16 {
        let (base_mhz, _, _, _) = cpuid(0x16, 0);
        if base_mhz != 0 {
            return Some((u64::from(base_mhz) * 1000, "cpuid 0x16"));
        }
    }
    None
}

/// Turns on what protects the hypervisor from guests: NX, SMEP, SMAP, UMIP, write
/// protection, global pages, and the `syscall` instruction.
pub fn enable_protections(features: &Features) {
    // SAFETY: every flag set here is supported (checked via CPUID) and only tightens
    // what ring 3 can do or what ring 0 may touch; the page tables in use already
    // mark hypervisor pages supervisor-only.
    unsafe {
        let mut efer = Efer::read();
        efer |= EferFlags::SYSTEM_CALL_EXTENSIONS;
        if features.no_execute {
            efer |= EferFlags::NO_EXECUTE_ENABLE;
        }
        Efer::write(efer);
        Cr0::update(|flags| *flags |= Cr0Flags::WRITE_PROTECT);
        Cr4::update(|flags| {
            if features.smep {
                *flags |= Cr4Flags::SUPERVISOR_MODE_EXECUTION_PROTECTION;
            }
            if features.smap {
                *flags |= Cr4Flags::SUPERVISOR_MODE_ACCESS_PREVENTION;
            }
            if features.global_pages {
                *flags |= Cr4Flags::PAGE_GLOBAL;
            }
            // Without it `sgdt`/`sidt`/`str` hand a guest the addresses of the hypervisor's
            // GDT, IDT and TSS (SPEC.md §4.1).
            if features.umip {
                *flags |= Cr4Flags::USER_MODE_INSTRUCTION_PREVENTION;
            }
        });
    }
}

/// Programs `syscall`/`sysret`: entry point, selectors, and the flags masked on entry.
pub fn enable_hypercall_entry(
    entry: u64,
    kernel_code: SegmentSelector,
    kernel_data: SegmentSelector,
    user_code: SegmentSelector,
    user_data: SegmentSelector,
) {
    LStar::write(VirtAddr::new(entry));
    // Interrupts stay off in the hypervisor; DF/AC/TF/NT must not leak in from a guest.
    SFMask::write(
        RFlags::INTERRUPT_FLAG
            | RFlags::DIRECTION_FLAG
            | RFlags::ALIGNMENT_CHECK
            | RFlags::TRAP_FLAG
            | RFlags::NESTED_TASK
            | RFlags::IOPL_HIGH
            | RFlags::IOPL_LOW,
    );
    Star::write(user_code, user_data, kernel_code, kernel_data)
        .expect("GDT layout matches what sysret requires (a fixed table, checked at first boot)");
}

/// Reads the time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC is unprivileged in ring 0 and has no side effects.
    #[allow(unused_unsafe)]
    unsafe {
        _rdtsc()
    }
}

/// Reads CR2, the faulting address of the last page fault.
pub fn fault_address() -> u64 {
    x86_64::registers::control::Cr2::read_raw()
}

/// Masks both legacy 8259 PICs. Firmware may have left them programmed onto vectors
/// 8–15, where an IRQ would look like a CPU exception; the hypervisor takes no legacy
/// interrupts.
pub fn mask_legacy_interrupts() {
    let mut primary: x86_64::instructions::port::Port<u8> = x86_64::instructions::port::Port::new(0x21);
    let mut secondary: x86_64::instructions::port::Port<u8> = x86_64::instructions::port::Port::new(0xa1);
    // SAFETY: writing the interrupt-mask registers of the PICs only masks IRQ lines; on a
    // machine without PICs the ports are unclaimed and the writes do nothing.
    unsafe {
        primary.write(0xff);
        secondary.write(0xff);
    }
}

/// The FS and GS bases last written, so a switch that keeps one costs no WRMSR. Plain
/// atomics, not a lock: one CPU, interrupts off, and only this function writes them.
static LOADED_FS_BASE: AtomicU64 = AtomicU64::new(0);
static LOADED_GS_BASE: AtomicU64 = AtomicU64::new(0);

/// Loads the guest's FS and GS bases. Both were validated as canonical (XSA-193) when
/// the guest set them; a non-canonical value would make WRMSR fault in the hypervisor,
/// so it is skipped rather than trusted.
pub fn write_segment_bases(fs: u64, gs: u64) {
    if LOADED_FS_BASE.load(Ordering::Relaxed) != fs {
        if let Ok(address) = VirtAddr::try_new(fs) {
            x86_64::registers::model_specific::FsBase::write(address);
            LOADED_FS_BASE.store(fs, Ordering::Relaxed);
        }
    }
    if LOADED_GS_BASE.load(Ordering::Relaxed) != gs {
        if let Ok(address) = VirtAddr::try_new(gs) {
            x86_64::registers::model_specific::GsBase::write(address);
            LOADED_GS_BASE.store(gs, Ordering::Relaxed);
        }
    }
}
