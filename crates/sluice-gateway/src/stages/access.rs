//! Stage access: the route's access lists and bans keep clients out.

use hyper::http::request::Parts;

use crate::ctx::RequestCtx;
use crate::error::ProxyError;
use crate::protect::Reason;
use crate::table::CompiledRoute;

pub(crate) fn check(
    ctx: &mut RequestCtx<'_>,
    route: &CompiledRoute,
    parts: &Parts,
) -> Result<(), ProxyError> {
    if !route.guards.has_access_rules() {
        return Ok(());
    }
    match route
        .guards
        .refuse_client(parts, ctx.conn.client.ip(), ctx.clock.unix_ms)
    {
        None => Ok(()),
        Some((reason, status)) => Err(refused_before_target(ctx, route, reason, status)),
    }
}

/// A refusal before a target is picked: counted against the route's first
/// service (the one rate-limit keys name), so its board shows the refusals.
pub(crate) fn refused_before_target(
    ctx: &mut RequestCtx<'_>,
    route: &CompiledRoute,
    reason: Reason,
    status: hyper::StatusCode,
) -> ProxyError {
    if !route.targets.is_empty() {
        ctx.target.get_or_insert(0);
    }
    let message = match reason {
        Reason::Acl => "the route's access list refuses this client",
        Reason::Ban => "this client is banned",
        Reason::Rate => "the route's rate limit is reached",
        Reason::Conn => "the route's connection limit is reached",
        _ => "refused",
    };
    ProxyError::refused(reason, status, message)
}
