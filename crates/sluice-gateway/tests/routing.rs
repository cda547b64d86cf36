//! Routing in-process: precedence between routes, rewrites, the proxy headers the
//! upstream gets, round-robin over instances, and the gateway's own answers
//! (no route, no instance) — the request path through real sockets, no process.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use serde_json::Value;
use support::{echo_upstream, Harness};

async fn get(url: &str) -> (u16, Value) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_longest_prefix_wins_and_rewrites_and_proxy_headers_apply() {
    let mut gateway = Harness::start().await;
    let (a, b) = (echo_upstream("a").await, echo_upstream("b").await);
    gateway.instances("wide", &[("a", &a)]).await;
    gateway.instances("narrow", &[("b", &b)]).await;
    gateway
        .route(
            "wide",
            r#"{"match": {"path_prefix": "/api"}, "service": "wide"}"#,
        )
        .await;
    gateway
        .route(
            "narrow",
            r#"{"match": {"path_prefix": "/api/v2"}, "service": "narrow",
                "rewrite": {"strip_prefix": true, "add_headers": {"x-team": "blue"}}}"#,
        )
        .await;
    let url = &gateway.url;

    let (status, wide) = get(&format!("{url}/api/items?page=2")).await;
    assert_eq!(status, 200);
    assert_eq!(wide["upstream"], "a");
    assert_eq!(
        wide["uri"], "/api/items?page=2",
        "no rewrite: path and query as sent"
    );
    let headers = &wide["headers"];
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(headers["x-forwarded-host"], "127.0.0.1");
    assert_eq!(headers["x-request-id"].as_str().unwrap().len(), 32);

    let (status, narrow) = get(&format!("{url}/api/v2/items?page=3")).await;
    assert_eq!(status, 200);
    assert_eq!(narrow["upstream"], "b", "the longer prefix wins");
    assert_eq!(narrow["uri"], "/items?page=3", "the prefix is stripped");
    assert_eq!(narrow["headers"]["x-team"], "blue");

    let (status, none) = get(&format!("{url}/elsewhere")).await;
    assert_eq!(status, 404);
    assert_eq!(none["error"]["code"], "no_route");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_requests_and_a_service_without_instances_is_503() {
    let mut gateway = Harness::start().await;
    let (a, b) = (echo_upstream("a").await, echo_upstream("b").await);
    gateway.instances("echo", &[("a", &a), ("b", &b)]).await;
    gateway
        .route(
            "echo",
            r#"{"match": {"path_prefix": "/echo"}, "service": "echo"}"#,
        )
        .await;
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..10 {
        let (status, body) = get(&format!("{}/echo", gateway.url)).await;
        assert_eq!(status, 200);
        *seen
            .entry(body["upstream"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    assert_eq!(seen.get("a"), Some(&5), "{seen:?}");
    assert_eq!(seen.get("b"), Some(&5), "{seen:?}");

    gateway.instances("echo", &[]).await;
    let (status, body) = get(&format!("{}/echo", gateway.url)).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "no_healthy_upstream");
}
