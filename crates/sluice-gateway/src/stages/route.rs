//! Stage route: the first route that matches the request (see
//! [`sluice_model::RouteSpec`] for precedence), and the API it calls.

use hyper::http::request::Parts;

use crate::ctx::RequestCtx;
use crate::error::{ErrorKind, ProxyError};
use crate::table::CompiledRoute;

pub(crate) fn find<'s>(
    ctx: &mut RequestCtx<'s>,
    parts: &Parts,
) -> Result<&'s CompiledRoute, ProxyError> {
    let Some((index, route)) = ctx.snapshot.table.find(parts) else {
        return Err(ProxyError::gateway(
            ErrorKind::NoRoute,
            "no route matches this request",
        ));
    };
    ctx.route = Some(index);
    if ctx.name_api {
        ctx.api = Some(route.apis.name(&parts.method, parts.uri.path()));
    }
    Ok(route)
}
