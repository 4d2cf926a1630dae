//! The shared-info page (SPEC.md §8): one page per domain the hypervisor writes and the
//! guest reads, mapped read-write at `StartInfo::shared_info_address`. Layout follows
//! Xen's `shared_info` so the two can be read side by side. ABI 0.2 used only
//! `vcpu_info[0].cr2`; since ABI 0.3 the event fields (SPEC.md §17.5, §18), the vCPU
//! time info (§19.2) and the wallclock (§19.3) are used too, for vCPU 0 only.
//! `vcpu_info[1..]` and `reserved` stay zero.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// vCPUs a shared-info page has room for.
pub const MAX_VCPUS: usize = 32;
/// Event-channel ports (2-level bitmaps of 64 words of 64 bits).
pub const EVENT_PORTS: usize = 4096;

/// Per-vCPU time information (since ABI 0.3, SPEC.md §19.2); Xen's `vcpu_time_info`.
#[derive(Copy, Clone, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct VcpuTimeInfo {
    /// Odd while the hypervisor updates the fields.
    pub version: u32,
    /// Zero.
    pub pad0: u32,
    /// TSC at the last update.
    pub tsc_timestamp: u64,
    /// Nanoseconds since hypervisor boot at `tsc_timestamp`.
    pub system_time: u64,
    /// TSC-to-nanoseconds multiplier (32.32 fixed point after `tsc_shift`).
    pub tsc_to_system_mul: u32,
    /// Shift applied to TSC deltas before the multiply (negative: right).
    pub tsc_shift: i8,
    /// Zero (where later Xen headers and KVM's pvclock have a `flags` byte at offset 29,
    /// ringfence defines none).
    pub pad1: [u8; 3],
}

/// Per-vCPU information.
#[derive(Copy, Clone, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct VcpuInfo {
    /// An unmasked event is pending for this vCPU (since ABI 0.3, SPEC.md §18.1).
    pub upcall_pending: u8,
    /// Event delivery masked: the virtual interrupt flag; 1 at creation (since ABI 0.3,
    /// SPEC.md §18.1).
    pub upcall_mask: u8,
    /// Zero.
    pub pad: [u8; 6],
    /// Which words of the pending bitmap may have bits set (since ABI 0.3, SPEC.md §17.5).
    pub pending_selector: u64,
    /// The faulting address of the last #PF delivered to this vCPU.
    pub cr2: u64,
    /// Zero.
    pub arch_pad: u64,
    /// Time information (since ABI 0.3, SPEC.md §19.2).
    pub time: VcpuTimeInfo,
}

/// The shared-info page.
#[derive(Clone, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct SharedInfo {
    /// One entry per vCPU; ringfence domains have one vCPU (index 0).
    pub vcpu_info: [VcpuInfo; MAX_VCPUS],
    /// Pending bitmap, one bit per port (since ABI 0.3, SPEC.md §17.5).
    pub evtchn_pending: [u64; EVENT_PORTS / 64],
    /// Mask bitmap, one bit per port (since ABI 0.3, SPEC.md §17.5).
    pub evtchn_mask: [u64; EVENT_PORTS / 64],
    /// Odd while the hypervisor updates the wallclock (since ABI 0.3, SPEC.md §19.3).
    pub wc_version: u32,
    /// Wallclock seconds since 1970 at system time 0 (since ABI 0.3).
    pub wc_sec: u32,
    /// Nanoseconds part of the wallclock, below 10⁹ (since ABI 0.3).
    pub wc_nsec: u32,
    /// Zero.
    pub pad: u32,
    /// Zero; later minor versions carve fields from here.
    pub reserved: [u8; 4096 - 2048 - 1024 - 16],
}

const _: () = {
    // Xen's `struct vcpu_time_info` (public/xen.h), SPEC.md §8.
    assert!(core::mem::size_of::<VcpuTimeInfo>() == 32);
    assert!(core::mem::offset_of!(VcpuTimeInfo, version) == 0);
    assert!(core::mem::offset_of!(VcpuTimeInfo, pad0) == 4);
    assert!(core::mem::offset_of!(VcpuTimeInfo, tsc_timestamp) == 8);
    assert!(core::mem::offset_of!(VcpuTimeInfo, system_time) == 16);
    assert!(core::mem::offset_of!(VcpuTimeInfo, tsc_to_system_mul) == 24);
    assert!(core::mem::offset_of!(VcpuTimeInfo, tsc_shift) == 28);
    assert!(core::mem::offset_of!(VcpuTimeInfo, pad1) == 29);
    assert!(core::mem::size_of::<VcpuInfo>() == 64);
    assert!(core::mem::offset_of!(VcpuInfo, upcall_pending) == 0);
    assert!(core::mem::offset_of!(VcpuInfo, upcall_mask) == 1);
    assert!(core::mem::offset_of!(VcpuInfo, pending_selector) == 8);
    assert!(core::mem::offset_of!(VcpuInfo, cr2) == 16);
    assert!(core::mem::offset_of!(VcpuInfo, time) == 32);
    assert!(core::mem::offset_of!(SharedInfo, evtchn_pending) == 2048);
    assert!(core::mem::offset_of!(SharedInfo, evtchn_mask) == 2560);
    assert!(core::mem::offset_of!(SharedInfo, wc_version) == 3072);
    assert!(core::mem::offset_of!(SharedInfo, wc_sec) == 3076);
    assert!(core::mem::offset_of!(SharedInfo, wc_nsec) == 3080);
    assert!(core::mem::offset_of!(SharedInfo, pad) == 3084);
    assert!(core::mem::offset_of!(SharedInfo, reserved) == 3088);
    assert!(core::mem::size_of::<SharedInfo>() == 4096);
};

/// Byte offset of `vcpu_info[vcpu].cr2` in the page.
pub const fn cr2_offset(vcpu: usize) -> usize {
    vcpu * core::mem::size_of::<VcpuInfo>() + core::mem::offset_of!(VcpuInfo, cr2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cr2_sits_sixteen_bytes_into_each_sixty_four_byte_vcpu_info() {
        // SPEC.md §8: `VcpuInfo` (64 bytes) at `64 · vcpu`, `cr2` at offset 16.
        assert_eq!(cr2_offset(0), 16);
        assert_eq!(cr2_offset(1), 80);
        assert_eq!(cr2_offset(31), 31 * 64 + 16);
    }
}
