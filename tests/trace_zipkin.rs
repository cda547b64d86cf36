//! Zipkin's wire formats, as Zipkin's own clients and UI use them: py_zipkin
//! (a Zipkin v2 JSON client, which insists on 202) posts spans to `sluice
//! up`'s Zipkin port, and the query API answers in Zipkin's shapes and units —
//! sorted name lists, lists of span lists, `endTs`/`lookback` in milliseconds,
//! `minDuration` in microseconds, a plain-text 404 for an unknown trace, 400
//! for a missing required parameter.

use std::time::Duration;

use serde_json::Value;

use crate::support::{python_with, Http, Sluice};

/// Two spans of one trace by py_zipkin's V2 JSON encoding; prints the trace id.
const CLIENT: &str = r#"
import sys, time
from py_zipkin.zipkin import zipkin_span
from py_zipkin.transport import SimpleHTTPTransport
from py_zipkin.encoding import Encoding

transport = SimpleHTTPTransport("127.0.0.1", int(sys.argv[1]))
with zipkin_span(service_name="Checkout", span_name="charge card", transport_handler=transport,
                 sample_rate=100.0, encoding=Encoding.V2_JSON, use_128bit_trace_id=True) as span:
    span.update_binary_annotations({"card": "visa"})
    with zipkin_span(service_name="checkout", span_name="call bank") as inner:
        inner.update_binary_annotations({"error": "declined"})
        time.sleep(0.06)
    trace_id = span.zipkin_attrs.trace_id
print(trace_id)
"#;

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zipkin_client_posts_spans_and_reads_them_back_in_zipkins_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let sluice = Sluice::up_with(dir.path(), &["--tracing-window", "200ms"]);
    let zipkin_url = sluice.zipkin.clone().unwrap();
    let port = zipkin_url.rsplit(':').next().unwrap().to_owned();
    let script = dir.path().join("client.py");
    std::fs::write(&script, CLIENT).unwrap();
    let out = python_with("py_zipkin")
        .arg(&script)
        .arg(&port)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "py_zipkin failed (it asserts 202): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trace = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(trace.len(), 32, "{trace}");

    let zipkin = Http::new(&zipkin_url);
    let mut spans = Value::Null;
    for _ in 0..100 {
        let (status, _, body) = zipkin
            .send("GET", &format!("/api/v2/trace/{trace}"), None)
            .await;
        if status == 200 && body.as_array().is_some_and(|s| s.len() == 2) {
            spans = body;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let spans = spans
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("trace {trace} never came back whole"));
    let inner = spans.iter().find(|s| s["name"] == "call bank").unwrap();
    let outer = spans.iter().find(|s| s["name"] == "charge card").unwrap();
    assert_eq!(inner["parentId"], outer["id"]);
    assert_eq!(outer["tags"]["card"], "visa");
    assert_eq!(
        outer["localEndpoint"]["serviceName"], "checkout",
        "lowercased"
    );
    // Zipkin's units: timestamps in epoch µs, durations in µs.
    let timestamp = outer["timestamp"].as_u64().unwrap();
    assert!(timestamp / 1000 <= now_ms() as u64 && timestamp / 1000 > now_ms() as u64 - 60_000);
    let duration = inner["duration"].as_u64().unwrap();
    assert!((60_000..10_000_000).contains(&duration), "{duration} µs");

    let api = Http::new(&sluice.url);
    assert_eq!(
        api.get("/api/v2/services").await.1,
        serde_json::json!(["checkout"])
    );
    assert_eq!(
        api.get("/api/v2/spans?serviceName=Checkout").await.1,
        serde_json::json!(["call bank", "charge card"])
    );
    let end = now_ms() + 1000;
    let search = |query: String| {
        let api = api.clone();
        async move { api.get(&format!("/api/v2/traces?{query}")).await.1 }
    };
    let found = search(format!(
        "serviceName=checkout&minDuration=50000&endTs={end}&lookback=60000"
    ))
    .await;
    assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found[0].as_array().unwrap().len(), 2, "whole traces");
    for query in [
        format!("serviceName=checkout&minDuration=5000000&endTs={end}"),
        format!("serviceName=checkout&endTs={}&lookback=1000", end - 120_000),
        format!("serviceName=checkout&spanName=nothing&endTs={end}"),
        format!("annotationQuery=card%3Dmastercard&endTs={end}"),
    ] {
        assert_eq!(
            search(query.clone()).await,
            serde_json::json!([]),
            "{query}"
        );
    }
    for query in [
        format!("annotationQuery=error&endTs={end}"),
        format!("annotationQuery=card%3Dvisa%20and%20error&spanName=call%20bank&endTs={end}"),
        "limit=1".to_owned(),
    ] {
        assert_eq!(
            search(query.clone()).await.as_array().unwrap().len(),
            1,
            "{query}"
        );
    }
    let many = api
        .get(&format!(
            "/api/v2/traceMany?traceIds={trace},{}",
            "1".repeat(32)
        ))
        .await
        .1;
    assert_eq!(many.as_array().unwrap().len(), 1);
    let links = api
        .get(&format!("/api/v2/dependencies?endTs={end}"))
        .await
        .1;
    assert_eq!(links, serde_json::json!([]), "one service calls none");
    assert!(api
        .get("/api/v2/autocompleteKeys")
        .await
        .1
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("http.method")));

    // The CLI reads the same API.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(args)
            .args(["--server", &sluice.url])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let found = cli(&["trace", "find", "--service", "checkout", "--min", "50ms"]);
    assert!(
        found.contains(&trace) && found.contains("checkout charge card"),
        "{found}"
    );
    assert!(!cli(&["trace", "find", "--service", "checkout", "--min", "5s"]).contains(&trace));
    assert!(cli(&["trace", "find", "--errors"]).contains(&trace));
    let waterfall = cli(&["trace", "get", &trace]);
    let lines: Vec<&str> = waterfall.lines().collect();
    assert!(lines[0].contains("2 spans"), "{waterfall}");
    let outer_line = lines
        .iter()
        .position(|l| l.contains("checkout charge card"))
        .unwrap();
    let inner_line = lines
        .iter()
        .position(|l| l.contains("  checkout call bank"))
        .unwrap();
    assert!(
        inner_line > outer_line,
        "the child under its parent: {waterfall}"
    );
    assert!(
        lines[inner_line].contains("error") && lines[inner_line].contains('█'),
        "{waterfall}"
    );
    assert!(cli(&["trace", "deps"]).starts_with("CALLER"));

    // Zipkin's errors: plain text.
    let (status, _, body) = api
        .send("GET", &format!("/api/v2/trace/{}", "2".repeat(32)), None)
        .await;
    assert_eq!(status, 404);
    assert_eq!(body, Value::String(format!("{} not found", "2".repeat(32))));
    for (path, needs) in [
        ("/api/v2/spans", "serviceName"),
        ("/api/v2/dependencies", "endTs"),
        ("/api/v2/traceMany", "traceIds"),
        ("/api/v2/autocompleteValues", "key"),
        ("/api/v2/traces?maxDuration=5", "minDuration"),
        ("/api/v2/traces?limit=0", "limit"),
        ("/api/v2/traces?endTs=yesterday", "endTs"),
        ("/api/v2/trace/xyz", "trace id"),
    ] {
        let (status, _, body) = api.send("GET", path, None).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body.as_str().unwrap().contains(needs), "{path}: {body}");
    }

    // After a kill -9 and a start on the same data, the spans are read back
    // (in the background: the node is ready first).
    drop(sluice);
    let again = Sluice::up_with(dir.path(), &[]);
    let api = Http::new(&again.url);
    let mut back = 0;
    for _ in 0..100 {
        let (status, _, body) = api
            .send("GET", &format!("/api/v2/trace/{trace}"), None)
            .await;
        let (_, tracing) = api.get("/v1/tracing").await;
        if status == 200 && tracing["loading"] == false {
            back = body.as_array().map_or(0, Vec::len);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(back, 2, "the trace survives a restart");
}
