//! Config-center benchmark against a real `sluice server` over HTTP, on the redb
//! (embedded) and etcd backends: publish latency, reads per second, and how long
//! 10,000 long-poll watchers of one item take to all have a publish (from the
//! publish request to the last answer).
//!
//! Usage: `config-bench PATH/TO/sluice [WATCHERS]` (default 10000). Prints a
//! Markdown table for docs/BENCHMARKS.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use sluice_testkit::{free_port, http_get, wait_until, EtcdCluster};

const PUBLISHES: usize = 300;
const READS: usize = 20_000;
const READERS: usize = 32;
const WAKE_ROUNDS: usize = 3;
const ITEM: &str = "/v1/namespaces/default/configs/app/db.yaml";

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// CPU time the server process has used (user + system), in microseconds.
    fn cpu_us(&self) -> u64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command's closing parenthesis: utime is the 12th, stime the 13th.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<u64> = after
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        let ticks = fields.get(10).copied().unwrap_or(0) + fields.get(11).copied().unwrap_or(0);
        ticks * 10_000 // 100 ticks per second
    }

    fn start(binary: &str, store: &str, data: &std::path::Path) -> Server {
        let port = free_port();
        let child = Command::new(binary)
            .args(["server", "--store", store, "--tracing", "false"])
            .arg("--data")
            .arg(data)
            .args(["--admin", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sluice");
        assert!(wait_until(Duration::from_secs(30), || http_get(
            port, "/readyz"
        )
        .is_some_and(|r| r.contains(" 200 "))));
        Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

fn content(n: usize) -> String {
    let mut text = format!("version: {n}\n");
    for i in 0..40 {
        text.push_str(&format!("key_{i}: value-{i}-{n}\n"));
    }
    text
}

async fn publish(client: &reqwest::Client, url: &str, n: usize) -> u64 {
    let body = serde_json::json!({"content": content(n), "format": "yaml"});
    let answer: serde_json::Value = client
        .put(format!("{url}{ITEM}"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["version"].as_u64().expect("a version")
}

fn ms(histogram: &Histogram<u64>, q: f64) -> f64 {
    histogram.value_at_quantile(q) as f64 / 1000.0
}

struct Row {
    backend: &'static str,
    publish: Histogram<u64>,
    reads_per_s: f64,
    wake: Histogram<u64>,
    watchers: usize,
    /// The server's CPU per woken watcher (connect, hold, wake, answer), µs.
    server_cpu_per_watcher_us: f64,
}

async fn measure(backend: &'static str, server: &Server, watchers: usize) -> Row {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(watchers + 100)
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let url = server.url.clone();
    let mut publish_us = Histogram::<u64>::new(3).unwrap();
    let mut version = 0;
    for n in 0..PUBLISHES {
        let started = Instant::now();
        version = publish(&client, &url, n).await;
        publish_us
            .record(started.elapsed().as_micros() as u64)
            .unwrap();
    }

    let started = Instant::now();
    let per_reader = READS / READERS;
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let client = client.clone();
            let url = url.clone();
            tokio::spawn(async move {
                for _ in 0..per_reader {
                    let response = client.get(format!("{url}{ITEM}")).send().await.unwrap();
                    assert_eq!(response.status(), 200);
                    let _ = response.bytes().await.unwrap();
                }
            })
        })
        .collect();
    for reader in readers {
        reader.await.unwrap();
    }
    let reads_per_s = (per_reader * READERS) as f64 / started.elapsed().as_secs_f64();

    let mut wake_us = Histogram::<u64>::new(3).unwrap();
    let cpu_before = server.cpu_us();
    for round in 0..WAKE_ROUNDS {
        let published_at = Arc::new(parking_lot::Mutex::new(None::<Instant>));
        let tasks: Vec<_> = (0..watchers)
            .map(|i| {
                let client = client.clone();
                let url = url.clone();
                let published_at = Arc::clone(&published_at);
                tokio::spawn(async move {
                    let response = client
                        .get(format!(
                            "{url}{ITEM}?version={version}&wait=60s&client_id=w{i}"
                        ))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), 200, "round {round}");
                    let _ = response.bytes().await.unwrap();
                    let at = (*published_at.lock()).expect("answered only after the publish");
                    at.elapsed()
                })
            })
            .collect();
        // Every watcher connected and waiting (loopback connects take well under this).
        tokio::time::sleep(Duration::from_secs(3 + watchers as u64 / 2000)).await;
        *published_at.lock() = Some(Instant::now());
        version = publish(&client, &url, PUBLISHES + round).await;
        for task in tasks {
            wake_us
                .record(task.await.unwrap().as_micros() as u64)
                .unwrap();
        }
    }
    let server_cpu_per_watcher_us =
        (server.cpu_us() - cpu_before) as f64 / (watchers * WAKE_ROUNDS) as f64;
    Row {
        backend,
        publish: publish_us,
        reads_per_s,
        wake: wake_us,
        watchers,
        server_cpu_per_watcher_us,
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let binary = args
        .next()
        .expect("usage: config-bench PATH/TO/sluice [WATCHERS]");
    let watchers: usize = args.next().map_or(10_000, |w| w.parse().expect("WATCHERS"));
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let mut rows = Vec::new();
    {
        let dir = tempfile::tempdir().unwrap();
        let store = format!("redb://{}", dir.path().display());
        let server = Server::start(&binary, &store, dir.path());
        rows.push(measure("redb (embedded)", &server, watchers).await);
    }
    {
        let dir = tempfile::tempdir().unwrap();
        let etcd = EtcdCluster::single();
        let server = Server::start(&binary, &etcd.url("/config-bench"), dir.path());
        rows.push(measure("etcd (1 member)", &server, watchers).await);
    }
    println!("| backend | publish p50 / p99 | reads/s ({READERS} clients) | {} watchers: wake p50 / p99 / last | server CPU per watcher |", watchers);
    println!("|---|---|---|---|---|");
    for row in &rows {
        println!(
            "| {} | {:.2} / {:.2} ms | {:.0} | {:.1} / {:.1} / {:.1} ms | {:.1} µs |",
            row.backend,
            ms(&row.publish, 0.5),
            ms(&row.publish, 0.99),
            row.reads_per_s,
            ms(&row.wake, 0.5),
            ms(&row.wake, 0.99),
            ms(&row.wake, 1.0),
            row.server_cpu_per_watcher_us,
        );
        assert_eq!(row.wake.len() as usize, row.watchers * WAKE_ROUNDS);
    }
}
