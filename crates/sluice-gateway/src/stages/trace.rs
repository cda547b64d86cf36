//! Stage trace: the request's trace context. On arrival, the context the
//! request carries (W3C `traceparent` / `tracestate`, or B3 — see
//! `sluice_trace::propagation`) is read, or a trace is started; the gateway's
//! own span (the SERVER span of the request) gets an id. Each upstream attempt
//! gets a span id of its own (the CLIENT span), sent as the upstream's parent in
//! `traceparent` — and in B3 when the request spoke B3. The client gets the
//! trace id back in `x-sluice-trace-id`.
//!
//! Sampling: the caller's decision is kept; otherwise the matched route's head
//! sampling decides (stage `sample`, after routing: a share, and a floor per API);
//! a request that matches no route and brought no decision is not sampled.
//! The spans of a sampled trace are built by stage `spans`, when a span sink is
//! set.

use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use sluice_trace::propagation::{self, Format, Outgoing};
use sluice_trace::{SpanId, TraceId};

/// The response header that names the trace.
pub(crate) const X_SLUICE_TRACE_ID: HeaderName = HeaderName::from_static("x-sluice-trace-id");

/// A request's place in its trace.
#[derive(Debug, Clone)]
pub(crate) struct Trace {
    pub trace_id: TraceId,
    /// The gateway's SERVER span.
    pub span_id: SpanId,
    /// The caller's span (the SERVER span's parent), when the request named one.
    pub parent_id: Option<SpanId>,
    pub sampled: bool,
    /// Whether `sampled` is the caller's decision (else the route decides).
    pub decided: bool,
    pub debug: bool,
    /// `tracestate` to pass on (valid, normalised).
    pub tracestate: Option<String>,
    /// Whether the request's own `tracestate` was invalid (it is not passed on).
    pub drop_tracestate: bool,
    /// The B3 form the request spoke, and whether its B3 trace id was 64-bit.
    pub b3: Option<(Format, bool)>,
}

impl Trace {
    /// The context of a request with these headers.
    pub fn start(headers: &HeaderMap) -> Self {
        if !propagation::carries_context(headers) {
            return Trace {
                trace_id: TraceId::random(),
                span_id: SpanId::random(),
                parent_id: None,
                sampled: false,
                decided: false,
                debug: false,
                tracestate: None,
                drop_tracestate: false,
                b3: None,
            };
        }
        let incoming = propagation::extract(headers);
        let (ids, sampled, debug, tracestate) = match incoming {
            Some(incoming) => (
                incoming.ids,
                incoming.sampled,
                incoming.debug,
                incoming.tracestate,
            ),
            None => (None, None, false, None),
        };
        let (trace_id, parent_id) = match ids {
            Some((trace, parent)) => (trace, Some(parent)),
            None => (TraceId::random(), None),
        };
        let drop_tracestate = tracestate.is_none() && headers.contains_key(propagation::TRACESTATE);
        Trace {
            trace_id,
            span_id: SpanId::random(),
            parent_id,
            sampled: debug || sampled.unwrap_or(false),
            decided: debug || sampled.is_some(),
            debug,
            // A restarted trace does not carry the old one's state.
            tracestate: tracestate.filter(|_| parent_id.is_some()),
            drop_tracestate,
            b3: propagation::b3_form(headers),
        }
    }

    /// Sets the trace headers of an upstream attempt, whose CLIENT span gets a
    /// new id (returned): the upstream's parent.
    pub fn to_upstream(&self, headers: &mut HeaderMap) -> SpanId {
        let attempt = SpanId::random();
        if self.drop_tracestate {
            headers.remove(propagation::TRACESTATE);
        }
        propagation::inject(
            headers,
            &Outgoing {
                trace_id: self.trace_id,
                span_id: attempt,
                parent_id: Some(self.span_id),
                sampled: self.sampled,
                debug: self.debug,
                tracestate: self.tracestate.as_deref(),
                b3: self.b3.map(|(format, _)| format),
                b3_64_bit: self.b3.is_some_and(|(_, short)| short),
            },
        );
        attempt
    }

    /// The `x-sluice-trace-id` of the answer.
    pub fn header(&self) -> HeaderValue {
        HeaderValue::from_bytes(&self.trace_id.to_hex()).unwrap_or(HeaderValue::from_static("0"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn the_upstream_gets_the_callers_trace_with_the_attempt_as_parent() {
        let incoming = headers(&[
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            ("tracestate", "congo=t61rcWkgMzE"),
        ]);
        let trace = Trace::start(&incoming);
        assert_eq!(
            trace.trace_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(trace.parent_id.unwrap().to_string(), "00f067aa0ba902b7");
        assert!(trace.sampled);
        let mut out = incoming.clone();
        let first = trace.to_upstream(&mut out);
        let second = trace.to_upstream(&mut out);
        assert_ne!(first, second, "each attempt is a span of its own");
        assert_eq!(
            out["traceparent"],
            format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{second}-01").as_str()
        );
        assert_eq!(out["tracestate"], "congo=t61rcWkgMzE");
        assert_eq!(trace.header(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn a_request_without_a_context_starts_a_trace() {
        let trace = Trace::start(&HeaderMap::new());
        assert!(
            trace.parent_id.is_none() && !trace.decided,
            "the route decides"
        );
        let mut out = HeaderMap::new();
        trace.to_upstream(&mut out);
        assert!(out["traceparent"]
            .to_str()
            .unwrap()
            .starts_with(&format!("00-{}-", trace.trace_id)));
        assert!(out.get("b3").is_none() && out.get("tracestate").is_none());
        // An invalid traceparent restarts the trace and drops its tracestate.
        let bad = headers(&[
            (
                "traceparent",
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            ),
            ("tracestate", "congo=t61rcWkgMzE"),
        ]);
        let restarted = Trace::start(&bad);
        assert!(restarted.parent_id.is_none());
        let mut out = bad.clone();
        restarted.to_upstream(&mut out);
        assert!(out.get("tracestate").is_none(), "{out:?}");
    }

    #[test]
    fn b3_requests_get_b3_on_and_keep_their_decision() {
        let incoming = headers(&[("b3", "a3ce929d0e0e4736-00f067aa0ba902b7-0")]);
        let trace = Trace::start(&incoming);
        assert!(!trace.sampled);
        let mut out = incoming.clone();
        let attempt = trace.to_upstream(&mut out);
        assert_eq!(
            out["b3"],
            format!("a3ce929d0e0e4736-{attempt}-0-{}", trace.span_id).as_str()
        );
        assert_eq!(
            out["traceparent"],
            format!("00-0000000000000000a3ce929d0e0e4736-{attempt}-00").as_str()
        );
        let deny = Trace::start(&headers(&[("b3", "0")]));
        assert!(!deny.sampled && deny.parent_id.is_none());
    }
}
