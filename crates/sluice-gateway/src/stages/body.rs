//! Stage body: a body declared larger than the route's `max_body_bytes` is
//! refused at once (413); one streamed without a length is cut off at the limit.
//! A request may be sent again only when it is idempotent and has no body
//! (bodies are streamed, never kept).

use http_body_util::BodyExt;
use hyper::body::Body as _;
use hyper::body::Incoming;
use hyper::header;
use hyper::Method;

use crate::error::{ErrorKind, ProxyError};
use crate::proxy_body::{BoxError, ProxyBody};
use crate::stages::rewrite::Outbound;
use crate::table::CompiledRoute;

/// The body to send on the first attempt: `None` when the request has none and
/// may be retried (each attempt then sends an empty body).
pub(crate) fn limit(
    route: &CompiledRoute,
    outbound: &mut Outbound,
    body: Incoming,
) -> Result<Option<ProxyBody>, ProxyError> {
    let headers = &outbound.parts.headers;
    // The body itself says whether there is one (its framing headers are gone by now).
    outbound.retryable =
        route.retries.attempts > 0 && is_idempotent(&outbound.parts.method) && body.is_end_stream();
    if let Some(limit) = route.max_body_bytes {
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(length) = declared.filter(|length| *length > limit) {
            return Err(ProxyError::client(
                ErrorKind::BodyTooLarge,
                format!("the body is {length} bytes; this route takes at most {limit}"),
            ));
        }
    }
    if outbound.retryable {
        return Ok(None);
    }
    Ok(Some(match route.max_body_bytes {
        Some(limit) => {
            http_body_util::Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX)).boxed()
        }
        None => body.map_err(BoxError::from).boxed(),
    }))
}

fn is_idempotent(method: &Method) -> bool {
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

/// Whether a failed upstream call was the request body going over its limit.
pub(crate) fn is_length_limit(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(error) = source {
        if error.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = error.source();
    }
    false
}
