//! Stage fallback: when the upstream gives no answer to pass on (a breaker or
//! concurrency refusal, a timeout, no healthy instance, a failed connection), the
//! route's fallback answers instead — a static answer, or another service when
//! the request can still be sent — marked `x-sluice-fallback: WHY`. Refusals that
//! keep a client out, and the client's own mistakes, are never replaced.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderName, HeaderValue};
use hyper::Response;

use crate::error::ProxyError;
use crate::proxy_body::ProxyBody;
use crate::stages::rewrite::Outbound;
use crate::table::{CompiledRoute, StaticAnswer, Target};

/// The header naming why a fallback answered.
pub(crate) const X_SLUICE_FALLBACK: HeaderName = HeaderName::from_static("x-sluice-fallback");

/// What answers a request whose upstream call failed.
pub(crate) enum Fallback<'s> {
    /// The route's static answer.
    Static(Response<ProxyBody>),
    /// The route's fallback service; the label says why.
    Service(&'s Target, &'static str),
    /// No fallback: the error is the answer.
    None(ProxyError),
}

pub(crate) fn choose<'s>(
    route: &'s CompiledRoute,
    error: ProxyError,
    outbound: &Outbound,
    body_unsent: bool,
) -> Fallback<'s> {
    if !error.may_fall_back() {
        return Fallback::None(error);
    }
    if let Some(answer) = &route.fallback {
        return Fallback::Static(static_answer(answer, error.fallback_label()));
    }
    match &route.fallback_target {
        Some(target) if body_unsent || (outbound.retryable && !outbound.sent) => {
            Fallback::Service(target, error.fallback_label())
        }
        _ => Fallback::None(error),
    }
}

/// Marks a fallback service's answer with why it was given.
pub(crate) fn mark(mut response: Response<ProxyBody>, why: &'static str) -> Response<ProxyBody> {
    response
        .headers_mut()
        .insert(X_SLUICE_FALLBACK, HeaderValue::from_static(why));
    response
}

/// A fallback's static answer, marked with why it was given.
fn static_answer(answer: &StaticAnswer, why: &'static str) -> Response<ProxyBody> {
    let mut response = Response::new(
        Full::new(Bytes::clone(&answer.body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = answer.status;
    for (name, value) in &answer.headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    mark(response, why)
}
