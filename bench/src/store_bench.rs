//! Store benchmark: put latency, put→watch-notify latency and concurrent put
//! throughput of Sluice's redb and etcd backends, next to raw etcd driven by its
//! own client in the same run, on the same machine and disk.
//!
//! Usage: `store-bench [OPS]` (default 2000 sequential operations per measurement).
//! Prints a Markdown table for docs/BENCHMARKS.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use etcd_client::{Client, WatchOptions};
use futures::StreamExt;
use hdrhistogram::Histogram;
use sluice_store::{EtcdOptions, EtcdStore, LocalStore, LocalStoreOptions, Store};
use sluice_testkit::EtcdCluster;

/// Concurrent writers in the throughput measurement.
const WRITERS: usize = 32;

struct Row {
    system: String,
    put: Histogram<u64>,
    notify: Histogram<u64>,
    throughput: f64,
}

fn micros(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, 60_000_000_000, 3).unwrap()
}

async fn bench_store(name: &str, store: Arc<dyn Store>, ops: usize) -> Row {
    let value = vec![b'v'; 256];
    // Warm up connections and caches.
    for i in 0..50 {
        store
            .put(&format!("warm/{i}"), value.clone(), None)
            .await
            .unwrap();
    }
    let mut put = histogram();
    for i in 0..ops {
        let started = Instant::now();
        store
            .put(&format!("put/{i:08}"), value.clone(), None)
            .await
            .unwrap();
        put.record(started.elapsed().as_nanos() as u64).unwrap();
    }
    let mut watch = store.watch("notify/", None).await.unwrap();
    let mut notify = histogram();
    for i in 0..ops {
        let started = Instant::now();
        store
            .put(&format!("notify/{i:08}"), value.clone(), None)
            .await
            .unwrap();
        let event = watch.next().await.unwrap().unwrap();
        notify.record(started.elapsed().as_nanos() as u64).unwrap();
        assert_eq!(event.kv.key, format!("notify/{i:08}"));
    }
    let started = Instant::now();
    let per_writer = ops / WRITERS;
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = Arc::clone(&store);
            let value = value.clone();
            tokio::spawn(async move {
                for i in 0..per_writer {
                    store
                        .put(&format!("tp/{w}/{i}"), value.clone(), None)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let throughput = (per_writer * WRITERS) as f64 / started.elapsed().as_secs_f64();
    Row {
        system: name.to_owned(),
        put,
        notify,
        throughput,
    }
}

async fn bench_raw_etcd(endpoint: &str, ops: usize) -> Row {
    let client = Client::connect([format!("http://{endpoint}")], None)
        .await
        .unwrap();
    let value = vec![b'v'; 256];
    let mut c = client.clone();
    for i in 0..50 {
        c.put(format!("/raw/warm/{i}"), value.clone(), None)
            .await
            .unwrap();
    }
    let mut put = histogram();
    for i in 0..ops {
        let started = Instant::now();
        c.put(format!("/raw/put/{i:08}"), value.clone(), None)
            .await
            .unwrap();
        put.record(started.elapsed().as_nanos() as u64).unwrap();
    }
    let mut stream = c
        .watch("/raw/notify/", Some(WatchOptions::new().with_prefix()))
        .await
        .unwrap();
    let mut notify = histogram();
    let mut pending = std::collections::VecDeque::new();
    for i in 0..ops {
        let started = Instant::now();
        c.put(format!("/raw/notify/{i:08}"), value.clone(), None)
            .await
            .unwrap();
        while pending.is_empty() {
            let response = stream.message().await.unwrap().unwrap();
            pending.extend(response.events().iter().map(|_| ()));
        }
        pending.pop_front();
        notify.record(started.elapsed().as_nanos() as u64).unwrap();
    }
    let started = Instant::now();
    let per_writer = ops / WRITERS;
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let mut c = client.clone();
            let value = value.clone();
            tokio::spawn(async move {
                for i in 0..per_writer {
                    c.put(format!("/raw/tp/{w}/{i}"), value.clone(), None)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let throughput = (per_writer * WRITERS) as f64 / started.elapsed().as_secs_f64();
    Row {
        system: "raw etcd (etcd-client)".to_owned(),
        put,
        notify,
        throughput,
    }
}

#[tokio::main]
async fn main() {
    let ops: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("OPS must be a number"))
        .unwrap_or(2000);
    let etcd = EtcdCluster::single();
    let endpoint = etcd.endpoints()[0].clone();
    let dir = tempfile::tempdir().unwrap();

    let mut rows = Vec::new();
    rows.push(bench_raw_etcd(&endpoint, ops).await);
    let etcd_store = EtcdStore::connect(
        std::slice::from_ref(&endpoint),
        "/bench",
        EtcdOptions::default(),
    )
    .await
    .unwrap();
    rows.push(bench_store("Sluice etcd backend", Arc::new(etcd_store), ops).await);
    let redb = LocalStore::open_redb(dir.path(), LocalStoreOptions::default()).unwrap();
    rows.push(bench_store("Sluice redb backend", Arc::new(redb), ops).await);
    drop(etcd);

    let peer_put = micros(&rows[0].put, 0.5);
    let peer_notify = micros(&rows[0].notify, 0.5);
    let peer_tp = rows[0].throughput;
    println!("{ops} sequential 256-byte puts per latency column; {WRITERS} concurrent writers for throughput.\n");
    println!("| system | put p50 (µs) | put p99 (µs) | put→notify p50 (µs) | put→notify p99 (µs) | puts/s, {WRITERS} writers | put p50 vs etcd | notify p50 vs etcd | throughput vs etcd |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in &rows {
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2}× | {:.2}× | {:.2}× |",
            row.system,
            micros(&row.put, 0.5),
            micros(&row.put, 0.99),
            micros(&row.notify, 0.5),
            micros(&row.notify, 0.99),
            row.throughput,
            micros(&row.put, 0.5) / peer_put,
            micros(&row.notify, 0.5) / peer_notify,
            row.throughput / peer_tp,
        );
    }
}
