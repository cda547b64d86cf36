//! The gateway's protection filters, compiled from resources: access lists, bans,
//! rate and connection limits per route; adaptive concurrency limits per route or
//! service; circuit breakers per service or instance; priorities and fallbacks.
//!
//! Protection resources arrive as raw specs by kind ([`Policies`]); [`GuardState`]
//! turns them into the objects requests consult, keeping each object (its buckets,
//! counts and learned limits) across snapshots while its spec stays the same.
//! Every rejection is counted by [`Reason`].

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use hyper::header::{HeaderName, HeaderValue};
use hyper::http::request::Parts;
use hyper::StatusCode;
use sluice_guard::acl::{AccessList, Cidr};
use sluice_guard::adaptive::{
    Adaptive, AutoLimiter, AutoSettings, GradientLimiter, GradientSettings,
};
use sluice_guard::breaker::{BreakerSettings, CircuitBreaker};
use sluice_guard::limit::{ConnPermit, LimitConn};
use sluice_model::{
    AclSpec, BanSpec, BreakerSpec, ConcurrencyAlgorithm, ConcurrencySpec, ConnLimitSpec, Priority,
    ResourceId,
};

use crate::limit::{key, key_parts, KeyPart, KeySource, Limits, RouteLimit, Zones};

/// The protection resource kinds a gateway follows.
pub const POLICY_KINDS: [&str; 6] = [
    "RateLimit",
    "ConnLimit",
    "Acl",
    "Ban",
    "Concurrency",
    "Breaker",
];

/// Protection resources as stored: kind → (namespace, name) → spec.
pub type Policies = BTreeMap<String, BTreeMap<ResourceId, serde_json::Value>>;

type Id = ResourceId;

/// Why the gateway refused (or gave up on) a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A rate limit (`RateLimit`).
    Rate,
    /// A connection limit (`ConnLimit`).
    Conn,
    /// An access list (`Acl`).
    Acl,
    /// A ban (`Ban`, or an automatic ban).
    Ban,
    /// An adaptive concurrency limit (`Concurrency`).
    Concurrency,
    /// An open circuit breaker (`Breaker`).
    Breaker,
    /// The upstream did not answer in time.
    Timeout,
}

impl Reason {
    /// Every reason, in counter order.
    pub const ALL: [Reason; 7] = [
        Reason::Rate,
        Reason::Conn,
        Reason::Acl,
        Reason::Ban,
        Reason::Concurrency,
        Reason::Breaker,
        Reason::Timeout,
    ];

    /// The reason's name, as in the `x-sluice-rejected` header.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Rate => "rate",
            Reason::Conn => "conn",
            Reason::Acl => "acl",
            Reason::Ban => "ban",
            Reason::Concurrency => "concurrency",
            Reason::Breaker => "breaker",
            Reason::Timeout => "timeout",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Rejection counters by reason.
#[derive(Debug, Default)]
pub(crate) struct Rejections {
    counts: [AtomicU64; 7],
}

impl Rejections {
    pub fn add(&self, reason: Reason) {
        self.counts[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> BTreeMap<&'static str, u64> {
        Reason::ALL
            .iter()
            .map(|r| (r.as_str(), self.counts[r.index()].load(Ordering::Relaxed)))
            .collect()
    }
}

/// Specs by kind, typed and validated (invalid ones are skipped with a warning).
#[derive(Default)]
struct Typed {
    rate: Limits,
    conn: BTreeMap<Id, ConnLimitSpec>,
    acl: BTreeMap<Id, (AclSpec, AccessList)>,
    ban: BTreeMap<Id, (BanSpec, Option<i64>)>,
    concurrency: BTreeMap<Id, ConcurrencySpec>,
    breaker: BTreeMap<Id, BreakerSpec>,
}

fn typed<T: serde::de::DeserializeOwned>(
    policies: &Policies,
    kind: &str,
    check: impl Fn(&T) -> bool,
) -> BTreeMap<Id, T> {
    policies
        .get(kind)
        .into_iter()
        .flatten()
        .filter_map(|(id, value)| {
            let spec = serde_json::from_value::<T>(value.clone())
                .ok()
                .filter(&check);
            if spec.is_none() {
                tracing::warn!(
                    kind,
                    namespace = id.namespace,
                    name = id.name,
                    "ignoring an invalid resource"
                );
            }
            Some((id.clone(), spec?))
        })
        .collect()
}

impl Typed {
    fn parse(policies: &Policies) -> Self {
        let acl = typed(policies, "Acl", |s: &AclSpec| s.validate().is_ok())
            .into_iter()
            .filter_map(|(id, spec)| {
                let list = AccessList::parse(&spec.allow, &spec.deny).ok()?;
                Some((id, (spec, list)))
            })
            .collect();
        let ban = typed(policies, "Ban", |s: &BanSpec| s.validate().is_ok())
            .into_iter()
            .filter_map(|(id, spec)| {
                let expires = spec.validate().ok()?;
                if let Some(ip) = &spec.ip {
                    Cidr::parse(ip).ok()?;
                }
                Some((id, (spec, expires)))
            })
            .collect();
        Typed {
            rate: typed(policies, "RateLimit", crate::limit::valid),
            conn: typed(policies, "ConnLimit", |s: &ConnLimitSpec| {
                s.validate().is_ok()
            }),
            acl,
            ban,
            concurrency: typed(policies, "Concurrency", |s: &ConcurrencySpec| {
                s.validate().is_ok()
            }),
            breaker: typed(policies, "Breaker", |s: &BreakerSpec| s.validate().is_ok()),
        }
    }
}

/// An adaptive concurrency limit, the status of its rejections, and the requests
/// in flight by priority (low, normal, high).
pub(crate) struct ConcurrencyGuard {
    pub limiter: Adaptive,
    pub status: StatusCode,
    by_priority: [AtomicI64; 3],
}

impl ConcurrencyGuard {
    fn new(limiter: Adaptive, status: StatusCode) -> Self {
        ConcurrencyGuard {
            limiter,
            status,
            by_priority: std::array::from_fn(|_| AtomicI64::new(0)),
        }
    }

    /// Admits a request of `priority`: below the limit always; at the limit while
    /// its priority holds less than its guaranteed share (see [`Priority`]).
    pub fn acquire(&self, priority: Priority) -> bool {
        let own = &self.by_priority[priority as usize];
        if self.limiter.try_acquire(1.0) {
            own.fetch_add(1, Ordering::AcqRel);
            return true;
        }
        let guaranteed = (self.limiter.limit() as f64 * priority.guaranteed_share()) as i64;
        if own.fetch_add(1, Ordering::AcqRel) < guaranteed {
            self.limiter.force_acquire();
            true
        } else {
            own.fetch_sub(1, Ordering::AcqRel);
            false
        }
    }

    /// Ends an admitted request with a latency sample.
    pub fn release(&self, priority: Priority, ok: bool, latency_us: i64, now_us: i64) {
        self.by_priority[priority as usize].fetch_sub(1, Ordering::AcqRel);
        self.limiter.on_response(ok, latency_us, now_us);
    }

    /// Ends an admitted request without a sample.
    pub fn cancel(&self, priority: Priority) {
        self.by_priority[priority as usize].fetch_sub(1, Ordering::AcqRel);
        self.limiter.cancel();
    }
}

/// A connection limit on a route.
pub(crate) struct RouteConn {
    table: Arc<LimitConn>,
    key: Vec<KeyPart>,
    status: StatusCode,
}

/// A ban that applies to a route.
enum Ban {
    Ip(Cidr, i64),
    Header(HeaderName, HeaderValue, i64),
}

/// Everything a route's requests are checked against before going upstream.
#[derive(Default)]
pub(crate) struct RouteGuards {
    acls: Vec<(AccessList, StatusCode)>,
    bans: Vec<Ban>,
    pub limits: Vec<RouteLimit>,
    conns: Vec<RouteConn>,
    pub concurrency: Option<Arc<ConcurrencyGuard>>,
}

impl RouteGuards {
    /// Refuses a client that an access list or a ban keeps out.
    pub fn refuse_client(
        &self,
        parts: &Parts,
        client: IpAddr,
        now_ms: i64,
    ) -> Option<(Reason, StatusCode)> {
        for (list, status) in &self.acls {
            if !list.permits(client) {
                return Some((Reason::Acl, *status));
            }
        }
        for ban in &self.bans {
            let banned = match ban {
                Ban::Ip(cidr, until) => *until > now_ms && cidr.contains(client),
                Ban::Header(name, value, until) => {
                    *until > now_ms && parts.headers.get(name) == Some(value)
                }
            };
            if banned {
                return Some((Reason::Ban, StatusCode::FORBIDDEN));
            }
        }
        None
    }

    /// Takes a place in every connection limit, or says which refused.
    pub fn acquire_conns(&self, source: &KeySource<'_>) -> Result<Vec<ConnPermit>, StatusCode> {
        let mut permits = Vec::with_capacity(self.conns.len());
        for conn in &self.conns {
            let key = key(&conn.key, source);
            if key.is_empty() {
                continue;
            }
            match conn.table.acquire(&key) {
                Some(permit) => permits.push(permit),
                None => return Err(conn.status),
            }
        }
        Ok(permits)
    }

    /// Whether the route has access lists or bans.
    pub fn has_access_rules(&self) -> bool {
        !self.acls.is_empty() || !self.bans.is_empty()
    }

    /// Whether the route has connection limits.
    pub fn has_conns(&self) -> bool {
        !self.conns.is_empty()
    }
}

/// Breakers of a service: one for the service, or one per instance.
#[derive(Default, Clone)]
pub(crate) struct ServiceGuards {
    pub concurrency: Option<Arc<ConcurrencyGuard>>,
    pub breaker: Option<Arc<CircuitBreaker>>,
    /// Aligned with the target's endpoints when the breaker is per instance.
    pub instance_breakers: Vec<Arc<CircuitBreaker>>,
}

fn status(code: u16, default: StatusCode) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(default)
}

fn new_limiter(spec: &ConcurrencySpec) -> Arc<ConcurrencyGuard> {
    let now = crate::clock::now_us();
    let limiter = match spec.algorithm {
        // brpc starts at 40; a service with less room than that queues in the first
        // window, which then sets an inflated no-load latency until the first
        // re-measure (25-50 s). Sluice starts at the floor and grows 30 % a window.
        ConcurrencyAlgorithm::Auto => {
            let floor = spec
                .min_limit
                .map_or(AutoSettings::default().min_max_concurrency, i64::from);
            Adaptive::Auto(AutoLimiter::new(
                AutoSettings {
                    initial_max_concurrency: floor,
                    min_max_concurrency: floor,
                    ..AutoSettings::default()
                },
                now,
            ))
        }
        ConcurrencyAlgorithm::Gradient => {
            let defaults = GradientSettings::default();
            let floor = spec.min_limit.map_or(defaults.min_concurrency, i64::from);
            Adaptive::Gradient(GradientLimiter::new(
                GradientSettings {
                    min_concurrency: floor,
                    max_concurrency: defaults.max_concurrency.max(floor),
                    ..defaults
                },
                now,
            ))
        }
    };
    Arc::new(ConcurrencyGuard::new(
        limiter,
        status(spec.status, StatusCode::SERVICE_UNAVAILABLE),
    ))
}

fn breaker_settings(spec: &BreakerSpec) -> BreakerSettings {
    let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    BreakerSettings {
        window_ms: ms(spec.window),
        buckets: spec.buckets as usize,
        volume: spec.volume,
        error_percent: spec.error_percent,
        sleep_ms: ms(spec.sleep),
        slow_call_us: spec
            .slow_call
            .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
        slow_percent: spec.slow_percent,
        snapshot_ms: 500,
    }
}

/// The protection objects, kept across snapshots while their specs are unchanged.
#[derive(Default)]
pub(crate) struct GuardState {
    typed: Typed,
    zones: Zones,
    conns: HashMap<Id, (ConnLimitSpec, Arc<LimitConn>)>,
    limiters: HashMap<Id, (ConcurrencySpec, Arc<ConcurrencyGuard>)>,
    /// (breaker resource, instance address or "" for the service) → breaker.
    breakers: HashMap<(Id, String), (BreakerSpec, Arc<CircuitBreaker>)>,
}

impl GuardState {
    /// Takes in the current resources; drops objects whose spec changed or went away.
    pub fn update(&mut self, policies: &Policies) {
        let typed = Typed::parse(policies);
        self.zones.retain(&typed.rate);
        self.conns
            .retain(|id, (spec, _)| typed.conn.get(id) == Some(spec));
        self.limiters
            .retain(|id, (spec, _)| typed.concurrency.get(id) == Some(spec));
        self.breakers
            .retain(|(id, _), (spec, _)| typed.breaker.get(id) == Some(spec));
        self.typed = typed;
    }

    /// The guards of route `namespace/name`.
    pub fn route(&mut self, namespace: &str, name: &str) -> RouteGuards {
        let applies = |id: &Id, route: &Option<String>| {
            id.namespace == namespace && route.as_deref().is_none_or(|r| r == name)
        };
        let acls = self
            .typed
            .acl
            .iter()
            .filter(|(id, (spec, _))| applies(id, &spec.route))
            .map(|(_, (spec, list))| (list.clone(), status(spec.status, StatusCode::FORBIDDEN)))
            .collect();
        let bans = self
            .typed
            .ban
            .iter()
            .filter(|(id, (spec, _))| applies(id, &spec.route))
            .filter_map(|(_, (spec, expires))| {
                let until = expires.unwrap_or(i64::MAX);
                match (&spec.ip, &spec.header, &spec.value) {
                    (Some(ip), _, _) => Some(Ban::Ip(Cidr::parse(ip).ok()?, until)),
                    (None, Some(header), Some(value)) => Some(Ban::Header(
                        HeaderName::try_from(header.as_str()).ok()?,
                        HeaderValue::try_from(value.as_str()).ok()?,
                        until,
                    )),
                    _ => None,
                }
            })
            .collect();
        let limits = self.zones.for_route(namespace, name, &self.typed.rate);
        let conns = self
            .typed
            .conn
            .iter()
            .filter(|(id, spec)| id.namespace == namespace && spec.route == name)
            .map(|(id, spec)| {
                let table = &self
                    .conns
                    .entry(id.clone())
                    .or_insert_with(|| (spec.clone(), Arc::new(LimitConn::new(spec.max as usize))))
                    .1;
                RouteConn {
                    table: Arc::clone(table),
                    key: key_parts(&spec.key),
                    status: status(spec.status, StatusCode::SERVICE_UNAVAILABLE),
                }
            })
            .collect();
        let concurrency = self.limiter(namespace, |spec| spec.route.as_deref() == Some(name));
        RouteGuards {
            acls,
            bans,
            limits,
            conns,
            concurrency,
        }
    }

    /// The guards of service `namespace/service`, whose endpoints have `addresses`.
    pub fn service(&mut self, namespace: &str, service: &str, addresses: &[&str]) -> ServiceGuards {
        let concurrency = self.limiter(namespace, |spec| spec.service.as_deref() == Some(service));
        let Some((id, spec)) = self
            .typed
            .breaker
            .iter()
            .find(|(id, spec)| id.namespace == namespace && spec.service == service)
            .map(|(id, spec)| (id.clone(), spec.clone()))
        else {
            return ServiceGuards {
                concurrency,
                ..ServiceGuards::default()
            };
        };
        let mut breaker_for = |address: &str| {
            Arc::clone(
                &self
                    .breakers
                    .entry((id.clone(), address.to_owned()))
                    .or_insert_with(|| {
                        (
                            spec.clone(),
                            Arc::new(CircuitBreaker::new(breaker_settings(&spec))),
                        )
                    })
                    .1,
            )
        };
        if spec.per_instance {
            ServiceGuards {
                concurrency,
                breaker: None,
                instance_breakers: addresses.iter().map(|a| breaker_for(a)).collect(),
            }
        } else {
            ServiceGuards {
                concurrency,
                breaker: Some(breaker_for("")),
                instance_breakers: Vec::new(),
            }
        }
    }

    fn limiter(
        &mut self,
        namespace: &str,
        wanted: impl Fn(&ConcurrencySpec) -> bool,
    ) -> Option<Arc<ConcurrencyGuard>> {
        let (id, spec) = self
            .typed
            .concurrency
            .iter()
            .find(|(id, spec)| id.namespace == namespace && wanted(spec))?;
        Some(Arc::clone(
            &self
                .limiters
                .entry(id.clone())
                .or_insert_with(|| (spec.clone(), new_limiter(spec)))
                .1,
        ))
    }

    /// Drops breakers of instances no longer listed (called after a rebuild).
    pub fn retain_breakers(&mut self, live: &std::collections::HashSet<String>) {
        self.breakers
            .retain(|(_, address), _| address.is_empty() || live.contains(address));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(limit: i64) -> ConcurrencyGuard {
        let settings = AutoSettings {
            initial_max_concurrency: limit,
            ..AutoSettings::default()
        };
        ConcurrencyGuard::new(
            Adaptive::Auto(AutoLimiter::new(settings, 1)),
            StatusCode::SERVICE_UNAVAILABLE,
        )
    }

    #[test]
    fn a_min_limit_is_the_floor_of_either_algorithm() {
        for algorithm in ["auto", "gradient"] {
            let spec: ConcurrencySpec = serde_json::from_str(&format!(
                r#"{{"route": "r", "algorithm": "{algorithm}", "min_limit": 50}}"#
            ))
            .unwrap();
            spec.validate().unwrap();
            let limit = new_limiter(&spec);
            for _ in 0..50 {
                assert!(limit.acquire(Priority::Normal), "{algorithm}");
            }
            assert!(!limit.acquire(Priority::Normal), "{algorithm}: 50 at first");
        }
    }

    #[test]
    fn below_the_limit_every_priority_is_admitted() {
        let limit = guard(10);
        for _ in 0..10 {
            assert!(limit.acquire(Priority::Low));
        }
        assert!(!limit.acquire(Priority::Low), "low has no guaranteed share");
    }

    #[test]
    fn at_the_limit_higher_priorities_keep_their_guaranteed_share() {
        let limit = guard(10);
        for _ in 0..10 {
            assert!(limit.acquire(Priority::Low));
        }
        // Normal is guaranteed half the limit, high all of it.
        let normal = (0..20).filter(|_| limit.acquire(Priority::Normal)).count();
        assert_eq!(normal, 5);
        let high = (0..20).filter(|_| limit.acquire(Priority::High)).count();
        assert_eq!(high, 10);
        assert_eq!(limit.limiter.state().inflight, 25);
        // Places come back as requests end.
        limit.cancel(Priority::High);
        assert!(limit.acquire(Priority::High));
        limit.release(Priority::Low, true, 1_000, 10);
        assert!(!limit.acquire(Priority::Low), "still over the limit");
        for _ in 0..16 {
            limit.cancel(Priority::High);
        }
        assert!(limit.acquire(Priority::Low));
    }
}
