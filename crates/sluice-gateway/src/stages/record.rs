//! Stage record: tells the observer (the metrics recorder) about the answered
//! request — where it went, as the context's indices say, its API, status,
//! latency (to the response head: the last attempt's end, else now), attempts and
//! rejection. Nothing is computed for it when no observer is set.

use hyper::{Method, Response};

use crate::ctx::RequestCtx;
use crate::observe::{RequestObserver, RequestRecord};
use crate::proxy_body::ProxyBody;

pub(crate) fn observe(
    observer: &dyn RequestObserver,
    ctx: &RequestCtx<'_>,
    method: &Method,
    response: &Response<ProxyBody>,
) {
    let (route, target, endpoint) = ctx.reached();
    let head_at = ctx.last_attempt_end.unwrap_or_else(crate::clock::instant);
    observer.on_response(&RequestRecord {
        route: route.map(|r| (r.namespace.as_str(), r.name.as_str())),
        service: target.map(|t| (t.namespace.as_str(), t.service.as_str())),
        instance: endpoint.map(|e| e.id.as_str()),
        method,
        api: ctx.api.as_deref(),
        status: response.status().as_u16(),
        latency: head_at.saturating_duration_since(ctx.clock.at),
        attempts: ctx.attempts,
        rejected: ctx.rejected,
        trace_id: ctx
            .trace
            .as_ref()
            .filter(|t| t.sampled)
            .map(|t| t.trace_id.get()),
    });
}
