//! Charts: the markup of a chart (an element whose `data-src` names its series)
//! and `GET /ui/series`, which answers that series in the column form uPlot draws
//! — `{"x": [unix seconds], "series": [{"label", "values"}], "unit"}` — over the
//! viewer's range, at most [`MAX_SERIES`] curves (the largest by total).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::json;
use sluice_metrics::query::{self, SeriesQuery};

use crate::{UiState, Viewer};

/// The most curves one chart draws.
pub const MAX_SERIES: usize = 10;

/// Points a chart aims at across its range.
const POINTS: u64 = 120;

/// What a chart shows.
pub struct Chart<'a> {
    /// Its heading.
    pub title: &'a str,
    /// The metric or signal (`qps`, `p98_ms`, `host_cpu_percent`, ...).
    pub metric: &'a str,
    /// Labels the series must have (the namespace is added for non-host metrics).
    pub matching: &'a [(&'a str, &'a str)],
    /// Labels that split it into curves (none: one curve).
    pub by: &'a [&'a str],
    /// How a stored metric's slots read (`avg`, `rate`, `sum`, ...).
    pub agg: &'a str,
    /// Unit shown with values.
    pub unit: &'a str,
}

fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char);
            }
            _ => {
                let _ = write!(out, "%{byte:02X}");
            }
        }
    }
    out
}

/// The chart's element; `console.js` fills it in.
pub fn chart(viewer: &Viewer, chart: &Chart<'_>) -> Markup {
    let matching = chart
        .matching
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let src = format!(
        "/ui/series?{}&metric={}&match={}&by={}&agg={}&unit={}",
        viewer.keep(),
        encode(chart.metric),
        encode(&matching),
        encode(&chart.by.join(",")),
        encode(chart.agg),
        encode(chart.unit),
    );
    html! {
        div.chart data-src=(src) data-metric=(chart.metric) {
            h3 { (chart.title) }
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct SeriesParams {
    metric: String,
    #[serde(default, rename = "match")]
    matching: String,
    #[serde(default)]
    by: String,
    #[serde(default = "default_agg")]
    agg: String,
    #[serde(default)]
    unit: String,
}

fn default_agg() -> String {
    "avg".to_owned()
}

fn bad(message: String) -> Response {
    (StatusCode::BAD_REQUEST, message).into_response()
}

/// `GET /ui/series?metric=M&match=k=v,...&by=l,...&agg=A&ns=&range=`
pub(crate) async fn series(
    State(state): State<UiState>,
    viewer: Viewer,
    Query(params): Query<SeriesParams>,
) -> Response {
    let Some(metrics) = state.app.metrics.as_ref() else {
        return (StatusCode::NOT_FOUND, "metrics are not kept by this node").into_response();
    };
    if params.metric.is_empty()
        || params.metric.len() > 128
        || !params
            .metric
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
    {
        return bad(format!("metric {:?} is not a metric name", params.metric));
    }
    let mut matching = BTreeMap::new();
    for pair in params.matching.split(',').filter(|p| !p.is_empty()) {
        let Some((label, value)) = pair.split_once('=') else {
            return bad(format!("match {pair:?} is not label=value"));
        };
        matching.insert(label.to_owned(), value.to_owned());
    }
    if !params.metric.starts_with("host_") {
        matching.insert("namespace".to_owned(), viewer.ns.clone());
    }
    let by: Vec<String> = params
        .by
        .split(',')
        .filter(|b| !b.is_empty())
        .map(str::to_owned)
        .collect();
    let now = sluice_metrics::unix_now();
    let range = viewer.range.1;
    let finest = metrics.db.tiers().first().map_or(10, |t| t.step_s).max(1);
    let query = SeriesQuery {
        metric: params.metric.clone(),
        matching,
        by: Some(by),
        agg: params.agg.clone(),
        from: now.saturating_sub(range),
        to: now,
        step: (range / POINTS).max(finest),
    };
    let db = std::sync::Arc::clone(&metrics.db);
    let answer = match tokio::task::spawn_blocking(move || query::series(&db, &query, now)).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(error)) => return bad(error.to_string()),
        Err(error) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response()
        }
    };
    let points = (answer.to.saturating_sub(answer.from)).div_ceil(answer.step.max(1));
    let x: Vec<u64> = (0..points).map(|i| answer.from + i * answer.step).collect();
    let mut curves: Vec<(String, Vec<Option<f64>>, f64)> = answer
        .series
        .into_iter()
        .map(|series| {
            let label = if series.labels.is_empty() {
                params.metric.clone()
            } else {
                series
                    .labels
                    .values()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(" · ")
            };
            let mut values = vec![None; x.len()];
            for (time, value) in series.points {
                let index = (time.saturating_sub(answer.from) / answer.step.max(1)) as usize;
                if let Some(slot) = values.get_mut(index) {
                    *slot = value;
                }
            }
            let total = values.iter().flatten().map(|v| v.abs()).sum::<f64>();
            (label, values, total)
        })
        .collect();
    curves.sort_by(|a, b| b.2.total_cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
    curves.truncate(MAX_SERIES);
    Json(json!({
        "metric": params.metric,
        "unit": params.unit,
        "step": answer.step,
        "first_step_s": finest,
        "x": x,
        "series": curves
            .into_iter()
            .map(|(label, values, _)| json!({"label": label, "values": values}))
            .collect::<Vec<_>>(),
    }))
    .into_response()
}
