//! An API is a method and a path template: the health board, series queries and
//! `/metrics` name `GET /articles/{id}` — not the route, not the raw path — from a
//! route's declared templates or by automatic normalisation, and a route keeps a
//! bounded number of names (the rest count under `{other}`).

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use crate::support::{echo_upstream, until_status, Http, Sluice};

fn top_apis(board: &Value) -> Vec<String> {
    board["top_apis"]
        .as_array()
        .map(|apis| {
            apis.iter()
                .map(|a| a["api"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The health board of `service` once it counts `requests` over the last minute.
async fn board_of(api: &Http, service: &str, requests: u64) -> Value {
    let what = format!("the board of {service} with {requests} requests");
    let path = format!("/v1/namespaces/default/health?service={service}&window=60s");
    crate::support::until(&what, || {
        let (api, path) = (api.clone(), path.clone());
        let (_, board) = crate::support::block_on(async move { api.get(&path).await });
        (board["requests"].as_u64() == Some(requests)).then_some(board)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apis_are_endpoints_named_by_template_and_bounded_per_route() {
    let dir = tempfile::tempdir().unwrap();
    let sluice = Sluice::up_with(dir.path(), &crate::support::FAST_METRICS);
    let api = Http::new(&sluice.url);
    let upstream = echo_upstream("u").await;
    for service in ["articles", "users", "shop", "pages"] {
        api.register(service, "u1", &upstream).await;
    }
    api.route(
        "articles",
        r#"{"match": {"path_prefix": "/articles"}, "service": "articles"}"#,
    )
    .await;
    api.route(
        "users",
        r#"{"match": {"path_prefix": "/users"}, "service": "users"}"#,
    )
    .await;
    // Declared templates are matched after the route's prefix is stripped.
    api.route(
        "shop",
        r#"{"match": {"path_prefix": "/shop"}, "service": "shop", "rewrite": {"strip_prefix": true},
            "apis": ["/carts/{cart}/items", "/static/{*path}"]}"#,
    )
    .await;
    api.route(
        "pages",
        r#"{"match": {"path_prefix": "/pages"}, "service": "pages"}"#,
    )
    .await;
    let gateway = sluice.gateway.clone().unwrap();
    let client = reqwest::Client::new();
    until_status(&client, &format!("{gateway}/pages/warm-up"), 200).await;

    for i in 1..=500 {
        let status = client
            .get(format!("{gateway}/articles/{i}"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
    }
    for uuid in [
        "6f1c2d3e-4b5a-4c6d-8e7f-90a1b2c3d4e5",
        "0b7e9c5a-1d2f-4e3a-9b8c-7d6e5f4a3b2c",
    ] {
        let url = format!("{gateway}/users/{uuid}/orders?page=2");
        assert_eq!(client.get(url).send().await.unwrap().status(), 200);
    }
    for cart in ["c-1", "c-2", "blue"] {
        let url = format!("{gateway}/shop/carts/{cart}/items");
        assert_eq!(client.post(url).send().await.unwrap().status(), 200);
    }
    let url = format!("{gateway}/shop/static/css/site.css");
    assert_eq!(client.get(url).send().await.unwrap().status(), 200);
    // 300 distinct paths that normalise to themselves, on a route keeping 200 names
    // (the warm-up above took one of them).
    for i in 0..300 {
        let url = format!("{gateway}/pages/p{i}");
        assert_eq!(client.get(url).send().await.unwrap().status(), 200);
    }

    // The health board of each service names exactly its APIs.
    let board = |service: &'static str, requests: u64| board_of(&api, service, requests);
    assert_eq!(
        top_apis(&board("articles", 500).await),
        ["GET /articles/{id}"]
    );
    assert_eq!(
        top_apis(&board("users", 2).await),
        ["GET /users/{id}/orders"]
    );
    assert_eq!(
        top_apis(&board("shop", 4).await),
        ["POST /carts/{cart}/items", "GET /static/{*path}"]
    );

    // The capped route: 200 names, and the other 101 requests under {other}.
    board("pages", 301).await;
    let (_, answer) = api
        .get("/v1/query?metric=qps&match=service=pages&by=api&from=-60s&step=60s")
        .await;
    let series = answer["series"].as_array().unwrap();
    assert_eq!(series.len(), 201, "{answer}");
    let step = answer["step"].as_f64().unwrap();
    let other: f64 = series
        .iter()
        .filter(|s| s["labels"]["api"] == "{other}")
        .flat_map(|s| s["points"].as_array().unwrap())
        .filter_map(|p| p[1].as_f64())
        .sum::<f64>()
        * step;
    assert!((other - 101.0).abs() < 1e-6, "{other}: {answer}");

    // /metrics carries the same names, with the route as its own label.
    let text = client
        .get(format!("{}/metrics", sluice.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let apis_of = |route: &str| -> BTreeSet<String> {
        text.lines()
            .filter(|l| l.starts_with("sluice_gateway_requests_total{"))
            .filter(|l| l.contains(&format!("route=\"{route}\"")))
            .filter_map(|l| l.split("api=\"").nth(1)?.split('"').next())
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        apis_of("articles").into_iter().collect::<Vec<_>>(),
        ["GET /articles/{id}"]
    );
    assert_eq!(
        apis_of("users").into_iter().collect::<Vec<_>>(),
        ["GET /users/{id}/orders"]
    );
    assert_eq!(
        apis_of("shop").into_iter().collect::<Vec<_>>(),
        ["GET /static/{*path}", "POST /carts/{cart}/items"]
    );
    let pages = apis_of("pages");
    assert_eq!(pages.len(), 201, "{pages:?}");
    assert!(pages.contains("{other}"));
    assert!(
        text.lines()
            .any(|l| l.starts_with("sluice_gateway_api_names_overflow_total 101")),
        "{text}"
    );
    // The first overflow is logged, once.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        sluice.log_text().matches("max_apis API names").count(),
        1,
        "{}",
        sluice.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_api_templates_are_refused_naming_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let sluice = Sluice::up(dir.path());
    let api = Http::new(&sluice.url);
    let route = |extra: &str| {
        format!(r#"{{"spec": {{"match": {{"path_prefix": "/a"}}, "service": "a", {extra}}}}}"#)
    };
    let cases = [
        route(r#""apis": ["articles/{id}"]"#),
        route(r#""apis": ["/ok", "/a/{*rest}/b"]"#),
        route(r#""apis": ["/a/x{id}"]"#),
        route(r#""apis": ["/a", "/a"]"#),
        route(r#""max_apis": 0"#),
    ];
    let fields = [
        "spec.apis[0]",
        "spec.apis[1]",
        "spec.apis[0]",
        "spec.apis[1]",
        "spec.max_apis",
    ];
    for (body, field) in cases.iter().zip(fields) {
        let (status, _, answer) = api
            .send(
                "PUT",
                "/v1/namespaces/default/resources/Route/bad",
                Some(body),
            )
            .await;
        assert_eq!(status, 400, "{body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(field), "{body}: {message}");
    }
}
