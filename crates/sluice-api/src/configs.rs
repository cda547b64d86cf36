//! The config center's endpoints: publish, read and watch an item
//! (`/v1/namespaces/{ns}/configs/{group}/{key}`), its history, versions, diffs,
//! rollback, gray candidate (publish, promote, abort), audit trail and the
//! clients seen; a list per namespace; and a watch of many items in one request
//! (`POST /v1/configs/watch`). Secret items are masked unless the caller's
//! token may read secrets.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use sluice_config::{
    Actor, Change, ClientInfo, ConfigCenter, ConfigError, Format, GrayRule, Held, ItemPath,
    ItemRecord, Publish, Served, VersionMeta, WatchAnswer,
};
use sluice_model::duration_text;

use crate::auth::Access;
use crate::error::ApiError;
use crate::json::{ApiJson, BodyLimit};
use crate::routes::{query, MAX_WAIT};
use crate::AppState;

/// Wait of a watch that gives a version or an MD5 but no wait.
const DEFAULT_WATCH: Duration = Duration::from_secs(30);
/// Largest body of a publish: 1 MiB of content, escaped as JSON.
const PUBLISH_BODY_LIMIT: usize = 8 * 1024 * 1024;
/// Most items in one multi-item watch (Nacos's limit too).
const MAX_WATCHED_ITEMS: usize = 10_000;

/// The config center's routes.
pub fn routes() -> Router<AppState> {
    let item = "/v1/namespaces/{ns}/configs/{group}/{key}";
    Router::new()
        .route("/v1/namespaces/{ns}/configs", get(list))
        .route(item, get(read).put(publish).delete(delete))
        .route(&format!("{item}/history"), get(history))
        .route(&format!("{item}/versions/{{version}}"), get(version))
        .route(&format!("{item}/diff"), get(diff))
        .route(&format!("{item}/rollback"), post(rollback))
        .route(
            &format!("{item}/gray"),
            get(gray).put(publish_gray).delete(abort),
        )
        .route(&format!("{item}/gray/promote"), post(promote))
        .route(&format!("{item}/gray/abort"), post(abort))
        .route(&format!("{item}/audit"), get(audit))
        .route(&format!("{item}/clients"), get(clients))
        .route("/v1/configs/watch", post(watch_many))
        .layer(Extension(BodyLimit(PUBLISH_BODY_LIMIT)))
        .layer(axum::extract::DefaultBodyLimit::max(PUBLISH_BODY_LIMIT))
}

impl From<ConfigError> for ApiError {
    fn from(error: ConfigError) -> Self {
        if let ConfigError::Store(store) = error {
            return store.into();
        }
        let status = match &error {
            ConfigError::Invalid { .. } => (StatusCode::BAD_REQUEST, "invalid_field"),
            ConfigError::Name(_) => (StatusCode::BAD_REQUEST, "invalid_name"),
            ConfigError::Format(_) => (StatusCode::BAD_REQUEST, "invalid_content"),
            ConfigError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "content_too_large"),
            ConfigError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ConfigError::VersionNotKept { .. } => (StatusCode::NOT_FOUND, "version_not_kept"),
            ConfigError::NoCandidate(_) => (StatusCode::CONFLICT, "no_gray_candidate"),
            ConfigError::Conflict { .. } | ConfigError::Contended(_) => {
                (StatusCode::CONFLICT, "conflict")
            }
            ConfigError::Corrupt(_) => (StatusCode::INTERNAL_SERVER_ERROR, "corrupt"),
            ConfigError::Secrets(_) | ConfigError::Store(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "secrets")
            }
        };
        ApiError::new(status.0, status.1, error.to_string())
    }
}

/// The connection's peer address, when the server records it.
pub struct Peer(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0.ip()),
        ))
    }
}

fn center(state: &AppState) -> Result<&ConfigCenter, ApiError> {
    state.configs.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_served",
            "this node does not serve the config center",
        )
    })
}

fn path(ns: &str, group: &str, key: &str) -> Result<ItemPath, ApiError> {
    Ok(ItemPath::new(ns, group, key)?)
}

fn actor(access: &Access, peer: &Peer) -> Actor {
    Actor {
        name: access
            .name
            .clone()
            .unwrap_or_else(|| "anonymous".to_owned()),
        address: peer.0,
    }
}

fn secret_refused(item: &ItemPath) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "secret",
        format!("{item} is secret: reading it needs an admin token or a token with secrets = true"),
    )
}

/// The client a request speaks for: `labels`, `client_id`, `ip` (else the peer).
fn client_of(
    params: &std::collections::HashMap<String, String>,
    peer: &Peer,
) -> Result<ClientInfo, ApiError> {
    let address = match params.get("ip") {
        Some(ip) => Some(ip.parse::<IpAddr>().map_err(|_| {
            ApiError::bad_request(format!("query parameter ip={ip:?} is not an IP address"))
        })?),
        None => peer.0,
    };
    let labels = match params.get("labels") {
        Some(text) => ClientInfo::parse_labels(text)?,
        None => BTreeMap::new(),
    };
    let client_id = params.get("client_id").cloned();
    if client_id
        .as_ref()
        .is_some_and(|id| id.is_empty() || id.len() > 256)
    {
        return Err(ApiError::bad_request(
            "query parameter client_id needs 1 to 256 characters",
        ));
    }
    Ok(ClientInfo {
        address,
        labels,
        client_id,
    })
}

fn parse_wait(text: Option<&String>) -> Result<Duration, ApiError> {
    let Some(text) = text else {
        return Ok(DEFAULT_WATCH);
    };
    let wait = duration_text::parse(text)
        .map_err(|e| ApiError::bad_request(format!("query parameter wait: {e}")))?;
    if wait > MAX_WAIT {
        return Err(ApiError::bad_request(format!(
            "query parameter wait={text} is over the maximum of 10m"
        )));
    }
    Ok(wait)
}

fn meta_json(meta: &VersionMeta) -> Value {
    json!({
        "version": meta.version,
        "format": meta.format,
        "md5": meta.md5,
        "size": meta.size,
        "author": meta.author,
        "published_ms": meta.published_ms,
        "comment": meta.comment,
        "rollback_of": meta.rollback_of,
        "gray": meta.gray,
    })
}

fn served_json(item: &ItemPath, served: &Served) -> Value {
    let mut body = meta_json(&served.meta);
    body["md5"] = Value::from(served.content.md5.clone());
    body["namespace"] = Value::from(item.namespace.clone());
    body["group"] = Value::from(item.group.clone());
    body["key"] = Value::from(item.key.clone());
    body["gray"] = Value::from(served.gray);
    body["secret"] = Value::from(served.secret);
    body["content"] = Value::from(served.content.text.clone());
    body
}

fn answer(item: &ItemPath, served: &Served) -> Response {
    // Every client served this version (gray or not, secret or not) gets the
    // same bytes: rendered once, however many watchers wake.
    let variant = usize::from(served.gray) + 2 * usize::from(served.secret);
    let body = served.content.rendered(variant, || {
        serde_json::to_vec(&served_json(item, served)).unwrap_or_default()
    });
    let mut response = (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(
        "x-sluice-config-version",
        HeaderValue::from(served.meta.version),
    );
    headers.insert("x-sluice-index", HeaderValue::from(served.revision));
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", served.content.md5)) {
        headers.insert(axum::http::header::ETAG, etag);
    }
    response
}

fn change_json(item: &ItemPath, change: &Change) -> Value {
    let mut body = change.version.as_ref().map_or_else(|| json!({}), meta_json);
    body["namespace"] = Value::from(item.namespace.clone());
    body["group"] = Value::from(item.group.clone());
    body["key"] = Value::from(item.key.clone());
    body["revision"] = Value::from(change.revision);
    body["released"] = change
        .record
        .released
        .as_ref()
        .map_or(Value::Null, |v| Value::from(v.version));
    body["gray_active"] = Value::from(change.record.gray.is_some());
    body["secret"] = Value::from(change.record.secret);
    body["audit"] = serde_json::to_value(&change.audit).unwrap_or(Value::Null);
    body
}

fn record_json(item: &ItemPath, record: &ItemRecord) -> Value {
    json!({
        "namespace": item.namespace,
        "group": item.group,
        "key": item.key,
        "secret": record.secret,
        "history": record.history,
        "released": record.released.as_ref().map(meta_json),
        "gray": record.gray.as_ref().map(|g| json!({
            "candidate": meta_json(&g.candidate),
            "match": g.rule,
        })),
    })
}

/// `GET .../configs/{group}/{key}`: the version this client is served; with
/// `version` or `md5`, a watch that waits while that is what it holds.
async fn read(
    State(state): State<AppState>,
    Path((ns, group, key)): Path<(String, String, String)>,
    Extension(access): Extension<Access>,
    peer: Peer,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let center = center(&state)?;
    let item = path(&ns, &group, &key)?;
    let params = query(
        raw,
        &["version", "md5", "wait", "labels", "client_id", "ip"],
    )?;
    let client = client_of(&params, &peer)?;
    let held = match (params.get("version"), params.get("md5")) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request("give version or md5, not both"));
        }
        (Some(v), None) => Some(Held::Version(v.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "query parameter version={v:?} is not a whole number"
            ))
        })?)),
        (None, Some(md5)) => Some(Held::Md5(md5.clone())),
        (None, None) => None,
    };
    let served = match held {
        None => center.read(&item, &client).await?,
        Some(held) => {
            let wait = parse_wait(params.get("wait"))?;
            match center.watch(&item, &client, &held, wait).await? {
                WatchAnswer::Changed(served) => served,
                WatchAnswer::Gone => return Err(ConfigError::NotFound(item.to_string()).into()),
                WatchAnswer::NotModified => {
                    return Ok(StatusCode::NOT_MODIFIED.into_response());
                }
            }
        }
    };
    if served.secret && !access.reads_secrets() {
        return Err(secret_refused(&item));
    }
    center.saw(&item, &client, served.meta.version, served.gray);
    Ok(answer(&item, &served))
}

/// A publish body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    content: String,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    secret: Option<bool>,
    #[serde(default)]
    history: Option<usize>,
    #[serde(default)]
    expect_version: Option<u64>,
    #[serde(default, rename = "match")]
    rule: Option<GrayRule>,
}

impl PublishBody {
    fn into_publish(self) -> Result<(Publish, Option<GrayRule>), ApiError> {
        let format = match &self.format {
            None => None,
            Some(name) => Some(Format::from_name(name).ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_field",
                    format!(
                        "format: {name:?} is not a known format; use one of {}",
                        Format::NAMES.join(", ")
                    ),
                )
            })?),
        };
        Ok((
            Publish {
                content: self.content,
                format,
                comment: self.comment.unwrap_or_default(),
                secret: self.secret,
                history: self.history,
                expect_version: self.expect_version,
            },
            self.rule,
        ))
    }
}

/// `PUT .../configs/{group}/{key}`: publishes a released version.
async fn publish(
    State(state): State<AppState>,
    Path((ns, group, key)): Path<(String, String, String)>,
    Extension(access): Extension<Access>,
    peer: Peer,
    ApiJson(body): ApiJson<PublishBody>,
) -> Result<Response, ApiError> {
    let center = center(&state)?;
    let item = path(&ns, &group, &key)?;
    let (publish, rule) = body.into_publish()?;
    if rule.is_some() {
        return Err(ApiError::bad_request(
            "match: a rule belongs to a gray publish (PUT .../gray)",
        ));
    }
    let change = center
        .publish(&item, publish, &actor(&access, &peer))
        .await?;
    // Created: no version was released before (a new item, or one deleted).
    let status = if change.audit.from_version.is_none() {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(change_json(&item, &change))).into_response())
}

/// `PUT .../gray`: publishes a candidate for the clients `match` selects.
async fn publish_gray(
    State(state): State<AppState>,
    Path((ns, group, key)): Path<(String, String, String)>,
    Extension(access): Extension<Access>,
    peer: Peer,
    ApiJson(body): ApiJson<PublishBody>,
) -> Result<Json<Value>, ApiError> {
    let center = center(&state)?;
    let item = path(&ns, &group, &key)?;
    let (publish, rule) = body.into_publish()?;
    let rule = rule.ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            "match: a gray publish needs a rule (addresses, labels or percent)",
        )
    })?;
    let change = center
        .publish_gray(&item, publish, rule, &actor(&access, &peer))
        .await?;
    Ok(Json(change_json(&item, &change)))
}

/// An optional `{"comment": "..."}` body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommentBody {
    #[serde(default)]
    comment: String,
}

fn optional_comment(bytes: &[u8]) -> Result<String, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(String::new());
    }
    Ok(crate::json::parse::<CommentBody>(bytes)?.comment)
}

/// `POST .../gray/promote`: the candidate becomes the released version.
async fn promote(
    state: State<AppState>,
    item: Path<(String, String, String)>,
    access: Extension<Access>,
    peer: Peer,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    end_gray(state, item, access, peer, &body, true).await
}

/// `POST .../gray/abort` (or `DELETE .../gray`): drops the candidate.
async fn abort(
    state: State<AppState>,
    item: Path<(String, String, String)>,
    access: Extension<Access>,
    peer: Peer,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    end_gray(state, item, access, peer, &body, false).await
}

async fn end_gray(
    State(state): State<AppState>,
    Path((ns, group, key)): Path<(String, String, String)>,
    Extension(access): Extension<Access>,
    peer: Peer,
    body: &[u8],
    promote: bool,
) -> Result<Json<Value>, ApiError> {
    let center = center(&state)?;
    let item = path(&ns, &group, &key)?;
    let comment = optional_comment(body)?;
    let actor = actor(&access, &peer);
    let change = if promote {
        center.promote(&item, &comment, &actor).await?
    } else {
        center.abort(&item, &comment, &actor).await?
    };
    Ok(Json(change_json(&item, &change)))
}

/// `GET .../gray`: the candidate, its rule, and the clients seen holding it.
async fn gray(
    State(state): State<AppState>,
    Path((ns, group, key)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let center = center(&state)?;
    let item = path(&ns, &group, &key)?;
    let record = center.existing(&item).await?;
    let Some(gray) = &record.gray else {
        return Err(ConfigError::NoCandidate(item.to_string()).into());
    };
    let holding: Vec<_> = center
        .clients(&item)
        .into_iter()
        .filter(|c| c.version == gray.candidate.version)
        .collect();
    Ok(Json(json!({
        "candidate": meta_json(&gray.candidate),
        "match": gray.rule,
        "released": record.released.as_ref().map(meta_json),
        "clients": holding,
    })))
}

/// A rollback body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    version: u64,
    #[serde(default)]
    comment: String,
}

/// `POST .../rollback`: a new released version with a kept version's content.
async fn rollback(
    State(state): State<AppState>,
    Path((ns, group, key)): Path<(String, String, String)>,
    Extension(access): Extension<Access>,
    peer: Peer,
    ApiJson(body): ApiJson<RollbackBody>,
) -> Result<Json<Value>, ApiError> {
    let center = center(&state)?;
    let item = path(&ns, &group, &key)?;
    let change = center
        .rollback(&item, body.version, &body.comment, &actor(&access, &peer))
        .await?;
    Ok(Json(change_json(&item, &change)))
}

/// `DELETE .../configs/{group}/{key}`.
async fn delete(
    State(state): State<AppState>,
    Path((ns, group, key)): Path<(String, String, String)>,
    Extension(access): Extension<Access>,
    peer: Peer,
) -> Result<Json<Value>, ApiError> {
    let center = center(&state)?;
    let item = path(&ns, &group, &key)?;
    let change = center.delete(&item, &actor(&access, &peer)).await?;
    Ok(Json(change_json(&item, &change)))
}

/// `GET .../history`: the kept versions, newest first (no contents).
async fn history(
    State(state): State<AppState>,
    Path((ns, group, key)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let center = center(&state)?;
    let item = path(&ns, &group, &key)?;
    let record = center.existing(&item).await?;
    let released = record.released.as_ref().map(|v| v.version);
    let candidate = record.gray.as_ref().map(|g| g.candidate.version);
    let versions: Vec<Value> = record
        .kept
        .iter()
        .rev()
        .map(|meta| {
            let mut body = meta_json(meta);
            body["released"] = Value::from(Some(meta.version) == released);
            body["candidate"] = Value::from(Some(meta.version) == candidate);
            body
        })
        .collect();
    Ok(Json(json!({
        "item": record_json(&item, &record),
        "versions": versions,
    })))
}

/// `GET .../versions/{version}`: one kept version with its content.
async fn version(
    State(state): State<AppState>,
    Path((ns, group, key, version)): Path<(String, String, String, String)>,
    Extension(access): Extension<Access>,
) -> Result<Json<Value>, ApiError> {
    let center = center(&state)?;
    let item = path(&ns, &group, &key)?;
    let version: u64 = version
        .parse()
        .map_err(|_| ApiError::bad_request(format!("version {version:?} is not a whole number")))?;
    let (meta, content, secret) = center.version(&item, version).await?;
    if secret && !access.reads_secrets() {
        return Err(secret_refused(&item));
    }
    let mut body = meta_json(&meta);
    body["md5"] = Value::from(content.md5.clone());
    body["content"] = Value::from(content.text.clone());
    body["secret"] = Value::from(secret);
    Ok(Json(body))
}

/// `GET .../diff?from=A&to=B`: a unified diff (`to` defaults to the released
/// version, `from` to the kept version before `to`).
async fn diff(
    State(state): State<AppState>,
    Path((ns, group, key)): Path<(String, String, String)>,
    Extension(access): Extension<Access>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let center = center(&state)?;
    let item = path(&ns, &group, &key)?;
    let params = query(raw, &["from", "to"])?;
    let record = center.existing(&item).await?;
    if record.secret && !access.reads_secrets() {
        return Err(secret_refused(&item));
    }
    let number = |name: &str| -> Result<Option<u64>, ApiError> {
        params
            .get(name)
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(format!(
                        "query parameter {name}={v:?} is not a whole number"
                    ))
                })
            })
            .transpose()
    };
    let to = number("to")?
        .or(record.released.as_ref().map(|v| v.version))
        .unwrap_or(0);
    let from = match number("from")? {
        Some(from) => from,
        None => record
            .kept
            .iter()
            .map(|v| v.version)
            .filter(|v| *v < to)
            .max()
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "{item} has no kept version before {to}; give from="
                ))
            })?,
    };
    let text = center.diff(&item, from, to).await?;
    Ok(Json(json!({"from": from, "to": to, "diff": text})))
}

/// `GET .../audit`: every change, oldest first.
async fn audit(
    State(state): State<AppState>,
    Path((ns, group, key)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let center = center(&state)?;
    let item = path(&ns, &group, &key)?;
    let entries = center.audit(&item).await?;
    if entries.is_empty() {
        return Err(ConfigError::NotFound(item.to_string()).into());
    }
    Ok(Json(json!({ "entries": entries })))
}

/// `GET .../clients`: the clients this node saw in the last minutes, with the
/// version each holds.
async fn clients(
    State(state): State<AppState>,
    Path((ns, group, key)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let center = center(&state)?;
    let item = path(&ns, &group, &key)?;
    Ok(Json(json!({ "clients": center.clients(&item) })))
}

/// `GET /v1/namespaces/{ns}/configs`: the items, without contents.
async fn list(
    State(state): State<AppState>,
    Path(ns): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let center = center(&state)?;
    let items: Vec<Value> = center
        .list(&ns)
        .await?
        .iter()
        .map(|(item, record)| record_json(item, record))
        .collect();
    Ok(Json(json!({ "namespace": ns, "items": items })))
}

/// One item of a multi-item watch.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WatchedItem {
    namespace: String,
    group: String,
    key: String,
    #[serde(default)]
    version: Option<u64>,
    #[serde(default)]
    md5: Option<String>,
}

/// A multi-item watch.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WatchBody {
    items: Vec<WatchedItem>,
    #[serde(default)]
    wait: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    ip: Option<String>,
}

/// `POST /v1/configs/watch`: answers the items whose served version is not
/// the one held (200 `{"changed": [...]}`), or 304 after the wait.
async fn watch_many(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    peer: Peer,
    ApiJson(body): ApiJson<WatchBody>,
) -> Result<Response, ApiError> {
    let center = center(&state)?;
    if body.items.is_empty() || body.items.len() > MAX_WATCHED_ITEMS {
        return Err(ApiError::bad_request(format!(
            "items: give 1 to {MAX_WATCHED_ITEMS} items to watch"
        )));
    }
    let mut items = Vec::with_capacity(body.items.len());
    for (i, watched) in body.items.iter().enumerate() {
        let item = ItemPath::new(&watched.namespace, &watched.group, &watched.key)
            .map_err(|e| ApiError::bad_request(format!("items[{i}]: {e}")))?;
        if !access.covers(&item.namespace) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "items[{i}]: this token does not cover namespace {:?}",
                    item.namespace
                ),
            ));
        }
        let held = match (&watched.version, &watched.md5) {
            (Some(v), None) => Held::Version(*v),
            (None, Some(md5)) => Held::Md5(md5.clone()),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "items[{i}]: give version or md5 (one of them)"
                )))
            }
        };
        items.push((item, held));
    }
    let mut params = std::collections::HashMap::new();
    if let Some(ip) = body.ip {
        params.insert("ip".to_owned(), ip);
    }
    if let Some(id) = body.client_id {
        params.insert("client_id".to_owned(), id);
    }
    let mut client = client_of(&params, &peer)?;
    for (key, value) in body.labels.unwrap_or_default() {
        sluice_model::validate_name("label key", &key)
            .map_err(|e| ApiError::bad_request(format!("labels.{key}: {e}")))?;
        client.labels.insert(key, value);
    }
    let wait = parse_wait(body.wait.as_ref())?;
    let changed = center.watch_many(&items, &client, wait).await?;
    if changed.is_empty() {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    Ok(Json(json!({ "changed": changed })).into_response())
}
