//! Smooth weighted round robin (nginx) and weighted random.

use parking_lot::Mutex;

/// nginx's smooth weighted round robin: over any window of `sum(weights)` picks each
/// endpoint gets exactly its weight, spread out rather than in bursts
/// (weights 5, 1, 1 → a a b a c a a).
pub struct SmoothWeightedRoundRobin {
    weights: Vec<i64>,
    total: i64,
    current: Mutex<Vec<i64>>,
}

impl SmoothWeightedRoundRobin {
    /// A balancer over endpoints with these weights (0 = never picked).
    pub fn new(weights: &[u32]) -> Self {
        let weights: Vec<i64> = weights.iter().map(|w| i64::from(*w)).collect();
        SmoothWeightedRoundRobin {
            total: weights.iter().sum(),
            current: Mutex::new(vec![0; weights.len()]),
            weights,
        }
    }

    /// The next endpoint, or `None` when every weight is 0.
    pub fn pick(&self) -> Option<usize> {
        if self.total == 0 {
            return None;
        }
        let mut current = self.current.lock();
        let mut best: Option<usize> = None;
        for (i, weight) in self.weights.iter().enumerate() {
            if *weight == 0 {
                continue;
            }
            current[i] += weight;
            if best.is_none_or(|b| current[i] > current[b]) {
                best = Some(i);
            }
        }
        let chosen = best?;
        current[chosen] -= self.total;
        Some(chosen)
    }
}

/// Picks an endpoint with probability proportional to its weight.
pub struct WeightedRandom {
    cumulative: Vec<u64>,
}

impl WeightedRandom {
    /// A balancer over endpoints with these weights.
    pub fn new(weights: &[u32]) -> Self {
        let mut sum = 0u64;
        let cumulative = weights
            .iter()
            .map(|w| {
                sum += u64::from(*w);
                sum
            })
            .collect();
        WeightedRandom { cumulative }
    }

    /// A pick using `rng`, or `None` when every weight is 0.
    pub fn pick_with(&self, rng: &mut fastrand::Rng) -> Option<usize> {
        let total = *self.cumulative.last()?;
        if total == 0 {
            return None;
        }
        let point = rng.u64(..total);
        Some(self.cumulative.partition_point(|c| *c <= point))
    }

    /// A pick using the thread's generator.
    pub fn pick(&self) -> Option<usize> {
        super::with_rng(|rng| self.pick_with(rng))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smooth_round_robin_spreads_picks_as_nginx_does() {
        let balancer = SmoothWeightedRoundRobin::new(&[5, 1, 1]);
        let picks: String = (0..7)
            .map(|_| (b'a' + balancer.pick().unwrap() as u8) as char)
            .collect();
        assert_eq!(picks, "aabacaa");
        let picks: String = (0..7)
            .map(|_| (b'a' + balancer.pick().unwrap() as u8) as char)
            .collect();
        assert_eq!(picks, "aabacaa", "the cycle repeats");
    }

    #[test]
    fn smooth_round_robin_skips_zero_weights() {
        let balancer = SmoothWeightedRoundRobin::new(&[0, 2, 0, 1]);
        let picks: Vec<usize> = (0..6).map(|_| balancer.pick().unwrap()).collect();
        assert_eq!(picks.iter().filter(|p| **p == 1).count(), 4);
        assert_eq!(picks.iter().filter(|p| **p == 3).count(), 2);
        assert_eq!(SmoothWeightedRoundRobin::new(&[0, 0]).pick(), None);
    }

    #[test]
    fn weighted_random_follows_weights() {
        let balancer = WeightedRandom::new(&[1, 0, 3]);
        let mut rng = fastrand::Rng::with_seed(7);
        let mut counts = [0usize; 3];
        for _ in 0..40_000 {
            counts[balancer.pick_with(&mut rng).unwrap()] += 1;
        }
        assert_eq!(counts[1], 0);
        let share = counts[2] as f64 / 40_000.0;
        assert!((share - 0.75).abs() < 0.01, "{counts:?}");
        assert_eq!(WeightedRandom::new(&[]).pick(), None);
    }
}
