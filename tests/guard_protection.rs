//! Traffic protection end to end through `sluice up`'s gateway: access lists,
//! bans with expiry (API and automatic), rate limits with delay, connection
//! limits, adaptive concurrency rejections, circuit breakers with fallbacks, and
//! timeouts with fallbacks.

use std::time::{Duration, Instant};

use crate::support::{controlled_upstream, echo_upstream, until_status, Http, Sluice};

/// A client whose requests come from `source` (any 127.0.0.0/8 address).
fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(Some(source.parse().unwrap()))
        .build()
        .unwrap()
}

async fn status_and_reason(client: &reqwest::Client, url: &str) -> (u16, String, String) {
    let response = client.get(url).send().await.unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let (rejected, fallback) = (header("x-sluice-rejected"), header("x-sluice-fallback"));
    (response.status().as_u16(), rejected, fallback)
}

/// Sends `count` requests at once; their statuses and rejection reasons.
async fn at_once(client: &reqwest::Client, url: &str, count: usize) -> Vec<(u16, String)> {
    let requests: Vec<_> = (0..count)
        .map(|_| {
            let (client, url) = (client.clone(), url.to_owned());
            tokio::spawn(async move {
                let (status, reason, _) = status_and_reason(&client, &url).await;
                (status, reason)
            })
        })
        .collect();
    let mut answers = Vec::new();
    for request in requests {
        answers.push(request.await.unwrap());
    }
    answers
}

async fn setup(route_spec: &str) -> (tempfile::TempDir, Sluice, Http, String) {
    let dir = tempfile::tempdir().unwrap();
    let sluice = Sluice::up(dir.path());
    let gateway = sluice.gateway.clone().unwrap();
    let api = Http::new(&sluice.url);
    api.route("echo", route_spec).await;
    (dir, sluice, api, gateway)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_denies_listed_clients_and_bans_expire() {
    let (_dir, sluice, api, gateway) =
        setup(r#"{"match": {"path_prefix": "/echo"}, "service": "echo"}"#).await;
    api.register("echo", "e1", &echo_upstream("e1").await).await;
    let url = format!("{gateway}/echo");
    let (one, two) = (client_from("127.0.0.1"), client_from("127.0.0.2"));
    until_status(&two, &url, 200).await;

    // The contract: deny 127.0.0.2/32 on route echo answers 403 to that client.
    api.put(
        "/v1/namespaces/default/resources/Acl/echo",
        r#"{"spec": {"route": "echo", "deny": ["127.0.0.2/32"]}}"#,
    )
    .await;
    let body = until_status(&two, &url, 403).await;
    assert_eq!(body["error"]["code"], "rejected");
    assert_eq!(status_and_reason(&two, &url).await.1, "acl");
    assert_eq!(status_and_reason(&one, &url).await.0, 200);

    // An allow list admits only its blocks (IPv6 entries live alongside).
    api.put(
        "/v1/namespaces/default/resources/Acl/echo",
        r#"{"spec": {"route": "echo", "allow": ["127.0.0.2/32", "::1/128"]}}"#,
    )
    .await;
    until_status(&one, &url, 403).await;
    assert_eq!(status_and_reason(&two, &url).await.0, 200);
    api.send("DELETE", "/v1/namespaces/default/resources/Acl/echo", None)
        .await;
    until_status(&one, &url, 200).await;

    // A ban with an expiry, through the API: refused until then, admitted after.
    let expires = sluice_model::format_time(
        i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap()
            + 2_500,
    );
    api.put(
        "/v1/namespaces/default/resources/Ban/noisy",
        &format!(
            r#"{{"spec": {{"ip": "127.0.0.2", "expires_at": "{expires}", "reason": "scraping"}}}}"#
        ),
    )
    .await;
    until_status(&two, &url, 403).await;
    assert_eq!(status_and_reason(&two, &url).await.1, "ban");
    assert_eq!(status_and_reason(&one, &url).await.0, 200);
    let banned_at = Instant::now();
    until_status(&two, &url, 200).await;
    assert!(banned_at.elapsed() < Duration::from_secs(4));

    // A ban of a header value (an API key) without expiry.
    api.put(
        "/v1/namespaces/default/resources/Ban/key",
        r#"{"spec": {"header": "x-api-key", "value": "stolen"}}"#,
    )
    .await;
    let stolen = || one.get(&url).header("x-api-key", "stolen");
    for _ in 0..400 {
        if stolen().send().await.unwrap().status() == 403 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(stolen().send().await.unwrap().status(), 403);
    let fine = one
        .get(&url)
        .header("x-api-key", "mine")
        .send()
        .await
        .unwrap();
    assert_eq!(fine.status(), 200);

    // The CLI: ban with an expiry, list, lift.
    let four = client_from("127.0.0.4");
    assert_eq!(status_and_reason(&four, &url).await.0, 200);
    let out = sluice.cli(&[
        "ban",
        "add",
        "127.0.0.4",
        "--for",
        "1h",
        "--reason",
        "abuse",
    ]);
    assert!(out.contains("Ban/ban-127-0-0-4"), "{out}");
    until_status(&four, &url, 403).await;
    let listing = sluice.cli(&["ban", "ls"]);
    let row = listing
        .lines()
        .find(|l| l.starts_with("ban-127-0-0-4"))
        .unwrap_or_else(|| panic!("{listing}"));
    assert!(row.contains("yes") && row.contains("abuse"), "{listing}");
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("noisy") && l.contains("expired")),
        "{listing}"
    );
    sluice.cli(&["ban", "rm", "ban-127-0-0-4"]);
    until_status(&four, &url, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_delay_without_nodelay_and_ban_repeat_offenders() {
    let (_dir, _sluice, api, gateway) =
        setup(r#"{"match": {"path_prefix": "/echo"}, "service": "echo"}"#).await;
    api.register("echo", "e1", &echo_upstream("e1").await).await;
    let url = format!("{gateway}/echo");
    let client = reqwest::Client::new();
    until_status(&client, &url, 200).await;

    // nginx `limit_req zone=z burst=5;` (delay=0): 6 at once all pass, the excess
    // spaced at the rate — the sixth leaves about 500 ms after the first.
    api.put(
        "/v1/namespaces/default/resources/RateLimit/paced",
        r#"{"spec": {"route": "echo", "rate": "10r/s", "burst": 5}}"#,
    )
    .await;
    // In force once 8 at once see a rejection (6 fit: one at the rate, 5 queued).
    for _ in 0..100 {
        if at_once(&client, &url, 8)
            .await
            .iter()
            .any(|(s, _)| *s == 503)
        {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let started = Instant::now();
    let answers = at_once(&client, &url, 6).await;
    assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );

    // A key rejected more than 3 times in 10 s is banned for 2 s: 403 "ban", even
    // once the rate would admit it again.
    api.put(
        "/v1/namespaces/default/resources/RateLimit/paced",
        r#"{"spec": {"route": "echo", "rate": "1r/s", "nodelay": true, "ban": {"after": 3, "within": "10s", "for": "2s"}}}"#,
    )
    .await;
    let mut reasons = Vec::new();
    for _ in 0..400 {
        let (_, reason, _) = status_and_reason(&client, &url).await;
        if reason == "ban" {
            break;
        }
        reasons.push(reason);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        reasons.iter().filter(|r| *r == "rate").count() >= 4,
        "{reasons:?}"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(status_and_reason(&client, &url).await.1, "ban");
    until_status(&client, &url, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limits_count_requests_in_flight_per_client() {
    let (_dir, _sluice, api, gateway) =
        setup(r#"{"match": {"path_prefix": "/echo"}, "service": "echo"}"#).await;
    let (address, control) = controlled_upstream("slow").await;
    api.register("echo", "e1", &address).await;
    let url = format!("{gateway}/echo");
    let client = reqwest::Client::new();
    until_status(&client, &url, 200).await;
    api.put(
        "/v1/namespaces/default/resources/ConnLimit/two",
        r#"{"spec": {"route": "echo", "max": 2, "status": 429}}"#,
    )
    .await;
    control.set(200, 700);
    // Wait for the limit to be in force: 3 at once, one refused.
    for _ in 0..100 {
        if at_once(&client, &url, 3)
            .await
            .iter()
            .any(|(s, _)| *s == 429)
        {
            break;
        }
    }
    let answers = at_once(&client, &url, 5).await;
    let passed = answers.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(passed, 2, "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|(s, r)| *s == 200 || (*s == 429 && r == "conn")),
        "{answers:?}"
    );
    // Another client has its own two places.
    let other = client_from("127.0.0.3");
    let mine = at_once(&client, &url, 2);
    let theirs = at_once(&other, &url, 2);
    let (mine, theirs) = tokio::join!(mine, theirs);
    assert!(
        mine.iter().chain(&theirs).all(|(s, _)| *s == 200),
        "{mine:?} {theirs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adaptive_concurrency_rejects_fast_with_a_reason() {
    let (_dir, _sluice, api, gateway) =
        setup(r#"{"match": {"path_prefix": "/echo"}, "service": "echo"}"#).await;
    let (address, control) = controlled_upstream("slow").await;
    api.register("echo", "e1", &address).await;
    let url = format!("{gateway}/echo");
    let client = reqwest::Client::new();
    until_status(&client, &url, 200).await;
    // Envoy's gradient controller starts by measuring minRTT with the limit pinned at 3.
    api.put(
        "/v1/namespaces/default/resources/Concurrency/echo",
        r#"{"spec": {"service": "echo", "algorithm": "gradient"}}"#,
    )
    .await;
    // Wait until the gateway's snapshot holds the limiter: a batch sent while the
    // snapshot is swapped would be judged half without it.
    for _ in 0..200 {
        let (_, protection) = api
            .get("/v1/namespaces/default/services/echo/protection")
            .await;
        if protection["limiters"]
            .as_array()
            .is_some_and(|l| !l.is_empty())
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    control.set(200, 600);
    let mut answers = Vec::new();
    for _ in 0..50 {
        answers = at_once(&client, &url, 8).await;
        if answers.iter().any(|(s, _)| *s == 503) {
            break;
        }
    }
    let passed = answers.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(passed, 3, "{answers:?}");
    for (status, reason) in &answers {
        assert!(
            *status == 200 || (*status == 503 && reason == "concurrency"),
            "{answers:?}"
        );
    }
    // Rejections are fast: no wait for the upstream.
    let started = Instant::now();
    let (slow, quick) = tokio::join!(at_once(&client, &url, 3), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        let answer = status_and_reason(&client, &url).await;
        (answer, started.elapsed())
    });
    assert!(slow.iter().all(|(s, _)| *s == 200), "{slow:?}");
    assert_eq!((quick.0 .0, quick.0 .1.as_str()), (503, "concurrency"));
    assert!(quick.1 < Duration::from_millis(300), "{:?}", quick.1);
    assert!(started.elapsed() >= Duration::from_millis(600));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_opens_falls_back_half_opens_and_closes() {
    let (_dir, _sluice, api, gateway) = setup(
        r#"{"match": {"path_prefix": "/echo"}, "service": "echo",
            "fallback": {"status": 200, "headers": {"content-type": "text/plain"}, "body": "cached"}}"#,
    )
    .await;
    let (address, control) = controlled_upstream("flaky").await;
    api.register("echo", "e1", &address).await;
    let url = format!("{gateway}/echo");
    let client = reqwest::Client::new();
    until_status(&client, &url, 200).await;
    api.put(
        "/v1/namespaces/default/resources/Breaker/echo",
        r#"{"spec": {"service": "echo", "volume": 5, "error_percent": 50, "sleep": "1s"}}"#,
    )
    .await;
    // The upstream fails: its 500s pass through until the breaker trips (at a
    // health snapshot, at most 500 ms apart); then the fallback answers.
    control.set(500, 0);
    let mut seen_500 = false;
    let mut opened = false;
    for _ in 0..400 {
        let (status, _, fallback) = status_and_reason(&client, &url).await;
        seen_500 |= status == 500;
        if fallback == "breaker" {
            assert_eq!(status, 200);
            opened = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(seen_500 && opened);
    let body = client.get(&url).send().await.unwrap().text().await.unwrap();
    assert_eq!(body, "cached");
    // While open, the upstream is not called.
    let hits = control.hits.load(std::sync::atomic::Ordering::SeqCst);
    for _ in 0..10 {
        assert_eq!(status_and_reason(&client, &url).await.2, "breaker");
    }
    assert_eq!(control.hits.load(std::sync::atomic::Ordering::SeqCst), hits);
    // The upstream recovers; after the sleep window one trial goes through and closes it.
    control.set(200, 0);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _, fallback) = status_and_reason(&client, &url).await;
    assert_eq!(
        (status, fallback.as_str()),
        (200, ""),
        "the trial reaches the upstream"
    );
    for _ in 0..10 {
        let (status, _, fallback) = status_and_reason(&client, &url).await;
        assert_eq!((status, fallback.as_str()), (200, ""));
    }
    assert_eq!(
        control.hits.load(std::sync::atomic::Ordering::SeqCst),
        hits + 11
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_fall_back_to_a_static_answer_or_another_service() {
    let (_dir, _sluice, api, gateway) = setup(
        r#"{"match": {"path_prefix": "/echo"}, "service": "echo", "timeouts": {"request": "200ms"},
            "fallback": {"status": 203, "body": "{\"comments\": []}"}}"#,
    )
    .await;
    let (address, control) = controlled_upstream("slow").await;
    api.register("echo", "e1", &address).await;
    api.register("backup", "b1", &echo_upstream("backup").await)
        .await;
    let url = format!("{gateway}/echo");
    let client = reqwest::Client::new();
    until_status(&client, &url, 200).await;
    control.set(200, 1_000);
    let started = Instant::now();
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 203);
    assert_eq!(response.headers()["x-sluice-fallback"], "timeout");
    assert_eq!(response.text().await.unwrap(), r#"{"comments": []}"#);
    assert!(started.elapsed() < Duration::from_millis(900));

    // A fallback service takes the request instead.
    api.route(
        "echo",
        r#"{"match": {"path_prefix": "/echo"}, "service": "echo", "timeouts": {"request": "200ms"},
            "fallback": {"service": "backup"}}"#,
    )
    .await;
    let body = until_status(&client, &url, 200).await;
    assert_eq!(body["instance"], "backup");

    // Without a fallback: 504, marked as a timeout.
    api.route(
        "echo",
        r#"{"match": {"path_prefix": "/echo"}, "service": "echo", "timeouts": {"request": "200ms"}}"#,
    )
    .await;
    until_status(&client, &url, 504).await;
    assert_eq!(status_and_reason(&client, &url).await.1, "timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_protection_specs_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let sluice = Sluice::up(dir.path());
    let api = Http::new(&sluice.url);
    let cases = [
        (
            "RateLimit",
            r#"{"route": "echo", "rate": "0r/s"}"#,
            "spec.rate",
        ),
        (
            "RateLimit",
            r#"{"route": "echo", "rate": "10r/h"}"#,
            "spec.rate",
        ),
        (
            "RateLimit",
            r#"{"route": "echo", "rate": "10r/s", "burst": -1}"#,
            "spec.burst",
        ),
        (
            "RateLimit",
            r#"{"route": "echo", "rate": "10r/s", "key": "cookie"}"#,
            "spec.key",
        ),
        (
            "RateLimit",
            r#"{"route": "echo", "rate": "10r/s", "ban": {"after": 0, "within": "1s", "for": "1m"}}"#,
            "spec.ban.after",
        ),
        ("ConnLimit", r#"{"route": "echo", "max": 0}"#, "spec.max"),
        (
            "ConnLimit",
            r#"{"route": "echo", "max": 2, "key": "header:"}"#,
            "spec.key",
        ),
        (
            "Acl",
            r#"{"route": "echo", "deny": ["10.0.0.0/33"]}"#,
            "spec.deny",
        ),
        (
            "Acl",
            r#"{"route": "echo", "allow": ["10.0.0.1/8"]}"#,
            "spec.allow",
        ),
        (
            "Acl",
            r#"{"route": "echo", "deny": ["not-an-ip"]}"#,
            "spec.deny",
        ),
        ("Acl", r#"{"route": "echo"}"#, "spec.allow"),
        ("Ban", r#"{"ip": "300.1.1.1"}"#, "spec.ip"),
        (
            "Ban",
            r#"{"ip": "10.0.0.1", "expires_at": "tomorrow"}"#,
            "spec.expires_at",
        ),
        (
            "Concurrency",
            r#"{"route": "echo", "service": "echo"}"#,
            "spec.route",
        ),
        (
            "Concurrency",
            r#"{"service": "echo", "algorithm": "magic"}"#,
            "spec.algorithm",
        ),
        (
            "Concurrency",
            r#"{"service": "echo", "min_limit": 0}"#,
            "spec.min_limit",
        ),
        (
            "Breaker",
            r#"{"service": "echo", "error_percent": 0}"#,
            "spec.error_percent",
        ),
        (
            "Breaker",
            r#"{"service": "echo", "error_percent": 101}"#,
            "spec.error_percent",
        ),
        (
            "Breaker",
            r#"{"service": "echo", "volume": 0}"#,
            "spec.volume",
        ),
        (
            "Breaker",
            r#"{"service": "echo", "sleep": "soon"}"#,
            "spec.sleep",
        ),
        (
            "Breaker",
            r#"{"service": "echo", "slow_call": "1s", "slow_percent": 0}"#,
            "spec.slow_percent",
        ),
        (
            "Route",
            r#"{"match": {}, "service": "echo", "priority": "urgent"}"#,
            "spec.priority",
        ),
        (
            "Route",
            r#"{"match": {}, "service": "echo", "fallback": {"service": "b", "body": "x"}}"#,
            "spec.fallback.service",
        ),
    ];
    crate::support::assert_refused_naming_the_field(&api, &cases).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_instance_breakers_take_a_failing_instance_out() {
    // Outlier ejection off, so only the breaker can take the instance out.
    let (_dir, _sluice, api, gateway) = setup(
        r#"{"match": {"path_prefix": "/echo"}, "service": "echo", "outlier": {"max_ejection_percent": 0}}"#,
    )
    .await;
    let (bad, control) = controlled_upstream("bad").await;
    control.set(500, 0);
    api.register("echo", "good", &echo_upstream("good").await)
        .await;
    api.register("echo", "bad", &bad).await;
    let url = format!("{gateway}/echo");
    let client = reqwest::Client::new();
    until_status(&client, &url, 500).await;
    api.put(
        "/v1/namespaces/default/resources/Breaker/echo",
        r#"{"spec": {"service": "echo", "per_instance": true, "volume": 4, "error_percent": 50, "sleep": "30s"}}"#,
    )
    .await;
    // Once the bad instance's breaker opens, every request goes to the good one.
    let mut clean_run = 0;
    for _ in 0..400 {
        let status = client.get(&url).send().await.unwrap().status();
        clean_run = if status == 200 { clean_run + 1 } else { 0 };
        if clean_run == 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(clean_run, 10);
    let hits = control.hits.load(std::sync::atomic::Ordering::SeqCst);
    for _ in 0..20 {
        let body: serde_json::Value = client.get(&url).send().await.unwrap().json().await.unwrap();
        assert_eq!(body["instance"], "good");
    }
    assert_eq!(control.hits.load(std::sync::atomic::Ordering::SeqCst), hits);
}
