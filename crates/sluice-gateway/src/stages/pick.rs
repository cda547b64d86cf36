//! Stage pick: an instance of the target for one attempt — by the target's
//! balancer, around ejected instances, those already tried and those whose
//! breaker is open. Everything it keeps is on the stack.

use hyper::http::request::Parts;
use sluice_guard::breaker::Admission;

use crate::ctx::RequestCtx;
use crate::error::{ErrorKind, ProxyError};
use crate::stages::admit::breaker_open;
use crate::table::Target;

/// Most instances remembered as tried or open (1 + 5 retries, and open breakers).
const REMEMBERED: usize = 16;

/// Instances tried so far (listed first) and those whose breaker is open.
#[derive(Debug, Default)]
pub(crate) struct Excluded {
    slots: [usize; REMEMBERED],
    tried: usize,
    open: usize,
}

impl Excluded {
    fn all(&self) -> &[usize] {
        &self.slots[..self.tried + self.open]
    }

    fn open(&self) -> &[usize] {
        &self.slots[self.tried..self.tried + self.open]
    }

    /// Remembers an open breaker's instance; false when there is no room left.
    fn mark_open(&mut self, index: usize) -> bool {
        if self.tried + self.open >= REMEMBERED {
            return false;
        }
        self.slots[self.tried + self.open] = index;
        self.open += 1;
        true
    }

    fn mark_tried(&mut self, index: usize) {
        if self.tried + self.open < REMEMBERED {
            self.slots
                .copy_within(self.tried..self.tried + self.open, self.tried + 1);
            self.slots[self.tried] = index;
            self.tried += 1;
        }
    }
}

/// The instance picked for an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Picked {
    pub index: usize,
    /// Whether this attempt is its breaker's half-open trial.
    pub trial: bool,
}

pub(crate) fn next(
    ctx: &RequestCtx<'_>,
    target: &Target,
    parts: &Parts,
    excluded: &mut Excluded,
) -> Result<Picked, ProxyError> {
    let now = u64::try_from(ctx.clock.ms).unwrap_or(0);
    loop {
        let Some(index) = target.pick(parts, ctx.conn.client.ip(), excluded.all(), now) else {
            return Err(ProxyError::upstream(
                ErrorKind::NoHealthy,
                format!(
                    "service {}/{} has no healthy instance",
                    target.namespace, target.service
                ),
            ));
        };
        let trial = match target.guards.instance_breakers.get(index) {
            None => false,
            Some(breaker) => {
                if excluded.open().contains(&index) {
                    // The balancer found nothing else: every other instance's breaker is open.
                    return Err(breaker_open(target));
                }
                match breaker.attempt(ctx.clock.ms) {
                    Admission::Allowed => false,
                    Admission::Trial => true,
                    Admission::Rejected => {
                        if excluded.open >= target.endpoints.len() || !excluded.mark_open(index) {
                            return Err(breaker_open(target));
                        }
                        continue;
                    }
                }
            }
        };
        excluded.mark_tried(index);
        return Ok(Picked { index, trial });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::Connection;
    use crate::error::ErrorKind;
    use crate::protect::Reason;
    use crate::table::test_target;

    fn picks(target: &Target, attempts: usize) -> Vec<Result<Picked, ErrorKind>> {
        let snapshot = crate::snapshot::Snapshot::default();
        let rejections = crate::protect::Rejections::default();
        let conn = Connection::new("10.0.0.1:1".parse().unwrap(), "http", Default::default());
        let ctx = RequestCtx::new(&snapshot, &conn, &rejections, false);
        let parts = hyper::Request::new(()).into_parts().0;
        let mut excluded = Excluded::default();
        (0..attempts)
            .map(|_| next(&ctx, target, &parts, &mut excluded).map_err(|e| e.kind))
            .collect()
    }

    #[test]
    fn retries_go_to_instances_not_tried_yet() {
        let target = test_target(&["a", "b", "c"], None);
        let picked: Vec<usize> = picks(&target, 3)
            .into_iter()
            .map(|p| p.unwrap().index)
            .collect();
        let mut sorted = picked.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            vec![0, 1, 2],
            "three attempts, three instances: {picked:?}"
        );
    }

    #[test]
    fn an_instance_whose_breaker_is_open_is_skipped_and_all_open_is_a_refusal() {
        // Instance breakers open on the first failure.
        let target = test_target(
            &["a", "b"],
            Some(
                r#"{"service": "s", "per_instance": true, "volume": 1, "error_percent": 1, "sleep": "60s"}"#,
            ),
        );
        let breakers = &target.guards.instance_breakers;
        assert_eq!(breakers.len(), 2);
        let now = crate::clock::Clock::now().ms;
        breakers[0].record(now, sluice_guard::breaker::Outcome::Failure, 1000, false);
        // A breaker judges its window at most every 500 ms: ask it a second on.
        breakers[0].state(now + 1000);
        for _ in 0..10 {
            let picked = picks(&target, 1).remove(0).unwrap();
            assert_eq!(picked.index, 1, "the open instance is never picked");
        }
        breakers[1].record(now, sluice_guard::breaker::Outcome::Failure, 1000, false);
        breakers[1].state(now + 1000);
        assert_eq!(
            picks(&target, 1).remove(0),
            Err(ErrorKind::Refused(
                Reason::Breaker,
                hyper::StatusCode::SERVICE_UNAVAILABLE
            ))
        );
    }

    #[test]
    fn a_target_without_instances_has_no_healthy_one() {
        let target = test_target(&[], None);
        assert_eq!(picks(&target, 1).remove(0), Err(ErrorKind::NoHealthy));
    }
}
