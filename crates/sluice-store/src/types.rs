//! The values the [`Store`](crate::Store) trait speaks in, and the limits on them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::StoreError;

/// A store revision. Every write that changes something gets the next revision;
/// all changes of one transaction share it. Revisions start at 1; 0 means "nothing yet".
pub type Revision = u64;

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest value, in bytes: 1 MiB and 4 KiB, room for a 1 MiB config version
/// and its seal (etcd's default request limit is 1.5 MiB).
pub const MAX_VALUE_BYTES: usize = 1024 * 1024 + 4096;
/// Most operations (and, separately, most comparisons) in one transaction (etcd's default).
pub const MAX_TXN_OPS: usize = 128;
/// Most keys one range page returns.
pub const MAX_RANGE_LIMIT: usize = 10_000;
/// Shortest lease TTL.
pub const MIN_LEASE_TTL: Duration = Duration::from_secs(1);
/// Longest lease TTL (30 days).
pub const MAX_LEASE_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// How many revisions of history the embedded backends keep for watches by default.
/// A watch from an older revision fails with [`StoreError::Compacted`].
pub const DEFAULT_HISTORY_REVISIONS: u64 = 10_000;

/// A lease: keys attached to it are deleted when it expires or is revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LeaseId(pub i64);

impl std::fmt::Display for LeaseId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

/// A key with its value and versioning, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value (empty in delete events).
    pub value: Vec<u8>,
    /// Revision at which the key was created (since its last deletion).
    pub create_revision: Revision,
    /// Revision of the last change to the key (the delete, in a delete event).
    pub mod_revision: Revision,
    /// Number of puts since the key was created (0 in delete events).
    pub version: u64,
    /// The lease the key is attached to, if any.
    pub lease: Option<LeaseId>,
}

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// The key was created or updated.
    Put,
    /// The key was deleted (by a delete, a transaction, or its lease ending).
    Delete,
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEvent {
    /// Put or delete.
    pub kind: EventKind,
    /// The key after the change; for a delete, the key with `mod_revision` set to
    /// the revision of the delete and an empty value.
    pub kv: KeyValue,
}

impl WatchEvent {
    /// The revision at which the change happened.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// Options of a [`Store::range`](crate::Store::range) call.
#[derive(Debug, Clone, Default)]
pub struct RangeOptions {
    /// Most keys to return (0 means [`MAX_RANGE_LIMIT`]).
    pub limit: usize,
    /// Continue after this key: pass the previous page's [`RangePage::next`].
    pub after: Option<String>,
}

impl RangeOptions {
    /// Options returning at most `limit` keys.
    pub fn limit(limit: usize) -> Self {
        RangeOptions { limit, after: None }
    }

    /// The effective page size.
    pub(crate) fn page_size(&self) -> Result<usize, StoreError> {
        match self.limit {
            0 => Ok(MAX_RANGE_LIMIT),
            n if n > MAX_RANGE_LIMIT => Err(StoreError::InvalidRequest(format!(
                "range limit {n} is over the maximum of {MAX_RANGE_LIMIT}"
            ))),
            n => Ok(n),
        }
    }
}

/// One page of a prefix range.
///
/// Each page is consistent at its own `revision`. To follow a prefix, list it and
/// then watch from the *first* page's revision: events replay everything after it,
/// and applying an event whose `mod_revision` is not newer than what you hold is a no-op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangePage {
    /// The keys, in byte order.
    pub kvs: Vec<KeyValue>,
    /// Where the next page starts, or `None` when this was the last page.
    pub next: Option<String>,
    /// The store's revision when this page was read.
    pub revision: Revision,
}

/// A condition of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key does not exist.
    Absent(String),
    /// The key exists.
    Exists(String),
    /// The key's `mod_revision` equals this (0 also matches an absent key).
    ModRevision(String, Revision),
    /// The key's value equals this.
    Value(String, Vec<u8>),
}

impl Compare {
    pub(crate) fn key(&self) -> &str {
        match self {
            Compare::Absent(k)
            | Compare::Exists(k)
            | Compare::ModRevision(k, _)
            | Compare::Value(k, _) => k,
        }
    }

    /// Whether the comparison holds against the key's current state.
    pub(crate) fn holds(&self, current: Option<&KeyValue>) -> bool {
        match self {
            Compare::Absent(_) => current.is_none(),
            Compare::Exists(_) => current.is_some(),
            Compare::ModRevision(_, rev) => current.map_or(0, |kv| kv.mod_revision) == *rev,
            Compare::Value(_, value) => current.is_some_and(|kv| &kv.value == value),
        }
    }
}

/// A write inside a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOp {
    /// Set a key, optionally attached to a lease.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: Vec<u8>,
        /// The lease to attach it to.
        lease: Option<LeaseId>,
    },
    /// Delete a key (a no-op when absent).
    Delete {
        /// The key.
        key: String,
    },
}

impl TxnOp {
    /// A put without a lease.
    pub fn put(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        TxnOp::Put {
            key: key.into(),
            value: value.into(),
            lease: None,
        }
    }

    /// A delete.
    pub fn delete(key: impl Into<String>) -> Self {
        TxnOp::Delete { key: key.into() }
    }

    pub(crate) fn key(&self) -> &str {
        match self {
            TxnOp::Put { key, .. } | TxnOp::Delete { key } => key,
        }
    }
}

/// A compare-and-swap transaction: when every comparison holds, all operations
/// are applied atomically at one revision; otherwise nothing is applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    /// Conditions that must all hold.
    pub compares: Vec<Compare>,
    /// Writes applied when they do. A key may appear at most once.
    pub ops: Vec<TxnOp>,
}

impl Txn {
    /// An empty transaction.
    pub fn new() -> Self {
        Txn::default()
    }

    /// Adds a condition.
    pub fn when(mut self, compare: Compare) -> Self {
        self.compares.push(compare);
        self
    }

    /// Adds a write.
    pub fn then(mut self, op: TxnOp) -> Self {
        self.ops.push(op);
        self
    }

    /// Checks keys, values, sizes and duplicate keys.
    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        if self.compares.len() > MAX_TXN_OPS {
            return Err(StoreError::InvalidRequest(format!(
                "transaction has {} comparisons, over the limit of {MAX_TXN_OPS}",
                self.compares.len()
            )));
        }
        if self.ops.len() > MAX_TXN_OPS {
            return Err(StoreError::InvalidRequest(format!(
                "transaction has {} operations, over the limit of {MAX_TXN_OPS}",
                self.ops.len()
            )));
        }
        for compare in &self.compares {
            validate_key(compare.key())?;
            if let Compare::Value(key, value) = compare {
                validate_value(key, value)?;
            }
        }
        let mut seen = std::collections::HashSet::with_capacity(self.ops.len());
        for op in &self.ops {
            validate_key(op.key())?;
            if let TxnOp::Put { key, value, .. } = op {
                validate_value(key, value)?;
            }
            if !seen.insert(op.key()) {
                return Err(StoreError::InvalidRequest(format!(
                    "transaction writes key {:?} more than once",
                    op.key()
                )));
            }
        }
        Ok(())
    }
}

/// The result of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnOutcome {
    /// Whether the comparisons held and the operations were applied.
    pub succeeded: bool,
    /// The revision of the applied change, or the store's revision when nothing changed.
    pub revision: Revision,
}

/// Checks a key against the limits: 1 to [`MAX_KEY_BYTES`] bytes, no NUL or control characters.
pub fn validate_key(key: &str) -> Result<(), StoreError> {
    let reason = if key.is_empty() {
        "a key must not be empty".to_owned()
    } else if key.len() > MAX_KEY_BYTES {
        format!(
            "key is {} bytes, over the limit of {MAX_KEY_BYTES}",
            key.len()
        )
    } else if let Some(c) = key.chars().find(|c| c.is_control()) {
        format!("key holds the control character {c:?}")
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidKey {
        key: shorten(key),
        reason,
    })
}

/// Checks a value against [`MAX_VALUE_BYTES`].
pub fn validate_value(key: &str, value: &[u8]) -> Result<(), StoreError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(StoreError::ValueTooLarge {
            key: shorten(key),
            size: value.len(),
            limit: MAX_VALUE_BYTES,
        });
    }
    Ok(())
}

/// Checks a prefix: empty (everything) or a valid key.
pub(crate) fn validate_prefix(prefix: &str) -> Result<(), StoreError> {
    if prefix.is_empty() {
        Ok(())
    } else {
        validate_key(prefix)
    }
}

/// Checks a lease TTL against [`MIN_LEASE_TTL`] and [`MAX_LEASE_TTL`].
pub fn validate_ttl(ttl: Duration) -> Result<(), StoreError> {
    if ttl < MIN_LEASE_TTL || ttl > MAX_LEASE_TTL {
        return Err(StoreError::InvalidRequest(format!(
            "lease TTL {ttl:?} is outside {MIN_LEASE_TTL:?}..={MAX_LEASE_TTL:?}"
        )));
    }
    Ok(())
}

/// Keeps error messages readable when a key is huge.
fn shorten(key: &str) -> String {
    const SHOWN: usize = 64;
    if key.len() <= SHOWN {
        return key.to_owned();
    }
    let mut end = SHOWN;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &key[..end])
}
