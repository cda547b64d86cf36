//! The single writer of the embedded backends: batches requests, persists each
//! batch durably, then publishes it and answers the callers (group commit).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::RwLock;
use tokio::sync::{oneshot, watch};

use super::State;
use crate::{
    EventKind, KeyValue, LeaseId, Result, Revision, StoreError, Txn, TxnOp, TxnOutcome, WatchEvent,
};

/// Most requests one batch takes from the queue.
const MAX_BATCH: usize = 512;
/// How long the committer sleeps when no lease is due.
const IDLE_WAKEUP: Duration = Duration::from_secs(3600);

/// A request to the committer, with the channel its answer goes to.
pub(super) enum Command {
    Txn(Txn, oneshot::Sender<Result<TxnOutcome>>),
    Grant(Duration, oneshot::Sender<Result<LeaseId>>),
    KeepAlive(LeaseId, oneshot::Sender<Result<Duration>>),
    Revoke(LeaseId, oneshot::Sender<Result<()>>),
    Compact(Revision, oneshot::Sender<Result<()>>),
}

/// A lease as persisted: its TTL and its deadline in wall-clock milliseconds since
/// the Unix epoch (instants do not survive a restart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct PersistedLease {
    pub ttl_ms: u64,
    pub deadline_unix_ms: u64,
}

/// Everything a persistence holds, read back at start.
#[derive(Debug, Default)]
pub(super) struct Loaded {
    pub kvs: BTreeMap<String, KeyValue>,
    pub history: VecDeque<WatchEvent>,
    pub first_retained: Revision,
    pub revision: Revision,
    pub leases: HashMap<LeaseId, PersistedLease>,
}

/// The changes of one batch, as handed to the persistence.
pub(super) struct Changes<'a> {
    /// New state of each changed key (`None`: deleted).
    pub kvs: &'a BTreeMap<String, Option<KeyValue>>,
    /// New events, in revision order.
    pub events: &'a [WatchEvent],
    /// New state of each changed lease (`None`: gone).
    pub leases: &'a BTreeMap<LeaseId, Option<PersistedLease>>,
    pub revision: Revision,
    pub first_retained: Revision,
}

/// Where the embedded engine keeps its state between runs.
pub(super) trait Persistence: Send {
    fn load(&mut self) -> Result<Loaded>;
    /// Makes the batch durable; when it returns `Ok`, a crash loses none of it.
    fn commit(&mut self, changes: &Changes<'_>) -> Result<()>;
}

/// The memory backend's persistence: keeps nothing.
pub(super) struct NoPersistence;

impl Persistence for NoPersistence {
    fn load(&mut self) -> Result<Loaded> {
        Ok(Loaded::default())
    }

    fn commit(&mut self, _changes: &Changes<'_>) -> Result<()> {
        Ok(())
    }
}

struct Lease {
    ttl: Duration,
    deadline: Instant,
    deadline_unix_ms: u64,
    keys: BTreeSet<String>,
}

/// An answer computed in a batch, sent once the batch is durable.
type DeferredReply = Box<dyn FnOnce(Option<&StoreError>) + Send>;

fn defer<T: Send + 'static>(reply: oneshot::Sender<Result<T>>, result: Result<T>) -> DeferredReply {
    Box::new(move |commit_error| {
        let _ = reply.send(match commit_error {
            Some(error) => Err(error.clone()),
            None => result,
        });
    })
}

/// The pending changes of one batch, layered over the published state.
#[derive(Default)]
struct Batch {
    kvs: BTreeMap<String, Option<KeyValue>>,
    events: Vec<WatchEvent>,
    leases: BTreeMap<LeaseId, Option<PersistedLease>>,
    revision: Revision,
    first_retained: Revision,
    replies: Vec<DeferredReply>,
}

impl Batch {
    fn current<'a>(&'a self, state: &'a State, key: &str) -> Option<&'a KeyValue> {
        match self.kvs.get(key) {
            Some(pending) => pending.as_ref(),
            None => state.kvs.get(key),
        }
    }

    fn is_empty(&self) -> bool {
        self.kvs.is_empty() && self.leases.is_empty() && self.first_retained == 0
    }
}

pub(super) struct Committer {
    backend: &'static str,
    persistence: Box<dyn Persistence>,
    leases: HashMap<LeaseId, Lease>,
    state: Arc<RwLock<State>>,
    revisions: watch::Sender<Revision>,
    history_revisions: u64,
    /// Set when a commit failed and the state could not be reloaded: every request fails.
    broken: Option<StoreError>,
}

impl Committer {
    pub(super) fn new(
        backend: &'static str,
        persistence: Box<dyn Persistence>,
        leases: HashMap<LeaseId, PersistedLease>,
        state: Arc<RwLock<State>>,
        revisions: watch::Sender<Revision>,
        history_revisions: u64,
    ) -> Self {
        let mut committer = Committer {
            backend,
            persistence,
            leases: HashMap::new(),
            state,
            revisions,
            history_revisions,
            broken: None,
        };
        committer.adopt_leases(leases);
        committer
    }

    /// Rebuilds the lease table from persisted leases and the keys that name them.
    fn adopt_leases(&mut self, persisted: HashMap<LeaseId, PersistedLease>) {
        let now = Instant::now();
        let now_unix = unix_ms(SystemTime::now());
        self.leases = persisted
            .into_iter()
            .map(|(id, lease)| {
                let remaining =
                    Duration::from_millis(lease.deadline_unix_ms.saturating_sub(now_unix));
                let lease = Lease {
                    ttl: Duration::from_millis(lease.ttl_ms),
                    deadline: now + remaining,
                    deadline_unix_ms: lease.deadline_unix_ms,
                    keys: BTreeSet::new(),
                };
                (id, lease)
            })
            .collect();
        let state = self.state.read();
        for kv in state.kvs.values() {
            if let Some(lease) = kv.lease.and_then(|id| self.leases.get_mut(&id)) {
                lease.keys.insert(kv.key.clone());
            }
        }
    }

    pub(super) fn run(mut self, queue: Receiver<Command>) {
        loop {
            let wait = self
                .leases
                .values()
                .map(|lease| lease.deadline)
                .min()
                .map_or(IDLE_WAKEUP, |deadline| {
                    deadline.saturating_duration_since(Instant::now())
                });
            let first = match queue.recv_timeout(wait) {
                Ok(command) => Some(command),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let commands = first
                .into_iter()
                .chain(std::iter::from_fn(|| queue.try_recv().ok()));
            self.run_batch(commands.take(MAX_BATCH));
        }
    }

    fn run_batch(&mut self, commands: impl Iterator<Item = Command>) {
        let state = Arc::clone(&self.state);
        let published = state.read();
        let mut batch = Batch {
            revision: published.revision,
            ..Batch::default()
        };
        if self.broken.is_none() {
            self.expire_due_leases(&published, &mut batch);
        }
        for command in commands {
            self.apply(&published, &mut batch, command);
        }
        drop(published);
        self.commit(batch);
    }

    fn apply(&mut self, state: &State, batch: &mut Batch, command: Command) {
        let broken = self.broken.clone();
        let reply = match command {
            Command::Txn(txn, reply) => {
                let result = match broken {
                    Some(error) => Err(error),
                    None => self.apply_txn(state, batch, txn),
                };
                defer(reply, result)
            }
            Command::Grant(ttl, reply) => {
                let result = match broken {
                    Some(error) => Err(error),
                    None => Ok(self.grant(batch, ttl)),
                };
                defer(reply, result)
            }
            Command::KeepAlive(id, reply) => {
                let result = match broken {
                    Some(error) => Err(error),
                    None => self.keep_alive(batch, id),
                };
                defer(reply, result)
            }
            Command::Revoke(id, reply) => {
                let result = match broken {
                    Some(error) => Err(error),
                    None => self.revoke(state, batch, id),
                };
                defer(reply, result)
            }
            Command::Compact(revision, reply) => {
                let result = match broken {
                    Some(error) => Err(error),
                    None => self.compact(state, batch, revision),
                };
                defer(reply, result)
            }
        };
        batch.replies.push(reply);
    }

    fn apply_txn(&mut self, state: &State, batch: &mut Batch, txn: Txn) -> Result<TxnOutcome> {
        for op in &txn.ops {
            if let TxnOp::Put {
                lease: Some(id), ..
            } = op
            {
                if !self.leases.contains_key(id) {
                    return Err(StoreError::LeaseNotFound(*id));
                }
            }
        }
        let holds = txn
            .compares
            .iter()
            .all(|compare| compare.holds(batch.current(state, compare.key())));
        if !holds {
            return Ok(TxnOutcome {
                succeeded: false,
                revision: batch.revision,
            });
        }
        let changes_something = txn.ops.iter().any(|op| match op {
            TxnOp::Put { .. } => true,
            TxnOp::Delete { key } => batch.current(state, key).is_some(),
        });
        if !changes_something {
            return Ok(TxnOutcome {
                succeeded: true,
                revision: batch.revision,
            });
        }
        let revision = batch.revision + 1;
        batch.revision = revision;
        for op in txn.ops {
            match op {
                TxnOp::Put { key, value, lease } => {
                    let previous = batch.current(state, &key);
                    let kv = KeyValue {
                        create_revision: previous.map_or(revision, |p| p.create_revision),
                        version: previous.map_or(1, |p| p.version + 1),
                        mod_revision: revision,
                        lease,
                        value,
                        key: key.clone(),
                    };
                    let previous_lease = previous.and_then(|p| p.lease);
                    self.move_key_between_leases(&key, previous_lease, lease);
                    batch.events.push(WatchEvent {
                        kind: EventKind::Put,
                        kv: kv.clone(),
                    });
                    batch.kvs.insert(key, Some(kv));
                }
                TxnOp::Delete { key } => self.delete_key(state, batch, key, revision),
            }
        }
        Ok(TxnOutcome {
            succeeded: true,
            revision,
        })
    }

    /// Deletes `key` at `revision` if it exists.
    fn delete_key(&mut self, state: &State, batch: &mut Batch, key: String, revision: Revision) {
        let Some(previous) = batch.current(state, &key) else {
            return;
        };
        let previous_lease = previous.lease;
        self.move_key_between_leases(&key, previous_lease, None);
        batch.events.push(WatchEvent {
            kind: EventKind::Delete,
            kv: KeyValue {
                key: key.clone(),
                value: Vec::new(),
                create_revision: 0,
                mod_revision: revision,
                version: 0,
                lease: None,
            },
        });
        batch.kvs.insert(key, None);
    }

    fn move_key_between_leases(&mut self, key: &str, from: Option<LeaseId>, to: Option<LeaseId>) {
        if from == to {
            return;
        }
        if let Some(lease) = from.and_then(|id| self.leases.get_mut(&id)) {
            lease.keys.remove(key);
        }
        if let Some(lease) = to.and_then(|id| self.leases.get_mut(&id)) {
            lease.keys.insert(key.to_owned());
        }
    }

    fn grant(&mut self, batch: &mut Batch, ttl: Duration) -> LeaseId {
        let id = loop {
            // Positive and never 0, as etcd's lease IDs.
            let id = LeaseId(fastrand::i64(1..i64::MAX));
            if !self.leases.contains_key(&id) {
                break id;
            }
        };
        let lease = Lease {
            ttl,
            deadline: Instant::now(),
            deadline_unix_ms: 0,
            keys: BTreeSet::new(),
        };
        self.leases.insert(id, lease);
        self.renew(batch, id);
        id
    }

    fn keep_alive(&mut self, batch: &mut Batch, id: LeaseId) -> Result<Duration> {
        self.renew(batch, id).ok_or(StoreError::LeaseNotFound(id))
    }

    /// Moves a lease's deadline a full TTL ahead; `None` when the lease is unknown.
    fn renew(&mut self, batch: &mut Batch, id: LeaseId) -> Option<Duration> {
        let lease = self.leases.get_mut(&id)?;
        lease.deadline = Instant::now() + lease.ttl;
        lease.deadline_unix_ms = unix_ms(SystemTime::now() + lease.ttl);
        let persisted = PersistedLease {
            ttl_ms: u64::try_from(lease.ttl.as_millis()).unwrap_or(u64::MAX),
            deadline_unix_ms: lease.deadline_unix_ms,
        };
        batch.leases.insert(id, Some(persisted));
        Some(lease.ttl)
    }

    fn revoke(&mut self, state: &State, batch: &mut Batch, id: LeaseId) -> Result<()> {
        let lease = self
            .leases
            .remove(&id)
            .ok_or(StoreError::LeaseNotFound(id))?;
        batch.leases.insert(id, None);
        if !lease.keys.is_empty() {
            // All keys of a lease go at one revision, as in etcd.
            let revision = batch.revision + 1;
            batch.revision = revision;
            for key in lease.keys {
                self.delete_key(state, batch, key, revision);
            }
        }
        Ok(())
    }

    fn expire_due_leases(&mut self, state: &State, batch: &mut Batch) {
        let now = Instant::now();
        let due: Vec<LeaseId> = self
            .leases
            .iter()
            .filter(|(_, lease)| lease.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            tracing::debug!(backend = self.backend, lease = %id, "lease expired");
            let _ = self.revoke(state, batch, id);
        }
    }

    fn compact(&mut self, state: &State, batch: &mut Batch, revision: Revision) -> Result<()> {
        if revision > batch.revision {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current: batch.revision,
            });
        }
        let first_retained = batch.first_retained.max(state.first_retained);
        if revision > first_retained {
            batch.first_retained = revision;
        }
        Ok(())
    }

    /// Persists the batch, publishes it, and answers every request in it.
    fn commit(&mut self, mut batch: Batch) {
        let replies = std::mem::take(&mut batch.replies);
        let old_first_retained = self.state.read().first_retained;
        let mut first_retained = batch.first_retained.max(old_first_retained);
        if batch.revision >= first_retained + self.history_revisions {
            first_retained = batch.revision + 1 - self.history_revisions;
        }
        let compacts = first_retained > old_first_retained;
        batch.first_retained = if compacts { first_retained } else { 0 };
        let mut commit_error = None;
        if !batch.is_empty() || !batch.events.is_empty() {
            let changes = Changes {
                kvs: &batch.kvs,
                events: &batch.events,
                leases: &batch.leases,
                revision: batch.revision,
                first_retained: batch.first_retained,
            };
            if let Err(error) = self.persistence.commit(&changes) {
                tracing::error!(backend = self.backend, %error, "commit failed; reloading the store");
                commit_error = Some(error);
            }
        }
        match commit_error {
            None => self.publish(batch, first_retained),
            Some(_) => self.reload(),
        }
        for reply in replies {
            reply(commit_error.as_ref());
        }
    }

    fn publish(&mut self, batch: Batch, first_retained: Revision) {
        let changed = batch.revision;
        // A snapshot being read (a backup) holds the map: copy it before taking the
        // write lock, so readers do not wait for the copy. The committer is the only
        // writer, so the map cannot change in between.
        let copy = {
            let state = self.state.read();
            (Arc::strong_count(&state.kvs) > 1).then(|| (*state.kvs).clone())
        };
        {
            let mut state = self.state.write();
            if let Some(copy) = copy {
                state.kvs = Arc::new(copy);
            }
            let kvs = Arc::make_mut(&mut state.kvs);
            for (key, kv) in batch.kvs {
                match kv {
                    Some(kv) => kvs.insert(key, kv),
                    None => kvs.remove(&key),
                };
            }
            state.history.extend(batch.events);
            while state
                .history
                .front()
                .is_some_and(|event| event.revision() < first_retained)
            {
                state.history.pop_front();
            }
            state.first_retained = first_retained;
            state.revision = batch.revision;
        }
        self.revisions.send_if_modified(|published| {
            let modified = *published != changed;
            *published = changed;
            modified
        });
    }

    /// After a failed commit, goes back to what the persistence holds.
    fn reload(&mut self) {
        match self.persistence.load() {
            Ok(loaded) => {
                {
                    let mut state = self.state.write();
                    state.kvs = Arc::new(loaded.kvs);
                    state.history = loaded.history;
                    state.first_retained = loaded.first_retained.max(1);
                    state.revision = loaded.revision;
                }
                self.adopt_leases(loaded.leases);
            }
            Err(error) => {
                tracing::error!(backend = self.backend, %error, "cannot reload the store; refusing further requests");
                self.broken = Some(error);
            }
        }
    }
}

pub(super) fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
