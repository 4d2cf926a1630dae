//! Host tests of the clock, the timers and the calendar.

use super::*;
use crate::time::calendar::unix_seconds;

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
    1_000_000,
    1_193_182,
    3_579_545,
    14_318_180,
    100_000_000,
    999_999_999,
    1_000_000_000,
    1_000_000_001,
    2_000_000_000,
    2_600_000_000,
    3_999_999_999,
    10_000_000_000,
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
    // A shift that exactly fills the 128-bit product is not an overflow: with a zero
    // fraction the answer is 0, not the saturated value.
    assert_eq!(TscScale { mul: 0, shift: 127 }.to_ns(1), 0);
    assert_eq!(TscScale { mul: 0, shift: 64 }.to_ns(u64::MAX), 0);
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
    let bcd = RtcRegisters {
        second: 0x56,
        minute: 0x34,
        hour: 0x12,
        day: 0x29,
        month: 0x02,
        year: 0x24,
        century: Some(0x20),
    };
    assert_eq!(rtc_unix_seconds(bcd, RTC_24_HOUR), Some(1_709_210_096));
    let binary = RtcRegisters { second: 56, minute: 34, hour: 12, day: 29, month: 2, year: 24, century: None };
    assert_eq!(rtc_unix_seconds(binary, RTC_24_HOUR | RTC_BINARY), Some(1_709_210_096));
    // 12-hour clock: 12 PM is noon, 12 AM is midnight, 0x81 is 1 PM.
    assert_eq!(rtc_unix_seconds(RtcRegisters { hour: 0x92, ..bcd }, 0), Some(1_709_210_096));
    assert_eq!(rtc_unix_seconds(RtcRegisters { hour: 0x12, ..bcd }, 0), Some(1_709_210_096 - 12 * 3600));
    assert_eq!(rtc_unix_seconds(RtcRegisters { hour: 0x81, ..bcd }, 0), Some(1_709_210_096 + 3600));
    assert_eq!(rtc_unix_seconds(RtcRegisters { hour: 0x00, ..bcd }, 0), None);
    // No century register: 70..99 is the 1900s.
    let old =
        RtcRegisters { year: 0x99, month: 0x12, day: 0x31, hour: 0x23, minute: 0x59, second: 0x59, century: None };
    assert_eq!(rtc_unix_seconds(old, RTC_24_HOUR), Some(946_684_799));
    // No RTC: every register reads 0xff.
    let absent = RtcRegisters {
        second: 0xff,
        minute: 0xff,
        hour: 0xff,
        day: 0xff,
        month: 0xff,
        year: 0xff,
        century: Some(0xff),
    };
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

#[test]
fn the_deadline_cache_answers_what_the_clock_would() {
    let cache = DeadlineCache::default();
    let clock = Clock::new(1_000, 2_500_000_000).unwrap();
    let other = Clock::new(5_000, 3_000_000_000).unwrap();
    for (clock, ns) in [(clock, 7), (clock, 7), (clock, 1_000_000), (other, 1_000_000), (other, 1_000_000), (clock, 7)]
    {
        assert_eq!(cache.tsc(&clock, ns), clock.deadline_tsc(ns), "{clock:?} {ns}");
    }
    assert_ne!(clock.deadline_tsc(1_000_000), other.deadline_tsc(1_000_000), "the clocks differ where it counts");
}

#[test]
fn rtc_century_register_bcd_digits_and_leap_centuries() {
    let bcd = RtcRegisters { second: 0, minute: 0, hour: 0, day: 0x01, month: 0x01, year: 0x05, century: Some(0x21) };
    let in_2105 = unix_seconds(2105, 1, 1, 0, 0, 0).unwrap();
    assert_eq!(rtc_unix_seconds(bcd, RTC_24_HOUR), Some(in_2105), "the century register counts");
    assert_eq!(rtc_unix_seconds(RtcRegisters { century: None, ..bcd }, RTC_24_HOUR), unix_seconds(2005, 1, 1, 0, 0, 0));
    // A BCD digit above 9 in either nibble is a torn or absent reading.
    for year in [0x1a, 0xa1] {
        assert_eq!(rtc_unix_seconds(RtcRegisters { year, ..bcd }, RTC_24_HOUR), None, "{year:#x}");
    }
    // 2000 is a leap year (divisible by 400), 2100 is not.
    assert_eq!(unix_seconds(2000, 2, 29, 0, 0, 0), Some(951_782_400));
    assert_eq!(unix_seconds(2100, 2, 29, 0, 0, 0), None);
}

#[test]
fn each_out_of_range_field_alone_makes_no_date() {
    assert!(unix_seconds(2024, 6, 30, 23, 59, 59).is_some());
    for (year, month, day, hour, minute, second) in
        [(1969, 6, 30, 0, 0, 0), (2024, 0, 30, 0, 0, 0), (2024, 13, 1, 0, 0, 0), (2024, 6, 31, 0, 0, 0)]
            .into_iter()
            .chain([(2024, 6, 0, 0, 0, 0), (2024, 6, 30, 24, 0, 0), (2024, 6, 30, 0, 60, 0), (2024, 6, 30, 0, 0, 60)])
    {
        assert_eq!(
            unix_seconds(year, month, day, hour, minute, second),
            None,
            "{year}-{month}-{day} {hour}:{minute}:{second}"
        );
    }
}
