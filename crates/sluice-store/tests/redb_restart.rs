//! The embedded redb backend across restarts: data, history and leases persist;
//! leases whose deadline passed while the store was closed expire on open.

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use futures::StreamExt;
use sluice_store::conformance::next_event;
use sluice_store::{EventKind, LocalStore, LocalStoreOptions, RangeOptions, Store, StoreError};

fn open(dir: &std::path::Path) -> LocalStore {
    LocalStore::open_redb(dir, LocalStoreOptions::default()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_history_and_revision_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (first, last) = {
        let store = open(dir.path());
        let first = store.put("svc/a", b"1".to_vec(), None).await.unwrap();
        store.put("svc/b", b"2".to_vec(), None).await.unwrap();
        store.delete("svc/a").await.unwrap();
        let last = store.put("svc/c", b"3".to_vec(), None).await.unwrap();
        (first, last)
    };
    let store = open(dir.path());
    assert_eq!(store.current_revision().await.unwrap(), last);
    let page = store.range("svc/", RangeOptions::default()).await.unwrap();
    let keys: Vec<&str> = page.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["svc/b", "svc/c"]);
    let mut watch = store.watch("svc/", Some(first)).await.unwrap();
    let kinds: Vec<(EventKind, String)> = {
        let mut seen = Vec::new();
        for _ in 0..3 {
            let event = next_event(&mut watch).await.unwrap();
            seen.push((event.kind, event.kv.key));
        }
        seen
    };
    assert_eq!(
        kinds,
        [
            (EventKind::Put, "svc/b".to_owned()),
            (EventKind::Delete, "svc/a".to_owned()),
            (EventKind::Put, "svc/c".to_owned())
        ]
    );
    let next = store.put("svc/d", b"4".to_vec(), None).await.unwrap();
    assert_eq!(next, last + 1, "revisions continue after a restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_keep_their_deadlines_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (long, short, before) = {
        let store = open(dir.path());
        let long = store.grant_lease(Duration::from_secs(60)).await.unwrap();
        let short = store.grant_lease(Duration::from_secs(1)).await.unwrap();
        store
            .put("inst/long", b"l".to_vec(), Some(long))
            .await
            .unwrap();
        store
            .put("inst/short", b"s".to_vec(), Some(short))
            .await
            .unwrap();
        let before = store.current_revision().await.unwrap();
        (long, short, before)
    };
    // The short lease's deadline passes while the store is closed.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let store = open(dir.path());
    let mut watch = store.watch("inst/", Some(before)).await.unwrap();
    let event = next_event(&mut watch).await.unwrap();
    assert_eq!(
        (event.kind, event.kv.key.as_str()),
        (EventKind::Delete, "inst/short")
    );
    assert_eq!(store.get("inst/short").await.unwrap(), None);
    assert!(matches!(
        store.keep_alive(short).await,
        Err(StoreError::LeaseNotFound(_))
    ));
    let kept = store
        .get("inst/long")
        .await
        .unwrap()
        .expect("the live lease's key is kept");
    assert_eq!(kept.lease, Some(long));
    assert_eq!(
        store.keep_alive(long).await.unwrap(),
        Duration::from_secs(60)
    );
    store.revoke_lease(long).await.unwrap();
    assert_eq!(
        store.get("inst/long").await.unwrap(),
        None,
        "the key is still attached after restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_still_running_expires_on_schedule_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        let lease = store.grant_lease(Duration::from_secs(2)).await.unwrap();
        store
            .put("inst/a", b"a".to_vec(), Some(lease))
            .await
            .unwrap();
    }
    let store = open(dir.path());
    assert!(
        store.get("inst/a").await.unwrap().is_some(),
        "not expired early"
    );
    let mut watch = store.watch("inst/", None).await.unwrap();
    let event = next_event(&mut watch).await.unwrap();
    assert_eq!(
        (event.kind, event.kv.key.as_str()),
        (EventKind::Delete, "inst/a")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_compaction_bounds_history_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    let options = LocalStoreOptions {
        history_revisions: 5,
    };
    {
        let store = LocalStore::open_redb(dir.path(), options.clone()).unwrap();
        for i in 0..20u8 {
            store.put("h/k", vec![i], None).await.unwrap();
        }
        let error = store.watch("h/", Some(10)).await.err().unwrap();
        assert!(
            matches!(
                error,
                StoreError::Compacted {
                    requested: 11,
                    oldest: 16
                }
            ),
            "{error}"
        );
    }
    let store = LocalStore::open_redb(dir.path(), options).unwrap();
    assert!(matches!(
        store.watch("h/", Some(10)).await,
        Err(StoreError::Compacted { .. })
    ));
    let mut watch = store.watch("h/", Some(15)).await.unwrap();
    for revision in 16..=20 {
        assert_eq!(next_event(&mut watch).await.unwrap().revision(), revision);
    }
    drop(watch);
    let error = LocalStore::open_redb(
        dir.path(),
        LocalStoreOptions {
            history_revisions: 0,
        },
    )
    .err()
    .unwrap();
    assert!(error.to_string().contains("history_revisions"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_in_use_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let _store = open(dir.path());
    let error = LocalStore::open_redb(dir.path(), LocalStoreOptions::default())
        .err()
        .unwrap();
    assert!(matches!(error, StoreError::Unavailable { .. }), "{error}");
    assert!(error.to_string().contains("in use"), "{error}");
    assert!(error.to_string().contains("redb://"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urls_open_the_right_backend_or_say_why_not() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("redb://{}", dir.path().join("data").display());
    let store = sluice_store::open(&url).await.unwrap();
    assert_eq!(store.backend(), "redb");
    assert!(dir.path().join("data/store.redb").exists());
    assert_eq!(
        sluice_store::open("memory://").await.unwrap().backend(),
        "memory"
    );

    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let bad_dir = format!("redb://{}", file.display());
    let error = sluice_store::open(&bad_dir).await.err().unwrap();
    assert!(error.to_string().contains(&bad_dir), "{error}");

    // Nothing listens on this port: the error names the URL and says no member answered.
    let port = sluice_testkit::free_port();
    let unreachable = format!("etcd://127.0.0.1:{port}/x");
    let started = std::time::Instant::now();
    let error = sluice_store::EtcdStore::connect(
        &[format!("127.0.0.1:{port}")],
        "/x",
        sluice_store::EtcdOptions {
            connect_timeout: Duration::from_millis(500),
            request_timeout: Duration::from_secs(2),
        },
    )
    .await
    .err()
    .unwrap();
    assert!(matches!(error, StoreError::Unavailable { .. }), "{error}");
    assert!(error.to_string().contains(&unreachable), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "gave up in {:?}",
        started.elapsed()
    );
    let _ = watch_nothing(&*store).await;
}

async fn watch_nothing(store: &dyn Store) -> Option<()> {
    let mut watch = store.watch("none/", None).await.ok()?;
    tokio::time::timeout(Duration::from_millis(10), watch.next())
        .await
        .ok()?;
    Some(())
}
