//! Load balancers. Each picks an index into the endpoint list it was built with;
//! lists are rebuilt (cheaply) when endpoints change. Picks take no global lock:
//! the stateful balancers keep their state per balancer, in atomics or a short
//! per-balancer mutex.

mod hash;
mod p2c;
mod round_robin;
mod shaping;

pub use hash::{hash_key, Maglev, Ring, MAGLEV_TABLE_SIZE};
pub use p2c::{LeastRequest, PeakEwma};
pub use round_robin::{SmoothWeightedRoundRobin, WeightedRandom};
pub use shaping::{NodeState, ShapingConfig, SuccessRateShaper};

/// Draws two distinct indices below `n` (n ≥ 2), uniformly, in draw order.
pub(crate) fn two_distinct(rng: &mut fastrand::Rng, n: usize) -> (usize, usize) {
    let first = rng.usize(..n);
    let mut second = rng.usize(..n - 1);
    if second >= first {
        second += 1;
    }
    (first, second)
}

thread_local! {
    static RNG: std::cell::RefCell<fastrand::Rng> = std::cell::RefCell::new(fastrand::Rng::new());
}

/// Runs `f` with this thread's random generator (no lock shared between threads).
pub(crate) fn with_rng<T>(f: impl FnOnce(&mut fastrand::Rng) -> T) -> T {
    RNG.with(|rng| f(&mut rng.borrow_mut()))
}
