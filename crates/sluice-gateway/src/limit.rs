//! `RateLimit` resources in the gateway: nginx `limit_req` zones (from
//! `sluice-guard`) attached to routes, with keys built from the request.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use hyper::header::HeaderName;
use hyper::http::request::Parts;
use hyper::StatusCode;
use sluice_guard::limit::{check_all, parse_rate, Decision, LimitReq, LimitReqSpec};
use sluice_model::RateLimitSpec;

use crate::Limits;

/// Whether a stored spec is usable.
pub(crate) fn valid(spec: &RateLimitSpec) -> bool {
    spec.validate().is_ok() && parse_rate(&spec.rate).is_ok()
}

enum KeyPart {
    ClientIp,
    Route,
    Header(HeaderName),
}

/// One limit on a route.
pub(crate) struct RouteLimit {
    zone: Arc<LimitReq>,
    key: Vec<KeyPart>,
    status: StatusCode,
}

/// Zones by (namespace, limit name), kept while their spec stays the same.
#[derive(Default)]
pub(crate) struct Zones {
    zones: HashMap<(String, String), (RateLimitSpec, Arc<LimitReq>)>,
}

impl Zones {
    /// Forgets zones whose limit was removed or changed.
    pub fn retain(&mut self, specs: &Limits) {
        self.zones
            .retain(|id, (spec, _)| specs.get(id) == Some(spec));
    }

    /// The limits that apply to route `namespace/route`.
    pub fn for_route(&mut self, namespace: &str, route: &str, specs: &Limits) -> Vec<RouteLimit> {
        specs
            .iter()
            .filter(|((ns, _), spec)| ns == namespace && spec.route == route)
            .filter_map(|(id, spec)| {
                let rate = parse_rate(&spec.rate).ok()?;
                let zone = &self
                    .zones
                    .entry(id.clone())
                    .or_insert_with(|| {
                        let guard_spec = LimitReqSpec {
                            rate,
                            burst: spec.burst,
                            delay: if spec.nodelay {
                                None
                            } else {
                                Some(spec.delay.unwrap_or(0))
                            },
                            dry_run: spec.dry_run,
                        };
                        (
                            spec.clone(),
                            Arc::new(LimitReq::new(guard_spec, spec.max_keys)),
                        )
                    })
                    .1;
                let key = spec
                    .key
                    .split('+')
                    .filter_map(|part| match part.strip_prefix("header:") {
                        Some(name) => HeaderName::try_from(name).ok().map(KeyPart::Header),
                        None if part == "route" => Some(KeyPart::Route),
                        None => Some(KeyPart::ClientIp),
                    })
                    .collect();
                Some(RouteLimit {
                    zone: Arc::clone(zone),
                    key,
                    status: StatusCode::from_u16(spec.status)
                        .unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                })
            })
            .collect()
    }
}

/// What the limits say about a request.
pub(crate) enum Verdict {
    Pass,
    Delay(std::time::Duration),
    Reject(StatusCode),
}

/// Checks a request against a route's limits (nginx's rules for several limits).
pub(crate) fn check(
    limits: &[RouteLimit],
    parts: &Parts,
    client: IpAddr,
    route: &str,
    now_ms: i64,
) -> Verdict {
    let keys: Vec<Vec<u8>> = limits
        .iter()
        .map(|limit| key(limit, parts, client, route))
        .collect();
    let pairs: Vec<(&LimitReq, &[u8])> = limits
        .iter()
        .zip(&keys)
        .map(|(l, k)| (&*l.zone, k.as_slice()))
        .collect();
    let decision = if pairs.len() == 1 {
        pairs[0].0.check(pairs[0].1, now_ms)
    } else {
        check_all(&pairs, now_ms)
    };
    match decision {
        Decision::Rejected => Verdict::Reject(limits[0].status),
        Decision::Delayed(delay) => Verdict::Delay(delay),
        Decision::Passed | Decision::DelayedDryRun(_) | Decision::RejectedDryRun => Verdict::Pass,
    }
}

/// The key of a request; empty (not limited) when a header it needs is missing.
fn key(limit: &RouteLimit, parts: &Parts, client: IpAddr, route: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(32);
    for part in &limit.key {
        if !key.is_empty() {
            key.push(0);
        }
        match part {
            KeyPart::ClientIp => match client {
                IpAddr::V4(ip) => key.extend_from_slice(&ip.octets()),
                IpAddr::V6(ip) => key.extend_from_slice(&ip.octets()),
            },
            KeyPart::Route => key.extend_from_slice(route.as_bytes()),
            KeyPart::Header(name) => match parts.headers.get(name) {
                Some(value) if !value.is_empty() => key.extend_from_slice(value.as_bytes()),
                _ => return Vec::new(),
            },
        }
    }
    key
}
