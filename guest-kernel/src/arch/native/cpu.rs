//! The processor: CPUID, the time-stamp counter, the control registers and the
//! model-specific registers the kernel sets once at boot.

use core::arch::x86_64::{__cpuid_count, _rdtsc};
use x86_64::registers::control::{Cr0, Cr0Flags, Cr4, Cr4Flags};
use x86_64::registers::model_specific::{Efer, EferFlags, LStar, SFMask, Star};
use x86_64::registers::rflags::RFlags;
use x86_64::registers::segmentation::SegmentSelector;
use x86_64::VirtAddr;

/// CPUID `leaf`.`subleaf` as (EAX, EBX, ECX, EDX).
pub fn cpuid(leaf: u32, subleaf: u32) -> (u32, u32, u32, u32) {
    // SAFETY: CPUID exists on every x86_64 processor and has no side effects; a leaf
    // beyond the maximum answers with the highest basic leaf's data, never a fault.
    #[allow(unused_unsafe)]
    let result = unsafe { __cpuid_count(leaf, subleaf) };
    (result.eax, result.ebx, result.ecx, result.edx)
}

/// Reads the time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC reads a counter; in ring 0 it is always allowed.
    #[allow(unused_unsafe)]
    unsafe {
        _rdtsc()
    }
}

/// What the processor offers that the kernel uses or reports.
#[derive(Copy, Clone, Debug, Default)]
pub struct Features {
    pub x2apic: bool,
    pub tsc_deadline: bool,
    pub xsave: bool,
    pub avx: bool,
    pub smep: bool,
    pub smap: bool,
    pub umip: bool,
    pub global_pages: bool,
    pub invariant_tsc: bool,
    /// The hypervisor's vendor signature (CPUID 0x40000000), when CPUID says one runs us.
    pub hypervisor: Option<[u8; 12]>,
}

impl Features {
    /// Reads CPUID once.
    pub fn detect() -> Self {
        let basic = cpuid(0, 0).0;
        let extended = cpuid(0x8000_0000, 0).0;
        let (_, _, ecx1, edx1) = cpuid(1, 0);
        let (_, ebx7, ecx7, _) = if basic >= 7 { cpuid(7, 0) } else { (0, 0, 0, 0) };
        let edx_power = if extended >= 0x8000_0007 { cpuid(0x8000_0007, 0).3 } else { 0 };
        let hypervisor = (ecx1 & (1 << 31) != 0).then(|| {
            let (_, b, c, d) = cpuid(0x4000_0000, 0);
            let mut signature = [0u8; 12];
            signature[..4].copy_from_slice(&b.to_le_bytes());
            signature[4..8].copy_from_slice(&c.to_le_bytes());
            signature[8..].copy_from_slice(&d.to_le_bytes());
            signature
        });
        Self {
            x2apic: ecx1 & (1 << 21) != 0,
            tsc_deadline: ecx1 & (1 << 24) != 0,
            xsave: ecx1 & (1 << 26) != 0,
            avx: ecx1 & (1 << 28) != 0,
            smep: ebx7 & (1 << 7) != 0,
            smap: ebx7 & (1 << 20) != 0,
            umip: ecx7 & (1 << 2) != 0,
            global_pages: edx1 & (1 << 13) != 0,
            invariant_tsc: edx_power & (1 << 8) != 0,
            hypervisor,
        }
    }

    /// True under KVM (signature "KVMKVMKVM\0\0\0").
    pub fn under_kvm(&self) -> bool {
        self.hypervisor.is_some_and(|signature| signature.starts_with(b"KVMKVMKVM"))
    }
}

/// Sets the control-register bits every later step relies on: write protection in ring
/// 0, native x87 error reporting, no emulation or lazy-switch trap for x87/SSE.
pub fn set_control_registers() {
    // SAFETY: WP only makes ring 0 honour read-only pages (the kernel writes none of its
    // own); NE, MP and clearing EM and TS are the architectural settings for an operating
    // system that saves x87/SSE state itself, which this kernel does on every user exit.
    unsafe {
        Cr0::update(|flags| {
            flags.insert(Cr0Flags::WRITE_PROTECT | Cr0Flags::NUMERIC_ERROR | Cr0Flags::MONITOR_COPROCESSOR);
            flags.remove(Cr0Flags::EMULATE_COPROCESSOR | Cr0Flags::TASK_SWITCHED);
        });
    }
}

/// Turns on what keeps user mode in its place: SMEP and SMAP (the kernel never touches
/// user memory through user addresses), UMIP (no `sgdt`/`sidt` from ring 3), and global
/// kernel pages (which survive the address-space switch).
pub fn enable_protections(features: &Features) {
    // SAFETY: each bit is set only where CPUID reports it; none changes what the kernel
    // itself does (it executes and reads only supervisor pages, and its tables mark them
    // so); turning on PGE flushes the whole TLB, which is harmless.
    unsafe {
        Cr4::update(|flags| {
            flags.set(Cr4Flags::SUPERVISOR_MODE_EXECUTION_PROTECTION, features.smep);
            flags.set(Cr4Flags::SUPERVISOR_MODE_ACCESS_PREVENTION, features.smap);
            flags.set(Cr4Flags::USER_MODE_INSTRUCTION_PREVENTION, features.umip);
            flags.set(Cr4Flags::PAGE_GLOBAL, features.global_pages);
        });
    }
}

/// Programs `syscall`: the entry point, the selectors `syscall` and `sysret` load, and
/// the flags cleared on entry (interrupts stay off in the kernel; direction, alignment
/// check, single-step, nested task and I/O privilege must not leak in from user mode).
pub fn enable_system_calls(
    entry: u64,
    kernel_code: SegmentSelector,
    kernel_data: SegmentSelector,
    user_code: SegmentSelector,
    user_data: SegmentSelector,
) -> Result<(), &'static str> {
    LStar::write(VirtAddr::new(entry));
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
        .map_err(|_| "the GDT's order does not suit syscall/sysret")?;
    // SAFETY: SCE only makes `syscall`/`sysret` available; LSTAR, SFMASK and STAR are
    // programmed above, so the first `syscall` lands at a valid entry point.
    unsafe { Efer::update(|flags| flags.insert(EferFlags::SYSTEM_CALL_EXTENSIONS)) };
    Ok(())
}
