//! The console's tracing pages: a trace search (service, API, minimum
//! duration, errors only, over the page's range) that lists the slowest and the
//! failed traces first, a trace's waterfall (spans as bars on a time axis,
//! children under their parents, attributes on click), and the dependency
//! graph drawn as SVG. The health board and alarms link here ("traces of this
//! API"). Everything is read from the node's span store, as the Zipkin API
//! reads it.

use std::collections::{BTreeMap, HashMap, HashSet};

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde::Deserialize;
use sluice_trace::span::{extent, root, Span};
use sluice_trace::store::TraceQuery;
use sluice_trace::TraceId;

use crate::{page, UiState, Viewer};

/// The search form's fields.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Search {
    #[serde(default)]
    service: String,
    #[serde(default)]
    api: String,
    /// Minimum duration, such as 200ms.
    #[serde(default)]
    min: String,
    #[serde(default)]
    errors: Option<String>,
    /// A tag to match, key=value (from an alarm's labels).
    #[serde(default)]
    tag: String,
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

fn ms(us: u64) -> String {
    format!("{:.1} ms", us as f64 / 1000.0)
}

fn no_tracing(viewer: &Viewer, path: &str) -> Response {
    page(
        "Traces",
        viewer,
        path,
        html! { p.muted { "Tracing is turned off on this node (see [tracing] in the config)." } },
    )
    .into_response()
}

fn trace_rows(viewer: &Viewer, traces: &[Vec<Span>]) -> Markup {
    let keep = viewer.keep();
    html! {
        tr { th { "trace" } th { "root" } th { "started" } th { "took" } th { "spans" } th { "errors" } }
        @for spans in traces {
            @let (start, took) = extent(spans);
            @let errors = spans.iter().filter(|s| s.is_error()).count();
            tr {
                td { a href={ "/ui/traces/" (spans[0].trace_id) "?" (keep) } { code { (spans[0].trace_id) } } }
                td { @if let Some(root) = root(spans) { (root.service().unwrap_or("?")) " · " (root.name.as_deref().unwrap_or("")) } }
                td { (sluice_model::format_time(i64::try_from(start / 1000).unwrap_or(0))) }
                td { (ms(took)) }
                td { (spans.len()) }
                td class=(if errors > 0 { "bad" } else { "" }) { (errors) }
            }
        }
    }
}

/// `GET /ui/traces`: the search, the slowest traces and the failed ones.
pub(crate) async fn search(
    State(state): State<UiState>,
    viewer: Viewer,
    Query(search): Query<Search>,
) -> Response {
    let Some(tracing) = state.app.tracing.clone() else {
        return no_tracing(&viewer, "/ui/traces");
    };
    let min_us = match search.min.trim() {
        "" => None,
        text => match sluice_model::duration_text::parse(text) {
            Ok(d) => Some(u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)),
            Err(e) => return crate::bad_request(format!("min {text:?}: {e}")),
        },
    };
    let (key, value) = search
        .tag
        .split_once('=')
        .unwrap_or((search.tag.as_str(), ""));
    let query = TraceQuery {
        service: Some(search.service.trim().to_lowercase()).filter(|s| !s.is_empty()),
        span_name: Some(search.api.trim().to_owned()).filter(|s| !s.is_empty()),
        annotation_query: if key.trim().is_empty() {
            Vec::new()
        } else {
            vec![(key.trim().to_owned(), Some(value.trim().to_owned()))]
        },
        min_duration_us: min_us,
        end_us: now_us(),
        lookback_us: viewer.range.1.saturating_mul(1_000_000),
        limit: 200,
        errors_only: search.errors.is_some(),
        ..TraceQuery::default()
    };
    let mut failed_query = query.clone();
    failed_query.errors_only = true;
    failed_query.limit = 20;
    let (mut traces, failed) = tokio::task::spawn_blocking(move || {
        let store = tracing.store();
        (store.search(&query), store.search(&failed_query))
    })
    .await
    .unwrap_or_default();
    traces.sort_by_key(|spans| std::cmp::Reverse(extent(spans).1));
    traces.truncate(20);
    let keep = viewer.keep();
    page(
        "Traces",
        &viewer,
        "/ui/traces",
        html! {
            form.search method="get" action="/ui/traces" {
                input type="hidden" name="ns" value=(viewer.ns);
                input type="hidden" name="range" value=(viewer.range.0);
                input type="hidden" name="refresh" value="0";
                label { "service " input type="text" name="service" value=(search.service) placeholder="sluice-gateway"; }
                label { "API " input type="text" name="api" value=(search.api) placeholder="GET /articles/{id}"; }
                label { "at least " input type="text" name="min" value=(search.min) size="6" placeholder="200ms"; }
                label { "tag " input type="text" name="tag" value=(search.tag) size="14" placeholder="key=value"; }
                label { input type="checkbox" name="errors" value="1" checked[search.errors.is_some()]; " errors only" }
                button type="submit" { "Find" }
                " " a href={ "/ui/dependencies?" (keep) } { "dependency graph" }
            }
            h2 { "Slowest (" (viewer.range.0) ")" }
            @if traces.is_empty() { p.muted { "No trace matches in this range." } }
            @else { table #slowest { (trace_rows(&viewer, &traces)) } }
            h2 { "Failed" }
            @if failed.is_empty() { p.muted { "No failed trace matches in this range." } }
            @else { table #failed { (trace_rows(&viewer, &failed)) } }
        },
    )
    .into_response()
}

/// `GET /ui/traces/{id}`: the waterfall.
pub(crate) async fn trace(
    State(state): State<UiState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Response {
    let Some(tracing) = state.app.tracing.clone() else {
        return no_tracing(&viewer, "/ui/traces");
    };
    let padded = if id.len() <= 16 {
        format!("{id:0>16}")
    } else {
        format!("{id:0>32}")
    };
    let Some(trace) = TraceId::from_hex(&padded.to_ascii_lowercase()) else {
        return crate::bad_request(format!("{id:?} is not a trace id (up to 32 hex digits)"));
    };
    let spans = tokio::task::spawn_blocking(move || tracing.store().trace(trace))
        .await
        .unwrap_or_default();
    if spans.is_empty() {
        return (
            axum::http::StatusCode::NOT_FOUND,
            page("Trace not found", &viewer, "/ui/traces", html! {
                p { "No trace " code { (id) } " is stored on this node (it may have been dropped by tail decisions or aged out)." }
            }),
        )
            .into_response();
    }
    let (start, took) = extent(&spans);
    let took = took.max(1);
    let ids: HashSet<&str> = spans.iter().map(|s| s.id.as_str()).collect();
    let mut order: Vec<(usize, &Span)> = Vec::new();
    let mut children: HashMap<&str, Vec<&Span>> = HashMap::new();
    for span in &spans {
        if let Some(parent) = span.parent_id.as_deref().filter(|p| ids.contains(p)) {
            if parent != span.id {
                children.entry(parent).or_default().push(span);
            }
        }
    }
    let mut stack: Vec<(usize, &Span)> = spans
        .iter()
        .filter(|s| {
            s.parent_id
                .as_deref()
                .is_none_or(|p| !ids.contains(p) || p == s.id)
        })
        .rev()
        .map(|s| (0, s))
        .collect();
    let mut seen = HashSet::new();
    while let Some((depth, span)) = stack.pop() {
        if !seen.insert(std::ptr::from_ref(span)) {
            continue;
        }
        order.push((depth, span));
        for child in children.get(span.id.as_str()).into_iter().flatten().rev() {
            stack.push((depth + 1, child));
        }
    }
    let services: std::collections::BTreeSet<&str> =
        spans.iter().filter_map(Span::service).collect();
    page(
        "Trace",
        &viewer,
        "/ui/traces",
        html! {
            p {
                code { (spans[0].trace_id) } " · " (spans.len()) " spans · " (services.len()) " services · "
                (ms(took)) " · started " (sluice_model::format_time(i64::try_from(start / 1000).unwrap_or(0)))
            }
            div.waterfall {
                div.axis { span { "0" } span { (ms(took / 2)) } span { (ms(took)) } }
                @for (depth, span) in &order {
                    @let offset = span.timestamp.unwrap_or(start).saturating_sub(start);
                    @let left = offset as f64 * 100.0 / took as f64;
                    @let width = (span.duration.unwrap_or(0) as f64 * 100.0 / took as f64).max(0.3).min(100.0 - left.min(99.7));
                    details.span {
                        summary {
                            span.label style={ "padding-left:" (depth * 14) "px" } {
                                b { (span.service().unwrap_or("?")) } " " (span.name.as_deref().unwrap_or(""))
                                @if let Some(kind) = span.kind { " " span.muted { (format!("{kind:?}").to_uppercase()) } }
                            }
                            span.track {
                                span class=(if span.is_error() { "bar error" } else { "bar" })
                                    style={ "left:" (format!("{left:.2}")) "%;width:" (format!("{width:.2}")) "%" }
                                    title=(ms(span.duration.unwrap_or(0))) {}
                            }
                            span.took { (ms(span.duration.unwrap_or(0))) }
                        }
                        table.attributes {
                            tr { th { "span" } td { code { (span.id) } @if let Some(p) = &span.parent_id { " (parent " code { (p) } ")" } } }
                            @if let Some(remote) = &span.remote_endpoint {
                                tr { th { "remote" } td {
                                    (remote.service_name.as_deref().unwrap_or(""))
                                    " " (remote.ipv4.as_deref().or(remote.ipv6.as_deref()).unwrap_or(""))
                                    @if let Some(port) = remote.port { ":" (port) }
                                } }
                            }
                            @for (key, value) in &span.tags { tr { th { (key) } td { (value) } } }
                            @for annotation in &span.annotations {
                                tr { th { "+" (ms(annotation.timestamp.saturating_sub(start))) } td { (annotation.value) } }
                            }
                        }
                    }
                }
            }
        },
    )
    .into_response()
}

/// `GET /ui/dependencies`: the graph of the page's range, drawn in layers
/// (callers left of callees), edges labelled with calls, errors and p99.
pub(crate) async fn dependencies(State(state): State<UiState>, viewer: Viewer) -> Response {
    let Some(tracing) = state.app.tracing.clone() else {
        return no_tracing(&viewer, "/ui/dependencies");
    };
    let lookback = viewer.range.1.saturating_mul(1_000_000);
    let links =
        tokio::task::spawn_blocking(move || tracing.store().dependencies(now_us(), lookback, true))
            .await
            .unwrap_or_default();
    // Layers: the longest call path from a service nobody calls (cycles cut).
    let mut layer: BTreeMap<&str, usize> = BTreeMap::new();
    for link in &links {
        layer.entry(&link.parent).or_insert(0);
        layer.entry(&link.child).or_insert(0);
    }
    for _ in 0..layer.len() {
        let mut changed = false;
        for link in &links {
            let next = layer[link.parent.as_str()] + 1;
            if next > layer[link.child.as_str()] && next < layer.len() {
                layer.insert(&link.child, next);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let mut columns: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
    for (service, column) in &layer {
        columns.entry(*column).or_default().push(service);
    }
    let (column_width, row_height) = (240.0, 90.0);
    let tallest = columns.values().map(Vec::len).max().unwrap_or(1);
    let width = column_width * columns.len().max(1) as f64;
    let height = row_height * tallest as f64 + 20.0;
    let mut position: HashMap<&str, (f64, f64)> = HashMap::new();
    for (column, services) in &columns {
        for (row, service) in services.iter().enumerate() {
            position.insert(
                service,
                (
                    20.0 + *column as f64 * column_width,
                    30.0 + row as f64 * row_height,
                ),
            );
        }
    }
    page(
        "Dependency graph",
        &viewer,
        "/ui/dependencies",
        html! {
            p.muted { "Calls between services in the last " (viewer.range.0) ", from the traces kept. "
                a href={ "/ui/traces?" (viewer.keep()) } { "Find traces" } }
            @if links.is_empty() { p.muted { "No calls between services in this range." } }
            @else {
                svg #graph xmlns="http://www.w3.org/2000/svg" width=(width) height=(height) viewBox={ "0 0 " (width) " " (height) } {
                    defs { marker #arrow viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto" { path d="M0,0 L10,5 L0,10 z" fill="#8a94a6" {} } }
                    @for link in &links {
                        @let (x1, y1) = position[link.parent.as_str()];
                        @let (x2, y2) = position[link.child.as_str()];
                        @let (x1, y1, x2, y2) = (x1 + 150.0, y1 + 14.0, x2, y2 + 14.0);
                        g.edge class=(if link.error_count > 0 { "failing" } else { "" }) {
                            line x1=(x1) y1=(y1) x2=(x2) y2=(y2) marker-end="url(#arrow)" {}
                            text x=((x1 + x2) / 2.0) y=((y1 + y2) / 2.0 - 4.0) text-anchor="middle" {
                                (link.call_count) " calls"
                                @if link.error_count > 0 { ", " (link.error_count) " failed" }
                                @if let Some(p99) = link.p99_us { ", p99 " (ms(p99)) }
                            }
                        }
                    }
                    @for (service, (x, y)) in &position {
                        g.node {
                            rect x=(x) y=(y) width="150" height="28" rx="5" {}
                            text x=(x + 75.0) y=(y + 18.0) text-anchor="middle" { (service) }
                        }
                    }
                }
                table #links {
                    tr { th { "caller" } th { "callee" } th { "calls" } th { "failed" } th { "p50" } th { "p99" } }
                    @for link in &links {
                        tr {
                            td { (link.parent) } td { (link.child) } td { (link.call_count) }
                            td class=(if link.error_count > 0 { "bad" } else { "" }) { (link.error_count) }
                            td { (link.p50_us.map(ms).unwrap_or_default()) } td { (link.p99_us.map(ms).unwrap_or_default()) }
                        }
                    }
                }
            }
        },
    )
    .into_response()
}
