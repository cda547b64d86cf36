//! API health end to end: known traffic through `sluice up`'s gateway (three APIs at
//! known counts, latencies and status codes) comes back from the health board, the
//! series query and `sluice health` — and is still there after `kill -9` and a restart.

use std::time::{Duration, Instant};

use crate::support::{until_status, Http, Sluice};

/// An upstream whose paths decide its answer: `/a` 200 after 20 ms, `/b` 200 or
/// (with `?fail`) 503 after 5 ms, `/c` 201 after 60 ms.
async fn app_upstream() -> String {
    use axum::extract::Request;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let app = axum::Router::new().fallback(|request: Request| async move {
        let (delay, status) = match request.uri().path() {
            "/a" => (20, 200),
            "/b" if request.uri().query() == Some("fail") => (5, 503),
            "/b" => (5, 200),
            _ => (60, 201),
        };
        tokio::time::sleep(Duration::from_millis(delay)).await;
        (axum::http::StatusCode::from_u16(status).unwrap(), "ok")
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

fn args(data: &str, gateway: u16) -> Vec<String> {
    vec![
        "--data".into(),
        data.into(),
        "--gateway".into(),
        format!("127.0.0.1:{gateway}"),
        "--metrics-tiers".into(),
        "1s:10m,1m:1h".into(),
    ]
}

fn assert_board(board: &serde_json::Value, client_p98_a: f64) {
    assert_eq!(board["requests"], 60, "{board}");
    let close = |value: &serde_json::Value, expected: f64| {
        let value = value.as_f64().unwrap();
        assert!(
            (value - expected).abs() < 1e-9,
            "{value} vs {expected}: {board}"
        );
    };
    close(&board["qps"], 1.0);
    close(&board["error_rate"], 10.0 / 60.0);
    assert_eq!(board["codes"]["200"], 40);
    assert_eq!(board["codes"]["201"], 10);
    assert_eq!(board["codes"]["503"], 10);
    let top = board["top_apis"].as_array().unwrap();
    let names: Vec<&str> = top.iter().map(|a| a["api"].as_str().unwrap()).collect();
    assert_eq!(names, ["GET /a", "POST /b", "GET /c"], "{board}");
    close(&top[0]["qps"], 0.5);
    close(&top[1]["error_rate"], 0.5);
    close(&top[2]["qps"], 10.0 / 60.0);
    // Latencies: at least the upstream's delay (less the histogram's ±3.2 %), at most
    // what the client saw (plus the same).
    let p98_a = top[0]["p98_ms"].as_f64().unwrap();
    assert!(
        p98_a >= 20.0 * 0.968 && p98_a <= client_p98_a * 1.032,
        "{p98_a} vs {client_p98_a}"
    );
    let p98_c = top[2]["p98_ms"].as_f64().unwrap();
    assert!(p98_c >= 60.0 * 0.968, "{p98_c}");
    let p50 = board["p50_ms"].as_f64().unwrap();
    assert!((5.0 * 0.968..60.0).contains(&p50), "{p50}");
    assert!(board["p99_ms"].as_f64().unwrap() >= 60.0 * 0.968);
    let instances = board["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 1);
    assert_eq!(instances[0]["instance"], "app-1");
    assert_eq!(instances[0]["requests"], 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_board_reports_known_traffic_and_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let data = data.to_str().unwrap();
    let gateway_port = sluice_testkit::free_port();
    let admin_port = sluice_testkit::free_port();
    let args = args(data, gateway_port);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut sluice = Sluice::start_on("up", &args, dir.path(), admin_port);
    let api = Http::new(&sluice.url);
    api.register("app", "app-1", &app_upstream().await).await;
    for (name, path) in [("a", "/a"), ("b", "/b"), ("c", "/c")] {
        api.route(
            name,
            &format!(r#"{{"match": {{"path": "{path}"}}, "service": "app"}}"#),
        )
        .await;
    }
    // Routes apply in the order they were written: once a last one, in another
    // namespace (so its requests stay off this board), answers, a, b and c do too.
    api.put(
        "/v1/namespaces/probe/resources/Route/probe",
        r#"{"spec": {"match": {"path": "/probe"}, "service": "default/app"}}"#,
    )
    .await;
    let gateway = format!("http://127.0.0.1:{gateway_port}");
    let client = reqwest::Client::new();
    until_status(&client, &format!("{gateway}/probe"), 201).await;

    // The traffic: a 30× GET (20 ms, 200), b 20× POST (5 ms, half 503), c 10× GET (60 ms, 201).
    let mut a_latencies = Vec::new();
    for i in 0..30 {
        let started = Instant::now();
        let status = client
            .get(format!("{gateway}/a"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
        a_latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        if i < 20 {
            let fail = i % 2 == 0;
            let path = if fail { "/b?fail" } else { "/b" };
            let status = client
                .post(format!("{gateway}{path}"))
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, if fail { 503 } else { 200 });
        }
        if i < 10 {
            let status = client
                .get(format!("{gateway}/c"))
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, 201);
        }
    }
    a_latencies.sort_by(f64::total_cmp);
    let client_p98_a = a_latencies[a_latencies.len() * 98 / 100];
    // Steps are 1 s: the last one is written within about a second.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (_, board) = api.get("/v1/namespaces/default/health?window=60s").await;
    assert_board(&board, client_p98_a);

    // The same through a series query: qps by API over the window.
    let (_, answer) = api
        .get("/v1/query?metric=qps&match=namespace=default,service=app&by=api&from=-60s&step=60s")
        .await;
    let series = answer["series"].as_array().unwrap();
    assert_eq!(series.len(), 3, "{answer}");
    let total: f64 = series
        .iter()
        .flat_map(|s| s["points"].as_array().unwrap())
        .filter_map(|p| p[1].as_f64())
        .sum::<f64>()
        * answer["step"].as_f64().unwrap();
    assert!((total - 60.0).abs() < 1e-6, "{answer}");

    // The CLI prints the board.
    let printed = sluice.cli(&["health", "--window", "60s"]);
    assert!(
        printed.contains("GET /a") && printed.contains("app-1"),
        "{printed}"
    );

    // kill -9 and restart on the same data: the written steps are all there.
    sluice.kill();
    let sluice = Sluice::start_on("up", &args, dir.path(), admin_port);
    let api = Http::new(&sluice.url);
    let (_, board) = api.get("/v1/namespaces/default/health?window=60s").await;
    assert_board(&board, client_p98_a);
    let (_, usage) = api.get("/v1/metrics/usage").await;
    assert!(usage["series"].as_u64().unwrap() >= 5, "{usage}");
    assert!(usage["bytes"].as_u64().unwrap() > 0, "{usage}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_gateway_pushes_its_requests_to_the_board() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cp");
    let control = Sluice::start(
        "server",
        &[
            "--data",
            data.to_str().unwrap(),
            "--metrics-tiers",
            "1s:10m,1m:1h",
        ],
        dir.path(),
    );
    let api = Http::new(&control.url);
    api.register("app", "app-1", &app_upstream().await).await;
    api.route("a", r#"{"match": {"path": "/a"}, "service": "app"}"#)
        .await;
    let gateway_data = dir.path().join("gw");
    let port = sluice_testkit::free_port();
    let listening = |port: u16| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
    let _gateway = Sluice::start_until(
        "gateway",
        &[
            "--control",
            control.url.as_str(),
            "--data",
            gateway_data.to_str().unwrap(),
            "--metrics-interval",
            "1s",
        ],
        dir.path(),
        port,
        listening,
    );
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/a");
    until_status(&client, &url, 200).await;
    for _ in 0..9 {
        assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    }
    // At least 10 answered; the warm-up may have seen a 404 or 503 before the route applied.
    let mut board = serde_json::Value::Null;
    for _ in 0..100 {
        board = api.get("/v1/namespaces/default/health?window=60s").await.1;
        if board["codes"]["200"].as_u64() == Some(10) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(board["codes"]["200"], 10, "{board}");
    assert_eq!(board["top_apis"][0]["api"], "GET /a");
    assert!(board["p50_ms"].as_f64().unwrap() >= 20.0 * 0.968, "{board}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_metric_queries_are_refused_naming_the_parameter() {
    let dir = tempfile::tempdir().unwrap();
    let sluice = Sluice::up(dir.path());
    let api = Http::new(&sluice.url);
    for (path, named) in [
        ("/v1/namespaces/default/health?window=0s", "window"),
        ("/v1/namespaces/default/health?window=1000d", "window"),
        ("/v1/namespaces/default/health?window=soon", "window"),
        ("/v1/namespaces/default/health?colour=red", "colour"),
        ("/v1/query", "metric"),
        ("/v1/query?metric=bad-name", "metric"),
        ("/v1/query?metric=qps&from=yesterday", "from"),
        ("/v1/query?metric=qps&from=-1m&to=-2m", "before"),
        ("/v1/query?metric=logins&agg=median", "agg"),
        ("/v1/query?metric=qps&match=service", "match"),
    ] {
        let (status, _, error) = api.send("GET", path, None).await;
        let message = error["error"]["message"].as_str().unwrap_or_default();
        assert_eq!(status, 400, "{path}: {error}");
        assert!(message.contains(named), "{path}: {message}");
    }
}
