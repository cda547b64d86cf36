//! Power-of-two-choices balancers: least-request and peak EWMA.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::two_distinct;

/// Counts a request in flight until dropped.
pub struct InFlight<'a> {
    counter: &'a AtomicUsize,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::Relaxed);
    }
}

/// P2C least-request: draw two distinct endpoints, keep the one with fewer active
/// requests (a tie keeps the first drawn). Over 0/5/5 active requests, endpoint 0
/// is picked 2/3 of the time (Envoy, drawing with replacement, gets 5/9).
pub struct LeastRequest {
    active: Vec<AtomicUsize>,
}

impl LeastRequest {
    /// A balancer over `endpoints` endpoints.
    pub fn new(endpoints: usize) -> Self {
        LeastRequest {
            active: (0..endpoints).map(|_| AtomicUsize::new(0)).collect(),
        }
    }

    /// Marks a request to `index` as started; it ends when the guard drops.
    pub fn start(&self, index: usize) -> Option<InFlight<'_>> {
        let counter = self.active.get(index)?;
        counter.fetch_add(1, Ordering::Relaxed);
        Some(InFlight { counter })
    }

    /// Requests in flight at `index`.
    pub fn active(&self, index: usize) -> usize {
        self.active
            .get(index)
            .map_or(0, |a| a.load(Ordering::Relaxed))
    }

    /// A pick using `rng`.
    pub fn pick_with(&self, rng: &mut fastrand::Rng) -> Option<usize> {
        match self.active.len() {
            0 => None,
            1 => Some(0),
            n => {
                let (a, b) = two_distinct(rng, n);
                Some(if self.active(b) < self.active(a) {
                    b
                } else {
                    a
                })
            }
        }
    }

    /// A pick using the thread's generator.
    pub fn pick(&self) -> Option<usize> {
        super::with_rng(|rng| self.pick_with(rng))
    }
}

struct Cost {
    /// Nanoseconds.
    value: f64,
    at: Instant,
}

/// Peak EWMA (finagle, tower): each endpoint's cost follows its latency, jumping up
/// at once on a slow response and decaying with time constant τ otherwise;
/// load = cost × (pending + 1); two endpoints drawn, the lower load wins.
pub struct PeakEwma {
    decay: Duration,
    costs: Vec<Mutex<Cost>>,
    pending: Vec<AtomicUsize>,
}

impl PeakEwma {
    /// A balancer over `endpoints` endpoints, each starting at `default_rtt`, decaying with time constant `decay` (τ ≈ 10 s).
    pub fn new(endpoints: usize, default_rtt: Duration, decay: Duration) -> Self {
        let now = Instant::now();
        PeakEwma {
            decay,
            costs: (0..endpoints)
                .map(|_| {
                    Mutex::new(Cost {
                        value: default_rtt.as_nanos() as f64,
                        at: now,
                    })
                })
                .collect(),
            pending: (0..endpoints).map(|_| AtomicUsize::new(0)).collect(),
        }
    }

    fn weight(&self, elapsed: Duration) -> f64 {
        (-elapsed.as_secs_f64() / self.decay.as_secs_f64().max(f64::MIN_POSITIVE)).exp()
    }

    /// Records a response time of endpoint `index` observed at `now`.
    pub fn observe_at(&self, index: usize, rtt: Duration, now: Instant) {
        let Some(cost) = self.costs.get(index) else {
            return;
        };
        let mut cost = cost.lock();
        let rtt = rtt.as_nanos() as f64;
        if rtt > cost.value {
            cost.value = rtt;
        } else {
            let w = self.weight(now.saturating_duration_since(cost.at));
            cost.value = cost.value * w + rtt * (1.0 - w);
        }
        cost.at = now;
    }

    /// Records a response time observed now.
    pub fn observe(&self, index: usize, rtt: Duration) {
        self.observe_at(index, rtt, Instant::now());
    }

    /// The cost of `index` at `now` (decayed toward 0 since the last response), in nanoseconds.
    pub fn cost_at(&self, index: usize, now: Instant) -> f64 {
        self.costs.get(index).map_or(f64::INFINITY, |cost| {
            let cost = cost.lock();
            cost.value * self.weight(now.saturating_duration_since(cost.at))
        })
    }

    /// cost × (pending + 1) at `now`.
    pub fn load_at(&self, index: usize, now: Instant) -> f64 {
        let pending = self
            .pending
            .get(index)
            .map_or(0, |p| p.load(Ordering::Relaxed));
        self.cost_at(index, now) * (pending as f64 + 1.0)
    }

    /// Marks a request to `index` as pending until the guard drops.
    pub fn start(&self, index: usize) -> Option<InFlight<'_>> {
        let counter = self.pending.get(index)?;
        counter.fetch_add(1, Ordering::Relaxed);
        Some(InFlight { counter })
    }

    /// A pick at `now` using `rng`.
    pub fn pick_at(&self, rng: &mut fastrand::Rng, now: Instant) -> Option<usize> {
        match self.costs.len() {
            0 => None,
            1 => Some(0),
            n => {
                let (a, b) = two_distinct(rng, n);
                Some(if self.load_at(b, now) < self.load_at(a, now) {
                    b
                } else {
                    a
                })
            }
        }
    }

    /// A pick now using the thread's generator.
    pub fn pick(&self) -> Option<usize> {
        let now = Instant::now();
        super::with_rng(|rng| self.pick_at(rng, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_request_over_0_5_5_picks_the_idle_host_two_thirds_of_the_time() {
        let balancer = LeastRequest::new(3);
        let _busy: Vec<_> = (0..5)
            .flat_map(|_| [balancer.start(1), balancer.start(2)])
            .collect();
        let mut rng = fastrand::Rng::with_seed(42);
        let picks = 60_000;
        let idle = (0..picks)
            .filter(|_| balancer.pick_with(&mut rng) == Some(0))
            .count();
        let share = idle as f64 / picks as f64;
        assert!((share - 2.0 / 3.0).abs() < 0.01, "idle host picked {share}");
    }

    #[test]
    fn in_flight_guards_count_down() {
        let balancer = LeastRequest::new(2);
        {
            let _a = balancer.start(1);
            let _b = balancer.start(1);
            assert_eq!(balancer.active(1), 2);
        }
        assert_eq!(balancer.active(1), 0);
        assert!(balancer.start(5).is_none());
        assert_eq!(LeastRequest::new(1).pick(), Some(0));
        assert_eq!(LeastRequest::new(0).pick(), None);
    }

    #[test]
    fn peak_ewma_jumps_on_peaks_and_decays_otherwise() {
        let tau = Duration::from_secs(10);
        let balancer = PeakEwma::new(2, Duration::from_millis(100), tau);
        let start = Instant::now();
        // A slower response raises the cost at once.
        balancer.observe_at(0, Duration::from_millis(300), start);
        assert!((balancer.cost_at(0, start) - 300e6).abs() < 1.0);
        // A faster one blends: w = exp(-Δt/τ); after Δt = τ, cost = 300·e⁻¹ + 50·(1 − e⁻¹).
        let later = start + tau;
        balancer.observe_at(0, Duration::from_millis(50), later);
        let w = (-1f64).exp();
        let expected = 300e6 * w + 50e6 * (1.0 - w);
        assert!(
            (balancer.cost_at(0, later) - expected).abs() < 1e3,
            "{}",
            balancer.cost_at(0, later)
        );
        // Idle, it decays toward 0.
        assert!(balancer.cost_at(0, later + tau * 10) < expected * 1e-4);
    }

    #[test]
    fn peak_ewma_prefers_the_lower_load() {
        let balancer = PeakEwma::new(2, Duration::from_millis(10), Duration::from_secs(10));
        let now = Instant::now();
        balancer.observe_at(1, Duration::from_millis(200), now);
        let mut rng = fastrand::Rng::with_seed(1);
        assert!((0..100).all(|_| balancer.pick_at(&mut rng, now) == Some(0)));
        // Pending requests multiply the load: 10 ms × 30 > 200 ms × 1.
        let _pending: Vec<_> = (0..29).map(|_| balancer.start(0)).collect();
        assert!((0..100).all(|_| balancer.pick_at(&mut rng, now) == Some(1)));
    }
}
