//! A real Prometheus (Debian's package) scrapes Sluice's `/metrics`, and its query
//! API returns the gateway's per-API request counts.

use std::time::Duration;

use crate::support::{echo_upstream, start_prometheus, until_status, Http, Sluice};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_gateways_request_counts() {
    let dir = tempfile::tempdir().unwrap();
    let sluice = Sluice::up_with(dir.path(), &crate::support::FAST_METRICS);
    let api = Http::new(&sluice.url);
    api.register("echo", "e1", &echo_upstream("e1").await).await;
    api.route(
        "echo",
        r#"{"match": {"path_prefix": "/echo"}, "service": "echo"}"#,
    )
    .await;
    let gateway = sluice.gateway.clone().unwrap();
    let client = reqwest::Client::new();
    until_status(&client, &format!("{gateway}/echo"), 200).await;
    for _ in 0..24 {
        let status = client
            .post(format!("{gateway}/echo/x"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
    }
    // The exposition itself: OpenMetrics text.
    let response = client
        .get(format!("{}/metrics", sluice.url))
        .send()
        .await
        .unwrap();
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));

    let target = sluice.url.trim_start_matches("http://");
    let (_prometheus, prometheus) = start_prometheus(
        dir.path(),
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: sluice\n    honor_labels: true\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    );
    let query = r#"sluice_gateway_requests_total{api="POST /echo/x",route="echo",service="echo",code="200"}"#;
    let mut last = serde_json::Value::Null;
    for _ in 0..300 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Ok(response) = client
            .get(format!("{prometheus}/api/v1/query"))
            .query(&[("query", query)])
            .send()
            .await
        else {
            continue;
        };
        let Ok(body) = response.json::<serde_json::Value>().await else {
            continue;
        };
        let value = body["data"]["result"][0]["value"][1]
            .as_str()
            .map(str::to_owned);
        last = body;
        if value.as_deref() == Some("24") {
            let labels = &last["data"]["result"][0]["metric"];
            assert_eq!(labels["namespace"], "default");
            assert_eq!(
                labels["instance"], "e1",
                "Sluice's instance label wins: {last}"
            );
            return;
        }
    }
    panic!("Prometheus never reported 24 requests: {last}");
}
