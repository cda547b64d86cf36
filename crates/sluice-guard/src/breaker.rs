//! Circuit breaking with Hystrix's semantics (algorithms.md §4), plus a slow-call
//! ratio as resilience4j has it.
//!
//! Outcomes land in a rolling window of buckets (default 10 s in 10). At most every
//! `snapshot_ms` (500) the window is summed: with at least `volume` calls (20) and an
//! error percentage — `(int)(errors / total * 100)`, errors being failures and
//! timeouts — at or above `error_percent` (50), or a slow-call percentage at or
//! above `slow_percent`, the breaker opens. After `sleep_ms` (5000) the first caller
//! moves it to half-open and is the only trial; the trial's success closes it and
//! clears the window, its failure opens it again with a new open time. Calls refused
//! while open are not counted.
//!
//! Counting is lock-free (atomics per bucket); time is passed in, in milliseconds.

use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU8, Ordering};

/// A breaker's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Length of the rolling window, ms.
    pub window_ms: i64,
    /// Buckets in the window.
    pub buckets: usize,
    /// Calls the window must hold before the breaker may open.
    pub volume: u32,
    /// Error percentage (0–100) that opens the breaker.
    pub error_percent: u32,
    /// How long the breaker stays open before one trial call, ms.
    pub sleep_ms: i64,
    /// A call slower than this is slow (strictly above), µs; `None`: no slow-call rule.
    pub slow_call_us: Option<i64>,
    /// Slow-call percentage (0–100) that opens the breaker.
    pub slow_percent: u32,
    /// How often the window is summed, ms.
    pub snapshot_ms: i64,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            window_ms: 10_000,
            buckets: 10,
            volume: 20,
            error_percent: 50,
            sleep_ms: 5_000,
            slow_call_us: None,
            slow_percent: 100,
            snapshot_ms: 500,
        }
    }
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It succeeded.
    Success,
    /// It failed.
    Failure,
    /// It did not finish in time.
    Timeout,
}

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls pass.
    Closed,
    /// Calls are refused until the sleep window ends.
    Open,
    /// One trial call is out; others are refused.
    HalfOpen,
}

/// What the breaker says to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead.
    Allowed,
    /// Go ahead as the half-open trial: report the outcome with `trial = true`.
    Trial,
    /// Refused: use the fallback.
    Rejected,
}

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

#[derive(Debug, Default)]
struct Bucket {
    /// The bucket's number (`now / bucket_ms`) its counts belong to.
    epoch: AtomicI64,
    success: AtomicU32,
    failure: AtomicU32,
    timeout: AtomicU32,
    slow: AtomicU32,
}

/// Sums of the window at a snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HealthCounts {
    /// Calls counted.
    pub total: u32,
    /// Failures and timeouts.
    pub errors: u32,
    /// Calls slower than the slow-call threshold.
    pub slow: u32,
}

impl HealthCounts {
    /// Hystrix's `(int)(errors / total * 100)`.
    pub fn error_percent(&self) -> u32 {
        if self.total == 0 {
            0
        } else {
            (f64::from(self.errors) / f64::from(self.total) * 100.0) as u32
        }
    }

    /// The slow-call percentage, likewise.
    pub fn slow_percent(&self) -> u32 {
        if self.total == 0 {
            0
        } else {
            (f64::from(self.slow) / f64::from(self.total) * 100.0) as u32
        }
    }
}

/// A circuit breaker.
#[derive(Debug)]
pub struct CircuitBreaker {
    settings: BreakerSettings,
    bucket_ms: i64,
    buckets: Vec<Bucket>,
    state: AtomicU8,
    /// When it opened (or the trial started, while half-open), ms.
    opened_at: AtomicI64,
    /// Window counts before this epoch are ignored (cleared on close).
    cleared_before: AtomicI64,
    last_snapshot: AtomicI64,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(settings: BreakerSettings) -> Self {
        let buckets = settings.buckets.max(1);
        let bucket_ms = (settings.window_ms / buckets as i64).max(1);
        CircuitBreaker {
            buckets: (0..buckets)
                .map(|_| Bucket {
                    epoch: AtomicI64::new(i64::MIN),
                    ..Bucket::default()
                })
                .collect(),
            bucket_ms,
            settings,
            state: AtomicU8::new(CLOSED),
            opened_at: AtomicI64::new(0),
            cleared_before: AtomicI64::new(i64::MIN),
            last_snapshot: AtomicI64::new(i64::MIN),
        }
    }

    /// The settings it was built with.
    pub fn settings(&self) -> &BreakerSettings {
        &self.settings
    }

    /// Asks to make a call at `now_ms`.
    pub fn attempt(&self, now_ms: i64) -> Admission {
        self.maybe_snapshot(now_ms);
        match self.state.load(Ordering::Acquire) {
            CLOSED => Admission::Allowed,
            OPEN => {
                let opened = self.opened_at.load(Ordering::Acquire);
                if now_ms - opened >= self.settings.sleep_ms
                    && self
                        .state
                        .compare_exchange(OPEN, HALF_OPEN, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                {
                    self.opened_at.store(now_ms, Ordering::Release);
                    Admission::Trial
                } else {
                    Admission::Rejected
                }
            }
            _ => {
                // A trial that never reported (its caller went away) is replaced
                // after another sleep window.
                let started = self.opened_at.load(Ordering::Acquire);
                if now_ms - started >= self.settings.sleep_ms
                    && self
                        .opened_at
                        .compare_exchange(started, now_ms, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                {
                    Admission::Trial
                } else {
                    Admission::Rejected
                }
            }
        }
    }

    /// Reports a call's outcome; `trial` when [`attempt`](Self::attempt) said [`Admission::Trial`].
    pub fn record(&self, now_ms: i64, outcome: Outcome, latency_us: i64, trial: bool) {
        if trial {
            if outcome == Outcome::Success && !self.is_slow(latency_us) {
                if self
                    .state
                    .compare_exchange(HALF_OPEN, CLOSED, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    // Hystrix resets the metrics on closing.
                    self.cleared_before
                        .store(now_ms / self.bucket_ms + 1, Ordering::Release);
                    self.last_snapshot.store(now_ms, Ordering::Release);
                }
            } else if self
                .state
                .compare_exchange(HALF_OPEN, OPEN, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                self.opened_at.store(now_ms, Ordering::Release);
            }
            return;
        }
        let epoch = now_ms / self.bucket_ms;
        let bucket = &self.buckets[(epoch.rem_euclid(self.buckets.len() as i64)) as usize];
        let seen = bucket.epoch.load(Ordering::Acquire);
        if seen != epoch
            && bucket
                .epoch
                .compare_exchange(seen, epoch, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            bucket.success.store(0, Ordering::Relaxed);
            bucket.failure.store(0, Ordering::Relaxed);
            bucket.timeout.store(0, Ordering::Relaxed);
            bucket.slow.store(0, Ordering::Relaxed);
        }
        let counter = match outcome {
            Outcome::Success => &bucket.success,
            Outcome::Failure => &bucket.failure,
            Outcome::Timeout => &bucket.timeout,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if self.is_slow(latency_us) {
            bucket.slow.fetch_add(1, Ordering::Relaxed);
        }
        self.maybe_snapshot(now_ms);
    }

    fn is_slow(&self, latency_us: i64) -> bool {
        self.settings.slow_call_us.is_some_and(|s| latency_us > s)
    }

    /// The window's sums at `now_ms`.
    pub fn health(&self, now_ms: i64) -> HealthCounts {
        let epoch = now_ms / self.bucket_ms;
        let oldest = (epoch - self.buckets.len() as i64 + 1)
            .max(self.cleared_before.load(Ordering::Acquire));
        let mut counts = HealthCounts::default();
        for bucket in &self.buckets {
            let e = bucket.epoch.load(Ordering::Acquire);
            if e < oldest || e > epoch {
                continue;
            }
            let success = bucket.success.load(Ordering::Relaxed);
            let errors =
                bucket.failure.load(Ordering::Relaxed) + bucket.timeout.load(Ordering::Relaxed);
            counts.total += success + errors;
            counts.errors += errors;
            counts.slow += bucket.slow.load(Ordering::Relaxed);
        }
        counts
    }

    /// The state at `now_ms` (after any snapshot that is due).
    pub fn state(&self, now_ms: i64) -> BreakerState {
        self.maybe_snapshot(now_ms);
        match self.state.load(Ordering::Acquire) {
            CLOSED => BreakerState::Closed,
            OPEN => BreakerState::Open,
            _ => BreakerState::HalfOpen,
        }
    }

    fn maybe_snapshot(&self, now_ms: i64) {
        let last = self.last_snapshot.load(Ordering::Acquire);
        if last != i64::MIN && now_ms - last < self.settings.snapshot_ms {
            return;
        }
        if self
            .last_snapshot
            .compare_exchange(last, now_ms, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        if self.state.load(Ordering::Acquire) != CLOSED {
            return;
        }
        let health = self.health(now_ms);
        if health.total < self.settings.volume.max(1) {
            return;
        }
        let trips = health.error_percent() >= self.settings.error_percent
            || (self.settings.slow_call_us.is_some()
                && health.slow_percent() >= self.settings.slow_percent);
        if trips
            && self
                .state
                .compare_exchange(CLOSED, OPEN, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.opened_at.store(now_ms, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `calls` calls of which `failures` fail, in the first second, then the
    /// breaker's state after the next snapshot.
    fn after(calls: u32, failures: u32) -> BreakerState {
        let breaker = CircuitBreaker::new(BreakerSettings::default());
        for i in 0..calls {
            let outcome = if i < failures {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            assert_eq!(breaker.attempt(i64::from(i)), Admission::Allowed);
            breaker.record(i64::from(i), outcome, 1_000, false);
        }
        breaker.state(1_000)
    }

    #[test]
    fn hystrix_vectors() {
        assert_eq!(after(20, 10), BreakerState::Open, "20 calls, 50 %");
        assert_eq!(after(21, 10), BreakerState::Closed, "21 calls, 47 %");
        assert_eq!(
            after(19, 19),
            BreakerState::Closed,
            "19 calls: under the volume"
        );
    }

    #[test]
    fn timeouts_count_as_errors() {
        let breaker = CircuitBreaker::new(BreakerSettings::default());
        for i in 0..20 {
            let outcome = if i % 2 == 0 {
                Outcome::Timeout
            } else {
                Outcome::Success
            };
            breaker.record(i, outcome, 1_000, false);
        }
        assert_eq!(breaker.state(600), BreakerState::Open);
    }

    #[test]
    fn open_sleeps_then_one_trial_closes_or_reopens() {
        let breaker = CircuitBreaker::new(BreakerSettings::default());
        for i in 0..20 {
            breaker.record(i, Outcome::Failure, 1_000, false);
        }
        assert_eq!(breaker.attempt(600), Admission::Rejected);
        assert_eq!(breaker.attempt(5_599), Admission::Rejected);
        // After the sleep window: one trial, others refused.
        assert_eq!(breaker.attempt(5_600), Admission::Trial);
        assert_eq!(breaker.attempt(5_601), Admission::Rejected);
        assert_eq!(breaker.state(5_601), BreakerState::HalfOpen);
        // The trial fails: open again, with a new open time.
        breaker.record(5_700, Outcome::Failure, 1_000, true);
        assert_eq!(breaker.state(5_700), BreakerState::Open);
        assert_eq!(breaker.attempt(10_000), Admission::Rejected);
        assert_eq!(breaker.attempt(10_700), Admission::Trial);
        breaker.record(10_710, Outcome::Success, 1_000, true);
        assert_eq!(breaker.state(10_710), BreakerState::Closed);
        // The window was cleared: old failures do not reopen it.
        assert_eq!(breaker.health(11_300).total, 0);
        assert_eq!(breaker.attempt(11_300), Admission::Allowed);
        assert_eq!(breaker.state(11_300), BreakerState::Closed);
    }

    #[test]
    fn a_lost_trial_is_replaced_after_another_sleep_window() {
        let breaker = CircuitBreaker::new(BreakerSettings::default());
        for i in 0..20 {
            breaker.record(i, Outcome::Failure, 1_000, false);
        }
        assert_eq!(breaker.state(600), BreakerState::Open);
        assert_eq!(breaker.attempt(5_600), Admission::Trial);
        assert_eq!(breaker.attempt(8_000), Admission::Rejected);
        assert_eq!(breaker.attempt(10_600), Admission::Trial);
    }

    #[test]
    fn the_window_rolls() {
        let breaker = CircuitBreaker::new(BreakerSettings::default());
        for i in 0..15 {
            breaker.record(i, Outcome::Failure, 1_000, false);
        }
        // 10 s later those are gone; 15 more failures are still under the volume.
        for i in 0..15 {
            breaker.record(10_500 + i, Outcome::Failure, 1_000, false);
        }
        assert_eq!(breaker.health(11_000).total, 15);
        assert_eq!(breaker.state(11_000), BreakerState::Closed);
    }

    #[test]
    fn slow_calls_open_the_breaker() {
        let breaker = CircuitBreaker::new(BreakerSettings {
            slow_call_us: Some(100_000),
            slow_percent: 50,
            ..BreakerSettings::default()
        });
        for i in 0..20 {
            // Half of them strictly slower than 100 ms; 100 ms exactly is not slow.
            let latency = if i % 2 == 0 { 150_000 } else { 100_000 };
            breaker.record(i, Outcome::Success, latency, false);
        }
        assert_eq!(breaker.health(600).slow, 10);
        assert_eq!(breaker.state(600), BreakerState::Open);
        // A slow trial does not close it.
        assert_eq!(breaker.attempt(5_600), Admission::Trial);
        breaker.record(5_700, Outcome::Success, 150_000, true);
        assert_eq!(breaker.state(5_700), BreakerState::Open);
    }
}
