//! What the gateway tells about each request it answered, to whoever records
//! metrics ([`RequestObserver`]) and spans ([`SpanSink`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::{Method, Uri};
use sluice_trace::span::{Endpoint, Kind, Span};
use sluice_trace::{SpanId, TraceId};

use crate::protect::Reason;

/// What the gateway tells an observer about each request it answered: where
/// metrics are recorded. Called once per request, after the
/// response head is known; nothing is computed for it when no observer is set.
pub trait RequestObserver: Send + Sync + 'static {
    /// One answered request.
    fn on_response(&self, record: &RequestRecord<'_>);
}

/// The service name of the gateway's spans.
pub(crate) const SERVICE_NAME: &str = "sluice-gateway";

/// One upstream attempt, as a CLIENT span to be.
#[derive(Debug)]
pub(crate) struct AttemptSpan {
    pub span_id: SpanId,
    pub started: Instant,
    pub ended: Instant,
    /// The instance's address (shared with its pool's key).
    pub address: Arc<str>,
    /// The upstream's status, when it answered.
    pub status: Option<u16>,
    /// Why the attempt failed, when it did.
    pub error: Option<String>,
}

/// One sampled request, as its spans are made of: ids, the API's name, the
/// method and URI, the status, times, the route's and service's names and the
/// attempts — refcounts and moves, nothing formatted — for the sink to build
/// the spans from off the request path ([`RequestSpans::build`]).
pub struct RequestSpans {
    pub(crate) trace_id: TraceId,
    pub(crate) span_id: SpanId,
    pub(crate) parent_id: Option<SpanId>,
    pub(crate) debug: bool,
    pub(crate) api: Option<Arc<str>>,
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) status: u16,
    pub(crate) client: SocketAddr,
    pub(crate) arrived: Instant,
    pub(crate) answered: Instant,
    /// The route's `namespace/name`.
    pub(crate) route: Option<Arc<str>>,
    /// The target service's `namespace/service` and name.
    pub(crate) service: Option<Arc<(Arc<str>, Arc<str>)>>,
    pub(crate) rejected: Option<Reason>,
    pub(crate) fallback: Option<hyper::header::HeaderValue>,
    pub(crate) attempts: Vec<AttemptSpan>,
}

impl std::fmt::Debug for RequestSpans {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestSpans")
            .field("trace_id", &self.trace_id)
            .field("attempts", &self.attempts.len())
            .finish_non_exhaustive()
    }
}

fn endpoint(service: Option<&str>, address: Option<SocketAddr>) -> Endpoint {
    let (ipv4, ipv6) = match address.map(|a| a.ip()) {
        Some(std::net::IpAddr::V4(ip)) => (Some(ip.to_string()), None),
        Some(std::net::IpAddr::V6(ip)) => (None, Some(ip.to_string())),
        None => (None, None),
    };
    Endpoint {
        service_name: service.map(str::to_owned),
        ipv4,
        ipv6,
        port: address.map(|a| a.port()).filter(|p| *p != 0),
    }
}

fn micros(from: Instant, to: Instant) -> u64 {
    u64::try_from(to.saturating_duration_since(from).as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}

impl RequestSpans {
    /// The trace.
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// The spans: the SERVER span first, then one CLIENT span per attempt.
    pub fn build(self) -> Vec<Span> {
        let name = self
            .api
            .as_deref()
            .map_or_else(|| self.method.as_str().to_owned(), str::to_owned);
        let mut tags = BTreeMap::new();
        tags.insert("http.method".to_owned(), self.method.as_str().to_owned());
        tags.insert("http.path".to_owned(), self.uri.path().to_owned());
        tags.insert("http.status_code".to_owned(), self.status.to_string());
        if let Some(route) = &self.route {
            tags.insert("sluice.route".to_owned(), route.to_string());
        }
        if let Some(names) = &self.service {
            tags.insert("sluice.service".to_owned(), names.0.to_string());
        }
        if let Some(reason) = self.rejected {
            tags.insert("sluice.rejected".to_owned(), reason.as_str().to_owned());
        }
        if let Some(why) = self.fallback.as_ref().and_then(|f| f.to_str().ok()) {
            tags.insert("sluice.fallback".to_owned(), why.to_owned());
        }
        if self.status >= 500 {
            tags.insert("error".to_owned(), self.status.to_string());
        }
        let trace_id = self.trace_id.to_string();
        let server_id = self.span_id.to_string();
        let mut spans = Vec::with_capacity(1 + self.attempts.len());
        spans.push(Span {
            trace_id: trace_id.clone(),
            id: server_id.clone(),
            parent_id: self.parent_id.map(|p| p.to_string()),
            name: Some(name.clone()),
            kind: Some(Kind::Server),
            timestamp: Some(crate::clock::unix_us(self.arrived)),
            duration: Some(micros(self.arrived, self.answered)),
            local_endpoint: Some(endpoint(Some(SERVICE_NAME), None)),
            remote_endpoint: Some(endpoint(None, Some(self.client))),
            annotations: Vec::new(),
            tags,
            debug: self.debug,
            shared: false,
        });
        let service = self.service.as_ref().map(|names| &*names.1);
        for attempt in &self.attempts {
            let mut tags = BTreeMap::new();
            if let Some(status) = attempt.status {
                tags.insert("http.status_code".to_owned(), status.to_string());
                if status >= 500 {
                    tags.insert("error".to_owned(), status.to_string());
                }
            }
            if let Some(error) = &attempt.error {
                tags.insert("error".to_owned(), error.clone());
            }
            spans.push(Span {
                trace_id: trace_id.clone(),
                id: attempt.span_id.to_string(),
                parent_id: Some(server_id.clone()),
                name: Some(name.clone()),
                kind: Some(Kind::Client),
                timestamp: Some(crate::clock::unix_us(attempt.started)),
                duration: Some(micros(attempt.started, attempt.ended)),
                local_endpoint: Some(endpoint(Some(SERVICE_NAME), None)),
                remote_endpoint: Some(endpoint(service, attempt.address.parse().ok())),
                annotations: Vec::new(),
                tags,
                debug: self.debug,
                shared: false,
            });
        }
        spans
    }
}

/// Where the gateway's spans go: for each answered request of a sampled trace,
/// what its SERVER span and one CLIENT span per upstream attempt are made of
/// (Zipkin's model, `localEndpoint.serviceName = sluice-gateway`), to be built
/// with [`RequestSpans::build`] off the request path. Called once per such
/// request; nothing is made for it when no sink is set or the trace is not
/// sampled.
pub trait SpanSink: Send + Sync + 'static {
    /// One request's spans-to-be.
    fn record(&self, spans: RequestSpans);
}

/// One answered request, as an observer sees it.
#[derive(Debug)]
pub struct RequestRecord<'a> {
    /// The route's namespace and name (`None` when no route matched).
    pub route: Option<(&'a str, &'a str)>,
    /// The target service's namespace and name, when one was chosen.
    pub service: Option<(&'a str, &'a str)>,
    /// The instance that answered (the last one tried).
    pub instance: Option<&'a str>,
    /// The request method.
    pub method: &'a hyper::Method,
    /// The API the request called: its method and path template (`GET
    /// /articles/{id}`), from the route's `apis` or automatic normalisation;
    /// `{other}` past the route's `max_apis`; `None` when no route matched.
    pub api: Option<&'a str>,
    /// The status sent to the client.
    pub status: u16,
    /// From the request's arrival to the response head.
    pub latency: Duration,
    /// Upstream attempts made (0 when the gateway answered by itself).
    pub attempts: usize,
    /// Why the gateway refused or gave up on the request, if it did.
    pub rejected: Option<Reason>,
    /// The request's trace id, when the trace is sampled (its spans are kept,
    /// if the tail keeps them): for exemplars.
    pub trace_id: Option<u128>,
}
