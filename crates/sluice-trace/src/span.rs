//! A span as Sluice keeps it and answers it: Zipkin v2's model (what the Zipkin
//! query API returns, and what OTLP spans are mapped to), with its validation.
//!
//! Units are Zipkin's: `timestamp` in epoch microseconds, `duration` in
//! microseconds (at least 1), ids in lowercase hex — the trace id 16 or 32
//! digits, span ids 16.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{SpanId, TraceId};

/// A span's role in an RPC or a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Kind {
    /// The caller's side.
    Client,
    /// The callee's side.
    Server,
    /// A message sent.
    Producer,
    /// A message received.
    Consumer,
}

/// Where a span happened, or whom it talked to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// The service (lowercase in Zipkin's convention).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// IPv4 address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<String>,
    /// IPv6 address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<String>,
    /// Port (never 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// An event in a span's life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Annotation {
    /// Epoch microseconds.
    pub timestamp: u64,
    /// What happened.
    pub value: String,
}

/// One span.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Span {
    /// 16 or 32 lowercase hex digits.
    #[schemars(regex(pattern = r"^[0-9a-fA-F]{16}([0-9a-fA-F]{16})?$"))]
    pub trace_id: String,
    /// 16 lowercase hex digits.
    #[schemars(regex(pattern = r"^[0-9a-fA-F]{16}$"))]
    pub id: String,
    /// The parent's id; absent on a root span.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-fA-F]{16}$"))]
    pub parent_id: Option<String>,
    /// The operation (for the gateway: the API, `get /articles/{id}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its role; absent for a local span.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<Kind>,
    /// Start, epoch microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
    /// Microseconds (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<u64>,
    /// Where it happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_endpoint: Option<Endpoint>,
    /// Whom it talked to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_endpoint: Option<Endpoint>,
    /// Events.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub annotations: Vec<Annotation>,
    /// String tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Forced sampling.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub debug: bool,
    /// A server span that shares its client's id (B3).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shared: bool,
}

/// Limits on one span, so a hostile one cannot take the memory.
pub const MAX_TAGS: usize = 128;
/// The longest tag value kept (longer ones are cut).
pub const MAX_TAG_VALUE: usize = 4096;
/// The most annotations kept.
pub const MAX_ANNOTATIONS: usize = 128;
/// The longest name.
pub const MAX_NAME: usize = 1024;

impl Span {
    /// Checks the ids and units, and brings the span within the limits: ids to
    /// lowercase (Zipkin's readers accept either), service names lowercase, a 64-bit trace id kept as
    /// 16 digits, a duration of 0 raised to 1, tags and annotations beyond the
    /// limits dropped, long values cut. Why a span is refused, otherwise.
    pub fn normalize(&mut self) -> Result<(), String> {
        self.trace_id.make_ascii_lowercase();
        self.id.make_ascii_lowercase();
        if TraceId::from_hex(&self.trace_id).is_none() {
            return Err(format!(
                "traceId {:?} is not 16 or 32 hex digits (and not all zero)",
                shorten(&self.trace_id)
            ));
        }
        if SpanId::from_hex(&self.id).is_none() {
            return Err(format!(
                "id {:?} is not 16 hex digits (and not all zero)",
                shorten(&self.id)
            ));
        }
        if let Some(parent) = &mut self.parent_id {
            parent.make_ascii_lowercase();
            if SpanId::from_hex(parent).is_none() {
                return Err(format!(
                    "parentId {:?} is not 16 hex digits (and not all zero)",
                    shorten(parent)
                ));
            }
        }
        if self.duration == Some(0) {
            self.duration = Some(1);
        }
        if let Some(name) = &mut self.name {
            truncate(name, MAX_NAME);
        }
        if self.tags.len() > MAX_TAGS {
            let keep: Vec<String> = self.tags.keys().take(MAX_TAGS).cloned().collect();
            self.tags.retain(|key, _| keep.contains(key));
        }
        for value in self.tags.values_mut() {
            truncate(value, MAX_TAG_VALUE);
        }
        self.annotations.truncate(MAX_ANNOTATIONS);
        for annotation in &mut self.annotations {
            truncate(&mut annotation.value, MAX_TAG_VALUE);
        }
        for endpoint in [&mut self.local_endpoint, &mut self.remote_endpoint]
            .into_iter()
            .flatten()
        {
            if endpoint.port == Some(0) {
                endpoint.port = None;
            }
            // Zipkin's model: service names are lowercase.
            if let Some(service) = &mut endpoint.service_name {
                service.make_ascii_lowercase();
                truncate(service, MAX_NAME);
            }
        }
        Ok(())
    }

    /// The service that recorded the span.
    pub fn service(&self) -> Option<&str> {
        self.local_endpoint.as_ref()?.service_name.as_deref()
    }

    /// Whether the span says it failed (Zipkin's `error` tag).
    pub fn is_error(&self) -> bool {
        self.tags.contains_key("error")
    }
}

/// A trace's start (epoch µs) and length (µs), from its spans' times.
pub fn extent(spans: &[Span]) -> (u64, u64) {
    let start = spans.iter().filter_map(|s| s.timestamp).min().unwrap_or(0);
    let end = spans
        .iter()
        .filter_map(|s| Some(s.timestamp? + s.duration.unwrap_or(0)))
        .max()
        .unwrap_or(start);
    (start, end.saturating_sub(start))
}

/// A trace's root: the span without a parent, else the first.
pub fn root(spans: &[Span]) -> Option<&Span> {
    spans
        .iter()
        .find(|s| s.parent_id.is_none())
        .or_else(|| spans.first())
}

fn shorten(text: &str) -> String {
    text.chars().take(64).collect()
}

/// Cuts `text` to at most `max` bytes, at a character boundary.
fn truncate(text: &mut String, max: usize) {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipkin_v2_json_reads_and_writes_as_zipkin_does() {
        let text = r#"{"traceId":"5982FE77008310CC80F1DA5E10147517","id":"bd7a977555f6b982","parentId":"90394f6bcffb5d13",
            "name":"get /api","kind":"SERVER","timestamp":1472470996199000,"duration":0,
            "localEndpoint":{"serviceName":"frontend","ipv4":"192.168.99.1","port":0},
            "remoteEndpoint":{"ipv6":"::1","port":63542},
            "annotations":[{"timestamp":1472470996238000,"value":"ws"}],
            "tags":{"http.path":"/api","error":"500"},"shared":true,"unknown":1}"#;
        let mut span: Span = serde_json::from_str(text).unwrap();
        span.normalize().unwrap();
        assert_eq!(span.trace_id, "5982fe77008310cc80f1da5e10147517");
        assert_eq!(span.kind, Some(Kind::Server));
        assert_eq!(span.duration, Some(1), "a zero duration is 1 µs");
        assert_eq!(
            span.local_endpoint.as_ref().unwrap().port,
            None,
            "no port 0"
        );
        assert_eq!(span.service(), Some("frontend"));
        assert!(span.is_error() && span.shared && !span.debug);
        let written = serde_json::to_value(&span).unwrap();
        assert_eq!(written["kind"], "SERVER");
        assert_eq!(written["localEndpoint"]["serviceName"], "frontend");
        assert!(
            written.get("debug").is_none(),
            "false booleans are left out"
        );
        assert!(written["localEndpoint"].get("port").is_none());
    }

    #[test]
    fn bad_ids_are_refused_and_big_spans_cut() {
        let span = |trace: &str, id: &str, parent: Option<&str>| Span {
            trace_id: trace.into(),
            id: id.into(),
            parent_id: parent.map(Into::into),
            name: None,
            kind: None,
            timestamp: None,
            duration: None,
            local_endpoint: None,
            remote_endpoint: None,
            annotations: Vec::new(),
            tags: BTreeMap::new(),
            debug: false,
            shared: false,
        };
        let good = "bd7a977555f6b982";
        for (trace, id, parent) in [
            ("123", good, None),
            ("0000000000000000", good, None),
            (good, "0000000000000000", None),
            (good, "bd7a977555f6b98", None),
            (good, good, Some("xyz")),
            (&"a".repeat(40), good, None),
        ] {
            let error = span(trace, id, parent).normalize().unwrap_err();
            assert!(error.contains("hex digits"), "{error}");
        }
        let mut big = span(good, good, None);
        for i in 0..1000 {
            big.tags.insert(format!("k{i:04}"), "v".repeat(10_000));
        }
        big.annotations = (0..1000)
            .map(|i| Annotation {
                timestamp: i,
                value: "é".repeat(5000),
            })
            .collect();
        big.normalize().unwrap();
        assert_eq!(big.tags.len(), MAX_TAGS);
        assert!(big.tags.values().all(|v| v.len() == MAX_TAG_VALUE));
        assert_eq!(big.annotations.len(), MAX_ANNOTATIONS);
        assert!(big
            .annotations
            .iter()
            .all(|a| a.value.len() <= MAX_TAG_VALUE));
    }
}
