//! Head sampling of a route: whether a request that arrives without a
//! sampling decision starts a sampled trace — a share of the requests, and at
//! least `floor_per_second` per API every second. The floor keeps, per API
//! (hashed into a few slots), when it last sampled; no lock, no allocation.

use std::sync::atomic::{AtomicU64, Ordering};

/// Slots of the per-API floor (APIs hashed into them; a collision only makes
/// the floor coarser for the two APIs).
const SLOTS: usize = 64;

/// A route's head sampling.
#[derive(Debug)]
pub(crate) struct HeadSampling {
    ratio: f64,
    /// Milliseconds between floor samples of one API (0: no floor).
    floor_interval_ms: u64,
    last_ms: Box<[AtomicU64]>,
}

impl HeadSampling {
    pub fn new(spec: &sluice_model::TraceSampling) -> Self {
        HeadSampling {
            ratio: spec.sample,
            floor_interval_ms: match spec.floor_per_second {
                0 => 0,
                n => (1000 / u64::from(n)).max(1),
            },
            last_ms: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Whether a request to `api` at `now_ms` is sampled.
    pub fn sample(&self, api: Option<&str>, now_ms: u64) -> bool {
        if self.ratio >= 1.0 || (self.ratio > 0.0 && fastrand::f64() < self.ratio) {
            return true;
        }
        if self.floor_interval_ms == 0 {
            return false;
        }
        let slot = &self.last_ms[slot_of(api.unwrap_or(""))];
        let last = slot.load(Ordering::Relaxed);
        now_ms.saturating_sub(last) >= self.floor_interval_ms
            && slot
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

/// FNV-1a of the API's name, into a slot.
fn slot_of(api: &str) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in api.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % SLOTS as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ratio_samples_a_share_and_the_floor_each_quiet_api() {
        let all = HeadSampling::new(&sluice_model::TraceSampling::default());
        assert!((0..100).all(|i| all.sample(Some("GET /a"), i)));
        let tenth = HeadSampling::new(&sluice_model::TraceSampling {
            sample: 0.1,
            floor_per_second: 0,
        });
        let sampled = (0..10_000)
            .filter(|&i| tenth.sample(Some("GET /a"), i))
            .count();
        assert!((700..1300).contains(&sampled), "{sampled}");
        let floor = HeadSampling::new(&sluice_model::TraceSampling {
            sample: 0.0,
            floor_per_second: 2,
        });
        // Over 3 s of requests every millisecond: two a second for each API.
        let a = (1000..4000)
            .filter(|&ms| floor.sample(Some("GET /a"), ms))
            .count();
        assert_eq!(a, 6);
        assert!(floor.sample(Some("GET /b"), 3999));
    }
}
