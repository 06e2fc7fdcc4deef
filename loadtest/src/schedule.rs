//! Arrival schedules: a small seeded PRNG and Poisson (open-loop) arrival times.
//!
//! Open loop means the arrival times do not depend on how fast the server answers: request
//! `k` is sent at `t_k` whatever happened to request `k-1`, which is how independent users
//! (or storage uploads) behave and what exposes queueing. Gaps between Poisson arrivals at
//! rate `R` are independent exponential variables with mean `1/R`, drawn by inversion:
//! `gap = -ln(U) / R` with `U` uniform in `(0, 1]`.

/// SplitMix64: tiny, fast, good enough for arrival times and file choice; seeded so a run
/// can be repeated exactly.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `(0, 1]` (never 0, so `ln` is finite).
    pub fn next_f64_open0(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// Exponential with the given rate (mean `1/rate`).
    pub fn exponential(&mut self, rate: f64) -> f64 {
        -self.next_f64_open0().ln() / rate
    }
}

/// Poisson arrival times (seconds from the start) at `rate` per second, strictly increasing,
/// all `< horizon`, at most `max` of them.
pub fn poisson_arrivals(rate: f64, horizon: f64, max: usize, seed: u64) -> Vec<f64> {
    assert!(rate > 0.0, "rate must be positive");
    let mut rng = SplitMix64::new(seed);
    let mut t = 0.0;
    let mut out = Vec::new();
    loop {
        t += rng.exponential(rate);
        if t >= horizon || out.len() >= max {
            return out;
        }
        out.push(t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_increasing() {
        let a = poisson_arrivals(5.0, 100.0, usize::MAX, 42);
        let b = poisson_arrivals(5.0, 100.0, usize::MAX, 42);
        let c = poisson_arrivals(5.0, 100.0, usize::MAX, 43);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert!(a.iter().all(|&t| t > 0.0 && t < 100.0));
    }

    #[test]
    fn count_and_gaps_are_poisson() {
        // 20 req/s over 2000 s: 40,000 expected arrivals, sd 200.
        let rate = 20.0;
        let a = poisson_arrivals(rate, 2000.0, usize::MAX, 7);
        let n = a.len() as f64;
        assert!((n - 40_000.0).abs() < 4.0 * 200.0, "count {n}");
        let gaps: Vec<f64> = std::iter::once(a[0]).chain(a.windows(2).map(|w| w[1] - w[0])).collect();
        let mean = gaps.iter().sum::<f64>() / n;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / (n - 1.0);
        // exponential: mean 1/rate, coefficient of variation 1
        assert!((mean - 1.0 / rate).abs() < 0.02 / rate, "mean gap {mean}");
        assert!((var.sqrt() / mean - 1.0).abs() < 0.03, "cv {}", var.sqrt() / mean);
        // memorylessness: P(gap > 1/rate) = e^-1
        let over = gaps.iter().filter(|&&g| g > 1.0 / rate).count() as f64 / n;
        assert!((over - (-1.0f64).exp()).abs() < 0.01, "tail {over}");
        // counts in 1 s windows: mean = variance = rate (Poisson dispersion index 1)
        let mut per_s = vec![0.0f64; 2000];
        for t in &a {
            per_s[*t as usize] += 1.0;
        }
        let m = per_s.iter().sum::<f64>() / 2000.0;
        let v = per_s.iter().map(|c| (c - m).powi(2)).sum::<f64>() / 1999.0;
        assert!((v / m - 1.0).abs() < 0.1, "dispersion {}", v / m);
    }

    #[test]
    fn bounded_by_horizon_and_count() {
        assert_eq!(poisson_arrivals(1000.0, 10.0, 25, 1).len(), 25);
        assert!(poisson_arrivals(0.001, 1.0, 100, 1).len() <= 1);
    }

    #[test]
    fn uniform_never_zero() {
        let mut r = SplitMix64::new(0);
        for _ in 0..100_000 {
            let u = r.next_f64_open0();
            assert!(u > 0.0 && u <= 1.0);
        }
    }
}
