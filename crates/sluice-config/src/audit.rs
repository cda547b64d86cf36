//! The audit trail: one record per publish, gray publish, promote, abort,
//! rollback and delete — who, when, from which version to which — written in the
//! same transaction as the change itself, so the trail never misses one.

use serde::{Deserialize, Serialize};

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// A new released version.
    Publish,
    /// A new gray candidate.
    Gray,
    /// The candidate became the released version.
    Promote,
    /// The candidate was dropped.
    Abort,
    /// A new released version with a kept version's content.
    Rollback,
    /// The item was deleted.
    Delete,
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Its number, per item, increasing.
    pub seq: u64,
    /// What was done.
    pub action: Action,
    /// Who did it (the token's name, or `anonymous`).
    pub author: String,
    /// From which address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// When, in Unix milliseconds.
    pub at_ms: u64,
    /// The version served before (the released one; the candidate for gray, promote and abort).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_version: Option<u64>,
    /// The version it made current.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_version: Option<u64>,
    /// The comment given.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
}
