//! Stage target: which of the route's services takes the request (by the
//! route's weights).

use crate::ctx::RequestCtx;
use crate::error::{ErrorKind, ProxyError};
use crate::table::{CompiledRoute, Target};

pub(crate) fn choose<'s>(
    ctx: &mut RequestCtx<'s>,
    route: &'s CompiledRoute,
) -> Result<&'s Target, ProxyError> {
    match route.pick_target() {
        Some((index, target)) => {
            ctx.target = Some(index);
            Ok(target)
        }
        None => Err(ProxyError::gateway(
            ErrorKind::NoService,
            "the route has no service to send to",
        )),
    }
}
