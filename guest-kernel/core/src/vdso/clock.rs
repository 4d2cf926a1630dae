//! The clock page: what the vDSO reads to tell the time without a system call, and the
//! formula it applies. The kernel's own monotonic clock is the same formula over the same
//! parameters, so a reading in user mode and one by a system call agree to the nanosecond
//! when the page is current.
//!
//! The kernel rewrites the page whenever the platform's parameters change, under a
//! sequence count (a seqlock): odd while a write is under way, a new even value after it.
//! A reader takes the count, the fields and the TSC, and starts again if the count was odd
//! or has changed since.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// How to turn a TSC value into nanoseconds of the kernel's monotonic clock:
/// `ns = ns_base + ((((tsc − tsc_base) >> shift) × multiplier) >> 32)`, the subtraction
/// saturating at 0, the product in 128 bits, the result truncated to 64 bits (which
/// matters only after 2⁶⁴ ns, about 584 years).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct ClockParameters {
    /// The TSC at `ns_base`.
    pub tsc_base: u64,
    /// The clock at `tsc_base`, in ns.
    pub ns_base: u64,
    /// Nanoseconds per (shifted) TSC tick × 2³², below 2⁶³.
    pub multiplier: u64,
    /// Right shift of the TSC delta before the multiply (0..=63).
    pub shift: u32,
}

impl ClockParameters {
    /// From a pvclock time record (SPEC.md §19.2: `tsc_to_system_mul`, a signed
    /// `tsc_shift` in −31..=31): a left shift moves into the multiplier, which gives the
    /// same product exactly, so the result is the record's formula to the nanosecond.
    pub const fn from_pvclock(tsc_timestamp: u64, system_time: u64, mul: u32, shift: i8) -> Self {
        let left = if shift > 0 { shift as u32 & 31 } else { 0 };
        let right = if shift < 0 { (-(shift as i16)) as u32 & 31 } else { 0 };
        ClockParameters {
            tsc_base: tsc_timestamp,
            ns_base: system_time,
            multiplier: (mul as u64) << left,
            shift: right,
        }
    }

    /// The clock at TSC value `tsc`.
    pub const fn ns_at(&self, tsc: u64) -> u64 {
        let delta = tsc.saturating_sub(self.tsc_base) >> (self.shift & 63);
        let scaled = ((delta as u128 * self.multiplier as u128) >> 32) as u64;
        self.ns_base.wrapping_add(scaled)
    }
}

/// The clock page's contents, at its first byte. The vDSO's asm reads the fields at
/// these offsets (`core::mem::offset_of!`), so this layout is the one definition of both.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct ClockPage {
    /// The seqlock's count: odd while the kernel writes the page.
    pub sequence: u32,
    /// Zero.
    pub reserved: u32,
    /// [`ClockParameters::tsc_base`].
    pub tsc_base: u64,
    /// [`ClockParameters::multiplier`].
    pub multiplier: u64,
    /// [`ClockParameters::shift`].
    pub shift: u64,
    /// [`ClockParameters::ns_base`]: the base of the monotonic clocks.
    pub monotonic_base: u64,
    /// `ns_base` plus the wallclock at monotonic 0 (ns since 1970): the base of the
    /// real-time clocks.
    pub realtime_base: u64,
}

impl ClockPage {
    /// The page for `parameters` and a wallclock of `wallclock_at_zero_ns` (ns since 1970 at
    /// monotonic time 0), with count `sequence`.
    pub const fn new(parameters: ClockParameters, wallclock_at_zero_ns: u64, sequence: u32) -> Self {
        ClockPage {
            sequence,
            reserved: 0,
            tsc_base: parameters.tsc_base,
            multiplier: parameters.multiplier,
            shift: parameters.shift as u64,
            monotonic_base: parameters.ns_base,
            realtime_base: parameters.ns_base.wrapping_add(wallclock_at_zero_ns),
        }
    }

    /// The monotonic clock at `tsc`, computed as the vDSO does from this page (the
    /// real-time clock is the same with `realtime_base`).
    pub const fn monotonic_at(&self, tsc: u64) -> u64 {
        let parameters = ClockParameters {
            tsc_base: self.tsc_base,
            ns_base: self.monotonic_base,
            multiplier: self.multiplier,
            shift: self.shift as u32,
        };
        parameters.ns_at(tsc)
    }
}

/// Byte offsets of the fields, for the vDSO's asm.
pub mod offsets {
    use super::ClockPage;
    use core::mem::offset_of;

    pub const SEQUENCE: usize = offset_of!(ClockPage, sequence);
    pub const TSC_BASE: usize = offset_of!(ClockPage, tsc_base);
    pub const MULTIPLIER: usize = offset_of!(ClockPage, multiplier);
    pub const SHIFT: usize = offset_of!(ClockPage, shift);
    pub const MONOTONIC_BASE: usize = offset_of!(ClockPage, monotonic_base);
    pub const REALTIME_BASE: usize = offset_of!(ClockPage, realtime_base);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SPEC.md §19.2's formula, written out as the spec states it.
    fn pvclock(tsc_timestamp: u64, system_time: u64, mul: u32, shift: i8, tsc: u64) -> u64 {
        let delta = tsc.saturating_sub(tsc_timestamp);
        let shifted = if shift >= 0 { u128::from(delta) << shift } else { u128::from(delta >> -shift) };
        system_time.wrapping_add(((shifted * u128::from(mul)) >> 32) as u64)
    }

    #[test]
    fn pvclock_records_convert_exactly() {
        for shift in -31i8..=31 {
            for mul in [1u32, 0x8000_0000, 0xa3d7_0a3d, u32::MAX] {
                for delta in [0u64, 1, 999, 0xffff_ffff, 1 << 40, u64::MAX >> 1, u64::MAX - 5000] {
                    let parameters = ClockParameters::from_pvclock(5000, 77, mul, shift);
                    assert_eq!(
                        parameters.ns_at(5000u64.wrapping_add(delta)),
                        pvclock(5000, 77, mul, shift, 5000u64.wrapping_add(delta)),
                        "mul {mul:#x} shift {shift} delta {delta}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_tsc_before_the_base_counts_as_no_time() {
        let parameters = ClockParameters { tsc_base: 1000, ns_base: 50, multiplier: 1 << 32, shift: 0 };
        assert_eq!(parameters.ns_at(10), 50);
        assert_eq!(parameters.ns_at(1250), 300);
    }

    #[test]
    fn the_page_holds_both_bases_and_computes_like_the_parameters() {
        let parameters = ClockParameters { tsc_base: 100, ns_base: 7, multiplier: 3 << 31, shift: 1 };
        let page = ClockPage::new(parameters, 1_700_000_000_000_000_000, 4);
        assert_eq!(page.realtime_base, 1_700_000_000_000_000_007);
        assert_eq!(page.monotonic_at(2100), parameters.ns_at(2100));
        assert_eq!(parameters.ns_at(2100), 7 + 1500);
        assert_eq!(core::mem::size_of::<ClockPage>(), 48);
        assert_eq!((offsets::SEQUENCE, offsets::TSC_BASE, offsets::REALTIME_BASE), (0, 8, 40));
    }
}
