//! Stage respond: the client's answer. An upstream answer goes back with its
//! hop-by-hop headers stripped, in the client's protocol version, a `101` joined
//! to the client's upgraded connection; an error is counted (by reason), logged
//! and answered as JSON ([`ProxyError::into_response`]); connection-limit places
//! stay held until the response body has been sent.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Response, StatusCode, Version};
use sluice_guard::limit::ConnPermit;

use crate::ctx::RequestCtx;
use crate::error::ProxyError;
use crate::proxy_body::{BoxError, ProxyBody};
use crate::stages::rewrite::{strip_hop_by_hop, Outbound};
use crate::upstream::UpstreamBody;

/// The upstream's answer, as the client gets it.
pub(crate) fn upstream(
    response: Response<UpstreamBody>,
    outbound: &mut Outbound,
) -> Response<ProxyBody> {
    let mut response = response;
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_side) = outbound.client_upgrade.take() {
            return splice_upgrade(client_side, &mut response, outbound.client_version);
        }
    }
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    // Answer in the client's protocol version, whatever the upstream spoke.
    parts.version = outbound.client_version;
    Response::from_parts(parts, body.map_err(BoxError::from).boxed())
}

/// Counts a refusal or give-up once per request, by reason, and logs it.
pub(crate) fn count(ctx: &mut RequestCtx<'_>, error: &ProxyError) {
    let Some(reason) = error.reason() else {
        return;
    };
    if ctx.rejected.is_some() {
        return;
    }
    ctx.rejected = Some(reason);
    ctx.rejections.add(reason);
    let (route, _, _) = ctx.reached();
    tracing::debug!(
        target: "sluice_gateway::rejections",
        reason = reason.as_str(),
        namespace = route.map_or("", |r| r.namespace.as_str()),
        route = route.map_or("", |r| r.name.as_str()),
        client = %ctx.conn.client.ip(),
        "request rejected"
    );
}

/// The answer to an error.
pub(crate) fn error(ctx: &mut RequestCtx<'_>, error: ProxyError) -> Response<ProxyBody> {
    count(ctx, &error);
    error.into_response()
}

/// Holds the request's connection-limit places until the body is sent.
pub(crate) fn hold_permits(
    ctx: &mut RequestCtx<'_>,
    response: Response<ProxyBody>,
) -> Response<ProxyBody> {
    if ctx.conn_permits.is_empty() {
        return response;
    }
    let (parts, body) = response.into_parts();
    let guarded = GuardedBody {
        inner: body,
        _permits: std::mem::take(&mut ctx.conn_permits),
    };
    Response::from_parts(parts, guarded.boxed())
}

/// A response body that holds connection-limit places until it is done.
struct GuardedBody {
    inner: ProxyBody,
    _permits: Vec<ConnPermit>,
}

impl hyper::body::Body for GuardedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Answers the client's upgrade with the upstream's 101 and joins the two upgraded
/// connections, copying both ways until either side closes.
fn splice_upgrade(
    client_side: hyper::upgrade::OnUpgrade,
    response: &mut Response<UpstreamBody>,
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
