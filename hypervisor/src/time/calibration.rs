//! Which measured TSC frequency to believe (SPEC.md §19.1).
//!
//! One calibration window can be wrong in ways the window itself cannot see: a host that
//! deschedules the emulator between two reads of a counter, a TSC that jumps when the
//! emulator's thread moves to another host CPU, a wrap the counter's status did not
//! report. Each such fault makes that one window's frequency wrong, by any amount (issue
//! 15 saw 13.5 GHz for a 2.45 GHz TSC), while windows the fault missed agree with each
//! other to within their precision. So no single window is believed: measurements are
//! gathered until [`AGREEING`] of them lie within [`SPREAD_PPM`] of each other, and their
//! median is the frequency. A faulty window then has to be matched by others faulty in
//! the same way, to the same few hundred parts per million, to be believed.

use alloc::vec::Vec;
use core::fmt;

/// How many measurements must agree.
pub const AGREEING: usize = 3;
/// How far apart (parts per million of the lowest) agreeing measurements may be: each
/// window is accurate to 250 ppm (`PRECISION` of the PIT window), so two honest ones are
/// at most 500 ppm apart.
pub const SPREAD_PPM: u64 = 500;
/// Measurements kept, at most (the oldest go first): bounds memory, and a source that
/// never agrees with itself is given up on after this many in a row.
pub const KEPT: usize = 16;

/// Why one measurement gave no frequency.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The reference never moved: the source does not exist.
    Silent,
    /// It moved, but this window went wrong (the counter's status says it wrapped, no
    /// edge could be dated tightly enough, the result was implausible).
    Disturbed,
}

/// Measured frequencies of one source, in Hz.
#[derive(Clone, Debug, Default)]
pub struct Consensus {
    measured: Vec<u64>,
    disturbed: u32,
}

impl Consensus {
    /// No measurement yet.
    pub const fn new() -> Self {
        Self { measured: Vec::new(), disturbed: 0 }
    }

    /// Records one measurement's outcome.
    pub fn record(&mut self, outcome: Result<u64, Failure>) {
        match outcome {
            Ok(hz) => {
                if self.measured.len() == KEPT {
                    self.measured.remove(0);
                }
                self.measured.push(hz);
            }
            Err(_) => self.disturbed += 1,
        }
    }

    /// The median of the tightest [`AGREEING`] measurements within [`SPREAD_PPM`] of each
    /// other, if that many agree.
    pub fn agreed(&self) -> Option<u64> {
        let mut sorted = self.measured.clone();
        sorted.sort_unstable();
        sorted
            .windows(AGREEING)
            .filter(|group| within_spread(group[0], group[AGREEING - 1]))
            .min_by_key(|group| group[AGREEING - 1] - group[0])
            .map(|group| group[AGREEING / 2])
    }

    /// Measurements recorded (successful or not).
    pub fn attempts(&self) -> u32 {
        self.disturbed + self.measured.len() as u32
    }

    /// What was measured, for a console message: `3 windows: 2450123, 13500000 kHz; 1 disturbed`.
    pub fn describe(&self) -> impl fmt::Display + '_ {
        Described(self)
    }
}

fn within_spread(low: u64, high: u64) -> bool {
    u128::from(high - low) * 1_000_000 <= u128::from(low) * u128::from(SPREAD_PPM)
}

struct Described<'a>(&'a Consensus);

impl fmt::Display for Described<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let consensus = self.0;
        write!(formatter, "{} measured", consensus.measured.len())?;
        for (index, hz) in consensus.measured.iter().enumerate() {
            let separator = if index == 0 { ": " } else { ", " };
            write!(formatter, "{separator}{}", hz / 1000)?;
        }
        if !consensus.measured.is_empty() {
            write!(formatter, " kHz")?;
        }
        write!(formatter, "; {} disturbed", consensus.disturbed)
    }
}

/// Measures with `measure` until [`AGREEING`] results agree or `limit` attempts were made
/// in this call; a [`Failure::Silent`] source stops at once (waiting longer finds nothing).
/// Returns the agreed frequency, or why there is none.
pub fn gather(
    consensus: &mut Consensus,
    limit: u32,
    mut measure: impl FnMut() -> Result<u64, Failure>,
) -> Result<u64, Failure> {
    for _ in 0..limit {
        if let Some(hz) = consensus.agreed() {
            return Ok(hz);
        }
        let outcome = measure();
        if outcome == Err(Failure::Silent) {
            return Err(Failure::Silent);
        }
        consensus.record(outcome);
    }
    consensus.agreed().ok_or(Failure::Disturbed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::vec;

    const TRUE_HZ: u64 = 2_450_000_000;

    fn consensus_of(values: &[u64]) -> Consensus {
        let mut consensus = Consensus::new();
        for &hz in values {
            consensus.record(Ok(hz));
        }
        consensus
    }

    #[test]
    fn three_agreeing_outvote_a_wild_one() {
        // The 13.5 GHz window of issue 15 between honest ones 200 ppm apart.
        let consensus = consensus_of(&[TRUE_HZ, 13_500_000_000, TRUE_HZ + 490_000, TRUE_HZ - 100_000]);
        assert_eq!(consensus.agreed(), Some(TRUE_HZ));
    }

    #[test]
    fn two_agreeing_are_not_enough() {
        assert_eq!(consensus_of(&[TRUE_HZ, TRUE_HZ + 1]).agreed(), None);
        // Two wrong ones that agree with each other do not win against nothing.
        assert_eq!(consensus_of(&[13_500_000_000, 13_500_000_001, TRUE_HZ]).agreed(), None);
    }

    #[test]
    fn spread_is_bounded() {
        // 600 ppm apart end to end: no three within 500 ppm.
        let spread = consensus_of(&[TRUE_HZ, TRUE_HZ + TRUE_HZ / 1_000_000 * 300, TRUE_HZ + TRUE_HZ / 1_000_000 * 600]);
        assert_eq!(spread.agreed(), None);
        let tight = consensus_of(&[TRUE_HZ, TRUE_HZ + TRUE_HZ / 1_000_000 * 250, TRUE_HZ + TRUE_HZ / 1_000_000 * 500]);
        assert_eq!(tight.agreed(), Some(TRUE_HZ + TRUE_HZ / 1_000_000 * 250));
    }

    #[test]
    fn the_tightest_group_wins() {
        let hz = [1_000_000_000, 1_000_400_000, 1_000_450_000, 1_000_460_000, 1_000_470_000];
        assert_eq!(consensus_of(&hz).agreed(), Some(1_000_460_000));
    }

    #[test]
    fn only_the_latest_are_kept() {
        let mut values = vec![TRUE_HZ; AGREEING];
        values.extend((0..KEPT as u64).map(|step| 5_000_000_000 + step * 100_000_000));
        assert_eq!(consensus_of(&values).agreed(), None, "the agreeing ones were pushed out");
    }

    #[test]
    fn gather_measures_until_agreement() {
        let mut outcomes =
            vec![Ok(13_500_000_000), Err(Failure::Disturbed), Ok(TRUE_HZ), Ok(TRUE_HZ + 10), Ok(TRUE_HZ + 20)]
                .into_iter();
        let mut consensus = Consensus::new();
        let agreed = gather(&mut consensus, 10, || outcomes.next().unwrap());
        assert_eq!(agreed, Ok(TRUE_HZ + 10));
        assert_eq!(consensus.attempts(), 5);
        assert_eq!(outcomes.next(), None, "no measurement after agreement");
        assert_eq!(
            format!("{}", consensus.describe()),
            "4 measured: 13500000, 2450000, 2450000, 2450000 kHz; 1 disturbed"
        );
    }

    #[test]
    fn gather_gives_up() {
        let mut consensus = Consensus::new();
        assert_eq!(gather(&mut consensus, 4, || Err(Failure::Disturbed)), Err(Failure::Disturbed));
        assert_eq!(consensus.attempts(), 4);
        assert_eq!(format!("{}", consensus.describe()), "0 measured; 4 disturbed");
        let mut calls = 0;
        let silent = gather(&mut Consensus::new(), 4, || {
            calls += 1;
            Err(Failure::Silent)
        });
        assert_eq!((silent, calls), (Err(Failure::Silent), 1), "a silent source is not asked again");
        // Results of earlier calls count: a second round completes the first.
        let mut consensus = consensus_of(&[TRUE_HZ, TRUE_HZ]);
        assert_eq!(gather(&mut consensus, 1, || Ok(TRUE_HZ + 5)), Ok(TRUE_HZ));
    }
}
