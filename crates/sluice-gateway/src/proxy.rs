//! The per-request path: match a route, pick an instance, forward the request with
//! proxy headers, stream the answer back. It reads the current snapshot through an
//! `ArcSwap` (no lock), allocates little, and does no I/O but the proxied request.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;

use sluice_model::RetryOn;

use crate::table::Balancer;
use crate::{RequestRecord, Shared, Snapshot};

/// The body of every gateway response.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// Errors carried by bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Pooled clients to upstream instances: HTTP/1.1, and HTTP/2 (prior knowledge)
/// for gRPC, whose trailers need it.
#[derive(Clone)]
pub(crate) struct UpstreamClient {
    http1: Client<HttpConnector, ProxyBody>,
    http2: Client<HttpConnector, ProxyBody>,
}

impl UpstreamClient {
    pub fn new(connect_timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        let http1 = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .build(connector.clone());
        let http2 = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .http2_only(true)
            .build(connector);
        UpstreamClient { http1, http2 }
    }

    fn for_version(&self, version: Version) -> &Client<HttpConnector, ProxyBody> {
        if version == Version::HTTP_2 {
            &self.http2
        } else {
            &self.http1
        }
    }
}

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
    let mut observed = Observed::default();
    let Some(observer) = &shared.observer else {
        return forward(&snapshot, request, client, scheme, &mut observed).await;
    };
    let started = Instant::now();
    let method = request.method().clone();
    let response = forward(&snapshot, request, client, scheme, &mut observed).await?;
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
        status: response.status().as_u16(),
        latency: started.elapsed(),
        attempts: observed.attempts,
    });
    Ok(response)
}

/// Where a request went, as indices into its snapshot (cheap to keep).
#[derive(Default)]
struct Observed {
    route: Option<usize>,
    target: Option<usize>,
    endpoint: Option<usize>,
    attempts: usize,
}

async fn forward(
    snapshot: &Snapshot,
    request: Request<Incoming>,
    client: SocketAddr,
    scheme: &'static str,
    observed: &mut Observed,
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
    if !route.limits.is_empty() {
        let now = i64::try_from(crate::health::now_ms()).unwrap_or(i64::MAX);
        match crate::limit::check(&route.limits, &parts, client.ip(), &route.name, now) {
            crate::limit::Verdict::Pass => {}
            crate::limit::Verdict::Delay(delay) => tokio::time::sleep(delay).await,
            crate::limit::Verdict::Reject(status) => {
                let mut response =
                    error_response(status, "rate_limited", "the route's rate limit is reached");
                response
                    .headers_mut()
                    .insert("x-sluice-rejected", HeaderValue::from_static("rate"));
                return Ok(response);
            }
        }
    }
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
    let mut client_upgrade = upgrade
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
    let mut body = if retryable {
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
    // Endpoints tried so far (at most 1 + 5 retries): on the stack, no allocation.
    let mut tried = [0usize; 6];
    let mut attempts = 0;
    loop {
        let Some(index) = target.pick(&parts, client.ip(), &tried[..attempts]) else {
            let message = format!(
                "service {}/{} has no healthy instance",
                target.namespace, target.service
            );
            return Ok(error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_healthy_upstream",
                &message,
            ));
        };
        tried[attempts.min(tried.len() - 1)] = index;
        attempts += 1;
        observed.endpoint = Some(index);
        observed.attempts += 1;
        let endpoint = &target.endpoints[index];
        let Ok(uri) = format!("http://{}{path_and_query}", endpoint.address).parse::<Uri>() else {
            return Ok(error_response(
                StatusCode::BAD_REQUEST,
                "bad_path",
                "the request path cannot be forwarded",
            ));
        };
        let mut attempt = Request::new(match body.take() {
            Some(body) => body,
            None => Empty::<Bytes>::new()
                .map_err(|never| match never {})
                .boxed(),
        });
        *attempt.method_mut() = parts.method.clone();
        *attempt.uri_mut() = uri;
        *attempt.version_mut() = upstream_version;
        // Only a request that may be sent again needs its headers kept.
        *attempt.headers_mut() = if retryable {
            parts.headers.clone()
        } else {
            std::mem::take(&mut parts.headers)
        };

        let _in_flight = match &target.balancer {
            Balancer::LeastRequest(b) => b.start(index),
            Balancer::PeakEwma(b) => b.start(index),
            _ => None,
        };
        let started = Instant::now();
        let result = tokio::time::timeout(
            route.request_timeout,
            route.client.for_version(upstream_version).request(attempt),
        )
        .await;
        if let Balancer::PeakEwma(b) = &target.balancer {
            b.observe(index, started.elapsed());
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
            Ok(Err(error)) if error.is_connect() => Some(RetryOn::ConnectFailure),
            Ok(Err(_)) => Some(RetryOn::Reset),
            Err(_) => Some(RetryOn::Timeout),
        };
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
        if retryable
            && wants_retry
            && attempts <= route.retries.attempts as usize
            && route.retry_budget.try_spend()
        {
            continue;
        }
        let response = match result {
            Ok(Ok(response)) => response,
            Ok(Err(error)) if is_length_limit(&error) => {
                let message = "the body is over this route's max_body_bytes";
                return Ok(error_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    message,
                ));
            }
            Ok(Err(error)) => {
                tracing::debug!(%error, address = endpoint.address, "upstream failed");
                let message = format!(
                    "instance {} of {}/{} failed: {error}",
                    endpoint.id, target.namespace, target.service
                );
                return Ok(error_response(
                    StatusCode::BAD_GATEWAY,
                    "upstream_failed",
                    &message,
                ));
            }
            Err(_) => {
                let message = format!(
                    "instance {} of {}/{} did not answer within {:?}",
                    endpoint.id, target.namespace, target.service, route.request_timeout
                );
                return Ok(error_response(
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream_timeout",
                    &message,
                ));
            }
        };
        let mut response = response;
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_side) = client_upgrade.take() {
                return Ok(splice_upgrade(client_side, &mut response, client_version));
            }
        }
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        // Answer in the client's protocol version, whatever the upstream spoke.
        parts.version = client_version;
        return Ok(Response::from_parts(
            parts,
            body.map_err(BoxError::from).boxed(),
        ));
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
    response: &mut Response<Incoming>,
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
