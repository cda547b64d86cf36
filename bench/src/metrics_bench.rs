//! Metrics benchmarks: the health-board query over many APIs, disk bytes per series
//! per day, the recorder's cost per request, and the gateway's cost of naming the
//! API a request called (a declared template, an automatic name).
//!
//! Usage: `metrics-bench [APIS]` (default 10000). Prints a Markdown table.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_metrics::recorder::{Recorder, RequestSample, StepSource};
use sluice_metrics::rrd::default_tiers;
use sluice_metrics::{query, Db, DbConfig};

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Nanoseconds per request to name its API: through a declared template (four on
/// the route), and through a known automatic name (a UUID segment normalised).
fn naming_ns() -> (f64, f64) {
    use sluice_gateway::api_names::{ApiNamer, NamingSettings};
    let namer = ApiNamer::new(
        "default/articles".into(),
        NamingSettings {
            apis: [
                "/static/{*path}",
                "/articles/new",
                "/articles/{id}",
                "/articles/{id}/comments",
            ]
            .map(str::to_owned)
            .to_vec(),
            max_apis: 200,
            strip_prefix: None,
        },
    );
    let method = hyper::Method::GET;
    let templated: Vec<String> = (0..1000).map(|i| format!("/articles/{i}")).collect();
    let automatic: Vec<String> = (0..1000)
        .map(|i| format!("/users/6f1c2d3e-4b5a-4c6d-8e7f-{i:012}/orders"))
        .collect();
    let time = |paths: &[String]| {
        let rounds = 2_000_000;
        let started = Instant::now();
        for i in 0..rounds {
            std::hint::black_box(namer.name(&method, &paths[i % paths.len()]));
        }
        started.elapsed().as_nanos() as f64 / rounds as f64
    };
    time(&automatic);
    (time(&templated), time(&automatic))
}

fn main() {
    let apis: usize = std::env::args()
        .nth(1)
        .map_or(10_000, |a| a.parse().expect("APIS is a number"));
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(
        Db::open(DbConfig {
            dir: dir.path().join("metrics"),
            tiers: default_tiers(),
            max_series: apis * 3 + 100,
        })
        .unwrap(),
    );

    // Recording: one thread, requests spread over all APIs.
    let recorder = Recorder::new(apis + 100);
    let routes: Vec<String> = (0..apis).map(|i| format!("r{i}")).collect();
    let names: Vec<String> = (0..apis)
        .map(|i| format!("GET /r{i}/items/{{id}}"))
        .collect();
    let services: Vec<String> = (0..100).map(|i| format!("s{i}")).collect();
    let sample = |i: usize| RequestSample {
        namespace: "default",
        route: &routes[i % apis],
        api: &names[i % apis],
        service: &services[i % 100],
        instance: "i1",
        status: if i.is_multiple_of(50) { 503 } else { 200 },
        latency: Duration::from_micros(2_000 + (i as u64 * 7919) % 50_000),
        rejected: None,
        trace_id: None,
    };
    for i in 0..apis {
        recorder.record(&sample(i));
    }
    recorder.drain();
    let requests = 2_000_000;
    let started = Instant::now();
    for i in 0..requests {
        recorder.record(&sample(i));
    }
    let record_ns = started.elapsed().as_nanos() as f64 / requests as f64;
    let (template_ns, automatic_ns) = naming_ns();

    // Five minutes of 10 s steps for every API.
    let now = sluice_metrics::unix_now();
    let now = now - now % 10;
    let started = Instant::now();
    for step in 0..30u64 {
        for i in 0..apis * 20 {
            recorder.record(&sample(i));
        }
        let time = now - 300 + step * 10;
        for (key, agg) in recorder.drain() {
            db.add(&key, time, &agg).unwrap();
        }
    }
    let write_s = started.elapsed().as_secs_f64();
    let series = db.disk_use().series;

    let board_ms = median(
        (0..5)
            .map(|_| {
                let started = Instant::now();
                let board = query::health(&db, "default", None, 300, now).unwrap();
                assert_eq!(board.signals.top_apis.len(), 10);
                started.elapsed()
            })
            .collect(),
    )
    .as_secs_f64()
        * 1000.0;
    let service_ms = median(
        (0..5)
            .map(|_| {
                let started = Instant::now();
                query::health(&db, "default", Some("s7"), 300, now).unwrap();
                started.elapsed()
            })
            .collect(),
    )
    .as_secs_f64()
        * 1000.0;

    // One day of 10 s steps into one counter and one histogram series.
    let day_dir = tempfile::tempdir().unwrap();
    let day_db = Db::open(DbConfig {
        dir: day_dir.path().to_owned(),
        tiers: default_tiers(),
        max_series: 10,
    })
    .unwrap();
    let day_recorder = Recorder::new(10);
    for step in 0..8640u64 {
        for i in 0..20 {
            day_recorder.record(&RequestSample {
                status: 200,
                ..sample(i * apis)
            });
        }
        for (key, agg) in day_recorder.drain() {
            day_db.add(&key, now - 86_400 + step * 10, &agg).unwrap();
        }
    }
    let mut files: Vec<(String, u64, u64)> = std::fs::read_dir(day_dir.path())
        .unwrap()
        .flatten()
        .map(|entry| {
            let meta = entry.metadata().unwrap();
            let rrd = sluice_metrics::rrd::Rrd::open(&entry.path()).unwrap();
            (rrd.key().name.clone(), meta.len(), meta.blocks() * 512)
        })
        .collect();
    files.sort();

    println!("| measure | value |");
    println!("|---|---:|");
    println!("| recording one request (one thread, {apis} APIs) | {record_ns:.0} ns |");
    println!(
        "| naming its API: a declared template (`/articles/{{id}}` of 4) | {template_ns:.0} ns |"
    );
    println!("| naming its API: a known automatic name (`/users/{{id}}/orders`) | {automatic_ns:.0} ns |");
    println!("| series after 5 minutes of {apis} APIs | {series} |");
    println!(
        "| writing 30 steps of them | {write_s:.1} s ({:.0} µs per series-step) |",
        write_s * 1e6 / (30.0 * series as f64)
    );
    println!("| health board, namespace of {apis} APIs, 5 min window | {board_ms:.0} ms |");
    println!(
        "| health board, one service ({} APIs), 5 min window | {service_ms:.0} ms |",
        apis / 100
    );
    for (name, size, allocated) in files {
        println!(
            "| {name} series: file size (fixed) / allocated after one day | {:.2} MiB / {:.2} MiB |",
            size as f64 / 1048576.0,
            allocated as f64 / 1048576.0
        );
    }
}
