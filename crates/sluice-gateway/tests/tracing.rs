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

/// Collects what the gateway records.
#[derive(Default)]
struct Collected(std::sync::Mutex<Vec<Vec<sluice_trace::span::Span>>>);

impl sluice_gateway::SpanSink for Collected {
    fn record(&self, spans: sluice_gateway::RequestSpans) {
        self.0.lock().unwrap().push(spans.build());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampled_requests_leave_a_server_span_and_a_client_span_per_attempt() {
    let collected = std::sync::Arc::new(Collected::default());
    let sink: std::sync::Arc<dyn sluice_gateway::SpanSink> = collected.clone();
    let mut gateway = Harness::with_config(sluice_gateway::GatewayConfig {
        spans: Some(sink),
        ..Default::default()
    })
    .await;
    let echo = echo_upstream("e").await;
    // The first instance refuses connections: the retry is a span of its own.
    let dead = format!("127.0.0.1:{}", sluice_testkit::free_port());
    gateway
        .instances("echo", &[("dead", &dead), ("e", &echo)])
        .await;
    gateway
        .route(
            "echo",
            r#"{"match": {"path_prefix": "/echo"}, "service": "echo", "lb": "round_robin",
                "retries": {"attempts": 2, "on": ["connect_failure"]},
                "apis": ["/echo/{id}"]}"#,
        )
        .await;
    let url = format!("{}/echo/7", gateway.url);
    let mut upstream_parents = Vec::new();
    for _ in 0..2 {
        let (status, _, seen) =
            get(&url, &[("traceparent", &format!("00-{TRACE}-{CALLER}-01"))]).await;
        assert_eq!(status, 200, "{seen}");
        upstream_parents.push(parts(&seen["headers"]["traceparent"]).1);
    }
    // Not sampled: nothing recorded.
    get(&url, &[("traceparent", &format!("00-{TRACE}-{CALLER}-00"))]).await;
    // No route: a SERVER span alone, named by the method.
    get(
        &format!("{}/nowhere", gateway.url),
        &[("traceparent", &format!("00-{TRACE}-{CALLER}-01"))],
    )
    .await;

    let recorded = collected.0.lock().unwrap().clone();
    assert_eq!(recorded.len(), 3, "{recorded:#?}");
    let mut retried = false;
    for (request, spans) in recorded[..2].iter().enumerate() {
        let server = &spans[0];
        assert_eq!(server.kind, Some(sluice_trace::span::Kind::Server));
        assert_eq!(server.trace_id, TRACE);
        assert_eq!(server.parent_id.as_deref(), Some(CALLER));
        assert_eq!(server.name.as_deref(), Some("GET /echo/{id}"));
        assert_eq!(server.service(), Some("sluice-gateway"));
        assert_eq!(server.tags["sluice.route"], "default/echo");
        assert_eq!(server.tags["sluice.service"], "default/echo");
        assert_eq!(server.tags["http.status_code"], "200");
        assert_eq!(
            server.remote_endpoint.as_ref().unwrap().ipv4.as_deref(),
            Some("127.0.0.1")
        );
        let clients = &spans[1..];
        assert!(!clients.is_empty());
        for client in clients {
            assert_eq!(client.kind, Some(sluice_trace::span::Kind::Client));
            assert_eq!(client.parent_id.as_deref(), Some(server.id.as_str()));
            assert_eq!(
                client
                    .remote_endpoint
                    .as_ref()
                    .unwrap()
                    .service_name
                    .as_deref(),
                Some("echo")
            );
        }
        let last = clients.last().unwrap();
        assert_eq!(last.tags["http.status_code"], "200");
        assert_eq!(
            last.id, upstream_parents[request],
            "the upstream's parent is the last attempt"
        );
        if clients.len() == 2 {
            retried = true;
            assert!(clients[0].tags.contains_key("error"), "{clients:#?}");
            assert_ne!(clients[0].id, clients[1].id);
        }
    }
    assert!(
        retried,
        "round robin sent one of the two to the dead instance first"
    );
    let lone = &recorded[2];
    assert_eq!(lone.len(), 1);
    assert_eq!(lone[0].name.as_deref(), Some("GET"));
    assert_eq!(lone[0].tags["http.status_code"], "404");
}
