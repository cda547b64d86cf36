//! Trace ingest under load and abuse: tail decisions keep every failed and
//! every slow trace whole at a 1 % keep ratio; malformed and hostile bodies
//! (bad protobuf and JSON, wrong id lengths, huge attribute counts, nesting,
//! 50 MB bodies, gzip bombs, unknown encodings) get a 4xx or partial success,
//! never a 5xx; and a flood of spans is refused with 503 + Retry-After while
//! the node's memory stays bounded.

use std::io::Write;
use std::time::Duration;

use prost::Message;
use serde_json::Value;
use sluice_trace::otlp::{
    AnyValue, ExportTraceServiceRequest, KeyValue, KeyValueList, OtlpSpan, Resource, ResourceSpans,
    RpcStatus, ScopeSpans, Status, Value as Any,
};

use crate::support::{Http, Sluice};

fn attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Any::String(value.into())),
        }),
    }
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// A span of `trace`: `parent` 0 for a root; `attributes` extra tags.
fn span(
    trace: u128,
    id: u64,
    parent: u64,
    name: &str,
    start: u64,
    ms: u64,
    error: bool,
) -> OtlpSpan {
    OtlpSpan {
        trace_id: trace.to_be_bytes().to_vec(),
        span_id: id.to_be_bytes().to_vec(),
        trace_state: String::new(),
        parent_span_id: if parent == 0 {
            Vec::new()
        } else {
            parent.to_be_bytes().to_vec()
        },
        name: name.into(),
        kind: 2,
        start_time_unix_nano: start,
        end_time_unix_nano: start + ms * 1_000_000,
        attributes: vec![attribute("http.request.method", "GET")],
        events: Vec::new(),
        status: error.then(|| Status {
            message: "boom".into(),
            code: 2,
        }),
    }
}

fn export_of(service: &str, spans: Vec<OtlpSpan>) -> Vec<u8> {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![attribute("service.name", service)],
            }),
            scope_spans: vec![ScopeSpans { scope: None, spans }],
        }],
    }
    .encode_to_vec()
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut request = client
        .post(url)
        .header("content-type", content_type)
        .body(body);
    if let Some(encoding) = encoding {
        request = request.header("content-encoding", encoding);
    }
    request.send().await.unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// `/v1/tracing` once every one of `traces` is decided and nothing is held.
async fn decided(api: &Http, traces: u64) -> Value {
    let mut status = Value::Null;
    for _ in 0..300 {
        status = api.get("/v1/tracing").await.1;
        let total: u64 = status["decisions"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        if total >= traces && status["held"] == 0 {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the traces were never all decided: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_a_one_percent_ratio_every_failed_and_slow_trace_is_kept_whole() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sluice.toml"),
        "[tracing]\nwindow = \"300ms\"\nkeep_ratio = 0.01\nfloor_per_second = 0\n",
    )
    .unwrap();
    let config = dir.path().join("sluice.toml");
    let sluice = Sluice::up_with(dir.path(), &["--config", config.to_str().unwrap()]);
    let url = format!("{}/v1/traces", sluice.otlp.as_deref().unwrap());
    let client = reqwest::Client::new();
    let (mut failed, mut slow) = (Vec::new(), Vec::new());
    let total = 3000u64;
    let start = now_ns() - 60_000_000_000;
    for batch in 0..total / 100 {
        let (mut roots, mut children) = (Vec::new(), Vec::new());
        for i in batch * 100..(batch + 1) * 100 {
            let trace = (u128::from(i + 1) << 64) | u128::from(fastrand::u64(1..));
            let error = i % 100 == 37;
            // Slow once the API's p98 has been learnt: about 0.6 % of traces.
            let is_slow = i >= 300 && i % 150 == 75;
            let ms = if is_slow { 800 } else { 10 + i % 20 };
            if error {
                failed.push(trace);
            } else if is_slow {
                slow.push(trace);
            }
            let at = start + i * 1_000_000;
            roots.push(span(trace, 1, 0, "GET /api", at, ms, false));
            children.push(span(trace, 2, 1, "SELECT", at + 1000, ms / 2, error));
            children.push(span(trace, 3, 1, "GET /price", at + 2000, 1, false));
        }
        // Each service exports on its own: children first, the root later.
        for (service, spans) in [("back", children), ("front", roots)] {
            let response = post(
                &client,
                &url,
                "application/x-protobuf",
                None,
                export_of(service, spans),
            )
            .await;
            assert_eq!(response.status(), 200);
        }
    }
    let api = Http::new(&sluice.url);
    let status = decided(&api, total).await;
    let decisions = &status["decisions"];
    assert_eq!(decisions["error"], failed.len() as u64, "{status}");
    let kept_slow = decisions["slow"].as_u64().unwrap();
    assert!(kept_slow >= slow.len() as u64, "{status}");
    let ordinary = total - failed.len() as u64 - slow.len() as u64;
    let by_ratio = decisions["ratio"].as_u64().unwrap();
    assert!(
        by_ratio * 100 <= ordinary * 3,
        "about 1 % of {ordinary}: {status}"
    );
    assert!(
        decisions["dropped"].as_u64().unwrap() * 100 >= ordinary * 90,
        "{status}"
    );
    for trace in failed.iter().chain(&slow) {
        let (_, spans) = api.get(&format!("/api/v2/trace/{trace:032x}")).await;
        assert_eq!(
            spans.as_array().unwrap().len(),
            3,
            "trace {trace:032x} kept whole"
        );
    }
}

/// What is sent and what must come back: (what, url, content type, encoding,
/// body, status, rejected spans in a partial success).
type Case<'a> = (
    &'a str,
    &'a str,
    &'a str,
    Option<&'a str>,
    Vec<u8>,
    u16,
    Option<&'a str>,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_hostile_bodies_get_4xx_or_partial_success_never_5xx() {
    let dir = tempfile::tempdir().unwrap();
    let sluice = Sluice::up_with(dir.path(), &[]);
    let otlp = format!("{}/v1/traces", sluice.otlp.as_deref().unwrap());
    let zipkin = format!("{}/api/v2/spans", sluice.zipkin.as_deref().unwrap());
    let client = reqwest::Client::new();
    let trace = 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736u128;
    let at = now_ns();

    let mut wrong_lengths = vec![span(trace, 7, 0, "ok", at, 1, false)];
    let mut short = span(trace, 8, 0, "short id", at, 1, false);
    short.span_id = vec![1, 2, 3, 4];
    wrong_lengths.push(short);
    let mut long_trace = span(trace, 9, 0, "long trace id", at, 1, false);
    long_trace.trace_id = vec![1; 20];
    wrong_lengths.push(long_trace);
    let mut zero = span(trace, 10, 0, "zero id", at, 1, false);
    zero.span_id = vec![0; 8];
    wrong_lengths.push(zero);
    let mut crowded = span(trace, 11, 0, "crowded", at, 1, false);
    crowded.attributes = (0..100_000)
        .map(|i| attribute(&format!("k{i}"), &"v".repeat(100)))
        .collect();
    let mut nested = AnyValue {
        value: Some(Any::String("leaf".into())),
    };
    for _ in 0..500 {
        nested = AnyValue {
            value: Some(Any::KvList(KeyValueList {
                values: vec![KeyValue {
                    key: "k".into(),
                    value: Some(nested),
                }],
            })),
        };
    }
    let mut deep = span(trace, 12, 0, "deep", at, 1, false);
    deep.attributes = vec![KeyValue {
        key: "deep".into(),
        value: Some(nested),
    }];
    let fifty_mb = vec![b'{'; 50 << 20];
    let bomb = gzip(&vec![0u8; 100 << 20]);

    let cases: Vec<Case> = vec![
        ("garbage protobuf", &otlp, "application/x-protobuf", None, vec![0xff; 64], 400, None),
        ("truncated protobuf", &otlp, "application/x-protobuf", None, export_of("s", vec![span(trace, 1, 0, "x", at, 1, false)])[..20].to_vec(), 400, None),
        ("empty protobuf", &otlp, "application/x-protobuf", None, Vec::new(), 200, None),
        ("wrong id lengths", &otlp, "application/x-protobuf", None, export_of("s", wrong_lengths), 200, Some("3")),
        ("100k attributes", &otlp, "application/x-protobuf", None, export_of("s", vec![crowded]), 200, None),
        ("500 levels of nesting", &otlp, "application/x-protobuf", None, export_of("s", vec![deep]), 400, None),
        ("bad JSON", &otlp, "application/json", None, b"{\"resourceSpans\": [".to_vec(), 400, None),
        ("JSON list", &otlp, "application/json", None, b"[]".to_vec(), 400, None),
        ("JSON enum names", &otlp, "application/json", None, br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902b7","kind":"SPAN_KIND_SERVER"}]}]}]}"#.to_vec(), 400, None),
        ("JSON short trace id", &otlp, "application/json", None, br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"4bf92f35","spanId":"00f067aa0ba902b7","startTimeUnixNano":1,"endTimeUnixNano":"2"}]}]}]}"#.to_vec(), 200, Some("1")),
        ("50 MB", &otlp, "application/x-protobuf", None, fifty_mb.clone(), 413, None),
        ("gzip bomb", &otlp, "application/x-protobuf", Some("gzip"), bomb.clone(), 413, None),
        ("not gzip", &otlp, "application/x-protobuf", Some("gzip"), vec![1, 2, 3], 400, None),
        ("brotli", &otlp, "application/x-protobuf", Some("br"), vec![1, 2, 3], 415, None),
        ("text", &otlp, "text/plain", None, b"hello".to_vec(), 415, None),
        ("Zipkin object", &zipkin, "application/json", None, b"{}".to_vec(), 400, None),
        ("Zipkin bad id", &zipkin, "application/json", None, br#"[{"traceId":"xyz","id":"00f067aa0ba902b7"}]"#.to_vec(), 400, None),
        ("Zipkin no id", &zipkin, "application/json", None, br#"[{"traceId":"4bf92f3577b34da6a3ce929d0e0e4736"}]"#.to_vec(), 400, None),
        ("Zipkin string duration", &zipkin, "application/json", None, br#"[{"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","id":"00f067aa0ba902b7","duration":"5"}]"#.to_vec(), 400, None),
        ("Zipkin empty list", &zipkin, "application/json", None, b"[]".to_vec(), 202, None),
        ("Zipkin thrift", &zipkin, "application/x-thrift", None, vec![1, 2], 415, None),
        ("Zipkin 50 MB", &zipkin, "application/json", None, fifty_mb, 413, None),
        ("Zipkin gzip bomb", &zipkin, "application/json", Some("gzip"), bomb, 413, None),
    ];
    for (what, url, content_type, encoding, body, status, rejected) in cases {
        let response = post(&client, url, content_type, encoding, body).await;
        assert_eq!(response.status().as_u16(), status, "{what}");
        let is_json = response
            .headers()
            .get("content-type")
            .is_some_and(|t| t.to_str().unwrap().starts_with("application/json"));
        let is_protobuf = response
            .headers()
            .get("content-type")
            .is_some_and(|t| t.to_str().unwrap() == "application/x-protobuf");
        let body = response.bytes().await.unwrap();
        if url == otlp.as_str() && status != 200 {
            // OTLP's errors are a google.rpc.Status naming the problem.
            let message = if is_json {
                serde_json::from_slice::<Value>(&body).unwrap()["message"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            } else {
                assert!(is_protobuf, "{what}");
                RpcStatus::decode(&body[..]).unwrap().message
            };
            assert!(!message.is_empty(), "{what}");
        }
        if let Some(rejected) = rejected {
            let text = if is_json {
                serde_json::from_slice::<Value>(&body).unwrap()["partialSuccess"]["rejectedSpans"]
                    .clone()
            } else {
                let answer =
                    sluice_trace::otlp::ExportTraceServiceResponse::decode(&body[..]).unwrap();
                Value::String(answer.partial_success.unwrap().rejected_spans.to_string())
            };
            assert_eq!(text, rejected, "{what}");
        }
    }
    let (status, _, health) = Http::new(&sluice.url).send("GET", "/healthz", None).await;
    assert_eq!(status, 200, "{health}");
}

fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        / 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_spans_is_refused_with_retry_after_and_memory_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sluice.toml"),
        "[tracing]\nwindow = \"2s\"\nmax_held_spans = 20000\nmax_queued_spans = 5000\n",
    )
    .unwrap();
    let config = dir.path().join("sluice.toml");
    let sluice = Sluice::up_with(dir.path(), &["--config", config.to_str().unwrap()]);
    let url = format!("{}/v1/traces", sluice.otlp.as_deref().unwrap());
    let before = rss_mib(sluice.pid());
    // 2000 spans of 20 attributes per body, sent by 4 senders for 3 s.
    let body = {
        let at = now_ns();
        let spans = (0..2000u64)
            .map(|i| {
                let mut s = span(
                    u128::from(i / 4 + 1) << 64 | u128::from(fastrand::u64(1..)),
                    i + 1,
                    0,
                    "GET /flood",
                    at,
                    1,
                    false,
                );
                s.attributes = (0..20)
                    .map(|k| attribute(&format!("attribute.{k}"), &format!("value {k} {i}")))
                    .collect();
                s
            })
            .collect();
        export_of("flood", spans)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let mut senders = Vec::new();
    for _ in 0..4 {
        let (url, body) = (url.clone(), body.clone());
        senders.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let (mut ok, mut busy) = (0u64, 0u64);
            while std::time::Instant::now() < deadline {
                let response =
                    post(&client, &url, "application/x-protobuf", None, body.clone()).await;
                match response.status().as_u16() {
                    200 => ok += 1,
                    503 => {
                        assert_eq!(response.headers()["retry-after"], "1");
                        busy += 1;
                    }
                    other => panic!("the flood got {other}"),
                }
            }
            (ok, busy)
        }));
    }
    let mut peak = before;
    let mut totals = (0, 0);
    for sender in senders {
        while !sender.is_finished() {
            peak = peak.max(rss_mib(sluice.pid()));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (ok, busy) = sender.await.unwrap();
        totals = (totals.0 + ok, totals.1 + busy);
    }
    eprintln!(
        "flood: {} bodies taken, {} refused; RSS {before} MiB before, {peak} MiB at most",
        totals.0, totals.1
    );
    assert!(totals.0 > 0);
    assert!(
        peak < before + 1024,
        "RSS grew from {before} MiB to {peak} MiB"
    );
    let status = Http::new(&sluice.url).get("/v1/tracing").await.1;
    assert!(
        status["decided_early"].as_u64().unwrap() > 0
            || status["refused_busy"].as_u64().unwrap() > 0,
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_traces_are_forwarded_over_otlp_to_another_system() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    // The other system is a second Sluice: it speaks OTLP too.
    let receiver = Sluice::up_with(&b, &["--tracing-window", "200ms"]);
    let export = format!("{}/v1/traces", receiver.otlp.as_deref().unwrap());
    let sender = Sluice::up_with(
        &a,
        &["--tracing-window", "200ms", "--trace-export", &export],
    );
    let trace = 0x0af7_6519_16cd_43dd_8448_eb21_1c80_319cu128;
    let at = now_ns();
    let spans = vec![
        span(trace, 1, 0, "GET /orders", at, 30, false),
        span(trace, 2, 1, "SELECT orders", at + 1000, 10, true),
    ];
    let client = reqwest::Client::new();
    let url = format!("{}/v1/traces", sender.otlp.as_deref().unwrap());
    let response = post(
        &client,
        &url,
        "application/x-protobuf",
        None,
        export_of("orders", spans),
    )
    .await;
    assert_eq!(response.status(), 200);
    let there = Http::new(&receiver.url);
    let mut found = Value::Null;
    for _ in 0..100 {
        let (status, _, body) = there
            .send("GET", &format!("/api/v2/trace/{trace:032x}"), None)
            .await;
        if status == 200 && body.as_array().is_some_and(|s| s.len() == 2) {
            found = body;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let spans = found
        .as_array()
        .unwrap_or_else(|| panic!("the trace never reached the other system"));
    let failed = spans.iter().find(|s| s["name"] == "SELECT orders").unwrap();
    assert_eq!(failed["tags"]["error"], "boom");
    assert_eq!(failed["localEndpoint"]["serviceName"], "orders");
    assert_eq!(failed["parentId"], "0000000000000001");
    assert_eq!(failed["duration"], 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_trace_port_is_a_warning_not_a_failed_start() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let address = format!("127.0.0.1:{port}");
    let sluice = Sluice::up_with(
        dir.path(),
        &["--tracing-otlp", &address, "--tracing-zipkin", "off"],
    );
    let log = sluice.log_text();
    assert!(
        log.contains(&format!("cannot listen on {address} for OTLP/HTTP traces")),
        "{log}"
    );
    // The admin address still takes OTLP.
    let response = post(
        &reqwest::Client::new(),
        &format!("{}/v1/traces", sluice.url),
        "application/x-protobuf",
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(response.status(), 200);
    drop(taken);
}
