//! Stage framing: a request on a connection where any head carried both
//! Content-Length and Transfer-Encoding (request smuggling; see `sniff`) is
//! refused and the connection closed. HTTP/2 frames its own bodies.

use std::sync::atomic::Ordering;

use hyper::Version;

use crate::ctx::RequestCtx;
use crate::error::{ErrorKind, ProxyError};

pub(crate) fn check(ctx: &RequestCtx<'_>, version: Version) -> Result<(), ProxyError> {
    if version != Version::HTTP_2 && ctx.conn.smuggling.load(Ordering::Acquire) {
        return Err(ProxyError::client(
            ErrorKind::AmbiguousLength,
            "a request on this connection has both Content-Length and Transfer-Encoding",
        ));
    }
    Ok(())
}
