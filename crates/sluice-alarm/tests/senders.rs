//! Several senders on one store — the control-plane nodes of a cluster sharing
//! etcd — deliver each notification once: a sender claims a notification before
//! delivering it, and the others pass it by.

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use sluice_alarm::notify::{enqueue, pending, run_sender, DeliveryStats, Notification, Target};
use sluice_model::WebhookFormat;
use sluice_store::{LocalStore, LocalStoreOptions, Store};

/// A webhook receiver that takes 200 ms per delivery and records each rule it hears of.
async fn slow_receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let heard = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&heard);
    let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
        let sink = Arc::clone(&sink);
        async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            sink.lock()
                .push(value["rule"].as_str().unwrap_or("?").to_owned());
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, heard)
}

fn notification(rule: &str, url: &str) -> Notification {
    let alarm = serde_json::from_value(serde_json::json!({
        "id": format!("id-{rule}"), "namespace": "default", "rule": rule,
        "labels": {"service": "echo"}, "state": "firing", "value": 1.0, "threshold": 0.5,
        "message": "echo errors", "first_seen": 1_800_000_000u64, "last_seen": 1_800_000_000u64,
        "count": 1, "pending_since": null, "fired_at": 1_800_000_000u64, "resolved_at": null,
        "acknowledged": false, "notified": {}
    }))
    .unwrap();
    Notification {
        namespace: "default".into(),
        notifier: "hook".into(),
        rule: rule.into(),
        created_at: sluice_metrics::unix_now(),
        attempts: 0,
        next_attempt: 0,
        last_error: None,
        target: Target::Webhook {
            url: url.to_owned(),
            format: WebhookFormat::Json,
            headers: BTreeMap::new(),
        },
        alarms: vec![alarm],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_senders_on_one_store_deliver_each_notification_once() {
    let store: Arc<dyn Store> = Arc::new(LocalStore::memory(LocalStoreOptions::default()).unwrap());
    let (url, heard) = slow_receiver().await;
    let rules: Vec<String> = (0..12).map(|i| format!("rule-{i:02}")).collect();
    for rule in &rules {
        enqueue(&*store, &notification(rule, &url)).await.unwrap();
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stats = [
        Arc::new(DeliveryStats::default()),
        Arc::new(DeliveryStats::default()),
    ];
    let senders: Vec<_> = stats
        .iter()
        .map(|stats| {
            tokio::spawn(run_sender(
                Arc::clone(&store),
                Arc::clone(stats),
                stopped.clone(),
            ))
        })
        .collect();
    for _ in 0..300 {
        if pending(&*store, None).await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(pending(&*store, None).await.unwrap().is_empty());
    // Time for a duplicate to arrive, were one on its way.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.send(true).unwrap();
    for sender in senders {
        sender.await.unwrap();
    }
    let mut heard = heard.lock().clone();
    heard.sort();
    assert_eq!(heard, rules, "each notification once");
    let delivered: u64 = stats
        .iter()
        .map(|s| s.delivered.load(std::sync::atomic::Ordering::Relaxed))
        .sum();
    assert_eq!(delivered, 12);
}
