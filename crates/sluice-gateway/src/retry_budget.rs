//! A route's retry budget, which stage `retry` spends: each request deposits
//! `budget_percent` of a token, each second adds `min_per_second`, a retry spends
//! one. Atomics only: the request path takes no lock.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use sluice_model::Retries;

use crate::clock::now_ms;

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
