//! Error reports: events from the official Sentry SDKs (envelope and store
//! endpoints, DSN key authentication) or a plain JSON endpoint, grouped by
//! fingerprint — the exception type and the top in-app frames — with a count,
//! first and last seen, and a few sample events, kept in the store
//! (`errors/{ns}/{fingerprint}`).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice_store::{list_all, Store};

pub use sluice_model::keys::ERRORS_PREFIX;
/// Sample events kept per group.
pub const SAMPLES: usize = 5;
/// Largest sample event kept (bigger ones are cut to their exception).
pub const MAX_SAMPLE_BYTES: usize = 64 * 1024;
/// Frames that make a fingerprint.
const FINGERPRINT_FRAMES: usize = 5;

/// One stack frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Frame {
    /// Function name.
    pub function: String,
    /// Module or file.
    pub module: String,
    /// Line.
    pub lineno: Option<u64>,
    /// Part of the application (not a library).
    pub in_app: bool,
}

/// An error event, normalized.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorEvent {
    /// The exception's type (`ZeroDivisionError`).
    pub kind: String,
    /// Its message.
    pub message: String,
    /// Frames, innermost last (Sentry's order).
    pub frames: Vec<Frame>,
    /// The event as sent (possibly cut).
    pub raw: Value,
}

/// A group of identical errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorGroup {
    /// Its fingerprint.
    pub fingerprint: String,
    /// The project (its numeric ID as text).
    pub project: String,
    /// The exception type.
    pub kind: String,
    /// The latest message.
    pub message: String,
    /// Where it happened: the innermost in-app frame.
    pub culprit: String,
    /// Events.
    pub count: u64,
    /// Unix seconds.
    pub first_seen: u64,
    /// Unix seconds.
    pub last_seen: u64,
    /// The stack of the latest event.
    pub frames: Vec<Frame>,
    /// The latest events (at most [`SAMPLES`]).
    pub samples: VecDeque<Value>,
}

fn text(value: &Value, key: &str) -> String {
    value
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned()
}

/// Reads an event (Sentry's event payload, or Sluice's plain form
/// `{"type", "message", "frames": [{"function", "module", "lineno", "in_app"}]}`).
pub fn normalize(event: Value) -> Result<ErrorEvent, InvalidReport> {
    normalize_value(event).map_err(InvalidReport)
}

/// An error report that cannot be read; the message says why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidReport(pub String);

fn normalize_value(event: Value) -> Result<ErrorEvent, String> {
    if !event.is_object() {
        return Err("an event is a JSON object".into());
    }
    // Sentry: exception.values[-1] is the exception raised last.
    let exception = event
        .get("exception")
        .and_then(|e| e.get("values").or(Some(e)))
        .and_then(Value::as_array)
        .and_then(|values| values.last())
        .cloned();
    let (kind, message, frames_value) = match &exception {
        Some(exception) => (
            text(exception, "type"),
            text(exception, "value"),
            exception
                .get("stacktrace")
                .and_then(|s| s.get("frames"))
                .cloned(),
        ),
        None => {
            let message = match event.get("message") {
                Some(Value::String(m)) => m.clone(),
                Some(m) => text(m, "formatted"),
                None => String::new(),
            };
            (text(&event, "type"), message, event.get("frames").cloned())
        }
    };
    let kind = if kind.is_empty() {
        if message.is_empty() {
            return Err("the event has neither an exception type nor a message".into());
        }
        "Message".to_owned()
    } else {
        kind
    };
    if kind.len() > 256 {
        return Err("the exception type is over 256 bytes".into());
    }
    let frames = frames_value
        .and_then(|f| f.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .take(500)
        .map(|f| Frame {
            function: text(f, "function"),
            module: {
                let module = text(f, "module");
                if module.is_empty() {
                    text(f, "filename")
                } else {
                    module
                }
            },
            lineno: f.get("lineno").and_then(Value::as_u64),
            in_app: f.get("in_app").and_then(Value::as_bool).unwrap_or(true),
        })
        .collect();
    let mut raw = event;
    if serde_json::to_vec(&raw).map_or(0, |b| b.len()) > MAX_SAMPLE_BYTES {
        raw = serde_json::json!({"cut": true, "exception": exception});
    }
    Ok(ErrorEvent {
        kind,
        message: message.chars().take(2048).collect(),
        frames,
        raw,
    })
}

/// The fingerprint: the type and the innermost in-app frames (function and module;
/// not line numbers, which move with every edit).
pub fn fingerprint(event: &ErrorEvent) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |text: &str| {
        for byte in text.bytes().chain([0xff]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    feed(&event.kind);
    let in_app: Vec<&Frame> = event.frames.iter().filter(|f| f.in_app).collect();
    let frames = if in_app.is_empty() {
        event.frames.iter().collect()
    } else {
        in_app
    };
    for frame in frames.iter().rev().take(FINGERPRINT_FRAMES) {
        feed(&frame.function);
        feed(&frame.module);
    }
    if event.frames.is_empty() {
        feed(&event.message);
    }
    format!("{hash:016x}")
}

/// Parses a Sentry envelope: the events in it (other items are skipped).
pub fn envelope_events(body: &[u8]) -> Result<Vec<Value>, InvalidReport> {
    events_of_envelope(body).map_err(InvalidReport)
}

fn events_of_envelope(body: &[u8]) -> Result<Vec<Value>, String> {
    let mut rest = body;
    let next_line = |rest: &mut &[u8]| -> Option<Vec<u8>> {
        if rest.is_empty() {
            return None;
        }
        let end = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
        let line = rest[..end].to_vec();
        *rest = &rest[(end + 1).min(rest.len())..];
        Some(line)
    };
    let header = next_line(&mut rest).ok_or("the envelope is empty")?;
    serde_json::from_slice::<Value>(&header)
        .map_err(|e| format!("the envelope header is not JSON: {e}"))?;
    let mut events = Vec::new();
    while !rest.is_empty() {
        let Some(line) = next_line(&mut rest) else {
            break;
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let item: Value = serde_json::from_slice(&line)
            .map_err(|e| format!("an envelope item header is not JSON: {e}"))?;
        let payload = match item.get("length").and_then(Value::as_u64) {
            Some(length) => {
                let length = usize::try_from(length).map_err(|_| "an item is too long")?;
                if length > rest.len() {
                    return Err(format!(
                        "an item says it is {length} bytes; {} are left",
                        rest.len()
                    ));
                }
                let payload = rest[..length].to_vec();
                rest = &rest[length..];
                if rest.first() == Some(&b'\n') {
                    rest = &rest[1..];
                }
                payload
            }
            None => next_line(&mut rest).unwrap_or_default(),
        };
        if item.get("type").and_then(Value::as_str) == Some("event") {
            events.push(
                serde_json::from_slice(&payload)
                    .map_err(|e| format!("an event item is not JSON: {e}"))?,
            );
        }
    }
    Ok(events)
}

/// How often [`ingest`] reads a group again when another writer changed it first.
const INGEST_ATTEMPTS: usize = 50;

/// Events of one group are added one at a time within a process (a burst of one
/// exception would otherwise retry its compare-and-swap over and over); groups
/// share these locks by a hash of the fingerprint.
static INGEST_LOCKS: [tokio::sync::Mutex<()>; 64] =
    [const { tokio::sync::Mutex::const_new(()) }; 64];

/// Adds an event to its group; returns the group and whether it is new.
///
/// The group is updated with a compare-and-swap on its revision, read again when
/// another control-plane node changed it first (within a process, one group's
/// events are added one at a time), so a burst of one exception is counted in full.
pub async fn ingest(
    store: &dyn Store,
    namespace: &str,
    project: &str,
    event: ErrorEvent,
    now: u64,
) -> sluice_store::Result<(ErrorGroup, bool)> {
    let fingerprint = fingerprint(&event);
    let key = format!("{ERRORS_PREFIX}{namespace}/{fingerprint}");
    let culprit = event
        .frames
        .iter()
        .rev()
        .find(|f| f.in_app)
        .or(event.frames.last())
        .map(|f| format!("{} in {}", f.function, f.module))
        .unwrap_or_default();
    let stripe = key.bytes().fold(0usize, |hash, b| {
        hash.wrapping_mul(31).wrapping_add(usize::from(b))
    });
    let _one_at_a_time = INGEST_LOCKS[stripe % INGEST_LOCKS.len()].lock().await;
    for _ in 0..INGEST_ATTEMPTS {
        let current = store.get(&key).await?;
        // 0 stands for "absent" in the comparison below.
        let revision = current.as_ref().map_or(0, |kv| kv.mod_revision);
        let held = current.and_then(|kv| serde_json::from_slice::<ErrorGroup>(&kv.value).ok());
        let new = held.is_none();
        let mut group = held.unwrap_or_else(|| ErrorGroup {
            fingerprint: fingerprint.clone(),
            project: project.to_owned(),
            kind: event.kind.clone(),
            message: String::new(),
            culprit: String::new(),
            count: 0,
            first_seen: now,
            last_seen: now,
            frames: Vec::new(),
            samples: VecDeque::new(),
        });
        group.count += 1;
        group.last_seen = group.last_seen.max(now);
        group.message.clone_from(&event.message);
        group.culprit.clone_from(&culprit);
        group.frames.clone_from(&event.frames);
        group.samples.push_back(event.raw.clone());
        while group.samples.len() > SAMPLES {
            group.samples.pop_front();
        }
        let value = serde_json::to_vec(&group).unwrap_or_default();
        if store.put_if_unchanged(&key, value, revision).await? {
            return Ok((group, new));
        }
    }
    Err(sluice_store::StoreError::Backend {
        backend: "error reports",
        message: format!(
            "error group {key} changed {INGEST_ATTEMPTS} times while an event was added to it; send it again"
        ),
    })
}

/// The groups of a namespace, most recent first.
pub async fn groups(store: &dyn Store, namespace: &str) -> sluice_store::Result<Vec<ErrorGroup>> {
    let (kvs, _) = list_all(store, &format!("{ERRORS_PREFIX}{namespace}/")).await?;
    let mut groups: Vec<ErrorGroup> = kvs
        .into_iter()
        .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
        .collect();
    groups.sort_by_key(|g| std::cmp::Reverse(g.last_seen));
    Ok(groups)
}

/// Reads the key of a Sentry auth header (`Sentry sentry_key=KEY, sentry_version=7, ...`).
pub fn sentry_key(header: &str) -> Option<&str> {
    header
        .trim()
        .strip_prefix("Sentry")
        .unwrap_or(header)
        .split(',')
        .filter_map(|part| part.trim().split_once('='))
        .find(|(k, _)| k.trim() == "sentry_key")
        .map(|(_, v)| v.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn python_event(line: u64, function: &str) -> Value {
        serde_json::json!({
            "event_id": "abc",
            "exception": {"values": [{
                "type": "ZeroDivisionError",
                "value": "division by zero",
                "stacktrace": {"frames": [
                    {"function": "<module>", "module": "__main__", "lineno": 3, "in_app": true},
                    {"function": function, "module": "app.pay", "lineno": line, "in_app": true},
                    {"function": "urlopen", "module": "urllib3", "lineno": 9, "in_app": false}
                ]}
            }]}
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_burst_of_one_exception_is_counted_in_full() {
        let store: std::sync::Arc<dyn Store> = std::sync::Arc::new(
            sluice_store::LocalStore::memory(sluice_store::LocalStoreOptions::default()).unwrap(),
        );
        let reports: Vec<_> = (0..40)
            .map(|i| {
                let store = std::sync::Arc::clone(&store);
                tokio::spawn(async move {
                    let event = normalize(python_event(10 + i, "charge")).unwrap();
                    ingest(&*store, "default", "42", event, 1_800_000_000 + i)
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut new_groups = 0;
        for report in reports {
            let (_, new) = report.await.unwrap();
            new_groups += usize::from(new);
        }
        let groups = groups(&*store, "default").await.unwrap();
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].count, 40, "every event counted");
        assert_eq!(new_groups, 1, "one report made the group");
        assert_eq!(groups[0].last_seen, 1_800_000_039);
        assert_eq!(groups[0].samples.len(), SAMPLES);
    }

    #[test]
    fn fingerprints_ignore_line_numbers_and_library_frames() {
        let a = normalize(python_event(10, "charge")).unwrap();
        let b = normalize(python_event(99, "charge")).unwrap();
        let c = normalize(python_event(10, "refund")).unwrap();
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&c));
        assert_eq!(a.kind, "ZeroDivisionError");
        assert_eq!(a.frames.len(), 3);
        let plain = normalize(serde_json::json!({"type": "Timeout", "message": "db", "frames": [{"function": "f", "module": "m"}]})).unwrap();
        assert_eq!(plain.kind, "Timeout");
        assert!(normalize(serde_json::json!({})).is_err());
        assert!(normalize(serde_json::json!([1])).is_err());
    }

    #[test]
    fn envelopes_parse_with_and_without_lengths() {
        let event = serde_json::to_string(&python_event(1, "f")).unwrap();
        let body = format!(
            "{{\"event_id\":\"abc\"}}\n{{\"type\":\"event\",\"length\":{}}}\n{event}\n{{\"type\":\"session\"}}\n{{\"x\":1}}\n{{\"type\":\"event\"}}\n{event}\n",
            event.len()
        );
        let events = envelope_events(body.as_bytes()).unwrap();
        assert_eq!(events.len(), 2);
        for bad in [
            "",
            "not json\n",
            "{}\n{\"type\":\"event\",\"length\":999}\n{}",
            "{}\nnope\n",
        ] {
            assert!(envelope_events(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert_eq!(
            sentry_key("Sentry sentry_key=abc123, sentry_version=7, sentry_client=x"),
            Some("abc123")
        );
    }
}
