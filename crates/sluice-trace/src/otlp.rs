//! OTLP traces, as an unmodified OpenTelemetry SDK exports them over HTTP:
//! `ExportTraceServiceRequest` in protobuf or in OTLP's JSON (which differs from
//! proto3's JSON: ids are hex, enums integers, 64-bit numbers strings or
//! numbers, keys lowerCamelCase, unknown fields ignored), mapped to Sluice's
//! [`Span`]s the way Zipkin's OpenTelemetry translation does.
//!
//! The protobuf messages are declared here with the field numbers of
//! `opentelemetry/proto/trace/v1/trace.proto` (no code generation). Decoding is
//! bounded by prost's recursion limit (nested attribute values) and by the body
//! limit the caller applies.

use std::collections::BTreeMap;

use prost::Message;
use serde::Deserialize;

use crate::span::{Annotation, Endpoint, Kind, Span};

/// `opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct ExportTraceServiceRequest {
    /// Spans by resource.
    #[prost(message, repeated, tag = "1")]
    pub resource_spans: Vec<ResourceSpans>,
}

/// Spans of one resource (a service instance).
#[derive(Clone, PartialEq, Message)]
pub struct ResourceSpans {
    /// The resource (its attributes name the service).
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    /// Spans by instrumentation scope.
    #[prost(message, repeated, tag = "2")]
    pub scope_spans: Vec<ScopeSpans>,
}

/// A resource.
#[derive(Clone, PartialEq, Message)]
pub struct Resource {
    /// Its attributes (`service.name`, ...).
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
}

/// Spans of one instrumentation scope.
#[derive(Clone, PartialEq, Message)]
pub struct ScopeSpans {
    /// The library that recorded them.
    #[prost(message, optional, tag = "1")]
    pub scope: Option<InstrumentationScope>,
    /// The spans.
    #[prost(message, repeated, tag = "2")]
    pub spans: Vec<OtlpSpan>,
}

/// An instrumentation scope.
#[derive(Clone, PartialEq, Message)]
pub struct InstrumentationScope {
    /// Its name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its version.
    #[prost(string, tag = "2")]
    pub version: String,
}

/// `opentelemetry.proto.trace.v1.Span`.
#[derive(Clone, PartialEq, Message)]
pub struct OtlpSpan {
    /// 16 bytes.
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    /// 8 bytes.
    #[prost(bytes = "vec", tag = "2")]
    pub span_id: Vec<u8>,
    /// W3C tracestate.
    #[prost(string, tag = "3")]
    pub trace_state: String,
    /// 8 bytes, or empty for a root span.
    #[prost(bytes = "vec", tag = "4")]
    pub parent_span_id: Vec<u8>,
    /// The operation.
    #[prost(string, tag = "5")]
    pub name: String,
    /// 0 unspecified, 1 internal, 2 server, 3 client, 4 producer, 5 consumer.
    #[prost(int32, tag = "6")]
    pub kind: i32,
    /// Start, Unix nanoseconds.
    #[prost(fixed64, tag = "7")]
    pub start_time_unix_nano: u64,
    /// End, Unix nanoseconds.
    #[prost(fixed64, tag = "8")]
    pub end_time_unix_nano: u64,
    /// Attributes.
    #[prost(message, repeated, tag = "9")]
    pub attributes: Vec<KeyValue>,
    /// Events.
    #[prost(message, repeated, tag = "11")]
    pub events: Vec<Event>,
    /// Status.
    #[prost(message, optional, tag = "15")]
    pub status: Option<Status>,
}

/// A span event.
#[derive(Clone, PartialEq, Message)]
pub struct Event {
    /// When, Unix nanoseconds.
    #[prost(fixed64, tag = "1")]
    pub time_unix_nano: u64,
    /// What.
    #[prost(string, tag = "2")]
    pub name: String,
}

/// A span's status.
#[derive(Clone, PartialEq, Message)]
pub struct Status {
    /// Why it failed.
    #[prost(string, tag = "2")]
    pub message: String,
    /// 0 unset, 1 ok, 2 error.
    #[prost(int32, tag = "3")]
    pub code: i32,
}

/// An attribute.
#[derive(Clone, PartialEq, Message)]
pub struct KeyValue {
    /// The key.
    #[prost(string, tag = "1")]
    pub key: String,
    /// The value.
    #[prost(message, optional, tag = "2")]
    pub value: Option<AnyValue>,
}

/// An attribute value.
#[derive(Clone, PartialEq, Message)]
pub struct AnyValue {
    /// One of the kinds.
    #[prost(oneof = "Value", tags = "1, 2, 3, 4, 5, 6, 7")]
    pub value: Option<Value>,
}

/// The kinds of attribute value.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Value {
    /// A string.
    #[prost(string, tag = "1")]
    String(String),
    /// A boolean.
    #[prost(bool, tag = "2")]
    Bool(bool),
    /// An integer.
    #[prost(int64, tag = "3")]
    Int(i64),
    /// A float.
    #[prost(double, tag = "4")]
    Double(f64),
    /// A list.
    #[prost(message, tag = "5")]
    Array(ArrayValue),
    /// A map.
    #[prost(message, tag = "6")]
    KvList(KeyValueList),
    /// Bytes.
    #[prost(bytes = "vec", tag = "7")]
    Bytes(Vec<u8>),
}

/// A list value.
#[derive(Clone, PartialEq, Message)]
pub struct ArrayValue {
    /// The items.
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<AnyValue>,
}

/// A map value.
#[derive(Clone, PartialEq, Message)]
pub struct KeyValueList {
    /// The entries.
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<KeyValue>,
}

/// `ExportTraceServiceResponse`: `partial_success` when spans were refused.
#[derive(Clone, PartialEq, Message)]
pub struct ExportTraceServiceResponse {
    /// Set when some spans were refused.
    #[prost(message, optional, tag = "1")]
    pub partial_success: Option<PartialSuccess>,
}

/// `ExportTracePartialSuccess`.
#[derive(Clone, PartialEq, Message)]
pub struct PartialSuccess {
    /// Spans refused.
    #[prost(int64, tag = "1")]
    pub rejected_spans: i64,
    /// Why.
    #[prost(string, tag = "2")]
    pub error_message: String,
}

/// What a batch came to: the spans kept, and why the others were refused.
#[derive(Debug, Default)]
pub struct Decoded {
    /// Valid spans, normalised.
    pub spans: Vec<Span>,
    /// Spans refused.
    pub rejected: u64,
    /// The first reason one was refused.
    pub error: Option<String>,
}

/// Decodes a protobuf body. `Err`: the body is not an `ExportTraceServiceRequest`.
pub fn decode_protobuf(body: &[u8]) -> Result<Decoded, String> {
    let request = ExportTraceServiceRequest::decode(body)
        .map_err(|e| format!("the body is not an OTLP ExportTraceServiceRequest: {e}"))?;
    Ok(convert(request))
}

/// Decodes a JSON body (OTLP's JSON mapping). `Err`: it is not one.
pub fn decode_json(body: &[u8]) -> Result<Decoded, String> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err("the body is not OTLP JSON: it is not a JSON object".into());
    }
    let request: json::Request =
        serde_json::from_slice(body).map_err(|e| format!("the body is not OTLP JSON: {e}"))?;
    Ok(convert(request.into_proto()?))
}

fn convert(request: ExportTraceServiceRequest) -> Decoded {
    let mut decoded = Decoded::default();
    for resource_spans in request.resource_spans {
        let resource: Vec<KeyValue> = resource_spans
            .resource
            .map(|r| r.attributes)
            .unwrap_or_default();
        let service = resource
            .iter()
            .find(|kv| kv.key == "service.name")
            .map(|kv| text(kv.value.as_ref()))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown_service".to_owned());
        for scope_spans in resource_spans.scope_spans {
            let scope = scope_spans.scope;
            for span in scope_spans.spans {
                match to_span(span, &service, scope.as_ref()) {
                    Ok(span) => decoded.spans.push(span),
                    Err(error) => {
                        decoded.rejected += 1;
                        decoded.error.get_or_insert(error);
                    }
                }
            }
        }
    }
    decoded
}

/// Lowercase hex of an id's bytes (its length checked by the caller).
fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(crate::HEX[usize::from(byte >> 4)]));
        out.push(char::from(crate::HEX[usize::from(byte & 0xf)]));
    }
    out
}

fn to_span(
    span: OtlpSpan,
    service: &str,
    scope: Option<&InstrumentationScope>,
) -> Result<Span, String> {
    if span.trace_id.len() != 16 {
        return Err(format!(
            "a span's traceId has {} bytes, not 16",
            span.trace_id.len()
        ));
    }
    if span.span_id.len() != 8 {
        return Err(format!(
            "a span's spanId has {} bytes, not 8",
            span.span_id.len()
        ));
    }
    if !span.parent_span_id.is_empty() && span.parent_span_id.len() != 8 {
        return Err(format!(
            "a span's parentSpanId has {} bytes, not 8 or 0",
            span.parent_span_id.len()
        ));
    }
    let kind = match span.kind {
        2 => Some(Kind::Server),
        3 => Some(Kind::Client),
        4 => Some(Kind::Producer),
        5 => Some(Kind::Consumer),
        _ => None,
    };
    let mut tags = BTreeMap::new();
    let mut remote_service = None;
    for attribute in span.attributes.iter().take(crate::span::MAX_TAGS * 2) {
        let value = text(attribute.value.as_ref());
        if attribute.key == "peer.service" {
            remote_service = Some(value.clone());
        }
        tags.insert(attribute.key.clone(), value);
    }
    if let Some(scope) = scope.filter(|s| !s.name.is_empty()) {
        tags.insert("otel.scope.name".into(), scope.name.clone());
        if !scope.version.is_empty() {
            tags.insert("otel.scope.version".into(), scope.version.clone());
        }
    }
    if let Some(status) = &span.status {
        match status.code {
            1 => {
                tags.insert("otel.status_code".into(), "OK".into());
            }
            2 => {
                tags.insert("otel.status_code".into(), "ERROR".into());
                tags.insert("error".into(), status.message.clone());
            }
            _ => {}
        }
    }
    let start_us = span.start_time_unix_nano / 1000;
    let duration_us = span
        .end_time_unix_nano
        .saturating_sub(span.start_time_unix_nano)
        / 1000;
    let mut zipkin = Span {
        trace_id: hex(&span.trace_id),
        id: hex(&span.span_id),
        parent_id: (!span.parent_span_id.is_empty()).then(|| hex(&span.parent_span_id)),
        name: (!span.name.is_empty()).then_some(span.name),
        kind,
        timestamp: (start_us > 0).then_some(start_us),
        duration: (start_us > 0).then_some(duration_us.max(1)),
        local_endpoint: Some(Endpoint {
            service_name: Some(service.to_owned()),
            ..Endpoint::default()
        }),
        remote_endpoint: remote_service.map(|service| Endpoint {
            service_name: Some(service),
            ..Endpoint::default()
        }),
        annotations: span
            .events
            .into_iter()
            .take(crate::span::MAX_ANNOTATIONS)
            .map(|event| Annotation {
                timestamp: event.time_unix_nano / 1000,
                value: event.name,
            })
            .collect(),
        tags,
        debug: false,
        shared: false,
    };
    zipkin.normalize()?;
    Ok(zipkin)
}

/// An attribute value as a Zipkin tag: strings as they are, the rest as JSON.
fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        None => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Int(i)) => i.to_string(),
        Some(Value::Double(d)) => d.to_string(),
        Some(Value::Bytes(b)) => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(b)
        }
        Some(Value::Array(list)) => {
            let items: Vec<String> = list
                .values
                .iter()
                .map(|v| serde_json::to_string(&text(Some(v))).unwrap_or_default())
                .collect();
            format!("[{}]", items.join(","))
        }
        Some(Value::KvList(map)) => {
            let items: Vec<String> = map
                .values
                .iter()
                .map(|kv| {
                    format!(
                        "{}:{}",
                        serde_json::to_string(&kv.key).unwrap_or_default(),
                        serde_json::to_string(&text(kv.value.as_ref())).unwrap_or_default()
                    )
                })
                .collect();
            format!("{{{}}}", items.join(","))
        }
    }
}

/// The answer to an export: empty (`{}` in JSON) when every span was kept,
/// `partialSuccess` otherwise.
pub fn response(decoded: &Decoded, as_json: bool) -> Vec<u8> {
    let partial = (decoded.rejected > 0).then(|| PartialSuccess {
        rejected_spans: i64::try_from(decoded.rejected).unwrap_or(i64::MAX),
        error_message: decoded.error.clone().unwrap_or_default(),
    });
    if as_json {
        let body = match &partial {
            Some(p) => serde_json::json!({"partialSuccess": {
                "rejectedSpans": p.rejected_spans.to_string(),
                "errorMessage": p.error_message,
            }}),
            None => serde_json::json!({}),
        };
        return serde_json::to_vec(&body).unwrap_or_default();
    }
    ExportTraceServiceResponse {
        partial_success: partial,
    }
    .encode_to_vec()
}

/// Sluice's spans as one OTLP export (protobuf), for forwarding what was
/// kept to another system: a resource per local service (`service.name`),
/// tags as string attributes (`error` as status ERROR, `otel.status_code`
/// and the scope tags read back), the remote service as `peer.service`,
/// annotations as events. Spans whose ids do not parse are left out.
pub fn encode_export(spans: &[Span]) -> Vec<u8> {
    let mut by_service: BTreeMap<&str, Vec<OtlpSpan>> = BTreeMap::new();
    for span in spans {
        let (Some(trace), Some(id)) = (
            crate::TraceId::from_hex(&span.trace_id),
            crate::SpanId::from_hex(&span.id),
        ) else {
            continue;
        };
        let parent = span
            .parent_id
            .as_deref()
            .and_then(crate::SpanId::from_hex)
            .map(|p| p.get().to_be_bytes().to_vec())
            .unwrap_or_default();
        let start = span.timestamp.unwrap_or(0).saturating_mul(1000);
        let mut attributes: Vec<KeyValue> = span
            .tags
            .iter()
            .filter(|(k, _)| {
                !matches!(
                    k.as_str(),
                    "error" | "otel.status_code" | "otel.scope.name" | "otel.scope.version"
                )
            })
            .map(|(k, v)| string_attribute(k, v))
            .collect();
        if let Some(remote) = span
            .remote_endpoint
            .as_ref()
            .and_then(|e| e.service_name.as_deref())
        {
            if !span.tags.contains_key("peer.service") {
                attributes.push(string_attribute("peer.service", remote));
            }
        }
        let status = match (
            span.tags.get("error"),
            span.tags.get("otel.status_code").map(String::as_str),
        ) {
            (Some(message), _) => Some(Status {
                message: message.clone(),
                code: 2,
            }),
            (None, Some("OK")) => Some(Status {
                message: String::new(),
                code: 1,
            }),
            _ => None,
        };
        by_service
            .entry(span.service().unwrap_or("unknown_service"))
            .or_default()
            .push(OtlpSpan {
                trace_id: trace.get().to_be_bytes().to_vec(),
                span_id: id.get().to_be_bytes().to_vec(),
                trace_state: String::new(),
                parent_span_id: parent,
                name: span.name.clone().unwrap_or_default(),
                kind: match span.kind {
                    Some(Kind::Server) => 2,
                    Some(Kind::Client) => 3,
                    Some(Kind::Producer) => 4,
                    Some(Kind::Consumer) => 5,
                    None => 1,
                },
                start_time_unix_nano: start,
                end_time_unix_nano: start
                    .saturating_add(span.duration.unwrap_or(0).saturating_mul(1000)),
                attributes,
                events: span
                    .annotations
                    .iter()
                    .map(|a| Event {
                        time_unix_nano: a.timestamp.saturating_mul(1000),
                        name: a.value.clone(),
                    })
                    .collect(),
                status,
            });
    }
    ExportTraceServiceRequest {
        resource_spans: by_service
            .into_iter()
            .map(|(service, spans)| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![string_attribute("service.name", service)],
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "sluice".into(),
                        version: String::new(),
                    }),
                    spans,
                }],
            })
            .collect(),
    }
    .encode_to_vec()
}

fn string_attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(Value::String(value.to_owned())),
        }),
    }
}

/// `google.rpc.Status`: the body of a refused export.
#[derive(Clone, PartialEq, Message)]
pub struct RpcStatus {
    /// A `google.rpc.Code` (3 invalid argument, 8 resource exhausted, ...).
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// Why.
    #[prost(string, tag = "2")]
    pub message: String,
}

/// `google.rpc.Code` of a body that is not a valid export.
pub const INVALID_ARGUMENT: i32 = 3;
/// `google.rpc.Code` of a node that cannot take more now.
pub const UNAVAILABLE: i32 = 14;

/// The body of a refused export, in the request's encoding.
pub fn failure(code: i32, message: &str, as_json: bool) -> Vec<u8> {
    if as_json {
        return serde_json::to_vec(&serde_json::json!({"code": code, "message": message}))
            .unwrap_or_default();
    }
    RpcStatus {
        code,
        message: message.to_owned(),
    }
    .encode_to_vec()
}

/// OTLP's JSON mapping, read into the protobuf messages.
mod json {
    use super::*;

    /// A 64-bit number as OTLP's JSON gives it: a string or a number.
    #[derive(Deserialize, Default)]
    #[serde(untagged)]
    pub enum Number {
        Text(String),
        Int(i64),
        Unsigned(u64),
        #[default]
        None,
    }

    impl Number {
        fn unsigned(&self, field: &str) -> Result<u64, String> {
            match self {
                Number::None => Ok(0),
                Number::Int(i) => u64::try_from(*i).map_err(|_| format!("{field} is negative")),
                Number::Unsigned(u) => Ok(*u),
                Number::Text(t) => t
                    .parse()
                    .map_err(|_| format!("{field} {t:?} is not an unsigned integer")),
            }
        }

        fn signed(&self, field: &str) -> Result<i64, String> {
            match self {
                Number::None => Ok(0),
                Number::Int(i) => Ok(*i),
                Number::Unsigned(u) => {
                    i64::try_from(*u).map_err(|_| format!("{field} is out of range"))
                }
                Number::Text(t) => t
                    .parse()
                    .map_err(|_| format!("{field} {t:?} is not an integer")),
            }
        }
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Request {
        #[serde(default)]
        resource_spans: Vec<ResourceSpansJson>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct ResourceSpansJson {
        #[serde(default)]
        resource: Option<ResourceJson>,
        #[serde(default)]
        scope_spans: Vec<ScopeSpansJson>,
    }

    #[derive(Deserialize)]
    struct ResourceJson {
        #[serde(default)]
        attributes: Vec<KeyValueJson>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct ScopeSpansJson {
        #[serde(default)]
        scope: Option<ScopeJson>,
        #[serde(default)]
        spans: Vec<SpanJson>,
    }

    #[derive(Deserialize)]
    struct ScopeJson {
        #[serde(default)]
        name: String,
        #[serde(default)]
        version: String,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct SpanJson {
        #[serde(default)]
        trace_id: String,
        #[serde(default)]
        span_id: String,
        #[serde(default)]
        trace_state: String,
        #[serde(default)]
        parent_span_id: String,
        #[serde(default)]
        name: String,
        #[serde(default)]
        kind: i32,
        #[serde(default)]
        start_time_unix_nano: Number,
        #[serde(default)]
        end_time_unix_nano: Number,
        #[serde(default)]
        attributes: Vec<KeyValueJson>,
        #[serde(default)]
        events: Vec<EventJson>,
        #[serde(default)]
        status: Option<StatusJson>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct EventJson {
        #[serde(default)]
        time_unix_nano: Number,
        #[serde(default)]
        name: String,
    }

    #[derive(Deserialize)]
    struct StatusJson {
        #[serde(default)]
        message: String,
        #[serde(default)]
        code: i32,
    }

    #[derive(Deserialize)]
    struct KeyValueJson {
        #[serde(default)]
        key: String,
        #[serde(default)]
        value: Option<AnyValueJson>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct AnyValueJson {
        #[serde(default)]
        string_value: Option<String>,
        #[serde(default)]
        bool_value: Option<bool>,
        #[serde(default)]
        int_value: Option<Number>,
        #[serde(default)]
        double_value: Option<f64>,
        #[serde(default)]
        array_value: Option<ArrayJson>,
        #[serde(default)]
        kvlist_value: Option<KvListJson>,
        #[serde(default)]
        bytes_value: Option<String>,
    }

    #[derive(Deserialize)]
    struct ArrayJson {
        #[serde(default)]
        values: Vec<AnyValueJson>,
    }

    #[derive(Deserialize)]
    struct KvListJson {
        #[serde(default)]
        values: Vec<KeyValueJson>,
    }

    /// Hex (any case) to bytes; OTLP's JSON ids are hex, not base64.
    fn id(text: &str, field: &str) -> Result<Vec<u8>, String> {
        if !text.len().is_multiple_of(2) {
            return Err(format!("{field} {text:?} is not hex"));
        }
        (0..text.len())
            .step_by(2)
            .map(|i| {
                u8::from_str_radix(text.get(i..i + 2).unwrap_or(""), 16)
                    .map_err(|_| format!("{field} {text:?} is not hex"))
            })
            .collect()
    }

    impl Request {
        pub fn into_proto(self) -> Result<ExportTraceServiceRequest, String> {
            let mut out = ExportTraceServiceRequest::default();
            for rs in self.resource_spans {
                let mut resource_spans = ResourceSpans {
                    resource: rs.resource.map(|r| Resource {
                        attributes: r
                            .attributes
                            .into_iter()
                            .map(KeyValueJson::into_proto)
                            .collect(),
                    }),
                    scope_spans: Vec::new(),
                };
                for ss in rs.scope_spans {
                    let mut spans = Vec::new();
                    for span in ss.spans {
                        spans.push(span.into_proto()?);
                    }
                    resource_spans.scope_spans.push(ScopeSpans {
                        scope: ss.scope.map(|s| InstrumentationScope {
                            name: s.name,
                            version: s.version,
                        }),
                        spans,
                    });
                }
                out.resource_spans.push(resource_spans);
            }
            Ok(out)
        }
    }

    impl SpanJson {
        /// Ids that are not hex make the span invalid (refused with the others
        /// counted), not the batch: they become ids of a wrong length.
        fn into_proto(self) -> Result<OtlpSpan, String> {
            Ok(OtlpSpan {
                trace_id: id(&self.trace_id, "traceId").unwrap_or_default(),
                span_id: id(&self.span_id, "spanId").unwrap_or_default(),
                trace_state: self.trace_state,
                parent_span_id: if self.parent_span_id.is_empty() {
                    Vec::new()
                } else {
                    id(&self.parent_span_id, "parentSpanId").unwrap_or_else(|_| vec![0])
                },
                name: self.name,
                kind: self.kind,
                start_time_unix_nano: self.start_time_unix_nano.unsigned("startTimeUnixNano")?,
                end_time_unix_nano: self.end_time_unix_nano.unsigned("endTimeUnixNano")?,
                attributes: self
                    .attributes
                    .into_iter()
                    .map(KeyValueJson::into_proto)
                    .collect(),
                events: self
                    .events
                    .into_iter()
                    .map(|e| {
                        Ok(Event {
                            time_unix_nano: e.time_unix_nano.unsigned("timeUnixNano")?,
                            name: e.name,
                        })
                    })
                    .collect::<Result<_, String>>()?,
                status: self.status.map(|s| Status {
                    message: s.message,
                    code: s.code,
                }),
            })
        }
    }

    impl KeyValueJson {
        fn into_proto(self) -> KeyValue {
            KeyValue {
                key: self.key,
                value: self.value.map(AnyValueJson::into_proto),
            }
        }
    }

    impl AnyValueJson {
        fn into_proto(self) -> AnyValue {
            let value = if let Some(s) = self.string_value {
                Some(Value::String(s))
            } else if let Some(b) = self.bool_value {
                Some(Value::Bool(b))
            } else if let Some(i) = self.int_value {
                i.signed("intValue").ok().map(Value::Int)
            } else if let Some(d) = self.double_value {
                Some(Value::Double(d))
            } else if let Some(a) = self.array_value {
                Some(Value::Array(ArrayValue {
                    values: a.values.into_iter().map(AnyValueJson::into_proto).collect(),
                }))
            } else if let Some(m) = self.kvlist_value {
                Some(Value::KvList(KeyValueList {
                    values: m.values.into_iter().map(KeyValueJson::into_proto).collect(),
                }))
            } else {
                self.bytes_value.map(|b| {
                    use base64::Engine as _;
                    Value::Bytes(
                        base64::engine::general_purpose::STANDARD
                            .decode(b)
                            .unwrap_or_default(),
                    )
                })
            };
            AnyValue { value }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_export_of_kept_spans_decodes_back_to_them() {
        let decoded = decode_json(EXAMPLE.as_bytes()).unwrap();
        let mut spans = decoded.spans;
        spans[0].tags.insert("error".into(), "boom".into());
        spans[0].remote_endpoint = Some(Endpoint {
            service_name: Some("db".into()),
            ..Endpoint::default()
        });
        let again = decode_protobuf(&encode_export(&spans)).unwrap();
        assert_eq!(again.rejected, 0);
        let (before, after) = (&spans[0], &again.spans[0]);
        assert_eq!(after.trace_id, before.trace_id);
        assert_eq!(after.id, before.id);
        assert_eq!(after.parent_id, before.parent_id);
        assert_eq!(after.name, before.name);
        assert_eq!(after.kind, before.kind);
        assert_eq!(
            (after.timestamp, after.duration),
            (before.timestamp, before.duration)
        );
        assert_eq!(after.service(), before.service());
        assert_eq!(after.tags["error"], "boom");
        assert_eq!(after.tags["peer.service"], "db");
        assert_eq!(after.annotations, before.annotations);
        for (key, value) in &before.tags {
            if !key.starts_with("otel.") {
                assert_eq!(after.tags.get(key), Some(value), "{key}");
            }
        }
    }

    /// opentelemetry-proto's `examples/trace.json`, as the specification gives it.
    const EXAMPLE: &str = r#"{
      "resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]},
        "scopeSpans": [{
          "scope": {"name": "my.library", "version": "1.0.0",
                    "attributes": [{"key": "my.scope.attribute", "value": {"stringValue": "some scope attribute"}}]},
          "spans": [{
            "traceId": "5B8EFFF798038103D269B633813FC60C",
            "spanId": "EEE19B7EC3C1B174",
            "parentSpanId": "EEE19B7EC3C1B173",
            "name": "I'm a server span",
            "startTimeUnixNano": "1544712660000000000",
            "endTimeUnixNano": "1544712661000000000",
            "kind": 2,
            "attributes": [
              {"key": "my.span.attr", "value": {"stringValue": "some value"}},
              {"key": "retries", "value": {"intValue": "3"}},
              {"key": "ok", "value": {"boolValue": true}},
              {"key": "list", "value": {"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": 2}]}}}
            ],
            "events": [{"timeUnixNano": 1544712660500000000, "name": "cache miss"}],
            "status": {"code": 2, "message": "boom"},
            "somethingNew": {"ignored": true}
          }]
        }]
      }]
    }"#;

    #[test]
    fn otlp_json_maps_to_zipkin_spans() {
        let decoded = decode_json(EXAMPLE.as_bytes()).unwrap();
        assert_eq!((decoded.rejected, decoded.spans.len()), (0, 1));
        let span = &decoded.spans[0];
        assert_eq!(span.trace_id, "5b8efff798038103d269b633813fc60c");
        assert_eq!(span.id, "eee19b7ec3c1b174");
        assert_eq!(span.parent_id.as_deref(), Some("eee19b7ec3c1b173"));
        assert_eq!(span.kind, Some(Kind::Server));
        assert_eq!(span.service(), Some("my.service"));
        assert_eq!(span.timestamp, Some(1_544_712_660_000_000));
        assert_eq!(span.duration, Some(1_000_000));
        assert_eq!(span.tags["retries"], "3");
        assert_eq!(span.tags["ok"], "true");
        assert_eq!(span.tags["list"], r#"["a","2"]"#);
        assert_eq!(span.tags["error"], "boom");
        assert_eq!(span.tags["otel.scope.name"], "my.library");
        assert_eq!(span.annotations[0].value, "cache miss");
        assert_eq!(span.annotations[0].timestamp, 1_544_712_660_500_000);
        assert_eq!(response(&decoded, true), b"{}");
    }

    #[test]
    fn protobuf_round_trips_and_bad_spans_are_counted_not_fatal() {
        let good = OtlpSpan {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            trace_state: String::new(),
            parent_span_id: Vec::new(),
            name: "GET /".into(),
            kind: 3,
            start_time_unix_nano: 1_000_000_000,
            end_time_unix_nano: 1_000_000_500,
            attributes: Vec::new(),
            events: Vec::new(),
            status: None,
        };
        let short_id = OtlpSpan {
            span_id: vec![2; 7],
            ..good.clone()
        };
        let zero = OtlpSpan {
            trace_id: vec![0; 16],
            ..good.clone()
        };
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: None,
                scope_spans: vec![ScopeSpans {
                    scope: None,
                    spans: vec![good, short_id, zero],
                }],
            }],
        };
        let decoded = decode_protobuf(&request.encode_to_vec()).unwrap();
        assert_eq!(decoded.spans.len(), 1);
        assert_eq!(decoded.rejected, 2);
        assert!(decoded
            .error
            .as_deref()
            .unwrap()
            .contains("spanId has 7 bytes"));
        let span = &decoded.spans[0];
        assert_eq!(span.service(), Some("unknown_service"));
        assert_eq!(span.kind, Some(Kind::Client));
        assert_eq!(span.duration, Some(1), "under a microsecond is 1 µs");
        let answer =
            ExportTraceServiceResponse::decode(response(&decoded, false).as_slice()).unwrap();
        assert_eq!(answer.partial_success.unwrap().rejected_spans, 2);
        let json: serde_json::Value = serde_json::from_slice(&response(&decoded, true)).unwrap();
        assert_eq!(json["partialSuccess"]["rejectedSpans"], "2");
    }

    #[test]
    fn hostile_bodies_are_errors_not_crashes() {
        for body in [
            &b"\xff\xff\xff\xff"[..],
            b"\x0a\xff\xff\xff\xff\x0f",
            b"not protobuf at all, just text",
        ] {
            assert!(decode_protobuf(body).is_err(), "{body:?}");
        }
        for body in [
            "",
            "[]",
            r#"{"resourceSpans": 7}"#,
            r#"{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}"#,
        ] {
            assert!(decode_json(body.as_bytes()).is_err(), "{body}");
        }
        // Nesting deeper than the decoders' recursion limits (serde_json's 128,
        // prost's 100): refused, not a stack overflow.
        let mut nested = String::from(r#"{"stringValue": "x"}"#);
        for _ in 0..200 {
            nested = format!(r#"{{"arrayValue": {{"values": [{nested}]}}}}"#);
        }
        let body = format!(
            r#"{{"resourceSpans": [{{"resource": {{"attributes": [{{"key": "k", "value": {nested}}}]}}}}]}}"#
        );
        assert!(decode_json(body.as_bytes()).is_err());
        let mut value = AnyValue {
            value: Some(Value::String("x".into())),
        };
        for _ in 0..200 {
            value = AnyValue {
                value: Some(Value::Array(ArrayValue {
                    values: vec![value],
                })),
            };
        }
        let deep = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![KeyValue {
                        key: "k".into(),
                        value: Some(value),
                    }],
                }),
                scope_spans: Vec::new(),
            }],
        };
        let bytes = deep.encode_to_vec();
        assert!(decode_protobuf(&bytes).is_err());
        // Ids that are not hex in JSON make that span invalid, not the batch.
        let decoded = decode_json(
            br#"{"resourceSpans": [{"scopeSpans": [{"spans": [
                {"traceId": "zz", "spanId": "eee19b7ec3c1b174"},
                {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174"}]}]}]}"#,
        )
        .unwrap();
        assert_eq!((decoded.spans.len(), decoded.rejected), (1, 1));
    }
}
