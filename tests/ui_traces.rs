//! The console's tracing pages: requests through the gateway show up in the
//! trace search (slowest and failed), a trace opens as a waterfall with its
//! attributes, the dependency graph is drawn, and the health board's APIs link
//! to their traces.

use std::time::Duration;

use crate::support::{until_status, Http, Sluice, FAST_METRICS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_traces_are_searchable_drawn_and_linked_from_the_board() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = FAST_METRICS.to_vec();
    args.extend(["--tracing-window", "200ms", "--tracing-keep-ratio", "1"]);
    let sluice = Sluice::up_with(dir.path(), &args);
    let api = Http::new(&sluice.url);
    api.echo_service_with_two_instances().await;
    let gateway = sluice.gateway.clone().unwrap();
    let client = reqwest::Client::new();
    until_status(&client, &format!("{gateway}/echo"), 200).await;
    let response = client
        .get(format!("{gateway}/echo/7"))
        .send()
        .await
        .unwrap();
    let trace = response.headers()["x-sluice-trace-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let mut spans = serde_json::Value::Null;
    for _ in 0..100 {
        let (status, _, body) = api
            .send("GET", &format!("/api/v2/trace/{trace}"), None)
            .await;
        if status == 200 {
            spans = body;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let server = spans
        .as_array()
        .and_then(|s| s.iter().find(|s| s["kind"] == "SERVER"))
        .unwrap_or_else(|| panic!("no SERVER span in {spans}"))
        .clone();
    let api_name = server["name"].as_str().unwrap().to_owned();

    let page = |path: String| {
        let (client, url) = (client.clone(), sluice.url.clone());
        async move {
            let response = client.get(format!("{url}{path}")).send().await.unwrap();
            assert_eq!(response.status(), 200, "{path}");
            response.text().await.unwrap()
        }
    };
    let search = page("/ui/traces?service=sluice-gateway&range=5m".into()).await;
    assert!(
        search.contains(&trace) && search.contains("Slowest") && search.contains(&api_name),
        "{search}"
    );
    let failed_only = page("/ui/traces?service=sluice-gateway&errors=1".into()).await;
    assert!(
        failed_only.contains("No trace matches"),
        "no request failed"
    );
    let waterfall = page(format!("/ui/traces/{trace}")).await;
    for needle in [
        "sluice-gateway",
        "class=\"bar\"",
        "http.status_code",
        "SERVER",
        "CLIENT",
        "remote",
    ] {
        assert!(waterfall.contains(needle), "{needle} in {waterfall}");
    }
    let graph = page("/ui/dependencies".into()).await;
    for needle in ["<svg", "sluice-gateway", ">echo<", "calls"] {
        assert!(graph.contains(needle), "{needle} in {graph}");
    }
    let missing = client
        .get(format!("{}/ui/traces/{}", sluice.url, "3".repeat(32)))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    // The board's API rows link to their traces, once the step is recorded.
    let mut board = String::new();
    for _ in 0..100 {
        board = page("/ui/services/echo".into()).await;
        if board.contains("/ui/traces?service=sluice-gateway") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        board.contains("/ui/traces?service=sluice-gateway&amp;api="),
        "{board}"
    );
}
