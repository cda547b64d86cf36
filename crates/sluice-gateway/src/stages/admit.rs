//! Stage admit: the adaptive concurrency limits of the route and of the service
//! (brpc's auto limiter or Envoy's gradient, by priority), and the service's
//! circuit breaker, before any instance is picked.

use std::time::Instant;

use hyper::StatusCode;
use sluice_guard::breaker::Admission;
use sluice_model::Priority;

use crate::ctx::RequestCtx;
use crate::error::ProxyError;
use crate::protect::{ConcurrencyGuard, Reason};
use crate::table::{CompiledRoute, Target};

/// The places a request holds in adaptive concurrency limits (route and service);
/// freed with a latency sample by `finish`, or without one when dropped.
pub(crate) struct Admitted<'a> {
    limiters: [Option<&'a ConcurrencyGuard>; 2],
    priority: Priority,
    started: Instant,
    finished: bool,
    /// Whether this request is the service breaker's half-open trial.
    pub service_trial: bool,
}

/// Admits a request to `target` through `route`, or refuses it.
pub(crate) fn admit<'a>(
    ctx: &RequestCtx<'_>,
    route: &'a CompiledRoute,
    target: &'a Target,
) -> Result<Admitted<'a>, ProxyError> {
    let refused = |reason: Reason, status: StatusCode, what: &str| {
        ProxyError::refused(
            reason,
            status,
            format!(
                "the {what} of {}/{} is reached",
                target.namespace, target.service
            ),
        )
    };
    let mut admitted = Admitted::acquire(
        route.guards.concurrency.as_deref(),
        target.guards.concurrency.as_deref(),
        route.priority,
        // A rate limit's delay is not the service's latency.
        ctx.clock.at + ctx.delayed,
    )
    .map_err(|status| refused(Reason::Concurrency, status, "concurrency limit"))?;
    if let Some(breaker) = &target.guards.breaker {
        match breaker.attempt(ctx.clock.ms) {
            Admission::Allowed => {}
            Admission::Trial => admitted.service_trial = true,
            Admission::Rejected => return Err(breaker_open(target)),
        }
    }
    Ok(admitted)
}

/// The refusal of an open breaker of `target` (the service's or every instance's).
pub(crate) fn breaker_open(target: &Target) -> ProxyError {
    ProxyError::refused(
        Reason::Breaker,
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "the circuit breaker of {}/{} is open",
            target.namespace, target.service
        ),
    )
}

impl<'a> Admitted<'a> {
    fn acquire(
        route: Option<&'a ConcurrencyGuard>,
        service: Option<&'a ConcurrencyGuard>,
        priority: Priority,
        started: Instant,
    ) -> Result<Self, StatusCode> {
        if let Some(limit) = route {
            if !limit.acquire(priority) {
                return Err(limit.status);
            }
        }
        if let Some(limit) = service {
            if !limit.acquire(priority) {
                if let Some(route) = route {
                    route.cancel(priority);
                }
                return Err(limit.status);
            }
        }
        Ok(Admitted {
            limiters: [route, service],
            priority,
            started,
            finished: false,
            service_trial: false,
        })
    }

    /// The request is done at `ended`: each limiter learns its latency and outcome.
    pub fn finish(mut self, ok: bool, ended: Instant) {
        self.finished = true;
        if self.limiters.iter().all(Option::is_none) {
            return;
        }
        let latency = ended.saturating_duration_since(self.started);
        let latency = i64::try_from(latency.as_micros()).unwrap_or(i64::MAX);
        let now = crate::clock::Clock::at(ended).us();
        for limit in self.limiters.iter().flatten() {
            limit.release(self.priority, ok, latency, now);
        }
    }
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        if !self.finished {
            for limit in self.limiters.iter().flatten() {
                limit.cancel(self.priority);
            }
        }
    }
}
