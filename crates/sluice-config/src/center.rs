//! [`ConfigCenter`]: every change to an item (publish, gray, promote, abort,
//! rollback, delete) is one store transaction — the item's record, the new
//! version's content, the audit record and the trimmed history together, at one
//! revision, guarded by the record's revision so concurrent changes retry rather
//! than overwrite each other. Reads come from the store; watchers are woken by a
//! follower of the records (see [`crate::watch`]).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use sluice_store::{Compare, FollowUpdate, KeyValue, Revision, Store, Txn, TxnOp};
use tokio::sync::{watch, OnceCell};

use crate::audit::{Action, AuditEntry};
use crate::format::Format;
use crate::item::{
    ClientInfo, GrayRule, GrayState, ItemPath, ItemRecord, VersionMeta, MAX_AUDIT, MAX_COMMENT,
    MAX_CONTENT_BYTES, MAX_HISTORY,
};
use crate::secrets::Sealer;
use crate::watch::Watchers;
use crate::{now_ms, ConfigError};

/// Bytes of contents kept in memory (versions are immutable, so cached forever).
const CONTENT_CACHE_BYTES: usize = 64 * 1024 * 1024;
/// Attempts of a change that races with another.
const CHANGE_ATTEMPTS: usize = 16;

/// What a publish (released or gray) carries.
#[derive(Debug, Clone, Default)]
pub struct Publish {
    /// The content.
    pub content: String,
    /// Its format; the key's extension decides when absent.
    pub format: Option<Format>,
    /// A comment for the history.
    pub comment: String,
    /// Mark the item secret (or not); `None` keeps what it is.
    pub secret: Option<bool>,
    /// Versions to keep (1..=100); `None` keeps the item's setting.
    pub history: Option<usize>,
    /// Publish only if the released version is this (0: only if the item does not exist).
    pub expect_version: Option<u64>,
}

/// Who makes a change.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    /// The token's name, or `anonymous`.
    pub name: String,
    /// The caller's address.
    pub address: Option<IpAddr>,
}

/// What a change did.
#[derive(Debug, Clone)]
pub struct Change {
    /// The item's record after it.
    pub record: ItemRecord,
    /// The version the change is about (the new released one, or the candidate).
    pub version: Option<VersionMeta>,
    /// The store revision it was written at.
    pub revision: Revision,
    /// The audit record written with it.
    pub audit: AuditEntry,
}

/// One version's content, as read (opened, for a sealed one).
#[derive(Debug)]
pub struct Content {
    /// The text.
    pub text: String,
    /// Its MD5, hex.
    pub md5: String,
    /// Answers rendered from it once and shared by every client served it
    /// (indexed by [`Content::rendered`]'s `variant`).
    rendered: [std::sync::OnceLock<bytes::Bytes>; 4],
}

impl Content {
    pub(crate) fn new(text: String) -> Self {
        let md5 = md5_hex(text.as_bytes());
        Content {
            text,
            md5,
            rendered: Default::default(),
        }
    }

    /// An answer made from this version by `render`, made once per `variant`
    /// (0..4) and shared: 10,000 watchers woken by one publish get one body.
    pub fn rendered(&self, variant: usize, render: impl FnOnce() -> Vec<u8>) -> bytes::Bytes {
        match self.rendered.get(variant) {
            Some(cell) => cell.get_or_init(|| bytes::Bytes::from(render())).clone(),
            None => bytes::Bytes::from(render()),
        }
    }
}

/// MD5 of `bytes`, hex (what Nacos and Polaris clients compare).
pub fn md5_hex(bytes: &[u8]) -> String {
    use md5::{Digest, Md5};
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What a client is served.
#[derive(Debug, Clone)]
pub struct Served {
    /// The version.
    pub meta: VersionMeta,
    /// Whether it is the gray candidate.
    pub gray: bool,
    /// Its content.
    pub content: Arc<Content>,
    /// Whether the item is secret.
    pub secret: bool,
    /// The store revision the record was read at (or the view had reached).
    pub revision: Revision,
}

/// The records of every item, as the follower last saw them.
#[derive(Default)]
pub(crate) struct View {
    pub(crate) items: HashMap<ItemPath, Arc<ItemRecord>>,
    pub(crate) revision: Revision,
}

/// Contents by (item, version), loaded once each.
#[derive(Default)]
struct ContentCache {
    entries: HashMap<(ItemPath, u64), Arc<OnceCell<Arc<Content>>>>,
    order: VecDeque<((ItemPath, u64), usize)>,
    bytes: usize,
}

pub(crate) struct Inner {
    pub(crate) store: Arc<dyn Store>,
    sealer: Option<Arc<Sealer>>,
    pub(crate) view: RwLock<View>,
    /// The revision the view has reached.
    pub(crate) revision: watch::Sender<Revision>,
    pub(crate) watchers: Watchers,
    cache: Mutex<ContentCache>,
    ready: AtomicBool,
}

/// The config center (cheap to clone; the follower stops when the last clone goes).
#[derive(Clone)]
pub struct ConfigCenter {
    pub(crate) inner: Arc<Inner>,
    _follower: Arc<AbortOnDrop>,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl ConfigCenter {
    /// Starts following the store's items (inside a Tokio runtime). Without a
    /// sealer, items cannot be made secret.
    pub fn start(store: Arc<dyn Store>, sealer: Option<Arc<Sealer>>) -> Self {
        let inner = Arc::new(Inner {
            store: Arc::clone(&store),
            sealer,
            view: RwLock::new(View::default()),
            revision: watch::channel(0).0,
            watchers: Watchers::default(),
            cache: Mutex::new(ContentCache::default()),
            ready: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&inner);
        let follower = tokio::spawn(sluice_store::follow(
            store,
            sluice_model::keys::CONFIG_ITEMS_PREFIX.to_owned(),
            move |update| {
                if let Some(inner) = weak.upgrade() {
                    inner.apply(update);
                }
            },
        ));
        ConfigCenter {
            inner,
            _follower: Arc::new(AbortOnDrop(follower)),
        }
    }

    /// Whether the follower has loaded every item.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::SeqCst)
    }

    /// Whether secret items can be sealed here.
    pub fn has_sealer(&self) -> bool {
        self.inner.sealer.is_some()
    }

    /// Publishes a new released version.
    pub async fn publish(
        &self,
        item: &ItemPath,
        publish: Publish,
        actor: &Actor,
    ) -> Result<Change, ConfigError> {
        let format = checked(item, &publish)?;
        self.change(item, actor, &publish.comment, |current| {
            let mut record = current.cloned().unwrap_or_else(|| ItemRecord::empty(None));
            if let Some(expected) = publish.expect_version {
                let actual = record.released.as_ref().map_or(0, |v| v.version);
                if actual != expected {
                    return Err(ConfigError::Conflict {
                        item: item.to_string(),
                        expected,
                        actual,
                    });
                }
            }
            apply_settings(&mut record, &publish);
            let from = record.released.as_ref().map(|v| v.version);
            let (meta, put) =
                self.new_version(item, &mut record, format, &publish, false, actor, None)?;
            record.released = Some(meta.clone());
            Ok(Plan::new(record, Action::Publish, from, Some(meta)).with_put(put))
        })
        .await
    }

    /// Publishes a gray candidate for the clients `rule` matches (replacing any
    /// candidate being tried).
    pub async fn publish_gray(
        &self,
        item: &ItemPath,
        publish: Publish,
        rule: GrayRule,
        actor: &Actor,
    ) -> Result<Change, ConfigError> {
        rule.validate()?;
        let format = checked(item, &publish)?;
        self.change(item, actor, &publish.comment, |current| {
            let Some(mut record) = current.filter(|r| r.released.is_some()).cloned() else {
                return Err(ConfigError::NotFound(format!(
                    "{item} (publish a released version before a gray one)"
                )));
            };
            apply_settings(&mut record, &publish);
            let from = record.gray.as_ref().map(|g| g.candidate.version);
            let (meta, put) =
                self.new_version(item, &mut record, format, &publish, true, actor, None)?;
            record.gray = Some(GrayState {
                candidate: meta.clone(),
                rule: rule.clone(),
            });
            Ok(Plan::new(record, Action::Gray, from, Some(meta)).with_put(put))
        })
        .await
    }

    /// Makes the gray candidate the released version and ends the gray, in one
    /// transaction: every client is served the candidate from that revision on.
    pub async fn promote(
        &self,
        item: &ItemPath,
        comment: &str,
        actor: &Actor,
    ) -> Result<Change, ConfigError> {
        self.end_gray(item, comment, actor, Action::Promote).await
    }

    /// Drops the gray candidate: its clients go back to the released version.
    /// The candidate stays in the history (it can be rolled back to).
    pub async fn abort(
        &self,
        item: &ItemPath,
        comment: &str,
        actor: &Actor,
    ) -> Result<Change, ConfigError> {
        self.end_gray(item, comment, actor, Action::Abort).await
    }

    async fn end_gray(
        &self,
        item: &ItemPath,
        comment: &str,
        actor: &Actor,
        action: Action,
    ) -> Result<Change, ConfigError> {
        check_comment(comment)?;
        self.change(item, actor, comment, |current| {
            let mut record = existing(item, current)?;
            let Some(gray) = record.gray.take() else {
                return Err(ConfigError::NoCandidate(item.to_string()));
            };
            let released = record.released.as_ref().map(|v| v.version);
            if action == Action::Promote {
                record.released = Some(gray.candidate.clone());
                Ok(Plan::new(record, action, released, Some(gray.candidate)))
            } else {
                let to = record.released.clone();
                Ok(Plan::new(record, action, Some(gray.candidate.version), to))
            }
        })
        .await
    }

    /// Publishes a new released version with the content of kept version `version`.
    pub async fn rollback(
        &self,
        item: &ItemPath,
        version: u64,
        comment: &str,
        actor: &Actor,
    ) -> Result<Change, ConfigError> {
        check_comment(comment)?;
        let record = self.existing(item).await?;
        let old = kept(item, &record, version)?.clone();
        let content = self.content(item, &old).await?;
        let publish = Publish {
            content: content.text.clone(),
            format: Some(old.format),
            comment: if comment.is_empty() {
                format!("rollback to version {version}")
            } else {
                comment.to_owned()
            },
            ..Publish::default()
        };
        self.change(item, actor, &publish.comment, |current| {
            let mut record = existing(item, current)?;
            kept(item, &record, version)?;
            let from = record.released.as_ref().map(|v| v.version);
            let (meta, put) = self.new_version(
                item,
                &mut record,
                old.format,
                &publish,
                false,
                actor,
                Some(version),
            )?;
            record.released = Some(meta.clone());
            Ok(Plan::new(record, Action::Rollback, from, Some(meta)).with_put(put))
        })
        .await
    }

    /// Deletes the item: its versions go, its audit trail stays, and a later
    /// publish continues its version numbers (so no watcher confuses the two).
    pub async fn delete(&self, item: &ItemPath, actor: &Actor) -> Result<Change, ConfigError> {
        self.change(item, actor, "", |current| {
            let record = existing(item, current)?;
            let from = record.released.as_ref().map(|v| v.version);
            let mut plan = Plan::new(ItemRecord::empty(Some(&record)), Action::Delete, from, None);
            plan.deletes = record
                .kept
                .iter()
                .map(|v| item.data_key(v.version))
                .collect();
            Ok(plan)
        })
        .await
    }

    /// The record of an item that exists (has a released version), from the store.
    pub async fn existing(&self, item: &ItemPath) -> Result<ItemRecord, ConfigError> {
        self.record(item)
            .await?
            .map(|(record, _)| record)
            .filter(|record| record.released.is_some())
            .ok_or_else(|| ConfigError::NotFound(item.to_string()))
    }

    /// The item's record and its revision, read from the store.
    pub async fn record(
        &self,
        item: &ItemPath,
    ) -> Result<Option<(ItemRecord, Revision)>, ConfigError> {
        let Some(kv) = self.inner.store.get(&item.record_key()).await? else {
            return Ok(None);
        };
        Ok(Some((parse_record(&kv)?, kv.mod_revision)))
    }

    /// What `client` is served now (read from the store).
    pub async fn read(&self, item: &ItemPath, client: &ClientInfo) -> Result<Served, ConfigError> {
        let (record, revision) = self
            .record(item)
            .await?
            .ok_or_else(|| ConfigError::NotFound(item.to_string()))?;
        self.serve(item, &record, client, revision)
            .await?
            .ok_or_else(|| ConfigError::NotFound(item.to_string()))
    }

    /// What `record` serves `client`, with the content.
    pub(crate) async fn serve(
        &self,
        item: &ItemPath,
        record: &ItemRecord,
        client: &ClientInfo,
        revision: Revision,
    ) -> Result<Option<Served>, ConfigError> {
        let Some((meta, gray)) = record.served(item, client) else {
            return Ok(None);
        };
        let content = self.content(item, meta).await?;
        Ok(Some(Served {
            meta: meta.clone(),
            gray,
            content,
            secret: record.secret,
            revision,
        }))
    }

    /// A kept version's metadata and content.
    pub async fn version(
        &self,
        item: &ItemPath,
        version: u64,
    ) -> Result<(VersionMeta, Arc<Content>, bool), ConfigError> {
        let (record, _) = self
            .record(item)
            .await?
            .ok_or_else(|| ConfigError::NotFound(item.to_string()))?;
        let meta = kept(item, &record, version)?.clone();
        let content = self.content(item, &meta).await?;
        Ok((meta, content, record.secret))
    }

    /// The unified diff between two kept versions.
    pub async fn diff(&self, item: &ItemPath, from: u64, to: u64) -> Result<String, ConfigError> {
        let (_, old, _) = self.version(item, from).await?;
        let (_, new, _) = self.version(item, to).await?;
        Ok(crate::diff::unified_diff(
            &old.text,
            &new.text,
            &format!("{item}@{from}"),
            &format!("{item}@{to}"),
        ))
    }

    /// The item's audit trail, oldest first (kept after a delete).
    pub async fn audit(&self, item: &ItemPath) -> Result<Vec<AuditEntry>, ConfigError> {
        let prefix =
            sluice_model::keys::config_audit_prefix(&item.namespace, &item.group, &item.key);
        let (kvs, _) = sluice_store::list_all(&*self.inner.store, &prefix).await?;
        kvs.iter()
            .map(|kv| {
                serde_json::from_slice(&kv.value).map_err(|e| {
                    ConfigError::Corrupt(format!("audit record {} is unreadable: {e}", kv.key))
                })
            })
            .collect()
    }

    /// The items of a namespace (deleted ones left out), from the store.
    pub async fn list(&self, namespace: &str) -> Result<Vec<(ItemPath, ItemRecord)>, ConfigError> {
        sluice_model::validate_name("namespace", namespace)?;
        let prefix = format!("{}{namespace}/", sluice_model::keys::CONFIG_ITEMS_PREFIX);
        let (kvs, _) = sluice_store::list_all(&*self.inner.store, &prefix).await?;
        let mut items = Vec::new();
        for kv in &kvs {
            let Some((ns, group, key)) = sluice_model::keys::parse_config_item_key(&kv.key) else {
                continue;
            };
            let record = parse_record(kv)?;
            if record.released.is_some() {
                items.push((ItemPath::new(ns, group, key)?, record));
            }
        }
        Ok(items)
    }

    /// A version's content, from the cache or the store (loaded once however many ask).
    pub(crate) async fn content(
        &self,
        item: &ItemPath,
        meta: &VersionMeta,
    ) -> Result<Arc<Content>, ConfigError> {
        let cell = {
            let mut cache = self.inner.cache.lock();
            let key = (item.clone(), meta.version);
            if let Some(cell) = cache.entries.get(&key) {
                Arc::clone(cell)
            } else {
                let cell = Arc::new(OnceCell::new());
                cache.entries.insert(key.clone(), Arc::clone(&cell));
                cache.order.push_back((key, meta.size));
                cache.bytes += meta.size;
                while cache.bytes > CONTENT_CACHE_BYTES && cache.order.len() > 1 {
                    if let Some((old, size)) = cache.order.pop_front() {
                        cache.entries.remove(&old);
                        cache.bytes -= size;
                    }
                }
                cell
            }
        };
        let content = cell
            .get_or_try_init(|| self.load_content(item, meta))
            .await?;
        Ok(Arc::clone(content))
    }

    async fn load_content(
        &self,
        item: &ItemPath,
        meta: &VersionMeta,
    ) -> Result<Arc<Content>, ConfigError> {
        let key = item.data_key(meta.version);
        let Some(kv) = self.inner.store.get(&key).await? else {
            return Err(ConfigError::VersionNotKept {
                item: item.to_string(),
                version: meta.version,
                kept: "(its content is gone; it was trimmed or deleted just now)".into(),
            });
        };
        let bytes = if meta.sealed {
            let sealer = self.inner.sealer.as_ref().ok_or_else(|| {
                ConfigError::Secrets(format!("{item} is secret and this node has no secrets key"))
            })?;
            sealer.open(item, meta.version, &kv.value)?
        } else {
            kv.value
        };
        let text = String::from_utf8(bytes).map_err(|_| {
            ConfigError::Corrupt(format!("{item} version {}: not UTF-8", meta.version))
        })?;
        Ok(Arc::new(Content::new(text)))
    }

    /// Makes the next version of `record` from `publish`: its metadata, and the
    /// put of its (sealed, for a secret item) content.
    #[allow(clippy::too_many_arguments)]
    fn new_version(
        &self,
        item: &ItemPath,
        record: &mut ItemRecord,
        format: Format,
        publish: &Publish,
        gray: bool,
        actor: &Actor,
        rollback_of: Option<u64>,
    ) -> Result<(VersionMeta, TxnOp), ConfigError> {
        let version = record.next_version;
        record.next_version += 1;
        let bytes = publish.content.as_bytes();
        let (stored, md5) = if record.secret {
            let sealer = self.inner.sealer.as_ref().ok_or_else(|| {
                ConfigError::invalid(
                    "secret",
                    "this node has no secrets key (give --secrets-key-file, or run with a data directory)",
                )
            })?;
            (sealer.seal(item, version, bytes)?, String::new())
        } else {
            (bytes.to_vec(), md5_hex(bytes))
        };
        let meta = VersionMeta {
            version,
            format,
            md5,
            size: bytes.len(),
            author: actor.name.clone(),
            published_ms: now_ms(),
            comment: publish.comment.clone(),
            rollback_of,
            gray,
            sealed: record.secret,
        };
        record.kept.push(meta.clone());
        Ok((meta, TxnOp::put(item.data_key(version), stored)))
    }

    /// Runs one change: read the record, plan, write everything in one
    /// transaction guarded by the record's revision; retry when another change won.
    async fn change(
        &self,
        item: &ItemPath,
        actor: &Actor,
        comment: &str,
        mut plan: impl FnMut(Option<&ItemRecord>) -> Result<Plan, ConfigError>,
    ) -> Result<Change, ConfigError> {
        let key = item.record_key();
        for _ in 0..CHANGE_ATTEMPTS {
            let kv = self.inner.store.get(&key).await?;
            let current = kv.as_ref().map(parse_record).transpose()?;
            let Plan {
                mut record,
                action,
                from,
                to,
                mut puts,
                mut deletes,
            } = plan(current.as_ref())?;
            deletes.extend(record.trim().into_iter().map(|v| item.data_key(v)));
            let seq = record.next_audit;
            record.next_audit += 1;
            let audit = AuditEntry {
                seq,
                action,
                author: actor.name.clone(),
                address: actor.address.map(|a| a.to_string()),
                at_ms: now_ms(),
                from_version: from,
                to_version: to.as_ref().map(|v| v.version),
                comment: comment.to_owned(),
            };
            puts.push(TxnOp::put(item.audit_key(seq), json(&audit)));
            if seq > MAX_AUDIT {
                deletes.push(item.audit_key(seq - MAX_AUDIT));
            }
            puts.push(TxnOp::put(key.clone(), json(&record)));
            let mut txn = Txn::new().when(Compare::ModRevision(
                key.clone(),
                kv.as_ref().map_or(0, |kv| kv.mod_revision),
            ));
            txn.ops = puts;
            txn.ops.extend(deletes.into_iter().map(TxnOp::delete));
            let outcome = self.inner.store.txn(txn).await?;
            if outcome.succeeded {
                self.caught_up(outcome.revision, Duration::from_secs(5))
                    .await;
                return Ok(Change {
                    record,
                    version: to,
                    revision: outcome.revision,
                    audit,
                });
            }
            tokio::time::sleep(Duration::from_millis(fastrand::u64(1..20))).await;
        }
        Err(ConfigError::Contended(item.to_string()))
    }

    /// Waits (up to `limit`) until the view has reached `revision`, so the node
    /// that made a change (or saw a newer one elsewhere) answers from it.
    pub(crate) async fn caught_up(&self, revision: Revision, limit: Duration) {
        let mut seen = self.inner.revision.subscribe();
        let _ = tokio::time::timeout(limit, seen.wait_for(|at| *at >= revision)).await;
    }
}

impl Inner {
    /// Applies what the follower saw and wakes the watchers of every changed item.
    fn apply(&self, update: FollowUpdate) {
        let mut changed = Vec::new();
        let revision = {
            let mut view = self.view.write();
            match update {
                FollowUpdate::Snapshot { kvs, revision } => {
                    let old: Vec<ItemPath> = view.items.keys().cloned().collect();
                    view.items.clear();
                    for kv in &kvs {
                        if let Some((item, record)) = decode(kv) {
                            view.items.insert(item, Arc::new(record));
                        }
                    }
                    changed.extend(old);
                    changed.extend(view.items.keys().cloned());
                    view.revision = view.revision.max(revision);
                    self.ready.store(true, Ordering::SeqCst);
                }
                FollowUpdate::Events(events) => {
                    for event in events {
                        view.revision = view.revision.max(event.revision());
                        let Some((ns, group, key)) =
                            sluice_model::keys::parse_config_item_key(&event.kv.key)
                        else {
                            continue;
                        };
                        let Ok(item) = ItemPath::new(ns, group, key) else {
                            continue;
                        };
                        match event.kind {
                            sluice_store::EventKind::Put => match decode(&event.kv) {
                                Some((_, record)) => {
                                    view.items.insert(item.clone(), Arc::new(record));
                                }
                                None => continue,
                            },
                            sluice_store::EventKind::Delete => {
                                view.items.remove(&item);
                            }
                        }
                        changed.push(item);
                    }
                }
            }
            view.revision
        };
        self.revision.send_replace(revision);
        self.watchers.wake(&changed, revision);
    }
}

fn decode(kv: &KeyValue) -> Option<(ItemPath, ItemRecord)> {
    let (ns, group, key) = sluice_model::keys::parse_config_item_key(&kv.key)?;
    let item = ItemPath::new(ns, group, key).ok()?;
    match parse_record(kv) {
        Ok(record) => Some((item, record)),
        Err(error) => {
            tracing::warn!(%error, key = kv.key, "an unreadable config record is skipped");
            None
        }
    }
}

fn parse_record(kv: &KeyValue) -> Result<ItemRecord, ConfigError> {
    serde_json::from_slice(&kv.value)
        .map_err(|e| ConfigError::Corrupt(format!("config record {} is unreadable: {e}", kv.key)))
}

fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// What one change writes.
struct Plan {
    record: ItemRecord,
    action: Action,
    from: Option<u64>,
    to: Option<VersionMeta>,
    puts: Vec<TxnOp>,
    deletes: Vec<String>,
}

impl Plan {
    fn new(record: ItemRecord, action: Action, from: Option<u64>, to: Option<VersionMeta>) -> Self {
        Plan {
            record,
            action,
            from,
            to,
            puts: Vec::new(),
            deletes: Vec::new(),
        }
    }

    fn with_put(mut self, put: TxnOp) -> Self {
        self.puts.push(put);
        self
    }
}

fn existing(item: &ItemPath, current: Option<&ItemRecord>) -> Result<ItemRecord, ConfigError> {
    current
        .filter(|r| r.released.is_some())
        .cloned()
        .ok_or_else(|| ConfigError::NotFound(item.to_string()))
}

fn kept<'a>(
    item: &ItemPath,
    record: &'a ItemRecord,
    version: u64,
) -> Result<&'a VersionMeta, ConfigError> {
    record
        .kept_version(version)
        .ok_or_else(|| ConfigError::VersionNotKept {
            item: item.to_string(),
            version,
            kept: record
                .kept
                .iter()
                .map(|v| v.version.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

fn apply_settings(record: &mut ItemRecord, publish: &Publish) {
    if let Some(secret) = publish.secret {
        record.secret = secret;
    }
    if let Some(history) = publish.history {
        record.history = history;
    }
}

fn check_comment(comment: &str) -> Result<(), ConfigError> {
    if comment.len() > MAX_COMMENT {
        return Err(ConfigError::invalid(
            "comment",
            format!("{} bytes, over the limit of {MAX_COMMENT}", comment.len()),
        ));
    }
    Ok(())
}

/// Checks a publish's content, format and settings; answers the format in force.
fn checked(item: &ItemPath, publish: &Publish) -> Result<Format, ConfigError> {
    if publish.content.len() > MAX_CONTENT_BYTES {
        return Err(ConfigError::TooLarge {
            size: publish.content.len(),
            limit: MAX_CONTENT_BYTES,
        });
    }
    check_comment(&publish.comment)?;
    if let Some(history) = publish.history {
        if !(1..=MAX_HISTORY).contains(&history) {
            return Err(ConfigError::invalid(
                "history",
                format!("{history} is outside 1..={MAX_HISTORY}"),
            ));
        }
    }
    let format = publish
        .format
        .unwrap_or_else(|| Format::from_key(&item.key));
    format.check(&publish.content)?;
    Ok(format)
}
