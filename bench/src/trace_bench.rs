//! Tracing benchmark: OTLP/HTTP protobuf ingest into a real `sluice up`
//! (pinned to one core by bench/trace.sh) with tail decisions, storage and
//! indexing on, in spans per CPU-second of the Sluice process; bytes on disk
//! per span; then a span store of STORED spans (written in process, in the
//! same format), opened by `sluice up`, and the p99 of trace-by-id and of
//! searches over its HTTP API.
//!
//! Spans have 20 attributes each (the shape of the OpenTelemetry Collector's
//! published figure, about 12,000 spans/s per core): 17 of low cardinality
//! (method, route, status, ...) and 3 of high (a request id, a user id, an
//! address), 8 spans a trace, sent in requests of 512 (the SDKs' batch size).
//!
//! Usage: trace-bench SLUICE_BINARY SECONDS STORED_SPANS CPU

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use prost::Message;
use sluice_trace::otlp::{
    AnyValue, ExportTraceServiceRequest, KeyValue, OtlpSpan, Resource, ResourceSpans, ScopeSpans,
    Value as Any,
};
use sluice_trace::span::{Endpoint, Kind, Span};

/// A query: what it is and the path of each request.
type Query = Box<dyn Fn() -> String>;

const SPANS_PER_TRACE: u64 = 8;
const BATCH: u64 = 512;

fn attribute(key: &str, value: String) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Any::String(value)),
        }),
    }
}

/// The 20 attributes of span `i` of a trace.
fn attributes(i: u64) -> Vec<(&'static str, String)> {
    let routes = [
        "/articles/{id}",
        "/users/{id}",
        "/cart",
        "/search",
        "/checkout",
    ];
    vec![
        (
            "http.request.method",
            if i.is_multiple_of(5) { "POST" } else { "GET" }.into(),
        ),
        ("http.route", routes[(i % 5) as usize].into()),
        (
            "http.response.status_code",
            // About 2 % of requests fail.
            if fastrand::u32(..50) == 0 {
                "500"
            } else {
                "200"
            }
            .into(),
        ),
        ("url.scheme", "http".into()),
        ("server.address", "api.example.com".into()),
        ("server.port", "8080".into()),
        ("network.protocol.version", "1.1".into()),
        (
            "user_agent.original",
            "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0".into(),
        ),
        ("deployment.environment", "production".into()),
        ("service.version", "2.14.1".into()),
        ("host.name", format!("web-{}", i % 8)),
        ("k8s.pod.name", format!("shop-7d9f8-{}", i % 8)),
        ("k8s.namespace.name", "shop".into()),
        ("thread.name", format!("worker-{}", i % 16)),
        ("code.function", "handle_request".into()),
        ("code.namespace", "shop.api.handlers".into()),
        ("db.system", "postgresql".into()),
        ("request.id", format!("{:032x}", fastrand::u128(..))),
        ("enduser.id", format!("user-{}", fastrand::u32(..1_000_000))),
        (
            "client.address",
            format!(
                "10.{}.{}.{}",
                fastrand::u8(..),
                fastrand::u8(..),
                fastrand::u8(1..)
            ),
        ),
    ]
}

const SERVICES: [&str; 4] = ["frontend", "cart", "catalog", "payments"];

/// One OTLP request of `BATCH` spans (whole traces), starting at trace `first`.
fn otlp_batch(first: u64, now_ns: u64) -> Vec<u8> {
    let mut spans = Vec::with_capacity(BATCH as usize);
    for n in 0..BATCH {
        let trace = first + n / SPANS_PER_TRACE;
        let i = n % SPANS_PER_TRACE;
        let start = now_ns + i * 1_000_000;
        spans.push(OtlpSpan {
            trace_id: ((u128::from(trace) << 64) | 0x5a5a).to_be_bytes().to_vec(),
            span_id: (i + 1).to_be_bytes().to_vec(),
            trace_state: String::new(),
            parent_span_id: if i == 0 {
                Vec::new()
            } else {
                i.to_be_bytes().to_vec()
            },
            name: format!(
                "GET {}",
                ["/articles/{id}", "/cart", "/search"][(i % 3) as usize]
            ),
            kind: if i.is_multiple_of(2) { 2 } else { 3 },
            start_time_unix_nano: start,
            end_time_unix_nano: start + 1_000_000 + fastrand::u64(..20_000_000),
            attributes: attributes(i)
                .into_iter()
                .map(|(k, v)| attribute(k, v))
                .collect(),
            events: Vec::new(),
            status: None,
        });
    }
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![attribute(
                    "service.name",
                    SERVICES[(first % 4) as usize].into(),
                )],
            }),
            scope_spans: vec![ScopeSpans { scope: None, spans }],
        }],
    }
    .encode_to_vec()
}

/// One trace in Sluice's model, for the store written in process.
fn trace_spans(trace: u64, at_us: u64) -> Vec<Span> {
    (0..SPANS_PER_TRACE)
        .map(|i| Span {
            trace_id: format!("{:032x}", (u128::from(trace) << 64) | 0x5a5a),
            id: format!("{:016x}", i + 1),
            parent_id: (i > 0).then(|| format!("{i:016x}")),
            name: Some(format!(
                "get {}",
                ["/articles/{id}", "/cart", "/search"][(i % 3) as usize]
            )),
            kind: Some(if i % 2 == 0 {
                Kind::Server
            } else {
                Kind::Client
            }),
            timestamp: Some(at_us + i * 1000),
            duration: Some(1000 + fastrand::u64(..20_000)),
            local_endpoint: Some(Endpoint {
                service_name: Some(SERVICES[((trace + i / 2) % 4) as usize].into()),
                ..Endpoint::default()
            }),
            remote_endpoint: None,
            annotations: Vec::new(),
            tags: attributes(i)
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            debug: false,
            shared: false,
        })
        .collect()
}

struct Node {
    child: Child,
    admin: String,
    otlp: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(
    binary: &str,
    data: &std::path::Path,
    cpu: &str,
    config: &std::path::Path,
) -> anyhow::Result<Node> {
    let (admin, otlp, zipkin) = (
        sluice_testkit::free_port(),
        sluice_testkit::free_port(),
        sluice_testkit::free_port(),
    );
    let child = Command::new("taskset")
        .args(["-c", cpu, binary, "up"])
        .args([
            "--gateway",
            &format!("127.0.0.1:{}", sluice_testkit::free_port()),
        ])
        .arg("--data")
        .arg(data)
        .arg("--config")
        .arg(config)
        .args(["--admin", &format!("127.0.0.1:{admin}")])
        .args(["--tracing-otlp", &format!("127.0.0.1:{otlp}")])
        .args(["--tracing-zipkin", &format!("127.0.0.1:{zipkin}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start sluice")?;
    let node = Node {
        child,
        admin: format!("http://127.0.0.1:{admin}"),
        otlp: format!("http://127.0.0.1:{otlp}/v1/traces"),
    };
    let ready = sluice_testkit::wait_until(Duration::from_secs(600), || {
        sluice_testkit::http_get(admin, "/readyz").is_some_and(|r| r.contains(" 200 "))
    });
    anyhow::ensure!(ready, "sluice never became ready");
    Ok(node)
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields
        .get(11)
        .and_then(|u| u.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
    ticks / 100.0
}

async fn status(client: &reqwest::Client, node: &Node) -> anyhow::Result<serde_json::Value> {
    Ok(client
        .get(format!("{}/v1/tracing", node.admin))
        .send()
        .await?
        .json()
        .await?)
}

fn p(latencies: &mut [f64], q: f64) -> f64 {
    latencies.sort_by(f64::total_cmp);
    latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let binary = args
        .get(1)
        .context("usage: trace-bench SLUICE SECONDS STORED CPU")?
        .clone();
    let seconds: u64 = args.get(2).map_or(Ok(10), |s| s.parse())?;
    let stored: u64 = args.get(3).map_or(Ok(10_000_000), |s| s.parse())?;
    let cpu = args.get(4).cloned().unwrap_or_else(|| "0".into());
    let work = tempfile::tempdir()?;
    let config = work.path().join("sluice.toml");
    // Everything stored (the ingest figure is with storage on), a short window.
    std::fs::write(
        &config,
        "[tracing]\nkeep_ratio = 1.0\nwindow = \"1s\"\nmax_mib = 8192\n",
    )?;
    let client = reqwest::Client::new();

    // 1. Ingest.
    let node = start(&binary, &work.path().join("ingest"), &cpu, &config)?;
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64;
    let body_bytes = otlp_batch(1, now_ns).len();
    let next_trace = Arc::new(AtomicU64::new(1));
    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicU64::new(0));
    let pid = node.child.id();
    let cpu_before = cpu_seconds(pid);
    let started = Instant::now();
    let mut senders = Vec::new();
    for sender in 0..8 {
        let _ = sender;
        let (client, url, next_trace, stop, refused) = (
            client.clone(),
            node.otlp.clone(),
            Arc::clone(&next_trace),
            Arc::clone(&stop),
            Arc::clone(&refused),
        );
        senders.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                // Fresh traces in every request.
                let first = next_trace.fetch_add(BATCH / SPANS_PER_TRACE, Ordering::Relaxed);
                let body = otlp_batch(first, now_ns);
                let response = client
                    .post(&url)
                    .header("content-type", "application/x-protobuf")
                    .body(body)
                    .send()
                    .await;
                match response.map(|r| r.status().as_u16()) {
                    Ok(200) => {}
                    Ok(503) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    other => eprintln!("ingest: {other:?}"),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.await?;
    }
    // Until everything taken is decided and written.
    let mut last = status(&client, &node).await?;
    for _ in 0..600 {
        last = status(&client, &node).await?;
        if last["held"] == 0 && last["stored"] == last["received"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_used = cpu_seconds(pid) - cpu_before;
    let stored_spans = last["stored"].as_f64().unwrap_or(0.0);
    println!(
        "ingest: {stored_spans:.0} spans stored in {elapsed:.1} s ({:.0} spans/s wall), {cpu_used:.2} CPU-s of sluice: {:.0} spans per CPU-second; {} requests refused (503); {body_bytes} B per request of {BATCH}",
        stored_spans / elapsed,
        stored_spans / cpu_used.max(1e-9),
        refused.load(Ordering::Relaxed)
    );
    println!(
        "disk: {:.1} B per span ({} spans, {} bytes); OTLP protobuf as sent: {:.1} B per span",
        last["bytes_per_span"].as_f64().unwrap_or(0.0),
        last["spans_stored"],
        last["bytes"],
        body_bytes as f64 / BATCH as f64
    );
    drop(node);

    // 2. Queries over a store of `stored` spans.
    let dir = work.path().join("queries");
    let traces = stored / SPANS_PER_TRACE;
    let write_started = Instant::now();
    {
        let mut store_config = sluice_trace::store::StoreConfig::new(dir.join("traces"));
        store_config.max_bytes = 8 << 30;
        let store = sluice_trace::store::SpanStore::open(store_config)?;
        let base_us = now_ns / 1000 - traces * 10;
        let mut batch = Vec::new();
        for trace in 1..=traces {
            batch.push(trace_spans(trace, base_us + trace * 10));
            if batch.len() == 256 {
                store.append(std::mem::take(&mut batch))?;
            }
        }
        store.append(batch)?;
        store.sync()?;
        let stats = store.stats();
        println!(
            "store: {} spans written in process in {:.1} s ({:.0} spans/s), {:.1} B per span",
            stats.spans,
            write_started.elapsed().as_secs_f64(),
            stats.spans as f64 / write_started.elapsed().as_secs_f64(),
            stats.bytes as f64 / stats.spans.max(1) as f64
        );
    }
    let opened = Instant::now();
    let node = start(&binary, &dir, &cpu, &config)?;
    let ready = opened.elapsed().as_secs_f64();
    // The segments are read in the background: queries wait for all of them.
    while status(&client, &node).await?["loading"] == true {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "open: sluice up ready on {stored} spans in {ready:.1} s, all of them read in {:.1} s; RSS {} MiB",
        opened.elapsed().as_secs_f64(),
        std::fs::read_to_string(format!("/proc/{}/status", node.child.id()))
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .unwrap_or(0)
            / 1024
    );
    let end_ms = now_ns / 1_000_000 + 1000;
    let queries: Vec<(&str, Query)> = vec![
        (
            "trace by id",
            Box::new(move || {
                format!(
                    "/api/v2/trace/{:016x}0000000000005a5a",
                    fastrand::u64(1..=traces)
                )
            }),
        ),
        (
            "search: service, newest 10",
            Box::new(move || {
                format!(
                    "/api/v2/traces?serviceName={}&endTs={end_ms}&limit=10",
                    SERVICES[fastrand::usize(..4)]
                )
            }),
        ),
        (
            "search: service + span name, minDuration 15ms",
            Box::new(move || {
                format!("/api/v2/traces?serviceName={}&spanName=get%20%2Fcart&minDuration=15000&endTs={end_ms}&limit=10", SERVICES[fastrand::usize(..4)])
            }),
        ),
        (
            "search: tag http.response.status_code=500, 1h back",
            Box::new(move || {
                format!("/api/v2/traces?annotationQuery=http.response.status_code%3D500&endTs={end_ms}&lookback=3600000&limit=10")
            }),
        ),
        (
            "dependencies, a day",
            Box::new(move || format!("/api/v2/dependencies?endTs={end_ms}")),
        ),
    ];
    for (what, path) in queries {
        let mut latencies = Vec::new();
        for _ in 0..200 {
            let url = format!("{}{}", node.admin, path());
            let at = Instant::now();
            let response = client.get(&url).send().await?;
            let ok = response.status().as_u16();
            let _ = response.bytes().await?;
            latencies.push(at.elapsed().as_secs_f64() * 1000.0);
            anyhow::ensure!(ok == 200, "{what}: {url} answered {ok}");
        }
        println!(
            "query {what}: p50 {:.2} ms, p99 {:.2} ms",
            p(&mut latencies, 0.5),
            p(&mut latencies, 0.99)
        );
    }
    Ok(())
}
