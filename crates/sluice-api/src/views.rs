//! The shapes of the API's answers, as types: handlers build them, serde writes
//! them, and the OpenAPI document describes each with the schema schemars
//! generates from the same type.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;
use sluice_model::Resource;

/// `{"status": "ok"}`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Alive {
    /// Always `ok`.
    pub status: &'static str,
}

/// `GET /readyz`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Ready {
    /// Always `ready` (a node that is not answers 503).
    pub status: &'static str,
    /// The store backend: `memory`, `redb` or `etcd`.
    pub store: &'static str,
    /// The store's current revision.
    pub revision: u64,
}

/// `GET /v1/kinds`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct KindNames {
    /// Every resource kind this node accepts.
    pub kinds: Vec<String>,
}

/// The answer to a heartbeat.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Heartbeated {
    /// Always true: the instance is healthy now.
    pub healthy: bool,
    /// Whether it had been unhealthy (no heartbeat in time) before this one.
    pub was_unhealthy: bool,
    /// How often to send heartbeats, such as `5s`.
    pub heartbeat_interval: String,
}

/// The answer to a deregistration.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Deregistered {
    /// The instance ID.
    pub deregistered: String,
}

/// `GET /v1/namespaces/{ns}/services`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ServiceList {
    /// The namespace.
    pub namespace: String,
    /// Its services with instances.
    pub services: Vec<sluice_registry::ServiceSummary>,
}

/// One Prometheus HTTP SD target group.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TargetGroup {
    /// The instance's address.
    pub targets: Vec<String>,
    /// `__meta_sluice_*` labels.
    pub labels: BTreeMap<String, String>,
}

/// The answer to a deletion.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Deleted {
    /// The resource's name.
    pub deleted: String,
    /// The revision of the deletion.
    pub revision: u64,
}

/// A list of resources of one kind.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ResourceList {
    /// The kind.
    pub kind: String,
    /// The namespace (absent when listing every namespace).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The resources.
    pub items: Vec<Resource>,
}

/// A resource's kept versions, newest first.
#[derive(Debug, Serialize, JsonSchema)]
pub struct History {
    /// The versions.
    pub items: Vec<crate::resources::HistoryEntry>,
}

/// One alarm.
#[derive(Debug, Serialize, JsonSchema)]
pub struct AlarmView {
    /// Its ID: a hash of namespace, rule and labels.
    pub id: String,
    /// The rule that raised it.
    pub rule: String,
    /// `pending`, `firing` or `resolved`.
    pub state: &'static str,
    /// The labels of the series group.
    pub labels: BTreeMap<String, String>,
    /// The last value seen.
    pub value: Option<f64>,
    /// The rule's threshold.
    pub threshold: Option<f64>,
    /// The rule's message, filled in.
    pub message: String,
    /// Cycles it was seen in.
    pub count: u64,
    /// RFC 3339.
    pub first_seen: String,
    /// RFC 3339.
    pub last_seen: String,
    /// RFC 3339, once it fired.
    pub fired_at: Option<String>,
    /// RFC 3339, once it resolved.
    pub resolved_at: Option<String>,
    /// Acknowledged: no repeated notifications while it keeps firing.
    pub acknowledged: bool,
    /// Per notifier: when it was last told, and of which state.
    pub notified: BTreeMap<String, Told>,
}

/// When a notifier was last told of an alarm.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Told {
    /// RFC 3339.
    pub at: String,
    /// The state it was told of.
    pub state: &'static str,
}

/// A notification not yet delivered.
#[derive(Debug, Serialize, JsonSchema)]
pub struct NotificationView {
    /// The notifier.
    pub notifier: String,
    /// The rule.
    pub rule: String,
    /// `firing` or `resolved`.
    pub state: &'static str,
    /// RFC 3339.
    pub created_at: String,
    /// Deliveries tried.
    pub attempts: u32,
    /// RFC 3339.
    pub next_attempt: String,
    /// Why the last delivery failed.
    pub last_error: Option<String>,
    /// Alarms it tells of.
    pub alarms: usize,
}

/// One error group.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ErrorGroupView {
    /// Hash of the exception type and the innermost in-app frames.
    pub fingerprint: String,
    /// The project (a DSN's ID, or `plain`).
    pub project: String,
    /// The exception type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The latest message.
    pub message: String,
    /// Where it was raised.
    pub culprit: String,
    /// Events counted.
    pub count: u64,
    /// RFC 3339.
    pub first_seen: String,
    /// RFC 3339.
    pub last_seen: String,
    /// The latest stack, innermost last.
    pub frames: Vec<sluice_alarm::error_reports::Frame>,
    /// Sample events (one group's answer only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub samples: Option<Vec<Value>>,
}

/// Items of a namespace (alarms, notifications, error groups).
#[derive(Debug, Serialize, JsonSchema)]
pub struct Items<T> {
    /// The namespace.
    pub namespace: String,
    /// The items.
    pub items: Vec<T>,
}

/// The answer to a Sentry event.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SentryAccepted {
    /// The first event's group fingerprint.
    pub id: Option<String>,
}

/// The answer to a plain error report.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ReportAccepted {
    /// The group's fingerprint.
    pub group: Option<String>,
}

/// The answer to a push of metrics.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Accepted {
    /// Values (or series) taken.
    pub accepted: usize,
}

/// One tier of the metrics store.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TierView {
    /// Seconds per slot.
    pub step_s: u64,
    /// Slots kept.
    pub slots: u64,
    /// Seconds the tier holds.
    pub retention_s: u64,
}

/// `GET /v1/metrics/usage`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Usage {
    /// The series directory.
    pub dir: String,
    /// Series held.
    pub series: usize,
    /// Bytes on disk.
    pub bytes: u64,
    /// Bytes the series would take at the series limit.
    pub bytes_at_limit: u64,
    /// Series refused at the limit.
    pub dropped_series: u64,
    /// The tiers.
    pub tiers: Vec<TierView>,
    /// Metric names stored.
    pub metrics: Vec<String>,
}
