//! Error reports: Sentry's envelope and store endpoints (authenticated by the
//! project's DSN key), a plain JSON endpoint, and the error groups.

use std::io::Read;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::Value;
use sluice_alarm::error_reports::{self as reports, ErrorGroup};
use sluice_metrics::custom::{MetricType, Push, Sample};
use sluice_model::keys;
use sluice_model::{format_time, validate_name, ErrorProjectSpec, Resource};
use sluice_store::list_all;

use crate::error::ApiError;
use crate::views::{ErrorGroupView, Items, ReportAccepted, SentryAccepted};
use crate::AppState;

/// Largest decompressed report.
const MAX_REPORT: u64 = 4 * 1024 * 1024;

fn store_error(error: sluice_store::StoreError) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        error.to_string(),
    )
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

/// The project with this DSN ID, and its namespace.
async fn project(state: &AppState, id: &str) -> Result<(String, ErrorProjectSpec), ApiError> {
    let id: u64 = id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("project {id:?} is not a number")))?;
    let (kvs, _) = list_all(&*state.store, &keys::kind_prefix("ErrorProject"))
        .await
        .map_err(store_error)?;
    kvs.into_iter()
        .filter_map(|kv| {
            let resource: Resource = serde_json::from_slice(&kv.value).ok()?;
            let spec: ErrorProjectSpec = serde_json::from_value(resource.spec).ok()?;
            (spec.id == id).then_some((resource.metadata.namespace, spec))
        })
        .next()
        .ok_or_else(|| ApiError::not_found(format!("no ErrorProject has id {id}")))
}

fn presented_key<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Option<String> {
    headers
        .get("x-sentry-auth")
        .and_then(|v| v.to_str().ok())
        .and_then(reports::sentry_key)
        .map(str::to_owned)
        .or_else(|| {
            let pairs: Vec<(String, String)> =
                serde_urlencoded::from_str(query.unwrap_or("")).ok()?;
            pairs
                .into_iter()
                .find(|(k, _)| k == "sentry_key")
                .map(|(_, v)| v)
        })
}

fn decompress(headers: &HeaderMap, body: &Bytes) -> Result<Vec<u8>, ApiError> {
    let encoding = headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut out = Vec::new();
    let result = match encoding {
        "" | "identity" => return Ok(body.to_vec()),
        "gzip" => flate2::read::GzDecoder::new(&body[..])
            .take(MAX_REPORT + 1)
            .read_to_end(&mut out),
        "deflate" => flate2::read::ZlibDecoder::new(&body[..])
            .take(MAX_REPORT + 1)
            .read_to_end(&mut out),
        other => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_encoding",
                format!("content-encoding {other:?} is not gzip, deflate or identity"),
            ))
        }
    };
    result.map_err(|e| {
        ApiError::bad_request(format!("the {encoding} body does not decompress: {e}"))
    })?;
    if out.len() as u64 > MAX_REPORT {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "the report is over 4 MiB decompressed",
        ));
    }
    Ok(out)
}

async fn take_events(
    state: &AppState,
    namespace: &str,
    project: &str,
    events: Vec<Value>,
) -> Result<Vec<String>, ApiError> {
    let now = sluice_metrics::unix_now();
    let mut normalized = Vec::with_capacity(events.len());
    for event in events {
        normalized.push(reports::normalize(event).map_err(|e| ApiError::bad_request(e.0))?);
    }
    let mut fingerprints = Vec::new();
    for event in normalized {
        let (group, new) = reports::ingest(&*state.store, namespace, project, event, now)
            .await
            .map_err(store_error)?;
        // Series for alarm rules: events per group, and new groups.
        if let Some(metrics) = &state.metrics {
            let mut samples = vec![Sample {
                name: "error_events".into(),
                kind: MetricType::Counter,
                value: 1.0,
                labels: [
                    ("project".to_owned(), project.to_owned()),
                    ("group".to_owned(), group.fingerprint.clone()),
                ]
                .into(),
            }];
            if new {
                samples.push(Sample {
                    name: "error_new_groups".into(),
                    kind: MetricType::Counter,
                    value: 1.0,
                    labels: [("project".to_owned(), project.to_owned())].into(),
                });
            }
            if let Err(error) = metrics.custom.push(namespace, &Push { metrics: samples }) {
                tracing::warn!(%error, "cannot count an error report");
            }
        }
        fingerprints.push(group.fingerprint);
    }
    Ok(fingerprints)
}

/// `POST /api/{project}/envelope/` and `/api/{project}/store/`: Sentry's protocol.
pub async fn sentry(
    State(state): State<AppState>,
    Path((id, endpoint)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<SentryAccepted>, ApiError> {
    let (namespace, spec) = project(&state, &id).await?;
    let key = presented_key(&headers, raw.as_deref())
        .ok_or_else(|| unauthorized("send the DSN key: X-Sentry-Auth: Sentry sentry_key=KEY"))?;
    if key != spec.key {
        return Err(unauthorized("the DSN key does not match the project"));
    }
    let body = decompress(&headers, &body)?;
    let events = match endpoint.as_str() {
        "envelope" => reports::envelope_events(&body).map_err(|e| ApiError::bad_request(e.0))?,
        "store" => vec![serde_json::from_slice::<Value>(&body)
            .map_err(|e| ApiError::bad_request(format!("the event is not JSON: {e}")))?],
        other => return Err(ApiError::not_found(format!("no Sentry endpoint {other:?}"))),
    };
    let ids = take_events(&state, &namespace, &id, events).await?;
    Ok(Json(SentryAccepted {
        id: ids.first().cloned(),
    }))
}

/// `POST /v1/namespaces/{ns}/errors`: a plain report
/// `{"type", "message", "frames": [{"function", "module", "lineno", "in_app"}]}`.
pub async fn plain(
    State(state): State<AppState>,
    Path(ns): Path<String>,
    body: Bytes,
) -> Result<Json<ReportAccepted>, ApiError> {
    validate_name("namespace", &ns).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let event: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the report is not JSON: {e}")))?;
    let ids = take_events(&state, &ns, "plain", vec![event]).await?;
    Ok(Json(ReportAccepted {
        group: ids.first().cloned(),
    }))
}

fn view(group: &ErrorGroup, with_samples: bool) -> ErrorGroupView {
    let time = |s: u64| format_time(i64::try_from(s).unwrap_or(0).saturating_mul(1000));
    ErrorGroupView {
        fingerprint: group.fingerprint.clone(),
        project: group.project.clone(),
        kind: group.kind.clone(),
        message: group.message.clone(),
        culprit: group.culprit.clone(),
        count: group.count,
        first_seen: time(group.first_seen),
        last_seen: time(group.last_seen),
        frames: group.frames.clone(),
        samples: with_samples.then(|| group.samples.iter().cloned().collect()),
    }
}

/// `GET /v1/namespaces/{ns}/errors`: groups, most recent first.
pub async fn list(
    State(state): State<AppState>,
    Path(ns): Path<String>,
) -> Result<Json<Items<ErrorGroupView>>, ApiError> {
    validate_name("namespace", &ns).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let groups = reports::groups(&*state.store, &ns)
        .await
        .map_err(store_error)?;
    let items = groups.iter().map(|g| view(g, false)).collect();
    Ok(Json(Items {
        namespace: ns,
        items,
    }))
}

/// `GET /v1/namespaces/{ns}/errors/{fingerprint}`: one group with its sample events.
pub async fn get(
    State(state): State<AppState>,
    Path((ns, fingerprint)): Path<(String, String)>,
) -> Result<Json<ErrorGroupView>, ApiError> {
    validate_name("namespace", &ns).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let groups = reports::groups(&*state.store, &ns)
        .await
        .map_err(store_error)?;
    let group = groups
        .iter()
        .find(|g| g.fingerprint == fingerprint)
        .ok_or_else(|| ApiError::not_found(format!("no error group {fingerprint} in {ns}")))?;
    Ok(Json(view(group, true)))
}
