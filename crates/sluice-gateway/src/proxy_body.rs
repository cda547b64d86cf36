//! The body type of every gateway response, and the error its frames carry.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;

/// The body of every gateway response.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// Errors carried by bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
