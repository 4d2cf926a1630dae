//! The PVH entry point (32-bit → long mode), written in assembly in `boot.s`.

core::arch::global_asm!(include_str!("boot.s"), options(att_syntax));

extern "C" {
    static boot_entry_tsc: u64;
}

/// TSC value read by the very first hypervisor instruction. Only readable while the
/// boot identity map is live (before `memory::install_hypervisor_tables`).
pub fn entry_tsc() -> u64 {
    // SAFETY: written once by the boot code before any Rust runs and never again.
    unsafe { core::ptr::read_volatile(&raw const boot_entry_tsc) }
}
