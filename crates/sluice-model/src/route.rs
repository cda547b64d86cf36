//! `Route` resources: which requests the gateway sends to which service, and how.
//!
//! Precedence, when several routes match a request (most specific first):
//! 1. an exact host beats a wildcard host (`*.example.com`), which beats no host;
//! 2. then an exact path beats a path prefix (longer first), which beats a regex,
//!    which beats no path condition;
//! 3. then the route with more conditions (methods, headers, query) wins;
//! 4. then the name, alphabetically.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::instance::{duration_text, InvalidField};
use crate::{validate_name, MAX_WEIGHT};

/// The spec of a `Route`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [{"required": ["service"], "properties": {"service": {"not": {"type": "null"}}}}, {"required": ["services"], "properties": {"services": {"not": {"type": "null"}}}}]))]
pub struct RouteSpec {
    /// Which requests this route takes.
    #[serde(rename = "match")]
    pub matcher: RouteMatch,
    /// The target service: `name` (in the route's namespace) or `namespace/name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::schema::ServiceRef>")]
    pub service: Option<String>,
    /// Or several services, traffic split by weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub services: Option<Vec<WeightedService>>,
    /// Changes made to the request before it goes upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<Rewrite>,
    /// Timeouts.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// How an instance is chosen.
    #[serde(default)]
    pub lb: LoadBalancing,
    /// Retries of idempotent requests that carry no body.
    #[serde(default)]
    pub retries: Retries,
    /// Passive outlier detection: instances that keep failing are ejected for a while.
    #[serde(default)]
    pub outlier: OutlierDetection,
    /// Largest request body, in bytes (default: no limit; bodies are streamed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<u64>,
    /// Shed order under a concurrency limit: `low`, `normal` (default), `high`.
    #[serde(default)]
    pub priority: crate::Priority,
    /// What to answer when the upstream cannot (breaker open, concurrency
    /// rejection, timeout, no healthy instance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<crate::Fallback>,
    /// The APIs behind this route, as path templates (`/articles/{id}`,
    /// `/static/{*path}`), matched against the path after the route's prefix
    /// handling (`strip_prefix`); requests matching none are named automatically
    /// (see [`crate::api_template`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub apis: Vec<String>,
    /// Most automatic API names this route keeps; later ones count as `{other}`.
    #[serde(default = "default_max_apis")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_apis: usize,
    /// Head sampling of the traces this route starts (requests that arrive
    /// with a sampling decision keep it).
    #[serde(default)]
    pub tracing: TraceSampling,
}

/// Which of a route's requests start a sampled trace: a share of them, and
/// at least a few per API each second so quiet APIs are never invisible. What
/// is kept of the sampled traces is decided at ingest (tail decisions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TraceSampling {
    /// The share of requests sampled, 0 to 1. Default 1.
    #[serde(default = "default_sample")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub sample: f64,
    /// Traces sampled per API per second whatever `sample` says (0 to 1000). Default 1.
    #[serde(default = "default_floor")]
    #[schemars(range(min = 0, max = 1000))]
    pub floor_per_second: u32,
}

fn default_sample() -> f64 {
    1.0
}

fn default_floor() -> u32 {
    1
}

impl Default for TraceSampling {
    fn default() -> Self {
        TraceSampling {
            sample: default_sample(),
            floor_per_second: default_floor(),
        }
    }
}

fn default_max_apis() -> usize {
    crate::api_template::DEFAULT_MAX_APIS
}

/// When and how often the gateway retries. Only requests with an idempotent method
/// (GET, HEAD, OPTIONS, PUT, DELETE, TRACE) and no body are retried — bodies are
/// streamed, never buffered — each time on another instance when there is one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retries {
    /// Retries after the first attempt (0 turns retries off; at most 5). Default 1.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// What is retried. Default `connect_failure` and `reset`.
    #[serde(default = "default_retry_on")]
    pub on: Vec<RetryOn>,
    /// Retries may add at most this share of the route's requests (default 20 %)...
    #[serde(default = "default_budget_percent")]
    pub budget_percent: f64,
    /// ...plus this many per second (default 10), so a quiet route can still retry.
    #[serde(default = "default_min_per_second")]
    pub min_per_second: u32,
}

/// Conditions that allow a retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RetryOn {
    /// The connection to the instance could not be made.
    ConnectFailure,
    /// The connection broke before a response arrived.
    Reset,
    /// The instance answered 502, 503 or 504.
    GatewayError,
    /// The instance answered any 5xx.
    #[serde(rename = "5xx")]
    ServerError,
    /// No response within the request timeout.
    Timeout,
}

fn default_attempts() -> u32 {
    1
}
fn default_retry_on() -> Vec<RetryOn> {
    vec![RetryOn::ConnectFailure, RetryOn::Reset]
}
fn default_budget_percent() -> f64 {
    20.0
}
fn default_min_per_second() -> u32 {
    10
}

impl Default for Retries {
    fn default() -> Self {
        Retries {
            attempts: default_attempts(),
            on: default_retry_on(),
            budget_percent: default_budget_percent(),
            min_per_second: default_min_per_second(),
        }
    }
}

/// Passive outlier detection (Envoy's consecutive-errors ejection).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutlierDetection {
    /// Connect failures, resets or 5xx in a row that eject an instance (0 turns ejection off). Default 5.
    #[serde(default = "default_consecutive_failures")]
    pub consecutive_failures: u32,
    /// The first ejection's length; the n-th lasts n times as long. Default 30s.
    #[schemars(with = "crate::schema::DurationText")]
    #[serde(default = "default_base_ejection", with = "duration_text")]
    pub base_ejection: Duration,
    /// At most this share of a service's instances is ejected at once (default 50 %).
    #[serde(default = "default_max_ejection_percent")]
    pub max_ejection_percent: u32,
}

fn default_consecutive_failures() -> u32 {
    5
}
fn default_base_ejection() -> Duration {
    Duration::from_secs(30)
}
fn default_max_ejection_percent() -> u32 {
    50
}

impl Default for OutlierDetection {
    fn default() -> Self {
        OutlierDetection {
            consecutive_failures: default_consecutive_failures(),
            base_ejection: default_base_ejection(),
            max_ejection_percent: default_max_ejection_percent(),
        }
    }
}

/// Conditions a request must meet; all given ones must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("not" = {"anyOf": [{"required": ["path", "path_prefix"], "properties": {"path": {"type": "string"}, "path_prefix": {"type": "string"}}}, {"required": ["path", "path_regex"], "properties": {"path": {"type": "string"}, "path_regex": {"type": "string"}}}, {"required": ["path_prefix", "path_regex"], "properties": {"path_prefix": {"type": "string"}, "path_regex": {"type": "string"}}}]}))]
pub struct RouteMatch {
    /// `api.example.com` or `*.example.com` (port ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^(\*\.)?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*$"),
        length(max = 255)
    )]
    pub host: Option<String>,
    /// The path, exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^/[^ ?#\x00-\x1f\x7f-\x9f]{0,2047}$"))]
    pub path: Option<String>,
    /// A path prefix, matched on whole segments' characters (`/echo` matches `/echo` and `/echo/x`, and `/echoes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^/[^ ?#\x00-\x1f\x7f-\x9f]{0,2047}$"))]
    pub path_prefix: Option<String>,
    /// A regular expression the whole path must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_regex: Option<String>,
    /// Methods (any when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Headers that must have these values (names case-insensitive).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Query parameters that must have these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query: BTreeMap<String, String>,
}

/// A service with a share of the route's traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WeightedService {
    /// `name` or `namespace/name`.
    #[schemars(with = "crate::schema::ServiceRef")]
    pub service: String,
    /// Relative weight, 0–1000.
    pub weight: u32,
}

/// Request rewrites.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rewrite {
    /// Remove the matched `path_prefix` from the path (what remains starts with `/`).
    #[serde(default)]
    pub strip_prefix: bool,
    /// Replace the whole path with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_path: Option<String>,
    /// Set these request headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub add_headers: BTreeMap<String, String>,
    /// Remove these request headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove_headers: Vec<String>,
}

/// Timeouts of a route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// Connecting to an instance (default 2s).
    #[schemars(with = "crate::schema::DurationText")]
    #[serde(default = "default_connect", with = "duration_text")]
    pub connect: Duration,
    /// From sending the request to the response's headers (default 30s).
    #[schemars(with = "crate::schema::DurationText")]
    #[serde(default = "default_request", with = "duration_text")]
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: default_connect(),
            request: default_request(),
        }
    }
}

fn default_connect() -> Duration {
    Duration::from_secs(2)
}
fn default_request() -> Duration {
    Duration::from_secs(30)
}

/// Load-balancing policies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum LoadBalancing {
    /// Smooth weighted round robin (the default).
    #[default]
    RoundRobin,
    /// Weighted random.
    Random,
    /// Power of two choices, fewer requests in flight.
    LeastRequest,
    /// Power of two choices, lower peak-EWMA latency × load.
    PeakEwma,
    /// Consistent hash (ketama ring) of a header's value.
    HashHeader(String),
    /// Consistent hash of a cookie's value.
    HashCookie(String),
    /// Consistent hash of the client's IP address.
    HashClientIp,
}

impl RouteSpec {
    /// Checks every field; the error names the first one at fault.
    pub fn validate(&self) -> Result<(), InvalidField> {
        let m = &self.matcher;
        if let Some(host) = &m.host {
            let bare = host.strip_prefix("*.").unwrap_or(host);
            let ok = !bare.is_empty()
                && bare.len() <= 253
                && bare.split('.').all(|l| {
                    !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                });
            if !ok {
                return Err(InvalidField::new(
                    "spec.match.host",
                    format!("{host:?} is not a host name or *.domain"),
                ));
            }
        }
        let paths = [
            m.path.is_some(),
            m.path_prefix.is_some(),
            m.path_regex.is_some(),
        ];
        if paths.iter().filter(|p| **p).count() > 1 {
            return Err(InvalidField::new(
                "spec.match",
                "give at most one of path, path_prefix and path_regex",
            ));
        }
        for (field, value) in [("path", &m.path), ("path_prefix", &m.path_prefix)] {
            if let Some(path) = value {
                validate_path(&format!("spec.match.{field}"), path)?;
            }
        }
        if let Some(pattern) = &m.path_regex {
            if pattern.len() > 1024 {
                return Err(InvalidField::new(
                    "spec.match.path_regex",
                    "over 1024 bytes",
                ));
            }
            regex::RegexBuilder::new(pattern)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| InvalidField::new("spec.match.path_regex", e.to_string()))?;
        }
        for method in &m.methods {
            if method.is_empty() || !method.chars().all(|c| c.is_ascii_uppercase()) {
                return Err(InvalidField::new(
                    "spec.match.methods",
                    format!("{method:?} is not an upper-case HTTP method"),
                ));
            }
        }
        for name in m.headers.keys().chain(
            self.rewrite
                .iter()
                .flat_map(|r| r.add_headers.keys().chain(&r.remove_headers)),
        ) {
            if !is_header_name(name) {
                return Err(InvalidField::new(
                    "spec",
                    format!("{name:?} is not a valid header name"),
                ));
            }
        }
        for value in m
            .headers
            .values()
            .chain(self.rewrite.iter().flat_map(|r| r.add_headers.values()))
        {
            if value.chars().any(|c| c.is_control()) {
                return Err(InvalidField::new(
                    "spec",
                    format!("header value {value:?} holds a control character"),
                ));
            }
        }
        match (&self.service, &self.services) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(InvalidField::new(
                    "spec.service",
                    "give either service or services",
                ));
            }
            (Some(service), None) => validate_service_ref("spec.service", service)?,
            (None, Some(services)) => {
                if services.is_empty() || services.len() > 64 {
                    return Err(InvalidField::new("spec.services", "give 1 to 64 services"));
                }
                for (i, weighted) in services.iter().enumerate() {
                    validate_service_ref(
                        &format!("spec.services[{i}].service"),
                        &weighted.service,
                    )?;
                    if weighted.weight > MAX_WEIGHT {
                        return Err(InvalidField::new(
                            format!("spec.services[{i}].weight"),
                            format!("over {MAX_WEIGHT}"),
                        ));
                    }
                }
                if services.iter().all(|s| s.weight == 0) {
                    return Err(InvalidField::new(
                        "spec.services",
                        "at least one weight must be above 0",
                    ));
                }
            }
        }
        if let Some(rewrite) = &self.rewrite {
            if rewrite.strip_prefix && m.path_prefix.is_none() {
                return Err(InvalidField::new(
                    "spec.rewrite.strip_prefix",
                    "needs match.path_prefix",
                ));
            }
            if let Some(path) = &rewrite.replace_path {
                validate_path("spec.rewrite.replace_path", path)?;
            }
        }
        let t = &self.timeouts;
        if t.connect < Duration::from_millis(10) || t.connect > Duration::from_secs(60) {
            return Err(InvalidField::new(
                "spec.timeouts.connect",
                "must be within 10ms..=60s",
            ));
        }
        if t.request < Duration::from_millis(10) || t.request > Duration::from_secs(3600) {
            return Err(InvalidField::new(
                "spec.timeouts.request",
                "must be within 10ms..=1h",
            ));
        }
        if let Some(fallback) = &self.fallback {
            fallback.validate()?;
        }
        if !(0.0..=1.0).contains(&self.tracing.sample) {
            return Err(InvalidField::new(
                "spec.tracing.sample",
                format!("{} is outside 0..=1", self.tracing.sample),
            ));
        }
        if self.tracing.floor_per_second > 1000 {
            return Err(InvalidField::new(
                "spec.tracing.floor_per_second",
                format!("{} is over 1000", self.tracing.floor_per_second),
            ));
        }
        crate::api_template::validate_api_templates(&self.apis, self.max_apis)
            .map_err(|(field, reason)| InvalidField::new(field, reason))?;
        match &self.lb {
            LoadBalancing::HashHeader(name) if !is_header_name(name) => Err(InvalidField::new(
                "spec.lb.hash_header",
                format!("{name:?} is not a valid header name"),
            )),
            LoadBalancing::HashCookie(name) if name.is_empty() || name.len() > 256 => {
                Err(InvalidField::new(
                    "spec.lb.hash_cookie",
                    "a cookie name of 1 to 256 characters",
                ))
            }
            _ => Ok(()),
        }
    }

    /// The target services as `(namespace, name, weight)`, resolving bare names in `namespace`.
    pub fn targets(&self, namespace: &str) -> Vec<(String, String, u32)> {
        let resolve = |reference: &str| match reference.split_once('/') {
            Some((ns, name)) => (ns.to_owned(), name.to_owned()),
            None => (namespace.to_owned(), reference.to_owned()),
        };
        match (&self.service, &self.services) {
            (Some(service), _) => {
                let (ns, name) = resolve(service);
                vec![(ns, name, 1)]
            }
            (None, Some(services)) => services
                .iter()
                .map(|s| {
                    let (ns, name) = resolve(&s.service);
                    (ns, name, s.weight)
                })
                .collect(),
            (None, None) => Vec::new(),
        }
    }
}

fn validate_path(field: &str, path: &str) -> Result<(), InvalidField> {
    if !path.starts_with('/')
        || path.len() > 2048
        || path
            .chars()
            .any(|c| c.is_control() || c == ' ' || c == '?' || c == '#')
    {
        return Err(InvalidField::new(
            field,
            format!("{path:?} must start with / and hold no spaces, ? or #"),
        ));
    }
    Ok(())
}

fn validate_service_ref(field: &str, reference: &str) -> Result<(), InvalidField> {
    let result = match reference.split_once('/') {
        Some((ns, name)) => {
            validate_name("namespace", ns).and_then(|()| validate_name("service", name))
        }
        None => validate_name("service", reference),
    };
    result.map_err(|e| InvalidField::new(field, e.to_string()))
}

fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Result<RouteSpec, String> {
        let spec: RouteSpec = serde_json::from_str(json).map_err(|e| e.to_string())?;
        spec.validate().map_err(|e| e.to_string())?;
        Ok(spec)
    }

    #[test]
    fn the_minimal_route_is_valid() {
        let route = spec(r#"{"match": {"path_prefix": "/echo"}, "service": "echo"}"#).unwrap();
        assert_eq!(
            route.targets("default"),
            [("default".to_owned(), "echo".to_owned(), 1)]
        );
        assert_eq!(route.lb, LoadBalancing::RoundRobin);
        assert_eq!(route.timeouts.request, Duration::from_secs(30));
    }

    #[test]
    fn invalid_routes_name_the_field() {
        for (json, field) in [
            (
                r#"{"match": {"path_prefix": "echo"}, "service": "echo"}"#,
                "spec.match.path_prefix",
            ),
            (
                r#"{"match": {"path_regex": "("}, "service": "echo"}"#,
                "spec.match.path_regex",
            ),
            (
                r#"{"match": {"path": "/a", "path_prefix": "/a"}, "service": "echo"}"#,
                "spec.match",
            ),
            (r#"{"match": {}, "service": "bad/name/x"}"#, "spec.service"),
            (r#"{"match": {}}"#, "spec.service"),
            (
                r#"{"match": {}, "services": [{"service": "a", "weight": 0}]}"#,
                "spec.services",
            ),
            (
                r#"{"match": {"host": "bad host"}, "service": "a"}"#,
                "spec.match.host",
            ),
            (
                r#"{"match": {"methods": ["get"]}, "service": "a"}"#,
                "spec.match.methods",
            ),
            (
                r#"{"match": {}, "service": "a", "rewrite": {"strip_prefix": true}}"#,
                "spec.rewrite.strip_prefix",
            ),
            (
                r#"{"match": {}, "service": "a", "timeouts": {"request": "1ms"}}"#,
                "spec.timeouts.request",
            ),
            (
                r#"{"match": {}, "service": "a", "lb": {"hash_header": "bad header"}}"#,
                "spec.lb.hash_header",
            ),
        ] {
            let error = spec(json).unwrap_err();
            assert!(error.starts_with(field), "{json}: {error}");
        }
        assert!(spec(r#"{"match": {}, "service": "a", "colour": 1}"#)
            .unwrap_err()
            .contains("colour"));
    }
}

/// The spec of a `RateLimit` resource: nginx `limit_req` on a route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSpec {
    /// The route (in the same namespace) this limit applies to.
    #[schemars(with = "crate::schema::NameText")]
    pub route: String,
    /// `Nr/s` or `Nr/m`.
    #[schemars(regex(pattern = r"^[1-9][0-9]{0,5}r/[sm]$"))]
    pub rate: String,
    /// Requests that may queue beyond the rate.
    #[serde(default)]
    pub burst: u64,
    /// Queued requests pass at once instead of being spaced out.
    #[serde(default)]
    pub nodelay: bool,
    /// The first `delay` queued requests pass at once (nginx's `delay=`); ignored with `nodelay`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<u64>,
    /// Count and report, but never reject or delay.
    #[serde(default)]
    pub dry_run: bool,
    /// What a key is made of: `client_ip`, `header:NAME`, `route`, or several joined by `+`.
    #[serde(default = "default_limit_key")]
    pub key: String,
    /// The status of a rejection (400–599; default 503).
    #[serde(default = "default_limit_status")]
    pub status: u16,
    /// Most keys tracked (least recently used ones are forgotten beyond it).
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
    /// Ban a key rejected too often (`{"after": 20, "within": "10s", "for": "5m"}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ban: Option<crate::AutoBanSpec>,
}

fn default_limit_key() -> String {
    "client_ip".to_owned()
}
fn default_limit_status() -> u16 {
    503
}
fn default_max_keys() -> usize {
    100_000
}

impl RateLimitSpec {
    /// Checks the fields other than `rate` (whose syntax the limiter checks); the
    /// error names the field.
    pub fn validate(&self) -> Result<(), InvalidField> {
        validate_name("route", &self.route)
            .map_err(|e| InvalidField::new("spec.route", e.to_string()))?;
        if !(400..=599).contains(&self.status) {
            return Err(InvalidField::new(
                "spec.status",
                format!("{} is outside 400..=599", self.status),
            ));
        }
        if self.burst > 1_000_000 || self.delay.is_some_and(|d| d > 1_000_000) {
            return Err(InvalidField::new(
                "spec.burst",
                "burst and delay must be within 0..=1000000",
            ));
        }
        if !(1..=10_000_000).contains(&self.max_keys) {
            return Err(InvalidField::new(
                "spec.max_keys",
                "must be within 1..=10000000",
            ));
        }
        crate::validate_limit_key("spec.key", &self.key)?;
        if let Some(ban) = &self.ban {
            ban.validate()?;
        }
        Ok(())
    }
}
