//! What a row reports of its samples.

/// A row's samples summed up, in cycles.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The 50th percentile (nearest rank: of an even count, the lower middle sample).
    pub median: u64,
    /// The 99th percentile (nearest rank).
    pub p99: u64,
    /// The fastest sample.
    pub min: u64,
    /// The slowest sample.
    pub max: u64,
    /// How many samples there were.
    pub iterations: usize,
}

/// The nearest-rank `percent`th percentile of `sorted` (not empty): the smallest sample
/// with at least `percent`% of the samples at or below it.
fn nearest_rank(sorted: &[u64], percent: usize) -> u64 {
    let rank = (sorted.len() * percent).div_ceil(100).max(1);
    sorted[rank - 1]
}

/// Sorts `samples` and sums them up; `None` when there are none.
pub fn summarize(samples: &mut [u64]) -> Option<Summary> {
    samples.sort_unstable();
    let (&min, &max) = (samples.first()?, samples.last()?);
    Some(Summary {
        median: nearest_rank(samples, 50),
        p99: nearest_rank(samples, 99),
        min,
        max,
        iterations: samples.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut hundred: Vec<u64> = (1..=100).rev().collect();
        let summary = summarize(&mut hundred).unwrap();
        assert_eq!(summary, Summary { median: 50, p99: 99, min: 1, max: 100, iterations: 100 });
        // 1000 samples: rank 990 for p99, rank 500 for the median.
        let mut thousand: Vec<u64> = (0..1000).map(|value| value * 10).collect();
        let summary = summarize(&mut thousand).unwrap();
        assert_eq!((summary.median, summary.p99, summary.max), (4990, 9890, 9990));
        // Few samples: the p99 is the largest, the median of two the lower.
        assert_eq!(summarize(&mut [7, 3]).unwrap(), Summary { median: 3, p99: 7, min: 3, max: 7, iterations: 2 });
        assert_eq!(summarize(&mut [5]).unwrap(), Summary { median: 5, p99: 5, min: 5, max: 5, iterations: 1 });
        assert_eq!(summarize(&mut []), None);
    }
}
