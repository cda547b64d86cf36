//! Error-report ingest rate: concurrent clients post Sentry envelopes (one event
//! each; 1 in 100 a new kind of error) to a running Sluice for a while.
//!
//! Usage: `errors-bench ADMIN_URL KEY PROJECT [SECONDS] [CLIENTS]` → prints events/s and
//! how many of the accepted events the groups count (all of them, when none is lost).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn envelope(i: u64) -> String {
    let function = if i.is_multiple_of(100) {
        format!("rare_{i}")
    } else {
        "charge".to_owned()
    };
    let event = serde_json::json!({
        "event_id": format!("{i:032x}"),
        "platform": "python",
        "exception": {"values": [{
            "type": "ZeroDivisionError",
            "value": "division by zero",
            "stacktrace": {"frames": [
                {"function": "<module>", "module": "__main__", "lineno": 3, "in_app": true},
                {"function": function, "module": "app.pay", "lineno": 10, "in_app": true}
            ]}
        }]}
    })
    .to_string();
    format!(
        "{{\"event_id\":\"{i:032x}\"}}\n{{\"type\":\"event\",\"length\":{}}}\n{event}\n",
        event.len()
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (url, key, project) = (args[1].clone(), args[2].clone(), args[3].clone());
    let seconds: u64 = args.get(4).map_or(10, |s| s.parse().unwrap());
    let clients: usize = args.get(5).map_or(16, |s| s.parse().unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let http = reqwest::Client::new();
        let sent = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let end = Instant::now() + Duration::from_secs(seconds);
        let tasks: Vec<_> = (0..clients)
            .map(|c| {
                let (http, url, key, project) = (http.clone(), url.clone(), key.clone(), project.clone());
                let (sent, failed) = (Arc::clone(&sent), Arc::clone(&failed));
                tokio::spawn(async move {
                    let mut i = c as u64;
                    while Instant::now() < end {
                        let response = http
                            .post(format!("{url}/api/{project}/envelope/"))
                            .header("x-sentry-auth", format!("Sentry sentry_key={key}, sentry_version=7"))
                            .body(envelope(i))
                            .send()
                            .await;
                        match response {
                            Ok(r) if r.status().is_success() => sent.fetch_add(1, Ordering::Relaxed),
                            _ => failed.fetch_add(1, Ordering::Relaxed),
                        };
                        i += clients as u64;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let sent = sent.load(Ordering::Relaxed);
        // Every accepted event must be counted in its group.
        let listed: serde_json::Value = http
            .get(format!("{url}/v1/namespaces/default/errors"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let counted: u64 = listed["items"]
            .as_array()
            .map(|groups| groups.iter().filter_map(|g| g["count"].as_u64()).sum())
            .unwrap_or(0);
        println!(
            "| error reports ingested ({clients} clients, {seconds} s) | {:.0} events/s ({} failed; {counted} of {sent} counted in their groups) |",
            sent as f64 / seconds as f64,
            failed.load(Ordering::Relaxed)
        );
    });
}
