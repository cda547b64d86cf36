//! Stage spans: for a sampled trace when a span sink is set, what the
//! request's spans are made of — ids, the API's name, the method and URI, the
//! status, times, the route's and service's names and the attempts — taken as
//! a [`RequestSpans`] (refcount bumps and moves; no string is built on the
//! request path). The sink builds the spans later, off the gateway's threads
//! (`RequestSpans::build`): one SERVER span named by the API (`GET
//! /articles/{id}`; the method alone when no route matched), with the route,
//! service, status, client address, rejection reason and fallback as tags;
//! one CLIENT span per upstream attempt, a child of the SERVER span, with the
//! instance as remote endpoint (so retries show as retries).

use std::sync::Arc;

use hyper::{Method, Response, Uri};

use crate::ctx::RequestCtx;
use crate::observe::RequestSpans;
use crate::proxy_body::ProxyBody;

/// What the request's spans are made of, for the span sink.
pub(crate) fn collect(
    ctx: &mut RequestCtx<'_>,
    method: &Method,
    uri: Option<Uri>,
    response: &Response<ProxyBody>,
) -> Option<RequestSpans> {
    let trace = ctx.trace.as_ref()?;
    let (route, target, _) = ctx.reached();
    Some(RequestSpans {
        trace_id: trace.trace_id,
        span_id: trace.span_id,
        parent_id: trace.parent_id,
        debug: trace.debug,
        api: ctx.api.clone(),
        method: method.clone(),
        uri: uri.unwrap_or_default(),
        status: response.status().as_u16(),
        client: ctx.conn.client,
        arrived: ctx.clock.at,
        answered: crate::clock::instant(),
        route: route.map(|r| Arc::clone(&r.span_name)),
        service: target.map(|t| Arc::clone(&t.span_names)),
        rejected: ctx.rejected,
        fallback: response.headers().get("x-sluice-fallback").cloned(),
        attempts: std::mem::take(&mut ctx.attempt_spans),
    })
}
