//! Passive outlier detection: per-instance failure counts that eject an instance
//! for a growing time. Atomics only: the request path takes no lock.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use sluice_model::OutlierDetection;

use crate::clock::now_ms;

/// Failure state of one instance, kept across snapshots (keyed by address).
#[derive(Debug, Default)]
pub struct EndpointHealth {
    consecutive_failures: AtomicU32,
    ejections: AtomicU32,
    ejected_until_ms: AtomicU64,
}

impl EndpointHealth {
    /// Whether the instance is ejected at `now`.
    pub fn is_ejected(&self, now: u64) -> bool {
        self.ejected_until_ms.load(Ordering::Relaxed) > now
    }

    /// A response came back (not a 5xx): the failure streak ends.
    pub fn record_success(&self) {
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
        if self.ejections.load(Ordering::Relaxed) != 0
            && self.ejected_until_ms.load(Ordering::Relaxed) <= now_ms()
        {
            self.ejections.store(0, Ordering::Relaxed);
        }
    }

    /// A failure; returns whether it ejected the instance. `may_eject` says whether
    /// the service can spare one more ejected instance.
    pub fn record_failure(
        &self,
        policy: &OutlierDetection,
        may_eject: impl FnOnce() -> bool,
    ) -> bool {
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if policy.consecutive_failures == 0 || failures < policy.consecutive_failures {
            return false;
        }
        let now = now_ms();
        if self.is_ejected(now) || !may_eject() {
            return false;
        }
        let ejections = self.ejections.fetch_add(1, Ordering::Relaxed) + 1;
        let length = policy.base_ejection.saturating_mul(ejections.min(64));
        let until = now.saturating_add(u64::try_from(length.as_millis()).unwrap_or(u64::MAX));
        self.ejected_until_ms.store(until, Ordering::Relaxed);
        self.consecutive_failures.store(0, Ordering::Relaxed);
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn consecutive_failures_eject_for_a_growing_time() {
        let policy = OutlierDetection {
            consecutive_failures: 3,
            base_ejection: Duration::from_secs(10),
            max_ejection_percent: 50,
        };
        let health = EndpointHealth::default();
        assert!(!health.record_failure(&policy, || true));
        assert!(!health.record_failure(&policy, || true));
        assert!(
            health.record_failure(&policy, || true),
            "the third failure in a row ejects"
        );
        let now = now_ms();
        assert!(health.is_ejected(now));
        assert!(!health.is_ejected(now + 10_001));
        // A success in between resets the streak.
        health.record_failure(&policy, || true);
        health.record_success();
        health.record_failure(&policy, || true);
        health.record_failure(&policy, || true);
        assert_eq!(health.consecutive_failures.load(Ordering::Relaxed), 2);
        // The second ejection lasts twice as long; none when the service cannot spare it.
        assert!(health.record_failure(&policy, || true) || health.is_ejected(now_ms()));
        let other = EndpointHealth::default();
        for _ in 0..3 {
            assert!(!other.record_failure(&policy, || false));
        }
    }
}
