//! The one error type of the storage layer.

use crate::{LeaseId, Revision};

/// What can go wrong in a [`Store`](crate::Store) call. Every variant's message
/// names the thing at fault, so it can be shown to a user as it is.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The store URL could not be understood.
    #[error("invalid store URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The store could not be opened or reached.
    #[error("cannot open store {url:?}: {reason}")]
    Unavailable {
        /// The URL as given.
        url: String,
        /// What failed.
        reason: String,
    },
    /// A key breaks the key rules.
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The key (shortened when long).
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A value is over [`MAX_VALUE_BYTES`](crate::MAX_VALUE_BYTES).
    #[error("value of key {key:?} is {size} bytes, over the limit of {limit} bytes")]
    ValueTooLarge {
        /// The key (shortened when long).
        key: String,
        /// The value's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A request is malformed (transaction too large, limit out of range, bad TTL, ...).
    #[error("invalid store request: {0}")]
    InvalidRequest(String),
    /// The lease does not exist: it expired, was revoked, or never was.
    #[error("lease {0} not found (expired, revoked or never granted)")]
    LeaseNotFound(LeaseId),
    /// A watch asked for history that compaction removed. Re-list the prefix and
    /// watch again from the revision of that list.
    #[error(
        "revision {requested} is compacted (the oldest revision kept is {oldest}): \
         re-list and watch from the revision of the new list"
    )]
    Compacted {
        /// The first revision the watch asked for.
        requested: Revision,
        /// The oldest revision still available.
        oldest: Revision,
    },
    /// A revision in the future was given where a past one is needed.
    #[error("revision {requested} is in the future (the current revision is {current})")]
    FutureRevision {
        /// The revision asked for.
        requested: Revision,
        /// The store's current revision.
        current: Revision,
    },
    /// The backend failed (disk error, etcd unreachable, ...).
    #[error("{backend} store failed: {message}")]
    Backend {
        /// Which backend.
        backend: &'static str,
        /// What failed.
        message: String,
    },
    /// The store was closed.
    #[error("the store is closed")]
    Closed,
}

impl StoreError {
    /// Whether retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Backend { .. } | StoreError::Unavailable { .. }
        )
    }

    pub(crate) fn backend(backend: &'static str, message: impl std::fmt::Display) -> Self {
        StoreError::Backend {
            backend,
            message: message.to_string(),
        }
    }
}

/// Shorthand for results of store calls.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
