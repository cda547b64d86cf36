//! The console's pages. Each reads the state it shows the way the admin API
//! does (registry, resources, the metrics store, alarms, error groups) and
//! renders it; write actions appear only for a write token.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use sluice_alarm::AlarmState;
use sluice_metrics::query::Board;

use crate::charts::{chart, Chart};
use crate::{labels, layout, number, page, UiState, Viewer};

fn board(state: &UiState, viewer: &Viewer, service: Option<&str>) -> Option<Board> {
    let metrics = state.app.metrics.as_ref()?;
    sluice_metrics::query::health(
        &metrics.db,
        &viewer.ns,
        service,
        viewer.range.1,
        sluice_metrics::unix_now(),
    )
    .ok()
}

fn percent(share: f64) -> String {
    format!("{:.2} %", share * 100.0)
}

fn health_cards(viewer: &Viewer, board: &Option<Board>) -> Markup {
    let signals = board
        .as_ref()
        .map(|b| b.signals.clone())
        .unwrap_or_default();
    html! {
        div.cards {
            div.card { span.muted { "QPS (" (viewer.range.0) ")" } b { (number(Some(signals.qps), 2)) } }
            div.card { span.muted { "p50" } b { (number(signals.p50_ms, 1)) " ms" } }
            div.card { span.muted { "p98" } b { (number(signals.p98_ms, 1)) " ms" } }
            div.card { span.muted { "p99" } b { (number(signals.p99_ms, 1)) " ms" } }
            div.card {
                span.muted { "errors" }
                b class=(if signals.error_rate > 0.05 { "bad" } else { "good" }) { (percent(signals.error_rate)) }
            }
            div.card { span.muted { "requests" } b { (signals.requests) } }
        }
    }
}

/// The console's trace search for one API's gateway spans over the page's range.
fn traces_of_api(viewer: &Viewer, api: &str) -> String {
    let query: Vec<(&str, &str)> = vec![("service", "sluice-gateway"), ("api", api)];
    format!(
        "/ui/traces?{}&{}",
        serde_urlencoded::to_string(query).unwrap_or_default(),
        viewer.keep()
    )
}

fn top_apis(viewer: &Viewer, board: &Option<Board>) -> Markup {
    let signals = board
        .as_ref()
        .map(|b| b.signals.clone())
        .unwrap_or_default();
    html! {
        h2 { "Top APIs" }
        table #top-apis {
            tr { th { "API" } th { "service" } th { "QPS" } th { "p98 ms" } th { "errors" } th { "" } }
            @for api in &signals.top_apis {
                tr {
                    td { (api.api) } td { (api.service) } td { (number(Some(api.qps), 2)) }
                    td { (number(api.p98_ms, 1)) } td { (percent(api.error_rate)) }
                    td { a.traces href=(traces_of_api(viewer, &api.api)) { "traces" } }
                }
            }
        }
        h2 { "Status codes" }
        table #codes {
            tr { th { "code" } th { "answers" } th { "share" } }
            @for (code, count) in &signals.codes {
                tr {
                    td class=(if code.starts_with('5') { "bad" } else if code.starts_with('4') { "warn" } else { "" }) { (code) }
                    td { (count) }
                    td { (percent(*count as f64 / signals.requests.max(1) as f64)) }
                }
            }
        }
    }
}

/// `GET /ui/`: services and their healthy share, firing alarms, gateway curves.
pub(crate) async fn overview(State(state): State<UiState>, viewer: Viewer) -> Response {
    let services = state.app.registry.services(&viewer.ns);
    let firing: Vec<_> = sluice_alarm::judge::alarms(&*state.app.store, &viewer.ns)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a.state == AlarmState::Firing)
        .collect();
    let board = board(&state, &viewer, None);
    let qps: BTreeMap<&str, f64> = board
        .iter()
        .flat_map(|b| &b.services)
        .map(|s| (s.service.as_str(), s.signals.qps))
        .collect();
    let keep = viewer.keep();
    page(
        &format!("Overview · {}", viewer.ns),
        &viewer,
        "/ui/",
        html! {
            (health_cards(&viewer, &board))
            div.charts {
                (chart(&viewer, &Chart { title: "Gateway QPS", metric: "qps", matching: &[], by: &[], agg: "avg", unit: "req/s" }))
                (chart(&viewer, &Chart { title: "Gateway p98 latency", metric: "p98_ms", matching: &[], by: &[], agg: "avg", unit: "ms" }))
                (chart(&viewer, &Chart { title: "Gateway error rate", metric: "error_rate", matching: &[], by: &[], agg: "avg", unit: "" }))
            }
            (top_apis(&viewer, &board))
            h2 { "Firing alarms (" (firing.len()) ")" }
            table #firing {
                tr { th { "rule" } th { "labels" } th { "since" } th { "count" } th { "message" } }
                @for a in &firing {
                    tr.bad {
                        td { a href={ "/ui/alarms?" (keep) } { (a.rule) } }
                        td { (labels(&a.labels)) }
                        td { (a.fired_at.map(time_text).unwrap_or_default()) }
                        td { (a.count) } td { (a.message) }
                    }
                }
            }
            h2 { "Services (" (services.len()) ")" }
            table #services {
                tr { th { "service" } th { "healthy" } th { "instances" } th { "draining" } th { "QPS" } }
                @for s in &services {
                    tr {
                        td { a href={ "/ui/services/" (s.name) "?" (keep) } { (s.name) } }
                        td class=(if s.healthy < s.total { "bad" } else { "good" }) {
                            (s.healthy) " / " (s.total)
                        }
                        td { (s.total) } td { (s.draining) }
                        td { (number(qps.get(s.name.as_str()).copied(), 2)) }
                    }
                }
            }
        },
    )
    .into_response()
}

fn time_text(unix_s: u64) -> String {
    sluice_model::format_time(i64::try_from(unix_s).unwrap_or(0).saturating_mul(1000))
}

/// `GET /ui/services`: every service with its instances' health.
pub(crate) async fn services(State(state): State<UiState>, viewer: Viewer) -> Response {
    let services = state.app.registry.services(&viewer.ns);
    let keep = viewer.keep();
    page(
        "Services",
        &viewer,
        "/ui/services",
        html! {
            table #services {
                tr { th { "service" } th { "healthy" } th { "instances" } th { "draining" } th { "protection threshold" } }
                @for s in &services {
                    tr {
                        td { a href={ "/ui/services/" (s.name) "?" (keep) } { (s.name) } }
                        td class=(if s.healthy < s.total { "bad" } else { "good" }) { (s.healthy) " / " (s.total) }
                        td { (s.total) } td { (s.draining) } td { (s.protect_threshold) }
                    }
                }
            }
        },
    )
    .into_response()
}

/// `GET /ui/services/{svc}`: instances (drain / undrain), API health and protection.
pub(crate) async fn service(
    State(state): State<UiState>,
    viewer: Viewer,
    Path(svc): Path<String>,
) -> Response {
    if let Err(error) = sluice_model::validate_name("service", &svc) {
        return (StatusCode::BAD_REQUEST, error.to_string()).into_response();
    }
    let list = state.app.registry.instances(&viewer.ns, &svc, true);
    let board = board(&state, &viewer, Some(&svc));
    let protection =
        sluice_api::protection::service_protection(&state.app, &viewer.ns, &svc, viewer.range.1)
            .await;
    let writer = viewer.writer();
    let keep = viewer.keep();
    let path = format!("/ui/services/{svc}");
    page(
        &format!("Service {svc}"),
        &viewer,
        &path,
        html! {
            h2 { "Instances" }
            table #instances {
                tr { th { "id" } th { "address" } th { "weight" } th { "health" } th { "draining" } th { "labels" } @if writer { th { "" } } }
                @for i in &list.instances {
                    tr data-instance=(i.id) {
                        td { (i.id) } td { (i.address) } td { (i.weight) }
                        td class=(if i.healthy { "good" } else { "bad" }) {
                            (if i.healthy { "healthy" } else { "unhealthy" })
                            @if let Some(output) = &i.health_output { br; span.muted { (output) } }
                        }
                        td { (if i.draining { "draining" } else { "–" }) } td { (labels(&i.labels)) }
                        @if writer {
                            td {
                                form.inline method="post" action={ "/ui/services/" (svc) "/instances/" (i.id) "/drain?" (keep) } {
                                    input type="hidden" name="draining" value=(if i.draining { "false" } else { "true" });
                                    button type="submit" name="action" value=(if i.draining { "undrain" } else { "drain" }) {
                                        (if i.draining { "Undrain" } else { "Drain" })
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "API health (last " (viewer.range.0) ")" }
            (health_cards(&viewer, &board))
            div.charts {
                (chart(&viewer, &Chart { title: "QPS by API", metric: "qps", matching: &[("service", &svc)], by: &["api"], agg: "avg", unit: "req/s" }))
                (chart(&viewer, &Chart { title: "p98 latency by API", metric: "p98_ms", matching: &[("service", &svc)], by: &["api"], agg: "avg", unit: "ms" }))
                (chart(&viewer, &Chart { title: "Error rate", metric: "error_rate", matching: &[("service", &svc)], by: &[], agg: "avg", unit: "" }))
                (chart(&viewer, &Chart { title: "Refused requests by reason", metric: "rejections", matching: &[("service", &svc)], by: &["reason"], agg: "rate", unit: "req/s" }))
            }
            (top_apis(&viewer, &board))
            h2 { "Protection" }
            @if !protection.gateway {
                p.muted { "No gateway runs in this process: limits and breakers are shown by the gateways that hold them." }
            }
            table #protection-policies {
                tr { th { "kind" } th { "name" } th { "spec" } }
                @for policy in &protection.policies {
                    tr {
                        td { (policy.kind) }
                        td { a href={ "/ui/resources/" (policy.kind) "/" (policy.name) "?" (keep) } { (policy.name) } }
                        td { code { (policy.spec.to_string()) } }
                    }
                }
                @if protection.policies.is_empty() {
                    tr { td colspan="3" .muted { "No rate limit, connection limit, access list, concurrency limit or breaker names this service or its routes." } }
                }
            }
            @if !protection.status.limiters.is_empty() {
                table #limiters {
                    tr { th { "concurrency limit" } th { "limit now" } th { "in flight" } th { "no-load latency" } }
                    @for limiter in &protection.status.limiters {
                        tr {
                            td { (limiter.scope) } td { (limiter.limit) } td { (limiter.inflight) }
                            td { (number(limiter.min_latency_ms, 2)) " ms" }
                        }
                    }
                }
            }
            @if !protection.status.breakers.is_empty() {
                table #breakers {
                    tr { th { "circuit breaker" } th { "state" } th { "calls in window" } th { "errors in window" } }
                    @for breaker in &protection.status.breakers {
                        tr {
                            td { (breaker.instance.as_deref().unwrap_or("service")) }
                            td class={ "state-" (breaker.state) } { (breaker.state) }
                            td { (breaker.calls) } td { (breaker.errors) }
                        }
                    }
                }
            }
            table #rejections {
                tr { th { "refused (" (viewer.range.0) ")" } th { "requests" } }
                @for (reason, count) in &protection.rejections {
                    tr { td { (reason) } td { (count) } }
                }
                @if protection.rejections.is_empty() {
                    tr { td colspan="2" .muted { "None." } }
                }
            }
            p.muted { "Routes to this service: " (protection.status.routes.join(", ")) }
        },
    )
    .into_response()
}

/// `GET /ui/resources`: every resource of every kind.
pub(crate) async fn resources(State(state): State<UiState>, viewer: Viewer) -> Response {
    let mut rows = Vec::new();
    for kind in state.app.resources.kinds().names() {
        if let Ok((items, _)) = state.app.resources.list(&viewer.ns, &kind).await {
            for item in items {
                rows.push((kind.clone(), item));
            }
        }
    }
    let keep = viewer.keep();
    page(
        "Routes & rules",
        &viewer,
        "/ui/resources",
        html! {
            table #resources {
                tr { th { "kind" } th { "name" } th { "revision" } th { "spec" } }
                @for (kind, item) in &rows {
                    tr {
                        td { (kind) }
                        td { a href={ "/ui/resources/" (kind) "/" (item.metadata.name) "?" (keep) } { (item.metadata.name) } }
                        td { (item.metadata.revision) }
                        td { code { (item.spec.to_string().chars().take(160).collect::<String>()) } }
                    }
                }
            }
        },
    )
    .into_response()
}

/// `GET /ui/resources/{kind}/{name}`: a resource's history, with rollback.
pub(crate) async fn resource(
    State(state): State<UiState>,
    viewer: Viewer,
    Path((kind, name)): Path<(String, String)>,
) -> Response {
    let Ok(history) = state.app.resources.history(&viewer.ns, &kind, &name).await else {
        return (
            StatusCode::NOT_FOUND,
            layout("Not found", None, html! { p { "No such resource." } }),
        )
            .into_response();
    };
    let writer = viewer.writer();
    let keep = viewer.keep();
    let path = format!("/ui/resources/{kind}/{name}");
    page(
        &format!("{kind} {name}"),
        &viewer,
        &path,
        html! {
            table #history {
                tr { th { "revision" } th { "spec" } @if writer { th { "" } } }
                @for entry in &history {
                    tr {
                        td { (entry.revision) @if entry.current { " (current)" } }
                        td { pre { (serde_json::to_string_pretty(&entry.resource.spec).unwrap_or_default()) } }
                        @if writer && !entry.current {
                            td {
                                form.inline method="post" action={ "/ui/resources/" (kind) "/" (name) "/rollback?" (keep) } {
                                    input type="hidden" name="revision" value=(entry.revision);
                                    button type="submit" { "Roll back to this" }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
    .into_response()
}

/// Host metrics shown on the hosts page: (metric, heading, unit, scale for the table).
const HOST_METRICS: [(&str, &str, &str, f64); 6] = [
    ("host_cpu_percent", "CPU", "%", 1.0),
    ("host_mem_used_bytes", "Memory used", "B", 1.0),
    ("host_load1", "Load (1 min)", "", 1.0),
    ("host_net_rx_bytes_per_s", "Network in", "B/s", 1.0),
    ("host_net_tx_bytes_per_s", "Network out", "B/s", 1.0),
    ("host_disk_write_bytes_per_s", "Disk writes", "B/s", 1.0),
];

/// `GET /ui/hosts`: host metrics curves, and the latest figures per host.
pub(crate) async fn hosts(State(state): State<UiState>, viewer: Viewer) -> Response {
    let now = sluice_metrics::unix_now();
    let mut rows: BTreeMap<String, BTreeMap<&str, Option<f64>>> = BTreeMap::new();
    if let Some(metrics) = &state.app.metrics {
        for (metric, _, _, _) in HOST_METRICS {
            let query = sluice_metrics::query::SeriesQuery {
                metric: metric.to_owned(),
                matching: BTreeMap::new(),
                by: Some(vec!["host".to_owned()]),
                agg: "avg".to_owned(),
                from: now.saturating_sub(viewer.range.1),
                to: now,
                step: viewer.range.1,
            };
            if let Ok(answer) = sluice_metrics::query::series(&metrics.db, &query, now) {
                for series in answer.series {
                    let host = series.labels.get("host").cloned().unwrap_or_default();
                    let value = series.points.iter().rev().find_map(|(_, v)| *v);
                    rows.entry(host).or_default().insert(metric, value);
                }
            }
        }
    }
    page(
        "Hosts",
        &viewer,
        "/ui/hosts",
        html! {
            div.charts {
                @for (metric, title, unit, _) in HOST_METRICS {
                    (chart(&viewer, &Chart { title, metric, matching: &[], by: &["host"], agg: "avg", unit }))
                }
            }
            h2 { "Averages over the last " (viewer.range.0) }
            table #hosts {
                tr { th { "host" } @for (_, title, unit, _) in HOST_METRICS { th { (title) " (" (unit) ")" } } }
                @for (host, values) in &rows {
                    tr {
                        td { (host) }
                        @for (metric, _, _, scale) in HOST_METRICS {
                            td { (number(values.get(metric).copied().flatten().map(|v| v / scale), 1)) }
                        }
                    }
                }
            }
        },
    )
    .into_response()
}

/// `GET /ui/alarms`: firing and past alarms (acknowledge), mutes (with a form).
pub(crate) async fn alarms(State(state): State<UiState>, viewer: Viewer) -> Response {
    let writer = viewer.writer();
    let keep = viewer.keep();
    let alarms = sluice_alarm::judge::alarms(&*state.app.store, &viewer.ns)
        .await
        .unwrap_or_default();
    let (firing, past): (Vec<_>, Vec<_>) = alarms
        .into_iter()
        .partition(|a| a.state != AlarmState::Resolved);
    let mutes = state
        .app
        .resources
        .list(&viewer.ns, "Mute")
        .await
        .map(|(items, _)| items)
        .unwrap_or_default();
    let alarm_rows = |list: &[sluice_alarm::Alarm]| {
        html! {
            tr { th { "rule" } th { "state" } th { "labels" } th { "value" } th { "count" } th { "first seen" } th { "last seen" } th { "message" } @if writer { th { "" } } }
            @for a in list {
                tr {
                    td {
                        (a.rule)
                        @if let Some(api) = a.labels.get("api") {
                            " " a.traces href=(traces_of_api(&viewer, api)) { "traces" }
                        } @else if let Some(service) = a.labels.get("service") {
                            " " a.traces href={ "/ui/traces?service=sluice-gateway&tag=sluice.service%3D" (viewer.ns) "/" (service) "&" (keep) } { "traces" }
                        }
                    }
                    td class=(match a.state { AlarmState::Firing => "bad", AlarmState::Pending => "warn", AlarmState::Resolved => "muted" }) { (a.state.as_str()) }
                    td { (labels(&a.labels)) } td { (number(a.value, 3)) } td { (a.count) }
                    td { (time_text(a.first_seen)) } td { (time_text(a.last_seen)) } td { (a.message) }
                    @if writer {
                        td {
                            @if a.state == AlarmState::Firing && !a.acknowledged {
                                form.inline method="post" action={ "/ui/alarms/" (a.id) "/ack?" (keep) } {
                                    button type="submit" { "Acknowledge" }
                                }
                            } @else if a.acknowledged { span.muted { "acknowledged" } }
                        }
                    }
                }
            }
        }
    };
    page(
        "Alarms",
        &viewer,
        "/ui/alarms",
        html! {
            h2 { "Firing and pending (" (firing.len()) ")" }
            table #firing { (alarm_rows(&firing)) }
            h2 { "History" }
            table #history { (alarm_rows(&past)) }
            h2 { "Mutes" }
            @if writer {
                form.mute-form #mute-form method="post" action={ "/ui/mutes?" (keep) } {
                    label { "Match " input type="text" name="match" placeholder="service=echo" required; }
                    label { "for " input type="text" name="duration" value="1h" size="5"; }
                    label { "because " input type="text" name="reason"; }
                    button type="submit" { "Mute" }
                }
            }
            table #mutes {
                tr { th { "name" } th { "match" } th { "ends" } th { "by" } th { "reason" } }
                @for m in &mutes {
                    tr {
                        td { a href={ "/ui/resources/Mute/" (m.metadata.name) "?" (keep) } { (m.metadata.name) } }
                        td { code { (m.spec.get("match").map(ToString::to_string).unwrap_or_default()) } }
                        td { (m.spec.get("ends_at").and_then(|v| v.as_str()).unwrap_or("–")) }
                        td { (m.spec.get("created_by").and_then(|v| v.as_str()).unwrap_or("")) }
                        td { (m.spec.get("reason").and_then(|v| v.as_str()).unwrap_or("")) }
                    }
                }
            }
        },
    )
    .into_response()
}

/// `GET /ui/errors`: error groups with their latest stack.
pub(crate) async fn errors(State(state): State<UiState>, viewer: Viewer) -> Response {
    let groups = sluice_alarm::error_reports::groups(&*state.app.store, &viewer.ns)
        .await
        .unwrap_or_default();
    page(
        "Errors",
        &viewer,
        "/ui/errors",
        html! {
            @if groups.is_empty() { p.muted { "No error reports in this namespace." } }
            @for g in &groups {
                section.error-group {
                    h2 { (g.kind) ": " (g.message) }
                    p.muted { (g.count) " events · " (g.culprit) }
                    table {
                        tr { th { "function" } th { "module" } th { "line" } }
                        @for f in &g.frames {
                            tr { td { (f.function) } td { (f.module) } td { (f.lineno.map_or(String::new(), |l| l.to_string())) } }
                        }
                    }
                }
            }
        },
    )
    .into_response()
}

/// `GET /ui/login`
pub(crate) async fn login_page() -> Markup {
    layout(
        "Sign in",
        None,
        html! {
            form #login method="post" action="/ui/login" {
                label { "Token " input type="password" name="token" autocomplete="current-password"; }
                " "
                button type="submit" { "Sign in" }
            }
        },
    )
}
