//! The console's write actions (plain HTML form posts, so they work without
//! JavaScript): drain / undrain, rollback, acknowledge, mute; and signing in and
//! out. Each takes a [`Writer`]: a read token gets 403, no token the login page.

use axum::extract::{Form, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use crate::{layout, UiState, Writer, COOKIE};

#[derive(Debug, Deserialize)]
pub(crate) struct DrainForm {
    draining: bool,
}

/// `POST /ui/services/{svc}/instances/{id}/drain` with `draining=true|false`.
pub(crate) async fn drain(
    State(state): State<UiState>,
    Writer(viewer): Writer,
    Path((svc, id)): Path<(String, String)>,
    Form(form): Form<DrainForm>,
) -> Response {
    let patch = sluice_registry::InstancePatch {
        draining: Some(form.draining),
        ..sluice_registry::InstancePatch::default()
    };
    match state
        .app
        .registry
        .update(&viewer.ns, &svc, &id, patch)
        .await
    {
        Ok(_) => Redirect::to(&format!("/ui/services/{svc}?{}", viewer.keep())).into_response(),
        Err(error) => (StatusCode::BAD_REQUEST, error.to_string()).into_response(),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct RollbackForm {
    revision: u64,
}

/// `POST /ui/resources/{kind}/{name}/rollback` with `revision=N`.
pub(crate) async fn rollback(
    State(state): State<UiState>,
    Writer(viewer): Writer,
    Path((kind, name)): Path<(String, String)>,
    Form(form): Form<RollbackForm>,
) -> Response {
    match state
        .app
        .resources
        .rollback(&viewer.ns, &kind, &name, form.revision)
        .await
    {
        Ok(_) => {
            Redirect::to(&format!("/ui/resources/{kind}/{name}?{}", viewer.keep())).into_response()
        }
        Err(error) => (StatusCode::BAD_REQUEST, format!("{error:?}")).into_response(),
    }
}

/// `POST /ui/alarms/{id}/ack`
pub(crate) async fn acknowledge(
    State(state): State<UiState>,
    Writer(viewer): Writer,
    Path(id): Path<String>,
) -> Response {
    if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return (StatusCode::BAD_REQUEST, "not an alarm ID").into_response();
    }
    match sluice_alarm::judge::acknowledge(&*state.app.store, &viewer.ns, &id).await {
        Ok(Some(_)) => Redirect::to(&format!("/ui/alarms?{}", viewer.keep())).into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, "no such alarm").into_response(),
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response(),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct MuteForm {
    #[serde(rename = "match")]
    matching: String,
    duration: String,
    #[serde(default)]
    reason: String,
}

/// `POST /ui/mutes` with `match=label=value,...`, `duration=1h`, `reason=...`:
/// creates a `Mute` resource from now for that long.
pub(crate) async fn mute(
    State(state): State<UiState>,
    Writer(viewer): Writer,
    Form(form): Form<MuteForm>,
) -> Response {
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
    match state
        .app
        .resources
        .put(&viewer.ns, "Mute", &name, body)
        .await
    {
        Ok(_) => Redirect::to(&format!("/ui/alarms?{}", viewer.keep())).into_response(),
        Err(error) => (StatusCode::BAD_REQUEST, format!("{error:?}")).into_response(),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    token: String,
}

/// Whether the request reached Sluice over HTTPS through a TLS-terminating proxy
/// (the admin listener itself speaks plain HTTP).
fn over_https(headers: &HeaderMap) -> bool {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase)
    };
    header("x-forwarded-proto").is_some_and(|p| p.split(',').next().map(str::trim) == Some("https"))
        || header("forwarded").is_some_and(|f| f.contains("proto=https"))
}

/// `POST /ui/login` with `token=...`: keeps a valid token in the cookie.
pub(crate) async fn login(
    State(state): State<UiState>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if state.auth.access(Some(&form.token)).is_none() {
        return (
            StatusCode::UNAUTHORIZED,
            layout(
                "Sign in",
                None,
                html! {
                    p.bad { "That token is not valid." }
                    p { a href="/ui/login" { "Try again" } }
                },
            ),
        )
            .into_response();
    }
    let token: String = form
        .token
        .chars()
        .filter(|c| c.is_ascii_graphic() && *c != ';' && *c != ',')
        .collect();
    let secure = if over_https(&headers) { "; Secure" } else { "" };
    (
        [(
            header::SET_COOKIE,
            format!("{COOKIE}={token}; Path=/ui; HttpOnly; SameSite=Strict{secure}"),
        )],
        Redirect::to("/ui/"),
    )
        .into_response()
}

/// `POST /ui/logout`: forgets the cookie.
pub(crate) async fn logout() -> Response {
    (
        [(
            header::SET_COOKIE,
            format!("{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0"),
        )],
        Redirect::to("/ui/login"),
    )
        .into_response()
}
