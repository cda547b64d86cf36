//! The metrics endpoints: the API-health board, series queries, pushes of business
//! and host metrics, the store's disk use, and the Prometheus exposition.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use sluice_metrics::custom::{CustomMetrics, Push};
use sluice_metrics::host::AgentMetrics;
use sluice_metrics::prometheus::Exposition;
use sluice_metrics::query::{self, SeriesQuery};
use sluice_metrics::{unix_now, Db, MetricsError};
use sluice_model::{duration_text, parse_time, validate_name};

use crate::auth::Access;
use crate::error::ApiError;
use crate::json::ApiJson;
use crate::routes::query as parse_query;
use crate::views;
use crate::AppState;

/// The metrics parts of a node.
#[derive(Clone)]
pub struct MetricsHandle {
    /// The series files.
    pub db: Arc<Db>,
    /// Business metrics pushed through the API.
    pub custom: Arc<CustomMetrics>,
    /// Host metrics pushed by agents.
    pub agents: Arc<AgentMetrics>,
    /// What `/metrics` shows.
    pub exposition: Arc<Exposition>,
}

fn metrics(state: &AppState) -> Result<&MetricsHandle, ApiError> {
    state
        .metrics
        .as_ref()
        .ok_or_else(|| ApiError::not_found("metrics are not kept by this node"))
}

fn metrics_error(error: MetricsError) -> ApiError {
    match error {
        MetricsError::Invalid { message, .. } => ApiError::bad_request(message),
        error @ MetricsError::Cardinality { .. } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "cardinality_limit",
            error.to_string(),
        ),
        error @ (MetricsError::Io { .. } | MetricsError::Corrupt { .. }) => {
            tracing::warn!(%error, "metrics storage error");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "storage",
                error.to_string(),
            )
        }
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, MetricsError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(metrics_error)
}

fn longest_retention(db: &Db) -> u64 {
    db.tiers().last().map_or(3600, |t| t.retention_s())
}

/// The `window` query parameter in seconds (default 5 minutes).
pub(crate) fn window_param(
    params: &std::collections::HashMap<String, String>,
) -> Result<u64, ApiError> {
    match params.get("window") {
        None => Ok(300),
        Some(text) => duration_text::parse(text)
            .map(|d| d.as_secs())
            .map_err(|e| ApiError::bad_request(format!("query parameter window: {e}"))),
    }
}

/// The times a pushed step may have: from the oldest the stored tiers hold to a
/// minute ahead of `now`.
pub(crate) fn step_times(metrics: &MetricsHandle, now: u64) -> (u64, u64) {
    (now.saturating_sub(longest_retention(&metrics.db)), now + 60)
}

/// `GET /v1/namespaces/{ns}/health?window=5m&service=S`
pub async fn health(
    State(state): State<AppState>,
    Path(ns): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<query::Board>, ApiError> {
    let metrics = metrics(&state)?;
    let params = parse_query(raw, &["window", "service"])?;
    validate_name("namespace", &ns).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let window = window_param(&params)?;
    let longest = longest_retention(&metrics.db);
    if window == 0 || window > longest {
        return Err(ApiError::bad_request(format!(
            "query parameter window: {window}s is outside 1s..={longest}s (the stored tiers)"
        )));
    }
    let service = params.get("service").cloned();
    if let Some(service) = &service {
        validate_name("service", service).map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    let db = Arc::clone(&metrics.db);
    let board =
        blocking(move || query::health(&db, &ns, service.as_deref(), window, unix_now())).await?;
    Ok(Json(board))
}

/// Parses a time: Unix seconds, RFC 3339, `now`, or `-DURATION` (before now).
fn parse_when(name: &str, text: &str, now: u64) -> Result<u64, ApiError> {
    if text == "now" {
        return Ok(now);
    }
    if let Some(ago) = text.strip_prefix('-') {
        let ago = duration_text::parse(ago)
            .map_err(|e| ApiError::bad_request(format!("query parameter {name}: {e}")))?;
        return Ok(now.saturating_sub(ago.as_secs()));
    }
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(seconds);
    }
    parse_time(text)
        .map(|ms| u64::try_from(ms / 1000).unwrap_or(0))
        .map_err(|_| {
            ApiError::bad_request(format!(
                "query parameter {name}={text:?} is not Unix seconds, RFC 3339, now or -DURATION"
            ))
        })
}

/// Whether `name` is a label name: `[A-Za-z_][A-Za-z0-9_]*`.
fn is_label_name(name: &str) -> bool {
    sluice_model::valid_metric_name(name, 128)
}

/// Parses `k=v,k=v` (empty pairs skipped, names trimmed).
fn parse_labels(name: &str, text: &str) -> Result<BTreeMap<String, String>, ApiError> {
    let mut labels = BTreeMap::new();
    for pair in text.split(',').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').ok_or_else(|| {
            ApiError::bad_request(format!(
                "query parameter {name}: {pair:?} is not label=value"
            ))
        })?;
        let key = key.trim();
        if !is_label_name(key) {
            return Err(ApiError::bad_request(format!(
                "query parameter {name}: {key:?} is not a label name ([A-Za-z_][A-Za-z0-9_]*)"
            )));
        }
        labels.insert(key.to_owned(), value.trim().to_owned());
    }
    Ok(labels)
}

/// `GET /v1/query?metric=M&match=k=v,...&from=T&to=T&step=D&by=l,...&agg=A`
pub async fn series(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    RawQuery(raw): RawQuery,
) -> Result<Json<query::SeriesAnswer>, ApiError> {
    let metrics = metrics(&state)?;
    let params = parse_query(raw, &["metric", "match", "from", "to", "step", "by", "agg"])?;
    let metric = params
        .get("metric")
        .cloned()
        .ok_or_else(|| ApiError::bad_request("query parameter metric is required"))?;
    if metric.is_empty()
        || metric.len() > 128
        || !metric
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(ApiError::bad_request(format!(
            "query parameter metric={metric:?} is not a metric name"
        )));
    }
    let matching = parse_labels("match", params.get("match").map_or("", String::as_str))?;
    if let Some(allowed) = &access.namespaces {
        let namespace = matching.get("namespace");
        if !namespace.is_some_and(|ns| allowed.contains(ns)) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this token covers some namespaces only: add match=namespace=NS for one of them",
            ));
        }
    }
    let now = unix_now();
    let to = match params.get("to") {
        Some(text) => parse_when("to", text, now)?,
        None => now,
    };
    let from = match params.get("from") {
        Some(text) => parse_when("from", text, now)?,
        None => to.saturating_sub(3600),
    };
    let step = match params.get("step") {
        Some(text) => duration_text::parse(text)
            .map_err(|e| ApiError::bad_request(format!("query parameter step: {e}")))?
            .as_secs()
            .max(1),
        None => (to.saturating_sub(from) / 300).max(1),
    };
    let by = params
        .get("by")
        .map(|text| {
            text.split(',')
                .filter(|l| !l.is_empty())
                .map(|label| {
                    if is_label_name(label) {
                        Ok(label.to_owned())
                    } else {
                        Err(ApiError::bad_request(format!(
                            "query parameter by: {label:?} is not a label name ([A-Za-z_][A-Za-z0-9_]*)"
                        )))
                    }
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let query = SeriesQuery {
        metric,
        matching,
        by,
        agg: params
            .get("agg")
            .cloned()
            .unwrap_or_else(|| "avg".to_owned()),
        from,
        to,
        step,
    };
    let db = Arc::clone(&metrics.db);
    let answer = blocking(move || query::series(&db, &query, now)).await?;
    Ok(Json(answer))
}

/// `POST /v1/namespaces/{ns}/metrics` with `{"metrics": [{name, type, value, labels}]}`.
pub async fn push(
    State(state): State<AppState>,
    Path(ns): Path<String>,
    ApiJson(body): ApiJson<Push>,
) -> Result<Json<views::Accepted>, ApiError> {
    let metrics = metrics(&state)?;
    validate_name("namespace", &ns).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let accepted = metrics.custom.push(&ns, &body).map_err(metrics_error)?;
    Ok(Json(views::Accepted { accepted }))
}

/// An agent's push.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostPush {
    /// `host_*` values.
    #[schemars(extend("propertyNames" = {"pattern": "^host_[A-Za-z0-9_]{0,123}$"}))]
    pub values: BTreeMap<String, f64>,
}

/// `POST /v1/hosts/{host}/metrics` with `{"values": {"host_cpu_percent": 12.5, ...}}`.
pub async fn push_host(
    State(state): State<AppState>,
    Path(host): Path<String>,
    ApiJson(body): ApiJson<HostPush>,
) -> Result<Json<views::Accepted>, ApiError> {
    let metrics = metrics(&state)?;
    let accepted = metrics
        .agents
        .push(&host, &body.values)
        .map_err(metrics_error)?;
    Ok(Json(views::Accepted { accepted }))
}

/// `GET /v1/metrics/usage`: series, bytes, and the tiers.
pub async fn usage(State(state): State<AppState>) -> Result<Json<views::Usage>, ApiError> {
    let metrics = metrics(&state)?;
    let usage = metrics.db.disk_use();
    let tiers = metrics
        .db
        .tiers()
        .iter()
        .map(|t| views::TierView {
            step_s: t.step_s,
            slots: t.slots,
            retention_s: t.retention_s(),
        })
        .collect();
    Ok(Json(views::Usage {
        dir: metrics.db.dir().display().to_string(),
        series: usage.series,
        bytes: usage.bytes,
        bytes_at_limit: usage.bytes_at_limit,
        dropped_series: usage.dropped,
        tiers,
        metrics: metrics.db.names().into_iter().collect(),
    }))
}

/// `GET /metrics`: the OpenMetrics exposition.
pub async fn exposition(State(state): State<AppState>) -> Result<Response, ApiError> {
    let metrics = metrics(&state)?;
    let exposition = Arc::clone(&metrics.exposition);
    let text = tokio::task::spawn_blocking(move || exposition.render())
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::openapi::OPENMETRICS_CONTENT_TYPE),
    );
    Ok(response)
}

/// `POST /v1/metrics/steps` with a [`StepBatch`]: a standalone gateway's recording of
/// one step, merged into the same series as the in-process gateway's.
pub async fn push_step(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    ApiJson(batch): ApiJson<sluice_metrics::recorder::StepBatch>,
) -> Result<Json<views::Accepted>, ApiError> {
    let metrics = metrics(&state)?;
    let now = unix_now();
    let (oldest, _) = step_times(metrics, now);
    let (time, series) = batch.validate(oldest, now).map_err(metrics_error)?;
    if let Some(allowed) = &access.namespaces {
        if let Some((key, _)) = series
            .iter()
            .find(|(key, _)| !allowed.iter().any(|ns| ns == key.label("namespace")))
        {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "this token does not cover namespace {:?} of series {key}",
                    key.label("namespace")
                ),
            ));
        }
    }
    let accepted = series.len();
    let db = Arc::clone(&metrics.db);
    blocking(move || {
        for (key, agg) in &series {
            db.add(key, time, agg)?;
        }
        Ok(())
    })
    .await?;
    Ok(Json(views::Accepted { accepted }))
}
