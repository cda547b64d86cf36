//! Sluice's config center: configuration items (`namespace / group / key`) whose
//! every publish is a version, checked against its format, kept in a bounded
//! history that can be diffed and rolled back; gray (beta) candidates served to
//! the clients a rule matches and promoted or aborted in one store transaction;
//! long-poll watches that answer as soon as the version a client holds is not
//! the one it would be served; secret items sealed with a key outside the store;
//! and an audit record of every change.
//!
//! [`ConfigCenter`] is the one entry point. It writes through any
//! [`Store`](sluice_store::Store) and follows the items' records to wake watchers,
//! so a publish through one control-plane node wakes watchers on every node.

mod audit;
pub mod cache;
mod center;
mod diff;
pub mod format;
pub mod item;
pub mod secrets;
mod watch;

pub use audit::{Action, AuditEntry};
pub use center::{md5_hex, Actor, Change, ConfigCenter, Content, Publish, Served};
pub use diff::unified_diff;
pub use format::{Format, FormatError};
pub use item::{ClientInfo, GrayRule, GrayState, ItemPath, ItemRecord, VersionMeta};
pub use secrets::Sealer;
pub use watch::{Held, SeenClient, WatchAnswer, WatchedChange};

use sluice_model::NameError;
use sluice_store::StoreError;

/// Why a config operation failed; the API maps each to its status.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A field of the request is wrong (400).
    #[error("{field}: {message}")]
    Invalid {
        /// The field, as a JSON path.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A name is not valid (400).
    #[error(transparent)]
    Name(#[from] NameError),
    /// Content that does not parse in its format (400).
    #[error(transparent)]
    Format(#[from] FormatError),
    /// Content over the size limit (413).
    #[error("content is {size} bytes, over the limit of {limit} bytes (1 MiB)")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// No such item (404).
    #[error("config item {0} does not exist")]
    NotFound(String),
    /// A version that is not (or no longer) kept (404).
    #[error("{item} has no version {version} kept; kept versions: {kept}")]
    VersionNotKept {
        /// The item.
        item: String,
        /// The version asked for.
        version: u64,
        /// The versions that are kept.
        kept: String,
    },
    /// The operation needs a gray candidate and there is none (409).
    #[error("{0} has no gray candidate; publish one with PUT .../gray first")]
    NoCandidate(String),
    /// The item changed since the version the caller expected (409).
    #[error("{item} is at version {actual}, not the expected {expected}")]
    Conflict {
        /// The item.
        item: String,
        /// The version the caller expected.
        expected: u64,
        /// The version it is at.
        actual: u64,
    },
    /// A secret item with no key to seal it, or a stored value that does not open (500).
    #[error("secrets: {0}")]
    Secrets(String),
    /// A stored record or content that does not read back (500).
    #[error("{0}")]
    Corrupt(String),
    /// The item kept changing under concurrent writers; the caller may retry (409).
    #[error("{0} kept changing under concurrent changes; try again")]
    Contended(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ConfigError {
    /// A field error.
    pub fn invalid(field: impl Into<String>, message: impl std::fmt::Display) -> Self {
        ConfigError::Invalid {
            field: field.into(),
            message: message.to_string(),
        }
    }
}

impl From<secrets::SecretsError> for ConfigError {
    fn from(error: secrets::SecretsError) -> Self {
        ConfigError::Secrets(error.to_string())
    }
}

/// Wall-clock milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
