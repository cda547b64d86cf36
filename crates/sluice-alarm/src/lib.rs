//! Alarms that mean something: a judge evaluates every `AlarmRule` each step over
//! the metrics store, moves alarms through pending → firing → resolved (with the
//! rule's `for`), merges repeats of one rule and labels into one alarm (first seen,
//! last seen, count), and notifies through `Notifier`s — grouped per rule and
//! throttled with Alertmanager's group wait / group interval / repeat interval,
//! silenced by `Mute`s, with recovery notices.
//!
//! Alarms live in the store (`alarm/{ns}/{id}`), and so do notifications not yet
//! delivered (`notify/{ns}/{time}-{seq}`): a restart loses neither, and an alarm's
//! last notification time keeps it from being notified twice within the repeat
//! interval. Delivery (webhook formats, Alertmanager's v2 API) is retried with
//! backoff; failures show in the API.

pub mod error_reports;
pub mod judge;
pub mod notify;
pub mod rules;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use sluice_model::keys::{ALARMS_PREFIX, NOTIFY_PREFIX};

/// An alarm's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmState {
    /// The condition holds, not yet for the rule's `for`.
    Pending,
    /// Firing.
    Firing,
    /// It fired, and the condition no longer holds.
    Resolved,
}

impl AlarmState {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmState::Pending => "pending",
            AlarmState::Firing => "firing",
            AlarmState::Resolved => "resolved",
        }
    }
}

/// One alarm: a rule and a set of labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alarm {
    /// Stable ID (a hash of namespace, rule and labels).
    pub id: String,
    /// The namespace.
    pub namespace: String,
    /// The rule's name.
    pub rule: String,
    /// The group's labels, the rule's labels and `severity`.
    pub labels: BTreeMap<String, String>,
    /// Its state.
    pub state: AlarmState,
    /// The last value seen (`null` for absent data).
    pub value: Option<f64>,
    /// The threshold it was compared with, when there is one.
    pub threshold: Option<f64>,
    /// The notification text.
    pub message: String,
    /// When the condition first held (Unix seconds).
    pub first_seen: u64,
    /// When it last held.
    pub last_seen: u64,
    /// Times it went into firing.
    pub count: u64,
    /// When the current pending period started.
    pub pending_since: Option<u64>,
    /// When it last fired.
    pub fired_at: Option<u64>,
    /// When it last resolved.
    pub resolved_at: Option<u64>,
    /// Acknowledged by someone: no repeats while it keeps firing.
    #[serde(default)]
    pub acknowledged: bool,
    /// Per notifier: when it was last notified and in which state.
    #[serde(default)]
    pub notified: BTreeMap<String, (u64, AlarmState)>,
}

/// A stable ID for (namespace, rule, labels).
pub fn alarm_id(namespace: &str, rule: &str, labels: &BTreeMap<String, String>) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |text: &str| {
        for byte in text.bytes().chain([0xff]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    feed(namespace);
    feed(rule);
    for (k, v) in labels {
        feed(k);
        feed(v);
    }
    format!("{hash:016x}")
}

/// Fills a message template.
pub fn render(template: &str, alarm: &Alarm) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let name = after[..end].trim();
        let value = match name {
            "rule" => alarm.rule.clone(),
            "state" => alarm.state.as_str().to_owned(),
            "value" => alarm.value.map_or("none".to_owned(), format_value),
            "threshold" => alarm.threshold.map_or(String::new(), format_value),
            "severity" => alarm.labels.get("severity").cloned().unwrap_or_default(),
            other => other
                .strip_prefix("labels.")
                .and_then(|label| alarm.labels.get(label).cloned())
                .unwrap_or_default(),
        };
        out.push_str(&value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// A number for people: up to 4 significant decimals.
pub fn format_value(value: f64) -> String {
    let text = format!("{value:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text.is_empty() || text == "-" {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A firing alarm of rule `echo-errors` on service `echo` (value 0.8 above 0.5),
    /// for unit tests.
    pub(crate) fn firing_echo_errors() -> Alarm {
        Alarm {
            id: "a1".into(),
            namespace: "default".into(),
            rule: "echo-errors".into(),
            labels: BTreeMap::from([
                ("service".into(), "echo".into()),
                ("severity".into(), "warning".into()),
            ]),
            state: AlarmState::Firing,
            value: Some(0.8),
            threshold: Some(0.5),
            message: "echo errors at 0.8".into(),
            first_seen: 1_795_341_600,
            last_seen: 1_795_341_600,
            count: 1,
            pending_since: None,
            fired_at: Some(1_795_341_600),
            resolved_at: None,
            acknowledged: false,
            notified: BTreeMap::new(),
        }
    }

    #[test]
    fn templates_fill_in() {
        let alarm = Alarm {
            value: Some(0.8333333),
            message: String::new(),
            first_seen: 0,
            last_seen: 0,
            fired_at: None,
            ..firing_echo_errors()
        };
        assert_eq!(
            render("{{rule}}: {{labels.service}} {{state}} at {{value}} (> {{threshold}}, {{severity}}){{labels.none}}", &alarm),
            "echo-errors: echo firing at 0.8333 (> 0.5, warning)"
        );
        assert_eq!(format_value(2.0), "2");
        assert_eq!(
            alarm_id("a", "b", &alarm.labels),
            alarm_id("a", "b", &alarm.labels.clone())
        );
    }
}
