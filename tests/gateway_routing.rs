//! The gateway inside `sluice up`: routes to registered instances over HTTP/1.1 and
//! h2c, with precedence, rewrites, proxy headers, draining, and hot reload.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use crate::support::{echo_upstream, until_status, Http, Sluice};

async fn via(client: &reqwest::Client, url: &str) -> (u16, Value) {
    let response = client.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_balance_rewrite_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    let sluice = Sluice::up(dir.path());
    let gateway = sluice.gateway.clone().unwrap();
    let api = Http::new(&sluice.url);
    let (a, b, c) = (
        echo_upstream("a").await,
        echo_upstream("b").await,
        echo_upstream("c").await,
    );
    api.register("echo", "a", &a).await;
    api.register("echo", "b", &b).await;
    api.register("other", "c", &c).await;

    // The minimal contract: /echo... goes to the healthy instances of echo.
    api.put(
        "/v1/namespaces/default/resources/Route/echo",
        r#"{"spec": {"match": {"path_prefix": "/echo"}, "service": "echo"}}"#,
    )
    .await;
    let client = reqwest::Client::new();
    let first = until_status(&client, &format!("{gateway}/echo/x?y=1"), 200).await;
    assert_eq!(first["path"], "/echo/x");
    assert_eq!(first["query"], "y=1");
    // Round robin over the two instances.
    let mut seen = HashMap::new();
    for _ in 0..10 {
        let (_, body) = via(&client, &format!("{gateway}/echo")).await;
        *seen
            .entry(body["instance"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    assert_eq!(seen.get("a"), Some(&5), "{seen:?}");
    assert_eq!(seen.get("b"), Some(&5), "{seen:?}");

    // Proxy headers, request id, hop-by-hop stripping.
    let response = client
        .get(format!("{gateway}/echo"))
        .header("connection", "x-secret")
        .header("x-secret", "hop")
        .header("x-request-id", "req-123")
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    let headers = &body["headers"];
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(headers["x-request-id"], "req-123");
    assert!(
        headers.get("x-secret").is_none(),
        "headers named by Connection are hop-by-hop: {headers}"
    );
    let (_, body) = via(&client, &format!("{gateway}/echo")).await;
    assert_eq!(
        body["headers"]["x-request-id"].as_str().unwrap().len(),
        32,
        "generated when absent"
    );

    // h2c (prior knowledge) on the same port.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let response = h2.get(format!("{gateway}/echo/h2")).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["path"], "/echo/h2");

    // Precedence and rewrites: a longer prefix wins, an exact path wins over both.
    api.put(
        "/v1/namespaces/default/resources/Route/echo-admin",
        r#"{"spec": {"match": {"path_prefix": "/echo/admin"}, "service": "other",
            "rewrite": {"strip_prefix": true, "add_headers": {"x-added": "yes"}, "remove_headers": ["x-drop"]}}}"#,
    )
    .await;
    api.put(
        "/v1/namespaces/default/resources/Route/echo-exact",
        r#"{"spec": {"match": {"path": "/echo/admin/health", "methods": ["GET"]}, "service": "other", "rewrite": {"replace_path": "/healthz"}}}"#,
    )
    .await;
    let body = until_status(&client, &format!("{gateway}/echo/admin/users"), 200).await;
    for _ in 0..100 {
        if via(&client, &format!("{gateway}/echo/admin/users")).await.1["instance"] == "c" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let response = client
        .get(format!("{gateway}/echo/admin/users"))
        .header("x-drop", "1")
        .send()
        .await
        .unwrap();
    let body2: Value = response.json().await.unwrap();
    assert_eq!(body2["instance"], "c", "{body} {body2}");
    assert_eq!(body2["path"], "/users", "strip_prefix");
    assert_eq!(body2["headers"]["x-added"], "yes");
    assert!(body2["headers"].get("x-drop").is_none());
    // The two routes may reach the gateway in separate snapshots: wait for the second.
    let mut exact = Value::Null;
    for _ in 0..200 {
        exact = via(&client, &format!("{gateway}/echo/admin/health"))
            .await
            .1;
        if exact["path"] == "/healthz" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        exact["path"], "/healthz",
        "the exact route wins and replaces the path"
    );
    let (_, other) = via(&client, &format!("{gateway}/echo/plain")).await;
    assert_ne!(
        other["instance"], "c",
        "the shorter prefix still takes the rest"
    );

    // Draining takes an instance out of rotation.
    let (status, _, _) = api
        .send(
            "PATCH",
            "/v1/namespaces/default/services/echo/instances/a",
            Some(r#"{"draining": true}"#),
        )
        .await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..6 {
        let (_, body) = via(&client, &format!("{gateway}/echo")).await;
        assert_eq!(body["instance"], "b");
    }
    // No healthy instance: 503 with a JSON error; no route: 404.
    api.send(
        "PATCH",
        "/v1/namespaces/default/services/echo/instances/b",
        Some(r#"{"draining": true}"#),
    )
    .await;
    let body = until_status(&client, &format!("{gateway}/echo"), 503).await;
    assert_eq!(body["error"]["code"], "no_healthy_upstream");
    let (status, body) = via(&client, &format!("{gateway}/nothing-here")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("no_route"))
    );

    // Hot reload: pointing the route elsewhere applies to new requests.
    api.put(
        "/v1/namespaces/default/resources/Route/echo",
        r#"{"spec": {"match": {"path_prefix": "/echo"}, "service": "other"}}"#,
    )
    .await;
    let body = until_status(&client, &format!("{gateway}/echo"), 200).await;
    assert_eq!(body["instance"], "c");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_refuses_connections_gets_a_502() {
    let dir = tempfile::tempdir().unwrap();
    let sluice = Sluice::up(dir.path());
    let gateway = sluice.gateway.clone().unwrap();
    let api = Http::new(&sluice.url);
    let dead = sluice_testkit::free_port();
    api.put(
        "/v1/namespaces/default/services/gone/instances/x",
        &format!(r#"{{"address":"127.0.0.1:{dead}"}}"#),
    )
    .await;
    api.put(
        "/v1/namespaces/default/resources/Route/gone",
        r#"{"spec": {"match": {"path_prefix": "/gone"}, "service": "gone"}}"#,
    )
    .await;
    let client = reqwest::Client::new();
    let body = until_status(&client, &format!("{gateway}/gone"), 502).await;
    assert_eq!(body["error"]["code"], "upstream_failed");
    let (status, _, error) = api
        .send(
            "PUT",
            "/v1/namespaces/default/resources/Route/bad",
            Some(r#"{"spec": {"match": {"path_prefix": "nope"}, "service": "gone"}}"#),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("spec.match.path_prefix"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_changed_under_load_fails_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let sluice = Sluice::up(dir.path());
    let gateway = sluice.gateway.clone().unwrap();
    let api = Http::new(&sluice.url);
    let (blue, green) = (echo_upstream("blue").await, echo_upstream("green").await);
    api.register("blue", "b", &blue).await;
    api.register("green", "g", &green).await;
    let route = |service: &str| {
        format!(r#"{{"spec": {{"match": {{"path_prefix": "/app"}}, "service": "{service}"}}}}"#)
    };
    api.put("/v1/namespaces/default/resources/Route/app", &route("blue"))
        .await;
    let client = reqwest::Client::new();
    until_status(&client, &format!("{gateway}/app"), 200).await;

    // 4 clients for 2 s while the route flips between blue and green every 100 ms.
    let started = std::time::Instant::now();
    let seen = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (client, url, seen) = (
                client.clone(),
                format!("{gateway}/app"),
                std::sync::Arc::clone(&seen),
            );
            tokio::spawn(async move {
                while started.elapsed() < Duration::from_secs(2) {
                    let response = client.get(&url).send().await.unwrap();
                    let status = response.status().as_u16();
                    let body: Value = response.json().await.unwrap_or(Value::Null);
                    seen.lock()
                        .push((status, body["instance"].as_str().unwrap_or("").to_owned()));
                }
            })
        })
        .collect();
    let mut flips = 0;
    while started.elapsed() < Duration::from_millis(1800) {
        flips += 1;
        api.put(
            "/v1/namespaces/default/resources/Route/app",
            &route(if flips % 2 == 0 { "blue" } else { "green" }),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for worker in workers {
        worker.await.unwrap();
    }
    let seen = seen.lock().clone();
    assert!(
        seen.iter().all(|(status, _)| *status == 200),
        "a request failed during route changes"
    );
    assert!(
        seen.iter().any(|(_, who)| who == "blue") && seen.iter().any(|(_, who)| who == "green"),
        "the changes were visible"
    );
    // The last change is in force.
    let last = if flips % 2 == 0 { "blue" } else { "green" };
    let mut settled = false;
    for _ in 0..100 {
        if via(&client, &format!("{gateway}/app")).await.1["instance"] == last {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(settled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_requests_in_flight_and_stops_accepting() {
    let dir = tempfile::tempdir().unwrap();
    let sluice = Sluice::up(dir.path());
    let gateway = sluice.gateway.clone().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slow = listener.local_addr().unwrap().to_string();
    let app = axum::Router::new().fallback(|| async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        "finished"
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    let api = Http::new(&sluice.url);
    api.register("slow", "s", &slow).await;
    api.put(
        "/v1/namespaces/default/resources/Route/slow",
        r#"{"spec": {"match": {"path_prefix": "/slow"}, "service": "slow"}}"#,
    )
    .await;
    let client = reqwest::Client::new();
    until_status(&client, &format!("{gateway}/slow"), 200).await;

    let in_flight = {
        let (client, url) = (client.clone(), format!("{gateway}/slow"));
        tokio::spawn(async move {
            let response = client.get(url).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &sluice.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (code, body) = in_flight.await.unwrap();
    assert_eq!(
        (code, body.as_str()),
        (200, "finished"),
        "the request in flight completed"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let port: u16 = gateway.rsplit(':').next().unwrap().parse().unwrap();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "no new connections after SIGTERM"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_gateway_threads_connections_spread_over_both() {
    let dir = tempfile::tempdir().unwrap();
    let sluice = Sluice::up_with(dir.path(), &["--gateway-threads", "2"]);
    let api = Http::new(&sluice.url);
    api.register("echo", "e1", &echo_upstream("e1").await).await;
    api.route(
        "echo",
        r#"{"match": {"path_prefix": "/echo"}, "service": "echo"}"#,
    )
    .await;
    let gateway = sluice.gateway.clone().unwrap();
    until_status(&reqwest::Client::new(), &format!("{gateway}/echo"), 200).await;
    // 40 connections of their own: the kernel spreads them over the two listeners
    // (all on one thread would have odds of 2^-39).
    for _ in 0..40 {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let status = client.get(format!("{gateway}/echo")).send().await.unwrap();
        assert_eq!(status.status(), 200);
    }
    let text = reqwest::get(format!("{}/metrics", sluice.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let per_thread: Vec<u64> = (0..2)
        .map(|thread| {
            let prefix = format!("sluice_gateway_thread_connections_total{{thread=\"{thread}\"}} ");
            text.lines()
                .find_map(|line| line.strip_prefix(&prefix))
                .unwrap_or_else(|| panic!("no connection count of thread {thread} in:\n{text}"))
                .parse()
                .unwrap()
        })
        .collect();
    assert!(
        per_thread.iter().all(|count| *count > 0),
        "both gateway threads serve connections: {per_thread:?}"
    );
    assert!(per_thread.iter().sum::<u64>() >= 41, "{per_thread:?}");
    assert!(
        !text.contains("thread=\"2\""),
        "exactly two gateway threads: {text}"
    );
}
