//! Tracing endpoints, for unmodified clients: OTLP/HTTP ingest (`POST
//! /v1/traces`, protobuf or OTLP JSON, gzip or deflate), Zipkin's collector
//! (`POST /api/v2/spans`, answering 202) and Zipkin's v2 query API
//! (`/api/v2/services`, `spans`, `remoteServices`, `traces`, `trace/{id}`,
//! `traceMany`, `dependencies`, `autocompleteKeys`, `autocompleteValues`), so
//! the Zipkin UI and Grafana's Zipkin data source read from Sluice; and
//! Sluice's own view of it (`GET /v1/tracing`, `GET /v1/tracing/dependencies`
//! with latency quantiles per edge).
//!
//! Errors follow each protocol: OTLP answers a `google.rpc.Status` in the
//! request's encoding, Zipkin a plain-text message. Bodies are bounded before
//! and after decompression (20 MiB, OTLP's recommendation), a full ingest
//! queue answers 503 with `Retry-After`, and the query endpoints validate
//! every parameter (Zipkin's units: `endTs` and `lookback` in milliseconds,
//! `minDuration` and `maxDuration` in microseconds).

use std::io::Read;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http_body_util::BodyExt;
use serde::Serialize;
use sluice_trace::pipeline::{Refused, Tracing};
use sluice_trace::span::Span;
use sluice_trace::store::TraceQuery;
use sluice_trace::{otlp, TraceId};

use crate::AppState;

/// Largest trace body, before and after decompression.
pub const MAX_TRACE_BODY: usize = 20 * 1024 * 1024;

/// How much of an over-large body is read (and dropped) before the
/// connection is closed.
const DRAIN_LIMIT: usize = 4 * MAX_TRACE_BODY;

/// Zipkin's default lookback: a day, in ms.
const DEFAULT_LOOKBACK_MS: u64 = 86_400_000;
/// Most traces one search answers.
pub const MAX_LIMIT: u64 = 10_000;
/// The largest millisecond time or span accepted (the year 2286).
pub const MAX_MS: u64 = 9_999_999_999_999;
/// The longest duration accepted in a query, µs (about 11 days).
pub const MAX_DURATION_US: u64 = 999_999_999_999;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A plain-text answer, as Zipkin gives its errors.
fn text(status: StatusCode, message: impl Into<String>) -> Response {
    let mut response = (status, message.into()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn tracing_of(state: &AppState) -> Result<Arc<Tracing>, String> {
    state
        .tracing
        .clone()
        .ok_or_else(|| "tracing is turned off on this node".to_owned())
}

/// A refused request: its status and message (answered as plain text, or in
/// the protocol's error shape by the OTLP handler).
struct Refusal(StatusCode, String);

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Refusal(status, message.into())
    }
}

impl Refusal {
    /// The same refusal in the admin API's JSON error shape (for Sluice's own
    /// `/v1/tracing` endpoints).
    fn into_api(self) -> Response {
        let code = match self.0 {
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            _ => "bad_request",
        };
        crate::ApiError::new(self.0, code, self.1).into_response()
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        text(self.0, self.1)
    }
}

/// Reads the body (at most [`MAX_TRACE_BODY`]) and undoes its
/// `Content-Encoding` (the result at most [`MAX_TRACE_BODY`] too).
async fn read_body(headers: &HeaderMap, body: Body) -> Result<Vec<u8>, Refusal> {
    let too_large = |what: &str| {
        Refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is over {} MiB {what}", MAX_TRACE_BODY >> 20),
        )
    };
    // Past the limit the rest is read and dropped (up to a bound), so that the
    // client, still sending, gets to read the 413 instead of a broken pipe.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = body;
    let mut raw = Vec::with_capacity(declared.min(MAX_TRACE_BODY));
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {error}"),
            )
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen = seen.saturating_add(data.len());
        if seen > MAX_TRACE_BODY {
            raw = Vec::new();
            if seen > DRAIN_LIMIT {
                break;
            }
        } else {
            raw.extend_from_slice(&data);
        }
    }
    if seen > MAX_TRACE_BODY {
        return Err(too_large("as sent"));
    }
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let mut out = Vec::new();
    let limit = MAX_TRACE_BODY as u64 + 1;
    let result = match encoding.as_str() {
        "" | "identity" => return Ok(raw),
        "gzip" | "x-gzip" => flate2::read::MultiGzDecoder::new(&raw[..])
            .take(limit)
            .read_to_end(&mut out),
        "deflate" => {
            // HTTP's deflate is zlib; some clients send raw deflate.
            let zlib = flate2::read::ZlibDecoder::new(&raw[..])
                .take(limit)
                .read_to_end(&mut out);
            if zlib.is_err() {
                out.clear();
                flate2::read::DeflateDecoder::new(&raw[..])
                    .take(limit)
                    .read_to_end(&mut out)
            } else {
                zlib
            }
        }
        other => {
            return Err(Refusal(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("content-encoding {other:?} is not gzip, deflate or identity"),
            ))
        }
    };
    result.map_err(|e| {
        Refusal(
            StatusCode::BAD_REQUEST,
            format!("the {encoding} body does not decompress: {e}"),
        )
    })?;
    if out.len() > MAX_TRACE_BODY {
        return Err(too_large("decompressed"));
    }
    Ok(out)
}

fn busy(message: &str, as_text: Option<bool>) -> Response {
    let mut response = match as_text {
        None => text(StatusCode::SERVICE_UNAVAILABLE, message),
        Some(as_json) => otlp_answer(
            StatusCode::SERVICE_UNAVAILABLE,
            otlp::failure(otlp::UNAVAILABLE, message, as_json),
            as_json,
        ),
    };
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

fn otlp_answer(status: StatusCode, body: Vec<u8>, as_json: bool) -> Response {
    let content_type = if as_json {
        "application/json"
    } else {
        "application/x-protobuf"
    };
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

/// `POST /v1/traces`: OTLP/HTTP, protobuf or JSON by `Content-Type`.
pub async fn otlp_ingest(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let as_json = match content_type.as_str() {
        "application/x-protobuf" | "application/protobuf" | "" => false,
        "application/json" => true,
        other => {
            return otlp_answer(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                otlp::failure(
                    otlp::INVALID_ARGUMENT,
                    &format!(
                        "content-type {other:?} is not application/x-protobuf or application/json"
                    ),
                    true,
                ),
                true,
            )
        }
    };
    let failure = |status: StatusCode, message: &str| {
        otlp_answer(
            status,
            otlp::failure(otlp::INVALID_ARGUMENT, message, as_json),
            as_json,
        )
    };
    let tracing = match tracing_of(&state) {
        Ok(tracing) => tracing,
        Err(message) => return failure(StatusCode::NOT_FOUND, &message),
    };
    let bytes = match read_body(&headers, body).await {
        Ok(bytes) => bytes,
        Err(Refusal(status, message)) => return failure(status, &message),
    };
    if !tracing.has_room() {
        return busy(
            "the span queue is full; retry after a second",
            Some(as_json),
        );
    }
    let decoded = tokio::task::spawn_blocking(move || {
        if as_json {
            otlp::decode_json(&bytes)
        } else {
            otlp::decode_protobuf(&bytes)
        }
    })
    .await;
    let decoded = match decoded {
        Ok(Ok(decoded)) => decoded,
        Ok(Err(message)) => return failure(StatusCode::BAD_REQUEST, &message),
        Err(_) => return failure(StatusCode::BAD_REQUEST, "the body could not be decoded"),
    };
    tracing.count_invalid(decoded.rejected);
    let answer = otlp::response(&decoded, as_json);
    match tracing.submit(decoded.spans) {
        Ok(()) => otlp_answer(StatusCode::OK, answer, as_json),
        Err(Refused::Busy) => busy(
            "the span queue is full; retry after a second",
            Some(as_json),
        ),
        Err(Refused::Stopped) => busy("the node is stopping", Some(as_json)),
    }
}

/// `POST /api/v2/spans`: Zipkin v2 JSON (a list of spans), answered with 202.
/// A batch with an invalid span is refused whole, as Zipkin does.
pub async fn zipkin_ingest(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let tracing = match tracing_of(&state) {
        Ok(tracing) => tracing,
        Err(message) => return text(StatusCode::NOT_FOUND, message),
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with("application/x-protobuf")
        || content_type.starts_with("application/x-thrift")
    {
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "this collector takes Zipkin v2 JSON (application/json); send spans as JSON",
        );
    }
    let bytes = match read_body(&headers, body).await {
        Ok(bytes) => bytes,
        Err(Refusal(status, message)) => return text(status, message),
    };
    if !tracing.has_room() {
        return busy("the span queue is full; retry after a second", None);
    }
    let parsed = tokio::task::spawn_blocking(move || parse_zipkin(&bytes)).await;
    let spans = match parsed {
        Ok(Ok(spans)) => spans,
        Ok(Err((invalid, message))) => {
            tracing.count_invalid(invalid);
            return text(StatusCode::BAD_REQUEST, message);
        }
        Err(_) => return text(StatusCode::BAD_REQUEST, "the body could not be decoded"),
    };
    match tracing.submit(spans) {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(Refused::Busy) => busy("the span queue is full; retry after a second", None),
        Err(Refused::Stopped) => busy("the node is stopping", None),
    }
}

/// Zipkin v2 JSON spans, validated; on a bad one, how many spans were refused and why.
fn parse_zipkin(bytes: &[u8]) -> Result<Vec<Span>, (u64, String)> {
    let values: Vec<serde_json::Value> = serde_json::from_slice(bytes).map_err(|e| {
        (
            1,
            format!("the body is not a JSON list of Zipkin v2 spans: {e}"),
        )
    })?;
    let count = values.len() as u64;
    let mut spans = Vec::with_capacity(values.len());
    for (index, value) in values.into_iter().enumerate() {
        let mut span: Span = serde_json::from_value(value)
            .map_err(|e| (count, format!("span {index} is not a Zipkin v2 span: {e}")))?;
        span.normalize()
            .map_err(|e| (count, format!("span {index}: {e}")))?;
        spans.push(span);
    }
    Ok(spans)
}

/// A query string's parameters (the first of each name wins), parsed strictly.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(query: Option<&str>) -> Result<Self, Refusal> {
        serde_urlencoded::from_str(query.unwrap_or(""))
            .map(Params)
            .map_err(|e| {
                Refusal::new(
                    StatusCode::BAD_REQUEST,
                    format!("the query string is malformed: {e}"),
                )
            })
    }

    fn text(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A lowercase name; `None` when absent, empty or `all` (Zipkin's "any").
    fn name(&self, name: &str) -> Option<String> {
        self.text(name)
            .map(str::trim)
            .filter(|v| !v.is_empty() && *v != "all")
            .map(str::to_lowercase)
    }

    fn required(&self, name: &str) -> Result<String, Refusal> {
        self.name(name)
            .ok_or_else(|| Refusal::new(StatusCode::BAD_REQUEST, format!("{name} is required")))
    }

    fn number(&self, name: &str, min: u64, max: u64) -> Result<Option<u64>, Refusal> {
        let Some(value) = self.text(name) else {
            return Ok(None);
        };
        match value.trim().parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                format!("{name} {value:?} is not a whole number from {min} to {max}"),
            )),
        }
    }
}

/// Runs a store read off the async threads.
async fn read<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&Tracing) -> T + Send + 'static,
) -> Result<T, Refusal> {
    let tracing = tracing_of(state).map_err(|m| Refusal::new(StatusCode::NOT_FOUND, m))?;
    tokio::task::spawn_blocking(move || f(&tracing))
        .await
        .map_err(|_| {
            Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the span store could not answer",
            )
        })
}

fn json<T: Serialize>(value: &T) -> Response {
    Json(value).into_response()
}

/// A Zipkin answer: the value as JSON, or the refusal as plain text.
fn answer<T: Serialize>(result: Result<T, Refusal>) -> Response {
    match result {
        Ok(value) => json(&value),
        Err(refusal) => refusal.into_response(),
    }
}

/// The names a service has (`serviceName` required), read with `read`.
async fn names_of_service(
    state: &AppState,
    query: Option<String>,
    read_names: fn(&sluice_trace::store::SpanStore, &str) -> Vec<String>,
) -> Response {
    let result = async {
        let params = Params::parse(query.as_deref())?;
        let service = params.required("serviceName")?;
        read(state, move |t| read_names(t.store(), &service)).await
    };
    answer(result.await)
}

/// `GET /api/v2/services`.
pub async fn services(State(state): State<AppState>) -> Response {
    answer(read(&state, |t| t.store().services()).await)
}

/// `GET /api/v2/spans?serviceName=`.
pub async fn span_names(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    names_of_service(&state, query, sluice_trace::store::SpanStore::span_names).await
}

/// `GET /api/v2/remoteServices?serviceName=`.
pub async fn remote_services(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    names_of_service(
        &state,
        query,
        sluice_trace::store::SpanStore::remote_services,
    )
    .await
}

/// `annotationQuery`: terms joined by `and`; `key=value` matches a tag, a bare
/// word a tag key or an annotation.
fn annotation_query(text: &str) -> Vec<(String, Option<String>)> {
    let mut terms = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    let mut push = |words: &mut Vec<&str>| {
        let term = words.join(" ");
        words.clear();
        let term = term.trim();
        if term.is_empty() {
            return;
        }
        match term.split_once('=') {
            Some((key, value)) => {
                terms.push((key.trim().to_owned(), Some(value.trim().to_owned())))
            }
            None => terms.push((term.to_owned(), None)),
        }
    };
    for word in text.split_whitespace() {
        if word.eq_ignore_ascii_case("and") {
            push(&mut current);
        } else {
            current.push(word);
        }
    }
    push(&mut current);
    terms
}

/// `GET /api/v2/traces`: Zipkin's search.
pub async fn traces(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let result = async {
        let params = Params::parse(query.as_deref())?;
        let query = trace_query(&params)?;
        read(&state, move |t| t.store().search(&query)).await
    };
    answer(result.await)
}

/// A search from Zipkin's parameters.
fn trace_query(params: &Params) -> Result<TraceQuery, Refusal> {
    let end_ms = params.number("endTs", 1, MAX_MS)?.unwrap_or_else(now_ms);
    let lookback_ms = params
        .number("lookback", 1, MAX_MS)?
        .unwrap_or(DEFAULT_LOOKBACK_MS);
    let limit = params.number("limit", 1, MAX_LIMIT)?.unwrap_or(10);
    let min = params.number("minDuration", 1, MAX_DURATION_US)?;
    let max = params.number("maxDuration", 1, MAX_DURATION_US)?;
    if max.is_some() && min.is_none() {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "minDuration is required when specifying maxDuration",
        ));
    }
    if let (Some(min), Some(max)) = (min, max) {
        if max < min {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                format!("maxDuration {max} is below minDuration {min}"),
            ));
        }
    }
    let annotation_query = params
        .text("annotationQuery")
        .map(annotation_query)
        .unwrap_or_default();
    let errors_only = annotation_query
        .iter()
        .any(|(key, value)| key == "error" && value.is_none());
    Ok(TraceQuery {
        service: params.name("serviceName"),
        remote_service: params.name("remoteServiceName"),
        span_name: params.name("spanName"),
        annotation_query,
        min_duration_us: min,
        max_duration_us: max,
        end_us: end_ms.saturating_mul(1000),
        lookback_us: lookback_ms.saturating_mul(1000),
        limit: limit as usize,
        errors_only,
    })
}

/// A trace id as Zipkin takes it: up to 32 hex digits, left-padded to 16 or 32.
fn parse_trace_id(text: &str) -> Result<Option<TraceId>, String> {
    let lower = text.to_ascii_lowercase();
    if lower.is_empty() || lower.len() > 32 || !lower.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{text:?} is not a trace id (1 to 32 hex digits)"));
    }
    let width = if lower.len() <= 16 { 16 } else { 32 };
    Ok(TraceId::from_hex(&format!("{lower:0>width$}")))
}

/// `GET /api/v2/trace/{traceId}`: the trace's spans, 404 when unknown.
pub async fn trace(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let trace = match parse_trace_id(&id) {
        Ok(Some(trace)) => trace,
        Ok(None) => return text(StatusCode::NOT_FOUND, format!("{id} not found")),
        Err(message) => return text(StatusCode::BAD_REQUEST, message),
    };
    match read(&state, move |t| t.store().trace(trace)).await {
        Ok(spans) if spans.is_empty() => text(StatusCode::NOT_FOUND, format!("{id} not found")),
        Ok(spans) => json(&spans),
        Err(refusal) => refusal.into_response(),
    }
}

/// `GET /api/v2/traceMany?traceIds=a,b`: the traces found, in the order asked.
pub async fn trace_many(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let result = async {
        let params = Params::parse(query.as_deref())?;
        let Some(list) = params.text("traceIds").filter(|l| !l.is_empty()) else {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "traceIds is required: trace ids separated by commas",
            ));
        };
        let mut ids = Vec::new();
        for id in list.split(',') {
            match parse_trace_id(id) {
                Ok(Some(trace)) if !ids.contains(&trace) => ids.push(trace),
                Ok(_) => {}
                Err(message) => return Err(Refusal::new(StatusCode::BAD_REQUEST, message)),
            }
        }
        if ids.len() > MAX_LIMIT as usize {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                format!("traceIds names over {MAX_LIMIT} traces"),
            ));
        }
        read(&state, move |t| {
            ids.into_iter()
                .map(|id| t.store().trace(id))
                .filter(|spans| !spans.is_empty())
                .collect::<Vec<_>>()
        })
        .await
    };
    answer(result.await)
}

/// The time range of a dependency query: `endTs` (required) and `lookback`, in ms.
fn dependency_range(params: &Params) -> Result<(u64, u64), Refusal> {
    let end = params.number("endTs", 1, MAX_MS)?.ok_or_else(|| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            "endTs is required (epoch milliseconds)",
        )
    })?;
    let lookback = params
        .number("lookback", 1, MAX_MS)?
        .unwrap_or(DEFAULT_LOOKBACK_MS);
    Ok((end.saturating_mul(1000), lookback.saturating_mul(1000)))
}

/// `GET /api/v2/dependencies?endTs=&lookback=`: Zipkin's links.
pub async fn dependencies(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let result = async {
        let params = Params::parse(query.as_deref())?;
        let (end, lookback) = dependency_range(&params)?;
        read(&state, move |t| {
            t.store().dependencies(end, lookback, false)
        })
        .await
    };
    answer(result.await)
}

/// `GET /api/v2/autocompleteKeys`.
pub async fn autocomplete_keys(State(state): State<AppState>) -> Response {
    answer(read(&state, |t| t.store().autocomplete_keys()).await)
}

/// `GET /api/v2/autocompleteValues?key=`.
pub async fn autocomplete_values(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Response {
    let result = async {
        let params = Params::parse(query.as_deref())?;
        let key = params
            .text("key")
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| Refusal::new(StatusCode::BAD_REQUEST, "key is required"))?;
        read(&state, move |t| t.store().autocomplete_values(&key)).await
    };
    answer(result.await)
}

/// What `GET /v1/tracing` answers: the node's tracing counters and storage.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct TracingStatus {
    /// Spans taken in.
    pub received: u64,
    /// Spans refused as invalid.
    pub invalid: u64,
    /// Spans refused because the queue was full.
    pub refused_busy: u64,
    /// Spans written to storage.
    pub stored: u64,
    /// Spans held for a tail decision now.
    pub held: u64,
    /// Traces decided, by decision (error, slow, debug, floor, ratio, dropped).
    pub decisions: std::collections::BTreeMap<String, u64>,
    /// Traces decided before their window ended (memory bound).
    pub decided_early: u64,
    /// Spans stored now.
    pub spans_stored: u64,
    /// Bytes on disk.
    pub bytes: u64,
    /// Bytes on disk per stored span.
    pub bytes_per_span: f64,
    /// Spans dropped by the size and age bounds.
    pub spans_expired: u64,
    /// Whether the segments there at start are still being read (queries see
    /// what is read so far).
    pub loading: bool,
}

/// The status of a node's tracing.
pub fn status_of(tracing: &Tracing) -> TracingStatus {
    let counts = tracing.counts();
    let stats = tracing.store().stats();
    TracingStatus {
        received: counts.received,
        invalid: counts.invalid,
        refused_busy: counts.refused_busy,
        stored: counts.stored,
        held: counts.held,
        decisions: sluice_trace::tail::Decision::ALL
            .iter()
            .zip(counts.tail.decided)
            .map(|(d, n)| (d.as_str().to_owned(), n))
            .collect(),
        decided_early: counts.tail.decided_early,
        spans_stored: stats.spans,
        bytes: stats.bytes,
        bytes_per_span: if stats.spans == 0 {
            0.0
        } else {
            stats.bytes as f64 / stats.spans as f64
        },
        spans_expired: stats.spans_expired,
        loading: tracing.store().is_loading(),
    }
}

/// `GET /v1/tracing`.
pub async fn status(State(state): State<AppState>) -> Response {
    match read(&state, status_of).await {
        Ok(status) => json(&status),
        Err(refusal) => refusal.into_api(),
    }
}

/// `GET /v1/tracing/dependencies?endTs=&lookback=`: the links with p50 and p99.
pub async fn dependency_graph(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Response {
    let result = async {
        let params = Params::parse(query.as_deref())?;
        let (end, lookback) = dependency_range(&params)?;
        read(&state, move |t| t.store().dependencies(end, lookback, true)).await
    };
    match result.await {
        Ok(links) => json(&links),
        Err(refusal) => refusal.into_api(),
    }
}

/// The routes of trace ingest and queries (served on the admin address, and
/// by `sluice up` on the standard ports too).
pub fn routes() -> axum::Router<AppState> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/v1/traces", post(otlp_ingest))
        .route("/api/v2/spans", post(zipkin_ingest).get(span_names))
        .route("/api/v2/services", get(services))
        .route("/api/v2/remoteServices", get(remote_services))
        .route("/api/v2/traces", get(traces))
        .route("/api/v2/trace/{trace_id}", get(trace))
        .route("/api/v2/traceMany", get(trace_many))
        .route("/api/v2/dependencies", get(dependencies))
        .route("/api/v2/autocompleteKeys", get(autocomplete_keys))
        .route("/api/v2/autocompleteValues", get(autocomplete_values))
        .route("/v1/tracing", get(status))
        .route("/v1/tracing/dependencies", get(dependency_graph))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotation_queries_split_on_and() {
        assert_eq!(
            annotation_query("http.uri=/foo and retried AND error"),
            vec![
                ("http.uri".to_owned(), Some("/foo".to_owned())),
                ("retried".to_owned(), None),
                ("error".to_owned(), None),
            ]
        );
        assert!(annotation_query("  ").is_empty());
    }

    #[test]
    fn trace_ids_are_padded_as_zipkin_does() {
        assert_eq!(
            parse_trace_id("A3CE929D0E0E4736")
                .unwrap()
                .unwrap()
                .to_string(),
            "0000000000000000a3ce929d0e0e4736"
        );
        assert_eq!(
            parse_trace_id("1").unwrap().unwrap().get(),
            1,
            "short ids are left-padded"
        );
        assert!(parse_trace_id("0").unwrap().is_none());
        assert!(parse_trace_id("xyz").is_err());
        assert!(parse_trace_id(&"a".repeat(33)).is_err());
    }
}
