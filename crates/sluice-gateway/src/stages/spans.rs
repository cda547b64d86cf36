//! Stage spans: the request's spans, for a sampled trace when a span sink is
//! set — one SERVER span named by the API (`GET /articles/{id}`; the method
//! alone when no route matched), with the route, service, status, client
//! address, rejection reason and fallback as tags; one CLIENT span per upstream
//! attempt, a child of the SERVER span, with the instance as remote endpoint
//! (so retries show as retries). Nothing is built otherwise.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use hyper::{Method, Response};
use sluice_trace::span::{Endpoint, Kind, Span};

use crate::ctx::RequestCtx;
use crate::observe::SpanSink;
use crate::proxy_body::ProxyBody;

/// The service name of the gateway's spans.
pub(crate) const SERVICE_NAME: &str = "sluice-gateway";

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

/// Builds and hands over the request's spans.
pub(crate) fn record(
    sink: &dyn SpanSink,
    ctx: &RequestCtx<'_>,
    method: &Method,
    path: &str,
    response: &Response<ProxyBody>,
) {
    let Some(trace) = &ctx.trace else {
        return;
    };
    let (route, target, _) = ctx.reached();
    let now = crate::clock::instant();
    let status = response.status().as_u16();
    let name = ctx
        .api
        .as_deref()
        .map_or_else(|| method.as_str().to_owned(), str::to_owned);
    let mut tags = BTreeMap::new();
    tags.insert("http.method".to_owned(), method.as_str().to_owned());
    tags.insert("http.path".to_owned(), path.to_owned());
    tags.insert("http.status_code".to_owned(), status.to_string());
    if let Some(route) = route {
        tags.insert(
            "sluice.route".to_owned(),
            format!("{}/{}", route.namespace, route.name),
        );
    }
    if let Some(target) = target {
        tags.insert(
            "sluice.service".to_owned(),
            format!("{}/{}", target.namespace, target.service),
        );
    }
    if let Some(reason) = ctx.rejected {
        tags.insert("sluice.rejected".to_owned(), reason.as_str().to_owned());
    }
    if let Some(fallback) = response.headers().get("x-sluice-fallback") {
        if let Ok(why) = fallback.to_str() {
            tags.insert("sluice.fallback".to_owned(), why.to_owned());
        }
    }
    if status >= 500 {
        tags.insert("error".to_owned(), status.to_string());
    }
    let trace_id = trace.trace_id.to_string();
    let server_id = trace.span_id.to_string();
    let mut spans = Vec::with_capacity(1 + ctx.attempt_spans.len());
    spans.push(Span {
        trace_id: trace_id.clone(),
        id: server_id.clone(),
        parent_id: trace.parent_id.map(|p| p.to_string()),
        name: Some(name.clone()),
        kind: Some(Kind::Server),
        timestamp: Some(crate::clock::unix_us(ctx.clock.at)),
        duration: Some(micros(ctx.clock.at, now)),
        local_endpoint: Some(endpoint(Some(SERVICE_NAME), None)),
        remote_endpoint: Some(endpoint(None, Some(ctx.conn.client))),
        annotations: Vec::new(),
        tags,
        debug: trace.debug,
        shared: false,
    });
    let service = target.map(|t| t.service.as_str());
    for attempt in &ctx.attempt_spans {
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
            debug: trace.debug,
            shared: false,
        });
    }
    sink.record(spans);
}
