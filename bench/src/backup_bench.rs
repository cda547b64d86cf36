//! Backup benchmark: export and import rate (records/s) and file size per record
//! of `sluice_store::backup`, on the redb and etcd backends, for a store holding
//! INSTANCES persistent instances and RESOURCES routes; next to etcd's own
//! `etcdctl snapshot save` of the same data, in the same run.
//!
//! Usage: `backup-bench [INSTANCES] [RESOURCES]` (default 100000 10000).
//! Prints a Markdown table for docs/BENCHMARKS.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_store::backup::{export, import_file, ImportOptions};
use sluice_store::{EtcdOptions, EtcdStore, LocalStore, LocalStoreOptions, Store, Txn, TxnOp};
use sluice_testkit::EtcdCluster;

struct Row {
    system: String,
    records: u64,
    export: Duration,
    import: Option<Duration>,
    bytes: u64,
}

/// Fills `store` as a team's would be: instances spread over 100 services, and routes.
async fn fill(store: &dyn Store, instances: usize, resources: usize) {
    let mut txn = Txn::new();
    let flush = |txn: &mut Txn| std::mem::take(txn);
    for i in 0..instances {
        let value = format!(
            r#"{{"address":"10.{}.{}.{}:8080","ephemeral":false,"weight":100,"labels":{{"zone":"z{}","version":"v1"}},"metadata":{{}},"draining":false}}"#,
            i / 65536 % 256,
            i / 256 % 256,
            i % 256,
            i % 3
        );
        txn.ops.push(TxnOp::put(
            format!("svc/default/svc{:03}/inst/i{i:07}", i % 100),
            value,
        ));
        if txn.ops.len() == sluice_store::MAX_TXN_OPS {
            store.txn(flush(&mut txn)).await.unwrap();
        }
    }
    for i in 0..resources {
        let value = format!(
            r#"{{"kind":"Route","metadata":{{"namespace":"default","name":"r{i:05}","revision":0}},"spec":{{"match":{{"path_prefix":"/api/r{i:05}"}},"service":"svc{:03}","retries":{{"attempts":2,"on":["connect_failure"]}}}}}}"#,
            i % 100
        );
        txn.ops
            .push(TxnOp::put(format!("res/Route/default/r{i:05}"), value));
        if txn.ops.len() == sluice_store::MAX_TXN_OPS {
            store.txn(flush(&mut txn)).await.unwrap();
        }
    }
    if !txn.ops.is_empty() {
        store.txn(txn).await.unwrap();
    }
}

async fn bench(system: &str, source: Arc<dyn Store>, target: Arc<dyn Store>, file: &Path) -> Row {
    let started = Instant::now();
    let mut out = tokio::io::BufWriter::with_capacity(
        256 * 1024,
        tokio::fs::File::create(file).await.unwrap(),
    );
    let summary = export(&*source, &mut out).await.unwrap();
    let export_time = started.elapsed();
    let bytes = std::fs::metadata(file).unwrap().len();
    let started = Instant::now();
    import_file(&*target, file, ImportOptions::default(), &mut |_, _| {})
        .await
        .unwrap();
    Row {
        system: system.to_owned(),
        records: summary.trailer.records,
        export: export_time,
        import: Some(started.elapsed()),
        bytes,
    }
}

fn rate(records: u64, time: Duration) -> String {
    format!("{:.0}", records as f64 / time.as_secs_f64())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("INSTANCES RESOURCES"))
        .collect();
    let instances = args.first().copied().unwrap_or(100_000);
    let resources = args.get(1).copied().unwrap_or(10_000);
    let dir = tempfile::tempdir().unwrap();
    let mut rows = Vec::new();

    let source: Arc<dyn Store> = Arc::new(
        LocalStore::open_redb(&dir.path().join("redb-a"), LocalStoreOptions::default()).unwrap(),
    );
    let target: Arc<dyn Store> = Arc::new(
        LocalStore::open_redb(&dir.path().join("redb-b"), LocalStoreOptions::default()).unwrap(),
    );
    fill(&*source, instances, resources).await;
    rows.push(
        bench(
            "Sluice on redb",
            source,
            target,
            &dir.path().join("redb.jsonl"),
        )
        .await,
    );

    let cluster = EtcdCluster::single();
    let connect = |prefix: &'static str| {
        let endpoints = cluster.endpoints();
        async move {
            let store: Arc<dyn Store> = Arc::new(
                EtcdStore::connect(&endpoints, prefix, EtcdOptions::default())
                    .await
                    .unwrap(),
            );
            store
        }
    };
    let source = connect("/a").await;
    fill(&*source, instances, resources).await;
    rows.push(
        bench(
            "Sluice on etcd",
            source,
            connect("/b").await,
            &dir.path().join("etcd.jsonl"),
        )
        .await,
    );

    // etcd's own snapshot of the same member (which holds both copies by then:
    // its figures are per record of that whole database).
    let snapshot = dir.path().join("etcd.snapshot");
    let started = Instant::now();
    let status = std::process::Command::new("etcdctl")
        .args([
            "--endpoints",
            &cluster.endpoints().join(","),
            "snapshot",
            "save",
        ])
        .arg(&snapshot)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("etcdctl");
    assert!(status.success(), "etcdctl snapshot save failed");
    rows.push(Row {
        system: "etcdctl snapshot save (both copies)".into(),
        records: 2 * (instances + resources) as u64,
        export: started.elapsed(),
        import: None,
        bytes: std::fs::metadata(&snapshot).unwrap().len(),
    });

    println!(
        "{instances} instances + {resources} routes; machine: {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!();
    println!(
        "| system | records | export (records/s) | import (records/s) | file bytes / record |"
    );
    println!("|---|---:|---:|---:|---:|");
    for row in rows {
        println!(
            "| {} | {} | {} ({:.2} s) | {} | {:.0} |",
            row.system,
            row.records,
            rate(row.records, row.export),
            row.export.as_secs_f64(),
            row.import.map_or("—".to_owned(), |t| format!(
                "{} ({:.2} s)",
                rate(row.records, t),
                t.as_secs_f64()
            )),
            row.bytes as f64 / row.records.max(1) as f64
        );
    }
}
