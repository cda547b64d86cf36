//! Sluice's web console, served by `sluice up` at `/ui/` on the admin address:
//! server-rendered pages (maud) over the same state the admin API serves — the
//! overview, services with their instances (drain / undrain), API health and
//! protection, routes and rules with history and rollback, alarms (acknowledge,
//! mute), error groups, hosts, traces (search, waterfall, dependency
//! graph) and configs (items, diff before publishing, history, gray state). Curves are drawn by uPlot from `/ui/series`;
//! htmx refreshes the page body in place. Both are vendored under `assets/` and
//! embedded in the binary: no JavaScript build, nothing fetched from elsewhere.
//!
//! Every page takes `ns` (namespace), `range` (the time range: 5 minutes by
//! default, up to the longest stored tier) and `refresh` (seconds between
//! refreshes; 0 turns them off). With tokens configured, every page and action
//! needs one: the login page keeps it in an HttpOnly, SameSite=Strict cookie (also
//! Secure when the request came over HTTPS through a proxy); a read token sees no
//! write actions, and the actions refuse it.

mod actions;
mod assets;
mod charts;
mod configs;
mod pages;
mod traces;

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup, DOCTYPE};
use serde::Deserialize;
use sluice_api::{Access, AppState, Auth, Role};

/// The cookie holding the token.
const COOKIE: &str = "sluice_token";

/// What the console's handlers share.
#[derive(Clone)]
pub struct UiState {
    /// The admin API's state.
    pub app: AppState,
    /// Tokens.
    pub auth: std::sync::Arc<Auth>,
}

/// The console's routes, under `/ui` (and `/`, which redirects there).
pub fn router(app: AppState, auth: Auth) -> Router {
    let state = UiState {
        app,
        auth: std::sync::Arc::new(auth),
    };
    Router::new()
        // A person who opens the admin address in a browser lands on the console;
        // API clients use /v1/... and are unaffected.
        .route("/", get(to_console).fallback(only_get))
        .route("/ui", get(to_console).fallback(only_get))
        .route("/ui/", get(pages::overview))
        .route("/ui/login", get(pages::login_page).post(actions::login))
        .route("/ui/logout", post(actions::logout))
        .route("/ui/services", get(pages::services))
        .route("/ui/services/{svc}", get(pages::service))
        .route(
            "/ui/services/{svc}/instances/{id}/drain",
            post(actions::drain),
        )
        .route("/ui/resources", get(pages::resources))
        .route("/ui/resources/{kind}/{name}", get(pages::resource))
        .route(
            "/ui/resources/{kind}/{name}/rollback",
            post(actions::rollback),
        )
        .route("/ui/hosts", get(pages::hosts))
        .route("/ui/alarms", get(pages::alarms))
        .route("/ui/alarms/{id}/ack", post(actions::acknowledge))
        .route("/ui/mutes", post(actions::mute))
        .route("/ui/errors", get(pages::errors))
        .route("/ui/traces", get(traces::search))
        .route("/ui/traces/{id}", get(traces::trace))
        .route("/ui/dependencies", get(traces::dependencies))
        .route("/ui/configs", get(configs::list))
        .route("/ui/configs/{group}/{key}", get(configs::item))
        .route("/ui/configs/{group}/{key}/diff", get(configs::diff))
        .route("/ui/configs/{group}/{key}/preview", post(configs::preview))
        .route("/ui/configs/{group}/{key}/publish", post(configs::publish))
        .route("/ui/configs/{group}/{key}/promote", post(configs::promote))
        .route("/ui/configs/{group}/{key}/abort", post(configs::abort))
        .route("/ui/series", get(charts::series))
        .route("/ui/assets/{name}", get(assets::serve))
        .with_state(state)
        .layer(axum::middleware::from_fn(server_timing))
}

async fn to_console() -> Redirect {
    Redirect::to("/ui/")
}

/// Other methods on the console's redirects get the admin API's JSON 405.
async fn only_get() -> sluice_api::ApiError {
    sluice_api::ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "only GET: this address redirects to the console at /ui/",
    )
}

/// Adds `Server-Timing: app;dur=MS` (the time the console spent on the request),
/// which the browser's developer tools and the render benchmark read.
async fn server_timing(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let started = std::time::Instant::now();
    let mut response = next.run(request).await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if let Ok(value) = HeaderValue::from_str(&format!("app;dur={ms:.2}")) {
        response.headers_mut().insert("server-timing", value);
    }
    response
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

/// The query parameters every page takes.
#[derive(Debug, Deserialize)]
struct ViewQuery {
    #[serde(default = "default_namespace")]
    ns: String,
    range: Option<String>,
    refresh: Option<u32>,
}

fn default_namespace() -> String {
    "default".to_owned()
}

/// Time ranges offered by the picker (label, seconds); those longer than the
/// stored tiers are left out.
const RANGES: [(&str, u64); 9] = [
    ("5m", 300),
    ("15m", 900),
    ("1h", 3600),
    ("6h", 6 * 3600),
    ("1d", 86_400),
    ("7d", 7 * 86_400),
    ("30d", 30 * 86_400),
    ("90d", 90 * 86_400),
    ("1y", 365 * 86_400),
];

/// Refresh choices, seconds (0: off).
const REFRESHES: [u32; 5] = [0, 5, 10, 30, 60];

/// Who is looking, at which namespace, over which range.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// The caller's access.
    pub access: Access,
    /// The namespace shown.
    pub ns: String,
    /// The time range's label (`5m`) and length in seconds.
    pub range: (&'static str, u64),
    /// Seconds between refreshes (0: off).
    pub refresh: u32,
    /// The longest range the stored tiers hold, seconds.
    pub longest: u64,
    /// Whether tokens are configured (then the page offers to sign out).
    pub tokens: bool,
}

impl Viewer {
    /// Whether the caller may change things.
    pub fn writer(&self) -> bool {
        self.access.role >= Role::Write
    }

    /// The query string that keeps the namespace, range and refresh on a link.
    pub fn keep(&self) -> String {
        format!(
            "ns={}&range={}&refresh={}",
            self.ns, self.range.0, self.refresh
        )
    }
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, message).into_response()
}

impl FromRequestParts<UiState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &UiState) -> Result<Self, Response> {
        let Some(access) = state.auth.access(cookie_token(&parts.headers).as_deref()) else {
            return Err(Redirect::to("/ui/login").into_response());
        };
        let Query(query) = Query::<ViewQuery>::from_request_parts(parts, state)
            .await
            .map_err(|e| bad_request(e.body_text()))?;
        sluice_model::validate_name("namespace", &query.ns)
            .map_err(|e| bad_request(e.to_string()))?;
        if !access.covers(&query.ns) {
            return Err(denied(&query.ns));
        }
        let longest = state
            .app
            .metrics
            .as_ref()
            .and_then(|m| m.db.tiers().last().map(|t| t.retention_s()))
            .unwrap_or(3600);
        let range = match query.range.as_deref() {
            None => RANGES[0],
            Some(text) => *RANGES
                .iter()
                .find(|(label, seconds)| *label == text && *seconds <= longest.max(300))
                .ok_or_else(|| {
                    bad_request(format!(
                        "range {text:?} is not one of {} (up to the stored tiers)",
                        RANGES
                            .iter()
                            .filter(|(_, s)| *s <= longest.max(300))
                            .map(|(l, _)| *l)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?,
        };
        let refresh = query.refresh.unwrap_or(10);
        if !REFRESHES.contains(&refresh) {
            return Err(bad_request(format!(
                "refresh {refresh} is not one of 0 (off), 5, 10, 30, 60"
            )));
        }
        Ok(Viewer {
            access,
            ns: query.ns,
            range,
            refresh,
            longest,
            tokens: state.auth.enabled(),
        })
    }
}

/// A viewer with a write token (actions take this; a read token gets 403).
pub struct Writer(pub Viewer);

impl FromRequestParts<UiState> for Writer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &UiState) -> Result<Self, Response> {
        let viewer = Viewer::from_request_parts(parts, state).await?;
        if !viewer.writer() {
            return Err((
                StatusCode::FORBIDDEN,
                "a write token is needed for this action",
            )
                .into_response());
        }
        Ok(Writer(viewer))
    }
}

fn denied(namespace: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        layout(
            "Not allowed",
            None,
            html! { p { "Your token does not cover namespace " (namespace) "." } },
        ),
    )
        .into_response()
}

/// The page frame: navigation, the range picker and refresh, and `body`.
fn page(title: &str, viewer: &Viewer, path: &str, body: Markup) -> Markup {
    layout(title, Some((viewer, path)), body)
}

fn layout(title: &str, viewer: Option<(&Viewer, &str)>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Sluice" }
                link rel="icon" href="data:,";
                link rel="stylesheet" href={ "/ui/assets/" (assets::UPLOT_CSS) };
                link rel="stylesheet" href={ "/ui/assets/" (assets::CONSOLE_CSS) };
                script src={ "/ui/assets/" (assets::HTMX) } defer {}
                script src={ "/ui/assets/" (assets::UPLOT) } defer {}
                script src={ "/ui/assets/" (assets::CONSOLE_JS) } defer {}
            }
            body {
                @if let Some((viewer, path)) = viewer {
                    (navigation(viewer, path))
                    main #content
                        hx-get=[(viewer.refresh > 0).then(|| format!("{path}?{}", viewer.keep()))]
                        hx-trigger=[(viewer.refresh > 0).then(|| format!("every {}s [!document.querySelector('form :focus')]", viewer.refresh))]
                        hx-select="#content"
                        hx-swap="outerHTML" {
                        h1 { (title) }
                        (body)
                    }
                } @else {
                    nav { a href="/ui/" { "Sluice" } }
                    main #content { h1 { (title) } (body) }
                }
            }
        }
    }
}

fn navigation(viewer: &Viewer, path: &str) -> Markup {
    let keep = viewer.keep();
    let link = |href: &str, label: &str| {
        let current = path == href || (href != "/ui/" && path.starts_with(href));
        html! { a href={ (href) "?" (keep) } class=[current.then_some("current")] { (label) } }
    };
    html! {
        nav {
            (link("/ui/", "Overview"))
            (link("/ui/services", "Services"))
            (link("/ui/resources", "Routes & rules"))
            (link("/ui/alarms", "Alarms"))
            (link("/ui/errors", "Errors"))
            (link("/ui/traces", "Traces"))
            (link("/ui/configs", "Configs"))
            (link("/ui/hosts", "Hosts"))
            form.picker method="get" action=(path) {
                label { "namespace " input type="text" name="ns" value=(viewer.ns) size="10"; }
                label {
                    "range "
                    select name="range" onchange="this.form.submit()" {
                        @for (label, _) in RANGES.iter().filter(|(_, s)| *s <= viewer.longest.max(300)) {
                            option value=(label) selected[*label == viewer.range.0] { (label) }
                        }
                    }
                }
                label {
                    "refresh "
                    select name="refresh" onchange="this.form.submit()" {
                        @for seconds in REFRESHES {
                            option value=(seconds) selected[seconds == viewer.refresh] {
                                @if seconds == 0 { "off" } @else { (seconds) "s" }
                            }
                        }
                    }
                }
                noscript { button type="submit" { "Show" } }
            }
            @if viewer.tokens {
                form.logout method="post" action="/ui/logout" { button type="submit" { "Sign out" } }
            }
        }
    }
}

fn number(value: Option<f64>, digits: usize) -> String {
    value.map_or("–".to_owned(), |v| format!("{v:.digits$}"))
}

fn labels(labels: &std::collections::BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}
