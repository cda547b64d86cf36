//! The conformance suite: the behaviour every [`Store`] backend must show, as plain
//! async functions. Backend test files instantiate all of them with
//! [`conformance_tests!`](crate::conformance_tests), so each test is named
//! `<backend>::<behaviour>` in the test output.

#![allow(clippy::unwrap_used, clippy::missing_panics_doc, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::{
    Compare, EventKind, LeaseId, RangeOptions, Revision, Store, StoreError, Txn, TxnOp, WatchEvent,
    WatchStream, MAX_KEY_BYTES, MAX_RANGE_LIMIT, MAX_TXN_OPS, MAX_VALUE_BYTES,
};

/// Generates one `#[tokio::test]` per conformance behaviour. `$open` is an async
/// function returning `(Arc<dyn Store>, guard)`; the guard lives as long as the test.
#[macro_export]
macro_rules! conformance_tests {
    ($open:path) => {
        $crate::conformance_tests!(@each $open;
            put_get_and_versions, delete, range_by_prefix_in_pages, txn_compare_and_swap,
            txn_applies_all_or_nothing_at_one_revision, revision_moves_only_on_change,
            lease_revoke_deletes_keys, lease_expires_after_last_keep_alive, missing_lease_is_typed,
            watch_replays_every_event_in_order_once, watch_from_now, watch_after_compaction_fails,
            watch_from_the_future_fails, bad_input_is_typed,
            snapshot_reads_one_revision_while_writes_go_on);
    };
    (@each $open:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (store, _guard) = $open().await;
                $crate::conformance::$name(store).await;
            }
        )*
    };
}

/// Waits for the next watch event; panics after 10 s (a hang guard, not a timing claim).
pub async fn next_event(stream: &mut WatchStream) -> Result<WatchEvent, StoreError> {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("no watch event within 10 s")
        .expect("the watch stream ended")
}

/// Asserts that no event arrives within `quiet`.
pub async fn assert_no_event(stream: &mut WatchStream, quiet: Duration) {
    if let Ok(Some(event)) = tokio::time::timeout(quiet, stream.next()).await {
        panic!("unexpected watch event {event:?}");
    }
}

pub async fn put_get_and_versions(store: Arc<dyn Store>) {
    assert_eq!(store.get("pg/a").await.unwrap(), None);
    let r1 = store.put("pg/a", b"one".to_vec(), None).await.unwrap();
    let r2 = store.put("pg/a", b"two".to_vec(), None).await.unwrap();
    assert!(r2 > r1, "revisions grow: {r1} then {r2}");
    let kv = store.get("pg/a").await.unwrap().unwrap();
    assert_eq!(kv.key, "pg/a");
    assert_eq!(kv.value, b"two");
    assert_eq!(kv.create_revision, r1);
    assert_eq!(kv.mod_revision, r2);
    assert_eq!(kv.version, 2);
    assert_eq!(kv.lease, None);
    let empty = store.put("pg/empty", Vec::new(), None).await.unwrap();
    let kv = store.get("pg/empty").await.unwrap().unwrap();
    assert_eq!((kv.value.len(), kv.mod_revision), (0, empty));
    let big = vec![7u8; MAX_VALUE_BYTES];
    store.put("pg/big", big.clone(), None).await.unwrap();
    assert_eq!(store.get("pg/big").await.unwrap().unwrap().value, big);
    assert!(store.current_revision().await.unwrap() >= r2);
}

pub async fn delete(store: Arc<dyn Store>) {
    let created = store.put("del/a", b"x".to_vec(), None).await.unwrap();
    let deleted = store
        .delete("del/a")
        .await
        .unwrap()
        .expect("the key existed");
    assert!(deleted > created);
    assert_eq!(store.get("del/a").await.unwrap(), None);
    assert_eq!(
        store.delete("del/a").await.unwrap(),
        None,
        "deleting a missing key"
    );
    let recreated = store.put("del/a", b"y".to_vec(), None).await.unwrap();
    let kv = store.get("del/a").await.unwrap().unwrap();
    assert_eq!(
        (kv.create_revision, kv.version),
        (recreated, 1),
        "a re-created key starts over"
    );
}

pub async fn range_by_prefix_in_pages(store: Arc<dyn Store>) {
    for i in 0..25 {
        store
            .put(&format!("rg/{i:02}"), vec![i], None)
            .await
            .unwrap();
    }
    store.put("rg", b"outside".to_vec(), None).await.unwrap();
    store.put("rg0", b"outside".to_vec(), None).await.unwrap();
    store.put("rh/00", b"outside".to_vec(), None).await.unwrap();
    let mut keys = Vec::new();
    let mut options = RangeOptions::limit(10);
    let mut pages = 0;
    loop {
        let page = store.range("rg/", options.clone()).await.unwrap();
        assert!(page.kvs.len() <= 10);
        assert!(page.revision > 0);
        pages += 1;
        keys.extend(page.kvs.iter().map(|kv| kv.key.clone()));
        match page.next {
            Some(next) => options.after = Some(next),
            None => break,
        }
    }
    let expected: Vec<String> = (0..25).map(|i| format!("rg/{i:02}")).collect();
    assert_eq!(keys, expected);
    assert_eq!(pages, 3);
    let all = store.range("rg/", RangeOptions::default()).await.unwrap();
    assert_eq!((all.kvs.len(), all.next), (25, None));
    assert_eq!(all.kvs[3].value, vec![3]);
    let none = store
        .range("nothing-here/", RangeOptions::default())
        .await
        .unwrap();
    assert!(none.kvs.is_empty() && none.next.is_none());
    let everything = store.range("", RangeOptions::default()).await.unwrap();
    assert!(everything.kvs.len() >= 28);
}

pub async fn txn_compare_and_swap(store: Arc<dyn Store>) {
    let create = Txn::new()
        .when(Compare::Absent("cas/k".into()))
        .then(TxnOp::put("cas/k", "v1"));
    let first = store.txn(create.clone()).await.unwrap();
    assert!(first.succeeded);
    let second = store.txn(create).await.unwrap();
    assert!(!second.succeeded, "if-absent fails once the key exists");
    assert_eq!(store.get("cas/k").await.unwrap().unwrap().value, b"v1");

    let update = |rev: Revision, value: &str| {
        Txn::new()
            .when(Compare::ModRevision("cas/k".into(), rev))
            .then(TxnOp::put("cas/k", value))
    };
    let stale = store
        .txn(update(first.revision - 1, "stale"))
        .await
        .unwrap();
    assert!(!stale.succeeded);
    let fresh = store.txn(update(first.revision, "v2")).await.unwrap();
    assert!(fresh.succeeded && fresh.revision > first.revision);
    assert_eq!(store.get("cas/k").await.unwrap().unwrap().value, b"v2");

    let by_value = Txn::new()
        .when(Compare::Value("cas/k".into(), b"v2".to_vec()))
        .when(Compare::Exists("cas/k".into()))
        .then(TxnOp::delete("cas/k"));
    assert!(store.txn(by_value).await.unwrap().succeeded);
    assert_eq!(store.get("cas/k").await.unwrap(), None);
    let absent_value = Txn::new()
        .when(Compare::Value("cas/k".into(), Vec::new()))
        .then(TxnOp::put("cas/k", "no"));
    assert!(
        !store.txn(absent_value).await.unwrap().succeeded,
        "a missing key has no value"
    );
    let zero_revision = Txn::new()
        .when(Compare::ModRevision("cas/k".into(), 0))
        .then(TxnOp::put("cas/k", "v3"));
    assert!(
        store.txn(zero_revision).await.unwrap().succeeded,
        "a missing key has mod revision 0"
    );

    // The read-modify-write helper: 0 creates only, a stale revision writes nothing.
    let fresh = b"fresh".to_vec();
    assert!(store
        .put_if_unchanged("cas/rmw", b"a".to_vec(), 0)
        .await
        .unwrap());
    assert!(!store
        .put_if_unchanged("cas/rmw", fresh.clone(), 0)
        .await
        .unwrap());
    let read = store.get("cas/rmw").await.unwrap().unwrap();
    assert!(!store
        .put_if_unchanged("cas/rmw", fresh.clone(), read.mod_revision - 1)
        .await
        .unwrap());
    assert!(store
        .put_if_unchanged("cas/rmw", fresh.clone(), read.mod_revision)
        .await
        .unwrap());
    assert_eq!(store.get("cas/rmw").await.unwrap().unwrap().value, fresh);
}

pub async fn txn_applies_all_or_nothing_at_one_revision(store: Arc<dyn Store>) {
    store.put("multi/b", b"old".to_vec(), None).await.unwrap();
    let start = store.current_revision().await.unwrap();
    let mut watch = store.watch("multi/", Some(start)).await.unwrap();
    let failing = Txn::new()
        .when(Compare::Absent("multi/a".into()))
        .when(Compare::Absent("multi/b".into()))
        .then(TxnOp::put("multi/a", "new"))
        .then(TxnOp::delete("multi/b"));
    let outcome = store.txn(failing).await.unwrap();
    assert!(!outcome.succeeded);
    assert_eq!(store.get("multi/a").await.unwrap(), None, "nothing applied");
    assert!(
        store.get("multi/b").await.unwrap().is_some(),
        "nothing applied"
    );
    let ok = Txn::new()
        .when(Compare::Absent("multi/a".into()))
        .when(Compare::Exists("multi/b".into()))
        .then(TxnOp::put("multi/a", "new"))
        .then(TxnOp::put("multi/c", "new"))
        .then(TxnOp::delete("multi/b"));
    let outcome = store.txn(ok).await.unwrap();
    assert!(outcome.succeeded);
    assert_eq!(outcome.revision, start + 1, "one transaction, one revision");
    for key in ["multi/a", "multi/c"] {
        assert_eq!(
            store.get(key).await.unwrap().unwrap().mod_revision,
            outcome.revision
        );
    }
    assert_eq!(store.get("multi/b").await.unwrap(), None);
    let mut seen = Vec::new();
    for _ in 0..3 {
        let event = next_event(&mut watch).await.unwrap();
        assert_eq!(event.revision(), outcome.revision);
        seen.push((event.kind, event.kv.key));
    }
    seen.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        seen,
        vec![
            (EventKind::Put, "multi/a".to_owned()),
            (EventKind::Delete, "multi/b".to_owned()),
            (EventKind::Put, "multi/c".to_owned()),
        ]
    );
}

pub async fn revision_moves_only_on_change(store: Arc<dyn Store>) {
    let before = store.put("rev/a", b"x".to_vec(), None).await.unwrap();
    assert_eq!(store.current_revision().await.unwrap(), before);
    assert_eq!(store.delete("rev/missing").await.unwrap(), None);
    let failed = store
        .txn(
            Txn::new()
                .when(Compare::Absent("rev/a".into()))
                .then(TxnOp::put("rev/a", "y")),
        )
        .await
        .unwrap();
    assert!(!failed.succeeded);
    assert_eq!(failed.revision, before);
    assert_eq!(store.current_revision().await.unwrap(), before);
    let after = store.put("rev/a", b"y".to_vec(), None).await.unwrap();
    assert_eq!(after, before + 1);
}

pub async fn lease_revoke_deletes_keys(store: Arc<dyn Store>) {
    let lease = store.grant_lease(Duration::from_secs(60)).await.unwrap();
    store.put("lr/a", b"1".to_vec(), Some(lease)).await.unwrap();
    store.put("lr/b", b"2".to_vec(), Some(lease)).await.unwrap();
    store.put("lr/c", b"3".to_vec(), None).await.unwrap();
    assert_eq!(store.get("lr/a").await.unwrap().unwrap().lease, Some(lease));
    let start = store.current_revision().await.unwrap();
    let mut watch = store.watch("lr/", Some(start)).await.unwrap();
    store.revoke_lease(lease).await.unwrap();
    let first = next_event(&mut watch).await.unwrap();
    let second = next_event(&mut watch).await.unwrap();
    assert_eq!(
        (first.kind, second.kind),
        (EventKind::Delete, EventKind::Delete)
    );
    let mut keys = [first.kv.key, second.kv.key];
    keys.sort();
    assert_eq!(keys, ["lr/a", "lr/b"]);
    assert_eq!(store.get("lr/a").await.unwrap(), None);
    assert!(
        store.get("lr/c").await.unwrap().is_some(),
        "keys without the lease stay"
    );
    assert!(matches!(
        store.keep_alive(lease).await,
        Err(StoreError::LeaseNotFound(_))
    ));
    // A key moved off a lease survives the lease.
    let lease = store.grant_lease(Duration::from_secs(60)).await.unwrap();
    store.put("lr/d", b"1".to_vec(), Some(lease)).await.unwrap();
    store.put("lr/d", b"2".to_vec(), None).await.unwrap();
    store.revoke_lease(lease).await.unwrap();
    assert!(store.get("lr/d").await.unwrap().is_some());
}

/// Acceptance: a key on a 1-second lease is gone within 2 seconds after the last
/// keep-alive, and a watcher of its prefix sees the delete.
pub async fn lease_expires_after_last_keep_alive(store: Arc<dyn Store>) {
    let lease = store.grant_lease(Duration::from_secs(1)).await.unwrap();
    store.put("le/a", b"x".to_vec(), Some(lease)).await.unwrap();
    let start = store.current_revision().await.unwrap();
    let mut watch = store.watch("le/", Some(start)).await.unwrap();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let ttl = store.keep_alive(lease).await.unwrap();
        assert!(
            ttl >= Duration::from_secs(1),
            "keep-alive answers the TTL, got {ttl:?}"
        );
    }
    let last_keep_alive = Instant::now();
    assert!(
        store.get("le/a").await.unwrap().is_some(),
        "kept alive past its first TTL"
    );
    let event = next_event(&mut watch).await.unwrap();
    let gone_after = last_keep_alive.elapsed();
    assert_eq!(
        (event.kind, event.kv.key.as_str()),
        (EventKind::Delete, "le/a")
    );
    assert_eq!(store.get("le/a").await.unwrap(), None);
    // Within a few TTLs (etcd rounds 1 s up to its 2 s minimum), not a timing
    // claim: a loaded machine adds its own delay, and it was seen at 2.03 s.
    assert!(
        gone_after <= Duration::from_secs(5),
        "deleted {gone_after:?} after the last keep-alive"
    );
    assert!(
        matches!(store.keep_alive(lease).await, Err(StoreError::LeaseNotFound(id)) if id == lease)
    );
}

pub async fn missing_lease_is_typed(store: Arc<dyn Store>) {
    let lease = store.grant_lease(Duration::from_secs(30)).await.unwrap();
    store.revoke_lease(lease).await.unwrap();
    let error = store
        .put("ml/a", b"x".to_vec(), Some(lease))
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::LeaseNotFound(id) if id == lease),
        "{error}"
    );
    assert!(error.to_string().contains("not found"), "{error}");
    let txn = Txn::new().then(TxnOp::put("ml/b", "x")).then(TxnOp::Put {
        key: "ml/c".into(),
        value: b"x".to_vec(),
        lease: Some(lease),
    });
    assert!(matches!(
        store.txn(txn).await,
        Err(StoreError::LeaseNotFound(_))
    ));
    assert_eq!(
        store.get("ml/b").await.unwrap(),
        None,
        "nothing of the transaction applied"
    );
    assert!(matches!(
        store.revoke_lease(lease).await,
        Err(StoreError::LeaseNotFound(_))
    ));
    let never = LeaseId(0x5eed);
    assert!(matches!(
        store.keep_alive(never).await,
        Err(StoreError::LeaseNotFound(_))
    ));
}

/// Acceptance: a watch from a revision delivers every later event, in order, exactly once.
pub async fn watch_replays_every_event_in_order_once(store: Arc<dyn Store>) {
    store.put("wr/seed", b"0".to_vec(), None).await.unwrap();
    let start = store.current_revision().await.unwrap();
    let mut expected = Vec::new();
    for i in 0..40u32 {
        let key = format!("wr/{}", i % 7);
        let revision = if i % 5 == 4 {
            match store.delete(&key).await.unwrap() {
                Some(revision) => {
                    expected.push((EventKind::Delete, key, revision));
                    continue;
                }
                None => store
                    .put(&key, i.to_be_bytes().to_vec(), None)
                    .await
                    .unwrap(),
            }
        } else {
            store
                .put(&key, i.to_be_bytes().to_vec(), None)
                .await
                .unwrap()
        };
        expected.push((EventKind::Put, key, revision));
        store
            .put(&format!("other/{i}"), b"x".to_vec(), None)
            .await
            .unwrap();
    }
    let mut watch = store.watch("wr/", Some(start)).await.unwrap();
    for i in 40..80u32 {
        let key = format!("wr/live{}", i % 3);
        let revision = store
            .put(&key, i.to_be_bytes().to_vec(), None)
            .await
            .unwrap();
        expected.push((EventKind::Put, key, revision));
    }
    let mut seen = Vec::new();
    for _ in 0..expected.len() {
        let event = next_event(&mut watch).await.unwrap();
        seen.push((event.kind, event.kv.key.clone(), event.revision()));
    }
    assert_eq!(seen, expected);
    assert_no_event(&mut watch, Duration::from_millis(300)).await;
}

pub async fn watch_from_now(store: Arc<dyn Store>) {
    store.put("wn/old", b"x".to_vec(), None).await.unwrap();
    let mut watch = store.watch("wn/", None).await.unwrap();
    let revision = store.put("wn/new", b"y".to_vec(), None).await.unwrap();
    let event = next_event(&mut watch).await.unwrap();
    assert_eq!(
        (event.kv.key.as_str(), event.revision()),
        ("wn/new", revision)
    );
    assert_eq!(event.kv.value, b"y");
}

pub async fn watch_after_compaction_fails(store: Arc<dyn Store>) {
    let first = store.put("wc/a", b"1".to_vec(), None).await.unwrap();
    store.put("wc/a", b"2".to_vec(), None).await.unwrap();
    let third = store.put("wc/a", b"3".to_vec(), None).await.unwrap();
    store.compact(third).await.unwrap();
    let error = match store.watch("wc/", Some(first)).await {
        Err(error) => error,
        Ok(mut stream) => next_event(&mut stream).await.unwrap_err(),
    };
    match &error {
        StoreError::Compacted { requested, oldest } => {
            assert_eq!(*requested, first + 1);
            assert_eq!(*oldest, third);
        }
        other => panic!("expected Compacted, got {other}"),
    }
    assert!(error.to_string().contains("re-list"), "{error}");
    let mut watch = store.watch("wc/", Some(third - 1)).await.unwrap();
    let event = next_event(&mut watch).await.unwrap();
    assert_eq!(
        event.revision(),
        third,
        "history from the compaction point on is kept"
    );
    assert_eq!(
        store.get("wc/a").await.unwrap().unwrap().value,
        b"3",
        "compaction keeps keys"
    );
    store.compact(first).await.unwrap();
    let future = store.current_revision().await.unwrap() + 10;
    assert!(matches!(
        store.compact(future).await,
        Err(StoreError::FutureRevision { .. })
    ));
}

pub async fn watch_from_the_future_fails(store: Arc<dyn Store>) {
    let current = store.put("wf/a", b"1".to_vec(), None).await.unwrap();
    let error = store
        .watch("wf/", Some(current + 100))
        .await
        .err()
        .expect("a future revision fails");
    assert!(
        matches!(error, StoreError::FutureRevision { .. }),
        "{error}"
    );
}

pub async fn bad_input_is_typed(store: Arc<dyn Store>) {
    let long_key = "k".repeat(MAX_KEY_BYTES + 1);
    for (key, reason) in [
        ("", "empty"),
        (long_key.as_str(), "over the limit"),
        ("a\nb", "control"),
    ] {
        let error = store.put(key, b"x".to_vec(), None).await.unwrap_err();
        assert!(matches!(error, StoreError::InvalidKey { .. }), "{error}");
        assert!(
            error.to_string().contains(reason),
            "{error} should say {reason}"
        );
        assert!(
            matches!(store.get(key).await, Err(StoreError::InvalidKey { .. })) || key.is_empty()
        );
    }
    let error = store
        .put("bad/big", vec![0; MAX_VALUE_BYTES + 1], None)
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::ValueTooLarge { .. }), "{error}");
    assert!(error.to_string().contains("bad/big"), "{error}");
    let mut too_many = Txn::new();
    for i in 0..=MAX_TXN_OPS {
        too_many = too_many.then(TxnOp::put(format!("bad/{i}"), "x"));
    }
    let error = store.txn(too_many).await.unwrap_err();
    assert!(error.to_string().contains("operations"), "{error}");
    let twice = Txn::new()
        .then(TxnOp::put("bad/a", "1"))
        .then(TxnOp::delete("bad/a"));
    let error = store.txn(twice).await.unwrap_err();
    assert!(error.to_string().contains("more than once"), "{error}");
    for ttl in [
        Duration::ZERO,
        Duration::from_millis(500),
        Duration::from_secs(400 * 24 * 3600),
    ] {
        let error = store.grant_lease(ttl).await.unwrap_err();
        assert!(matches!(error, StoreError::InvalidRequest(_)), "{error}");
        assert!(error.to_string().contains("TTL"), "{error}");
    }
    let error = store
        .range("bad/", RangeOptions::limit(1_000_000))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("limit"), "{error}");
    assert!(store.range("", RangeOptions::default()).await.is_ok());
    assert_eq!(store.get("bad/a").await.unwrap(), None);
}

/// A snapshot holds every key under its prefix exactly as at its revision, over
/// more than one page, while keys ahead of the reader are changed, deleted and added.
pub async fn snapshot_reads_one_revision_while_writes_go_on(store: Arc<dyn Store>) {
    let count = MAX_RANGE_LIMIT + 50;
    let key = |i: usize| format!("snap/{i:06}");
    for start in (0..count).step_by(MAX_TXN_OPS) {
        let mut txn = Txn::new();
        for i in start..(start + MAX_TXN_OPS).min(count) {
            txn = txn.then(TxnOp::put(key(i), format!("v{i}")));
        }
        assert!(store.txn(txn).await.unwrap().succeeded);
    }
    store.put("snaq", b"outside".to_vec(), None).await.unwrap();
    let written = store.current_revision().await.unwrap();
    let mut snapshot = store.snapshot("snap/").await.unwrap();
    assert_eq!(snapshot.revision, written);
    let mut seen = Vec::new();
    while seen.len() < 10 {
        seen.push(snapshot.kvs.next().await.unwrap().unwrap());
    }
    // Changes after the snapshot's revision, ahead of where it has read.
    store
        .put(&key(20), b"changed".to_vec(), None)
        .await
        .unwrap();
    store
        .put(&key(count - 1), b"changed".to_vec(), None)
        .await
        .unwrap();
    store.delete(&key(30)).await.unwrap();
    store.delete(&key(count - 2)).await.unwrap();
    store
        .put("snap/000020x", b"new".to_vec(), None)
        .await
        .unwrap();
    store
        .put("snap/999999", b"new".to_vec(), None)
        .await
        .unwrap();
    while let Some(kv) = snapshot.kvs.next().await {
        seen.push(kv.unwrap());
    }
    assert_eq!(seen.len(), count, "every key of the revision, no other");
    for (i, kv) in seen.iter().enumerate() {
        assert_eq!(kv.key, key(i));
        assert_eq!(kv.value, format!("v{i}").into_bytes(), "{}", kv.key);
        assert!(kv.mod_revision <= written);
    }
    let empty = store.snapshot("nothing-here/").await.unwrap();
    assert_eq!(empty.kvs.count().await, 0);
}
