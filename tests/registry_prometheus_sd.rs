//! An unmodified Prometheus (Debian's package) discovers the instances Sluice knows
//! through `http_sd_configs`, checked through Prometheus's own API.

use std::time::Duration;

use crate::support::{start_prometheus, Http, Sluice};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_discovers_registered_instances() {
    let dir = tempfile::tempdir().unwrap();
    let sluice = Sluice::start(
        "up",
        &["--data", dir.path().join("d").to_str().unwrap()],
        dir.path(),
    );
    let http = Http::new(&sluice.url);
    http.put(
        "/v1/namespaces/default/services/echo/instances/i1",
        r#"{"address":"127.0.0.1:9001","labels":{"version":"v1"}}"#,
    )
    .await;
    http.put(
        "/v1/namespaces/shop/services/cart/instances/c1",
        r#"{"address":"127.0.0.1:9002"}"#,
    )
    .await;

    let (_prometheus, prometheus_url) = start_prometheus(
        dir.path(),
        &format!(
            "global:\n  scrape_interval: 1h\nscrape_configs:\n  - job_name: sluice\n    http_sd_configs:\n      - url: {}/v1/sd/prometheus\n        refresh_interval: 1s\n",
            sluice.url
        ),
    );
    let prometheus = Http::new(&prometheus_url);
    let mut found = false;
    for _ in 0..300 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Ok(response) = reqwest::get(format!("{prometheus_url}/api/v1/targets")).await else {
            continue;
        };
        let Ok(body) = response.json::<serde_json::Value>().await else {
            continue;
        };
        let targets = body["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let labels: Vec<&serde_json::Value> =
            targets.iter().map(|t| &t["discoveredLabels"]).collect();
        let echo = labels.iter().find(|l| l["__address__"] == "127.0.0.1:9001");
        let cart = labels.iter().find(|l| l["__address__"] == "127.0.0.1:9002");
        if let (Some(echo), Some(cart)) = (echo, cart) {
            assert_eq!(echo["__meta_sluice_service"], "echo");
            assert_eq!(echo["__meta_sluice_namespace"], "default");
            assert_eq!(echo["__meta_sluice_label_version"], "v1");
            assert_eq!(echo["__meta_sluice_healthy"], "true");
            assert_eq!(cart["__meta_sluice_namespace"], "shop");
            found = true;
            break;
        }
    }
    assert!(found, "Prometheus did not discover the instances");
    drop(prometheus);
}
