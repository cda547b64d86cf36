//! Error reports from the official Sentry SDK for Python (PyPI's `sentry-sdk`,
//! unmodified): an exception appears as a group with its stack, and the same
//! exception again increments the group's count.

use crate::support::{python_with, Http, Sluice};

const KEY: &str = "0123456789abcdef0123456789abcdef";

const SCRIPT: &str = r#"
import sys
import sentry_sdk

sentry_sdk.init(dsn=sys.argv[1], default_integrations=False)

def charge(amount):
    return 100 / amount

try:
    charge(0)
except ZeroDivisionError as error:
    sentry_sdk.capture_exception(error)
sentry_sdk.flush(10)
"#;

fn report(dir: &std::path::Path, dsn: &str) {
    let script = dir.join("report.py");
    std::fs::write(&script, SCRIPT).unwrap();
    let out = python_with("sentry_sdk")
        .arg(&script)
        .arg(dsn)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `sluice up` with the error project 42 (key `KEY`).
async fn with_error_project(dir: &std::path::Path) -> (Sluice, Http) {
    let sluice = Sluice::up(dir);
    let api = Http::new(&sluice.url);
    api.put(
        "/v1/namespaces/default/resources/ErrorProject/web",
        &format!(r#"{{"spec": {{"id": 42, "key": "{KEY}"}}}}"#),
    )
    .await;
    (sluice, api)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sentry_sdk_reports_exceptions_grouped_with_their_stack() {
    let dir = tempfile::tempdir().unwrap();
    let (sluice, api) = with_error_project(dir.path()).await;
    let dsn = format!("http://{KEY}@127.0.0.1:{}/42", sluice.port);
    report(dir.path(), &dsn);
    let (_, groups) = api.get("/v1/namespaces/default/errors").await;
    let group = &groups["items"][0];
    assert_eq!(group["type"], "ZeroDivisionError", "{groups}");
    assert_eq!(group["message"], "division by zero");
    assert_eq!(group["count"], 1);
    assert!(
        group["culprit"].as_str().unwrap().starts_with("charge"),
        "{group}"
    );
    let frames = group["frames"].as_array().unwrap();
    assert!(frames.iter().any(|f| f["function"] == "charge"), "{group}");
    let fingerprint = group["fingerprint"].as_str().unwrap().to_owned();

    // The same exception again: the same group, counted twice.
    report(dir.path(), &dsn);
    let (_, groups) = api.get("/v1/namespaces/default/errors").await;
    assert_eq!(groups["items"].as_array().unwrap().len(), 1, "{groups}");
    assert_eq!(groups["items"][0]["count"], 2);
    let (_, one) = api
        .get(&format!("/v1/namespaces/default/errors/{fingerprint}"))
        .await;
    let samples = one["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 2);
    assert!(samples[0]["exception"]["values"][0]["stacktrace"]["frames"].is_array());

    // The CLI.
    let listing = sluice.cli(&["errors", "ls"]);
    assert!(
        listing.contains("ZeroDivisionError") && listing.contains(&fingerprint),
        "{listing}"
    );
    let shown = sluice.cli(&["errors", "show", &fingerprint]);
    assert!(
        shown.contains("2 events") && shown.contains("charge in __main__"),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_reports_get_clear_4xx() {
    let dir = tempfile::tempdir().unwrap();
    let (sluice, api) = with_error_project(dir.path()).await;
    let client = reqwest::Client::new();
    let post = |path: &str, auth: Option<&str>, body: &'static str| {
        let mut request = client.post(format!("{}{path}", sluice.url)).body(body);
        if let Some(key) = auth {
            request = request.header(
                "x-sentry-auth",
                format!("Sentry sentry_key={key}, sentry_version=7"),
            );
        }
        request.send()
    };
    for (path, auth, body, status) in [
        ("/api/42/envelope/", None, "{}\n", 401),
        (
            "/api/42/envelope/",
            Some("wrong-key-0000000000"),
            "{}\n",
            401,
        ),
        ("/api/7/envelope/", Some(KEY), "{}\n", 404),
        ("/api/x/envelope/", Some(KEY), "{}\n", 400),
        ("/api/42/envelope/", Some(KEY), "not json\n", 400),
        (
            "/api/42/envelope/",
            Some(KEY),
            "{}\n{\"type\":\"event\",\"length\":500}\n{}",
            400,
        ),
        (
            "/api/42/envelope/",
            Some(KEY),
            "{}\n{\"type\":\"event\"}\n{}\n",
            400,
        ),
        ("/api/42/store/", Some(KEY), "[1, 2]", 400),
    ] {
        let response = post(path, auth, body).await.unwrap();
        let got = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert_eq!(got, status, "{path} {body:?}: {text}");
        assert!(text.contains("\"error\""), "{text}");
    }
    let (status, _, _) = api
        .send("POST", "/v1/namespaces/default/errors", Some(r#"{"type": "Timeout", "message": "db", "frames": [{"function": "query", "module": "db"}]}"#))
        .await;
    assert_eq!(status, 200);
    let (status, _, error) = api
        .send(
            "PUT",
            "/v1/namespaces/default/resources/ErrorProject/bad",
            Some(r#"{"spec": {"id": 1, "key": "short"}}"#),
        )
        .await;
    assert_eq!(status, 400);
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("spec.key"));
}
