//! FS and GS bases (SPEC.md §11.6): `set_segment_base` wrappers and reads through the
//! segment. FS is the same in both guest modes; GS is `GS_KERNEL` in guest-kernel mode and
//! `GS_USER` in guest-user mode (the hypervisor swaps them, as `swapgs` would). A
//! non-canonical base is `-EINVAL`.

use hypercall_abi::trap::segment;
use hypercall_abi::Errno;

use crate::hypercall::set_segment_base;

/// Sets the FS base (both modes).
pub fn set_fs_base(base: u64) -> Result<(), Errno> {
    set_segment_base(segment::FS, base).map(drop)
}

/// Sets the GS base used in guest-kernel mode.
pub fn set_gs_kernel_base(base: u64) -> Result<(), Errno> {
    set_segment_base(segment::GS_KERNEL, base).map(drop)
}

/// Sets the GS base used in guest-user mode.
pub fn set_gs_user_base(base: u64) -> Result<(), Errno> {
    set_segment_base(segment::GS_USER, base).map(drop)
}

/// Reads the u64 at `fs:[offset]`.
///
/// # Safety
///
/// FS base + `offset` must be a readable address (else #PF).
#[cfg(target_arch = "x86_64")]
pub unsafe fn read_fs(offset: u64) -> u64 {
    let value: u64;
    // SAFETY: the caller vouches that the address is readable; only a load.
    unsafe {
        core::arch::asm!("mov {value}, qword ptr fs:[{offset}]", offset = in(reg) offset, value = lateout(reg) value,
            options(nostack, readonly, preserves_flags))
    };
    value
}

/// Reads the u64 at `gs:[offset]`.
///
/// # Safety
///
/// GS base + `offset` must be a readable address (else #PF).
#[cfg(target_arch = "x86_64")]
pub unsafe fn read_gs(offset: u64) -> u64 {
    let value: u64;
    // SAFETY: the caller vouches that the address is readable; only a load.
    unsafe {
        core::arch::asm!("mov {value}, qword ptr gs:[{offset}]", offset = in(reg) offset, value = lateout(reg) value,
            options(nostack, readonly, preserves_flags))
    };
    value
}
