//! Why the gateway answers a request itself: one [`ProxyError`] for every stage.
//!
//! An error says what went wrong ([`ErrorKind`]), which side failed ([`Side`]),
//! whether a retry may help (decided where the error arises: a connect failure
//! may be retried on another instance, a client's bad input never), and a message
//! with its context. It is turned into the client's answer in one place,
//! [`ProxyError::into_response`]: a JSON `{"error": {"code", "message"}}` body,
//! with `x-sluice-rejected` naming the reason of a refusal.

use std::borrow::Cow;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};
use sluice_model::RetryOn;

use crate::protect::Reason;
use crate::proxy_body::ProxyBody;

/// The header naming why the gateway refused or gave up on a request.
pub(crate) const X_SLUICE_REJECTED: HeaderName = HeaderName::from_static("x-sluice-rejected");

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// A head on the connection had both Content-Length and Transfer-Encoding.
    AmbiguousLength,
    /// No route matches.
    NoRoute,
    /// The route has no service to send to.
    NoService,
    /// The request body is over the route's `max_body_bytes`.
    BodyTooLarge,
    /// The request's path cannot be forwarded.
    BadPath,
    /// Protection refused the request (access list, ban, rate, connections,
    /// concurrency, breaker), with the status to answer.
    Refused(Reason, StatusCode),
    /// No instance of the service can take the request.
    NoHealthy,
    /// No connection to the instance could be made.
    Connect,
    /// The connection to the instance failed before an answer came.
    Reset,
    /// The instance did not answer within the request timeout.
    Timeout,
}

/// Which side failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// The client sent something the gateway will not forward.
    Client,
    /// The gateway's own rules (routes, protection) answered.
    Gateway,
    /// The upstream instance failed.
    Upstream,
}

/// A request the gateway answers itself.
#[derive(Debug)]
pub(crate) struct ProxyError {
    pub kind: ErrorKind,
    pub side: Side,
    /// The retry condition this error meets, when sending again may help.
    pub retry: Option<RetryOn>,
    /// What happened, for the client's message.
    pub context: Cow<'static, str>,
}

impl ProxyError {
    /// An error of the client's request.
    pub fn client(kind: ErrorKind, context: impl Into<Cow<'static, str>>) -> Self {
        ProxyError {
            kind,
            side: Side::Client,
            retry: None,
            context: context.into(),
        }
    }

    /// An answer of the gateway's own rules.
    pub fn gateway(kind: ErrorKind, context: impl Into<Cow<'static, str>>) -> Self {
        ProxyError {
            kind,
            side: Side::Gateway,
            retry: None,
            context: context.into(),
        }
    }

    /// A refusal by protection.
    pub fn refused(
        reason: Reason,
        status: StatusCode,
        context: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::gateway(ErrorKind::Refused(reason, status), context)
    }

    /// A failure of the upstream; `Connect`, `Reset` and `Timeout` meet their
    /// retry conditions.
    pub fn upstream(kind: ErrorKind, context: impl Into<Cow<'static, str>>) -> Self {
        let retry = match kind {
            ErrorKind::Connect => Some(RetryOn::ConnectFailure),
            ErrorKind::Reset => Some(RetryOn::Reset),
            ErrorKind::Timeout => Some(RetryOn::Timeout),
            _ => None,
        };
        ProxyError {
            kind,
            side: Side::Upstream,
            retry,
            context: context.into(),
        }
    }

    /// The status answered.
    pub fn status(&self) -> StatusCode {
        match self.kind {
            ErrorKind::AmbiguousLength | ErrorKind::BadPath => StatusCode::BAD_REQUEST,
            ErrorKind::NoRoute => StatusCode::NOT_FOUND,
            ErrorKind::NoService | ErrorKind::NoHealthy => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::Refused(_, status) => status,
            ErrorKind::Connect | ErrorKind::Reset => StatusCode::BAD_GATEWAY,
            ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The error code of the JSON answer.
    pub fn code(&self) -> &'static str {
        match self.kind {
            ErrorKind::AmbiguousLength => "ambiguous_length",
            ErrorKind::NoRoute => "no_route",
            ErrorKind::NoService => "no_upstream",
            ErrorKind::BodyTooLarge => "body_too_large",
            ErrorKind::BadPath => "bad_path",
            ErrorKind::Refused(Reason::Rate, _) => "rate_limited",
            ErrorKind::Refused(..) => "rejected",
            ErrorKind::NoHealthy => "no_healthy_upstream",
            ErrorKind::Connect | ErrorKind::Reset => "upstream_failed",
            ErrorKind::Timeout => "upstream_timeout",
        }
    }

    /// The reason counted among the gateway's rejections, if this is one.
    pub fn reason(&self) -> Option<Reason> {
        match self.kind {
            ErrorKind::Refused(reason, _) => Some(reason),
            ErrorKind::Timeout => Some(Reason::Timeout),
            _ => None,
        }
    }

    /// Whether a route's fallback answers in its place: not for the client's own
    /// mistakes, nor for refusals that keep a client out (access, bans, rate and
    /// connection limits), which must not be bypassed.
    pub fn may_fall_back(&self) -> bool {
        match self.kind {
            ErrorKind::Refused(reason, _) => {
                matches!(reason, Reason::Concurrency | Reason::Breaker)
            }
            ErrorKind::NoHealthy | ErrorKind::Connect | ErrorKind::Reset | ErrorKind::Timeout => {
                true
            }
            _ => false,
        }
    }

    /// Why a fallback answered (`x-sluice-fallback`).
    pub fn fallback_label(&self) -> &'static str {
        match self.kind {
            ErrorKind::Refused(reason, _) => reason.as_str(),
            ErrorKind::Timeout => "timeout",
            ErrorKind::NoHealthy => "no_healthy_upstream",
            _ => "upstream_failed",
        }
    }

    /// The client's answer.
    pub fn into_response(self) -> Response<ProxyBody> {
        let status = self.status();
        let code = self.code();
        let mut response = json_error(status, code, &self.context);
        let headers = response.headers_mut();
        match self.kind {
            ErrorKind::Refused(reason, _) => {
                headers.insert(X_SLUICE_REJECTED, HeaderValue::from_static(reason.as_str()));
            }
            ErrorKind::Timeout => {
                headers.insert(X_SLUICE_REJECTED, HeaderValue::from_static("timeout"));
            }
            ErrorKind::AmbiguousLength => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({:?}): {}", self.code(), self.side, self.context)
    }
}

/// A JSON error answered by the gateway itself.
pub(crate) fn json_error(status: StatusCode, code: &str, message: &str) -> Response<ProxyBody> {
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

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer(error: ProxyError) -> (StatusCode, hyper::HeaderMap, serde_json::Value) {
        let response = error.into_response();
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            serde_json::from_slice(&bytes).unwrap(),
        )
    }

    #[tokio::test]
    async fn each_error_becomes_its_status_code_and_rejection_header() {
        let cases = [
            (
                ProxyError::refused(Reason::Rate, StatusCode::TOO_MANY_REQUESTS, "rate"),
                429,
                "rate_limited",
                Some("rate"),
            ),
            (
                ProxyError::refused(Reason::Breaker, StatusCode::SERVICE_UNAVAILABLE, "open"),
                503,
                "rejected",
                Some("breaker"),
            ),
            (
                ProxyError::upstream(ErrorKind::Timeout, "slow"),
                504,
                "upstream_timeout",
                Some("timeout"),
            ),
            (
                ProxyError::upstream(ErrorKind::Connect, "refused"),
                502,
                "upstream_failed",
                None,
            ),
            (
                ProxyError::client(ErrorKind::BodyTooLarge, "big"),
                413,
                "body_too_large",
                None,
            ),
            (
                ProxyError::gateway(ErrorKind::NoRoute, "none"),
                404,
                "no_route",
                None,
            ),
        ];
        for (error, status, code, rejected) in cases {
            let message = error.context.to_string();
            let (got_status, headers, body) = answer(error).await;
            assert_eq!(got_status.as_u16(), status, "{code}");
            assert_eq!(body["error"]["code"], code);
            assert_eq!(body["error"]["message"], message.as_str());
            assert_eq!(
                headers
                    .get("x-sluice-rejected")
                    .map(|v| v.to_str().unwrap()),
                rejected,
                "{code}"
            );
        }
    }

    #[tokio::test]
    async fn an_ambiguous_length_closes_the_connection() {
        let (status, headers, _) =
            answer(ProxyError::client(ErrorKind::AmbiguousLength, "both")).await;
        assert_eq!(status, 400);
        assert_eq!(headers["connection"], "close");
    }

    #[test]
    fn retry_conditions_and_fallbacks_are_decided_where_the_error_arises() {
        let connect = ProxyError::upstream(ErrorKind::Connect, "x");
        assert_eq!(connect.retry, Some(RetryOn::ConnectFailure));
        assert!(connect.may_fall_back());
        assert_eq!(
            ProxyError::upstream(ErrorKind::Reset, "x").retry,
            Some(RetryOn::Reset)
        );
        let client = ProxyError::client(ErrorKind::BodyTooLarge, "x");
        assert_eq!(client.retry, None);
        assert!(!client.may_fall_back(), "a client's mistake is not hidden");
        let rate = ProxyError::refused(Reason::Rate, StatusCode::SERVICE_UNAVAILABLE, "x");
        assert!(!rate.may_fall_back(), "a rate limit is not bypassed");
        assert_eq!(rate.reason(), Some(Reason::Rate));
        let breaker = ProxyError::refused(Reason::Breaker, StatusCode::SERVICE_UNAVAILABLE, "x");
        assert!(breaker.may_fall_back());
        assert_eq!(breaker.fallback_label(), "breaker");
    }
}
