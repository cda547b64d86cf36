//! The overload benchmark's two halves.
//!
//! `overload upstream PORT C L_MS` — an upstream with a fixed capacity: at most C
//! requests in service at once, each taking L ms; more wait in a FIFO queue.
//!
//! `overload load SECONDS L_MS URL=RATE [URL=RATE ...]` — an open-loop load
//! generator: each URL gets RATE requests per second on a fixed schedule whether or
//! not earlier ones were answered (new connections as needed), latency measured
//! from the scheduled time. Requests unanswered after 2 s count as failed. Prints
//! one line per URL: `url sent ok ok_within_5L rejected p50_ms p99_ms` (latencies
//! of successful answers).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    match args.get(1).map(String::as_str) {
        Some("upstream") => runtime.block_on(upstream(
            args[2].parse().expect("PORT"),
            args[3].parse().expect("C"),
            args[4].parse().expect("L_MS"),
        )),
        Some("load") => runtime.block_on(load(
            args[2].parse().expect("SECONDS"),
            args[3].parse().expect("L_MS"),
            &args[4..],
        )),
        _ => {
            eprintln!(
                "usage: overload upstream PORT C L_MS | overload load SECONDS L_MS URL=RATE..."
            );
            std::process::exit(2);
        }
    }
}

async fn upstream(port: u16, capacity: usize, latency_ms: u64) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    sluice_testkit::upstream::capacity_upstream(
        listener,
        capacity,
        Duration::from_millis(latency_ms),
    )
    .await;
}

#[derive(Default)]
struct Tally {
    sent: u64,
    ok: u64,
    ok_within: u64,
    rejected: u64,
    latencies: Vec<Duration>,
}

async fn load(seconds: u64, latency_ms: u64, targets: &[String]) {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(10_000)
        .build_http();
    let start = Instant::now() + Duration::from_millis(100);
    let end = start + Duration::from_secs(seconds);
    let within = Duration::from_millis(5 * latency_ms);
    let mut schedules = Vec::new();
    for target in targets {
        let (url, rate) = target.split_once('=').expect("URL=RATE");
        let url: hyper::Uri = url.parse().expect("URL");
        let rate: f64 = rate.parse().expect("RATE");
        let client = client.clone();
        schedules.push(tokio::spawn(async move {
            let interval = Duration::from_secs_f64(1.0 / rate);
            let mut due = start;
            let mut requests = Vec::new();
            while due < end {
                tokio::time::sleep_until(due.into()).await;
                let request = hyper::Request::get(url.clone())
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                let response = client.request(request);
                let scheduled = due;
                requests.push(tokio::spawn(async move {
                    let answer = tokio::time::timeout(Duration::from_secs(2), async {
                        let response = response.await.ok()?;
                        let status = response.status().as_u16();
                        response.into_body().collect().await.ok()?;
                        Some(status)
                    })
                    .await
                    .ok()
                    .flatten();
                    (answer, scheduled.elapsed())
                }));
                due += interval;
            }
            let mut tally = Tally::default();
            for request in requests {
                let (answer, latency) = request.await.unwrap();
                tally.sent += 1;
                match answer {
                    Some(200) => {
                        tally.ok += 1;
                        if latency <= within {
                            tally.ok_within += 1;
                        }
                        tally.latencies.push(latency);
                    }
                    Some(_) => tally.rejected += 1,
                    None => {}
                }
            }
            (url, tally)
        }));
    }
    for schedule in schedules {
        let (url, mut tally) = schedule.await.unwrap();
        tally.latencies.sort();
        let at = |q: f64| {
            if tally.latencies.is_empty() {
                return f64::NAN;
            }
            let index =
                ((tally.latencies.len() as f64 * q) as usize).min(tally.latencies.len() - 1);
            tally.latencies[index].as_secs_f64() * 1000.0
        };
        println!(
            "{url} {} {} {} {} {:.1} {:.1}",
            tally.sent,
            tally.ok,
            tally.ok_within,
            tally.rejected,
            at(0.5),
            at(0.99)
        );
    }
}
