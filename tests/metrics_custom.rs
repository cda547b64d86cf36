//! Business metrics pushed through the API, host metrics of this machine, and
//! `sluice agent`'s host metrics, all read back as series.

use std::time::Duration;

use serde_json::Value;

use crate::support::{Http, Sluice};

fn start(dir: &std::path::Path) -> Sluice {
    Sluice::up_with(dir, &crate::support::FAST_METRICS)
}

/// Polls a series query until `done` holds on its answer (a hang guard of 15 s).
async fn until_series(api: &Http, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut answer = Value::Null;
    for _ in 0..150 {
        answer = api.get(path).await.1;
        if done(&answer) {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{path} never satisfied the test: {answer}");
}

fn values(answer: &Value) -> Vec<f64> {
    answer["series"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["points"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p[1].as_f64())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_business_metrics_appear_as_series() {
    let dir = tempfile::tempdir().unwrap();
    let sluice = start(dir.path());
    let api = Http::new(&sluice.url);
    // msec's example: logins of top-level VIP users.
    let pushed = api
        .send(
            "POST",
            "/v1/namespaces/shop/metrics",
            Some(
                r#"{"metrics": [
                    {"name": "vip_logins", "type": "counter", "value": 3, "labels": {"tier": "top"}},
                    {"name": "vip_logins", "type": "counter", "value": 4, "labels": {"tier": "top"}},
                    {"name": "queue_depth", "type": "gauge", "value": 12},
                    {"name": "checkout_ms", "type": "observation", "value": 120},
                    {"name": "checkout_ms", "type": "observation", "value": 480}
                ]}"#,
            ),
        )
        .await;
    assert_eq!(pushed.0, 200, "{pushed:?}");
    assert_eq!(pushed.2["accepted"], 5);
    let sum = until_series(
        &api,
        "/v1/query?metric=vip_logins&match=namespace=shop,tier=top&agg=sum&from=-60s&step=60s",
        |a| values(a).iter().sum::<f64>() == 7.0,
    )
    .await;
    assert_eq!(sum["series"][0]["labels"]["tier"], "top");
    let depth = api
        .get("/v1/query?metric=queue_depth&match=namespace=shop&agg=max&from=-60s&step=60s")
        .await
        .1;
    assert_eq!(values(&depth), [12.0]);
    let p99 = api
        .get("/v1/query?metric=checkout_ms&match=namespace=shop&agg=p99&from=-60s&step=60s")
        .await
        .1;
    let p99 = values(&p99)[0];
    assert!((p99 - 480.0).abs() <= 480.0 / 32.0, "{p99}");
    let (_, usage) = api.get("/v1/metrics/usage").await;
    assert!(
        usage["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == "vip_logins"),
        "{usage}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_pushes_get_4xx_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let sluice = start(dir.path());
    let api = Http::new(&sluice.url);
    let push = |body: String| {
        let api = api.clone();
        async move {
            api.send("POST", "/v1/namespaces/shop/metrics", Some(&body))
                .await
        }
    };
    let one = |metric: &str| format!(r#"{{"metrics": [{metric}]}}"#);
    for (body, status, named) in [
        (
            one(r#"{"name": "9lives", "type": "gauge", "value": 1}"#),
            400,
            "metrics[0].name",
        ),
        (
            one(r#"{"name": "requests", "type": "gauge", "value": 1}"#),
            400,
            "reserved",
        ),
        (
            one(r#"{"name": "m", "type": "gauge", "value": "high"}"#),
            400,
            "value",
        ),
        (
            one(r#"{"name": "m", "type": "counter", "value": -2}"#),
            400,
            "metrics[0].value",
        ),
        (
            one(r#"{"name": "m", "type": "meter", "value": 1}"#),
            400,
            "type",
        ),
        (
            one(r#"{"name": "m", "type": "gauge", "value": 1, "labels": {"bad-label": "x"}}"#),
            400,
            "metrics[0].labels",
        ),
        (
            one(r#"{"name": "m", "type": "gauge", "value": 1, "labels": {"namespace": "x"}}"#),
            400,
            "namespace",
        ),
        (
            one(r#"{"name": "m", "type": "gauge", "value": 1, "colour": "red"}"#),
            400,
            "colour",
        ),
        ("{}".to_owned(), 400, "metrics"),
    ] {
        let (got, _, error) = push(body.clone()).await;
        let message = error["error"]["message"].as_str().unwrap_or_default();
        assert_eq!(got, status, "{body}: {error}");
        assert!(message.contains(named), "{body}: {message}");
    }
    // Beyond the label-set limit (1000 per metric and namespace): 422 naming the metric.
    let user = |i: usize| {
        format!(
            r#"{{"name": "per_user", "type": "counter", "value": 1, "labels": {{"user": "u{i}"}}}}"#
        )
    };
    let batch = |range: std::ops::Range<usize>| {
        format!(
            r#"{{"metrics": [{}]}}"#,
            range.map(user).collect::<Vec<_>>().join(",")
        )
    };
    let (got, _, error) = push(batch(0..1000)).await;
    assert_eq!(got, 200, "{error}");
    let (got, _, error) = push(batch(999..1001)).await;
    assert_eq!(got, 422, "{error}");
    assert_eq!(error["error"]["code"], "cardinality_limit");
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("per_user"));
    // Known label sets still go in; over 1000 entries in one push is refused too.
    let (got, _, error) = push(batch(0..10)).await;
    assert_eq!(got, 200, "{error}");
    let (got, _, error) = push(batch(0..1001)).await;
    assert_eq!(got, 400, "{error}");
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("at most 1000"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_metrics_of_this_host_and_of_agents_appear_as_series() {
    let dir = tempfile::tempdir().unwrap();
    let sluice = start(dir.path());
    let api = Http::new(&sluice.url);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let host = host.trim();
    let memory = until_series(
        &api,
        &format!(
            "/v1/query?metric=host_mem_total_bytes&match=host={host}&agg=max&from=-60s&step=60s"
        ),
        |a| values(a).first().is_some_and(|v| *v > 0.0),
    )
    .await;
    assert_eq!(memory["series"][0]["labels"]["host"], host);
    until_series(
        &api,
        "/v1/query?metric=host_cpu_percent&agg=avg&from=-60s&step=60s",
        |a| values(a).first().is_some_and(|v| (0.0..=100.0).contains(v)),
    )
    .await;
    for metric in [
        "host_load1",
        "host_net_rx_bytes_per_s",
        "host_disk_read_bytes_per_s",
    ] {
        until_series(
            &api,
            &format!("/v1/query?metric={metric}&agg=max&from=-60s&step=60s"),
            |a| !values(a).is_empty(),
        )
        .await;
    }

    // An agent on "another host" pushes its own.
    let _agent = Sluice::start_until(
        "agent",
        &[
            "--control",
            &sluice.url,
            "--host",
            "web-7",
            "--interval",
            "1s",
        ],
        dir.path(),
        0,
        |_| true,
    );
    until_series(
        &api,
        "/v1/query?metric=host_mem_total_bytes&match=host=web-7&agg=max&from=-60s&step=60s",
        |a| values(a).first().is_some_and(|v| *v > 0.0),
    )
    .await;
}
