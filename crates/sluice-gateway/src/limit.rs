//! `RateLimit` and `ConnLimit` resources in the gateway: nginx `limit_req` zones
//! and `limit_conn` tables (from `sluice-guard`) attached to routes, with keys built
//! from the request, and the automatic bans of keys rejected too often.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use hyper::header::HeaderName;
use hyper::http::request::Parts;
use hyper::StatusCode;
use sluice_guard::acl::AutoBan;
use sluice_guard::limit::{check_all, parse_rate, Decision, LimitReq, LimitReqSpec};
use sluice_model::RateLimitSpec;

/// Rate limits by (namespace, name).
pub(crate) type Limits = std::collections::BTreeMap<sluice_model::ResourceId, RateLimitSpec>;

/// Whether a stored spec is usable.
pub(crate) fn valid(spec: &RateLimitSpec) -> bool {
    spec.validate().is_ok() && parse_rate(&spec.rate).is_ok()
}

/// One part of a limit key.
pub(crate) enum KeyPart {
    ClientIp,
    Route,
    Service,
    Header(HeaderName),
}

/// Parses a key (`client_ip+header:x-api-key`); the spec was validated.
pub(crate) fn key_parts(key: &str) -> Vec<KeyPart> {
    key.split('+')
        .filter_map(|part| match part.strip_prefix("header:") {
            Some(name) => HeaderName::try_from(name).ok().map(KeyPart::Header),
            None if part == "route" => Some(KeyPart::Route),
            None if part == "service" => Some(KeyPart::Service),
            None => Some(KeyPart::ClientIp),
        })
        .collect()
}

/// One limit on a route.
pub(crate) struct RouteLimit {
    zone: Arc<LimitReq>,
    key: Vec<KeyPart>,
    status: StatusCode,
    ban: Option<Arc<AutoBan>>,
    name: String,
}

/// A limit's zone and automatic-ban table, with the spec they were built from.
type Zone = (RateLimitSpec, Arc<LimitReq>, Option<Arc<AutoBan>>);

/// Zones by (namespace, limit name), kept while their spec stays the same.
#[derive(Default)]
pub(crate) struct Zones {
    zones: HashMap<sluice_model::ResourceId, Zone>,
}

impl Zones {
    /// Forgets zones whose limit was removed or changed.
    pub fn retain(&mut self, specs: &Limits) {
        self.zones
            .retain(|id, (spec, _, _)| specs.get(id) == Some(spec));
    }

    /// The limits that apply to route `namespace/route`.
    pub fn for_route(&mut self, namespace: &str, route: &str, specs: &Limits) -> Vec<RouteLimit> {
        specs
            .iter()
            .filter(|(id, spec)| id.namespace == namespace && spec.route == route)
            .filter_map(|(id, spec)| {
                let rate = parse_rate(&spec.rate).ok()?;
                let (_, zone, ban) = &self.zones.entry(id.clone()).or_insert_with(|| {
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
                    let ban = spec.ban.as_ref().map(|ban| {
                        Arc::new(AutoBan::new(
                            ban.after,
                            i64::try_from(ban.within.as_millis()).unwrap_or(i64::MAX),
                            i64::try_from(ban.ban_for.as_millis()).unwrap_or(i64::MAX),
                            spec.max_keys,
                        ))
                    });
                    (
                        spec.clone(),
                        Arc::new(LimitReq::new(guard_spec, spec.max_keys)),
                        ban,
                    )
                });
                Some(RouteLimit {
                    zone: Arc::clone(zone),
                    ban: ban.clone(),
                    name: id.name.clone(),
                    key: key_parts(&spec.key),
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
    /// The key is banned automatically.
    Banned,
}

/// What a request is, for building keys.
pub(crate) struct KeySource<'a> {
    pub parts: &'a Parts,
    pub client: IpAddr,
    pub route: &'a str,
    pub service: &'a str,
}

/// Checks a request against a route's limits (nginx's rules for several limits),
/// after any automatic ban of its keys.
pub(crate) fn check(limits: &[RouteLimit], source: &KeySource<'_>, now_ms: i64) -> Verdict {
    let keys: Vec<Vec<u8>> = limits.iter().map(|limit| key(&limit.key, source)).collect();
    for (limit, key) in limits.iter().zip(&keys) {
        if limit
            .ban
            .as_ref()
            .is_some_and(|b| b.banned_until(key, now_ms).is_some())
        {
            return Verdict::Banned;
        }
    }
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
        Decision::Rejected => {
            for (limit, key) in limits.iter().zip(&keys) {
                let Some(ban) = &limit.ban else { continue };
                if !key.is_empty() && ban.rejected(key, now_ms) {
                    tracing::info!(
                        target: "sluice_gateway::rejections",
                        limit = limit.name,
                        client = %source.client,
                        route = source.route,
                        "key banned after repeated rate-limit rejections"
                    );
                }
            }
            Verdict::Reject(limits[0].status)
        }
        Decision::Delayed(delay) => Verdict::Delay(delay),
        Decision::Passed | Decision::DelayedDryRun(_) | Decision::RejectedDryRun => Verdict::Pass,
    }
}

/// The key of a request; empty (not limited) when a header it needs is missing.
pub(crate) fn key(parts_of_key: &[KeyPart], source: &KeySource<'_>) -> Vec<u8> {
    let mut key = Vec::with_capacity(32);
    for part in parts_of_key {
        if !key.is_empty() {
            key.push(0);
        }
        match part {
            KeyPart::ClientIp => match source.client {
                IpAddr::V4(ip) => key.extend_from_slice(&ip.octets()),
                IpAddr::V6(ip) => key.extend_from_slice(&ip.octets()),
            },
            KeyPart::Route => key.extend_from_slice(source.route.as_bytes()),
            KeyPart::Service => key.extend_from_slice(source.service.as_bytes()),
            KeyPart::Header(name) => match source.parts.headers.get(name) {
                Some(value) if !value.is_empty() => key.extend_from_slice(value.as_bytes()),
                _ => return Vec::new(),
            },
        }
    }
    key
}
