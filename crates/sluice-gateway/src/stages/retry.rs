//! Stage retry: whether a failed attempt goes again, on another instance — when
//! the request may be sent again (idempotent, no body, its head still whole),
//! the route retries on the condition met (`5xx` covers `gateway_error`), it has
//! attempts left, and the route's retry budget allows one more.

use sluice_model::RetryOn;

use crate::stages::rewrite::Outbound;
use crate::table::CompiledRoute;

/// Whether attempts must copy the outbound head rather than move it: a request
/// that may go again after it was sent (on a reset, a timeout or a 5xx), or to
/// a fallback service. Retries after a failed connect need no copy: nothing was
/// sent.
pub(crate) fn keeps_headers(route: &CompiledRoute, outbound: &Outbound) -> bool {
    if route.fallback_target.is_some() {
        return true;
    }
    outbound.retryable
        && route
            .retries
            .on
            .iter()
            .any(|condition| *condition != RetryOn::ConnectFailure)
}

/// Whether to try again after `attempts` attempts whose last met `condition`.
pub(crate) fn again(
    route: &CompiledRoute,
    may_resend: bool,
    condition: Option<RetryOn>,
    attempts: usize,
) -> bool {
    let Some(condition) = condition else {
        return false;
    };
    let on = &route.retries.on;
    let wanted = on.contains(&condition)
        || (condition == RetryOn::GatewayError && on.contains(&RetryOn::ServerError));
    may_resend
        && wanted
        && attempts <= route.retries.attempts as usize
        && route.retry_budget.try_spend()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::test_route;

    fn route(retries: &str) -> CompiledRoute {
        test_route(
            "r",
            &format!(
                r#"{{"match": {{"path_prefix": "/"}}, "service": "s", "retries": {retries}}}"#
            ),
        )
    }

    #[test]
    fn only_the_conditions_the_route_names_are_retried() {
        let route = route(r#"{"attempts": 3, "on": ["connect_failure", "gateway_error"]}"#);
        for _ in 0..100 {
            route.retry_budget.deposit();
        }
        assert!(again(&route, true, Some(RetryOn::ConnectFailure), 1));
        assert!(again(&route, true, Some(RetryOn::GatewayError), 1));
        assert!(
            !again(&route, true, Some(RetryOn::ServerError), 1),
            "a 500 is not a gateway error"
        );
        assert!(!again(&route, true, Some(RetryOn::Timeout), 1));
        assert!(!again(&route, true, None, 1), "a success is final");
        let all_5xx = self::route(r#"{"attempts": 3, "on": ["5xx"]}"#);
        for _ in 0..100 {
            all_5xx.retry_budget.deposit();
        }
        assert!(
            again(&all_5xx, true, Some(RetryOn::GatewayError), 1),
            "5xx covers 502-504"
        );
    }

    #[test]
    fn attempts_and_the_ability_to_resend_bound_retries() {
        let route = route(r#"{"attempts": 2, "on": ["reset"]}"#);
        for _ in 0..100 {
            route.retry_budget.deposit();
        }
        assert!(again(&route, true, Some(RetryOn::Reset), 1));
        assert!(again(&route, true, Some(RetryOn::Reset), 2));
        assert!(
            !again(&route, true, Some(RetryOn::Reset), 3),
            "two retries at most"
        );
        assert!(
            !again(&route, false, Some(RetryOn::Reset), 1),
            "a request that cannot be resent"
        );
    }

    #[test]
    fn the_budget_stops_retries_when_spent() {
        let route =
            route(r#"{"attempts": 5, "on": ["reset"], "budget_percent": 20, "min_per_second": 0}"#);
        for _ in 0..10 {
            route.retry_budget.deposit();
        }
        let granted = (0..10)
            .filter(|_| again(&route, true, Some(RetryOn::Reset), 1))
            .count();
        assert_eq!(granted, 2, "20 % of 10 requests");
    }
}
