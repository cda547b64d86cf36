//! The agent's config cache: it follows the items its host's services use
//! (`--config NS/GROUP/KEY,...`) with one multi-item watch, writes each version to
//! `DIR/configs/NS/GROUP/KEY` (see [`sluice_config::cache`]) and serves the same
//! read and watch API as the control plane on a local address. When no control
//! node answers it keeps serving what it holds — answers then carry
//! `X-Sluice-Stale: true`, and the log says so once — and it catches up as soon
//! as one answers again. A version is held (and its watchers woken) only once
//! its content is fetched and written, so a failed fetch never moves the
//! watermark.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use parking_lot::RwLock;
use serde_json::{json, Value};
use sluice_client::{ClientError, ControlPlane, Method};
use sluice_config::cache::{CachedItem, CachedMeta, HostCache};
use sluice_config::{Format, ItemPath};
use tokio::sync::watch;

/// How long one watch of the control plane waits.
const FOLLOW_WAIT: &str = "30s";
/// The pause before trying again when no control node answers.
const RETRY: Duration = Duration::from_millis(300);

/// What the local server and the follower share.
pub struct ConfigCache {
    items: Vec<ItemPath>,
    held: RwLock<HashMap<ItemPath, CachedItem>>,
    files: HostCache,
    /// Bumped whenever an item changes.
    changes: watch::Sender<u64>,
    /// [`STARTING`], [`ONLINE`] or [`OFFLINE`].
    state: AtomicU8,
}

/// No answer from the control plane yet.
const STARTING: u8 = 0;
/// The last watch was answered.
const ONLINE: u8 = 1;
/// The last watch was not.
const OFFLINE: u8 = 2;

impl ConfigCache {
    /// The cache of `items` under `dir`, loaded from its files.
    pub fn load(dir: &std::path::Path, items: Vec<ItemPath>) -> Arc<Self> {
        let files = HostCache::new(dir);
        let held = files.read_all(&items);
        Arc::new(ConfigCache {
            items,
            held: RwLock::new(held),
            files,
            changes: watch::channel(0).0,
            state: AtomicU8::new(STARTING),
        })
    }

    /// How many subscribed items have a cached version.
    pub fn cached(&self) -> usize {
        self.held.read().len()
    }

    fn held_version(&self, item: &ItemPath) -> u64 {
        self.held.read().get(item).map_or(0, |c| c.meta.version)
    }

    fn keep(&self, item: &ItemPath, cached: Option<CachedItem>) {
        let written = match &cached {
            Some(cached) => self.files.write(item, cached),
            None => self.files.remove(item),
        };
        if let Err(error) = written {
            tracing::warn!(%error, %item, "cannot write the config cache; serving from memory");
        }
        {
            let mut held = self.held.write();
            match cached {
                Some(cached) => held.insert(item.clone(), cached),
                None => held.remove(item),
            };
        }
        self.changes.send_modify(|n| *n += 1);
    }

    fn set_online(&self, online: bool) {
        let now = if online { ONLINE } else { OFFLINE };
        let was = self.state.swap(now, Ordering::SeqCst);
        match (was, now) {
            (OFFLINE, ONLINE) => tracing::info!("config: a control-plane node answers again; catching up"),
            (STARTING | ONLINE, OFFLINE) => tracing::warn!(
                "config: no control-plane node answers; serving the cached versions, which may be stale"
            ),
            _ => {}
        }
    }

    fn is_online(&self) -> bool {
        self.state.load(Ordering::SeqCst) == ONLINE
    }
}

/// Who the agent is to gray rules.
pub struct Identity {
    /// `labels=k=v,...` for the query string (may be empty).
    pub labels: String,
    /// The client id (the host name unless given).
    pub client_id: String,
}

/// Follows the control plane until the task is dropped.
pub async fn follow(cache: Arc<ConfigCache>, control: ControlPlane, identity: Identity) {
    loop {
        match follow_once(&cache, &control, &identity).await {
            Ok(()) => cache.set_online(true),
            Err(error) => {
                tracing::debug!(%error, "config watch failed");
                cache.set_online(false);
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

async fn follow_once(
    cache: &ConfigCache,
    control: &ControlPlane,
    who: &Identity,
) -> Result<(), ClientError> {
    let items: Vec<Value> = cache
        .items
        .iter()
        .map(|item| {
            json!({"namespace": item.namespace, "group": item.group, "key": item.key,
                   "version": cache.held_version(item)})
        })
        .collect();
    let labels: serde_json::Map<String, Value> =
        sluice_config::ClientInfo::parse_labels(&who.labels)
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, Value::from(v)))
            .collect();
    let body =
        json!({"items": items, "wait": FOLLOW_WAIT, "labels": labels, "client_id": who.client_id});
    let answer = control
        .request(Method::POST, "/v1/configs/watch", Some(&body))
        .await?;
    cache.set_online(true);
    if answer.status == 304 {
        return Ok(());
    }
    let changed: Value = answer.json()?;
    for change in changed["changed"].as_array().into_iter().flatten() {
        let (Some(ns), Some(group), Some(key)) = (
            change["namespace"].as_str(),
            change["group"].as_str(),
            change["key"].as_str(),
        ) else {
            continue;
        };
        let Ok(item) = ItemPath::new(ns, group, key) else {
            continue;
        };
        fetch(cache, control, who, &item).await?;
    }
    Ok(())
}

/// Reads the item as this host is served it, and keeps it (or drops it, when deleted).
async fn fetch(
    cache: &ConfigCache,
    control: &ControlPlane,
    who: &Identity,
    item: &ItemPath,
) -> Result<(), ClientError> {
    let path = format!(
        "/v1/namespaces/{}/configs/{}/{}?client_id={}&{}",
        item.namespace, item.group, item.key, who.client_id, who.labels
    );
    match control.request(Method::GET, &path, None).await {
        Ok(answer) => {
            let value: Value = answer.json()?;
            let content = value["content"].as_str().unwrap_or_default().to_owned();
            let meta = CachedMeta {
                version: value["version"].as_u64().unwrap_or(0),
                md5: value["md5"].as_str().unwrap_or_default().to_owned(),
                format: value["format"]
                    .as_str()
                    .and_then(Format::from_name)
                    .unwrap_or(Format::Text),
                gray: value["gray"].as_bool().unwrap_or(false),
                secret: value["secret"].as_bool().unwrap_or(false),
                fetched_ms: now_ms(),
            };
            cache.keep(item, Some(CachedItem { meta, content }));
            Ok(())
        }
        Err(ClientError::Api { status: 404, .. }) => {
            cache.keep(item, None);
            Ok(())
        }
        Err(ClientError::Api {
            status: 403,
            message,
            ..
        }) => {
            tracing::warn!(%item, message, "the agent's token may not read this item");
            Ok(())
        }
        Err(error) => Err(error),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Serves the cache on `address` until the task is dropped.
pub async fn serve(
    cache: Arc<ConfigCache>,
    listener: tokio::net::TcpListener,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/v1/namespaces/{ns}/configs/{group}/{key}", get(read))
        .route("/v1/agent/configs", get(status))
        .with_state(cache);
    axum::serve(listener, app).await
}

/// Binds the local address.
pub async fn bind(address: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    use anyhow::Context;
    tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| {
            format!("cannot listen on {address} (the agent's config API; --config-listen)")
        })
}

fn error(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

/// `GET /v1/namespaces/{ns}/configs/{group}/{key}` (`version` or `md5` and `wait`: a watch).
async fn read(
    State(cache): State<Arc<ConfigCache>>,
    Path((ns, group, key)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
) -> Response {
    let item = match ItemPath::new(&ns, &group, &key) {
        Ok(item) => item,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_name", e.to_string()),
    };
    if !cache.items.contains(&item) {
        return error(
            StatusCode::NOT_FOUND,
            "not_subscribed",
            format!("{item} is not followed by this agent; add it to --config"),
        );
    }
    let params: HashMap<String, String> =
        serde_urlencoded::from_str(raw.as_deref().unwrap_or("")).unwrap_or_default();
    let held = match (params.get("version"), params.get("md5")) {
        (Some(v), _) => match v.parse::<u64>() {
            Ok(v) => Some((Some(v), None)),
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!("version={v:?} is not a whole number"),
                )
            }
        },
        (None, Some(md5)) => Some((None, Some(md5.clone()))),
        (None, None) => None,
    };
    if let Some((version, md5)) = held {
        let wait = match params
            .get("wait")
            .map(|w| sluice_model::duration_text::parse(w))
        {
            None => Duration::from_secs(30),
            Some(Ok(wait)) if wait <= Duration::from_secs(600) => wait,
            Some(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "wait is not a duration of at most 10m".into(),
                )
            }
        };
        let differs = |cache: &ConfigCache| {
            let held = cache.held.read();
            let current = held.get(&item);
            match (&version, &md5) {
                (Some(v), _) => current.map_or(0, |c| c.meta.version) != *v,
                (None, Some(m)) => current.map_or("", |c| c.meta.md5.as_str()) != m.as_str(),
                (None, None) => true,
            }
        };
        let mut changes = cache.changes.subscribe();
        let waited = tokio::time::timeout(wait, changes.wait_for(|_| differs(&cache))).await;
        if !matches!(waited, Ok(Ok(_))) {
            return with_source(&cache, StatusCode::NOT_MODIFIED.into_response());
        }
    }
    let Some(cached) = cache.held.read().get(&item).cloned() else {
        return with_source(
            &cache,
            error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("{item} is not cached (yet)"),
            ),
        );
    };
    let body = json!({
        "namespace": item.namespace, "group": item.group, "key": item.key,
        "content": cached.content, "version": cached.meta.version, "md5": cached.meta.md5,
        "format": cached.meta.format, "gray": cached.meta.gray, "secret": cached.meta.secret,
        "fetched_ms": cached.meta.fetched_ms,
    });
    let mut response = with_source(&cache, Json(body).into_response());
    response.headers_mut().insert(
        "x-sluice-config-version",
        HeaderValue::from(cached.meta.version),
    );
    response
}

fn with_source(cache: &ConfigCache, mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        "x-sluice-config-source",
        HeaderValue::from_static("agent-cache"),
    );
    if !cache.is_online() {
        headers.insert("x-sluice-stale", HeaderValue::from_static("true"));
    }
    response
}

/// `GET /v1/agent/configs`: what the agent holds and whether it is caught up.
async fn status(State(cache): State<Arc<ConfigCache>>) -> Json<Value> {
    let held = cache.held.read();
    let items: Vec<Value> = cache
        .items
        .iter()
        .map(|item| {
            let cached = held.get(item);
            json!({"item": item.to_string(), "version": cached.map(|c| c.meta.version),
                   "md5": cached.map(|c| c.meta.md5.clone()),
                   "file": cache.files.content_path(item)})
        })
        .collect();
    Json(json!({"online": cache.is_online(), "items": items}))
}
