//! The embedded backends (`memory://` and `redb://`): one engine, two persistences.
//!
//! All state lives in memory behind a read-write lock, so reads never wait for the
//! disk. Writes go through one committer thread that takes every request waiting in
//! its queue, evaluates them in order against the state plus the batch's own
//! changes, persists the whole batch in one durable transaction (group commit), and
//! only then publishes it to readers and watchers and answers the callers. The
//! memory backend is the same engine with a persistence that keeps nothing.
//!
//! Watchers do not get events pushed: they are woken with the new revision and read
//! the bounded history themselves, which makes "every event, in order, exactly once"
//! a matter of remembering the next revision to read.

mod committer;
mod redb_file;

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use futures::StreamExt;
use parking_lot::RwLock;
use tokio::sync::{oneshot, watch};

use crate::types::{validate_key, validate_prefix, validate_ttl};
use crate::{
    KeyValue, LeaseId, RangeOptions, RangePage, Result, Revision, Store, StoreError, StoreSnapshot,
    Txn, TxnOutcome, WatchEvent, WatchStream, DEFAULT_HISTORY_REVISIONS,
};

use committer::{Command, Committer, Persistence};

/// Tuning of the embedded backends.
#[derive(Debug, Clone)]
pub struct LocalStoreOptions {
    /// How many revisions of history to keep for watches (default
    /// [`DEFAULT_HISTORY_REVISIONS`]). Older ones are compacted away automatically.
    pub history_revisions: u64,
}

impl Default for LocalStoreOptions {
    fn default() -> Self {
        LocalStoreOptions {
            history_revisions: DEFAULT_HISTORY_REVISIONS,
        }
    }
}

impl LocalStoreOptions {
    fn validate(&self) -> Result<()> {
        if self.history_revisions == 0 {
            return Err(StoreError::InvalidRequest(
                "history_revisions must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// What readers and watchers see: the state as of the last committed batch.
#[derive(Debug, Default)]
struct State {
    /// Shared with the snapshots being read (backups); the committer copies it
    /// before changing it while one is.
    kvs: Arc<BTreeMap<String, KeyValue>>,
    /// Events of revisions `first_retained..=revision`, in order.
    history: VecDeque<WatchEvent>,
    /// The oldest revision whose events are all in `history`.
    first_retained: Revision,
    revision: Revision,
}

/// The embedded store: [`memory`](LocalStore::memory) or [`redb`](LocalStore::open_redb).
pub struct LocalStore {
    backend: &'static str,
    state: Arc<RwLock<State>>,
    revisions: watch::Receiver<Revision>,
    commands: Option<mpsc::Sender<Command>>,
    committer: Option<JoinHandle<()>>,
}

impl LocalStore {
    /// A store that lives in this process only.
    pub fn memory(options: LocalStoreOptions) -> Result<Self> {
        Self::start("memory", Box::new(committer::NoPersistence), options)
    }

    /// Opens (or creates) the redb store in `dir` (file `dir/store.redb`).
    ///
    /// Leases whose deadline passed while the store was closed expire at once:
    /// their keys are deleted and watchers see the deletes.
    pub fn open_redb(dir: &Path, options: LocalStoreOptions) -> Result<Self> {
        options.validate()?;
        let persistence = redb_file::RedbFile::open(dir)?;
        Self::start("redb", Box::new(persistence), options)
    }

    fn start(
        backend: &'static str,
        mut persistence: Box<dyn Persistence>,
        options: LocalStoreOptions,
    ) -> Result<Self> {
        options.validate()?;
        let loaded = persistence.load()?;
        let state = Arc::new(RwLock::new(State {
            kvs: Arc::new(loaded.kvs),
            history: loaded.history,
            first_retained: loaded.first_retained.max(1),
            revision: loaded.revision,
        }));
        let (revision_tx, revisions) = watch::channel(loaded.revision);
        let (commands, queue) = mpsc::channel();
        let committer = Committer::new(
            backend,
            persistence,
            loaded.leases,
            Arc::clone(&state),
            revision_tx,
            options.history_revisions,
        );
        let handle = std::thread::Builder::new()
            .name(format!("sluice-{backend}-committer"))
            .spawn(move || committer.run(queue))
            .map_err(|e| StoreError::backend(backend, format!("cannot start committer: {e}")))?;
        Ok(LocalStore {
            backend,
            state,
            revisions,
            commands: Some(commands),
            committer: Some(handle),
        })
    }

    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<Result<T>>) -> Command) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        let commands = self.commands.as_ref().ok_or(StoreError::Closed)?;
        commands.send(make(reply)).map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

impl Drop for LocalStore {
    fn drop(&mut self) {
        // Closing the queue ends the committer after its current batch; waiting for it
        // releases the data file, so the same directory can be opened again at once.
        self.commands.take();
        if let Some(handle) = self.committer.take() {
            let _ = handle.join();
        }
    }
}

#[async_trait::async_trait]
impl Store for LocalStore {
    fn backend(&self) -> &'static str {
        self.backend
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        validate_key(key)?;
        Ok(self.state.read().kvs.get(key).cloned())
    }

    async fn range(&self, prefix: &str, options: RangeOptions) -> Result<RangePage> {
        validate_prefix(prefix)?;
        let limit = options.page_size()?;
        let state = self.state.read();
        let start = match &options.after {
            Some(after) => std::ops::Bound::Excluded(after.as_str()),
            None => std::ops::Bound::Included(prefix),
        };
        let mut kvs: Vec<KeyValue> = state
            .kvs
            .range::<str, _>((start, std::ops::Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .take(limit + 1)
            .map(|(_, kv)| kv.clone())
            .collect();
        let next = if kvs.len() > limit {
            kvs.truncate(limit);
            kvs.last().map(|kv| kv.key.clone())
        } else {
            None
        };
        Ok(RangePage {
            kvs,
            next,
            revision: state.revision,
        })
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome> {
        txn.validate()?;
        self.call(|reply| Command::Txn(txn, reply)).await
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId> {
        validate_ttl(ttl)?;
        self.call(|reply| Command::Grant(ttl, reply)).await
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<Duration> {
        self.call(|reply| Command::KeepAlive(lease, reply)).await
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<()> {
        self.call(|reply| Command::Revoke(lease, reply)).await
    }

    async fn watch(&self, prefix: &str, after: Option<Revision>) -> Result<WatchStream> {
        validate_prefix(prefix)?;
        let mut revisions = self.revisions.clone();
        revisions.borrow_and_update();
        let next = {
            let state = self.state.read();
            match after {
                None => state.revision + 1,
                Some(after) if after > state.revision => {
                    return Err(StoreError::FutureRevision {
                        requested: after,
                        current: state.revision,
                    })
                }
                Some(after) if after + 1 < state.first_retained => {
                    return Err(StoreError::Compacted {
                        requested: after + 1,
                        oldest: state.first_retained,
                    })
                }
                Some(after) => after + 1,
            }
        };
        let cursor = WatchCursor {
            state: Arc::clone(&self.state),
            revisions,
            prefix: prefix.to_owned(),
            next,
            ready: VecDeque::new(),
            failed: false,
        };
        Ok(futures::stream::unfold(cursor, |mut cursor| async move {
            let item = cursor.next_event().await?;
            Some((item, cursor))
        })
        .boxed())
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.state.read().revision)
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.call(|reply| Command::Compact(revision, reply)).await
    }

    async fn snapshot(&self, prefix: &str) -> Result<StoreSnapshot<'_>> {
        validate_prefix(prefix)?;
        let (kvs, revision) = {
            let state = self.state.read();
            (Arc::clone(&state.kvs), state.revision)
        };
        /// Keys handed over per step.
        const CHUNK: usize = 1024;
        let prefix = prefix.to_owned();
        let chunks = futures::stream::unfold(Some(None::<String>), move |after| {
            let kvs = Arc::clone(&kvs);
            let prefix = prefix.clone();
            async move {
                let after = after?;
                let start = match &after {
                    Some(after) => std::ops::Bound::Excluded(after.as_str()),
                    None => std::ops::Bound::Included(prefix.as_str()),
                };
                let chunk: Vec<Result<KeyValue>> = kvs
                    .range::<str, _>((start, std::ops::Bound::Unbounded))
                    .take_while(|(key, _)| key.starts_with(prefix.as_str()))
                    .take(CHUNK)
                    .map(|(_, kv)| Ok(kv.clone()))
                    .collect();
                if chunk.is_empty() {
                    return None;
                }
                let next = (chunk.len() == CHUNK).then(|| {
                    chunk
                        .last()
                        .and_then(|kv| kv.as_ref().ok())
                        .map(|kv| kv.key.clone())
                });
                Some((futures::stream::iter(chunk), next))
            }
        });
        Ok(StoreSnapshot {
            revision,
            kvs: chunks.flatten().boxed(),
        })
    }
}

/// A watcher's position in the history.
struct WatchCursor {
    state: Arc<RwLock<State>>,
    revisions: watch::Receiver<Revision>,
    prefix: String,
    /// The next revision to read.
    next: Revision,
    ready: VecDeque<WatchEvent>,
    failed: bool,
}

impl WatchCursor {
    /// The next event, an error (after which the stream ends), or `None` at the end.
    async fn next_event(&mut self) -> Option<Result<WatchEvent>> {
        if self.failed {
            return None;
        }
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(Ok(event));
            }
            // Mark the revision seen before reading, so a commit between the read and
            // the wait below still wakes us.
            self.revisions.borrow_and_update();
            if let Err(error) = self.read_history() {
                self.failed = true;
                return Some(Err(error));
            }
            if self.ready.is_empty() && self.revisions.changed().await.is_err() {
                self.failed = true;
                return Some(Err(StoreError::Closed));
            }
        }
    }

    fn read_history(&mut self) -> Result<()> {
        let state = self.state.read();
        if self.next > state.revision {
            return Ok(());
        }
        if self.next < state.first_retained {
            return Err(StoreError::Compacted {
                requested: self.next,
                oldest: state.first_retained,
            });
        }
        let start = state
            .history
            .partition_point(|event| event.revision() < self.next);
        self.ready.extend(
            state
                .history
                .range(start..)
                .filter(|event| event.kv.key.starts_with(&self.prefix))
                .cloned(),
        );
        self.next = state.revision + 1;
        Ok(())
    }
}
