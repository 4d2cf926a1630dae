//! Time: TSC ticks to nanoseconds with the formula guests use (SPEC §8, `VcpuTimeInfo`),
//! the hypervisor's system time built from that same formula, one-shot per-domain timer
//! deadlines, and the CMOS date arithmetic behind the wallclock.
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

use alloc::vec::Vec;
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
        let ns = (scaled * u128::from(self.mul)) >> 32;
        u64::try_from(ns).unwrap_or(u64::MAX)
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
            let per_tick = u128::from(self.mul).checked_shl(shift).filter(|value| value.leading_zeros() >= shift);
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

/// What a guest computes from `info` at `tsc` (the published formula; a TSC before the
/// timestamp counts as no time elapsed).
pub fn guest_ns(info: &VcpuTimeInfo, tsc: u64) -> u64 {
    let scale = TscScale { mul: info.tsc_to_system_mul, shift: info.tsc_shift };
    info.system_time.saturating_add(scale.to_ns(tsc.saturating_sub(info.tsc_timestamp)))
}

/// One-shot timer deadlines (absolute system time in ns), at most one per domain, kept
/// in one slot per domain index: memory is bounded by the number of domains, and no set
/// allocates past the first for a domain. The earliest deadline is kept up to date, so
/// [`earliest`](Self::earliest), asked on every return to a guest, costs nothing; only a
/// cancel or an expiry of that deadline rescans.
#[derive(Clone, Debug, Default)]
pub struct Timers {
    deadlines: Vec<Option<u64>>,
    earliest: Option<u64>,
}

impl Timers {
    /// No timer set.
    pub const fn new() -> Self {
        Self { deadlines: Vec::new(), earliest: None }
    }

    /// Sets (or replaces) `domain`'s deadline. A deadline already past is reported by the
    /// next [`expired`](Self::expired) call, whatever its `now`.
    pub fn set(&mut self, domain: usize, deadline_ns: u64) {
        if self.deadlines.len() <= domain {
            self.deadlines.resize(domain + 1, None);
        }
        let replaced = self.deadlines[domain].replace(deadline_ns);
        if replaced.is_some() && replaced == self.earliest {
            self.rescan();
        } else {
            self.earliest = Some(self.earliest.map_or(deadline_ns, |earliest| earliest.min(deadline_ns)));
        }
    }

    /// Removes `domain`'s deadline, if any.
    pub fn cancel(&mut self, domain: usize) {
        if let Some(slot) = self.deadlines.get_mut(domain) {
            if slot.take().is_some_and(|deadline| Some(deadline) == self.earliest) {
                self.rescan();
            }
        }
    }

    /// `domain`'s pending deadline.
    pub fn deadline(&self, domain: usize) -> Option<u64> {
        self.deadlines.get(domain).copied().flatten()
    }

    /// How many deadlines are pending.
    pub fn pending(&self) -> usize {
        self.deadlines.iter().filter(|slot| slot.is_some()).count()
    }

    /// The earliest pending deadline.
    pub fn earliest(&self) -> Option<u64> {
        self.earliest
    }

    fn rescan(&mut self) {
        self.earliest = self.deadlines.iter().filter_map(|slot| *slot).min();
    }

    /// The domains whose deadline is at or before `now_ns`, in index order; each is
    /// removed as it is yielded (an iterator dropped early leaves the rest pending).
    pub fn expired(&mut self, now_ns: u64) -> Expired<'_> {
        Expired { timers: self, next: 0, now_ns }
    }
}

/// Iterator returned by [`Timers::expired`].
pub struct Expired<'a> {
    timers: &'a mut Timers,
    next: usize,
    now_ns: u64,
}

impl Iterator for Expired<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let deadlines = &mut self.timers.deadlines;
        while self.next < deadlines.len() {
            let index = self.next;
            self.next += 1;
            if deadlines[index].is_some_and(|deadline| deadline <= self.now_ns) {
                deadlines[index] = None;
                return Some(index);
            }
        }
        None
    }
}

impl Drop for Expired<'_> {
    fn drop(&mut self) {
        // Only the deadlines taken can have been the earliest; once, at the end.
        if self.timers.earliest.is_some_and(|earliest| earliest <= self.now_ns) {
            self.timers.rescan();
        }
    }
}

/// The CMOS clock's date registers as read (before decoding).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RtcRegisters {
    /// Seconds register.
    pub second: u8,
    /// Minutes register.
    pub minute: u8,
    /// Hours register.
    pub hour: u8,
    /// Day-of-month register.
    pub day: u8,
    /// Month register.
    pub month: u8,
    /// Two-digit year.
    pub year: u8,
    /// Century register (0x32, the PC convention); `None` if the machine has none.
    pub century: Option<u8>,
}

/// Status register B: binary (not BCD) values.
pub const RTC_BINARY: u8 = 1 << 2;
/// Status register B: 24-hour clock (else 12-hour with bit 7 of the hour meaning PM).
pub const RTC_24_HOUR: u8 = 1 << 1;

/// Seconds since 1970-01-01 00:00:00 UTC for the CMOS reading, decoded per status
/// register B (BCD or binary, 12- or 24-hour). `None` if a field is out of range (a
/// reading torn by an update, or no RTC at all: every port reads 0xff).
pub fn rtc_unix_seconds(registers: RtcRegisters, status_b: u8) -> Option<u64> {
    let decode = |value: u8| -> Option<u8> {
        if status_b & RTC_BINARY != 0 {
            Some(value)
        } else if value >> 4 <= 9 && value & 0xf <= 9 {
            Some((value >> 4) * 10 + (value & 0xf))
        } else {
            None
        }
    };
    let mut hour = decode(registers.hour & 0x7f)?;
    if status_b & RTC_24_HOUR == 0 {
        // 12-hour clock: 12 AM is hour 0, 12 PM is hour 12.
        let afternoon = registers.hour & 0x80 != 0;
        if !(1..=12).contains(&hour) {
            return None;
        }
        hour = (hour % 12) + if afternoon { 12 } else { 0 };
    }
    let two_digit_year = u32::from(decode(registers.year)?);
    let century = match registers.century.and_then(decode) {
        Some(century @ 19..=29) => u32::from(century),
        // No (sane) century register: the two-digit year means 1970–2069.
        _ if two_digit_year >= 70 => 19,
        _ => 20,
    };
    unix_seconds(
        century * 100 + two_digit_year,
        decode(registers.month)?,
        decode(registers.day)?,
        hour,
        decode(registers.minute)?,
        decode(registers.second)?,
    )
}

/// Seconds since the Unix epoch for a proleptic-Gregorian UTC date and time, `None` for
/// out-of-range fields or dates before 1970.
pub fn unix_seconds(year: u32, month: u8, day: u8, hour: u8, minute: u8, second: u8) -> Option<u64> {
    let leap = |year: u32| year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    const DAYS: [u8; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if year < 1970 || !(1..=12).contains(&month) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let month_days = DAYS[usize::from(month - 1)] + u8::from(month == 2 && leap(year));
    if day == 0 || day > month_days {
        return None;
    }
    let mut days: u64 = (1970..year).map(|year| if leap(year) { 366 } else { 365 }).sum();
    for earlier in 1..month {
        days += u64::from(DAYS[usize::from(earlier - 1)]) + u64::from(earlier == 2 && leap(year));
    }
    days += u64::from(day - 1);
    Some(((days * 24 + u64::from(hour)) * 60 + u64::from(minute)) * 60 + u64::from(second))
}

/// The wallclock at system time 0 (`wc_sec`, `wc_nsec`), given the Unix time
/// `unix_seconds` read from the RTC when system time was `read_at_ns`. The RTC has
/// one-second resolution, so the result is that exact.
pub fn wallclock_base(unix_seconds: u64, read_at_ns: u64) -> (u32, u32) {
    let base_ns = (u128::from(unix_seconds) * u128::from(NANOSECONDS_PER_SECOND)).saturating_sub(u128::from(read_at_ns));
    let seconds = base_ns / u128::from(NANOSECONDS_PER_SECOND);
    let nanoseconds = base_ns % u128::from(NANOSECONDS_PER_SECOND);
    (u32::try_from(seconds).unwrap_or(u32::MAX), nanoseconds as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: deterministic pseudo-random values for the property tests.
    struct Random(u64);

    impl Random {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        /// A value with a random number of significant bits up to `bits`.
        fn magnitude(&mut self, bits: u32) -> u64 {
            let width = (self.next() % u64::from(bits + 1)) as u32;
            if width == 0 {
                0
            } else {
                self.next() >> (64 - width)
            }
        }

        /// A frequency between 1 MHz and 10 GHz, log-uniform-ish.
        fn frequency(&mut self) -> u64 {
            loop {
                let hz = self.magnitude(34);
                if (1_000_000..=10_000_000_000).contains(&hz) {
                    return hz;
                }
            }
        }
    }

    const SAMPLE_FREQUENCIES: [u64; 12] = [
        1_000_000, 1_193_182, 3_579_545, 14_318_180, 100_000_000, 999_999_999, 1_000_000_000,
        1_000_000_001, 2_000_000_000, 2_600_000_000, 3_999_999_999, 10_000_000_000,
    ];

    fn frequencies() -> Vec<u64> {
        let mut random = Random(0x1234_5678_9abc_def1);
        let mut all = SAMPLE_FREQUENCIES.to_vec();
        all.extend((0..200).map(|_| random.frequency()));
        all
    }

    #[test]
    fn scale_matches_frequency() {
        for hz in frequencies() {
            let scale = TscScale::scale_for(hz).unwrap();
            assert!(scale.shift >= 0, "{hz}: {scale:?}");
            // The multiplier is in range and is the largest that does not overshoot.
            let scaled_hz = u128::from(hz) << scale.shift;
            assert!(scaled_hz > u128::from(NANOSECONDS_PER_SECOND));
            assert!(u128::from(scale.mul) * scaled_hz <= u128::from(NANOSECONDS_PER_SECOND) << 32);
            assert!((u128::from(scale.mul) + 1) * scaled_hz > u128::from(NANOSECONDS_PER_SECOND) << 32);
            if hz <= NANOSECONDS_PER_SECOND {
                assert!(scale.mul >= 1 << 31, "Xen's normalization below 1 GHz");
            }
            // One second of ticks is one second, within the multiplier's precision.
            let second = scale.to_ns(hz);
            assert!(second <= NANOSECONDS_PER_SECOND && NANOSECONDS_PER_SECOND - second <= 4, "{hz}: {second}");
        }
        assert_eq!(TscScale::scale_for(0), None);
        assert_eq!(TscScale::scale_for(1).map(|scale| scale.shift), Some(30));
        assert_eq!(TscScale::scale_for(u64::MAX), None);
        // Exactly 1 GHz is scaled to 2 GHz first, as Xen does: half a nanosecond per tick.
        assert_eq!(TscScale::scale_for(1_000_000_000), Some(TscScale { mul: 1 << 31, shift: 1 }));
    }

    #[test]
    fn published_formula() {
        // 2 GHz: shift 0, mul = 2^31: half a nanosecond per tick.
        let scale = TscScale::scale_for(2_000_000_000).unwrap();
        assert_eq!(scale, TscScale { mul: 1 << 31, shift: 0 });
        assert_eq!(scale.to_ns(3), 1);
        assert_eq!(scale.to_ns(4_000_000_000), 2_000_000_000);
        // Negative shifts are right shifts (guests must accept them; scale_for never makes one).
        let halved = TscScale { mul: 1 << 31, shift: -1 };
        assert_eq!(halved.to_ns(7), 1); // (7 >> 1) / 2
        assert_eq!(TscScale { mul: 1 << 31, shift: 2 }.to_ns(3), 6);
        // Saturation instead of wrapping.
        assert_eq!(TscScale { mul: u32::MAX, shift: 30 }.to_ns(u64::MAX), u64::MAX);
        assert_eq!(TscScale { mul: 1, shift: -100 }.to_ns(u64::MAX), 0);
    }

    #[test]
    fn inverse_rounds_up_and_is_minimal() {
        let mut random = Random(42);
        for hz in frequencies() {
            let scale = TscScale::scale_for(hz).unwrap();
            for _ in 0..500 {
                let ns = random.magnitude(60);
                let delta = scale.tsc_delta_for_ns(ns);
                assert!(scale.to_ns(delta) >= ns, "{hz} Hz, {ns} ns: delta {delta} gives {}", scale.to_ns(delta));
                if delta > 0 {
                    assert!(scale.to_ns(delta - 1) < ns, "{hz} Hz, {ns} ns: {delta} is not the smallest");
                }
            }
            assert_eq!(scale.tsc_delta_for_ns(0), 0);
        }
        // Negative shifts, including the extremes.
        for shift in [-1i8, -3, -20] {
            for mul in [1u32, 3, 1 << 31, u32::MAX] {
                let scale = TscScale { mul, shift };
                for _ in 0..200 {
                    let ns = random.magnitude(40);
                    let delta = scale.tsc_delta_for_ns(ns);
                    if delta == u64::MAX {
                        continue;
                    }
                    assert!(scale.to_ns(delta) >= ns);
                    if delta > 0 {
                        assert!(scale.to_ns(delta - 1) < ns);
                    }
                }
            }
        }
        assert_eq!(TscScale { mul: 0, shift: 0 }.tsc_delta_for_ns(5), u64::MAX);
        assert_eq!(TscScale { mul: 1, shift: 0 }.tsc_delta_for_ns(u64::MAX), u64::MAX);
    }

    #[test]
    fn rounding_bounds_the_proof_relies_on() {
        // g non-decreasing, superadditive, and at most 1 ns subadditive (module docs).
        let mut random = Random(7);
        for hz in frequencies() {
            let scale = TscScale::scale_for(hz).unwrap();
            for _ in 0..500 {
                let (a, b) = (random.magnitude(50), random.magnitude(50));
                let (ga, gb, gab) = (scale.to_ns(a), scale.to_ns(b), scale.to_ns(a + b));
                assert!(ga + gb <= gab, "{hz}: superadditive");
                assert!(gab <= ga + gb + 1, "{hz}: within 1 ns");
                assert!(scale.to_ns(a + 1) >= ga);
            }
        }
    }

    #[test]
    fn guest_time_never_goes_backwards_across_updates() {
        let mut random = Random(99);
        for hz in frequencies() {
            let boot = random.magnitude(50);
            let clock = Clock::new(boot, hz).unwrap();
            let mut tsc = boot;
            let mut published = clock.vcpu_time_info(tsc, 0);
            let mut last_seen = 0;
            for update in 0..200u32 {
                // The guest reads a few times with the current info...
                for _ in 0..3 {
                    tsc += random.magnitude(24);
                    let seen = guest_ns(&published, tsc);
                    assert!(seen >= last_seen, "{hz} Hz: went back from {last_seen} to {seen}");
                    assert!(seen <= clock.now_ns(tsc) && clock.now_ns(tsc) - seen <= 1);
                    last_seen = seen;
                }
                // ...then the hypervisor publishes a new one at a later TSC.
                tsc += random.magnitude(24);
                let newer = clock.vcpu_time_info(tsc, 2 * (update + 1));
                assert!(newer.system_time >= published.system_time);
                assert!(newer.system_time >= last_seen);
                // At any TSC after the update, the stale info exceeds the new one by ≤ 1 ns.
                for _ in 0..3 {
                    let later = tsc + random.magnitude(30);
                    assert!(guest_ns(&published, later) <= guest_ns(&newer, later) + 1, "{hz} Hz");
                }
                published = newer;
            }
        }
    }

    #[test]
    fn deadline_tsc_is_the_first_tick_at_the_deadline() {
        let mut random = Random(5);
        for hz in frequencies() {
            let clock = Clock::new(1_000_000, hz).unwrap();
            for _ in 0..200 {
                let deadline = random.magnitude(45);
                let tsc = clock.deadline_tsc(deadline);
                assert!(clock.now_ns(tsc) >= deadline);
                if tsc > clock.boot_tsc && deadline > 0 {
                    assert!(clock.now_ns(tsc - 1) < deadline);
                }
                // A guest reading info published at or after that TSC sees the deadline.
                let info = clock.vcpu_time_info(tsc + random.magnitude(10), 2);
                assert!(guest_ns(&info, info.tsc_timestamp) >= deadline);
            }
        }
        let clock = Clock::new(100, 1_000_000_000).unwrap();
        assert_eq!(clock.now_ns(50), 0, "before boot counts as boot");
        assert_eq!(clock.deadline_tsc(0), 100);
    }

    #[test]
    fn vcpu_time_info_fields() {
        let clock = Clock::new(1000, 2_000_000_000).unwrap();
        let info = clock.vcpu_time_info(3000, 4);
        assert_eq!((info.version, info.tsc_timestamp, info.system_time), (4, 3000, 1000));
        assert_eq!((info.tsc_to_system_mul, info.tsc_shift, info.pad0, info.pad1), (1 << 31, 0, 0, [0; 3]));
        assert_eq!(clock.time_info(3000), (3000, 1000));
    }

    #[test]
    fn timers() {
        let mut timers = Timers::new();
        assert_eq!(timers.earliest(), None);
        timers.set(3, 500);
        timers.set(0, 100);
        timers.set(5, 100);
        timers.set(3, 300); // replaces
        assert_eq!(timers.pending(), 3);
        assert_eq!(timers.earliest(), Some(100));
        assert_eq!(timers.deadline(3), Some(300));
        assert_eq!(timers.deadline(9), None);
        assert_eq!(timers.expired(99).count(), 0);
        assert_eq!(timers.expired(100).collect::<Vec<_>>(), [0, 5]);
        assert_eq!(timers.earliest(), Some(300));
        timers.cancel(3);
        timers.cancel(40); // never set: nothing happens
        assert_eq!(timers.earliest(), None);
        assert_eq!(timers.pending(), 0);
        // A deadline in the past fires at the next check; an early-dropped iterator
        // leaves the rest pending.
        timers.set(1, 10);
        timers.set(2, 10);
        assert_eq!(timers.expired(1_000).next(), Some(1));
        assert_eq!(timers.deadline(2), Some(10));
        assert_eq!(timers.expired(u64::MAX).collect::<Vec<_>>(), [2]);
        // One slot per domain index: memory bounded by the domain count.
        for domain in 0..64 {
            timers.set(domain, 1000 - domain as u64);
        }
        assert_eq!(timers.deadlines.len(), 64);
        assert_eq!(timers.earliest(), Some(937));
        assert_eq!(timers.expired(940).collect::<Vec<_>>(), [60, 61, 62, 63]);
        assert_eq!(timers.pending(), 60);
    }

    #[test]
    fn earliest_follows_every_change() {
        let mut random = Random(0x5eed_7135);
        let mut timers = Timers::new();
        let mut reference: [Option<u64>; 9] = [None; 9];
        for step in 0..20_000 {
            let domain = (random.next() % 9) as usize;
            match random.next() % 4 {
                0 | 1 => {
                    let deadline = random.next() % 1000;
                    timers.set(domain, deadline);
                    reference[domain] = Some(deadline);
                }
                2 => {
                    timers.cancel(domain);
                    reference[domain] = None;
                }
                _ => {
                    let now = random.next() % 1000;
                    // Sometimes stop early: the rest stays pending.
                    let take = (random.next() % 4) as usize;
                    let taken: Vec<usize> = timers.expired(now).take(take).collect();
                    for index in taken {
                        assert!(reference[index].is_some_and(|deadline| deadline <= now));
                        reference[index] = None;
                    }
                }
            }
            let expected = reference.iter().filter_map(|slot| *slot).min();
            assert_eq!(timers.earliest(), expected, "step {step}");
        }
    }

    #[test]
    fn calendar() {
        assert_eq!(unix_seconds(1970, 1, 1, 0, 0, 0), Some(0));
        assert_eq!(unix_seconds(2000, 3, 1, 0, 0, 0), Some(951_868_800));
        assert_eq!(unix_seconds(2024, 2, 29, 12, 34, 56), Some(1_709_210_096));
        assert_eq!(unix_seconds(2038, 1, 19, 3, 14, 8), Some(1 << 31));
        assert_eq!(unix_seconds(2023, 2, 29, 0, 0, 0), None);
        assert_eq!(unix_seconds(2100, 2, 29, 0, 0, 0), None, "2100 is not a leap year");
        assert_eq!(unix_seconds(1969, 12, 31, 23, 59, 59), None);
        assert_eq!(unix_seconds(2024, 13, 1, 0, 0, 0), None);
        assert_eq!(unix_seconds(2024, 1, 1, 24, 0, 0), None);
    }

    #[test]
    fn rtc_decoding() {
        let bcd = RtcRegisters { second: 0x56, minute: 0x34, hour: 0x12, day: 0x29, month: 0x02, year: 0x24, century: Some(0x20) };
        assert_eq!(rtc_unix_seconds(bcd, RTC_24_HOUR), Some(1_709_210_096));
        let binary = RtcRegisters { second: 56, minute: 34, hour: 12, day: 29, month: 2, year: 24, century: None };
        assert_eq!(rtc_unix_seconds(binary, RTC_24_HOUR | RTC_BINARY), Some(1_709_210_096));
        // 12-hour clock: 12 PM is noon, 12 AM is midnight, 0x81 is 1 PM.
        assert_eq!(rtc_unix_seconds(RtcRegisters { hour: 0x92, ..bcd }, 0), Some(1_709_210_096));
        assert_eq!(rtc_unix_seconds(RtcRegisters { hour: 0x12, ..bcd }, 0), Some(1_709_210_096 - 12 * 3600));
        assert_eq!(rtc_unix_seconds(RtcRegisters { hour: 0x81, ..bcd }, 0), Some(1_709_210_096 + 3600));
        assert_eq!(rtc_unix_seconds(RtcRegisters { hour: 0x00, ..bcd }, 0), None);
        // No century register: 70..99 is the 1900s.
        let old = RtcRegisters { year: 0x99, month: 0x12, day: 0x31, hour: 0x23, minute: 0x59, second: 0x59, century: None };
        assert_eq!(rtc_unix_seconds(old, RTC_24_HOUR), Some(946_684_799));
        // No RTC: every register reads 0xff.
        let absent = RtcRegisters { second: 0xff, minute: 0xff, hour: 0xff, day: 0xff, month: 0xff, year: 0xff, century: Some(0xff) };
        assert_eq!(rtc_unix_seconds(absent, 0xff), None);
        assert_eq!(rtc_unix_seconds(absent, 0), None);
    }

    #[test]
    fn wallclock() {
        assert_eq!(wallclock_base(1_700_000_000, 0), (1_700_000_000, 0));
        assert_eq!(wallclock_base(1_700_000_000, 250_000_000), (1_699_999_999, 750_000_000));
        assert_eq!(wallclock_base(1_700_000_000, 3 * NANOSECONDS_PER_SECOND), (1_699_999_997, 0));
        assert_eq!(wallclock_base(0, 5), (0, 0));
    }
}
