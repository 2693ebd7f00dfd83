//! Percentile math for the load report: exact nearest-rank percentiles over
//! recorded samples, and quantiles of the engine's fixed-bucket histograms.
//!
//! Guarantees: [`Summary::of`] uses the nearest-rank definition (the value at
//! rank `ceil(q * n)` of the sorted samples, rank at least 1), so every
//! reported percentile is a value that was actually observed, and p50 ≤ p90 ≤
//! p99 ≤ p99.9 ≤ max always holds. NaN samples are dropped, never sorted in.
//! An empty sample set gives `None`, never zeros that look like a measurement.

use serde::{Deserialize, Serialize};

/// Count, mean and the reported percentiles of one metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// The nearest-rank `q`-quantile (`q` in 0..=1) of ascending `sorted` samples.
pub fn nearest_rank(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as usize).clamp(1, n);
    sorted.get(rank - 1).copied()
}

impl Summary {
    /// Summarises `samples` (any order); `None` when there are none.
    pub fn of(samples: &[f64]) -> Option<Summary> {
        let mut sorted: Vec<f64> = samples.iter().copied().filter(|x| !x.is_nan()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let at = |q: f64| nearest_rank(&sorted, q).unwrap_or(f64::NAN);
        Some(Summary {
            count: sorted.len() as u64,
            mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            p999: at(0.999),
            max: sorted[sorted.len() - 1],
        })
    }
}

/// Samples of one metric, collected across calls.
#[derive(Debug, Clone, Default)]
pub struct Samples(Vec<f64>);

impl Samples {
    pub fn push(&mut self, x: f64) {
        self.0.push(x);
    }

    pub fn extend(&mut self, other: &[f64]) {
        self.0.extend_from_slice(other);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn summary(&self) -> Option<Summary> {
        Summary::of(&self.0)
    }
}

/// A fixed-bucket latency histogram as the engine's `/stats` serves it: the
/// engine's own type, so the wire form and the quantile math are shared.
pub use switchboard_actors::metrics::HistogramSnapshot as BucketHistogram;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_picks_observed_values() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(nearest_rank(&v, 0.5), Some(5.0));
        assert_eq!(nearest_rank(&v, 0.9), Some(9.0));
        assert_eq!(nearest_rank(&v, 0.91), Some(10.0));
        assert_eq!(nearest_rank(&v, 0.0), Some(1.0));
        assert_eq!(nearest_rank(&v, 1.0), Some(10.0));
        assert_eq!(nearest_rank(&[], 0.5), None);
    }

    #[test]
    fn summary_of_a_thousand_samples() {
        // 1..=1000 shuffled deterministically: p50 = 500, p90 = 900, p99 = 990, p99.9 = 999.
        let mut v: Vec<f64> = (1..=1000).map(f64::from).collect();
        v.reverse();
        v.swap(3, 700);
        let s = Summary::of(&v).expect("samples");
        assert_eq!(s.count, 1000);
        assert_eq!(
            (s.p50, s.p90, s.p99, s.p999, s.max),
            (500.0, 900.0, 990.0, 999.0, 1000.0)
        );
        assert!((s.mean - 500.5).abs() < 1e-9);
    }

    #[test]
    fn summary_of_few_samples_and_nan() {
        let s = Summary::of(&[7.0, f64::NAN, 3.0]).expect("samples");
        assert_eq!(s.count, 2);
        assert_eq!((s.p50, s.p90, s.p999, s.max), (3.0, 7.0, 7.0, 7.0));
        assert_eq!(Summary::of(&[]), None);
        assert_eq!(Summary::of(&[f64::NAN]), None);
        let one = Summary::of(&[4.5]).expect("one");
        assert_eq!((one.p50, one.p999, one.max), (4.5, 4.5, 4.5));
    }

    fn hist(counts: &[u64]) -> BucketHistogram {
        BucketHistogram {
            bounds_us: vec![10, 100, 1000],
            counts: counts.to_vec(),
            count: counts.iter().sum(),
            sum_seconds: 0.0,
        }
    }

    #[test]
    fn histogram_quantiles_and_deltas() {
        let before = hist(&[90, 0, 0, 0]);
        let after = hist(&[180, 8, 1, 1]);
        let delta = after.since(&before);
        assert_eq!(delta.counts, vec![90, 8, 1, 1]);
        assert_eq!(delta.count, 100);
        assert_eq!(delta.quantile_us(0.5), Some(10));
        assert_eq!(delta.quantile_us(0.9), Some(10));
        assert_eq!(delta.quantile_us(0.95), Some(100));
        assert_eq!(delta.quantile_us(0.99), Some(1000));
        assert_eq!(delta.quantile_us(1.0), Some(u64::MAX));
        assert_eq!(hist(&[0, 0, 0, 0]).quantile_us(0.5), None);
        // A restarted engine (counters went down) is read as-is.
        assert_eq!(before.since(&after), before);
    }
}
