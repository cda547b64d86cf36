//! Alarms end to end: a rule on the `echo` service's error rate fires when the
//! upstream fails, a webhook receives the firing and the recovery, the alarm is
//! listed while it fires, and a `Mute` silences it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::Value;

use crate::support::{block_on, controlled_upstream, until, until_status, Http, Sluice};

/// An HTTP receiver collecting the JSON bodies posted to it.
async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&received);
    let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
        let sink = Arc::clone(&sink);
        async move {
            if let Ok(value) = serde_json::from_slice::<Value>(&body) {
                sink.lock().push(value);
            }
            "ok"
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}/x"), received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_rate_alarms_notify_a_webhook_list_and_mute() {
    let dir = tempfile::tempdir().unwrap();
    let sluice = Sluice::up_with(dir.path(), &crate::support::FAST_METRICS);
    let api = Http::new(&sluice.url);
    let (upstream, control) = controlled_upstream("echo").await;
    api.register("echo", "e1", &upstream).await;
    api.route(
        "echo",
        r#"{"match": {"path_prefix": "/echo"}, "service": "echo"}"#,
    )
    .await;
    let gateway = sluice.gateway.clone().unwrap();
    let client = reqwest::Client::new();
    until_status(&client, &format!("{gateway}/echo"), 200).await;

    let (hook, received) = receiver().await;
    api.put(
        "/v1/namespaces/default/resources/Notifier/hook",
        &format!(r#"{{"spec": {{"webhook": {{"url": "{hook}"}}}}}}"#),
    )
    .await;
    api.put(
        "/v1/namespaces/default/resources/AlarmRule/echo-errors",
        r#"{"spec": {"metric": "error_rate", "match": {"service": "echo"}, "above": 0.5, "for": "0s", "notify": ["hook"]}}"#,
    )
    .await;

    // Steady traffic, 20 requests a second.
    let running = Arc::new(AtomicBool::new(true));
    let traffic = {
        let (running, client, url) = (
            Arc::clone(&running),
            client.clone(),
            format!("{gateway}/echo"),
        );
        tokio::spawn(async move {
            while running.load(Ordering::Relaxed) {
                let _ = client.get(&url).send().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    // The upstream fails: the alarm fires and the webhook hears of it.
    control.set(503, 0);
    let firing = until("a firing notification", || {
        received
            .lock()
            .iter()
            .find(|body| body["state"] == "firing")
            .cloned()
    })
    .await;
    assert_eq!(firing["rule"], "echo-errors");
    assert_eq!(firing["service"], "echo");
    assert_eq!(firing["alarms"][0]["labels"]["service"], "echo");
    assert!(firing["alarms"][0]["value"].as_f64().unwrap() > 0.5);

    let (_, listed) = api.get("/v1/namespaces/default/alarms?state=firing").await;
    let alarm = &listed["items"][0];
    assert_eq!(alarm["rule"], "echo-errors", "{listed}");
    assert_eq!(alarm["labels"]["service"], "echo");
    assert!(alarm["count"].as_u64().unwrap() >= 1);
    assert!(alarm["first_seen"].as_str().unwrap().ends_with('Z'));
    assert!(alarm["last_seen"].as_str().unwrap().ends_with('Z'));

    // It recovers: a recovery notice (after the group interval, here shortened from 1m).
    api.put(
        "/v1/namespaces/default/resources/Notifier/hook",
        &format!(r#"{{"spec": {{"webhook": {{"url": "{hook}"}}, "group_interval": "1s"}}}}"#),
    )
    .await;
    control.set(200, 0);
    let resolved = until("a recovery notification", || {
        received
            .lock()
            .iter()
            .find(|body| body["state"] == "resolved")
            .cloned()
    })
    .await;
    assert_eq!(resolved["rule"], "echo-errors");
    let (_, firing_now) = api.get("/v1/namespaces/default/alarms?state=firing").await;
    assert_eq!(
        firing_now["items"].as_array().unwrap().len(),
        0,
        "{firing_now}"
    );

    // Muted: it fires again (listed) but nothing more is sent.
    let ends = sluice_model::format_time(
        i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap()
            + 3_600_000,
    );
    api.put(
        "/v1/namespaces/default/resources/Mute/m1",
        &format!(r#"{{"spec": {{"match": {{"service": "echo"}}, "ends_at": "{ends}", "reason": "deploying"}}}}"#),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = received.lock().len();
    control.set(503, 0);
    until("the alarm firing again", || {
        let api = api.clone();
        let state = block_on(async move {
            api.get("/v1/namespaces/default/alarms?state=firing")
                .await
                .1
        });
        (!state["items"].as_array().unwrap().is_empty()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        received.lock().len(),
        before,
        "muted alarms are not notified"
    );
    let (_, listed) = api.get("/v1/namespaces/default/alarms?state=firing").await;
    assert!(
        listed["items"][0]["count"].as_u64().unwrap() >= 2,
        "{listed}"
    );

    // The CLI: list, acknowledge, mutes.
    let listing = sluice.cli(&["alarms", "ls"]);
    assert!(
        listing.contains("echo-errors") && listing.contains("service=echo"),
        "{listing}"
    );
    let id = listed["items"][0]["id"].as_str().unwrap().to_owned();
    sluice.cli(&["alarms", "ack", &id]);
    let (_, acked) = api.get("/v1/namespaces/default/alarms?state=firing").await;
    assert_eq!(acked["items"][0]["acknowledged"], true, "{acked}");
    let mutes = sluice.cli(&["mute", "ls"]);
    assert!(
        mutes.contains("m1") && mutes.contains("deploying"),
        "{mutes}"
    );
    let out = sluice.cli(&[
        "mute",
        "add",
        "--match",
        "rule=echo-errors",
        "--for",
        "10m",
        "--name",
        "m2",
    ]);
    assert!(out.contains("Mute/m2"), "{out}");
    sluice.cli(&["mute", "rm", "m2"]);

    running.store(false, Ordering::Relaxed);
    let _ = traffic.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rules_notifiers_and_mutes_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let sluice = Sluice::up(dir.path());
    let api = Http::new(&sluice.url);
    crate::support::assert_refused_naming_the_field(
        &api,
        &[
            ("AlarmRule", r#"{"metric": "error_rate"}"#, "spec.above"),
            (
                "AlarmRule",
                r#"{"metric": "error rate", "above": 1}"#,
                "spec.metric",
            ),
            (
                "AlarmRule",
                r#"{"metric": "qps", "above": "high"}"#,
                "spec.above",
            ),
            (
                "AlarmRule",
                r#"{"metric": "qps", "above": 1, "for": "later"}"#,
                "spec.for",
            ),
            (
                "AlarmRule",
                r#"{"metric": "qps", "above": 1, "match": {"bad label": "x"}}"#,
                "spec.match",
            ),
            (
                "AlarmRule",
                r#"{"metric": "qps", "above": 1, "message": "{{nope}}"}"#,
                "spec.message",
            ),
            (
                "AlarmRule",
                r#"{"metric": "qps", "above": 1, "message": "{{value"}"#,
                "spec.message",
            ),
            (
                "AlarmRule",
                r#"{"metric": "qps", "above": 1, "severity": "dire"}"#,
                "spec.severity",
            ),
            (
                "AlarmRule",
                r#"{"metric": "qps", "change": {"percent": 10, "compared_to": "1s"}}"#,
                "spec.change.compared_to",
            ),
            (
                "Notifier",
                r#"{"webhook": {"url": "gopher://x"}}"#,
                "spec.webhook.url",
            ),
            (
                "Notifier",
                r#"{"webhook": {"url": "http://x", "format": "telegram"}}"#,
                "spec.webhook.format",
            ),
            (
                "Notifier",
                r#"{"email": {"smtp": "mail", "from": "a@b.c", "to": ["d@e.f"]}}"#,
                "spec.email.smtp",
            ),
            (
                "Notifier",
                r#"{"email": {"smtp": "mail:25", "from": "nobody", "to": ["d@e.f"]}}"#,
                "spec.email.from",
            ),
            (
                "Notifier",
                r#"{"email": {"smtp": "mail:465", "security": "tls", "from": "a@b.c", "to": ["d@e.f"], "ca": "not a certificate"}}"#,
                "spec.email.ca",
            ),
            (
                "Notifier",
                r#"{"email": {"smtp": "mail:25", "security": "plain", "from": "a@b.c", "to": ["d@e.f"], "ca": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"}}"#,
                "spec.email.ca",
            ),
            (
                "Notifier",
                r#"{"alertmanager": {"url": "http://am:9093"}, "webhook": {"url": "http://x"}}"#,
                "spec.webhook",
            ),
            (
                "Mute",
                r#"{"match": {"service": "echo"}, "ends_at": "soon"}"#,
                "spec.ends_at",
            ),
            (
                "Mute",
                r#"{"match": {}, "ends_at": "2030-01-01T00:00:00Z"}"#,
                "spec.match",
            ),
        ],
    )
    .await;
    for (method, path, status) in [
        ("GET", "/v1/namespaces/default/alarms?state=burning", 400),
        ("POST", "/v1/namespaces/default/alarms/not-an-id/ack", 400),
        (
            "POST",
            "/v1/namespaces/default/alarms/0123456789abcdef/ack",
            404,
        ),
    ] {
        let (got, _, error) = api.send(method, path, None).await;
        assert_eq!(got, status, "{method} {path}: {error}");
    }
}
