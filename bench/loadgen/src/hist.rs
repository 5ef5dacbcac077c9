//! A lock-free log-linear latency histogram in microseconds: exact below 64 µs, then 64
//! sub-buckets per power of two (within 1.6 %), up to 2^41 µs.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

const SUB: u64 = 64;
const MAX_EXP: u64 = 41;
const BUCKETS: usize = ((MAX_EXP - 5) * SUB) as usize;

pub struct Histogram {
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    max: AtomicU64,
}

fn index(v: u64) -> usize {
    let v = v.min((1 << MAX_EXP) - 1);
    if v < SUB {
        return v as usize;
    }
    let e = 63 - u64::from(v.leading_zeros());
    let sub = (v >> (e - 6)) - SUB;
    ((e - 5) * SUB + sub) as usize
}

/// The middle of bucket `i`.
fn value(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let e = i / SUB + 5;
    let low = (SUB + i % SUB) << (e - 6);
    low + ((1u64 << (e - 6)) >> 1)
}

impl Histogram {
    pub fn new() -> Self {
        Histogram { buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(), count: AtomicU64::new(0), max: AtomicU64::new(0) }
    }

    pub fn record(&self, us: u64) {
        self.buckets[index(us)].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.max.fetch_max(us, Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    pub fn max(&self) -> u64 {
        self.max.load(Relaxed)
    }

    /// The value below which a fraction `q` of the samples fall (0 when empty).
    pub fn percentile(&self, q: f64) -> u64 {
        let n = self.count();
        if n == 0 {
            return 0;
        }
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Relaxed);
            if seen >= rank {
                return value(i).min(self.max());
            }
        }
        self.max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_close() {
        let mut last = 0;
        for v in (0..5_000_000u64).step_by(997) {
            let i = index(v);
            assert!(i >= last);
            last = i;
            let m = value(i) as f64;
            assert!((m - v as f64).abs() <= (v as f64) * 0.016 + 1.0, "{v} -> {m}");
        }
    }

    #[test]
    fn percentiles() {
        let h = Histogram::new();
        for v in 1..=1000 {
            h.record(v);
        }
        assert_eq!(h.percentile(0.5), value(index(500)));
        assert!((h.percentile(0.99) as i64 - 990).abs() <= 16);
        assert_eq!(h.max(), 1000);
    }
}
