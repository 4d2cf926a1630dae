//! System time (SPEC.md §19.2): nanoseconds since the hypervisor booted, extrapolated from
//! the shared-info page's time info and the TSC, with no hypercall.

use core::sync::atomic::{compiler_fence, AtomicU32, AtomicU64, Ordering};

use hypercall_abi::shared_info::{VcpuInfo, VcpuTimeInfo};

use crate::events::{shared_info, SharedInfoPage};
#[cfg(target_arch = "x86_64")]
use crate::tsc::rdtsc_serialized;

/// Nanoseconds per second.
pub const NANOSECONDS_PER_SECOND: u64 = 1_000_000_000;

/// One consistent copy of the time fields.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct TimeInfo {
    /// The (even) version the copy was taken at.
    pub version: u32,
    /// TSC at the hypervisor's last update.
    pub tsc_timestamp: u64,
    /// System time at `tsc_timestamp`.
    pub system_time: u64,
    /// 32.32 multiplier.
    pub mul: u32,
    /// Shift before the multiply (negative: right).
    pub shift: i8,
}

/// Scales a TSC delta to nanoseconds: `((delta << shift) * mul) >> 32` (right shift for a
/// negative `shift`), in 128 bits so no intermediate overflows; the result is truncated
/// to 64 bits (it exceeds them only for a delta of more than 2^64 ns, see
/// [`TimeInfo::system_time_at`]). `shift` is in −31..=31 (SPEC.md §19.2); only its low
/// five bits of magnitude are used, which keeps the code free of branches (each one a
/// block boundary under QEMU's TCG). A left shift moves into the multiplier, which
/// gives the same 128-bit product.
#[inline]
pub const fn scale_delta(delta: u64, mul: u32, shift: i8) -> u64 {
    let (multiplier, right) = fast_scale(mul, shift);
    apply_fast_scale(delta, multiplier, right)
}

impl TimeInfo {
    /// System time at TSC value `tsc` (a TSC before `tsc_timestamp` counts as no time).
    /// The sum wraps mod 2^64 where the hypervisor saturates at `u64::MAX` (SPEC.md
    /// §19.2); the two differ only once system time passes 2^64 ns, about 584 years after
    /// boot.
    #[inline]
    pub const fn system_time_at(&self, tsc: u64) -> u64 {
        let delta = tsc.saturating_sub(self.tsc_timestamp);
        self.system_time.wrapping_add(scale_delta(delta, self.mul, self.shift))
    }
}

const TIME_OFFSET: usize = core::mem::offset_of!(VcpuInfo, time);

#[inline(always)]
fn time_field<T>(page: SharedInfoPage, offset: usize) -> *const T {
    (page.address() as usize + TIME_OFFSET + offset) as *const T
}

/// Reads `fields` of `page`'s `vcpu_info[0].time` under its seqlock, then the TSC inside
/// the same critical window; returns the (even) version, the fields and the TSC.
#[inline(always)]
fn read_consistent<T>(page: SharedInfoPage, fields: impl Fn(SharedInfoPage) -> T) -> (u32, T, u64) {
    let version_pointer = time_field::<u32>(page, core::mem::offset_of!(VcpuTimeInfo, version));
    // SAFETY: the field is inside the page the view names, 4-byte aligned, and written by
    // the hypervisor only (atomically with respect to this vCPU).
    let version_cell = unsafe { AtomicU32::from_ptr(version_pointer as *mut u32) };
    loop {
        let version = version_cell.load(Ordering::Acquire);
        compiler_fence(Ordering::SeqCst);
        let value = fields(page);
        // lfence: the TSC is read after the fields, never speculatively before them (a TSC
        // older than tsc_timestamp would be a negative delta).
        let tsc = rdtsc_ordered();
        compiler_fence(Ordering::SeqCst);
        // One test for both ways a copy can be torn (an update in progress at the first
        // read, or one that happened since): one branch instead of two.
        if (version & 1) | (version_cell.load(Ordering::Acquire) ^ version) == 0 {
            return (version, value, tsc);
        }
        core::hint::spin_loop();
    }
}

/// Reads `vcpu_info[0].time` of `page` under its seqlock, then the TSC inside the same
/// critical window, and returns both. Inline: a call and return are two indirect branches,
/// each a translation-cache lookup under QEMU's TCG — more than the read itself.
#[inline]
pub fn read_time(page: SharedInfoPage) -> (TimeInfo, u64) {
    let (version, (tsc_timestamp, system_time, mul, shift), tsc) = read_consistent(page, |page| {
        // SAFETY: all four fields lie inside the page and are naturally aligned; volatile
        // because the hypervisor changes them behind the compiler's back (the version
        // check throws away a torn copy).
        unsafe {
            (
                time_field::<u64>(page, core::mem::offset_of!(VcpuTimeInfo, tsc_timestamp)).read_volatile(),
                time_field::<u64>(page, core::mem::offset_of!(VcpuTimeInfo, system_time)).read_volatile(),
                time_field::<u32>(page, core::mem::offset_of!(VcpuTimeInfo, tsc_to_system_mul)).read_volatile(),
                time_field::<i8>(page, core::mem::offset_of!(VcpuTimeInfo, tsc_shift)).read_volatile(),
            )
        }
    });
    (TimeInfo { version, tsc_timestamp, system_time, mul, shift }, tsc)
}

/// The scale of SPEC.md §19.2 as [`now`] applies it: `(tsc_to_system_mul << left shift,
/// right shift)`, so a read is one shift and one multiply (`((delta >> right) ×
/// multiplier) >> 32`, the formula's product exactly). Both are fixed at boot for every
/// domain (§19.2), so the first read's are every read's.
const fn fast_scale(mul: u32, shift: i8) -> (u64, u32) {
    let left = if shift > 0 { shift as u32 } else { 0 } & 31;
    let right = if shift < 0 { (-(shift as i16)) as u32 } else { 0 } & 31;
    ((mul as u64) << left, right)
}

/// [`scale_delta`] with the scale in [`fast_scale`]'s form.
#[inline(always)]
const fn apply_fast_scale(delta: u64, multiplier: u64, right: u32) -> u64 {
    (((delta >> (right & 63)) as u128 * multiplier as u128) >> 32) as u64
}

/// [`fast_scale`] of this boot (0: not read yet, or a zero `tsc_to_system_mul`, which
/// keeps every read on the full path).
static SCALE_MULTIPLIER: AtomicU64 = AtomicU64::new(0);
static SCALE_RIGHT: AtomicU32 = AtomicU32::new(0);

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn rdtsc_ordered() -> u64 {
    rdtsc_serialized()
}

#[cfg(not(target_arch = "x86_64"))]
fn rdtsc_ordered() -> u64 {
    0
}

/// System time now: nanoseconds since the hypervisor booted (no hypercall). Inline into
/// the caller, like [`read_time`].
#[inline]
pub fn now() -> u64 {
    let page = time_page();
    let multiplier = SCALE_MULTIPLIER.load(Ordering::Relaxed);
    if multiplier == 0 {
        return first_now(page);
    }
    let right = SCALE_RIGHT.load(Ordering::Relaxed);
    let (_, (stamp, system), tsc) = read_consistent(page, |page| {
        // SAFETY: both fields lie inside the page and are naturally aligned; volatile as in
        // `read_time`.
        unsafe {
            (
                time_field::<u64>(page, core::mem::offset_of!(VcpuTimeInfo, tsc_timestamp)).read_volatile(),
                time_field::<u64>(page, core::mem::offset_of!(VcpuTimeInfo, system_time)).read_volatile(),
            )
        }
    });
    system.wrapping_add(apply_fast_scale(tsc.saturating_sub(stamp), multiplier, right))
}

/// [`now`]'s first read: the whole time info, whose scale later reads keep.
#[cold]
#[inline(never)]
fn first_now(page: SharedInfoPage) -> u64 {
    let (info, tsc) = read_time(page);
    let (multiplier, right) = fast_scale(info.mul, info.shift);
    SCALE_RIGHT.store(right, Ordering::Relaxed);
    SCALE_MULTIPLIER.store(multiplier, Ordering::Relaxed);
    info.system_time_at(tsc)
}

/// The shared-info page's address once the first [`now`] looked it up (0 before).
static TIME_PAGE: AtomicU64 = AtomicU64::new(0);

/// The shared-info page [`now`] reads: one load on the common path, where
/// [`shared_info`] takes two loads and two tests through the start info.
#[inline(always)]
fn time_page() -> SharedInfoPage {
    let address = TIME_PAGE.load(Ordering::Relaxed);
    if address == 0 {
        return first_time_page();
    }
    // SAFETY: only `first_time_page` stores here, the address of this domain's shared-info
    // page, which stays mapped read-write for the domain's life (SPEC.md §8).
    unsafe { SharedInfoPage::from_address(address) }
}

#[cold]
#[inline(never)]
fn first_time_page() -> SharedInfoPage {
    let page = shared_info();
    TIME_PAGE.store(page.address(), Ordering::Relaxed);
    page
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use hypercall_abi::shared_info::SharedInfo;
    use std::boxed::Box;
    use zerocopy::FromZeros;

    #[test]
    fn scaling_follows_the_formula() {
        // 2 GHz: 0.5 ns per cycle = mul 2^31 with shift 0.
        assert_eq!(scale_delta(2_000_000_000, 1 << 31, 0), 1_000_000_000);
        // 1 GHz: 1 ns per cycle = mul 2^31, shift 1.
        assert_eq!(scale_delta(1_000, 1 << 31, 1), 1_000);
        // 4 GHz: 0.25 ns per cycle = mul 2^31, shift -1.
        assert_eq!(scale_delta(4_000, 1 << 31, -1), 1_000);
        // Large deltas do not overflow: a day at 3 GHz.
        let day = 86_400 * 3_000_000_000u64;
        let mul = ((1u128 << 32) / 3) as u32; // 0.333 ns per cycle
        let nanoseconds = scale_delta(day, mul, 0);
        assert!(nanoseconds.abs_diff(86_400 * 1_000_000_000) < 100_000, "{nanoseconds}");
    }

    #[test]
    fn scaling_agrees_with_the_spec_formula_for_every_shift() {
        for shift in -31i8..=31 {
            for delta in [0, 1, 999, 0xffff_ffff, 1 << 40, u64::MAX >> 1, u64::MAX] {
                for mul in [1u32, 1 << 31, u32::MAX] {
                    let shifted = if shift >= 0 {
                        u128::from(delta) << shift.unsigned_abs()
                    } else {
                        u128::from(delta) >> shift.unsigned_abs()
                    };
                    let expected = ((shifted * u128::from(mul)) >> 32) as u64;
                    assert_eq!(scale_delta(delta, mul, shift), expected, "delta {delta} mul {mul} shift {shift}");
                }
            }
        }
    }

    #[test]
    fn the_fast_scale_is_the_formula_for_every_shift() {
        for shift in -31i8..=31 {
            for delta in [0, 1, 999, 0xffff_ffff, 1 << 40, u64::MAX >> 1, u64::MAX] {
                for mul in [1u32, 1 << 31, 0xa3d7_0a3d, u32::MAX] {
                    let (multiplier, right) = fast_scale(mul, shift);
                    let shifted = if shift >= 0 {
                        u128::from(delta) << shift.unsigned_abs()
                    } else {
                        u128::from(delta) >> shift.unsigned_abs()
                    };
                    assert_eq!(
                        apply_fast_scale(delta, multiplier, right),
                        ((shifted * u128::from(mul)) >> 32) as u64,
                        "delta {delta} mul {mul} shift {shift}"
                    );
                }
            }
        }
    }

    #[test]
    fn system_time_extrapolates_from_the_timestamp() {
        let info = TimeInfo { version: 2, tsc_timestamp: 1_000, system_time: 5_000, mul: 1 << 31, shift: 1 };
        assert_eq!(info.system_time_at(1_000), 5_000);
        assert_eq!(info.system_time_at(1_250), 5_250);
        assert_eq!(info.system_time_at(900), 5_000, "a TSC before the timestamp adds nothing");
    }

    /// A writer thread updates the time info under its seqlock as fast as it can, with
    /// fields derived from the version it publishes; every copy the reader accepts must be
    /// one whole update (a reader that took an odd version, or kept a copy across a version
    /// change, returns fields of two different updates sooner or later).
    #[test]
    fn a_concurrent_writer_never_yields_a_torn_copy() {
        use core::sync::atomic::AtomicBool;
        use std::sync::Arc;
        const UPDATES: u32 = 20_000;
        let info = Box::new(SharedInfo::new_zeroed());
        let address = &*info as *const SharedInfo as usize;
        let done = Arc::new(AtomicBool::new(false));
        let writer = {
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                let time = |offset: usize| address + TIME_OFFSET + offset;
                // SAFETY: the fields lie in the boxed page, which outlives both threads,
                // are naturally aligned, and are only accessed atomically or volatilely.
                let (version, stamp, system, mul) = unsafe {
                    (
                        AtomicU32::from_ptr(time(core::mem::offset_of!(VcpuTimeInfo, version)) as *mut u32),
                        AtomicU64::from_ptr(time(core::mem::offset_of!(VcpuTimeInfo, tsc_timestamp)) as *mut u64),
                        AtomicU64::from_ptr(time(core::mem::offset_of!(VcpuTimeInfo, system_time)) as *mut u64),
                        AtomicU32::from_ptr(time(core::mem::offset_of!(VcpuTimeInfo, tsc_to_system_mul)) as *mut u32),
                    )
                };
                for update in 1..=UPDATES {
                    version.store(2 * update - 1, Ordering::Release);
                    stamp.store(u64::from(update), Ordering::Release);
                    system.store(u64::from(update) * 1_000, Ordering::Release);
                    mul.store(update, Ordering::Release);
                    version.store(2 * update, Ordering::Release);
                    // Leave the reader windows with no update in them, or it only spins.
                    for _ in 0..200 {
                        core::hint::spin_loop();
                    }
                }
                done.store(true, Ordering::Release);
            })
        };
        // SAFETY: the box outlives the view and the writer (joined below).
        let page = unsafe { SharedInfoPage::from_address(address as u64) };
        let (mut reads, mut versions_seen) = (0u64, std::collections::BTreeSet::new());
        while !done.load(Ordering::Acquire) || reads == 0 {
            let (copy, _) = read_time(page);
            let update = copy.version / 2;
            assert_eq!(copy.version % 2, 0, "an odd version was accepted: {copy:?}");
            assert_eq!(
                (copy.tsc_timestamp, copy.system_time, copy.mul),
                (u64::from(update), u64::from(update) * 1_000, update),
                "a torn copy was accepted"
            );
            versions_seen.insert(copy.version);
            reads += 1;
        }
        writer.join().unwrap();
        assert!(versions_seen.len() > 10, "the reader saw {} versions in {reads} reads", versions_seen.len());
        drop(info);
    }

    /// A version left odd (an update in progress) holds the reader until it is even again.
    #[test]
    fn an_odd_version_holds_the_reader() {
        let mut info = Box::new(SharedInfo::new_zeroed());
        info.vcpu_info[0].time.version = 7;
        info.vcpu_info[0].time.system_time = 1;
        let address = &mut *info as *mut SharedInfo as usize;
        let (sender, receiver) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            // SAFETY: the box outlives the reader (joined below).
            let page = unsafe { SharedInfoPage::from_address(address as u64) };
            sender.send(read_time(page).0).unwrap();
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(receiver.try_recv().is_err(), "read_time returned during an update");
        let time = |offset: usize| address + TIME_OFFSET + offset;
        // SAFETY: as in the writer above; the reader only reads.
        unsafe {
            AtomicU64::from_ptr(time(core::mem::offset_of!(VcpuTimeInfo, system_time)) as *mut u64)
                .store(2, Ordering::Release);
            AtomicU32::from_ptr(time(core::mem::offset_of!(VcpuTimeInfo, version)) as *mut u32)
                .store(8, Ordering::Release);
        }
        let copy = receiver.recv_timeout(std::time::Duration::from_secs(10)).expect("the reader finishes");
        reader.join().unwrap();
        assert_eq!((copy.version, copy.system_time), (8, 2));
        drop(info);
    }

    #[test]
    fn seqlocked_read_of_a_page() {
        let mut info = Box::new(SharedInfo::new_zeroed());
        info.vcpu_info[0].time = VcpuTimeInfo {
            version: 4,
            tsc_timestamp: 10,
            system_time: 77,
            tsc_to_system_mul: 1 << 31,
            tsc_shift: -2,
            ..VcpuTimeInfo::default()
        };
        // SAFETY: the box outlives the view; nothing else touches it.
        let page = unsafe { SharedInfoPage::from_address(&*info as *const SharedInfo as u64) };
        let (time, _) = read_time(page);
        assert_eq!(
            (time.version, time.tsc_timestamp, time.system_time, time.mul, time.shift),
            (4, 10, 77, 1 << 31, -2)
        );
    }
}
