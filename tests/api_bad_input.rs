//! Bad input against a real `sluice up`: invalid names, addresses, weights,
//! thresholds, unknown fields, wrong types, oversized and malformed bodies, and
//! missing or wrong tokens all get a 4xx JSON error naming the problem; thousands
//! of generated requests produce no 5xx and no crash.

use serde_json::Value;

use crate::support::{Http, Sluice};

fn error_message(body: &Value) -> String {
    assert!(
        body["error"]["code"].is_string(),
        "not an error body: {body}"
    );
    body["error"]["message"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_4xx_errors() {
    let dir = tempfile::tempdir().unwrap();
    let sluice = Sluice::start(
        "up",
        &["--data", dir.path().join("d").to_str().unwrap()],
        dir.path(),
    );
    let http = Http::new(&sluice.url);
    let instance = "/v1/namespaces/default/services/echo/instances/i1";
    let cases: Vec<(&str, String, Option<String>, u16, &str)> = vec![
        (
            "PUT",
            "/v1/namespaces/default/services/bad%2Fname/instances/i1".into(),
            Some(r#"{"address":"127.0.0.1:1"}"#.into()),
            400,
            "service",
        ),
        (
            "PUT",
            "/v1/namespaces/-x/services/echo/instances/i1".into(),
            Some(r#"{"address":"127.0.0.1:1"}"#.into()),
            400,
            "namespace",
        ),
        (
            "PUT",
            instance.into(),
            Some(r#"{"address":"127.0.0.1"}"#.into()),
            400,
            "address",
        ),
        (
            "PUT",
            instance.into(),
            Some(r#"{"address":"127.0.0.1:1","weight":1001}"#.into()),
            400,
            "weight",
        ),
        (
            "PUT",
            instance.into(),
            Some(r#"{"address":"127.0.0.1:1","weight":-1}"#.into()),
            400,
            "weight",
        ),
        (
            "PUT",
            instance.into(),
            Some(r#"{"address":"127.0.0.1:1","weight":"heavy"}"#.into()),
            400,
            "weight",
        ),
        (
            "PUT",
            instance.into(),
            Some(r#"{"address":"127.0.0.1:1","colour":"red"}"#.into()),
            400,
            "colour",
        ),
        (
            "PUT",
            instance.into(),
            Some(r#"{"address":"127.0.0.1:1","labels":{"zone":7}}"#.into()),
            400,
            "labels.zone",
        ),
        (
            "PUT",
            instance.into(),
            Some(r#"{"address":"127.0.0.1:1","check":{"type":"icmp"}}"#.into()),
            400,
            "check.type",
        ),
        (
            "PUT",
            instance.into(),
            Some(r#"{"address":"#.into()),
            400,
            "JSON",
        ),
        ("PUT", instance.into(), Some("".into()), 400, "empty"),
        (
            "PUT",
            instance.into(),
            Some(format!(
                r#"{{"address":"127.0.0.1:1","metadata":{{"x":"{}"}}}}"#,
                "y".repeat(2 * 1024 * 1024)
            )),
            413,
            "limit",
        ),
        (
            "PATCH",
            instance.into(),
            Some(r#"{"draining":"yes"}"#.into()),
            400,
            "draining",
        ),
        (
            "PUT",
            "/v1/namespaces/default/resources/Service/echo".into(),
            Some(r#"{"spec":{"protect_threshold":1.5}}"#.into()),
            400,
            "protect_threshold",
        ),
        (
            "PUT",
            "/v1/namespaces/default/resources/Service/echo".into(),
            Some(r#"{"spec":{"protect_threshold":0.5},"kind":"Route"}"#.into()),
            400,
            "kind",
        ),
        (
            "PUT",
            "/v1/namespaces/default/resources/Nope/echo".into(),
            Some(r#"{"spec":{}}"#.into()),
            404,
            "unknown resource kind",
        ),
        (
            "GET",
            "/v1/namespaces/default/services/echo/instances?index=abc".into(),
            None,
            400,
            "index",
        ),
        (
            "GET",
            "/v1/namespaces/default/services/echo/instances?wait=1y".into(),
            None,
            400,
            "wait",
        ),
        (
            "GET",
            "/v1/namespaces/default/services/echo/instances?colour=red".into(),
            None,
            400,
            "colour",
        ),
        (
            "GET",
            "/v1/namespaces/default/services/echo/instances?wait=11m&index=1".into(),
            None,
            400,
            "maximum",
        ),
        (
            "POST",
            "/v1/namespaces/default/resources/Service/echo/rollback".into(),
            None,
            400,
            "revision",
        ),
        (
            "PUT",
            format!("{instance}/heartbeat"),
            None,
            404,
            "register it again",
        ),
        ("DELETE", instance.into(), None, 404, "not registered"),
        ("GET", "/v2/nothing".into(), None, 404, "no such endpoint"),
        ("POST", instance.into(), None, 405, "method"),
    ];
    for (method, path, body, status, needle) in cases {
        let (got, _, value) = http.send(method, &path, body.as_deref()).await;
        assert_eq!(got, status, "{method} {path}: {value}");
        let message = error_message(&value);
        assert!(
            message.contains(needle),
            "{method} {path}: {message:?} should mention {needle:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_generated_requests_cause_no_5xx() {
    let dir = tempfile::tempdir().unwrap();
    let sluice = Sluice::start(
        "up",
        &["--data", dir.path().join("d").to_str().unwrap()],
        dir.path(),
    );
    let seed = std::env::var("SLUICE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("random seed {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let segments = [
        "default",
        "echo",
        "i1",
        "Service",
        "-",
        "a.b",
        "%2F",
        "%00",
        "..",
        "x".repeat(70).leak(),
        "ü",
        "a%20b",
        "",
        "Route",
    ];
    let templates = [
        "/v1/namespaces/{}/services/{}/instances/{}",
        "/v1/namespaces/{}/services/{}/instances/{}/heartbeat",
        "/v1/namespaces/{}/services/{}/instances",
        "/v1/namespaces/{}/services",
        "/v1/namespaces/{}/resources/{}/{}",
        "/v1/namespaces/{}/resources/{}/{}/history",
        "/v1/namespaces/{}/resources/{}/{}/rollback",
        "/v1/namespaces/{}/resources/{}",
        "/v1/sd/prometheus",
        "/{}/{}",
    ];
    let queries = [
        "",
        "?all=true",
        "?all=maybe",
        "?index=0&wait=1ms",
        "?revision=1",
        "?revision=-1",
        "?wait=5ms&index=99999999",
        "?%zz",
        "?all",
    ];
    let methods = ["GET", "PUT", "PATCH", "DELETE", "POST"];
    let mut requests = Vec::new();
    for _ in 0..3000 {
        let mut path = templates[rng.usize(..templates.len())].to_owned();
        while path.contains("{}") {
            path = path.replacen("{}", segments[rng.usize(..segments.len())], 1);
        }
        path.push_str(queries[rng.usize(..queries.len())]);
        let method = methods[rng.usize(..methods.len())];
        let body = random_body(&mut rng);
        requests.push((method, path, body));
    }
    let http = std::sync::Arc::new(Http::new(&sluice.url));
    let mut server_errors = Vec::new();
    for chunk in requests.chunks(32) {
        let tasks: Vec<_> = chunk
            .iter()
            .cloned()
            .map(|(method, path, body)| {
                let http = std::sync::Arc::clone(&http);
                tokio::spawn(async move {
                    let (status, _, value) = http.send(method, &path, body.as_deref()).await;
                    (method, path, body, status, value)
                })
            })
            .collect();
        for task in tasks {
            let (method, path, body, status, value) = task.await.unwrap();
            if status >= 500 {
                server_errors.push(format!("{method} {path} {body:?} -> {status} {value}"));
            } else if status >= 400 {
                error_message(&value);
            }
        }
    }
    assert!(
        server_errors.is_empty(),
        "5xx answers:\n{}",
        server_errors.join("\n")
    );
    let (_, health) = http.get("/healthz").await;
    assert_eq!(health["status"], "ok", "still alive");
}

fn random_body(rng: &mut fastrand::Rng) -> Option<String> {
    let bodies = [
        None,
        Some(r#"{"address":"127.0.0.1:9001"}"#.to_owned()),
        Some(r#"{"address":"127.0.0.1:9001","ephemeral":true}"#.to_owned()),
        Some(r#"{"draining":true}"#.to_owned()),
        Some(r#"{"weight":5,"healthy":false}"#.to_owned()),
        Some(r#"{"spec":{"protect_threshold":0.5}}"#.to_owned()),
        Some(r#"{"spec":[]}"#.to_owned()),
        Some("[]".to_owned()),
        Some("null".to_owned()),
        Some("{".to_owned()),
        Some("\u{0}\u{1}garbage".to_owned()),
        Some("[".repeat(5000)),
        Some(format!(r#"{{"address":"{}"}}"#, "9".repeat(5000))),
        Some(r#"{"address":"[::1]:70000","labels":{"a":"b"}}"#.to_owned()),
        Some(
            r#"{"address":"h:1","check":{"type":"http","path":"/x","interval":"1ms"}}"#.to_owned(),
        ),
    ];
    let mut body = bodies[rng.usize(..bodies.len())].clone();
    if let Some(text) = body.as_mut() {
        if rng.bool() && !text.is_empty() {
            // Flip a byte to a random printable character.
            let mut bytes = text.clone().into_bytes();
            let at = rng.usize(..bytes.len());
            bytes[at] = rng.u8(32..127);
            *text = String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_guard_everything() {
    let dir = tempfile::tempdir().unwrap();
    let sluice = Sluice::up_with_tokens(
        dir.path(),
        r#"
[[tokens]]
name = "reader"
token = "read-token-0123456789"
role = "read"
namespaces = ["default"]

[[tokens]]
name = "writer"
token = "write-token-0123456789"
role = "write"
"#,
        &[],
    );
    let url = sluice.url.clone();
    let anonymous = Http::new(&url);
    let wrong = Http::with_token(&url, "not-a-valid-token-at-all");
    let reader = Http::with_token(&url, "read-token-0123456789");
    let writer = Http::with_token(&url, "write-token-0123456789");
    let instance = "/v1/namespaces/default/services/echo/instances/i1";
    for path in [
        "/healthz",
        "/readyz",
        "/v1/openapi.json",
        "/v1/sd/prometheus",
        "/v1/namespaces/default/services",
        instance,
    ] {
        let (status, _, body) = anonymous.send("GET", path, None).await;
        assert_eq!(status, 401, "{path}: {body}");
        assert!(error_message(&body).contains("token"));
        let (status, _, body) = wrong.send("GET", path, None).await;
        assert_eq!(status, 401, "{path}: {body}");
    }
    let (status, _, body) = reader
        .send("PUT", instance, Some(r#"{"address":"127.0.0.1:1"}"#))
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(error_message(&body).contains("write"), "{body}");
    let (status, _, _) = writer
        .send("PUT", instance, Some(r#"{"address":"127.0.0.1:1"}"#))
        .await;
    assert_eq!(status, 201);
    writer
        .put(
            "/v1/namespaces/team-b/services/x/instances/j1",
            r#"{"address":"127.0.0.1:2"}"#,
        )
        .await;
    let (_, list) = reader
        .get("/v1/namespaces/default/services/echo/instances")
        .await;
    assert_eq!(list["instances"].as_array().unwrap().len(), 1);
    let (status, _, body) = reader
        .send("GET", "/v1/namespaces/team-b/services", None)
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(error_message(&body).contains("team-b"));
    // Service discovery shows a namespaced token only its namespaces.
    let (_, groups) = reader.get("/v1/sd/prometheus").await;
    assert_eq!(groups.as_array().unwrap().len(), 1);
    let (_, groups) = writer.get("/v1/sd/prometheus").await;
    assert_eq!(groups.as_array().unwrap().len(), 2);
}
