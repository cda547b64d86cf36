//! Backups (`sluice_store::backup`): a round trip between backends keeps every
//! record but the leased ones; an export taken under load holds exactly the
//! writes acknowledged up to its revision; a truncated or edited file, and a
//! store that is not empty, are refused with nothing written.

#![allow(clippy::unwrap_used, missing_docs)]

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sluice_store::backup::{export, import_file, verify, BackupError, ImportOptions};
use sluice_store::{
    EtcdOptions, EtcdStore, LocalStore, LocalStoreOptions, RangeOptions, Store, Txn, TxnOp,
};
use sluice_testkit::EtcdCluster;

fn memory() -> Arc<dyn Store> {
    Arc::new(LocalStore::memory(LocalStoreOptions::default()).unwrap())
}

async fn etcd(cluster: &EtcdCluster, prefix: &str) -> Arc<dyn Store> {
    Arc::new(
        EtcdStore::connect(&cluster.endpoints(), prefix, EtcdOptions::default())
            .await
            .unwrap(),
    )
}

async fn fill(store: &dyn Store) {
    let mut txn = Txn::new();
    for i in 0..300 {
        txn = txn.then(TxnOp::put(
            format!("res/Route/default/r{i:03}"),
            format!(r#"{{"kind":"Route","n":{i}}}"#),
        ));
        if txn.ops.len() == 100 {
            store.txn(std::mem::take(&mut txn)).await.unwrap();
        }
    }
    store
        .put("bin/value", vec![0, 159, 146, 150, 255], None)
        .await
        .unwrap();
    store
        .put("text/quote", b"line \"one\"\nline two".to_vec(), None)
        .await
        .unwrap();
    let lease = store.grant_lease(Duration::from_secs(60)).await.unwrap();
    store
        .put("svc/default/echo/ephemeral", b"{}".to_vec(), Some(lease))
        .await
        .unwrap();
}

async fn export_to_file(store: &dyn Store, path: &Path) -> Vec<String> {
    let mut out = tokio::fs::File::create(path).await.unwrap();
    export(store, &mut out).await.unwrap();
    let text = std::fs::read_to_string(path).unwrap();
    text.lines().map(str::to_owned).collect()
}

/// The records of a backup: every line but the header and the trailer.
fn records(lines: &[String]) -> &[String] {
    &lines[1..lines.len() - 1]
}

async fn all_keys(store: &dyn Store) -> Vec<(String, Vec<u8>)> {
    let page = store.range("", RangeOptions::default()).await.unwrap();
    page.kvs.into_iter().map(|kv| (kv.key, kv.value)).collect()
}

fn no_progress() -> impl FnMut(u64, u64) + Send {
    |_, _| {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_trip_through_etcd_keeps_every_record_but_the_leased() {
    let dir = tempfile::tempdir().unwrap();
    let source =
        LocalStore::open_redb(&dir.path().join("redb"), LocalStoreOptions::default()).unwrap();
    fill(&source).await;
    let first = dir.path().join("first.jsonl");
    let lines = export_to_file(&source, &first).await;
    let header: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(header["format"], "sluice-store-backup");
    assert_eq!(header["version"], 1);
    assert_eq!(header["source"], "redb");
    let trailer: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(trailer["end"]["records"], 302);
    assert_eq!(trailer["end"]["leased_left_out"], 1);
    assert!(lines.iter().any(|l| l.contains("value_base64")));

    let cluster = EtcdCluster::single();
    let target = etcd(&cluster, "/restored").await;
    let summary = import_file(
        &*target,
        &first,
        ImportOptions::default(),
        &mut no_progress(),
    )
    .await
    .unwrap();
    assert_eq!(summary.trailer.records, 302);
    let second = dir.path().join("second.jsonl");
    let again = export_to_file(&*target, &second).await;
    assert_eq!(records(&lines), records(&again), "the same records");
    let mut expected = all_keys(&source).await;
    expected.retain(|(key, _)| key != "svc/default/echo/ephemeral");
    assert_eq!(
        all_keys(&*target).await,
        expected,
        "the same keys and bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_file_or_a_store_in_use_is_refused_with_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let source = memory();
    fill(&*source).await;
    let good = dir.path().join("good.jsonl");
    let lines = export_to_file(&*source, &good).await;
    let text = std::fs::read_to_string(&good).unwrap();

    let target = memory();
    let attempt = |path: std::path::PathBuf, options: ImportOptions| {
        let target = Arc::clone(&target);
        async move { import_file(&*target, &path, options, &mut no_progress()).await }
    };

    // Cut short: without its end line, and in the middle of a line.
    let cut = dir.path().join("cut.jsonl");
    std::fs::write(&cut, lines[..lines.len() - 1].join("\n") + "\n").unwrap();
    let error = attempt(cut.clone(), ImportOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(error, BackupError::Truncated { .. }), "{error}");
    std::fs::write(&cut, &text[..text.len() / 2]).unwrap();
    let error = attempt(cut, ImportOptions::default()).await.unwrap_err();
    assert!(matches!(error, BackupError::Truncated { .. }), "{error}");

    // One value edited: the checksum no longer holds.
    let edited = dir.path().join("edited.jsonl");
    std::fs::write(&edited, {
        let edit = text.replacen(r#"\"n\":7}"#, r#"\"n\":8}"#, 1);
        assert_ne!(edit, text);
        edit
    })
    .unwrap();
    let error = attempt(edited, ImportOptions::default()).await.unwrap_err();
    assert!(matches!(error, BackupError::Mismatch { .. }), "{error}");
    assert!(error.to_string().contains("SHA-256"), "{error}");

    // A record dropped and the count left: the count no longer holds.
    let dropped = dir.path().join("dropped.jsonl");
    let mut fewer = lines.clone();
    fewer.remove(5);
    std::fs::write(&dropped, fewer.join("\n") + "\n").unwrap();
    let error = attempt(dropped, ImportOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(error, BackupError::Mismatch { .. }), "{error}");

    // Another format version.
    let future = dir.path().join("future.jsonl");
    std::fs::write(&future, text.replacen("\"version\":1", "\"version\":9", 1)).unwrap();
    let error = attempt(future, ImportOptions::default()).await.unwrap_err();
    assert!(
        matches!(error, BackupError::Version { found: 9, .. }),
        "{error}"
    );
    assert!(all_keys(&*target).await.is_empty(), "nothing was written");

    // A store that holds keys is refused, naming them; --replace replaces them.
    target.put("old/key", b"x".to_vec(), None).await.unwrap();
    let error = attempt(good.clone(), ImportOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(error, BackupError::NotEmpty { .. }), "{error}");
    assert!(error.to_string().contains("old/key"), "{error}");
    assert_eq!(all_keys(&*target).await.len(), 1);
    attempt(good.clone(), ImportOptions { replace: true })
        .await
        .unwrap();
    let mut expected = all_keys(&*source).await;
    expected.retain(|(key, _)| key != "svc/default/echo/ephemeral");
    assert_eq!(all_keys(&*target).await, expected);

    let summary = verify(tokio::io::BufReader::new(
        tokio::fs::File::open(&good).await.unwrap(),
    ))
    .await
    .unwrap();
    assert_eq!(summary.trailer.records, 302);
}

/// 8 writers keep writing while an export runs: the file holds every write
/// acknowledged at or before its revision and none after.
async fn export_under_load(store: Arc<dyn Store>) {
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for writer in 0..8 {
        let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
        writers.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("load/w{writer}/{n:08}");
                let revision = store.put(&key, b"x".to_vec(), None).await.unwrap();
                acknowledged.push((key, revision));
                n += 1;
            }
            acknowledged
        }));
    }
    // Let the writers run, so the export starts in the middle of their writes
    // and spans more than one chunk of the engine's snapshot.
    while store.current_revision().await.unwrap() < 3000 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut out = Vec::new();
    let summary = export(&*store, &mut out).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.await.unwrap());
    }
    let text = String::from_utf8(out).unwrap();
    let exported: std::collections::HashSet<String> = text
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|record| record["key"].as_str().map(str::to_owned))
        .collect();
    let revision = summary.header.revision;
    let before = acknowledged.iter().filter(|(_, r)| *r <= revision).count();
    let after = acknowledged.len() - before;
    assert!(
        before > 0 && after > 0,
        "writes on both sides of the export: {before} / {after}"
    );
    for (key, written) in &acknowledged {
        assert_eq!(
            exported.contains(key),
            *written <= revision,
            "{key} written at {written}, export at {revision}"
        );
    }
    assert_eq!(exported.len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_under_load_holds_exactly_the_writes_up_to_its_revision_redb() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open_redb(dir.path(), LocalStoreOptions::default()).unwrap();
    export_under_load(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_under_load_holds_exactly_the_writes_up_to_its_revision_etcd() {
    let cluster = EtcdCluster::single();
    export_under_load(etcd(&cluster, "/load").await).await;
}
