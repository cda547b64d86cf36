//! An unmodified Prometheus (Debian's package) discovers the instances Sluice knows
//! through `http_sd_configs`, checked through Prometheus's own API.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{Http, Peer, Sluice};

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

    let binary = sluice_testkit::find_program("prometheus").expect(
        "prometheus is not installed: run scripts/test.sh (it installs Debian's prometheus)",
    );
    let port = sluice_testkit::free_port();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1h\nscrape_configs:\n  - job_name: sluice\n    http_sd_configs:\n      - url: {}/v1/sd/prometheus\n        refresh_interval: 1s\n",
            sluice.url
        ),
    )
    .unwrap();
    let _prometheus = Peer::spawn(
        Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let prometheus = Http::new(&format!("http://127.0.0.1:{port}"));
    let mut found = false;
    for _ in 0..300 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Ok(response) = reqwest::get(format!("http://127.0.0.1:{port}/api/v1/targets")).await
        else {
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
