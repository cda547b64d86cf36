//! Stage attempt: one upstream attempt on the picked instance — a connection
//! from this thread's pool (or a new one), the request built from the outbound
//! head (its headers moved, not copied, unless a later attempt or a fallback may
//! need them), the answer within the route's request timeout — and its outcome
//! recorded where it counts: the balancer's latency, the instance's breaker and
//! its outlier detection.

use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, Uri, Version};
use sluice_guard::breaker::Outcome;
use sluice_model::RetryOn;

use crate::ctx::{AttemptSpan, RequestCtx};
use crate::error::{ErrorKind, ProxyError};
use crate::proxy_body::ProxyBody;
use crate::stages::body::is_length_limit;
use crate::stages::pick::Picked;
use crate::stages::rewrite::Outbound;
use crate::table::{Balancer, CompiledRoute, Endpoint, Target};
use crate::upstream::{self, UpstreamBody, UpstreamError};

/// What one attempt came to.
pub(crate) struct Attempted {
    pub result: Result<Response<UpstreamBody>, ProxyError>,
    /// The retry condition the outcome meets (a 5xx answer, or the error's own).
    pub condition: Option<RetryOn>,
    /// What the breakers learn (`None`: the client's fault, nothing to learn).
    pub outcome: Option<Outcome>,
    pub ended: Instant,
    pub latency_us: i64,
}

/// Makes one attempt; `keep_headers` when the outbound head must stay whole for
/// another attempt or a fallback service.
pub(crate) async fn send(
    ctx: &mut RequestCtx<'_>,
    route: &CompiledRoute,
    target: &Target,
    picked: Picked,
    outbound: &mut Outbound,
    body: &mut Option<ProxyBody>,
    keep_headers: bool,
) -> Attempted {
    // An attempt starts when the previous one ended, the first when the request
    // was admitted: no clock read of its own.
    let started = ctx.last_attempt_end.unwrap_or(ctx.clock.at + ctx.delayed);
    ctx.endpoint = Some(picked.index);
    ctx.attempts += 1;
    let endpoint = &target.endpoints[picked.index];
    let in_flight = match &target.balancer {
        Balancer::LeastRequest(b) => b.start(picked.index),
        Balancer::PeakEwma(b) => b.start(picked.index),
        _ => None,
    };
    // The attempt is a CLIENT span of the request's trace: the upstream's parent.
    let span_id = ctx
        .trace
        .as_ref()
        .map(|trace| trace.to_upstream(&mut outbound.parts.headers));
    let exchanged = tokio::time::timeout(
        route.request_timeout,
        exchange(endpoint, route, outbound, body, keep_headers, started),
    )
    .await;
    let ended = crate::clock::instant();
    drop(in_flight);
    ctx.last_attempt_end = Some(ended);
    let latency = ended.saturating_duration_since(started);
    if let Balancer::PeakEwma(b) = &target.balancer {
        b.observe(picked.index, latency);
    }
    let latency_us = i64::try_from(latency.as_micros()).unwrap_or(i64::MAX);
    let (result, condition, outcome) = classify(exchanged, endpoint, target, route);
    if let (true, Some(span_id)) = (ctx.record_spans, span_id) {
        ctx.attempt_spans.push(AttemptSpan {
            span_id,
            started,
            ended,
            address: std::sync::Arc::clone(&endpoint.pool_key),
            status: result.as_ref().ok().map(|r| r.status().as_u16()),
            error: result.as_ref().err().map(|e| e.to_string()),
        });
    }
    if let Some(outcome) = outcome {
        let ended_ms = crate::clock::Clock::at(ended).ms;
        if let Some(breaker) = target.guards.instance_breakers.get(picked.index) {
            breaker.record(ended_ms, outcome, latency_us, picked.trial);
        }
        record_health(endpoint, target, route, condition.is_some());
    }
    Attempted {
        result,
        condition,
        outcome,
        ended,
        latency_us,
    }
}

type Exchanged = Result<Result<Response<UpstreamBody>, UpstreamError>, tokio::time::error::Elapsed>;

fn classify(
    exchanged: Exchanged,
    endpoint: &Endpoint,
    target: &Target,
    route: &CompiledRoute,
) -> (
    Result<Response<UpstreamBody>, ProxyError>,
    Option<RetryOn>,
    Option<Outcome>,
) {
    let instance = || {
        format!(
            "instance {} of {}/{}",
            endpoint.id, target.namespace, target.service
        )
    };
    match exchanged {
        Ok(Ok(response)) => {
            let condition = match response.status().as_u16() {
                502..=504 => Some(RetryOn::GatewayError),
                500..=599 => Some(RetryOn::ServerError),
                _ => None,
            };
            let outcome = match condition {
                Some(_) => Outcome::Failure,
                None => Outcome::Success,
            };
            (Ok(response), condition, Some(outcome))
        }
        Err(_) => {
            let error = ProxyError::upstream(
                ErrorKind::Timeout,
                format!(
                    "{} did not answer within {:?}",
                    instance(),
                    route.request_timeout
                ),
            );
            (Err(error), Some(RetryOn::Timeout), Some(Outcome::Timeout))
        }
        Ok(Err(UpstreamError::Send(error))) if is_length_limit(&error) => {
            let error = ProxyError::client(
                ErrorKind::BodyTooLarge,
                "the body is over this route's max_body_bytes",
            );
            (Err(error), None, None)
        }
        Ok(Err(error)) => {
            tracing::debug!(%error, address = endpoint.address, "upstream failed");
            let kind = match error {
                UpstreamError::Connect(_) => ErrorKind::Connect,
                UpstreamError::Send(_) => ErrorKind::Reset,
            };
            let error = ProxyError::upstream(kind, format!("{} failed: {error}", instance()));
            let condition = error.retry;
            (Err(error), condition, Some(Outcome::Failure))
        }
    }
}

/// Outlier detection: consecutive failures eject an instance for a while.
fn record_health(endpoint: &Endpoint, target: &Target, route: &CompiledRoute, failed: bool) {
    if !failed {
        endpoint.health.record_success();
        return;
    }
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

/// A connection first, then the request: a failed connect costs the request nothing.
async fn exchange(
    endpoint: &Endpoint,
    route: &CompiledRoute,
    outbound: &mut Outbound,
    body: &mut Option<ProxyBody>,
    keep_headers: bool,
    now: Instant,
) -> Result<Response<UpstreamBody>, UpstreamError> {
    let sender = upstream::checkout(
        &endpoint.pool_key,
        outbound.version,
        route.connect_timeout,
        now,
    )
    .await?;
    let request = build(endpoint, outbound, body, keep_headers)?;
    sender.send(request).await
}

fn build(
    endpoint: &Endpoint,
    outbound: &mut Outbound,
    body: &mut Option<ProxyBody>,
    keep_headers: bool,
) -> Result<Request<ProxyBody>, UpstreamError> {
    let uri = if outbound.version == Version::HTTP_2 {
        // HTTP/2 takes its :scheme and :authority from the URI.
        Uri::builder()
            .scheme("http")
            .authority(endpoint.address.as_str())
            .path_and_query(outbound.path_and_query.clone())
            .build()
            .map_err(|error| {
                UpstreamError::Connect(format!("{} is not host:port: {error}", endpoint.address))
            })?
    } else {
        Uri::from(outbound.path_and_query.clone())
    };
    let mut request = Request::new(body.take().unwrap_or_else(|| {
        Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed()
    }));
    *request.method_mut() = outbound.parts.method.clone();
    *request.uri_mut() = uri;
    *request.version_mut() = outbound.version;
    *request.headers_mut() = if keep_headers {
        outbound.parts.headers.clone()
    } else {
        outbound.sent = true;
        std::mem::take(&mut outbound.parts.headers)
    };
    if outbound.version != Version::HTTP_2 && !request.headers().contains_key(header::HOST) {
        if let Ok(host) = HeaderValue::from_str(&endpoint.address) {
            request.headers_mut().insert(header::HOST, host);
        }
    }
    Ok(request)
}
