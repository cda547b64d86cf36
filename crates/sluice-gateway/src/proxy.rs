//! The request path, composed from its stages (one module each under `stages/`;
//! `docs/ARCHITECTURE.md` draws the same order). It reads the current snapshot
//! through an `ArcSwap` (no lock), keeps what the stages share in one
//! [`RequestCtx`], allocates little, and does no I/O but the proxied request.
//! Every way a stage can fail is a [`ProxyError`], answered in one place.

use std::convert::Infallible;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, Response};

use crate::ctx::{Connection, RequestCtx};
use crate::error::ProxyError;
use crate::proxy_body::ProxyBody;
use crate::snapshot::Shared;
use crate::stages::fallback::{self, Fallback};
use crate::stages::rewrite::Outbound;
use crate::stages::{
    access, admit, attempt, body, framing, limits, pick, record, respond, retry, rewrite, route,
    sample, spans, target, trace,
};
use crate::table::{CompiledRoute, Target};
use crate::upstream::UpstreamBody;

/// Handles one request: the stages, then the answer, then the record.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
    conn: Arc<Connection>,
) -> Result<Response<ProxyBody>, Infallible> {
    let snapshot = shared.snapshot.load_full();
    let observer = shared.observer.as_deref();
    let sink = shared.spans.as_deref();
    let mut ctx = RequestCtx::new(
        &snapshot,
        &conn,
        &shared.rejections,
        observer.is_some() || sink.is_some(),
    );
    // Only an observer or a span sink needs the method once the request has gone on.
    let method = (observer.is_some() || sink.is_some()).then(|| request.method().clone());
    // The URI is shared (a refcount), kept for the spans of a sampled trace.
    let uri = sink.map(|_| request.uri().clone());
    // Recorded when the trace turns out sampled (the trace stage says).
    ctx.record_spans = sink.is_some();
    let response = match proxy(&mut ctx, request).await {
        Ok(response) => response,
        Err(error) => respond::error(&mut ctx, error),
    };
    let mut response = respond::hold_permits(&mut ctx, response);
    if let Some(trace) = &ctx.trace {
        response
            .headers_mut()
            .insert(trace::X_SLUICE_TRACE_ID, trace.header());
    }
    if let (Some(observer), Some(method)) = (observer, &method) {
        record::observe(observer, &ctx, method, &response);
    }
    let sampled = ctx.trace.as_ref().is_some_and(|t| t.sampled);
    if let (Some(sink), Some(method), true) = (sink, &method, ctx.record_spans && sampled) {
        if let Some(spans) = spans::collect(&mut ctx, method, uri, &response) {
            sink.record(spans);
        }
    }
    Ok(response)
}

/// The stages of one request, in order.
async fn proxy(
    ctx: &mut RequestCtx<'_>,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let (parts, body) = request.into_parts();
    // trace: the trace the request belongs to, or a new one.
    let trace = trace::Trace::start(&parts.headers);
    if trace.decided {
        ctx.record_spans &= trace.sampled;
    }
    ctx.trace = Some(trace);
    // framing: a connection whose heads carried both framings is refused.
    framing::check(ctx, parts.version)?;
    // route: the first route that matches; the API the request calls.
    let route = route::find(ctx, &parts)?;
    // sample: the route decides for a trace the caller did not.
    sample::decide(ctx, route);
    // access: access lists and bans.
    access::check(ctx, route, &parts)?;
    // limits: rate limits (which may delay) and connection limits.
    limits::check(ctx, route, &parts).await?;
    // target: which of the route's services.
    let target = target::choose(ctx, route)?;
    // rewrite: the upstream request head (path, protocol, proxy headers).
    let mut outbound = rewrite::outbound(ctx, route, parts)?;
    // body: the route's size limit; whether the request may be sent again.
    let mut body = body::limit(route, &mut outbound, body)?;
    // admit → pick → attempt → retry, until an answer or a final failure.
    route.retry_budget.deposit();
    let error = match call(ctx, route, target, &mut outbound, &mut body).await {
        Ok(response) => return Ok(respond::upstream(response, &mut outbound)),
        Err(error) => error,
    };
    // fallback: a static answer or another service instead of the failure.
    match fallback::choose(route, error, &outbound, body.is_some()) {
        Fallback::None(error) => Err(error),
        Fallback::Static(response) => Ok(response),
        Fallback::Service(fallback, why) => {
            // The second call is the cold path: boxed.
            let response = Box::pin(call(ctx, route, fallback, &mut outbound, &mut body)).await?;
            Ok(fallback::mark(
                respond::upstream(response, &mut outbound),
                why,
            ))
        }
    }
}

/// Sends the request to one of `target`'s instances: admitted by the limits and
/// the service's breaker, then picked, attempted and retried.
async fn call(
    ctx: &mut RequestCtx<'_>,
    route: &CompiledRoute,
    target: &Target,
    outbound: &mut Outbound,
    body: &mut Option<ProxyBody>,
) -> Result<Response<UpstreamBody>, ProxyError> {
    let admitted = admit::admit(ctx, route, target)?;
    let keep_headers = retry::keeps_headers(route, outbound);
    let mut excluded = pick::Excluded::default();
    let mut attempts = 0;
    loop {
        let picked = pick::next(ctx, target, &outbound.parts, &mut excluded)?;
        attempts += 1;
        let attempted =
            attempt::send(ctx, route, target, picked, outbound, body, keep_headers).await;
        let may_resend = outbound.retryable && !outbound.sent;
        if retry::again(route, may_resend, attempted.condition, attempts) {
            continue;
        }
        if let (Some(breaker), Some(outcome)) = (&target.guards.breaker, attempted.outcome) {
            let ended_ms = crate::clock::Clock::at(attempted.ended).ms;
            breaker.record(
                ended_ms,
                outcome,
                attempted.latency_us,
                admitted.service_trial,
            );
        }
        admitted.finish(attempted.condition.is_none(), attempted.ended);
        return attempted.result;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future an async function returns, without calling it.
    fn future_size<A, B, C, F, Fut>(_: F) -> usize
    where
        F: Fn(A, B, C) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }

    #[test]
    fn the_request_future_stays_small() {
        // The service boxes it (hyper then holds 8 bytes per connection or stream),
        // but each request still allocates and fills it; cold paths (connecting,
        // rate-limit delays, the fallback service's call) are boxed so that requests
        // do not carry them. Measured: 3640 bytes, one upstream attempt about 1700.
        let size = future_size(handle);
        assert!(size <= 4096, "the request future grew to {size} bytes");
        let snapshot = crate::snapshot::Snapshot::default();
        let rejections = crate::protect::Rejections::default();
        let conn = Connection::new("10.0.0.1:1".parse().unwrap(), "http", Default::default());
        let mut ctx = RequestCtx::new(&snapshot, &conn, &rejections, false);
        let route =
            crate::table::test_route("r", r#"{"match": {"path_prefix": "/"}, "service": "s"}"#);
        let target = crate::table::test_target(&["a"], None);
        let mut outbound =
            rewrite::outbound(&ctx, &route, Request::new(()).into_parts().0).unwrap();
        let mut body = None;
        let picked = pick::Picked {
            index: 0,
            trial: false,
        };
        let attempt = std::mem::size_of_val(&attempt::send(
            &mut ctx,
            &route,
            &target,
            picked,
            &mut outbound,
            &mut body,
            false,
        ));
        assert!(
            attempt <= 2048,
            "one attempt's future grew to {attempt} bytes"
        );
    }
}
