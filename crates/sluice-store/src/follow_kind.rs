//! Following one resource kind: the store's `res/{Kind}/` prefix held as a typed
//! map of the specs that are valid, by (namespace, name). The gateway's routes and
//! policies, the alarm judge's rules, notifiers and mutes, and every later system
//! that reads resources hold them this way.
//!
//! A value that is not a resource, whose spec does not parse as `T`, or that
//! `accept` turns down is left out (and logged): a bad resource never replaces
//! what a consumer holds with garbage, and deleting or fixing it works as usual.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use sluice_model::keys::{kind_prefix, parse_resource_key};
use sluice_model::{Resource, ResourceId};

use crate::{follow, EventKind, FollowUpdate, Store};

/// The specs of one kind that are in force, by (namespace, name).
pub type KindMap<U> = BTreeMap<ResourceId, U>;

/// Follows the resources of `kind` until the store closes. `accept` turns a parsed
/// spec into what is held (or refuses it); `with_map` gives the follower the map to
/// change — under the consumer's own lock or `watch::Sender::send_modify`, so the
/// consumer publishes each change whole. Runs as a task of its own.
///
/// ```no_run
/// # use std::sync::Arc;
/// # async fn demo(store: Arc<dyn sluice_store::Store>) {
/// let (routes, _changes) = tokio::sync::watch::channel(sluice_store::KindMap::new());
/// sluice_store::follow_kind(store, "Route", |spec: serde_json::Value| Some(spec), move |apply| {
///     routes.send_modify(|map| apply(map))
/// })
/// .await;
/// # }
/// ```
pub async fn follow_kind<T, U>(
    store: Arc<dyn Store>,
    kind: &str,
    accept: impl Fn(T) -> Option<U> + Send,
    mut with_map: impl FnMut(&mut dyn FnMut(&mut KindMap<U>)) + Send,
) where
    T: DeserializeOwned,
    U: Send,
{
    let owned_kind = kind.to_owned();
    follow(store, kind_prefix(kind), move |update| {
        let mut update = Some(update);
        with_map(&mut |map| {
            if let Some(update) = update.take() {
                apply_kind_update(map, &owned_kind, update, &accept);
            }
        });
    })
    .await;
}

/// Applies one update of a follower of `kind` to `map` (a snapshot replaces it).
pub fn apply_kind_update<T: DeserializeOwned, U>(
    map: &mut KindMap<U>,
    kind: &str,
    update: FollowUpdate,
    accept: &impl Fn(T) -> Option<U>,
) {
    if matches!(update, FollowUpdate::Snapshot { .. }) {
        map.clear();
    }
    let mut one = |event: EventKind, key: &str, value: &[u8]| {
        let Some((key_kind, namespace, name)) = parse_resource_key(key) else {
            return;
        };
        if key_kind != kind {
            return;
        }
        let id = ResourceId::new(namespace, name);
        if event == EventKind::Delete {
            map.remove(&id);
            return;
        }
        let held = serde_json::from_slice::<Resource>(value)
            .ok()
            .and_then(|resource| serde_json::from_value::<T>(resource.spec).ok())
            .and_then(accept);
        match held {
            Some(held) => {
                map.insert(id, held);
            }
            None => {
                tracing::warn!(key, "ignoring an unreadable or invalid resource");
                map.remove(&id);
            }
        }
    };
    match update {
        FollowUpdate::Snapshot { kvs, .. } => {
            for kv in kvs {
                one(EventKind::Put, &kv.key, &kv.value);
            }
        }
        FollowUpdate::Events(events) => {
            for event in events {
                one(event.kind, &event.kv.key, &event.kv.value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{KeyValue, WatchEvent};
    use sluice_model::keys::resource_key;

    /// A stored resource with this spec (JSON text), or `raw` bytes when the text
    /// is not JSON.
    fn kv(key: &str, spec: &str) -> KeyValue {
        let value = match serde_json::from_str::<serde_json::Value>(spec) {
            Ok(spec) => serde_json::to_vec(&serde_json::json!({
                "kind": "Num",
                "metadata": {"namespace": "default", "name": "x"},
                "spec": spec,
            }))
            .unwrap_or_default(),
            Err(_) => spec.as_bytes().to_vec(),
        };
        KeyValue {
            key: key.into(),
            value,
            create_revision: 1,
            mod_revision: 1,
            version: 1,
            lease: None,
        }
    }

    fn positive(n: i64) -> Option<i64> {
        (n > 0).then_some(n)
    }

    #[test]
    fn holds_valid_specs_and_leaves_out_the_rest() {
        let mut map = KindMap::new();
        let snapshot = FollowUpdate::Snapshot {
            kvs: vec![
                kv(&resource_key("Num", "default", "one"), "1"),
                kv(&resource_key("Num", "default", "neg"), "-1"),
                kv(&resource_key("Num", "default", "text"), r#""x""#),
                kv(&resource_key("Num", "default", "garbage"), "not json"),
                kv(&resource_key("Other", "default", "two"), "2"),
            ],
            revision: 1,
        };
        apply_kind_update(&mut map, "Num", snapshot, &positive);
        assert_eq!(map.len(), 1);
        assert_eq!(map[&ResourceId::new("default", "one")], 1);
        let events = FollowUpdate::Events(vec![
            WatchEvent {
                kind: EventKind::Put,
                kv: kv(&resource_key("Num", "default", "one"), "-5"),
            },
            WatchEvent {
                kind: EventKind::Put,
                kv: kv(&resource_key("Num", "b", "three"), "3"),
            },
        ]);
        apply_kind_update(&mut map, "Num", events, &positive);
        assert_eq!(
            map.keys().collect::<Vec<_>>(),
            [&ResourceId::new("b", "three")]
        );
        let delete = FollowUpdate::Events(vec![WatchEvent {
            kind: EventKind::Delete,
            kv: kv(&resource_key("Num", "b", "three"), ""),
        }]);
        apply_kind_update(&mut map, "Num", delete, &positive);
        assert!(map.is_empty());
    }
}
