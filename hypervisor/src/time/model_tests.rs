//! Model-based tests: random timer operation sequences against a sorted map, and the TSC
//! conversion against exact integer arithmetic written independently of `clock.rs`.

use super::clock::{guest_ns, Clock, TscScale, NANOSECONDS_PER_SECOND};
use super::timers::Timers;
use proptest::prelude::*;
use std::collections::BTreeMap;

/// Default case counts (`PROPTEST_CASES` overrides them); a failure prints its minimal
/// input instead of writing a regression file into the source tree.
fn config() -> ProptestConfig {
    ProptestConfig { failure_persistence: None, ..ProptestConfig::default() }
}

/// Domain indices the operations use: a few past the last one ever set, so `cancel` and
/// `deadline` also see slots the table never grew to.
const DOMAINS: usize = 8;

#[derive(Clone, Debug)]
enum TimerOp {
    Set(usize, u64),
    Cancel(usize),
    /// `expired(now)`, taking at most `take` domains before dropping the iterator.
    Expire {
        now: u64,
        take: usize,
    },
}

/// Deadlines that meet: small values (so expiries collide), the top of the range, anything.
fn instant() -> impl Strategy<Value = u64> {
    prop_oneof![0..64u64, (u64::MAX - 4)..=u64::MAX, any::<u64>()]
}

fn timer_op() -> impl Strategy<Value = TimerOp> {
    prop_oneof![
        4 => (0..DOMAINS - 2, instant()).prop_map(|(domain, deadline)| TimerOp::Set(domain, deadline)),
        2 => (0..DOMAINS).prop_map(TimerOp::Cancel),
        2 => (instant(), 0..DOMAINS + 1).prop_map(|(now, take)| TimerOp::Expire { now, take }),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// Every observable of `Timers` after every step equals the model's: each domain's
    /// deadline, the pending count and the earliest deadline; `expired` yields exactly the
    /// model's due domains in index order and removes only the ones it yielded.
    #[test]
    fn timers_follow_a_sorted_map(ops in prop::collection::vec(timer_op(), 1..60)) {
        let mut timers = Timers::new();
        let mut model: BTreeMap<usize, u64> = BTreeMap::new();
        for op in ops {
            match op {
                TimerOp::Set(domain, deadline) => {
                    timers.set(domain, deadline);
                    model.insert(domain, deadline);
                }
                TimerOp::Cancel(domain) => {
                    timers.cancel(domain);
                    model.remove(&domain);
                }
                TimerOp::Expire { now, take } => {
                    let due: Vec<usize> =
                        model.iter().filter(|(_, &deadline)| deadline <= now).map(|(&domain, _)| domain).take(take).collect();
                    let fired: Vec<usize> = timers.expired(now).take(take).collect();
                    prop_assert_eq!(&fired, &due);
                    for domain in due {
                        model.remove(&domain);
                    }
                }
            }
            for domain in 0..DOMAINS {
                prop_assert_eq!(timers.deadline(domain), model.get(&domain).copied(), "domain {}", domain);
            }
            prop_assert_eq!(timers.pending(), model.len());
            prop_assert_eq!(timers.earliest(), model.values().copied().min());
        }
    }
}

/// `⌊delta·mul·2^shift / 2^32⌋` (a negative shift: `⌊⌊delta / 2^-shift⌋·mul / 2^32⌋`),
/// saturating at `u64::MAX`: the published formula, in exact arithmetic.
fn reference_ns(scale: TscScale, delta: u64) -> u64 {
    let saturate = |value: u128| u64::try_from(value).unwrap_or(u64::MAX);
    let mul = u128::from(scale.mul);
    if scale.shift < 0 {
        let shifted = delta.checked_shr(u32::from(scale.shift.unsigned_abs())).unwrap_or(0);
        return saturate((u128::from(shifted) * mul) >> 32);
    }
    let product = u128::from(delta) * mul; // < 2^96
    let shift = scale.shift as u32;
    if shift <= 32 {
        saturate(product >> (32 - shift))
    } else if product == 0 {
        0
    } else if product.leading_zeros() >= shift - 32 {
        saturate(product << (shift - 32))
    } else {
        u64::MAX
    }
}

/// TSC rates from 1 Hz to past the top of the accepted range, weighted to real ones.
fn frequency() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => 1_000_000u64..10_000_000_000,
        1 => 1u64..1_000_000,
        1 => any::<u64>(),
        1 => (NANOSECONDS_PER_SECOND << 32) - 2..=(NANOSECONDS_PER_SECOND << 32) + 2,
    ]
}

fn any_scale() -> impl Strategy<Value = TscScale> {
    (any::<u32>(), any::<i8>()).prop_map(|(mul, shift)| TscScale { mul, shift })
}

fn delta() -> impl Strategy<Value = u64> {
    prop_oneof![0..4096u64, any::<u64>(), (u64::MAX - 4)..=u64::MAX, (0..64u32).prop_map(|bit| 1u64 << bit)]
}

proptest! {
    #![proptest_config(config())]

    /// `to_ns` is the exact formula for every scale a guest could be given, including
    /// shifts far outside what `scale_for` chooses (it must saturate, never overflow).
    #[test]
    fn to_ns_is_the_exact_formula(scale in any_scale(), delta in delta()) {
        prop_assert_eq!(scale.to_ns(delta), reference_ns(scale, delta));
    }

    /// `tsc_delta_for_ns` is the least delta reaching `ns`, or `u64::MAX` when none does.
    #[test]
    fn tsc_delta_for_ns_is_the_least_delta(scale in any_scale(), ns in delta()) {
        let found = scale.tsc_delta_for_ns(ns);
        if found == u64::MAX {
            // Either nothing reaches `ns` or only the largest delta does.
            prop_assert!(reference_ns(scale, u64::MAX - 1) < ns);
        } else {
            prop_assert!(reference_ns(scale, found) >= ns, "delta {} gives {} < {}", found, reference_ns(scale, found), ns);
            if found > 0 {
                prop_assert!(reference_ns(scale, found - 1) < ns, "delta {} is not the least for {}", found, ns);
            }
        }
    }

    /// `scale_for` picks the least non-negative shift putting the rate above 1 GHz and
    /// the floor of the remaining fraction, and refuses exactly the rates it cannot express.
    #[test]
    fn scale_for_matches_its_definition(hz in frequency()) {
        let expected = (hz != 0).then(|| {
            let shift = (0u32..).find(|&shift| u128::from(hz) << shift > u128::from(NANOSECONDS_PER_SECOND)).unwrap();
            let mul = (u128::from(NANOSECONDS_PER_SECOND) << 32) / (u128::from(hz) << shift);
            (shift, mul)
        });
        match expected {
            Some((shift, mul)) if mul > 0 => {
                prop_assert_eq!(TscScale::scale_for(hz), Some(TscScale { mul: mul as u32, shift: shift as i8 }));
            }
            _ => prop_assert_eq!(TscScale::scale_for(hz), None),
        }
    }

    /// The clock's promises (clock.rs module documentation) for any frequency, boot TSC
    /// and pair of instants: system time never decreases; a guest reading any published
    /// info later lands within 1 ns below the hypervisor's time; a deadline's TSC is the
    /// first one at which the clock shows it.
    #[test]
    fn clock_promises(
        hz in 1_000_000u64..20_000_000_000,
        boot in any::<u64>(),
        first in delta(),
        second in delta(),
        deadline in delta(),
    ) {
        // Infos are published at or after the boot TSC.
        let clock = Clock::new(boot, hz).unwrap();
        let (early, late) = (boot.saturating_add(first.min(second)), boot.saturating_add(first.max(second)));
        prop_assert!(clock.now_ns(early) <= clock.now_ns(late));
        let info = clock.vcpu_time_info(early, 2);
        let guest = guest_ns(&info, late);
        prop_assert!(guest <= clock.now_ns(late) && guest.saturating_add(1) >= clock.now_ns(late), "guest {} vs {}", guest, clock.now_ns(late));
        let tick = clock.deadline_tsc(deadline);
        if tick != u64::MAX {
            prop_assert!(clock.now_ns(tick) >= deadline);
            if tick > boot {
                prop_assert!(clock.now_ns(tick - 1) < deadline);
            }
        }
    }
}
