//! msec's success-rate weight shaping (its "nlb" agent): every 5 s, per service,
//! each endpoint's weight follows its call success rate, so a failing instance
//! loses traffic quickly and earns it back gradually.
//!
//! Rules (algorithms.md §5): a window counts after ≥ 10 calls; success ≥ 98 % →
//! weight += 5 % of the static weight (capped at static); below → weight ×=
//! success²; 0 % → dead; a dead endpoint that answers a probe comes back at 10 % of
//! static; about 1 % of picks probe dead endpoints; when more than half of the
//! endpoints are already low (< 50 % of static), weights are only raised, never
//! lowered (brownout damping). A pick is weighted random; a pick whose success rate
//! is under 60 % is replaced by a uniform pick; with every endpoint dead, any is picked.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;

/// The constants of the shaping rules.
#[derive(Debug, Clone)]
pub struct ShapingConfig {
    /// Calls a window needs before it counts.
    pub min_calls: u64,
    /// Success rate at or above which the weight grows.
    pub healthy_rate: f64,
    /// Growth per window, as a share of the static weight.
    pub raise_step: f64,
    /// Weight of a revived endpoint, as a share of the static weight.
    pub revive_share: f64,
    /// Share of picks that probe a dead endpoint.
    pub probe_share: f64,
    /// An endpoint under this share of its static weight is "low".
    pub low_share: f64,
    /// A picked endpoint under this success rate is replaced by a uniform pick.
    pub repick_below: f64,
}

impl Default for ShapingConfig {
    fn default() -> Self {
        ShapingConfig {
            min_calls: 10,
            healthy_rate: 0.98,
            raise_step: 0.05,
            revive_share: 0.10,
            probe_share: 0.01,
            low_share: 0.5,
            repick_below: 0.6,
        }
    }
}

/// One endpoint's shaping state.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeState {
    /// The configured weight.
    pub static_weight: f64,
    /// The shaped weight.
    pub weight: f64,
    /// Whether it is dead (0 % success); it then gets probe traffic only.
    pub dead: bool,
    /// Success rate of the last window that counted (1.0 before any).
    pub success_rate: f64,
}

/// Shapes weights from call outcomes and picks endpoints by them. Recording is
/// lock-free; `tick` (every 5 s) and picks share a per-balancer read-write lock.
pub struct SuccessRateShaper {
    config: ShapingConfig,
    nodes: RwLock<Vec<NodeState>>,
    calls: Vec<AtomicU64>,
    successes: Vec<AtomicU64>,
}

impl SuccessRateShaper {
    /// A shaper over endpoints with these static weights, all at full weight.
    pub fn new(static_weights: &[u32], config: ShapingConfig) -> Self {
        let nodes = static_weights
            .iter()
            .map(|w| NodeState {
                static_weight: f64::from(*w),
                weight: f64::from(*w),
                dead: false,
                success_rate: 1.0,
            })
            .collect();
        SuccessRateShaper {
            config,
            nodes: RwLock::new(nodes),
            calls: static_weights.iter().map(|_| AtomicU64::new(0)).collect(),
            successes: static_weights.iter().map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Counts one call's outcome in the current window.
    pub fn record(&self, index: usize, success: bool) {
        if let (Some(calls), Some(successes)) = (self.calls.get(index), self.successes.get(index)) {
            calls.fetch_add(1, Ordering::Relaxed);
            if success {
                successes.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A copy of every endpoint's state.
    pub fn nodes(&self) -> Vec<NodeState> {
        self.nodes.read().clone()
    }

    /// Closes the window: applies the rules to every endpoint and starts a new window.
    pub fn tick(&self) {
        let config = &self.config;
        let mut nodes = self.nodes.write();
        let low = nodes
            .iter()
            .filter(|n| n.static_weight > 0.0 && n.weight < config.low_share * n.static_weight)
            .count();
        let brownout = low * 2 > nodes.len();
        for (index, node) in nodes.iter_mut().enumerate() {
            let calls = self.calls[index].swap(0, Ordering::Relaxed);
            let successes = self.successes[index].swap(0, Ordering::Relaxed);
            if node.dead {
                if successes > 0 {
                    node.dead = false;
                    node.weight = config.revive_share * node.static_weight;
                    node.success_rate = successes as f64 / calls as f64;
                }
                continue;
            }
            if calls < config.min_calls {
                continue;
            }
            let rate = successes as f64 / calls as f64;
            node.success_rate = rate;
            if rate >= config.healthy_rate {
                node.weight =
                    (node.weight + config.raise_step * node.static_weight).min(node.static_weight);
            } else if brownout {
                // Too many endpoints are already low: lowering more would crush the rest.
            } else if successes == 0 {
                node.dead = true;
                node.weight = 0.0;
            } else {
                node.weight *= rate * rate;
            }
        }
    }

    /// A pick using `rng`, or `None` with no endpoints.
    pub fn pick_with(&self, rng: &mut fastrand::Rng) -> Option<usize> {
        let nodes = self.nodes.read();
        if nodes.is_empty() {
            return None;
        }
        let dead: Vec<usize> = (0..nodes.len()).filter(|i| nodes[*i].dead).collect();
        if !dead.is_empty() && rng.f64() < self.config.probe_share {
            return Some(dead[rng.usize(..dead.len())]);
        }
        let live: Vec<usize> = (0..nodes.len())
            .filter(|i| !nodes[*i].dead && nodes[*i].weight > 0.0)
            .collect();
        let total: f64 = live.iter().map(|i| nodes[*i].weight).sum();
        if live.is_empty() || total <= 0.0 {
            return Some(rng.usize(..nodes.len()));
        }
        let mut point = rng.f64() * total;
        let mut chosen = live[live.len() - 1];
        for index in &live {
            point -= nodes[*index].weight;
            if point < 0.0 {
                chosen = *index;
                break;
            }
        }
        if nodes[chosen].success_rate < self.config.repick_below {
            chosen = live[rng.usize(..live.len())];
        }
        Some(chosen)
    }

    /// A pick using the thread's generator.
    pub fn pick(&self) -> Option<usize> {
        super::with_rng(|rng| self.pick_with(rng))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(shaper: &SuccessRateShaper, index: usize, calls: u64, successes: u64) {
        for call in 0..calls {
            shaper.record(index, call < successes);
        }
    }

    #[test]
    fn small_windows_do_not_count() {
        let shaper = SuccessRateShaper::new(&[100, 100], ShapingConfig::default());
        window(&shaper, 0, 9, 0);
        shaper.tick();
        assert_eq!(shaper.nodes()[0].weight, 100.0);
        assert!(!shaper.nodes()[0].dead);
    }

    #[test]
    fn failures_cut_the_weight_by_the_square_of_success_and_zero_kills() {
        let shaper = SuccessRateShaper::new(&[100, 100, 100], ShapingConfig::default());
        window(&shaper, 0, 100, 80);
        window(&shaper, 1, 100, 0);
        window(&shaper, 2, 100, 99);
        shaper.tick();
        let nodes = shaper.nodes();
        assert!(
            (nodes[0].weight - 64.0).abs() < 1e-9,
            "80 % success: × 0.64"
        );
        assert!(nodes[1].dead && nodes[1].weight == 0.0, "0 % success: dead");
        assert_eq!(nodes[2].weight, 100.0, "≥ 98 %: capped at static");
    }

    #[test]
    fn weights_climb_back_five_percent_a_window() {
        let shaper = SuccessRateShaper::new(&[100, 100, 100], ShapingConfig::default());
        window(&shaper, 0, 100, 50);
        shaper.tick();
        assert!((shaper.nodes()[0].weight - 25.0).abs() < 1e-9);
        for expected in [30.0, 35.0, 40.0] {
            window(&shaper, 0, 100, 100);
            shaper.tick();
            assert!((shaper.nodes()[0].weight - expected).abs() < 1e-9);
        }
    }

    #[test]
    fn dead_endpoints_get_probes_and_come_back_at_ten_percent() {
        let shaper = SuccessRateShaper::new(&[100, 100, 100, 100], ShapingConfig::default());
        window(&shaper, 3, 20, 0);
        shaper.tick();
        assert!(shaper.nodes()[3].dead);
        let mut rng = fastrand::Rng::with_seed(3);
        let picks = 100_000;
        let probes = (0..picks)
            .filter(|_| shaper.pick_with(&mut rng) == Some(3))
            .count();
        let share = probes as f64 / picks as f64;
        assert!(
            (share - 0.01).abs() < 0.003,
            "about 1 % probes, got {share}"
        );
        // One successful probe revives it at 10 % of static.
        shaper.record(3, true);
        shaper.tick();
        let node = &shaper.nodes()[3];
        assert!(!node.dead);
        assert!((node.weight - 10.0).abs() < 1e-9);
    }

    #[test]
    fn brownout_damping_stops_lowering_when_most_are_low() {
        let shaper = SuccessRateShaper::new(&[100, 100, 100, 100], ShapingConfig::default());
        for i in 0..3 {
            window(&shaper, i, 100, 60); // 0.36 × 100 = 36 < 50: low
        }
        shaper.tick();
        assert!(shaper.nodes()[..3].iter().all(|n| n.weight < 50.0));
        // 3 of 4 are low: node 3's failures no longer lower it, but raises still happen.
        window(&shaper, 3, 100, 50);
        window(&shaper, 0, 100, 100);
        shaper.tick();
        let nodes = shaper.nodes();
        assert_eq!(nodes[3].weight, 100.0, "not lowered during brownout");
        assert!((nodes[0].weight - 41.0).abs() < 1e-9, "raised: 36 + 5");
    }

    #[test]
    fn picks_follow_weights_repick_poor_ones_and_fall_back_to_any() {
        let shaper = SuccessRateShaper::new(&[100, 100], ShapingConfig::default());
        window(&shaper, 1, 100, 50); // weight 25, success 0.5 < 0.6: re-picked at random
        shaper.tick();
        let mut rng = fastrand::Rng::with_seed(9);
        let picks = 100_000;
        let poor = (0..picks)
            .filter(|_| shaper.pick_with(&mut rng) == Some(1))
            .count() as f64
            / picks as f64;
        // Weighted: 25/125 = 0.2 chosen first, then half of those re-picked to either: 0.1.
        assert!((poor - 0.1).abs() < 0.01, "{poor}");
        let all_dead = SuccessRateShaper::new(&[1, 1], ShapingConfig::default());
        window(&all_dead, 0, 10, 0);
        window(&all_dead, 1, 10, 0);
        all_dead.tick();
        assert!(
            all_dead.pick().is_some(),
            "with every endpoint dead, any is picked"
        );
        assert_eq!(
            SuccessRateShaper::new(&[], ShapingConfig::default()).pick(),
            None
        );
    }
}
