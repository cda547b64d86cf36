//! Sluice's web console, served by `sluice up` at `/ui/` on the admin address:
//! server-rendered pages (maud) over the same state the admin API serves — the
//! overview, services with their instances (drain / undrain) and API health,
//! alarms and error groups. No JavaScript build; styles are embedded.
//!
//! With tokens configured, every page needs one: the login page keeps it in an
//! HttpOnly, SameSite=Strict cookie; a read token sees no write actions, and the
//! actions refuse it.

use std::collections::BTreeMap;

use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup, DOCTYPE};
use serde::Deserialize;
use sluice_api::{Access, AppState, Auth, Role};

/// The cookie holding the token.
const COOKIE: &str = "sluice_token";

const STYLE: &str = r#"
body { font-family: system-ui, sans-serif; margin: 0; color: #1d2433; background: #f6f7f9; }
nav { background: #1d2433; padding: 0.6rem 1.2rem; }
nav a { color: #e8ecf3; margin-right: 1.2rem; text-decoration: none; font-weight: 600; }
main { padding: 1.2rem; max-width: 1200px; }
table { border-collapse: collapse; width: 100%; background: white; margin: 0.5rem 0 1.5rem; }
th, td { text-align: left; padding: 0.35rem 0.6rem; border-bottom: 1px solid #e3e6eb; font-size: 0.92rem; }
th { background: #eef1f5; }
.cards { display: flex; gap: 1rem; flex-wrap: wrap; }
.card { background: white; padding: 0.8rem 1rem; border-radius: 6px; min-width: 9rem; box-shadow: 0 1px 2px #0001; }
.card b { display: block; font-size: 1.4rem; }
.bad { color: #b42318; } .good { color: #067647; } .muted { color: #6b7280; }
button { cursor: pointer; }
"#;

/// What the console's handlers share.
#[derive(Clone)]
pub struct UiState {
    /// The admin API's state.
    pub app: AppState,
    /// Tokens.
    pub auth: std::sync::Arc<Auth>,
}

/// The console's routes, under `/ui`.
pub fn router(app: AppState, auth: Auth) -> Router {
    let state = UiState {
        app,
        auth: std::sync::Arc::new(auth),
    };
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(overview))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/services", get(services))
        .route("/ui/services/{svc}", get(service))
        .route("/ui/services/{svc}/instances/{id}/drain", post(drain))
        .route("/ui/resources", get(resources))
        .route("/ui/resources/{kind}/{name}", get(resource))
        .route("/ui/resources/{kind}/{name}/rollback", post(rollback))
        .route("/ui/hosts", get(hosts))
        .route("/ui/alarms", get(alarms))
        .route("/ui/alarms/{id}/ack", post(acknowledge))
        .route("/ui/mutes", post(mute))
        .route("/ui/errors", get(errors))
        .with_state(state)
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// The caller's access (`None`: send them to the login page).
fn access(state: &UiState, headers: &HeaderMap) -> Option<Access> {
    state.auth.access(cookie_token(headers).as_deref())
}

fn to_login() -> Response {
    Redirect::to("/ui/login").into_response()
}

#[derive(Debug, Deserialize)]
struct NamespaceQuery {
    #[serde(default = "default_namespace")]
    ns: String,
}

fn default_namespace() -> String {
    "default".to_owned()
}

fn page(title: &str, namespace: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Sluice" }
                style { (maud::PreEscaped(STYLE)) }
            }
            body {
                nav {
                    a href={ "/ui/?ns=" (namespace) } { "Sluice" }
                    a href={ "/ui/services?ns=" (namespace) } { "Services" }
                    a href={ "/ui/resources?ns=" (namespace) } { "Routes & rules" }
                    a href={ "/ui/alarms?ns=" (namespace) } { "Alarms" }
                    a href={ "/ui/errors?ns=" (namespace) } { "Errors" }
                    a href={ "/ui/hosts?ns=" (namespace) } { "Hosts" }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

fn denied(namespace: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        page(
            "Not allowed",
            namespace,
            html! { p { "Your token does not cover namespace " (namespace) "." } },
        ),
    )
        .into_response()
}

fn number(value: Option<f64>, digits: usize) -> String {
    value.map_or("–".to_owned(), |v| format!("{v:.digits$}"))
}

fn board(
    state: &UiState,
    namespace: &str,
    service: Option<&str>,
) -> Option<sluice_metrics::query::Board> {
    let metrics = state.app.metrics.as_ref()?;
    sluice_metrics::query::health(
        &metrics.db,
        namespace,
        service,
        300,
        sluice_metrics::unix_now(),
    )
    .ok()
}

fn health_cards(board: &Option<sluice_metrics::query::Board>) -> Markup {
    let signals = board
        .as_ref()
        .map(|b| b.signals.clone())
        .unwrap_or_default();
    html! {
        div.cards {
            div.card { span.muted { "QPS (5 min)" } b { (number(Some(signals.qps), 2)) } }
            div.card { span.muted { "p98" } b { (number(signals.p98_ms, 1)) " ms" } }
            div.card {
                span.muted { "errors" }
                b class=(if signals.error_rate > 0.05 { "bad" } else { "good" }) {
                    (format!("{:.2}", signals.error_rate * 100.0)) " %"
                }
            }
        }
        h2 { "Top APIs" }
        table {
            tr { th { "API" } th { "service" } th { "QPS" } th { "p98 ms" } th { "errors" } }
            @for api in &signals.top_apis {
                tr {
                    td { (api.api) } td { (api.service) } td { (number(Some(api.qps), 2)) }
                    td { (number(api.p98_ms, 1)) } td { (format!("{:.2} %", api.error_rate * 100.0)) }
                }
            }
        }
        h2 { "Status codes" }
        p { @for (code, count) in &signals.codes { span { (code) ": " (count) "  " } } }
    }
}

async fn overview(
    State(state): State<UiState>,
    headers: HeaderMap,
    Query(q): Query<NamespaceQuery>,
) -> Response {
    let Some(access) = access(&state, &headers) else {
        return to_login();
    };
    if !access.covers(&q.ns) {
        return denied(&q.ns);
    }
    let services = state.app.registry.services(&q.ns);
    let firing = sluice_alarm::judge::alarms(&*state.app.store, &q.ns)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a.state == sluice_alarm::AlarmState::Firing)
        .collect::<Vec<_>>();
    let board = board(&state, &q.ns, None);
    page(
        &format!("Overview · {}", q.ns),
        &q.ns,
        html! {
            (health_cards(&board))
            h2 { "Services" }
            table {
                tr { th { "service" } th { "healthy" } th { "total" } th { "draining" } }
                @for s in &services {
                    tr {
                        td { a href={ "/ui/services/" (s.name) "?ns=" (q.ns) } { (s.name) } }
                        td class=(if s.healthy < s.total { "bad" } else { "good" }) { (s.healthy) }
                        td { (s.total) } td { (s.draining) }
                    }
                }
            }
            h2 { "Firing alarms (" (firing.len()) ")" }
            table {
                tr { th { "rule" } th { "labels" } th { "count" } th { "message" } }
                @for a in &firing {
                    tr { td { (a.rule) } td { (labels(&a.labels)) } td { (a.count) } td { (a.message) } }
                }
            }
        },
    )
    .into_response()
}

fn labels(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn services(
    State(state): State<UiState>,
    headers: HeaderMap,
    Query(q): Query<NamespaceQuery>,
) -> Response {
    let Some(access) = access(&state, &headers) else {
        return to_login();
    };
    if !access.covers(&q.ns) {
        return denied(&q.ns);
    }
    let services = state.app.registry.services(&q.ns);
    page(
        "Services",
        &q.ns,
        html! {
            table {
                tr { th { "service" } th { "healthy" } th { "total" } th { "draining" } th { "protection threshold" } }
                @for s in &services {
                    tr {
                        td { a href={ "/ui/services/" (s.name) "?ns=" (q.ns) } { (s.name) } }
                        td { (s.healthy) } td { (s.total) } td { (s.draining) } td { (s.protect_threshold) }
                    }
                }
            }
        },
    )
    .into_response()
}

async fn service(
    State(state): State<UiState>,
    headers: HeaderMap,
    Path(svc): Path<String>,
    Query(q): Query<NamespaceQuery>,
) -> Response {
    let Some(access) = access(&state, &headers) else {
        return to_login();
    };
    if !access.covers(&q.ns) {
        return denied(&q.ns);
    }
    let writer = access.role >= Role::Write;
    let list = state.app.registry.instances(&q.ns, &svc, true);
    let board = board(&state, &q.ns, Some(&svc));
    page(
        &format!("Service {svc}"),
        &q.ns,
        html! {
            h2 { "Instances" }
            table {
                tr { th { "id" } th { "address" } th { "weight" } th { "healthy" } th { "draining" } th { "labels" } @if writer { th { "" } } }
                @for i in &list.instances {
                    tr {
                        td { (i.id) } td { (i.address) } td { (i.weight) }
                        td class=(if i.healthy { "good" } else { "bad" }) { (i.healthy) }
                        td { (i.draining) } td { (labels(&i.labels)) }
                        @if writer {
                            td {
                                form method="post" action={ "/ui/services/" (svc) "/instances/" (i.id) "/drain?ns=" (q.ns) } {
                                    input type="hidden" name="draining" value=(if i.draining { "false" } else { "true" });
                                    button type="submit" { (if i.draining { "Undrain" } else { "Drain" }) }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "API health (last 5 minutes)" }
            (health_cards(&board))
        },
    )
    .into_response()
}

#[derive(Debug, Deserialize)]
struct DrainForm {
    draining: bool,
}

async fn drain(
    State(state): State<UiState>,
    headers: HeaderMap,
    Path((svc, id)): Path<(String, String)>,
    Query(q): Query<NamespaceQuery>,
    Form(form): Form<DrainForm>,
) -> Response {
    let Some(access) = access(&state, &headers) else {
        return to_login();
    };
    if !access.covers(&q.ns) || access.role < Role::Write {
        return (StatusCode::FORBIDDEN, "a write token is needed to drain").into_response();
    }
    let patch = sluice_registry::InstancePatch {
        draining: Some(form.draining),
        ..sluice_registry::InstancePatch::default()
    };
    match state.app.registry.update(&q.ns, &svc, &id, patch).await {
        Ok(_) => Redirect::to(&format!("/ui/services/{svc}?ns={}", q.ns)).into_response(),
        Err(error) => (StatusCode::BAD_REQUEST, error.to_string()).into_response(),
    }
}

async fn resources(
    State(state): State<UiState>,
    headers: HeaderMap,
    Query(q): Query<NamespaceQuery>,
) -> Response {
    let Some(access) = access(&state, &headers) else {
        return to_login();
    };
    if !access.covers(&q.ns) {
        return denied(&q.ns);
    }
    let mut rows = Vec::new();
    for kind in state.app.resources.kinds().names() {
        if let Ok((items, _)) = state.app.resources.list(&q.ns, &kind).await {
            for item in items {
                rows.push((kind.clone(), item));
            }
        }
    }
    page(
        "Routes & rules",
        &q.ns,
        html! {
            table {
                tr { th { "kind" } th { "name" } th { "revision" } th { "spec" } }
                @for (kind, item) in &rows {
                    tr {
                        td { (kind) }
                        td { a href={ "/ui/resources/" (kind) "/" (item.metadata.name) "?ns=" (q.ns) } { (item.metadata.name) } }
                        td { (item.metadata.revision) }
                        td { code { (item.spec.to_string().chars().take(160).collect::<String>()) } }
                    }
                }
            }
        },
    )
    .into_response()
}

async fn resource(
    State(state): State<UiState>,
    headers: HeaderMap,
    Path((kind, name)): Path<(String, String)>,
    Query(q): Query<NamespaceQuery>,
) -> Response {
    let Some(access) = access(&state, &headers) else {
        return to_login();
    };
    if !access.covers(&q.ns) {
        return denied(&q.ns);
    }
    let writer = access.role >= Role::Write;
    let history = match state.app.resources.history(&q.ns, &kind, &name).await {
        Ok(history) => history,
        Err(_) => {
            return (
                StatusCode::NOT_FOUND,
                page("Not found", &q.ns, html! { p { "No such resource." } }),
            )
                .into_response()
        }
    };
    page(
        &format!("{kind} {name}"),
        &q.ns,
        html! {
            table {
                tr { th { "revision" } th { "spec" } @if writer { th { "" } } }
                @for entry in &history {
                    tr {
                        td { (entry.revision) @if entry.current { " (current)" } }
                        td { pre { (serde_json::to_string_pretty(&entry.resource.spec).unwrap_or_default()) } }
                        @if writer && !entry.current {
                            td {
                                form method="post" action={ "/ui/resources/" (kind) "/" (name) "/rollback?ns=" (q.ns) } {
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

#[derive(Debug, Deserialize)]
struct RollbackForm {
    revision: u64,
}

async fn rollback(
    State(state): State<UiState>,
    headers: HeaderMap,
    Path((kind, name)): Path<(String, String)>,
    Query(q): Query<NamespaceQuery>,
    Form(form): Form<RollbackForm>,
) -> Response {
    let Some(access) = access(&state, &headers) else {
        return to_login();
    };
    if !access.covers(&q.ns) || access.role < Role::Write {
        return (
            StatusCode::FORBIDDEN,
            "a write token is needed to roll back",
        )
            .into_response();
    }
    match state
        .app
        .resources
        .rollback(&q.ns, &kind, &name, form.revision)
        .await
    {
        Ok(_) => Redirect::to(&format!("/ui/resources/{kind}/{name}?ns={}", q.ns)).into_response(),
        Err(error) => (StatusCode::BAD_REQUEST, format!("{error:?}")).into_response(),
    }
}

async fn hosts(
    State(state): State<UiState>,
    headers: HeaderMap,
    Query(q): Query<NamespaceQuery>,
) -> Response {
    let Some(_) = access(&state, &headers) else {
        return to_login();
    };
    let now = sluice_metrics::unix_now();
    let mut rows: BTreeMap<String, BTreeMap<String, Option<f64>>> = BTreeMap::new();
    if let Some(metrics) = &state.app.metrics {
        for metric in [
            "host_cpu_percent",
            "host_mem_used_bytes",
            "host_load1",
            "host_net_rx_bytes_per_s",
            "host_disk_write_bytes_per_s",
        ] {
            let query = sluice_metrics::query::SeriesQuery {
                metric: metric.to_owned(),
                matching: BTreeMap::new(),
                by: Some(vec!["host".to_owned()]),
                agg: "avg".to_owned(),
                from: now.saturating_sub(300),
                to: now,
                step: 300,
            };
            if let Ok(answer) = sluice_metrics::query::series(&metrics.db, &query, now) {
                for series in answer.series {
                    let host = series.labels.get("host").cloned().unwrap_or_default();
                    let value = series.points.iter().rev().find_map(|(_, v)| *v);
                    rows.entry(host)
                        .or_default()
                        .insert(metric.to_owned(), value);
                }
            }
        }
    }
    let cell = |values: &BTreeMap<String, Option<f64>>, metric: &str, scale: f64, digits: usize| {
        number(
            values.get(metric).copied().flatten().map(|v| v / scale),
            digits,
        )
    };
    page(
        "Hosts",
        &q.ns,
        html! {
            p.muted { "Averages over the last 5 minutes." }
            table {
                tr { th { "host" } th { "CPU %" } th { "memory used (MiB)" } th { "load 1m" } th { "net in (KiB/s)" } th { "disk write (KiB/s)" } }
                @for (host, values) in &rows {
                    tr {
                        td { (host) }
                        td { (cell(values, "host_cpu_percent", 1.0, 1)) }
                        td { (cell(values, "host_mem_used_bytes", 1048576.0, 0)) }
                        td { (cell(values, "host_load1", 1.0, 2)) }
                        td { (cell(values, "host_net_rx_bytes_per_s", 1024.0, 1)) }
                        td { (cell(values, "host_disk_write_bytes_per_s", 1024.0, 1)) }
                    }
                }
            }
        },
    )
    .into_response()
}

async fn alarms(
    State(state): State<UiState>,
    headers: HeaderMap,
    Query(q): Query<NamespaceQuery>,
) -> Response {
    let Some(access) = access(&state, &headers) else {
        return to_login();
    };
    if !access.covers(&q.ns) {
        return denied(&q.ns);
    }
    let writer = access.role >= Role::Write;
    let alarms = sluice_alarm::judge::alarms(&*state.app.store, &q.ns)
        .await
        .unwrap_or_default();
    page(
        "Alarms",
        &q.ns,
        html! {
            @if writer {
                h2 { "Mute" }
                form method="post" action={ "/ui/mutes?ns=" (q.ns) } {
                    label { "Match " input type="text" name="match" placeholder="service=echo" required; }
                    " "
                    label { "for " input type="text" name="duration" value="1h" size="5"; }
                    " "
                    label { "because " input type="text" name="reason"; }
                    " "
                    button type="submit" { "Mute" }
                }
            }
            table {
                tr { th { "rule" } th { "state" } th { "labels" } th { "value" } th { "count" } th { "message" } @if writer { th { "" } } }
                @for a in &alarms {
                    tr {
                        td { (a.rule) }
                        td class=(if a.state == sluice_alarm::AlarmState::Firing { "bad" } else { "muted" }) { (a.state.as_str()) }
                        td { (labels(&a.labels)) } td { (number(a.value, 3)) } td { (a.count) } td { (a.message) }
                        @if writer {
                            td {
                                @if a.state == sluice_alarm::AlarmState::Firing && !a.acknowledged {
                                    form method="post" action={ "/ui/alarms/" (a.id) "/ack?ns=" (q.ns) } {
                                        button type="submit" { "Acknowledge" }
                                    }
                                } @else if a.acknowledged { span.muted { "acknowledged" } }
                            }
                        }
                    }
                }
            }
        },
    )
    .into_response()
}

async fn acknowledge(
    State(state): State<UiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<NamespaceQuery>,
) -> Response {
    let Some(access) = access(&state, &headers) else {
        return to_login();
    };
    if !access.covers(&q.ns) || access.role < Role::Write {
        return (
            StatusCode::FORBIDDEN,
            "a write token is needed to acknowledge",
        )
            .into_response();
    }
    if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return (StatusCode::BAD_REQUEST, "not an alarm ID").into_response();
    }
    match sluice_alarm::judge::acknowledge(&*state.app.store, &q.ns, &id).await {
        Ok(Some(_)) => Redirect::to(&format!("/ui/alarms?ns={}", q.ns)).into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, "no such alarm").into_response(),
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct MuteForm {
    #[serde(rename = "match")]
    matching: String,
    duration: String,
    #[serde(default)]
    reason: String,
}

async fn mute(
    State(state): State<UiState>,
    headers: HeaderMap,
    Query(q): Query<NamespaceQuery>,
    Form(form): Form<MuteForm>,
) -> Response {
    let Some(access) = access(&state, &headers) else {
        return to_login();
    };
    if !access.covers(&q.ns) || access.role < Role::Write {
        return (StatusCode::FORBIDDEN, "a write token is needed to mute").into_response();
    }
    let mut matching = serde_json::Map::new();
    for pair in form.matching.split(',').filter(|p| !p.trim().is_empty()) {
        let Some((label, value)) = pair.split_once('=') else {
            return (
                StatusCode::BAD_REQUEST,
                format!("{pair:?} is not label=value"),
            )
                .into_response();
        };
        matching.insert(label.trim().to_owned(), value.trim().into());
    }
    let Ok(length) = sluice_model::duration_text::parse(form.duration.trim()) else {
        return (
            StatusCode::BAD_REQUEST,
            format!("{:?} is not a duration such as 1h", form.duration),
        )
            .into_response();
    };
    let now_ms = i64::try_from(sluice_metrics::unix_now()).unwrap_or(0) * 1000;
    let ends = now_ms + i64::try_from(length.as_millis()).unwrap_or(i64::MAX / 2);
    let body = sluice_api::ResourceBody {
        spec: serde_json::json!({
            "match": matching,
            "ends_at": sluice_model::format_time(ends),
            "created_by": "console",
            "reason": form.reason,
        }),
        metadata: None,
    };
    let name = format!("mute-{}", now_ms / 1000);
    match state.app.resources.put(&q.ns, "Mute", &name, body).await {
        Ok(_) => Redirect::to(&format!("/ui/alarms?ns={}", q.ns)).into_response(),
        Err(error) => (StatusCode::BAD_REQUEST, format!("{error:?}")).into_response(),
    }
}

async fn errors(
    State(state): State<UiState>,
    headers: HeaderMap,
    Query(q): Query<NamespaceQuery>,
) -> Response {
    let Some(access) = access(&state, &headers) else {
        return to_login();
    };
    if !access.covers(&q.ns) {
        return denied(&q.ns);
    }
    let groups = sluice_alarm::errors::groups(&*state.app.store, &q.ns)
        .await
        .unwrap_or_default();
    page(
        "Errors",
        &q.ns,
        html! {
            @for g in &groups {
                h2 { (g.kind) ": " (g.message) }
                p.muted { (g.count) " events · " (g.culprit) }
                table {
                    tr { th { "function" } th { "module" } th { "line" } }
                    @for f in &g.frames {
                        tr { td { (f.function) } td { (f.module) } td { (f.lineno.map_or(String::new(), |l| l.to_string())) } }
                    }
                }
            }
        },
    )
    .into_response()
}

async fn login_page() -> Markup {
    page(
        "Sign in",
        "default",
        html! {
            form method="post" action="/ui/login" {
                label { "Token " input type="password" name="token" autocomplete="current-password"; }
                " "
                button type="submit" { "Sign in" }
            }
        },
    )
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(state): State<UiState>, Form(form): Form<LoginForm>) -> Response {
    if state.auth.access(Some(&form.token)).is_none() {
        return (
            StatusCode::UNAUTHORIZED,
            page(
                "Sign in",
                "default",
                html! { p.bad { "That token is not valid." } },
            ),
        )
            .into_response();
    }
    let token: String = form
        .token
        .chars()
        .filter(|c| c.is_ascii_graphic() && *c != ';' && *c != ',')
        .collect();
    (
        [(
            header::SET_COOKIE,
            format!("{COOKIE}={token}; Path=/ui; HttpOnly; SameSite=Strict"),
        )],
        Redirect::to("/ui/"),
    )
        .into_response()
}
