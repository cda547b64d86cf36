//! The per-request path: match a route, pick an instance, forward the request with
//! proxy headers, stream the answer back. It reads the current snapshot through an
//! `ArcSwap` (no lock), allocates little, and does no I/O but the proxied request.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri, Version};

use sluice_guard::breaker::{Admission, Outcome};
use sluice_guard::limit::ConnPermit;
use sluice_model::{Priority, RetryOn};

use crate::health::unix_ms;
use crate::limit::{KeySource, Verdict};
use crate::protect::{ConcurrencyGuard, Reason, Rejections};
use crate::table::{Balancer, CompiledRoute, StaticAnswer, Target};
use crate::upstream::{UpstreamBody, UpstreamError};
use crate::{RequestRecord, Shared, Snapshot};

/// The body of every gateway response.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// Errors carried by bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers named by Connection are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
}

/// A JSON error answered by the gateway itself.
pub(crate) fn error_response(status: StatusCode, code: &str, message: &str) -> Response<ProxyBody> {
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A random 128-bit request ID as 32 hex digits, built without a heap string.
fn request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = [0u8; 32];
    let bits = (u128::from(fastrand::u64(..)) << 64) | u128::from(fastrand::u64(..));
    for (i, digit) in id.iter_mut().enumerate() {
        *digit = HEX[((bits >> (124 - 4 * i)) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&id).unwrap_or(HeaderValue::from_static("0"))
}

/// Handles one request.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
    client: SocketAddr,
    scheme: &'static str,
    smuggling: Arc<std::sync::atomic::AtomicBool>,
) -> Result<Response<ProxyBody>, Infallible> {
    if request.version() != Version::HTTP_2 && smuggling.load(std::sync::atomic::Ordering::Acquire)
    {
        // A head on this connection had both Content-Length and Transfer-Encoding.
        let mut response = error_response(
            StatusCode::BAD_REQUEST,
            "ambiguous_length",
            "a request on this connection has both Content-Length and Transfer-Encoding",
        );
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return Ok(response);
    }
    let snapshot = shared.snapshot.load_full();
    let mut observed = Observed {
        name_api: shared.observer.is_some(),
        ..Observed::default()
    };
    // Only an observer needs the start time and method.
    let watched = shared
        .observer
        .as_ref()
        .map(|observer| (observer, Instant::now(), request.method().clone()));
    let response = forward(
        &snapshot,
        request,
        client,
        scheme,
        &mut observed,
        &shared.rejections,
    )
    .await?;
    let Some((observer, started, method)) = watched else {
        return Ok(response);
    };
    let route = observed.route.and_then(|i| snapshot.table.get(i));
    let target = route
        .zip(observed.target)
        .and_then(|(route, i)| route.targets.get(i));
    let endpoint = target
        .zip(observed.endpoint)
        .and_then(|(target, i)| target.endpoints.get(i));
    observer.on_response(&RequestRecord {
        route: route.map(|r| (r.namespace.as_str(), r.name.as_str())),
        service: target.map(|t| (t.namespace.as_str(), t.service.as_str())),
        instance: endpoint.map(|e| e.id.as_str()),
        method: &method,
        api: observed.api.as_deref(),
        status: response.status().as_u16(),
        latency: started.elapsed(),
        attempts: observed.attempts,
        rejected: observed.rejected,
    });
    Ok(response)
}

/// Where a request went, as indices into its snapshot (cheap to keep).
#[derive(Default)]
struct Observed {
    /// Whether to name the API (only an observer needs it).
    name_api: bool,
    /// The API the request called (`GET /articles/{id}`), once a route matched.
    api: Option<Arc<str>>,
    route: Option<usize>,
    target: Option<usize>,
    endpoint: Option<usize>,
    attempts: usize,
    rejected: Option<Reason>,
}

async fn forward(
    snapshot: &Snapshot,
    request: Request<Incoming>,
    client: SocketAddr,
    scheme: &'static str,
    observed: &mut Observed,
    rejections: &Rejections,
) -> Result<Response<ProxyBody>, Infallible> {
    let (mut parts, body) = request.into_parts();
    let client_version = parts.version;
    let Some((route_index, route)) = snapshot.table.find(&parts) else {
        return Ok(error_response(
            StatusCode::NOT_FOUND,
            "no_route",
            "no route matches this request",
        ));
    };
    observed.route = Some(route_index);
    if observed.name_api {
        observed.api = Some(route.apis.name(&parts.method, parts.uri.path()));
    }
    let guards = &route.guards;
    let mut refuse = |reason: Reason, status: StatusCode| {
        observed.rejected = Some(reason);
        // Refused before a target is picked: counted against the route's first
        // service (the one rate-limit keys name), so its board shows the refusals.
        if !route.targets.is_empty() {
            observed.target.get_or_insert(0);
        }
        refusal(rejections, route, client, reason, status)
    };
    if guards.has_access_rules() {
        if let Some((reason, status)) = guards.refuse_client(&parts, client.ip(), unix_ms()) {
            return Ok(refuse(reason, status));
        }
    }
    let conn_permits = {
        let source = KeySource {
            parts: &parts,
            client: client.ip(),
            route: &route.name,
            service: route.targets.first().map_or("", |t| t.service.as_str()),
        };
        if !guards.limits.is_empty() {
            let now = i64::try_from(crate::health::now_ms()).unwrap_or(i64::MAX);
            match crate::limit::check(&guards.limits, &source, now) {
                Verdict::Pass => {}
                Verdict::Delay(delay) => tokio::time::sleep(delay).await,
                Verdict::Reject(status) => return Ok(refuse(Reason::Rate, status)),
                Verdict::Banned => return Ok(refuse(Reason::Ban, StatusCode::FORBIDDEN)),
            }
        }
        if guards.has_conns() {
            match guards.acquire_conns(&source) {
                Ok(permits) => permits,
                Err(status) => return Ok(refuse(Reason::Conn, status)),
            }
        } else {
            Vec::new()
        }
    };
    let picked = route.pick_target();
    observed.target = picked.map(|(i, _)| i);
    let Some((_, target)) = picked else {
        return Ok(error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_upstream",
            "the route has no service to send to",
        ));
    };
    let original_host = crate::table::request_host(&parts).to_owned();

    // The upstream URI's path and query (the instance is set per attempt).
    let path_and_query = {
        let path = route.upstream_path(parts.uri.path());
        match parts.uri.query() {
            Some(query) => format!("{path}?{query}"),
            None => path.into_owned(),
        }
    };
    let authority_host = parts.uri.authority().map(|a| a.as_str().to_owned());
    // A protocol upgrade (WebSocket) keeps its Connection and Upgrade headers.
    let upgrade = wants_upgrade(&parts.headers, parts.version);
    let client_upgrade = upgrade
        .as_ref()
        .and_then(|_| parts.extensions.remove::<hyper::upgrade::OnUpgrade>());
    // gRPC goes upstream over HTTP/2, with its `te: trailers`.
    let grpc = parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let upstream_version = if grpc {
        Version::HTTP_2
    } else {
        Version::HTTP_11
    };
    let headers = &mut parts.headers;
    strip_hop_by_hop(headers);
    if grpc {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        headers.remove(header::HOST);
    }
    if let Some(protocol) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol);
    }
    if parts.version == Version::HTTP_2 && !grpc {
        // HTTP/2 carries the host in :authority; HTTP/1.1 upstreams need a Host header.
        if let Some(host) = authority_host.and_then(|h| HeaderValue::try_from(h).ok()) {
            headers.entry(header::HOST).or_insert(host);
        }
    }
    let client_ip = client.ip().to_string();
    let forwarded_for = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(previous) => format!("{previous}, {client_ip}"),
        None => client_ip,
    };
    if let Ok(value) = HeaderValue::try_from(forwarded_for) {
        headers.insert("x-forwarded-for", value);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static(scheme));
    if let Ok(value) = HeaderValue::try_from(original_host) {
        headers.insert("x-forwarded-host", value);
    }
    if !headers
        .get("x-request-id")
        .is_some_and(|v| !v.is_empty() && v.len() <= 128)
    {
        headers.insert("x-request-id", request_id());
    }
    for name in &route.remove_headers {
        headers.remove(name);
    }
    for (name, value) in &route.add_headers {
        headers.insert(name.clone(), value.clone());
    }

    // Only requests that can be sent again are retried: idempotent, and without a
    // body (bodies are streamed, never kept).
    route.retry_budget.deposit();
    let retryable =
        route.retries.attempts > 0 && is_idempotent(&parts.method) && has_no_body(&parts.headers);
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let (Some(limit), Some(length)) = (route.max_body_bytes, declared) {
        if length > limit {
            let message = format!("the body is {length} bytes; this route takes at most {limit}");
            return Ok(error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                &message,
            ));
        }
    }
    let body = if retryable {
        None
    } else {
        Some(match route.max_body_bytes {
            // Streamed bodies without a length are cut off at the limit.
            Some(limit) => {
                http_body_util::Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX))
                    .boxed()
            }
            None => body.map_err(BoxError::from).boxed(),
        })
    };
    let mut call = Call {
        parts,
        body,
        retryable,
        path_and_query,
        upstream_version,
        client_upgrade,
        client_version,
        client_ip: client.ip(),
    };
    let response = match send(route, target, &mut call, observed).await {
        Ok(response) => response,
        Err(failure) => {
            if let Some(reason) = failure.reason() {
                observed.rejected = Some(reason);
                rejections.add(reason);
                log_rejection(route, client, reason);
            }
            match (&route.fallback, &route.fallback_target) {
                (Some(answer), _) => static_answer(answer, failure.label()),
                (None, Some(fallback)) if call.body.is_some() || call.retryable => {
                    match send(route, fallback, &mut call, observed).await {
                        Ok(mut response) => {
                            response.headers_mut().insert(
                                "x-sluice-fallback",
                                HeaderValue::from_static(failure.label()),
                            );
                            response
                        }
                        Err(second) => second.into_response(),
                    }
                }
                _ => failure.into_response(),
            }
        }
    };
    if conn_permits.is_empty() {
        return Ok(response);
    }
    // The connection limit's places are held until the body is sent.
    let (parts, body) = response.into_parts();
    let guarded = GuardedBody {
        inner: body,
        _permits: conn_permits,
    };
    Ok(Response::from_parts(parts, guarded.boxed()))
}

/// A request on its way upstream, kept so a fallback service can take it.
struct Call {
    parts: hyper::http::request::Parts,
    /// `None` once sent (or when it has none and is retryable).
    body: Option<ProxyBody>,
    retryable: bool,
    path_and_query: String,
    upstream_version: Version,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    client_version: Version,
    client_ip: std::net::IpAddr,
}

/// Why an upstream call gave no answer to pass on.
enum Failure {
    /// A concurrency limit or an open breaker refused it.
    Refused(Reason, StatusCode, String),
    /// The upstream did not answer in time.
    Timeout(String),
    /// No instance can take it.
    NoHealthy(String),
    /// The upstream failed (connection, reset, protocol).
    Upstream(String),
    /// An answer that no fallback replaces (a client error).
    Final(Response<ProxyBody>),
}

impl Failure {
    fn reason(&self) -> Option<Reason> {
        match self {
            Failure::Refused(reason, _, _) => Some(*reason),
            Failure::Timeout(_) => Some(Reason::Timeout),
            _ => None,
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Failure::Refused(reason, _, _) => reason.as_str(),
            Failure::Timeout(_) => "timeout",
            Failure::NoHealthy(_) => "no_healthy_upstream",
            Failure::Upstream(_) | Failure::Final(_) => "upstream_failed",
        }
    }

    fn into_response(self) -> Response<ProxyBody> {
        match self {
            Failure::Refused(reason, status, message) => {
                let mut response = error_response(status, "rejected", &message);
                response.headers_mut().insert(
                    "x-sluice-rejected",
                    HeaderValue::from_static(reason.as_str()),
                );
                response
            }
            Failure::Timeout(message) => {
                let mut response =
                    error_response(StatusCode::GATEWAY_TIMEOUT, "upstream_timeout", &message);
                response
                    .headers_mut()
                    .insert("x-sluice-rejected", HeaderValue::from_static("timeout"));
                response
            }
            Failure::NoHealthy(message) => error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_healthy_upstream",
                &message,
            ),
            Failure::Upstream(message) => {
                error_response(StatusCode::BAD_GATEWAY, "upstream_failed", &message)
            }
            Failure::Final(response) => response,
        }
    }
}

/// A refusal by a route's access lists, bans, rate or connection limits.
fn refusal(
    rejections: &Rejections,
    route: &CompiledRoute,
    client: SocketAddr,
    reason: Reason,
    status: StatusCode,
) -> Response<ProxyBody> {
    rejections.add(reason);
    log_rejection(route, client, reason);
    let message = match reason {
        Reason::Acl => "the route's access list refuses this client",
        Reason::Ban => "this client is banned",
        Reason::Rate => "the route's rate limit is reached",
        Reason::Conn => "the route's connection limit is reached",
        _ => "refused",
    };
    let code = if reason == Reason::Rate {
        "rate_limited"
    } else {
        "rejected"
    };
    let mut response = error_response(status, code, message);
    response.headers_mut().insert(
        "x-sluice-rejected",
        HeaderValue::from_static(reason.as_str()),
    );
    response
}

fn log_rejection(route: &CompiledRoute, client: SocketAddr, reason: Reason) {
    tracing::debug!(
        target: "sluice_gateway::rejections",
        reason = reason.as_str(),
        namespace = route.namespace,
        route = route.name,
        client = %client.ip(),
        "request rejected"
    );
}

/// A fallback's static answer, marked with why it was given.
fn static_answer(answer: &StaticAnswer, why: &'static str) -> Response<ProxyBody> {
    let mut response = Response::new(
        Full::new(answer.body.clone())
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = answer.status;
    for (name, value) in &answer.headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
        .headers_mut()
        .insert("x-sluice-fallback", HeaderValue::from_static(why));
    response
}

/// The places a request holds in adaptive concurrency limits (route and service);
/// freed with a latency sample by `finish`, or without one when dropped.
struct Admitted<'a> {
    limiters: [Option<&'a ConcurrencyGuard>; 2],
    priority: Priority,
    started: Instant,
    finished: bool,
}

impl<'a> Admitted<'a> {
    fn acquire(
        route: Option<&'a ConcurrencyGuard>,
        service: Option<&'a ConcurrencyGuard>,
        priority: Priority,
    ) -> Result<Self, StatusCode> {
        if let Some(limit) = route {
            if !limit.acquire(priority) {
                return Err(limit.status);
            }
        }
        if let Some(limit) = service {
            if !limit.acquire(priority) {
                if let Some(route) = route {
                    route.cancel(priority);
                }
                return Err(limit.status);
            }
        }
        Ok(Admitted {
            limiters: [route, service],
            priority,
            started: Instant::now(),
            finished: false,
        })
    }

    fn finish(mut self, ok: bool) {
        self.finished = true;
        let latency = i64::try_from(self.started.elapsed().as_micros()).unwrap_or(i64::MAX);
        let now = crate::health::now_us();
        for limit in self.limiters.iter().flatten() {
            limit.release(self.priority, ok, latency, now);
        }
    }
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        if !self.finished {
            for limit in self.limiters.iter().flatten() {
                limit.cancel(self.priority);
            }
        }
    }
}

/// Sends a request to one of `target`'s instances, with the route's retries, the
/// service's concurrency limit and breakers.
async fn send(
    route: &CompiledRoute,
    target: &Target,
    call: &mut Call,
    observed: &mut Observed,
) -> Result<Response<ProxyBody>, Failure> {
    let admitted = Admitted::acquire(
        route.guards.concurrency.as_deref(),
        target.guards.concurrency.as_deref(),
        route.priority,
    )
    .map_err(|status| {
        Failure::Refused(
            Reason::Concurrency,
            status,
            format!(
                "the concurrency limit of {}/{} is reached",
                target.namespace, target.service
            ),
        )
    })?;
    let now = i64::try_from(crate::health::now_ms()).unwrap_or(i64::MAX);
    let breaker_open = || {
        Failure::Refused(
            Reason::Breaker,
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the circuit breaker of {}/{} is open",
                target.namespace, target.service
            ),
        )
    };
    let service_trial = match &target.guards.breaker {
        None => false,
        Some(breaker) => match breaker.attempt(now) {
            Admission::Allowed => false,
            Admission::Trial => true,
            Admission::Rejected => return Err(breaker_open()),
        },
    };
    // Endpoints tried so far (at most 1 + 5 retries) and those whose breaker is
    // open: on the stack, no allocation.
    let mut excluded = [0usize; 16];
    let mut tried = 0;
    let mut open = 0;
    let mut attempts = 0;
    loop {
        let Some(index) = target.pick(&call.parts, call.client_ip, &excluded[..tried + open])
        else {
            return Err(Failure::NoHealthy(format!(
                "service {}/{} has no healthy instance",
                target.namespace, target.service
            )));
        };
        let instance_trial = match target.guards.instance_breakers.get(index) {
            None => false,
            Some(breaker) => {
                if excluded[tried..tried + open].contains(&index) {
                    // The balancer found nothing else: every other instance's breaker is open.
                    return Err(breaker_open());
                }
                match breaker.attempt(now) {
                    Admission::Allowed => false,
                    Admission::Trial => true,
                    Admission::Rejected => {
                        if tried + open >= excluded.len() || open >= target.endpoints.len() {
                            return Err(breaker_open());
                        }
                        excluded[tried + open] = index;
                        open += 1;
                        continue;
                    }
                }
            }
        };
        if tried + open < excluded.len() {
            // Tried endpoints are listed before open ones.
            excluded.copy_within(tried..tried + open, tried + 1);
            excluded[tried] = index;
            tried += 1;
        }
        attempts += 1;
        observed.endpoint = Some(index);
        observed.attempts += 1;
        let endpoint = &target.endpoints[index];
        let Some(uri) = upstream_uri(
            &call.path_and_query,
            &endpoint.address,
            call.upstream_version,
        ) else {
            return Err(Failure::Final(error_response(
                StatusCode::BAD_REQUEST,
                "bad_path",
                "the request path cannot be forwarded",
            )));
        };
        let mut attempt = Request::new(match call.body.take() {
            Some(body) => body,
            None => Empty::<Bytes>::new()
                .map_err(|never| match never {})
                .boxed(),
        });
        *attempt.method_mut() = call.parts.method.clone();
        *attempt.uri_mut() = uri;
        *attempt.version_mut() = call.upstream_version;
        // Only a request that may be sent again needs its headers kept.
        *attempt.headers_mut() = if call.retryable {
            call.parts.headers.clone()
        } else {
            std::mem::take(&mut call.parts.headers)
        };
        if call.upstream_version != Version::HTTP_2 && !attempt.headers().contains_key(header::HOST)
        {
            if let Ok(host) = HeaderValue::from_str(&endpoint.address) {
                attempt.headers_mut().insert(header::HOST, host);
            }
        }

        let _in_flight = match &target.balancer {
            Balancer::LeastRequest(b) => b.start(index),
            Balancer::PeakEwma(b) => b.start(index),
            _ => None,
        };
        let started = Instant::now();
        let result = tokio::time::timeout(
            route.request_timeout,
            crate::upstream::send(
                &endpoint.address,
                call.upstream_version,
                route.connect_timeout,
                attempt,
            ),
        )
        .await;
        let latency = started.elapsed();
        if let Balancer::PeakEwma(b) = &target.balancer {
            b.observe(index, latency);
        }
        let outcome = match &result {
            Ok(Ok(response)) if response.status().is_server_error() => {
                if matches!(response.status().as_u16(), 502..=504) {
                    Some(RetryOn::GatewayError)
                } else {
                    Some(RetryOn::ServerError)
                }
            }
            Ok(Ok(_)) => None,
            Ok(Err(UpstreamError::Connect(_))) => Some(RetryOn::ConnectFailure),
            Ok(Err(_)) => Some(RetryOn::Reset),
            Err(_) => Some(RetryOn::Timeout),
        };
        let breaker_outcome = match outcome {
            None => Outcome::Success,
            Some(RetryOn::Timeout) => Outcome::Timeout,
            Some(_) => Outcome::Failure,
        };
        let latency_us = i64::try_from(latency.as_micros()).unwrap_or(i64::MAX);
        let done = i64::try_from(crate::health::now_ms()).unwrap_or(i64::MAX);
        if let Some(breaker) = target.guards.instance_breakers.get(index) {
            breaker.record(done, breaker_outcome, latency_us, instance_trial);
        }
        match outcome {
            Some(_) => {
                if endpoint
                    .health
                    .record_failure(&route.outlier, || target.may_eject(&route.outlier))
                {
                    tracing::info!(
                        instance = endpoint.id,
                        address = endpoint.address,
                        "instance ejected after consecutive failures"
                    );
                }
            }
            None => endpoint.health.record_success(),
        }
        let wants_retry = outcome.is_some_and(|condition| {
            route.retries.on.contains(&condition)
                || (condition == RetryOn::GatewayError
                    && route.retries.on.contains(&RetryOn::ServerError))
        });
        if call.retryable
            && wants_retry
            && attempts <= route.retries.attempts as usize
            && route.retry_budget.try_spend()
        {
            continue;
        }
        if let Some(breaker) = &target.guards.breaker {
            breaker.record(done, breaker_outcome, latency_us, service_trial);
        }
        admitted.finish(outcome.is_none());
        let response = match result {
            Ok(Ok(response)) => response,
            Ok(Err(UpstreamError::Send(error))) if is_length_limit(&error) => {
                let message = "the body is over this route's max_body_bytes";
                return Err(Failure::Final(error_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    message,
                )));
            }
            Ok(Err(error)) => {
                tracing::debug!(%error, address = endpoint.address, "upstream failed");
                return Err(Failure::Upstream(format!(
                    "instance {} of {}/{} failed: {error}",
                    endpoint.id, target.namespace, target.service
                )));
            }
            Err(_) => {
                return Err(Failure::Timeout(format!(
                    "instance {} of {}/{} did not answer within {:?}",
                    endpoint.id, target.namespace, target.service, route.request_timeout
                )));
            }
        };
        let mut response = response;
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_side) = call.client_upgrade.take() {
                return Ok(splice_upgrade(
                    client_side,
                    &mut response,
                    call.client_version,
                ));
            }
        }
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        // Answer in the client's protocol version, whatever the upstream spoke.
        parts.version = call.client_version;
        return Ok(Response::from_parts(
            parts,
            body.map_err(BoxError::from).boxed(),
        ));
    }
}

/// A response body that holds connection-limit places until it is done.
struct GuardedBody {
    inner: ProxyBody,
    _permits: Vec<ConnPermit>,
}

impl hyper::body::Body for GuardedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// The Upgrade header of an HTTP/1.1 request that asks for a protocol upgrade.
fn wants_upgrade(headers: &HeaderMap, version: Version) -> Option<HeaderValue> {
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    (version == Version::HTTP_11 && asks)
        .then(|| headers.get(header::UPGRADE).cloned())
        .flatten()
}

/// Answers the client's upgrade with the upstream's 101 and joins the two upgraded
/// connections, copying both ways until either side closes.
fn splice_upgrade(
    client_side: hyper::upgrade::OnUpgrade,
    response: &mut Response<UpstreamBody>,
    client_version: Version,
) -> Response<ProxyBody> {
    let upstream_side = hyper::upgrade::on(&mut *response);
    tokio::spawn(async move {
        let (Ok(client), Ok(upstream)) = (client_side.await, upstream_side.await) else {
            tracing::debug!("an upgrade did not complete");
            return;
        };
        let mut client = hyper_util::rt::TokioIo::new(client);
        let mut upstream = hyper_util::rt::TokioIo::new(upstream);
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    });
    let mut answer = Response::new(
        Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed(),
    );
    *answer.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *answer.version_mut() = client_version;
    *answer.headers_mut() = response.headers().clone();
    answer
}

/// The URI of an attempt: origin-form (`/path?query`) for HTTP/1.1, absolute
/// (`http://instance/path?query`) for HTTP/2, whose `:authority` comes from it.
fn upstream_uri(path_and_query: &str, address: &str, version: Version) -> Option<Uri> {
    if version == Version::HTTP_2 {
        format!("http://{address}{path_and_query}").parse().ok()
    } else {
        Uri::try_from(path_and_query).ok()
    }
}

/// Whether a failed upstream call was the request body going over its limit.
fn is_length_limit(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(error) = source {
        if error.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = error.source();
    }
    false
}

fn is_idempotent(method: &hyper::Method) -> bool {
    use hyper::Method;
    [
        Method::GET,
        Method::HEAD,
        Method::OPTIONS,
        Method::PUT,
        Method::DELETE,
        Method::TRACE,
    ]
    .contains(method)
}

fn has_no_body(headers: &HeaderMap) -> bool {
    !headers.contains_key(header::TRANSFER_ENCODING)
        && headers
            .get(header::CONTENT_LENGTH)
            .is_none_or(|length| length.as_bytes() == b"0")
}
