//! The rule kinds and the alarm state machine, free of I/O: whether a value (and
//! the value a while ago) meets a rule's condition, and how an alarm moves
//! (inactive → pending → firing → resolved, with the rule's `for`).

use std::collections::BTreeMap;

use sluice_model::{AlarmRuleSpec, Direction};

use crate::{alarm_id, render, Alarm, AlarmState};

/// Whether `value` (and `earlier`, the value at `change.compared_to` ago) meets
/// the rule; absent data is handled by the judge.
pub fn condition_holds(spec: &AlarmRuleSpec, value: Option<f64>, earlier: Option<f64>) -> bool {
    let Some(value) = value else {
        return false;
    };
    if spec.above.is_some_and(|above| value > above) {
        return true;
    }
    if spec.below.is_some_and(|below| value < below) {
        return true;
    }
    if let (Some(change), Some(earlier)) = (&spec.change, earlier) {
        let delta = value - earlier;
        let direction_ok = match change.direction {
            Direction::Any => true,
            Direction::Up => delta > 0.0,
            Direction::Down => delta < 0.0,
        };
        if direction_ok {
            if change.absolute.is_some_and(|limit| delta.abs() > limit) {
                return true;
            }
            if let Some(percent) = change.percent {
                let moved = if earlier == 0.0 {
                    if delta == 0.0 {
                        0.0
                    } else {
                        f64::INFINITY
                    }
                } else {
                    delta.abs() / earlier.abs() * 100.0
                };
                if moved > percent {
                    return true;
                }
            }
        }
    }
    false
}

/// The threshold shown with an alarm.
fn threshold(spec: &AlarmRuleSpec) -> Option<f64> {
    spec.above.or(spec.below)
}

/// What one evaluation did to an alarm.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The alarm as it is now (`None`: nothing to keep).
    pub alarm: Option<Alarm>,
    /// Whether it changed (and must be written).
    pub changed: bool,
    /// A state to notify: it just fired or resolved.
    pub event: Option<AlarmState>,
}

/// The labels of an alarm: the group's, the rule's, and `severity`.
pub fn alarm_labels(
    spec: &AlarmRuleSpec,
    group: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut labels = group.clone();
    for (k, v) in &spec.labels {
        labels.insert(k.clone(), v.clone());
    }
    labels.insert("severity".into(), spec.severity.as_str().to_owned());
    labels
}

/// Moves an alarm one evaluation on. `active`: the condition held at `now`.
#[allow(clippy::too_many_arguments)]
pub fn advance(
    existing: Option<Alarm>,
    namespace: &str,
    rule: &str,
    spec: &AlarmRuleSpec,
    labels: BTreeMap<String, String>,
    active: bool,
    value: Option<f64>,
    now: u64,
) -> Transition {
    let for_s = spec.for_duration.as_secs();
    let mut alarm = match existing {
        Some(alarm) => alarm,
        None if !active => {
            return Transition {
                alarm: None,
                changed: false,
                event: None,
            }
        }
        None => Alarm {
            id: alarm_id(namespace, rule, &labels),
            namespace: namespace.to_owned(),
            rule: rule.to_owned(),
            labels,
            state: AlarmState::Resolved,
            value,
            threshold: threshold(spec),
            message: String::new(),
            first_seen: now,
            last_seen: now,
            count: 0,
            pending_since: None,
            fired_at: None,
            resolved_at: None,
            acknowledged: false,
            notified: BTreeMap::new(),
        },
    };
    let before = alarm.clone();
    let mut event = None;
    if active {
        alarm.last_seen = now;
        alarm.value = value;
        alarm.threshold = threshold(spec);
        match alarm.state {
            AlarmState::Firing => {}
            AlarmState::Pending | AlarmState::Resolved => {
                let since = match alarm.state {
                    AlarmState::Pending => alarm.pending_since.unwrap_or(now),
                    _ => now,
                };
                if now.saturating_sub(since) >= for_s {
                    alarm.state = AlarmState::Firing;
                    alarm.pending_since = None;
                    alarm.fired_at = Some(now);
                    alarm.count += 1;
                    alarm.acknowledged = false;
                    event = Some(AlarmState::Firing);
                } else {
                    alarm.state = AlarmState::Pending;
                    alarm.pending_since = Some(since);
                }
            }
        }
    } else {
        match alarm.state {
            AlarmState::Firing => {
                alarm.state = AlarmState::Resolved;
                alarm.resolved_at = Some(now);
                event = Some(AlarmState::Resolved);
            }
            AlarmState::Pending => {
                // It never fired: back to resolved (or gone, if it never fired at all).
                if alarm.count == 0 {
                    return Transition {
                        alarm: None,
                        changed: true,
                        event: None,
                    };
                }
                alarm.state = AlarmState::Resolved;
                alarm.pending_since = None;
            }
            AlarmState::Resolved => {}
        }
    }
    alarm.message = match &spec.message {
        Some(template) => render(template, &alarm),
        None => default_message(&alarm, spec),
    };
    let changed = alarm != before;
    Transition {
        alarm: Some(alarm),
        changed,
        event,
    }
}

fn default_message(alarm: &Alarm, spec: &AlarmRuleSpec) -> String {
    let labels: Vec<String> = alarm
        .labels
        .iter()
        .filter(|(k, _)| k.as_str() != "severity")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let condition = if let Some(above) = spec.above {
        format!("above {}", crate::format_value(above))
    } else if let Some(below) = spec.below {
        format!("below {}", crate::format_value(below))
    } else if spec.change.is_some() {
        "changed against earlier".to_owned()
    } else {
        "without data".to_owned()
    };
    format!(
        "{} {}: {} {} ({}) is {}",
        alarm.rule,
        alarm.state.as_str(),
        spec.metric,
        alarm.value.map_or("none".to_owned(), crate::format_value),
        labels.join(", "),
        condition
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> AlarmRuleSpec {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn above_below_and_change_against_yesterday() {
        let above = spec(r#"{"metric": "error_rate", "above": 0.5}"#);
        assert!(condition_holds(&above, Some(0.6), None));
        assert!(!condition_holds(&above, Some(0.5), None), "strictly above");
        assert!(!condition_holds(&above, None, None));
        let below = spec(r#"{"metric": "qps", "below": 10}"#);
        assert!(condition_holds(&below, Some(9.0), None));
        assert!(!condition_holds(&below, Some(10.0), None));
        // msec's DIFF_PERCENT: more than 50 % down against the same time yesterday.
        let drop = spec(r#"{"metric": "logins", "change": {"percent": 50, "direction": "down"}}"#);
        assert!(condition_holds(&drop, Some(40.0), Some(100.0)));
        assert!(!condition_holds(&drop, Some(60.0), Some(100.0)));
        assert!(
            !condition_holds(&drop, Some(300.0), Some(100.0)),
            "up does not count"
        );
        assert!(
            !condition_holds(&drop, Some(40.0), None),
            "no earlier value"
        );
        // msec's DIFF: an absolute change either way.
        let diff = spec(r#"{"metric": "logins", "change": {"absolute": 20}}"#);
        assert!(condition_holds(&diff, Some(121.0), Some(100.0)));
        assert!(condition_holds(&diff, Some(79.0), Some(100.0)));
        assert!(!condition_holds(&diff, Some(110.0), Some(100.0)));
        let from_zero = spec(r#"{"metric": "logins", "change": {"percent": 10}}"#);
        assert!(condition_holds(&from_zero, Some(1.0), Some(0.0)));
        assert!(!condition_holds(&from_zero, Some(0.0), Some(0.0)));
    }

    fn run(spec: &AlarmRuleSpec, pattern: &[bool]) -> (Option<Alarm>, Vec<(u64, AlarmState)>) {
        let mut alarm = None;
        let mut events = Vec::new();
        for (i, active) in pattern.iter().enumerate() {
            let now = 1000 + i as u64 * 10;
            let labels = BTreeMap::from([("service".to_owned(), "echo".to_owned())]);
            let step = advance(alarm, "default", "r", spec, labels, *active, Some(1.0), now);
            if let Some(event) = step.event {
                events.push((now, event));
            }
            alarm = step.alarm;
        }
        (alarm, events)
    }

    #[test]
    fn for_holds_back_firing_and_resolving_notifies() {
        let spec = spec(r#"{"metric": "error_rate", "above": 0.5, "for": "20s"}"#);
        // Active at 1000, 1010, 1020 (20 s held): fires at 1020; inactive at 1030: resolves.
        let (alarm, events) = run(&spec, &[true, true, true, false]);
        assert_eq!(
            events,
            vec![(1020, AlarmState::Firing), (1030, AlarmState::Resolved)]
        );
        let alarm = alarm.unwrap();
        assert_eq!(
            (alarm.first_seen, alarm.last_seen, alarm.count),
            (1000, 1020, 1)
        );
        // A blip shorter than `for` never fires and leaves nothing behind.
        let (alarm, events) = run(&spec, &[true, true, false, false]);
        assert!(events.is_empty() && alarm.is_none());
    }

    #[test]
    fn a_flapping_condition_is_one_alarm_with_a_count() {
        let spec = spec(r#"{"metric": "error_rate", "above": 0.5}"#);
        let pattern: Vec<bool> = (0..100).map(|i| i % 2 == 0).collect();
        let (alarm, events) = run(&spec, &pattern);
        let alarm = alarm.unwrap();
        assert_eq!(alarm.count, 50);
        assert_eq!(alarm.state, AlarmState::Resolved);
        assert_eq!(events.len(), 100);
        assert_eq!(alarm.first_seen, 1000);
        assert_eq!(alarm.last_seen, 1000 + 98 * 10);
    }
}
