//! Percentiles and summaries of samples (latencies, queue waits, compute times).
//!
//! Percentiles use linear interpolation between closest ranks (NumPy's default `linear`
//! method, Hyndman & Fan type 7): for sorted samples `x[0..n]` and `p` in `[0, 100]`, the
//! rank is `h = p/100 * (n-1)` and the result `x[floor h] + (h - floor h) * (x[ceil h] - x[floor h])`.
//! So p0 is the minimum, p100 the maximum, and p50 the usual median.

use serde::{Deserialize, Serialize};

/// The `p`-th percentile of samples already sorted ascending; `None` for no samples.
pub fn percentile_sorted(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let p = p.clamp(0.0, 100.0);
    let h = p / 100.0 * (sorted.len() - 1) as f64;
    let lo = h.floor() as usize;
    let hi = h.ceil() as usize;
    Some(sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo]))
}

/// The `p`-th percentile of unsorted samples (NaNs are dropped).
pub fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    let sorted = sorted_finite(samples);
    percentile_sorted(&sorted, p)
}

fn sorted_finite(samples: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v
}

/// Count, mean, min, p50, p90, p99 and max of a set of samples (seconds unless stated).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub count: usize,
    pub mean: Option<f64>,
    pub min: Option<f64>,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

impl Summary {
    pub fn of(samples: &[f64]) -> Summary {
        let sorted = sorted_finite(samples);
        if sorted.is_empty() {
            return Summary::default();
        }
        let mean = sorted.iter().sum::<f64>() / sorted.len() as f64;
        Summary {
            count: sorted.len(),
            mean: Some(mean),
            min: sorted.first().copied(),
            p50: percentile_sorted(&sorted, 50.0),
            p90: percentile_sorted(&sorted, 90.0),
            p99: percentile_sorted(&sorted, 99.0),
            max: sorted.last().copied(),
        }
    }
}

/// Median of a few values (cold-start repetitions).
pub fn median(samples: &[f64]) -> Option<f64> {
    percentile(samples, 50.0)
}

/// Equal-width histogram: `bins` counts over `[lo, hi]` (the last bin includes `hi`).
pub fn histogram(samples: &[f64], lo: f64, hi: f64, bins: usize) -> Vec<u64> {
    let mut counts = vec![0u64; bins.max(1)];
    let width = (hi - lo) / counts.len() as f64;
    for &x in samples.iter().filter(|x| x.is_finite()) {
        if x < lo || x > hi || width <= 0.0 {
            continue;
        }
        let i = (((x - lo) / width) as usize).min(counts.len() - 1);
        counts[i] += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn percentiles_of_one_to_hundred() {
        let v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert!(close(percentile(&v, 50.0).unwrap(), 50.5));
        assert!(close(percentile(&v, 90.0).unwrap(), 90.1));
        assert!(close(percentile(&v, 99.0).unwrap(), 99.01));
        assert!(close(percentile(&v, 0.0).unwrap(), 1.0));
        assert!(close(percentile(&v, 100.0).unwrap(), 100.0));
    }

    #[test]
    fn percentiles_match_numpy_on_small_sets() {
        // numpy.percentile([3, 1, 2, 10], [50, 90, 99]) = [2.5, 7.9, 9.79]
        let v = [3.0, 1.0, 2.0, 10.0];
        assert!(close(percentile(&v, 50.0).unwrap(), 2.5));
        assert!(close(percentile(&v, 90.0).unwrap(), 7.9));
        assert!(close(percentile(&v, 99.0).unwrap(), 9.79));
        // one sample: every percentile is that sample
        assert_eq!(percentile(&[0.25], 99.0), Some(0.25));
        assert_eq!(percentile(&[], 50.0), None);
        // NaN is ignored
        assert_eq!(percentile(&[f64::NAN, 4.0, 2.0], 50.0), Some(3.0));
    }

    #[test]
    fn summary_fields() {
        let v: Vec<f64> = (0..1000).map(|i| i as f64 / 1000.0).collect();
        let s = Summary::of(&v);
        assert_eq!(s.count, 1000);
        assert!(close(s.mean.unwrap(), 0.4995));
        assert_eq!(s.min, Some(0.0));
        assert_eq!(s.max, Some(0.999));
        assert!(close(s.p50.unwrap(), 0.4995));
        assert!(close(s.p99.unwrap(), 0.98901));
        assert_eq!(Summary::of(&[]), Summary::default());
    }

    #[test]
    fn histogram_counts() {
        let v = [0.0, 0.1, 0.5, 0.99, 1.0, 2.0, -1.0];
        assert_eq!(histogram(&v, 0.0, 1.0, 2), vec![2, 3]);
        assert_eq!(histogram(&v, 0.0, 1.0, 2).iter().sum::<u64>(), 5);
    }
}
