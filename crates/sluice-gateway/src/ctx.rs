//! The per-request context: what a request's stages share, in one place.
//!
//! A [`RequestCtx`] is built when a request arrives and handed to each stage in
//! turn (see `proxy.rs`). It holds indices into the snapshot the request started
//! with (cheap to keep, read by the observer at the end), the client's
//! [`Connection`], the request's one clock read, the connection-limit places it
//! holds, its attempts, and why the gateway refused it, if it did.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use hyper::header::HeaderValue;
use sluice_guard::limit::ConnPermit;

use crate::clock::Clock;
use crate::protect::{Reason, Rejections};
use crate::snapshot::Snapshot;
use crate::table::{CompiledRoute, Target};

/// What every request on one client connection shares, built once per connection.
pub(crate) struct Connection {
    /// The client's address.
    pub client: SocketAddr,
    /// `http` or `https`, for `X-Forwarded-Proto`.
    pub scheme: &'static str,
    /// The client's IP as a header value, for `X-Forwarded-For`.
    pub client_ip: HeaderValue,
    /// Raised when a request head on this connection carried both
    /// Content-Length and Transfer-Encoding (see `sniff`).
    pub smuggling: Arc<AtomicBool>,
}

impl Connection {
    /// The connection from `client`, over `scheme`.
    pub fn new(client: SocketAddr, scheme: &'static str, smuggling: Arc<AtomicBool>) -> Self {
        let client_ip = HeaderValue::try_from(client.ip().to_string())
            .unwrap_or(HeaderValue::from_static("unknown"));
        Connection {
            client,
            scheme,
            client_ip,
            smuggling,
        }
    }
}

pub(crate) use crate::observe::AttemptSpan;

/// One request on its way through the stages.
pub(crate) struct RequestCtx<'s> {
    pub snapshot: &'s Snapshot,
    pub conn: &'s Connection,
    pub rejections: &'s Rejections,
    /// The request's clock, read once on arrival.
    pub clock: Clock,
    /// Whether to name the API (only an observer needs it).
    pub name_api: bool,
    /// The API the request called (`GET /articles/{id}`), once a route matched.
    pub api: Option<Arc<str>>,
    /// Indices of the route, target and endpoint, as far as the request got.
    pub route: Option<usize>,
    pub target: Option<usize>,
    pub endpoint: Option<usize>,
    /// How long a rate limit delayed the request.
    pub delayed: std::time::Duration,
    /// Upstream attempts made.
    pub attempts: usize,
    /// When the last upstream attempt ended (a clock read the observer reuses).
    pub last_attempt_end: Option<std::time::Instant>,
    /// Why the gateway refused or gave up on the request.
    pub rejected: Option<Reason>,
    /// Connection-limit places, held until the response body is sent.
    pub conn_permits: Vec<ConnPermit>,
    /// The request's trace (set by the trace stage, first).
    pub trace: Option<crate::stages::trace::Trace>,
    /// Whether the request's spans are recorded (a span sink is set and the
    /// trace is sampled): then each attempt is kept in `attempt_spans`.
    pub record_spans: bool,
    /// The upstream attempts, as CLIENT spans to be.
    pub attempt_spans: Vec<AttemptSpan>,
}

impl<'s> RequestCtx<'s> {
    /// The context of a request that arrived now.
    pub fn new(
        snapshot: &'s Snapshot,
        conn: &'s Connection,
        rejections: &'s Rejections,
        name_api: bool,
    ) -> Self {
        RequestCtx {
            snapshot,
            conn,
            rejections,
            clock: Clock::now(),
            name_api,
            api: None,
            route: None,
            target: None,
            endpoint: None,
            delayed: std::time::Duration::ZERO,
            attempts: 0,
            last_attempt_end: None,
            rejected: None,
            conn_permits: Vec::new(),
            trace: None,
            record_spans: false,
            attempt_spans: Vec::new(),
        }
    }

    /// The route, target and endpoint the request reached (for the observer).
    pub fn reached(
        &self,
    ) -> (
        Option<&'s CompiledRoute>,
        Option<&'s Target>,
        Option<&'s crate::table::Endpoint>,
    ) {
        let route = self.route.and_then(|i| self.snapshot.table.get(i));
        let target = route
            .zip(self.target)
            .and_then(|(route, i)| route.targets.get(i));
        let endpoint = target
            .zip(self.endpoint)
            .and_then(|(target, i)| target.endpoints.get(i));
        (route, target, endpoint)
    }
}
