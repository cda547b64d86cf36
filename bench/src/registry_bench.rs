//! Naming-service benchmark against a real `sluice` process over HTTP, on the redb
//! (embedded) and etcd backends: registration and heartbeat throughput,
//! blocking-query wake latency with 1000 watchers, and memory per instance at
//! 100k instances.
//!
//! Usage: `registry-bench PATH/TO/sluice [INSTANCES]` (default 100000). Prints a
//! Markdown table for docs/BENCHMARKS.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use hdrhistogram::Histogram;
use sluice_testkit::{free_port, http_get, wait_until, EtcdCluster};

const CONCURRENCY: usize = 64;
const WATCHERS: usize = 1000;
const WAKE_ROUNDS: usize = 5;
const EPHEMERAL: usize = 5000;
const HEARTBEATS: usize = 20000;

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
    fn start(binary: &str, args: &[&str]) -> Server {
        let port = free_port();
        let child = Command::new(binary)
            .args(args)
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

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

struct Row {
    backend: String,
    register_per_s: f64,
    ephemeral_register_per_s: f64,
    heartbeat_per_s: f64,
    wake: Histogram<u64>,
    bytes_per_instance: f64,
    instances: usize,
}

async fn run_many(
    client: &reqwest::Client,
    requests: Vec<(reqwest::Method, String, Option<String>)>,
) -> f64 {
    let started = Instant::now();
    let total = requests.len();
    futures::stream::iter(requests)
        .for_each_concurrent(CONCURRENCY, |(method, url, body)| {
            let client = client.clone();
            async move {
                let mut request = client.request(method, &url);
                if let Some(body) = body {
                    request = request
                        .header("content-type", "application/json")
                        .body(body);
                }
                let response = request.send().await.expect("request");
                assert!(
                    response.status().is_success(),
                    "{url}: {}",
                    response.status()
                );
            }
        })
        .await;
    total as f64 / started.elapsed().as_secs_f64()
}

async fn bench(backend: &str, server: &Server, instances: usize) -> Row {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(WATCHERS + CONCURRENCY)
        .build()
        .unwrap();
    let base = &server.url;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = server.rss_kib();
    let register: Vec<_> = (0..instances)
        .map(|i| {
            let url = format!(
                "{base}/v1/namespaces/default/services/svc-{}/instances/i{i}",
                i % 1000
            );
            let body = format!(
                r#"{{"address":"10.{}.{}.{}:8080","labels":{{"version":"v1","zone":"z{}"}}}}"#,
                (i >> 16) & 255,
                (i >> 8) & 255,
                i & 255,
                i % 3
            );
            (reqwest::Method::PUT, url, Some(body))
        })
        .collect();
    let register_per_s = run_many(&client, register).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = server.rss_kib();
    let bytes_per_instance =
        (rss_after.saturating_sub(rss_before) * 1024) as f64 / instances as f64;

    let ephemeral: Vec<_> = (0..EPHEMERAL)
        .map(|i| {
            let url = format!(
                "{base}/v1/namespaces/default/services/eph-{}/instances/e{i}",
                i % 100
            );
            (
                reqwest::Method::PUT,
                url,
                Some(format!(
                    r#"{{"address":"10.0.0.1:{}","ephemeral":true}}"#,
                    1000 + i
                )),
            )
        })
        .collect();
    let ephemeral_register_per_s = run_many(&client, ephemeral).await;
    let heartbeats: Vec<_> = (0..HEARTBEATS)
        .map(|i| {
            let i = i % EPHEMERAL;
            let url = format!(
                "{base}/v1/namespaces/default/services/eph-{}/instances/e{i}/heartbeat",
                i % 100
            );
            (reqwest::Method::PUT, url, None)
        })
        .collect();
    let heartbeat_per_s = run_many(&client, heartbeats).await;

    // Blocking-query wake latency: WATCHERS long polls on one service, one change.
    let mut wake = Histogram::<u64>::new_with_bounds(1_000, 60_000_000_000, 3).unwrap();
    let client = Arc::new(client);
    for round in 0..WAKE_ROUNDS {
        let list_url = format!("{base}/v1/namespaces/default/services/watched/instances");
        let index: u64 = client
            .get(&list_url)
            .send()
            .await
            .unwrap()
            .headers()
            .get("x-sluice-index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        let watchers: Vec<_> = (0..WATCHERS)
            .map(|_| {
                let client = Arc::clone(&client);
                let url = format!("{list_url}?index={index}&wait=60s");
                tokio::spawn(async move {
                    let response = client.get(&url).send().await.unwrap();
                    let _ = response.bytes().await;
                    Instant::now()
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let changed = Instant::now();
        client
            .put(format!("{list_url}/w{round}"))
            .header("content-type", "application/json")
            .body(r#"{"address":"10.9.9.9:80"}"#)
            .send()
            .await
            .unwrap();
        for watcher in watchers {
            let woke = watcher.await.unwrap();
            wake.record(woke.duration_since(changed).as_nanos() as u64)
                .unwrap();
        }
    }
    Row {
        backend: backend.to_owned(),
        register_per_s,
        ephemeral_register_per_s,
        heartbeat_per_s,
        wake,
        bytes_per_instance,
        instances,
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let binary = args
        .next()
        .expect("usage: registry-bench PATH/TO/sluice [INSTANCES]");
    let instances: usize = args
        .next()
        .map(|s| s.parse().expect("INSTANCES"))
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut rows = Vec::new();
    {
        let server = Server::start(&binary, &["up", "--data", data.to_str().unwrap()]);
        rows.push(bench("redb (sluice up)", &server, instances).await);
    }
    {
        let etcd = EtcdCluster::single();
        let url = etcd.url("/bench");
        let server = Server::start(&binary, &["server", "--store", &url]);
        rows.push(bench("etcd (sluice server)", &server, instances).await);
    }
    println!("{CONCURRENCY} concurrent HTTP clients; {EPHEMERAL} ephemeral instances, {HEARTBEATS} heartbeats; {WATCHERS} blocking queries × {WAKE_ROUNDS} changes.\n");
    println!("| backend | register/s (persistent) | register/s (ephemeral) | heartbeats/s | wake p50 (ms) | wake p99 (ms) | RSS per instance at {}k |", instances / 1000);
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for row in &rows {
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.1} | {:.1} | {:.0} B |",
            row.backend,
            row.register_per_s,
            row.ephemeral_register_per_s,
            row.heartbeat_per_s,
            row.wake.value_at_quantile(0.5) as f64 / 1e6,
            row.wake.value_at_quantile(0.99) as f64 / 1e6,
            row.bytes_per_instance,
        );
        let _ = row.instances;
    }
}
