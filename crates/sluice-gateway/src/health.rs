//! Passive outlier detection and retry budgets: per-instance failure counts that
//! eject an instance for a growing time, and a per-route allowance of retries.
//! Everything here is atomics: the request path takes no lock.

use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
#[cfg(test)]
use std::time::Duration;
use std::time::Instant;

use sluice_model::{OutlierDetection, Retries};

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Milliseconds since the gateway's clock started (monotonic).
pub(crate) fn now_ms() -> u64 {
    u64::try_from(EPOCH.get_or_init(Instant::now).elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Microseconds on the same monotonic clock, starting above zero (limiters take 0 as "never").
pub(crate) fn now_us() -> i64 {
    i64::try_from(EPOCH.get_or_init(Instant::now).elapsed().as_micros())
        .unwrap_or(i64::MAX)
        .saturating_add(1_000_000)
}

/// Wall-clock Unix milliseconds (for expiry times given as dates).
pub(crate) fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The monotonic clock's start and the wall clock then: a request's one clock
/// read (an `Instant`) gives its Unix time without asking the wall clock again.
static UNIX_AT_EPOCH: OnceLock<(Instant, i64)> = OnceLock::new();

/// The clocks of one instant: what a request reads once and its stages share.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    /// The instant itself.
    pub at: Instant,
    /// Milliseconds on [`now_ms`]'s monotonic clock.
    pub ms: i64,
    /// Unix milliseconds (the wall clock as it was when the gateway started, moved on
    /// by the monotonic clock).
    pub unix_ms: i64,
}

impl Clock {
    /// Reads the clock once.
    pub fn now() -> Self {
        Self::at(Instant::now())
    }

    /// The clocks at `at`.
    pub fn at(at: Instant) -> Self {
        let epoch = *EPOCH.get_or_init(Instant::now);
        let (anchor, anchor_unix) = *UNIX_AT_EPOCH.get_or_init(|| (Instant::now(), unix_ms()));
        let since = |start: Instant| {
            i64::try_from(at.saturating_duration_since(start).as_millis()).unwrap_or(i64::MAX)
        };
        Clock {
            at,
            ms: since(epoch),
            unix_ms: anchor_unix.saturating_add(since(anchor)),
        }
    }

    /// Microseconds on [`now_us`]'s clock.
    pub fn us(&self) -> i64 {
        let epoch = *EPOCH.get_or_init(Instant::now);
        i64::try_from(self.at.saturating_duration_since(epoch).as_micros())
            .unwrap_or(i64::MAX)
            .saturating_add(1_000_000)
    }
}

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

/// Retries allowed on a route: each request deposits `budget_percent` of a token,
/// each second adds `min_per_second`, a retry spends one (bounded, so a burst of
/// failures cannot turn into a retry storm).
#[derive(Debug)]
pub(crate) struct RetryBudget {
    /// Thousandths of a token.
    milli_tokens: AtomicI64,
    deposit_milli: i64,
    per_second_milli: i64,
    cap_milli: i64,
    last_second: AtomicU64,
}

impl RetryBudget {
    pub fn new(retries: &Retries) -> Self {
        let per_second_milli = i64::from(retries.min_per_second) * 1000;
        RetryBudget {
            milli_tokens: AtomicI64::new(per_second_milli),
            deposit_milli: (retries.budget_percent * 10.0) as i64,
            per_second_milli,
            cap_milli: per_second_milli.max(1000) * 10,
            last_second: AtomicU64::new(now_ms() / 1000),
        }
    }

    /// Counts a request.
    pub fn deposit(&self) {
        self.add(self.deposit_milli);
    }

    fn add(&self, milli: i64) {
        let previous = self.milli_tokens.fetch_add(milli, Ordering::Relaxed);
        if previous + milli > self.cap_milli {
            self.milli_tokens.store(self.cap_milli, Ordering::Relaxed);
        }
    }

    /// Takes one retry from the budget, if there is one.
    pub fn try_spend(&self) -> bool {
        let second = now_ms() / 1000;
        let last = self.last_second.load(Ordering::Relaxed);
        if second > last
            && self
                .last_second
                .compare_exchange(last, second, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let elapsed = i64::try_from(second - last).unwrap_or(i64::MAX).min(10);
            self.add(self.per_second_milli * elapsed);
        }
        if self.milli_tokens.fetch_sub(1000, Ordering::Relaxed) >= 1000 {
            true
        } else {
            self.milli_tokens.fetch_add(1000, Ordering::Relaxed);
            false
        }
    }
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn the_budget_bounds_retries() {
        let retries = Retries {
            attempts: 1,
            on: vec![],
            budget_percent: 20.0,
            min_per_second: 0,
        };
        let budget = RetryBudget::new(&retries);
        assert!(!budget.try_spend(), "no requests yet, no minimum: no retry");
        for _ in 0..10 {
            budget.deposit();
        }
        assert!(budget.try_spend(), "20 % of 10 requests = 2 retries");
        assert!(budget.try_spend());
        assert!(!budget.try_spend());
    }
}
