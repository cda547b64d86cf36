//! The stages of the request path, one module each, in the order `proxy.rs`
//! composes them:
//!
//! | stage | module | what it does |
//! |---|---|---|
//! | trace | [`trace`] | the trace context: read or started; sent on with each attempt |
//! | framing | [`framing`] | refuses a connection whose heads carried both framings |
//! | route | [`route`] | finds the route; names the API |
//! | sample | [`sample`] | head sampling: the route decides for a trace the caller did not |
//! | access | [`access`] | access lists and bans |
//! | limits | [`limits`] | rate limits (may delay) and connection limits |
//! | target | [`target`] | which of the route's services |
//! | rewrite | [`rewrite`] | the upstream request head: path, proxy headers, protocol |
//! | body | [`body`] | the body's size limit; whether the request may be sent again |
//! | admit | [`admit`] | adaptive concurrency limits and the service's breaker |
//! | pick | [`pick`] | an instance, around open breakers and instances tried |
//! | attempt | [`attempt`] | one upstream attempt, its outcome recorded |
//! | retry | [`retry`] | whether to try again (conditions × budget) |
//! | fallback | [`fallback`] | a static answer or another service when the upstream fails |
//! | respond | [`respond`] | the client's answer: headers, version, upgrades, held places |
//! | record | [`record`] | tells the observer (metrics) about the request |
//! | spans | [`spans`] | what the request's SERVER and CLIENT spans are made of, to the span sink |
//!
//! Each stage reads and fills in the [`RequestCtx`](crate::ctx::RequestCtx) and
//! fails with a [`ProxyError`](crate::error::ProxyError), answered in one place.

pub(crate) mod access;
pub(crate) mod admit;
pub(crate) mod attempt;
pub(crate) mod body;
pub(crate) mod fallback;
pub(crate) mod framing;
pub(crate) mod limits;
pub(crate) mod pick;
pub(crate) mod record;
pub(crate) mod respond;
pub(crate) mod retry;
pub(crate) mod rewrite;
pub(crate) mod route;
pub(crate) mod sample;
pub(crate) mod spans;
pub(crate) mod target;
pub(crate) mod trace;
