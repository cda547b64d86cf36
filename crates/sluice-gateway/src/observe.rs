//! What the gateway tells about each request it answered, to whoever records
//! metrics ([`RequestObserver`]) and spans ([`SpanSink`]).

use std::time::Duration;

use crate::protect::Reason;

/// What the gateway tells an observer about each request it answered: where
/// metrics are recorded. Called once per request, after the
/// response head is known; nothing is computed for it when no observer is set.
pub trait RequestObserver: Send + Sync + 'static {
    /// One answered request.
    fn on_response(&self, record: &RequestRecord<'_>);
}

/// Where the gateway's spans go: for each answered request of a sampled trace,
/// its SERVER span and one CLIENT span per upstream attempt (Zipkin's model,
/// `localEndpoint.serviceName = sluice-gateway`). Called once per such request;
/// nothing is built for it when no sink is set or the trace is not sampled.
pub trait SpanSink: Send + Sync + 'static {
    /// The spans of one request, the SERVER span first.
    fn record(&self, spans: Vec<sluice_trace::span::Span>);
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
