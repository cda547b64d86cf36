//! A log-linear latency histogram: exact below 16, then 16 linear sub-buckets per
//! power of two, so a bucket's width is at most 1/16 of its lower bound and a
//! quantile read at a bucket's midpoint is within **±3.2 %** of the true sample
//! value (1/32 of it). Values are unsigned integers (the gateway records
//! microseconds); up to 2^40 (12.7 days in µs) — larger values land in the last
//! bucket.
//!
//! [`AtomicHistogram`] records without a lock (one atomic add); [`Histogram`] is the
//! sparse, mergeable form kept in steps and on disk.

use std::sync::atomic::{AtomicU32, Ordering};

use serde::{Deserialize, Serialize};

/// Sub-bucket bits: 16 sub-buckets per power of two.
const SUB_BITS: u32 = 4;
const SUB: u64 = 1 << SUB_BITS;
/// Largest exponent kept apart (values up to 2^40).
const MAX_EXPONENT: u32 = 39;

/// Number of buckets.
pub const BUCKETS: usize = (SUB + (MAX_EXPONENT as u64 + 1 - SUB_BITS as u64) * SUB) as usize;

/// The stated relative error of a quantile (half a bucket's width over its lower bound).
pub const RELATIVE_ERROR: f64 = 1.0 / 32.0;

/// The bucket of `value`.
pub fn bucket_of(value: u64) -> usize {
    if value < SUB {
        return value as usize;
    }
    let exponent = (63 - value.leading_zeros()).min(MAX_EXPONENT);
    let value = value.min((1u64 << (MAX_EXPONENT + 1)) - 1);
    let sub = (value >> (exponent - SUB_BITS)) & (SUB - 1);
    (SUB + u64::from(exponent - SUB_BITS) * SUB + sub) as usize
}

/// The lower bound and width of bucket `index`.
pub fn bucket_range(index: usize) -> (u64, u64) {
    let index = index as u64;
    if index < SUB {
        return (index, 1);
    }
    let exponent = (index - SUB) / SUB + u64::from(SUB_BITS);
    let sub = (index - SUB) % SUB;
    let width = 1u64 << (exponent - u64::from(SUB_BITS));
    ((1u64 << exponent) + sub * width, width)
}

/// The value a quantile in bucket `index` reads as: its midpoint.
pub fn bucket_value(index: usize) -> f64 {
    let (low, width) = bucket_range(index);
    if width == 1 {
        low as f64
    } else {
        low as f64 + width as f64 / 2.0
    }
}

/// A lock-free histogram for recording.
pub struct AtomicHistogram {
    counts: Box<[AtomicU32]>,
}

impl Default for AtomicHistogram {
    fn default() -> Self {
        AtomicHistogram {
            counts: (0..BUCKETS).map(|_| AtomicU32::new(0)).collect(),
        }
    }
}

impl std::fmt::Debug for AtomicHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtomicHistogram").finish_non_exhaustive()
    }
}

impl AtomicHistogram {
    /// Records one value.
    pub fn record(&self, value: u64) {
        self.counts[bucket_of(value)].fetch_add(1, Ordering::Relaxed);
    }

    /// Takes the counts out (leaving zeros) as a sparse histogram.
    pub fn take(&self) -> Histogram {
        let mut buckets = Vec::new();
        for (index, count) in self.counts.iter().enumerate() {
            let n = count.swap(0, Ordering::Relaxed);
            if n > 0 {
                buckets.push((index as u16, u64::from(n)));
            }
        }
        Histogram { buckets }
    }
}

/// A sparse histogram: (bucket, count) pairs in bucket order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Histogram {
    /// Non-empty buckets, ascending.
    pub buckets: Vec<(u16, u64)>,
}

impl Histogram {
    /// A histogram of `values`.
    pub fn of(values: impl IntoIterator<Item = u64>) -> Self {
        let mut counts = std::collections::BTreeMap::new();
        for value in values {
            *counts.entry(bucket_of(value) as u16).or_insert(0u64) += 1;
        }
        Histogram {
            buckets: counts.into_iter().collect(),
        }
    }

    /// Samples counted.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|(_, n)| n).sum()
    }

    /// Adds `other` into this one.
    pub fn merge(&mut self, other: &Histogram) {
        if other.buckets.is_empty() {
            return;
        }
        let mut merged = Vec::with_capacity(self.buckets.len() + other.buckets.len());
        let (mut a, mut b) = (
            self.buckets.iter().peekable(),
            other.buckets.iter().peekable(),
        );
        loop {
            match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if x.0 == y.0 => {
                    merged.push((x.0, x.1 + y.1));
                    a.next();
                    b.next();
                }
                (Some(x), Some(y)) if x.0 < y.0 => {
                    merged.push(**x);
                    a.next();
                }
                (Some(_), Some(y)) => {
                    merged.push(**y);
                    b.next();
                }
                (Some(x), None) => {
                    merged.push(**x);
                    a.next();
                }
                (None, Some(y)) => {
                    merged.push(**y);
                    b.next();
                }
                (None, None) => break,
            }
        }
        self.buckets = merged;
    }

    /// The value at quantile `q` (0–1), within [`RELATIVE_ERROR`]; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, count) in &self.buckets {
            seen += count;
            if seen >= rank {
                return Some(bucket_value(usize::from(*index)));
            }
        }
        self.buckets
            .last()
            .map(|(i, _)| bucket_value(usize::from(*i)))
    }

    /// Keeps at most `max` buckets (for a fixed-size slot on disk) by merging
    /// neighbours: each time the pair where the fewest samples move the shortest way
    /// (smaller count × bucket distance), into the bucket with more samples. Counts
    /// are preserved; the samples moved lose resolution.
    pub fn coarsen(&mut self, max: usize) {
        while self.buckets.len() > max.max(1) {
            let mut best = 0;
            let mut best_cost = u128::MAX;
            for i in 0..self.buckets.len() - 1 {
                let (left, right) = (self.buckets[i], self.buckets[i + 1]);
                let moved = u128::from(left.1.min(right.1));
                let cost = moved * u128::from(right.0 - left.0);
                if cost < best_cost {
                    best_cost = cost;
                    best = i;
                }
            }
            let (left, right) = (self.buckets[best], self.buckets[best + 1]);
            let index = if left.1 >= right.1 { left.0 } else { right.0 };
            self.buckets[best] = (index, left.1 + right.1);
            self.buckets.remove(best + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_values_in_order_with_bounded_width() {
        let mut previous = 0;
        for value in (0..100_000u64).chain([1 << 30, (1 << 40) - 1]) {
            let index = bucket_of(value);
            assert!(index >= previous && index < BUCKETS);
            previous = index;
            let (low, width) = bucket_range(index);
            assert!(
                low <= value && value < low + width,
                "{value} in {low}+{width}"
            );
            assert!(width == 1 || (width as f64) <= low as f64 / 16.0);
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_are_within_the_stated_error() {
        let values: Vec<u64> = (1..=10_000).map(|i| i * 37 % 100_000 + 1000).collect();
        let histogram = Histogram::of(values.iter().copied());
        let mut sorted = values.clone();
        sorted.sort_unstable();
        for q in [0.5, 0.9, 0.98, 0.99, 0.999] {
            let exact = sorted[((q * sorted.len() as f64).ceil() as usize).max(1) - 1] as f64;
            let read = histogram.quantile(q).unwrap();
            assert!(
                (read - exact).abs() / exact <= RELATIVE_ERROR,
                "q{q}: {read} vs {exact}"
            );
        }
    }

    #[test]
    fn atomic_recording_merges_like_the_sparse_form() {
        let live = AtomicHistogram::default();
        for v in [5, 5, 300, 70_000] {
            live.record(v);
        }
        let mut taken = live.take();
        assert_eq!(taken, Histogram::of([5, 5, 300, 70_000]));
        assert_eq!(live.take().count(), 0, "taking empties it");
        taken.merge(&Histogram::of([300, 1]));
        assert_eq!(taken, Histogram::of([1, 5, 5, 300, 300, 70_000]));
    }

    #[test]
    fn coarsening_keeps_the_bulk_of_the_distribution_exact() {
        // 95 % of samples around 10 ms, a tail spread out to 2 s.
        let mut values: Vec<u64> = (0..9500).map(|i| 9_000 + (i % 2000)).collect();
        values.extend((0..500).map(|i| 20_000 + i * 4000));
        let exact = Histogram::of(values.iter().copied());
        let mut coarse = exact.clone();
        coarse.coarsen(24);
        for q in [0.5, 0.9] {
            assert_eq!(coarse.quantile(q), exact.quantile(q), "q{q}");
        }
        let (e99, c99) = (
            exact.quantile(0.99).unwrap(),
            coarse.quantile(0.99).unwrap(),
        );
        assert!((c99 - e99).abs() / e99 < 0.5, "{c99} vs {e99}");
    }

    #[test]
    fn coarsening_keeps_counts() {
        let mut histogram = Histogram::of((0..1000).map(|i| i * 1000));
        let count = histogram.count();
        histogram.coarsen(12);
        assert_eq!(histogram.buckets.len(), 12);
        assert_eq!(histogram.count(), count);
        assert!(histogram.buckets.windows(2).all(|w| w[0].0 < w[1].0));
    }
}
