//! TSC ticks to nanoseconds with the formula guests use (SPEC §8, `VcpuTimeInfo`), and
//! the hypervisor's system time built from that same formula.
//!
//! # Why a guest never sees time go backwards
//!
//! Write `g(d)` for [`TscScale::to_ns`]`(d)`, `B` for the boot TSC. The hypervisor's
//! system time at TSC `t` is `g(t - B)` ([`Clock::now_ns`]), and every published
//! `(tsc_timestamp T, system_time S)` pair is `(T, g(T - B))` ([`Clock::time_info`]). A
//! guest reading that info at TSC `t ≥ T` computes `v(t) = g(T - B) + g(t - T)`.
//!
//! `g(d) = ⌊d·2^shift·mul / 2^32⌋` with `shift ≥ 0` (which [`TscScale::scale_for`] always
//! chooses) is one floor of a linear function, so for all `a, b`:
//!
//! 1. `g` is non-decreasing;
//! 2. `g(a) + g(b) ≤ g(a + b)` (`⌊x⌋ + ⌊y⌋ ≤ ⌊x + y⌋`);
//! 3. `g(a + b) ≤ g(a) + g(b) + 1` (`⌊x + y⌋ ≤ ⌊x⌋ + ⌊y⌋ + 1`).
//!
//! Hence `now_ns(t) - 1 ≤ v(t) ≤ now_ns(t)` for every published info (2 and 3), and:
//!
//! * successive infos have non-decreasing `system_time` (1);
//! * an older info read at the same TSC as a newer one gives at most the hypervisor's
//!   `now_ns(t)`, which the newer one undershoots by at most 1 ns: `v_old(t) ≤ v_new(t) + 1`;
//! * a guest that reads `v_old(t1)` (necessarily `t1 ≤ T_new`: the update happens after
//!   its read, or the seqlock makes it retry) and later `v_new(t2)` gets
//!   `v_old(t1) ≤ now_ns(t1) ≤ now_ns(T_new) = S_new ≤ v_new(t2)`: never backwards;
//! * a timer for deadline `D` is programmed at [`Clock::deadline_tsc`]`(D)`, the first TSC
//!   where `now_ns ≥ D`; the info written when the expiry is delivered has `S ≥ D`, so
//!   the guest's clock already shows the deadline when it learns of it.
//!
//! A right shift (Xen's choice above 2 GHz) would put a second floor in `g` (on the
//! TSC delta), weakening 3 to 2 ns and dropping the TSC's low bits; keeping the shift
//! non-negative avoids both at the cost of a smaller multiplier (see `scale_for`).

use core::cell::Cell;
use hypercall_abi::shared_info::VcpuTimeInfo;

/// Nanoseconds in a second.
pub const NANOSECONDS_PER_SECOND: u64 = 1_000_000_000;

/// The guest-visible TSC-to-nanoseconds conversion (`tsc_to_system_mul`, `tsc_shift`):
/// `ns = ((delta << shift) * mul) >> 32`, a negative shift meaning a right shift.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct TscScale {
    /// 32.32 fixed-point fraction: nanoseconds per (shifted) tick, times 2^32.
    pub mul: u32,
    /// Power-of-two prescale of the TSC delta.
    pub shift: i8,
}

impl TscScale {
    /// The scale for a TSC running at `tsc_hz`, or `None` outside `1 ..= 1e9·2^32` Hz.
    ///
    /// Like Xen, the delta is first scaled by a power of two so that the remaining
    /// factor, nanoseconds per scaled tick, is a fraction below 1 and fits a 32.32 `mul`:
    /// the shift is the smallest `s ≥ 0` with `tsc_hz·2^s > 1e9` and
    /// `mul = ⌊1e9·2^32 / (tsc_hz·2^s)⌋ < 2^32`. Below 1 GHz this is exactly Xen's
    /// normalization (`mul` in `[2^31, 2^32)`). Above 1 GHz Xen shifts right to keep
    /// `mul ≥ 2^31`; this keeps `shift = 0` and accepts a smaller `mul` (still ≥ 2^28 up
    /// to 16 GHz, a rate error below 4·10⁻⁹), because a right shift would add a second
    /// rounding step and break the 1 ns bound the module documentation relies on.
    pub fn scale_for(tsc_hz: u64) -> Option<Self> {
        if tsc_hz == 0 {
            return None;
        }
        let mut shift = 0u32;
        while (u128::from(tsc_hz) << shift) <= u128::from(NANOSECONDS_PER_SECOND) {
            shift += 1;
        }
        let mul = (u128::from(NANOSECONDS_PER_SECOND) << 32) / (u128::from(tsc_hz) << shift);
        if mul == 0 {
            return None;
        }
        Some(Self { mul: u32::try_from(mul).ok()?, shift: shift as i8 })
    }

    /// Nanoseconds in `delta` TSC ticks: `((delta << shift) * mul) >> 32`, computed in
    /// 128 bits (a guest doing the shift in 64 bits agrees for any delta below
    /// `2^(64 - shift)` ticks: centuries at 1 MHz), saturating at `u64::MAX`.
    pub fn to_ns(&self, delta: u64) -> u64 {
        let scaled = if self.shift >= 0 {
            let shift = self.shift as u32;
            if delta != 0 && shift > (u128::from(delta)).leading_zeros() {
                return u64::MAX;
            }
            u128::from(delta) << shift
        } else {
            u128::from(delta.checked_shr(self.shift.unsigned_abs() as u32).unwrap_or(0))
        };
        // A shift far beyond any `scale_for` result can overflow even 128 bits: saturate.
        scaled
            .checked_mul(u128::from(self.mul))
            .map_or(u64::MAX, |product| u64::try_from(product >> 32).unwrap_or(u64::MAX))
    }

    /// The smallest TSC delta whose [`to_ns`](Self::to_ns) is at least `ns` (rounded up,
    /// so a timer programmed from it never fires before the deadline), or `u64::MAX`
    /// when no delta reaches `ns`.
    pub fn tsc_delta_for_ns(&self, ns: u64) -> u64 {
        if ns == 0 {
            return 0;
        }
        if self.mul == 0 {
            return u64::MAX;
        }
        let target = u128::from(ns) << 32;
        if self.shift >= 0 {
            // ⌊d·2^s·mul / 2^32⌋ ≥ ns  ⟺  d·2^s·mul ≥ ns·2^32.
            let shift = self.shift as u32;
            // Overflow is judged on the unshifted multiplier (the shifted value's own leading
            // zeros say nothing about whether bits were lost).
            let mul = u128::from(self.mul);
            let per_tick = (mul.leading_zeros() >= shift).then(|| mul << shift);
            match per_tick {
                Some(per_tick) => u64::try_from(target.div_ceil(per_tick)).unwrap_or(u64::MAX),
                // The multiplier overflows 128 bits: one tick is already enough.
                None => 1,
            }
        } else {
            // ⌊⌊d/2^k⌋·mul / 2^32⌋ ≥ ns  ⟺  ⌊d/2^k⌋ ≥ ⌈ns·2^32/mul⌉  ⟺  d ≥ that·2^k.
            let shifted = target.div_ceil(u128::from(self.mul));
            let shift = self.shift.unsigned_abs() as u32;
            match shifted.checked_shl(shift).filter(|_| shifted.leading_zeros() >= shift) {
                Some(delta) => u64::try_from(delta).unwrap_or(u64::MAX),
                None => u64::MAX,
            }
        }
    }
}

/// System time: nanoseconds since the hypervisor's boot TSC, from the guest formula.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Clock {
    /// TSC at system time 0.
    pub boot_tsc: u64,
    /// TSC deltas to nanoseconds.
    pub scale: TscScale,
}

impl Clock {
    /// A clock starting at `boot_tsc` for a TSC of `tsc_hz` (`None` if the frequency is
    /// out of range, see [`TscScale::scale_for`]).
    pub fn new(boot_tsc: u64, tsc_hz: u64) -> Option<Self> {
        Some(Self { boot_tsc, scale: TscScale::scale_for(tsc_hz)? })
    }

    /// System time at `tsc`.
    pub fn now_ns(&self, tsc: u64) -> u64 {
        self.scale.to_ns(tsc.saturating_sub(self.boot_tsc))
    }

    /// The `(tsc_timestamp, system_time)` pair to publish at `tsc`.
    pub fn time_info(&self, tsc: u64) -> (u64, u64) {
        (tsc, self.now_ns(tsc))
    }

    /// The whole `VcpuTimeInfo` to publish at `tsc` under seqlock `version` (the writer
    /// stores an odd version first, then these fields, then the next even version).
    pub fn vcpu_time_info(&self, tsc: u64, version: u32) -> VcpuTimeInfo {
        let (tsc_timestamp, system_time) = self.time_info(tsc);
        VcpuTimeInfo {
            version,
            tsc_timestamp,
            system_time,
            tsc_to_system_mul: self.scale.mul,
            tsc_shift: self.scale.shift,
            ..VcpuTimeInfo::default()
        }
    }

    /// The first TSC at which [`now_ns`](Self::now_ns) reaches `deadline_ns`.
    pub fn deadline_tsc(&self, deadline_ns: u64) -> u64 {
        self.boot_tsc.saturating_add(self.scale.tsc_delta_for_ns(deadline_ns))
    }
}

/// The last [`Clock::deadline_tsc`] asked for, kept with the clock and deadline it was
/// computed for. The hypervisor asks for the TSC of its earliest deadline on every return
/// to a guest, and that deadline changes far less often than that; the conversion is a
/// 128-bit division (about 110 instructions).
#[derive(Clone, Debug, Default)]
pub struct DeadlineCache(Cell<Option<(Clock, u64, u64)>>);

impl DeadlineCache {
    /// `clock.deadline_tsc(deadline_ns)`, computed again only when the clock or the
    /// deadline differ from the last call's.
    pub fn tsc(&self, clock: &Clock, deadline_ns: u64) -> u64 {
        if let Some((cached_clock, ns, tsc)) = self.0.get() {
            if ns == deadline_ns && cached_clock == *clock {
                return tsc;
            }
        }
        let tsc = clock.deadline_tsc(deadline_ns);
        self.0.set(Some((*clock, deadline_ns, tsc)));
        tsc
    }
}

/// What a guest computes from `info` at `tsc` (the published formula; a TSC before the
/// timestamp counts as no time elapsed).
pub fn guest_ns(info: &VcpuTimeInfo, tsc: u64) -> u64 {
    let scale = TscScale { mul: info.tsc_to_system_mul, shift: info.tsc_shift };
    info.system_time.saturating_add(scale.to_ns(tsc.saturating_sub(info.tsc_timestamp)))
}
