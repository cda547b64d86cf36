//! Sluice's storage layer: one [`Store`] trait that everything above it keeps its
//! state in, and three backends behind it.
//!
//! A store is a versioned key-value map in the style of etcd v3: every change gets
//! a [`Revision`], keys can be attached to leases that expire, several keys change
//! atomically in compare-and-swap [`Txn`]s, and a [`watch`](Store::watch) replays
//! every change under a prefix after a revision, in order, exactly once.
//!
//! Backends, chosen by URL (see [`open`]):
//! - `memory://` — in process, for tests of the layers above;
//! - `redb:///path/to/dir` — the embedded default: a crash-safe file in the data
//!   directory; a write that returned is on disk;
//! - `etcd://h1:2379,h2:2379/prefix` — an etcd v3 cluster, for high availability.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use sluice_store::{open, RangeOptions};
//! let store = open("memory://").await.unwrap();
//! let revision = store.put("services/echo", b"v1".to_vec(), None).await.unwrap();
//! let page = store.range("services/", RangeOptions::default()).await.unwrap();
//! assert_eq!(page.kvs[0].mod_revision, revision);
//! # });
//! ```

pub mod backup;
#[cfg(feature = "conformance")]
pub mod conformance;
mod engine;
mod error;
mod etcd;
mod follow;
mod follow_kind;
mod types;
mod url;

use std::pin::Pin;
use std::time::Duration;

use futures::Stream;

pub use engine::{LocalStore, LocalStoreOptions};
pub use error::{Result, StoreError};
pub use etcd::{EtcdOptions, EtcdStore};
pub use follow::{follow, list_all, FollowUpdate};
pub use follow_kind::{apply_kind_update, follow_kind, KindMap};
pub use types::*;
pub use url::{open, StoreUrl};

/// An ordered stream of changes; it ends after yielding an error.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent>> + Send>>;

/// Every key under a prefix as of one revision: see [`Store::snapshot`].
pub struct StoreSnapshot<'a> {
    /// The revision the keys are read at.
    pub revision: Revision,
    /// The keys, in byte order; the stream ends after yielding an error.
    pub kvs: Pin<Box<dyn Stream<Item = Result<KeyValue>> + Send + 'a>>,
}

impl std::fmt::Debug for StoreSnapshot<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSnapshot")
            .field("revision", &self.revision)
            .finish_non_exhaustive()
    }
}

/// The storage interface every Sluice component uses. See the crate docs.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// The backend's name: `memory`, `redb` or `etcd`.
    fn backend(&self) -> &'static str;

    /// Reads one key.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Reads the keys starting with `prefix`, in byte order, one page at a time.
    async fn range(&self, prefix: &str, options: RangeOptions) -> Result<RangePage>;

    /// Sets a key, optionally attached to a lease, and returns the new revision.
    /// When it returns, the write is durable (on disk, or agreed by the etcd quorum).
    async fn put(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> Result<Revision> {
        let txn = Txn::new().then(TxnOp::Put {
            key: key.to_owned(),
            value,
            lease,
        });
        Ok(self.txn(txn).await?.revision)
    }

    /// Sets a key only if its `mod_revision` is still `revision` (0: only if it is
    /// absent) — the write half of a read-modify-write. False when another writer
    /// changed the key since it was read; read it again and retry.
    async fn put_if_unchanged(
        &self,
        key: &str,
        value: Vec<u8>,
        revision: Revision,
    ) -> Result<bool> {
        let txn = Txn::new()
            .when(Compare::ModRevision(key.to_owned(), revision))
            .then(TxnOp::Put {
                key: key.to_owned(),
                value,
                lease: None,
            });
        Ok(self.txn(txn).await?.succeeded)
    }

    /// Deletes a key. Returns the revision of the delete, or `None` when the key was absent.
    async fn delete(&self, key: &str) -> Result<Option<Revision>> {
        let txn = Txn::new()
            .when(Compare::Exists(key.to_owned()))
            .then(TxnOp::delete(key));
        let outcome = self.txn(txn).await?;
        Ok(outcome.succeeded.then_some(outcome.revision))
    }

    /// Applies a compare-and-swap transaction atomically.
    async fn txn(&self, txn: Txn) -> Result<TxnOutcome>;

    /// Grants a lease that expires `ttl` after the last keep-alive.
    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId>;

    /// Renews a lease for its full TTL and returns that TTL.
    async fn keep_alive(&self, lease: LeaseId) -> Result<Duration>;

    /// Ends a lease now, deleting its keys.
    async fn revoke_lease(&self, lease: LeaseId) -> Result<()>;

    /// Streams every change under `prefix` with a revision greater than `after`
    /// (`None`: changes from now on). Fails with [`StoreError::Compacted`] when that
    /// history is gone.
    async fn watch(&self, prefix: &str, after: Option<Revision>) -> Result<WatchStream>;

    /// The store's current revision.
    async fn current_revision(&self) -> Result<Revision>;

    /// Every key under `prefix` exactly as it was at one revision (the current one
    /// when called), streamed in byte order while writes go on: what a backup
    /// reads. The embedded engine keeps the map of that revision while the stream
    /// lives; etcd reads every page at that revision (a compaction past it in the
    /// meantime fails the stream with [`StoreError::Compacted`]).
    async fn snapshot(&self, prefix: &str) -> Result<StoreSnapshot<'_>>;

    /// Discards the history before `revision`: watches after an earlier revision
    /// fail with [`StoreError::Compacted`]. Current keys are untouched.
    async fn compact(&self, revision: Revision) -> Result<()>;
}
