//! The console's config pages: the items of a namespace; one item with its
//! released content (hidden for a secret item unless the viewer may read
//! secrets), its gray candidate and rule, the clients seen and the version each
//! holds, the kept versions with diffs, and the audit trail. A writer edits the
//! content in a form that shows the diff against the released version before
//! anything is published, and promotes or aborts a candidate.

use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use serde::Deserialize;
use sluice_config::{Actor, ConfigCenter, ItemPath, Publish};

use crate::{page, UiState, Viewer, Writer};

fn center(state: &UiState) -> Option<&ConfigCenter> {
    state.app.configs.as_deref()
}

fn time(ms: u64) -> String {
    sluice_model::format_time(i64::try_from(ms / 1000).unwrap_or(0))
}

fn not_served(viewer: &Viewer, path: &str) -> Response {
    page(
        "Configs",
        viewer,
        path,
        html! { p.muted { "This node does not serve the config center." } },
    )
    .into_response()
}

/// The center and the item a config page is about, or the answer refusing it.
fn target<'a>(
    state: &'a UiState,
    viewer: &Viewer,
    group: &str,
    key: &str,
) -> Result<(&'a ConfigCenter, ItemPath), Box<Response>> {
    let Some(center) = center(state) else {
        return Err(Box::new(not_served(
            viewer,
            &format!("/ui/configs/{group}/{key}"),
        )));
    };
    let item = ItemPath::new(&viewer.ns, group, key)
        .map_err(|e| Box::new((StatusCode::BAD_REQUEST, e.to_string()).into_response()))?;
    Ok((center, item))
}

/// `GET /ui/configs`: the namespace's items.
pub(crate) async fn list(State(state): State<UiState>, viewer: Viewer) -> Response {
    let Some(center) = center(&state) else {
        return not_served(&viewer, "/ui/configs");
    };
    let items = match center.list(&viewer.ns).await {
        Ok(items) => items,
        Err(error) => return (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response(),
    };
    let keep = viewer.keep();
    let body = html! {
        h1 { "Configs in " (viewer.ns) }
        @if items.is_empty() {
            p.muted { "No config items yet. Publish one with " code { "sluice config put GROUP/KEY FILE" } "." }
        } @else {
            table {
                tr { th { "item" } th { "format" } th { "version" } th { "gray" } th { "secret" } th { "author" } th { "published" } }
                @for (item, record) in &items {
                    @if let Some(released) = &record.released {
                        tr {
                            td { a href={ "/ui/configs/" (item.group) "/" (item.key) "?" (keep) } { (item.group) "/" (item.key) } }
                            td { (released.format) }
                            td { (released.version) }
                            td { @if let Some(gray) = &record.gray { "candidate " (gray.candidate.version) } }
                            td { @if record.secret { "secret" } }
                            td { (released.author) }
                            td { (time(released.published_ms)) }
                        }
                    }
                }
            }
        }
    };
    page("Configs", &viewer, "/ui/configs", body).into_response()
}

/// `GET /ui/configs/{group}/{key}`: one item.
pub(crate) async fn item(
    State(state): State<UiState>,
    viewer: Viewer,
    Path((group, key)): Path<(String, String)>,
) -> Response {
    let path = format!("/ui/configs/{group}/{key}");
    let (center, item) = match target(&state, &viewer, &group, &key) {
        Ok(target) => target,
        Err(refused) => return *refused,
    };
    let (record, released) = match center.record(&item).await {
        Ok(Some((record, _))) => match record.released.clone() {
            Some(released) => (record, released),
            None => {
                return (StatusCode::NOT_FOUND, format!("{item} does not exist")).into_response()
            }
        },
        Ok(None) => {
            return (StatusCode::NOT_FOUND, format!("{item} does not exist")).into_response()
        }
        Err(error) => return (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response(),
    };
    let reveal = !record.secret || viewer.access.reads_secrets();
    let content = if reveal {
        match center.version(&item, released.version).await {
            Ok((_, content, _)) => Some(content.text.clone()),
            Err(error) => {
                return (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response()
            }
        }
    } else {
        None
    };
    let audit = center.audit(&item).await.unwrap_or_default();
    let clients = center.clients(&item);
    let keep = viewer.keep();
    let base = format!("/ui/configs/{group}/{key}");
    let body = html! {
        h1 { (item) }
        p { "version " (released.version) " · " (released.format) " · md5 " code { (released.md5) }
            " · by " (released.author) " at " (time(released.published_ms))
            @if record.secret { " · " strong { "secret" } } }
        @match &content {
            Some(text) => pre.content { (text) },
            None => p.muted { "Secret: hidden. Reading it needs an admin token or one with secrets = true." },
        }
        @if let Some(gray) = &record.gray {
            h2 { "Gray candidate" }
            p { "version " (gray.candidate.version) " for clients matching "
                code { (serde_json::to_string(&gray.rule).unwrap_or_default()) } }
            @if viewer.writer() {
                form.inline method="post" action={ (base) "/promote?" (keep) } { button type="submit" { "Promote to everyone" } }
                form.inline method="post" action={ (base) "/abort?" (keep) } { button type="submit" { "Abort" } }
            }
        }
        h2 { "Clients seen (this node, last 5 minutes)" }
        @if clients.is_empty() { p.muted { "None." } } @else {
            table {
                tr { th { "client" } th { "address" } th { "labels" } th { "holds" } th { "watching" } th { "last seen" } }
                @for client in &clients {
                    tr {
                        td { (client.id) } td { (client.address.clone().unwrap_or_default()) }
                        td { (crate::labels(&client.labels)) }
                        td { (client.version) @if client.gray { " (gray)" } }
                        td { (client.watching) } td { (time(client.last_seen_ms)) }
                    }
                }
            }
        }
        @if viewer.writer() && reveal {
            h2 { "Edit" }
            form method="post" action={ (base) "/preview?" (keep) } {
                textarea name="content" rows="12" cols="80" { (content.clone().unwrap_or_default()) }
                br;
                label { "comment " input type="text" name="comment" size="60"; }
                input type="hidden" name="expect" value=(released.version);
                button type="submit" { "Show the diff" }
            }
        }
        h2 { "History" }
        table {
            tr { th { "version" } th { "" } th { "md5" } th { "author" } th { "published" } th { "comment" } th { "" } }
            @for meta in record.kept.iter().rev() {
                tr {
                    td { (meta.version) }
                    td { @if meta.version == released.version { "released" }
                         @else if record.gray.as_ref().is_some_and(|g| g.candidate.version == meta.version) { "candidate" } }
                    td { code { (meta.md5) } } td { (meta.author) } td { (time(meta.published_ms)) } td { (meta.comment) }
                    td { @if reveal && meta.version != released.version {
                        a href={ (base) "/diff?from=" (meta.version) "&to=" (released.version) "&" (keep) } { "diff to released" }
                    } }
                }
            }
        }
        h2 { "Audit" }
        table {
            tr { th { "#" } th { "action" } th { "by" } th { "from" } th { "at" } th { "versions" } th { "comment" } }
            @for entry in audit.iter().rev() {
                tr {
                    td { (entry.seq) } td { (format!("{:?}", entry.action).to_lowercase()) } td { (entry.author) }
                    td { (entry.address.clone().unwrap_or_default()) } td { (time(entry.at_ms)) }
                    td { (entry.from_version.map_or("–".into(), |v| v.to_string())) " → " (entry.to_version.map_or("–".into(), |v| v.to_string())) }
                    td { (entry.comment) }
                }
            }
        }
    };
    page(&item.to_string(), &viewer, &path, body).into_response()
}

/// The diff's query.
#[derive(Debug, Deserialize)]
pub(crate) struct DiffQuery {
    from: u64,
    to: u64,
}

/// `GET /ui/configs/{group}/{key}/diff?from=A&to=B`.
pub(crate) async fn diff(
    State(state): State<UiState>,
    viewer: Viewer,
    Path((group, key)): Path<(String, String)>,
    Query(query): Query<DiffQuery>,
) -> Response {
    let path = format!("/ui/configs/{group}/{key}");
    let (center, item) = match target(&state, &viewer, &group, &key) {
        Ok(target) => target,
        Err(refused) => return *refused,
    };
    let secret = matches!(center.record(&item).await, Ok(Some((r, _))) if r.secret);
    if secret && !viewer.access.reads_secrets() {
        return (StatusCode::FORBIDDEN, "secret item").into_response();
    }
    match center.diff(&item, query.from, query.to).await {
        Ok(text) => page(
            &item.to_string(),
            &viewer,
            &path,
            html! { h1 { (item) ": " (query.from) " → " (query.to) } (diff_markup(&text)) },
        )
        .into_response(),
        Err(error) => (StatusCode::NOT_FOUND, error.to_string()).into_response(),
    }
}

fn diff_markup(text: &str) -> Markup {
    html! {
        pre.diff {
            @for line in text.lines() {
                @let class = if line.starts_with('+') && !line.starts_with("+++") { "added" }
                    else if line.starts_with('-') && !line.starts_with("---") { "removed" } else { "" };
                span class=(class) { (line) } "\n"
            }
        }
    }
}

/// The edit form.
#[derive(Debug, Deserialize)]
pub(crate) struct EditForm {
    content: String,
    #[serde(default)]
    comment: String,
    expect: u64,
}

/// `POST /ui/configs/{group}/{key}/preview`: the diff against the released
/// version, and a button that publishes exactly that content.
pub(crate) async fn preview(
    State(state): State<UiState>,
    Writer(viewer): Writer,
    Path((group, key)): Path<(String, String)>,
    Form(form): Form<EditForm>,
) -> Response {
    let path = format!("/ui/configs/{group}/{key}");
    let (center, item) = match target(&state, &viewer, &group, &key) {
        Ok(target) => target,
        Err(refused) => return *refused,
    };
    let current = match center.version(&item, form.expect).await {
        Ok((_, content, _)) => content.text.clone(),
        Err(error) => return (StatusCode::CONFLICT, error.to_string()).into_response(),
    };
    let text = sluice_config::unified_diff(
        &current,
        &form.content,
        &format!("version {}", form.expect),
        "edited",
    );
    let keep = viewer.keep();
    let body = html! {
        h1 { (item) ": publish?" }
        @if text.is_empty() { p.muted { "No change." } } @else { (diff_markup(&text)) }
        form method="post" action={ (path) "/publish?" (keep) } {
            input type="hidden" name="content" value=(form.content);
            input type="hidden" name="comment" value=(form.comment);
            input type="hidden" name="expect" value=(form.expect);
            button type="submit" disabled[text.is_empty()] { "Publish" }
        }
        p { a href={ (path) "?" (keep) } { "Back without publishing" } }
    };
    page(&item.to_string(), &viewer, &path, body).into_response()
}

/// `POST /ui/configs/{group}/{key}/publish`: publishes what the preview showed
/// (refused when the item changed since).
pub(crate) async fn publish(
    State(state): State<UiState>,
    Writer(viewer): Writer,
    Path((group, key)): Path<(String, String)>,
    Form(form): Form<EditForm>,
) -> Response {
    let (center, item) = match target(&state, &viewer, &group, &key) {
        Ok(target) => target,
        Err(refused) => return *refused,
    };
    let (record, _) = match center.record(&item).await {
        Ok(Some(found)) => found,
        _ => return (StatusCode::NOT_FOUND, format!("{item} does not exist")).into_response(),
    };
    let publish = Publish {
        content: form.content,
        format: record.released.as_ref().map(|v| v.format),
        comment: form.comment,
        expect_version: Some(form.expect),
        ..Publish::default()
    };
    match center.publish(&item, publish, &actor(&viewer)).await {
        Ok(_) => {
            Redirect::to(&format!("/ui/configs/{group}/{key}?{}", viewer.keep())).into_response()
        }
        Err(error) => (StatusCode::BAD_REQUEST, error.to_string()).into_response(),
    }
}

fn actor(viewer: &Viewer) -> Actor {
    Actor {
        name: viewer
            .access
            .name
            .clone()
            .unwrap_or_else(|| "console".to_owned()),
        address: None,
    }
}

/// `POST /ui/configs/{group}/{key}/promote`.
pub(crate) async fn promote(
    State(state): State<UiState>,
    Writer(viewer): Writer,
    Path((group, key)): Path<(String, String)>,
) -> Response {
    gray_action(&state, &viewer, &group, &key, true).await
}

/// `POST /ui/configs/{group}/{key}/abort`.
pub(crate) async fn abort(
    State(state): State<UiState>,
    Writer(viewer): Writer,
    Path((group, key)): Path<(String, String)>,
) -> Response {
    gray_action(&state, &viewer, &group, &key, false).await
}

async fn gray_action(
    state: &UiState,
    viewer: &Viewer,
    group: &str,
    key: &str,
    promote: bool,
) -> Response {
    let (center, item) = match target(state, viewer, group, key) {
        Ok(target) => target,
        Err(refused) => return *refused,
    };
    let done = if promote {
        center.promote(&item, "", &actor(viewer)).await
    } else {
        center.abort(&item, "", &actor(viewer)).await
    };
    match done {
        Ok(_) => {
            Redirect::to(&format!("/ui/configs/{group}/{key}?{}", viewer.keep())).into_response()
        }
        Err(error) => (StatusCode::CONFLICT, error.to_string()).into_response(),
    }
}
