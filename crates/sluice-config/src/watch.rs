//! Long-poll watches. A client says what it holds (a version, or an MD5); the
//! answer comes at once when that is not what it would be served now, else when
//! a change to the item makes it so, else when the wait ends (minus a jitter of
//! up to 1/16, so a client's own timeout never fires first and reconnects spread
//! out). Each item has one channel; a change sends on it once and every watcher
//! of that item wakes in that pass. A watcher that reconnects with its last
//! version never misses a change, because nothing is remembered per watcher: the
//! held version is compared with the current record every time.
//!
//! The nodes also remember which clients they saw lately and which version each
//! holds, for "who has the candidate".

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use sluice_store::Revision;
use tokio::sync::watch;

use crate::center::{ConfigCenter, Served};
use crate::item::{ClientInfo, ItemPath, ItemRecord};
use crate::{now_ms, ConfigError};

/// Clients remembered per item per node.
const MAX_SEEN_PER_ITEM: usize = 1000;
/// How long a client that stopped asking stays listed.
const SEEN_FOR_MS: u64 = 5 * 60 * 1000;
/// How long the view is given to catch up with the store before an answer.
const CATCH_UP: Duration = Duration::from_secs(5);

/// What a watching client holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    /// A version number (0: nothing, the item did not exist).
    Version(u64),
    /// The MD5 of the content (empty: nothing).
    Md5(String),
}

/// How a watch of one item ended.
#[derive(Debug, Clone)]
pub enum WatchAnswer {
    /// The client is now served something else.
    Changed(Served),
    /// The item is gone (deleted) while the client held a version.
    Gone,
    /// Nothing changed for this client during the wait.
    NotModified,
}

/// One item of a multi-item watch whose served version is not the held one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WatchedChange {
    /// The item.
    pub namespace: String,
    /// Its group.
    pub group: String,
    /// Its key.
    pub key: String,
    /// The version the client is served now (0: the item does not exist).
    pub version: u64,
    /// That version's MD5 (empty when the item does not exist).
    pub md5: String,
    /// Whether it is the gray candidate.
    pub gray: bool,
}

/// A client a node saw reading or watching an item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeenClient {
    /// Its id (the client id it sent, or its address).
    pub id: String,
    /// Its address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The labels it sent.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The version it was last served (or held, while it waits).
    pub version: u64,
    /// Whether that is the gray candidate.
    pub gray: bool,
    /// When it was last seen, Unix milliseconds.
    pub last_seen_ms: u64,
    /// Watches it has open on this node now.
    pub watching: u32,
}

/// The item channels and the clients seen.
#[derive(Default)]
pub(crate) struct Watchers {
    channels: Mutex<HashMap<ItemPath, watch::Sender<Revision>>>,
    subscriptions: AtomicUsize,
    seen: Mutex<HashMap<ItemPath, HashMap<String, SeenClient>>>,
}

impl Watchers {
    fn subscribe(&self, item: &ItemPath) -> watch::Receiver<Revision> {
        let mut channels = self.channels.lock();
        // Channels nobody listens to any more are dropped now and then.
        if self.subscriptions.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            channels.retain(|_, sender| sender.receiver_count() > 0);
        }
        channels
            .entry(item.clone())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Wakes every watcher of `items`.
    pub(crate) fn wake(&self, items: &[ItemPath], revision: Revision) {
        let channels = self.channels.lock();
        for item in items {
            if let Some(sender) = channels.get(item) {
                sender.send_replace(revision);
            }
        }
    }

    /// Notes that `client` holds (or was served) `version` of `item`.
    pub(crate) fn saw(
        &self,
        item: &ItemPath,
        client: &ClientInfo,
        version: u64,
        gray: bool,
        watching: i32,
    ) {
        let Some(id) = client.id() else { return };
        let now = now_ms();
        let mut seen = self.seen.lock();
        let clients = seen.entry(item.clone()).or_default();
        if !clients.contains_key(&id) && clients.len() >= MAX_SEEN_PER_ITEM {
            clients
                .retain(|_, c| c.watching > 0 || now.saturating_sub(c.last_seen_ms) < SEEN_FOR_MS);
            if clients.len() >= MAX_SEEN_PER_ITEM {
                if let Some(oldest) = clients
                    .iter()
                    .filter(|(_, c)| c.watching == 0)
                    .min_by_key(|(_, c)| c.last_seen_ms)
                    .map(|(id, _)| id.clone())
                {
                    clients.remove(&oldest);
                }
            }
        }
        let entry = clients.entry(id.clone()).or_insert_with(|| SeenClient {
            id,
            address: None,
            labels: BTreeMap::new(),
            version,
            gray,
            last_seen_ms: now,
            watching: 0,
        });
        entry.address = client.address.map(|a| a.to_string());
        entry.labels.clone_from(&client.labels);
        entry.version = version;
        entry.gray = gray;
        entry.last_seen_ms = now;
        entry.watching = entry.watching.saturating_add_signed(watching);
    }

    fn clients(&self, item: &ItemPath) -> Vec<SeenClient> {
        let now = now_ms();
        let seen = self.seen.lock();
        let mut clients: Vec<SeenClient> = seen
            .get(item)
            .map(|clients| {
                clients
                    .values()
                    .filter(|c| c.watching > 0 || now.saturating_sub(c.last_seen_ms) < SEEN_FOR_MS)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        clients.sort_by(|a, b| a.id.cmp(&b.id));
        clients
    }
}

/// Counts a watch as open while it lives.
struct Watching<'a> {
    center: &'a ConfigCenter,
    items: Vec<(ItemPath, u64)>,
    client: &'a ClientInfo,
}

impl Drop for Watching<'_> {
    fn drop(&mut self) {
        for (item, version) in &self.items {
            self.center
                .inner
                .watchers
                .saw(item, self.client, *version, false, -1);
        }
    }
}

impl ConfigCenter {
    /// Watches one item; see the module docs.
    pub async fn watch(
        &self,
        item: &ItemPath,
        client: &ClientInfo,
        held: &Held,
        wait: Duration,
    ) -> Result<WatchAnswer, ConfigError> {
        let deadline = tokio::time::Instant::now() + hold(wait);
        let mut channel = self.inner.watchers.subscribe(item);
        let _open = self.open(&[(item.clone(), held.clone())], client);
        let mut first = true;
        loop {
            channel.borrow_and_update();
            let (record, revision) = self.viewed(item);
            if self.differs(item, record.as_deref(), client, held).await? {
                if first && self.lagging().await? {
                    first = false;
                    continue;
                }
                let Some(record) = record else {
                    return Ok(WatchAnswer::Gone);
                };
                return Ok(match self.serve(item, &record, client, revision).await? {
                    Some(served) => WatchAnswer::Changed(served),
                    None => WatchAnswer::Gone,
                });
            }
            first = false;
            tokio::select! {
                changed = channel.changed() => if changed.is_err() { return Ok(WatchAnswer::NotModified) },
                () = tokio::time::sleep_until(deadline) => return Ok(WatchAnswer::NotModified),
            }
        }
    }

    /// Watches several items in one request (as Nacos's listener does): answers
    /// the items whose served version is not the held one, or nothing after the wait.
    pub async fn watch_many(
        &self,
        items: &[(ItemPath, Held)],
        client: &ClientInfo,
        wait: Duration,
    ) -> Result<Vec<WatchedChange>, ConfigError> {
        let deadline = tokio::time::Instant::now() + hold(wait);
        let mut channels: Vec<_> = items
            .iter()
            .map(|(item, _)| self.inner.watchers.subscribe(item))
            .collect();
        let _open = self.open(items, client);
        let mut first = true;
        loop {
            for channel in &mut channels {
                channel.borrow_and_update();
            }
            let mut changes = Vec::new();
            for (item, held) in items {
                let (record, _) = self.viewed(item);
                if self.differs(item, record.as_deref(), client, held).await? {
                    changes.push(self.watched_change(item, record.as_deref(), client).await?);
                }
            }
            if !changes.is_empty() {
                if first && self.lagging().await? {
                    first = false;
                    continue;
                }
                return Ok(changes);
            }
            first = false;
            let any =
                futures::future::select_all(channels.iter_mut().map(|c| Box::pin(c.changed())));
            tokio::select! {
                _ = any => {}
                () = tokio::time::sleep_until(deadline) => return Ok(Vec::new()),
            }
        }
    }

    /// The clients this node saw reading or watching `item` in the last minutes.
    pub fn clients(&self, item: &ItemPath) -> Vec<SeenClient> {
        self.inner.watchers.clients(item)
    }

    /// Notes what `client` was served (for [`ConfigCenter::clients`]).
    pub fn saw(&self, item: &ItemPath, client: &ClientInfo, version: u64, gray: bool) {
        self.inner.watchers.saw(item, client, version, gray, 0);
    }

    fn open<'a>(&'a self, items: &[(ItemPath, Held)], client: &'a ClientInfo) -> Watching<'a> {
        let items: Vec<(ItemPath, u64)> = items
            .iter()
            .map(|(item, held)| {
                let version = match held {
                    Held::Version(v) => *v,
                    Held::Md5(_) => 0,
                };
                (item.clone(), version)
            })
            .collect();
        for (item, version) in &items {
            self.inner.watchers.saw(item, client, *version, false, 1);
        }
        Watching {
            center: self,
            items,
            client,
        }
    }

    fn viewed(&self, item: &ItemPath) -> (Option<Arc<ItemRecord>>, Revision) {
        let view = self.inner.view.read();
        (view.items.get(item).cloned(), view.revision)
    }

    /// Whether the view is behind the store; if so, waits for it to catch up, so
    /// that a client holding a newer version (from another node) is not sent back.
    async fn lagging(&self) -> Result<bool, ConfigError> {
        let current = self.inner.store.current_revision().await?;
        if *self.inner.revision.borrow() >= current {
            return Ok(false);
        }
        self.caught_up(current, CATCH_UP).await;
        Ok(true)
    }

    async fn differs(
        &self,
        item: &ItemPath,
        record: Option<&ItemRecord>,
        client: &ClientInfo,
        held: &Held,
    ) -> Result<bool, ConfigError> {
        let served = record.and_then(|r| r.served(item, client));
        Ok(match (held, served) {
            (Held::Version(v), served) => served.map_or(0, |(meta, _)| meta.version) != *v,
            (Held::Md5(md5), None) => !md5.is_empty(),
            (Held::Md5(md5), Some((meta, _))) if !meta.md5.is_empty() => meta.md5 != *md5,
            (Held::Md5(md5), Some((meta, _))) => self.content(item, meta).await?.md5 != *md5,
        })
    }

    async fn watched_change(
        &self,
        item: &ItemPath,
        record: Option<&ItemRecord>,
        client: &ClientInfo,
    ) -> Result<WatchedChange, ConfigError> {
        let served = record.and_then(|r| r.served(item, client));
        let (version, md5, gray) = match served {
            None => (0, String::new(), false),
            Some((meta, gray)) if !meta.md5.is_empty() => (meta.version, meta.md5.clone(), gray),
            Some((meta, gray)) => (
                meta.version,
                self.content(item, meta).await?.md5.clone(),
                gray,
            ),
        };
        Ok(WatchedChange {
            namespace: item.namespace.clone(),
            group: item.group.clone(),
            key: item.key.clone(),
            version,
            md5,
            gray,
        })
    }
}

/// How long to hold a watch asked to wait `wait`: up to 1/16 less, never more.
fn hold(wait: Duration) -> Duration {
    wait.saturating_sub(wait.mul_f64(fastrand::f64() / 16.0))
}
