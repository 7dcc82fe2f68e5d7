//! Percentiles of repeated samples and the number formats the report uses.

use std::time::Duration;

/// Nearest-rank percentiles of a set of timings.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub n: usize,
    pub p50: Duration,
    pub p99: Duration,
}

impl Summary {
    pub fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        Self {
            n: samples.len(),
            p50: percentile(&samples, 50.0),
            p99: percentile(&samples, 99.0),
        }
    }

    /// `p50 1.23 ms · p99 2.01 ms`
    pub fn p50_p99(&self) -> String {
        format!("p50 {} · p99 {}", fmt_dur(self.p50), fmt_dur(self.p99))
    }
}

/// Nearest rank on sorted samples: the smallest sample with at least `p`% of samples at or
/// below it. With 20 samples p99 is the maximum; that is what 20 samples can say.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median of a few figures (e.g. three transfer rates).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

pub fn fmt_dur(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 0.001 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{:.0} µs", s * 1e6)
    }
}

/// Thousands separated with commas: `100,000`.
pub fn fmt_int(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate with sensible precision: `70,671/s`, `512/s`, `3.2/s`.
pub fn fmt_rate(per_sec: f64, unit: &str) -> String {
    if per_sec >= 100.0 {
        format!("{} {unit}/s", fmt_int(per_sec.round() as u64))
    } else {
        format!("{per_sec:.1} {unit}/s")
    }
}

pub fn fmt_mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let s = Summary::of((1..=100).map(Duration::from_millis).collect());
        assert_eq!(s.p50, Duration::from_millis(50));
        assert_eq!(s.p99, Duration::from_millis(99));
        let few = Summary::of((1..=20).map(Duration::from_millis).collect());
        assert_eq!(few.p99, Duration::from_millis(20));
    }

    #[test]
    fn formats() {
        assert_eq!(fmt_int(100_000), "100,000");
        assert_eq!(fmt_int(999), "999");
        assert_eq!(fmt_dur(Duration::from_micros(1500)), "1.50 ms");
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
