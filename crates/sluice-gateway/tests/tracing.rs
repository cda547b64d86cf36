//! Trace context through the gateway, over real sockets: a request with a
//! `traceparent` reaches the upstream in the same trace with the gateway's
//! attempt as parent; B3 goes on as B3; a request without a context starts a
//! trace; every answer, the gateway's own included, names its trace in
//! `x-sluice-trace-id`.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use serde_json::Value;
use support::{echo_upstream, Harness};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER: &str = "00f067aa0ba902b7";

async fn get(url: &str, headers: &[(&str, &str)]) -> (u16, Option<String>, Value) {
    let mut request = reqwest::Client::new().get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let trace = response
        .headers()
        .get("x-sluice-trace-id")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, trace, response.json().await.unwrap_or(Value::Null))
}

/// (trace id, parent id, flags) of a `traceparent`.
fn parts(traceparent: &Value) -> (String, String, String) {
    let text = traceparent.as_str().unwrap();
    let fields: Vec<&str> = text.split('-').collect();
    assert_eq!(fields.len(), 4, "{text}");
    assert_eq!(fields[0], "00");
    (fields[1].into(), fields[2].into(), fields[3].into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_joins_the_callers_trace_under_the_gateways_span() {
    let mut gateway = Harness::start().await;
    let echo = echo_upstream("e").await;
    gateway.instances("echo", &[("e", &echo)]).await;
    gateway
        .route(
            "echo",
            r#"{"match": {"path_prefix": "/echo"}, "service": "echo"}"#,
        )
        .await;
    let url = format!("{}/echo", gateway.url);

    // W3C: the same trace, a new parent (the gateway's attempt), tracestate kept.
    let (status, trace, seen) = get(
        &url,
        &[
            ("traceparent", &format!("00-{TRACE}-{CALLER}-01")),
            ("tracestate", "congo=t61rcWkgMzE"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(trace.as_deref(), Some(TRACE));
    let (trace_id, parent, flags) = parts(&seen["headers"]["traceparent"]);
    assert_eq!((trace_id.as_str(), flags.as_str()), (TRACE, "01"));
    assert_ne!(
        parent, CALLER,
        "the upstream's parent is the gateway's span"
    );
    assert_eq!(parent.len(), 16);
    assert_eq!(seen["headers"]["tracestate"], "congo=t61rcWkgMzE");

    // B3 single, 64-bit, not sampled: B3 goes on, the decision is kept.
    let (_, trace, seen) = get(&url, &[("b3", &format!("a3ce929d0e0e4736-{CALLER}-0"))]).await;
    assert_eq!(trace.as_deref(), Some("0000000000000000a3ce929d0e0e4736"));
    let b3 = seen["headers"]["b3"].as_str().unwrap();
    assert!(
        b3.starts_with("a3ce929d0e0e4736-") && b3.contains("-0-"),
        "{b3}"
    );
    let (trace_id, _, flags) = parts(&seen["headers"]["traceparent"]);
    assert_eq!(
        (trace_id.as_str(), flags.as_str()),
        ("0000000000000000a3ce929d0e0e4736", "00")
    );

    // No context, or an invalid one: a new trace, named to the client.
    for headers in [
        vec![],
        vec![(
            "traceparent",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        )],
    ] {
        let (_, trace, seen) = get(&url, &headers).await;
        let trace = trace.unwrap();
        assert_eq!(trace.len(), 32);
        assert_ne!(trace, "0".repeat(32));
        let (trace_id, _, flags) = parts(&seen["headers"]["traceparent"]);
        assert_eq!((trace_id, flags.as_str()), (trace, "01"));
    }

    // The gateway's own answers name their trace too.
    let (status, trace, _) = get(
        &format!("{}/nowhere", gateway.url),
        &[("traceparent", &format!("00-{TRACE}-{CALLER}-01"))],
    )
    .await;
    assert_eq!((status, trace.as_deref()), (404, Some(TRACE)));
}
