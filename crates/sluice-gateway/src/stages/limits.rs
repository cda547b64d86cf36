//! Stage limits: the route's rate limits (nginx `limit_req`: pass, delay or
//! reject; repeated rejections may ban a key) and connection limits, whose places
//! the request holds until its response body is sent.

use hyper::http::request::Parts;
use hyper::StatusCode;

use crate::ctx::RequestCtx;
use crate::error::ProxyError;
use crate::limit::{KeySource, Verdict};
use crate::protect::Reason;
use crate::stages::access::refused_before_target;
use crate::table::CompiledRoute;

pub(crate) async fn check(
    ctx: &mut RequestCtx<'_>,
    route: &CompiledRoute,
    parts: &Parts,
) -> Result<(), ProxyError> {
    let guards = &route.guards;
    if guards.limits.is_empty() && !guards.has_conns() {
        return Ok(());
    }
    let source = KeySource {
        parts,
        client: ctx.conn.client.ip(),
        route: &route.name,
        service: route.targets.first().map_or("", |t| t.service.as_str()),
    };
    if !guards.limits.is_empty() {
        match crate::limit::check(&guards.limits, &source, ctx.clock.ms) {
            Verdict::Pass => {}
            Verdict::Delay(delay) => {
                // Rare: boxed, so requests that are not delayed do not carry a timer.
                Box::pin(tokio::time::sleep(delay)).await;
                ctx.delayed = delay;
            }
            Verdict::Reject(status) => {
                return Err(refused_before_target(ctx, route, Reason::Rate, status))
            }
            Verdict::Banned => {
                return Err(refused_before_target(
                    ctx,
                    route,
                    Reason::Ban,
                    StatusCode::FORBIDDEN,
                ))
            }
        }
    }
    if guards.has_conns() {
        match guards.acquire_conns(&source) {
            Ok(permits) => ctx.conn_permits = permits,
            Err(status) => return Err(refused_before_target(ctx, route, Reason::Conn, status)),
        }
    }
    Ok(())
}
