//! Stage rewrite: the head of the request the upstream gets — its path (the
//! route's rewrite), the protocol it goes over (HTTP/2 for gRPC, else HTTP/1.1),
//! hop-by-hop headers stripped, a WebSocket upgrade kept, and the proxy headers:
//! `X-Forwarded-For` (appended to), `-Proto`, `-Host`, `X-Request-Id` (kept when
//! the client sent a usable one), then the route's own header changes.
//!
//! Without a rewrite the client's path and query go on as they came (a cheap
//! shared-bytes clone, no formatting or re-parsing).

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::request::Parts;
use hyper::http::uri::PathAndQuery;
use hyper::upgrade::OnUpgrade;
use hyper::Version;

use crate::ctx::RequestCtx;
use crate::error::{ErrorKind, ProxyError};
use crate::table::CompiledRoute;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// A request on its way upstream, kept across attempts (and for a fallback service).
pub(crate) struct Outbound {
    /// Method, rewritten headers and extensions.
    pub parts: Parts,
    /// The upstream's path and query.
    pub path_and_query: PathAndQuery,
    /// The protocol to the upstream.
    pub version: Version,
    /// The client's protocol, which the answer is given in.
    pub client_version: Version,
    /// The client's side of a protocol upgrade, when it asked for one.
    pub client_upgrade: Option<OnUpgrade>,
    /// Whether it may be sent again (idempotent, no body; set by the body stage).
    pub retryable: bool,
    /// Whether an attempt took the headers (so it cannot be sent again).
    pub sent: bool,
}

pub(crate) fn outbound(
    ctx: &RequestCtx<'_>,
    route: &CompiledRoute,
    mut parts: Parts,
) -> Result<Outbound, ProxyError> {
    let path_and_query = upstream_path_and_query(route, &parts)?;
    let forwarded_host = HeaderValue::from_str(crate::table::request_host(&parts)).ok();
    let authority_host = match parts.version {
        Version::HTTP_2 => parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
        _ => None,
    };
    // A protocol upgrade (WebSocket) keeps its Connection and Upgrade headers.
    let upgrade = wants_upgrade(&parts.headers, parts.version);
    let client_upgrade = upgrade
        .as_ref()
        .and_then(|_| parts.extensions.remove::<OnUpgrade>());
    // gRPC goes upstream over HTTP/2, with its `te: trailers`.
    let grpc = parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
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
    if let (Some(host), false) = (authority_host, grpc) {
        // HTTP/2 carries the host in :authority; HTTP/1.1 upstreams need a Host header.
        headers.entry(header::HOST).or_insert(host);
    }
    set_proxy_headers(ctx, headers, forwarded_host);
    for name in &route.remove_headers {
        headers.remove(name);
    }
    for (name, value) in &route.add_headers {
        headers.insert(name.clone(), value.clone());
    }
    Ok(Outbound {
        client_version: parts.version,
        version: if grpc {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        },
        parts,
        path_and_query,
        client_upgrade,
        retryable: false,
        sent: false,
    })
}

/// The path and query the upstream gets: the client's own unless the route rewrites it.
fn upstream_path_and_query(
    route: &CompiledRoute,
    parts: &Parts,
) -> Result<PathAndQuery, ProxyError> {
    let path = parts.uri.path();
    let rewritten = route.upstream_path(path);
    if let std::borrow::Cow::Borrowed(_) = rewritten {
        if let Some(original) = parts.uri.path_and_query() {
            return Ok(original.clone());
        }
    }
    let text = match parts.uri.query() {
        Some(query) => format!("{rewritten}?{query}"),
        None => rewritten.into_owned(),
    };
    PathAndQuery::try_from(text)
        .map_err(|_| ProxyError::client(ErrorKind::BadPath, "the request path cannot be forwarded"))
}

fn set_proxy_headers(
    ctx: &RequestCtx<'_>,
    headers: &mut HeaderMap,
    forwarded_host: Option<HeaderValue>,
) {
    let forwarded_for = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(previous) => {
            HeaderValue::try_from(format!("{previous}, {}", ctx.conn.client.ip())).ok()
        }
        None => Some(ctx.conn.client_ip.clone()),
    };
    if let Some(value) = forwarded_for {
        headers.insert(X_FORWARDED_FOR, value);
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(ctx.conn.scheme));
    if let Some(host) = forwarded_host {
        headers.insert(X_FORWARDED_HOST, host);
    }
    if !headers
        .get(&X_REQUEST_ID)
        .is_some_and(|v| !v.is_empty() && v.len() <= 128)
    {
        headers.insert(X_REQUEST_ID, request_id());
    }
}

/// Removes hop-by-hop headers, and those the Connection header names: one pass
/// over the headers finds whether there are any (there rarely are).
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
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

/// The Upgrade header of an HTTP/1.1 request that asks for a protocol upgrade.
fn wants_upgrade(headers: &HeaderMap, version: Version) -> Option<HeaderValue> {
    if version != Version::HTTP_11 {
        return None;
    }
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    asks.then(|| headers.get(header::UPGRADE).cloned())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::{Connection, RequestCtx};
    use crate::table::test_route;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut builder = hyper::Request::builder().uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    fn rewrite(route_json: &str, parts: Parts) -> Outbound {
        let snapshot = crate::snapshot::Snapshot::default();
        let rejections = crate::protect::Rejections::default();
        let conn = Connection::new(
            "10.1.2.3:5000".parse().unwrap(),
            "http",
            std::sync::Arc::default(),
        );
        let ctx = RequestCtx::new(&snapshot, &conn, &rejections, false);
        outbound(&ctx, &test_route("r", route_json), parts).unwrap()
    }

    #[test]
    fn without_a_rewrite_the_path_and_query_go_on_unchanged() {
        let out = rewrite(
            r#"{"match": {"path_prefix": "/api"}, "service": "s"}"#,
            parts("/api/x?y=1&z", &[("host", "example.com:8080")]),
        );
        assert_eq!(out.path_and_query.as_str(), "/api/x?y=1&z");
        assert_eq!(out.version, Version::HTTP_11);
        let h = &out.parts.headers;
        assert_eq!(h["x-forwarded-for"], "10.1.2.3");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "example.com");
        assert_eq!(h["x-request-id"].len(), 32);
        assert_eq!(h["host"], "example.com:8080");
    }

    #[test]
    fn strip_prefix_and_replace_path_rewrite_and_keep_the_query() {
        let out = rewrite(
            r#"{"match": {"path_prefix": "/api"}, "service": "s", "rewrite": {"strip_prefix": true}}"#,
            parts("/api/items?page=2", &[]),
        );
        assert_eq!(out.path_and_query.as_str(), "/items?page=2");
        let out = rewrite(
            r#"{"match": {"path_prefix": "/api"}, "service": "s", "rewrite": {"strip_prefix": true}}"#,
            parts("/api", &[]),
        );
        assert_eq!(out.path_and_query.as_str(), "/");
        let out = rewrite(
            r#"{"match": {"path_prefix": "/old"}, "service": "s", "rewrite": {"replace_path": "/new"}}"#,
            parts("/old/x?q", &[]),
        );
        assert_eq!(out.path_and_query.as_str(), "/new?q");
    }

    #[test]
    fn forwarded_for_appends_and_a_usable_request_id_is_kept() {
        let out = rewrite(
            r#"{"match": {"path_prefix": "/"}, "service": "s"}"#,
            parts(
                "/",
                &[("x-forwarded-for", "1.1.1.1"), ("x-request-id", "abc-123")],
            ),
        );
        assert_eq!(out.parts.headers["x-forwarded-for"], "1.1.1.1, 10.1.2.3");
        assert_eq!(out.parts.headers["x-request-id"], "abc-123");
        let too_long = "x".repeat(129);
        let out = rewrite(
            r#"{"match": {"path_prefix": "/"}, "service": "s"}"#,
            parts("/", &[("x-request-id", &too_long)]),
        );
        assert_eq!(out.parts.headers["x-request-id"].len(), 32);
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_stripped() {
        let out = rewrite(
            r#"{"match": {"path_prefix": "/"}, "service": "s"}"#,
            parts(
                "/",
                &[
                    ("connection", "keep-alive, x-secret"),
                    ("keep-alive", "timeout=5"),
                    ("x-secret", "1"),
                    ("te", "gzip"),
                    ("x-kept", "yes"),
                ],
            ),
        );
        let h = &out.parts.headers;
        for gone in ["connection", "keep-alive", "x-secret", "te"] {
            assert!(!h.contains_key(gone), "{gone} is stripped");
        }
        assert_eq!(h["x-kept"], "yes");
    }

    #[test]
    fn grpc_goes_over_http2_with_te_trailers_and_websocket_keeps_its_upgrade() {
        let out = rewrite(
            r#"{"match": {"path_prefix": "/"}, "service": "s"}"#,
            parts(
                "/pkg.Svc/Call",
                &[("content-type", "application/grpc"), ("host", "h")],
            ),
        );
        assert_eq!(out.version, Version::HTTP_2);
        assert_eq!(out.parts.headers["te"], "trailers");
        assert!(!out.parts.headers.contains_key("host"));
        let out = rewrite(
            r#"{"match": {"path_prefix": "/"}, "service": "s"}"#,
            parts(
                "/ws",
                &[("connection", "Upgrade"), ("upgrade", "websocket")],
            ),
        );
        assert_eq!(out.parts.headers["connection"], "upgrade");
        assert_eq!(out.parts.headers["upgrade"], "websocket");
    }

    #[test]
    fn the_routes_header_changes_apply_last() {
        let out = rewrite(
            r#"{"match": {"path_prefix": "/"}, "service": "s", "rewrite": {"add_headers": {"x-team": "blue"}, "remove_headers": ["x-drop"]}}"#,
            parts("/", &[("x-drop", "1"), ("x-team", "red")]),
        );
        assert_eq!(out.parts.headers["x-team"], "blue");
        assert!(!out.parts.headers.contains_key("x-drop"));
    }
}
