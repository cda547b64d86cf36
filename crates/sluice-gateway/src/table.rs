//! The route table: routes compiled for matching, ordered by precedence (see
//! [`sluice_model::RouteSpec`]), each with its targets' endpoints and balancers.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::header::{HeaderName, HeaderValue};
use hyper::http::request::Parts;
use hyper::Method;
use sluice_guard::balance::{
    hash_key, LeastRequest, PeakEwma, Ring, SmoothWeightedRoundRobin, WeightedRandom,
};
use sluice_model::{LoadBalancing, OutlierDetection, Retries, Rewrite, RouteSpec};

use crate::api_names::after_prefix;
use crate::clock::now_ms;
use crate::outlier::EndpointHealth;
use crate::retry_budget::RetryBudget;

/// An instance traffic can go to.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Instance ID.
    pub id: String,
    /// `host:port`.
    pub address: String,
    /// The same, shared: the key of the instance's upstream connections, kept by
    /// their response bodies (built once per snapshot, cloned per request).
    pub pool_key: Arc<str>,
    /// Weight (0–1000).
    pub weight: u32,
    /// Its failure state, shared by every route and snapshot that sends to it.
    pub health: Arc<EndpointHealth>,
}

enum HostMatch {
    Any,
    Exact(String),
    /// `*.example.com` stored as `.example.com`.
    Suffix(String),
}

enum PathMatch {
    Any,
    Exact(String),
    Prefix(String),
    Regex(regex::Regex),
}

/// How a target picks an endpoint.
pub(crate) enum Balancer {
    RoundRobin(SmoothWeightedRoundRobin),
    Random(WeightedRandom),
    LeastRequest(LeastRequest),
    PeakEwma(PeakEwma),
    Hash(Ring, HashSource),
}

pub(crate) enum HashSource {
    Header(HeaderName),
    Cookie(String),
    ClientIp,
}

/// One service a route sends to, with its current endpoints.
pub(crate) struct Target {
    pub namespace: String,
    pub service: String,
    /// `namespace/service` and the service, shared (the gateway's spans name them).
    pub span_names: Arc<(Arc<str>, Arc<str>)>,
    pub endpoints: Vec<Endpoint>,
    pub balancer: Balancer,
    /// The service's concurrency limit and breakers (filled in after compiling).
    pub guards: crate::protect::ServiceGuards,
}

impl Target {
    fn new(
        namespace: String,
        service: String,
        endpoints: Vec<Endpoint>,
        lb: &LoadBalancing,
    ) -> Self {
        let weights: Vec<u32> = endpoints.iter().map(|e| e.weight).collect();
        let balancer = match lb {
            LoadBalancing::RoundRobin => {
                Balancer::RoundRobin(SmoothWeightedRoundRobin::new(&weights))
            }
            LoadBalancing::Random => Balancer::Random(WeightedRandom::new(&weights)),
            LoadBalancing::LeastRequest => {
                Balancer::LeastRequest(LeastRequest::new(endpoints.len()))
            }
            LoadBalancing::PeakEwma => Balancer::PeakEwma(PeakEwma::new(
                endpoints.len(),
                Duration::from_millis(10),
                Duration::from_secs(10),
            )),
            LoadBalancing::HashHeader(_)
            | LoadBalancing::HashCookie(_)
            | LoadBalancing::HashClientIp => {
                let ring_input: Vec<(&str, u32)> = endpoints
                    .iter()
                    .map(|e| (e.address.as_str(), e.weight))
                    .collect();
                let source = match lb {
                    LoadBalancing::HashHeader(name) => HeaderName::try_from(name.as_str())
                        .map_or(HashSource::ClientIp, HashSource::Header),
                    LoadBalancing::HashCookie(name) => HashSource::Cookie(name.clone()),
                    _ => HashSource::ClientIp,
                };
                Balancer::Hash(Ring::new(&ring_input), source)
            }
        };
        Target {
            span_names: Arc::new((
                format!("{namespace}/{service}").into(),
                service.as_str().into(),
            )),
            namespace,
            service,
            endpoints,
            balancer,
            guards: crate::protect::ServiceGuards::default(),
        }
    }

    /// Picks an endpoint for this request, avoiding ejected ones and those in `tried`
    /// while others remain (when none does, the balancer's own pick stands).
    /// `now` is the request's time on [`now_ms`]'s clock.
    pub fn pick(
        &self,
        parts: &Parts,
        client_ip: IpAddr,
        tried: &[usize],
        now: u64,
    ) -> Option<usize> {
        // Weight-0 endpoints stay in the list (for hashing stability) but take no traffic.
        if self.endpoints.iter().all(|e| e.weight == 0) {
            return None;
        }
        let mut first = None;
        for _ in 0..self.endpoints.len().clamp(1, 8) {
            let index = self.pick_once(parts, client_ip)?;
            first.get_or_insert(index);
            if !tried.contains(&index) && !self.endpoints[index].health.is_ejected(now) {
                return Some(index);
            }
        }
        // The balancer kept landing on excluded endpoints: take any other live one.
        (0..self.endpoints.len())
            .find(|i| {
                !tried.contains(i)
                    && self.endpoints[*i].weight > 0
                    && !self.endpoints[*i].health.is_ejected(now)
            })
            .or(first)
    }

    /// Whether one more endpoint may be ejected (at most `max_ejection_percent`).
    pub fn may_eject(&self, policy: &OutlierDetection) -> bool {
        let now = now_ms();
        let ejected = self
            .endpoints
            .iter()
            .filter(|e| e.health.is_ejected(now))
            .count();
        (ejected + 1) * 100 <= self.endpoints.len() * policy.max_ejection_percent as usize
    }

    fn pick_once(&self, parts: &Parts, client_ip: IpAddr) -> Option<usize> {
        match &self.balancer {
            Balancer::RoundRobin(b) => b.pick(),
            Balancer::Random(b) => b.pick(),
            Balancer::LeastRequest(b) => b.pick(),
            Balancer::PeakEwma(b) => b.pick(),
            Balancer::Hash(ring, source) => {
                let key_hash = match source {
                    HashSource::Header(name) => {
                        parts.headers.get(name).map(|v| hash_key(v.as_bytes()))
                    }
                    HashSource::Cookie(name) => cookie(parts, name).map(|v| hash_key(v.as_bytes())),
                    HashSource::ClientIp => None,
                };
                let key_hash =
                    key_hash.unwrap_or_else(|| hash_key(client_ip.to_string().as_bytes()));
                ring.pick(key_hash)
            }
        }
    }
}

fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get_all(hyper::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// Header names and values from a validated spec (unusable pairs are skipped).
fn header_pairs<'a>(
    pairs: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Vec<(HeaderName, HeaderValue)> {
    pairs
        .into_iter()
        .filter_map(|(k, v)| {
            Some((
                HeaderName::try_from(k.as_str()).ok()?,
                HeaderValue::try_from(v.as_str()).ok()?,
            ))
        })
        .collect()
}

/// A fallback's static answer.
pub(crate) struct StaticAnswer {
    pub status: hyper::StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: bytes::Bytes,
}

impl StaticAnswer {
    fn new(spec: &sluice_model::Fallback) -> Self {
        StaticAnswer {
            status: hyper::StatusCode::from_u16(spec.status).unwrap_or(hyper::StatusCode::OK),
            headers: header_pairs(&spec.headers),
            body: bytes::Bytes::from(spec.body.clone()),
        }
    }
}

/// A route ready for matching.
pub(crate) struct CompiledRoute {
    pub namespace: String,
    pub name: String,
    host: HostMatch,
    path: PathMatch,
    methods: Vec<Method>,
    headers: Vec<(HeaderName, HeaderValue)>,
    query: Vec<(String, String)>,
    pub targets: Vec<Target>,
    target_picker: WeightedRandom,
    pub rewrite: Option<Rewrite>,
    pub add_headers: Vec<(HeaderName, HeaderValue)>,
    pub remove_headers: Vec<HeaderName>,
    pub request_timeout: Duration,
    pub retries: Retries,
    pub retry_budget: RetryBudget,
    pub outlier: OutlierDetection,
    pub max_body_bytes: Option<u64>,
    /// Access lists, bans, rate, connection and concurrency limits (filled in after compiling).
    pub guards: crate::protect::RouteGuards,
    /// Shed order under a concurrency limit.
    pub priority: sluice_model::Priority,
    /// The static answer when the upstream cannot answer.
    pub fallback: Option<StaticAnswer>,
    /// The service to send to when the upstream cannot answer.
    pub fallback_target: Option<Target>,
    /// How long a new upstream connection may take.
    pub connect_timeout: std::time::Duration,
    /// Names the API each request calls (kept across snapshots; see `api_names`).
    pub apis: Arc<crate::api_names::ApiNamer>,
    /// `namespace/name`, shared (the gateway's spans name it).
    pub span_name: Arc<str>,
    /// Which requests without a sampling decision start a sampled trace.
    pub head_sampling: crate::head_sampling::HeadSampling,
    /// Precedence: lower sorts first.
    rank: (u8, u8, std::cmp::Reverse<usize>, std::cmp::Reverse<usize>),
}

impl CompiledRoute {
    /// Compiles a validated route; `endpoints` gives a service's current endpoints.
    pub fn compile(
        namespace: &str,
        name: &str,
        spec: &RouteSpec,
        endpoints: &mut dyn FnMut(&str, &str) -> Vec<Endpoint>,
        apis: Arc<crate::api_names::ApiNamer>,
    ) -> Option<Self> {
        let m = &spec.matcher;
        let host = match &m.host {
            None => HostMatch::Any,
            Some(host) => match host.strip_prefix('*') {
                Some(suffix) => HostMatch::Suffix(suffix.to_ascii_lowercase()),
                None => HostMatch::Exact(host.to_ascii_lowercase()),
            },
        };
        let path = if let Some(path) = &m.path {
            PathMatch::Exact(path.clone())
        } else if let Some(prefix) = &m.path_prefix {
            PathMatch::Prefix(prefix.clone())
        } else if let Some(pattern) = &m.path_regex {
            PathMatch::Regex(
                regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
                    .size_limit(1 << 20)
                    .build()
                    .ok()?,
            )
        } else {
            PathMatch::Any
        };
        let headers = header_pairs(&m.headers);
        let methods = m
            .methods
            .iter()
            .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
            .collect::<Vec<_>>();
        let query: Vec<(String, String)> = m
            .query
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let host_rank = match host {
            HostMatch::Exact(_) => 0,
            HostMatch::Suffix(_) => 1,
            HostMatch::Any => 2,
        };
        let (path_rank, prefix_len) = match &path {
            PathMatch::Exact(_) => (0, 0),
            PathMatch::Prefix(prefix) => (1, prefix.len()),
            PathMatch::Regex(_) => (2, 0),
            PathMatch::Any => (3, 0),
        };
        let conditions = methods.len().min(1) + m.headers.len() + query.len();
        let targets: Vec<Target> = spec
            .targets(namespace)
            .into_iter()
            .map(|(ns, svc, _)| {
                let list = endpoints(&ns, &svc);
                Target::new(ns, svc, list, &spec.lb)
            })
            .collect();
        let weights: Vec<u32> = spec.targets(namespace).iter().map(|t| t.2).collect();
        let fallback_target =
            spec.fallback
                .as_ref()
                .and_then(|f| f.service.as_ref())
                .map(|service| {
                    let list = endpoints(namespace, service);
                    Target::new(namespace.to_owned(), service.clone(), list, &spec.lb)
                });
        let fallback = spec
            .fallback
            .as_ref()
            .filter(|f| f.service.is_none())
            .map(StaticAnswer::new);
        let rewrite = spec.rewrite.clone();
        let add_headers = header_pairs(rewrite.iter().flat_map(|r| r.add_headers.iter()));
        let remove_headers = rewrite
            .iter()
            .flat_map(|r| r.remove_headers.iter())
            .filter_map(|k| HeaderName::try_from(k.as_str()).ok())
            .collect();
        Some(CompiledRoute {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            host,
            path,
            methods,
            headers,
            query,
            targets,
            target_picker: WeightedRandom::new(&weights),
            rewrite,
            add_headers,
            remove_headers,
            request_timeout: spec.timeouts.request,
            retries: spec.retries.clone(),
            retry_budget: RetryBudget::new(&spec.retries),
            outlier: spec.outlier.clone(),
            max_body_bytes: spec.max_body_bytes,
            guards: crate::protect::RouteGuards::default(),
            priority: spec.priority,
            fallback,
            fallback_target,
            connect_timeout: spec.timeouts.connect,
            apis,
            span_name: format!("{namespace}/{name}").into(),
            head_sampling: crate::head_sampling::HeadSampling::new(&spec.tracing),
            rank: (
                host_rank,
                path_rank,
                std::cmp::Reverse(prefix_len),
                std::cmp::Reverse(conditions),
            ),
        })
    }

    fn matches(&self, parts: &Parts, host: &str) -> bool {
        let host_ok = match &self.host {
            HostMatch::Any => true,
            HostMatch::Exact(exact) => host.eq_ignore_ascii_case(exact),
            HostMatch::Suffix(suffix) => {
                host.len() > suffix.len()
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
        };
        if !host_ok {
            return false;
        }
        let path = parts.uri.path();
        let path_ok = match &self.path {
            PathMatch::Any => true,
            PathMatch::Exact(exact) => path == exact,
            PathMatch::Prefix(prefix) => path.starts_with(prefix.as_str()),
            PathMatch::Regex(regex) => regex.is_match(path),
        };
        if !path_ok || (!self.methods.is_empty() && !self.methods.contains(&parts.method)) {
            return false;
        }
        if !self
            .headers
            .iter()
            .all(|(name, value)| parts.headers.get_all(name).iter().any(|v| v == value))
        {
            return false;
        }
        if !self.query.is_empty() {
            let query = parts.uri.query().unwrap_or("");
            let pairs: Vec<(&str, &str)> = query
                .split('&')
                .filter_map(|p| p.split_once('=').or(Some((p, ""))))
                .collect();
            if !self
                .query
                .iter()
                .all(|(k, v)| pairs.iter().any(|(pk, pv)| pk == k && pv == v))
            {
                return false;
            }
        }
        true
    }

    /// Chooses the target service (by the route's weights).
    pub fn pick_target(&self) -> Option<(usize, &Target)> {
        let index = if self.targets.len() == 1 {
            0
        } else {
            self.target_picker.pick()?
        };
        self.targets.get(index).map(|target| (index, target))
    }

    /// What decides how `spec`'s requests are named: a route's namer is kept while
    /// these are unchanged.
    pub fn naming_settings(spec: &RouteSpec) -> crate::api_names::NamingSettings {
        let strips = spec.rewrite.as_ref().is_some_and(|r| r.strip_prefix);
        crate::api_names::NamingSettings {
            apis: spec.apis.clone(),
            max_apis: spec.max_apis,
            strip_prefix: spec.matcher.path_prefix.clone().filter(|_| strips),
        }
    }

    /// The path the upstream gets.
    pub fn upstream_path<'a>(&self, path: &'a str) -> std::borrow::Cow<'a, str> {
        let Some(rewrite) = &self.rewrite else {
            return std::borrow::Cow::Borrowed(path);
        };
        if let Some(replacement) = &rewrite.replace_path {
            return std::borrow::Cow::Owned(replacement.clone());
        }
        if rewrite.strip_prefix {
            if let PathMatch::Prefix(prefix) = &self.path {
                let rest = after_prefix(path, prefix);
                return std::borrow::Cow::Owned(if rest.starts_with('/') {
                    rest.to_owned()
                } else {
                    format!("/{rest}")
                });
            }
        }
        std::borrow::Cow::Borrowed(path)
    }
}

/// Every route, in precedence order.
#[derive(Default)]
pub(crate) struct RouteTable {
    routes: Vec<CompiledRoute>,
}

impl RouteTable {
    /// Orders compiled routes by precedence.
    pub fn new(mut routes: Vec<CompiledRoute>) -> Self {
        routes.sort_by(|a, b| {
            a.rank
                .cmp(&b.rank)
                .then_with(|| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)))
        });
        RouteTable { routes }
    }

    /// The first route that matches.
    pub fn find(&self, parts: &Parts) -> Option<(usize, &CompiledRoute)> {
        let host = request_host(parts);
        self.routes
            .iter()
            .enumerate()
            .find(|(_, route)| route.matches(parts, host))
    }

    /// Every route, in precedence order.
    pub fn routes(&self) -> impl Iterator<Item = &CompiledRoute> {
        self.routes.iter()
    }

    /// The route at `index` (as returned by [`find`](Self::find)).
    pub fn get(&self, index: usize) -> Option<&CompiledRoute> {
        self.routes.get(index)
    }

    /// The protection state of service `namespace/service` (see [`crate::gateway::Gateway::protection`]).
    pub fn protection(&self, namespace: &str, service: &str) -> sluice_model::ProtectionStatus {
        use sluice_model::{BreakerStatus, LimiterStatus};
        let mut status = sluice_model::ProtectionStatus::default();
        let mut limiters_seen = Vec::new();
        let mut breakers_seen = Vec::new();
        let now_ms = i64::try_from(crate::clock::now_ms()).unwrap_or(i64::MAX);
        let mut limiter =
            |scope: String, guard: &std::sync::Arc<crate::protect::ConcurrencyGuard>| {
                if limiters_seen
                    .iter()
                    .any(|seen| std::sync::Arc::ptr_eq(seen, guard))
                {
                    return None;
                }
                limiters_seen.push(std::sync::Arc::clone(guard));
                let state = guard.limiter.state();
                Some(LimiterStatus {
                    scope,
                    limit: state.max_concurrency,
                    inflight: state.inflight,
                    min_latency_ms: (state.min_latency_us >= 0)
                        .then(|| state.min_latency_us as f64 / 1000.0),
                })
            };
        for route in &self.routes {
            let targets: Vec<&Target> = route
                .targets
                .iter()
                .chain(route.fallback_target.as_ref())
                .filter(|t| t.namespace == namespace && t.service == service)
                .collect();
            if targets.is_empty() {
                continue;
            }
            if route.namespace == namespace {
                status.routes.push(route.name.clone());
            }
            if let Some(guard) = &route.guards.concurrency {
                status
                    .limiters
                    .extend(limiter(format!("route {}", route.name), guard));
            }
            for target in targets {
                if let Some(guard) = &target.guards.concurrency {
                    status.limiters.extend(limiter("service".to_owned(), guard));
                }
                let service_breaker = target.guards.breaker.iter().map(|b| (None, b));
                let instance_breakers = target
                    .guards
                    .instance_breakers
                    .iter()
                    .zip(&target.endpoints)
                    .map(|(b, e)| (Some(e.address.clone()), b));
                for (instance, breaker) in service_breaker.chain(instance_breakers) {
                    if breakers_seen
                        .iter()
                        .any(|seen| std::sync::Arc::ptr_eq(seen, breaker))
                    {
                        continue;
                    }
                    breakers_seen.push(std::sync::Arc::clone(breaker));
                    let counts = breaker.health(now_ms);
                    status.breakers.push(BreakerStatus {
                        instance,
                        state: match breaker.state(now_ms) {
                            sluice_guard::breaker::BreakerState::Closed => "closed",
                            sluice_guard::breaker::BreakerState::Open => "open",
                            sluice_guard::breaker::BreakerState::HalfOpen => "half_open",
                        }
                        .to_owned(),
                        calls: u64::from(counts.total),
                        errors: u64::from(counts.errors),
                    });
                }
            }
        }
        status.routes.sort();
        status.routes.dedup();
        status
    }
}

/// The request's host without port: from the URI authority (HTTP/2) or the Host header.
pub(crate) fn request_host(parts: &Parts) -> &str {
    let raw = parts
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| {
            parts
                .headers
                .get(hyper::header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .unwrap_or("");
    if raw.starts_with('[') {
        return raw.find(']').map_or(raw, |end| &raw[..=end]);
    }
    raw.split(':').next().unwrap_or(raw)
}

/// A compiled route from its JSON spec, without endpoints (for stage tests).
#[cfg(test)]
pub(crate) fn test_route(name: &str, json: &str) -> CompiledRoute {
    let spec: RouteSpec = serde_json::from_str(json).expect("a route spec");
    spec.validate().expect("a valid route spec");
    let mut endpoints = |_: &str, _: &str| Vec::new();
    CompiledRoute::compile(
        "default",
        name,
        &spec,
        &mut endpoints,
        Arc::new(crate::api_names::ApiNamer::new(
            name.to_owned(),
            CompiledRoute::naming_settings(&spec),
        )),
    )
    .expect("the route compiles")
}

/// A round-robin target of service `default/s` with instances at `ids`
/// (addresses 127.0.0.1:1, :2, ...) and, when given, a `Breaker` spec (for stage tests).
#[cfg(test)]
pub(crate) fn test_target(ids: &[&str], breaker: Option<&str>) -> Target {
    let endpoints: Vec<Endpoint> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| Endpoint {
            id: (*id).to_owned(),
            address: format!("127.0.0.1:{}", i + 1),
            pool_key: format!("127.0.0.1:{}", i + 1).into(),
            weight: 100,
            health: Arc::default(),
        })
        .collect();
    let addresses: Vec<String> = endpoints.iter().map(|e| e.address.clone()).collect();
    let mut target = Target::new(
        "default".to_owned(),
        "s".to_owned(),
        endpoints,
        &LoadBalancing::RoundRobin,
    );
    let mut state = crate::protect::GuardState::default();
    let mut policies = crate::protect::Policies::new();
    if let Some(json) = breaker {
        policies.entry("Breaker".to_owned()).or_default().insert(
            sluice_model::ResourceId::new("default", "b"),
            serde_json::from_str(json).expect("a breaker spec"),
        );
    }
    state.update(&policies);
    let addresses: Vec<&str> = addresses.iter().map(String::as_str).collect();
    target.guards = state.service("default", "s", &addresses);
    target
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, json: &str) -> CompiledRoute {
        test_route(name, json)
    }

    fn parts(host: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> Parts {
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", host);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[tokio::test]
    async fn precedence_is_host_then_path_then_conditions_then_name() {
        let table = RouteTable::new(vec![
            route("any", r#"{"match": {}, "service": "s"}"#),
            route(
                "prefix",
                r#"{"match": {"path_prefix": "/api"}, "service": "s"}"#,
            ),
            route(
                "longer",
                r#"{"match": {"path_prefix": "/api/v2"}, "service": "s"}"#,
            ),
            route(
                "regex",
                r#"{"match": {"path_regex": "/api/v[0-9]+/users"}, "service": "s"}"#,
            ),
            route(
                "exact",
                r#"{"match": {"path": "/api/v2/users"}, "service": "s"}"#,
            ),
            route(
                "wild",
                r#"{"match": {"host": "*.example.com"}, "service": "s"}"#,
            ),
            route(
                "host",
                r#"{"match": {"host": "api.example.com"}, "service": "s"}"#,
            ),
            route(
                "header",
                r#"{"match": {"path_prefix": "/api", "headers": {"x-lane": "alice"}}, "service": "s"}"#,
            ),
            route(
                "query",
                r#"{"match": {"path": "/q", "query": {"debug": "1"}, "methods": ["GET"]}, "service": "s"}"#,
            ),
        ]);
        let name = |p: Parts| table.find(&p).map(|(_, r)| r.name.clone());
        assert_eq!(
            name(parts("api.example.com", "GET", "/api/v2/users", &[])).as_deref(),
            Some("host")
        );
        assert_eq!(
            name(parts("www.example.com", "GET", "/api", &[])).as_deref(),
            Some("wild")
        );
        assert_eq!(
            name(parts("other", "GET", "/api/v2/users", &[])).as_deref(),
            Some("exact")
        );
        assert_eq!(
            name(parts("other", "GET", "/api/v2/x", &[])).as_deref(),
            Some("longer")
        );
        assert_eq!(
            name(parts(
                "other",
                "GET",
                "/api/v3/users",
                &[("x-lane", "alice")]
            ))
            .as_deref(),
            Some("header")
        );
        assert_eq!(
            name(parts("other", "GET", "/api/v3/users", &[])).as_deref(),
            Some("prefix")
        );
        assert_eq!(
            name(parts("other", "GET", "/q?debug=1", &[])).as_deref(),
            Some("query")
        );
        assert_eq!(
            name(parts("other", "POST", "/q?debug=1", &[])).as_deref(),
            Some("any")
        );
        assert_eq!(
            name(parts("other", "GET", "/q?debug=0", &[])).as_deref(),
            Some("any")
        );
    }

    #[tokio::test]
    async fn rewrites_strip_or_replace_the_path() {
        let strip = route(
            "s",
            r#"{"match": {"path_prefix": "/api"}, "service": "s", "rewrite": {"strip_prefix": true}}"#,
        );
        assert_eq!(strip.upstream_path("/api/users"), "/users");
        assert_eq!(strip.upstream_path("/api"), "/");
        assert_eq!(strip.upstream_path("/apiary"), "/ary");
        let replace = route(
            "r",
            r#"{"match": {"path": "/old"}, "service": "s", "rewrite": {"replace_path": "/new"}}"#,
        );
        assert_eq!(replace.upstream_path("/old"), "/new");
    }
}
