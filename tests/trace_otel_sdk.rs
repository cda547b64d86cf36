//! One request followed across services: the gateway → service A → service B,
//! where A and B are small Python services instrumented with the official
//! OpenTelemetry SDK (`opentelemetry-sdk`, `opentelemetry-exporter-otlp-proto-
//! http`), configured only by the SDK's standard environment variables and
//! exporting to `sluice up`'s OTLP port. Sluice's Zipkin API then holds one
//! trace with the right parents, and the dependency graph `sluice-gateway → A
//! → B` with counts.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use crate::support::{python_with, Http, Peer, Sluice};

/// A service instrumented with the OpenTelemetry SDK. Arguments: the port, and
/// the URL of the next service to call (forwarding the trace context), if any.
const SERVICE: &str = r#"
import sys, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from opentelemetry import trace, propagate
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

# Everything from the environment: OTEL_SERVICE_NAME, OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_BSP_*.
provider = TracerProvider()
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
trace.set_tracer_provider(provider)
tracer = trace.get_tracer("sluice-e2e")
port = int(sys.argv[1])
next_url = sys.argv[2] if len(sys.argv) > 2 else None

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        carrier = {k.lower(): v for k, v in self.headers.items()}
        context = propagate.extract(carrier)
        with tracer.start_as_current_span("GET " + self.path, context=context, kind=trace.SpanKind.SERVER) as span:
            span.set_attribute("http.request.method", "GET")
            body = b"ok"
            if next_url:
                with tracer.start_as_current_span("GET /b", kind=trace.SpanKind.CLIENT) as client:
                    client.set_attribute("peer.service", "service-b")
                    headers = {}
                    propagate.inject(headers)
                    request = urllib.request.Request(next_url, headers=headers)
                    body = urllib.request.urlopen(request, timeout=5).read()
            span.set_attribute("http.response.status_code", 200)
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
print("ready", flush=True)
server.serve_forever()
"#;

fn service(dir: &std::path::Path, name: &str, otlp: &str, port: u16, next: Option<&str>) -> Peer {
    let script = dir.join("service.py");
    std::fs::write(&script, SERVICE).unwrap();
    let mut command = python_with("opentelemetry");
    command
        .arg(&script)
        .arg(port.to_string())
        .args(next)
        .env("OTEL_SERVICE_NAME", name)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp)
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("OTEL_TRACES_SAMPLER", "parentbased_always_on")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("{name}.log"))).unwrap());
    Peer::spawn(&mut command)
}

/// The trace's spans once it has `count` of them (a hang guard of 30 s).
async fn trace_with(api: &Http, trace: &str, count: usize) -> Vec<Value> {
    let mut last = Value::Null;
    for _ in 0..300 {
        let (status, _, spans) = api
            .send("GET", &format!("/api/v2/trace/{trace}"), None)
            .await;
        if status == 200 && spans.as_array().is_some_and(|s| s.len() >= count) {
            return spans.as_array().cloned().unwrap_or_default();
        }
        last = spans;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("trace {trace} never had {count} spans: {last}");
}

/// The span of `service` with `kind`.
fn span<'a>(spans: &'a [Value], service: &str, kind: &str) -> &'a Value {
    spans
        .iter()
        .find(|s| s["localEndpoint"]["serviceName"] == service && s["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} span of {service} in {spans:#?}"))
}

/// Checks the parents of gateway → A → B; answers the gateway's SERVER span.
fn check_parents(spans: &[Value]) -> Value {
    let gateway = span(spans, "sluice-gateway", "SERVER");
    let gateway_client = span(spans, "sluice-gateway", "CLIENT");
    let a = span(spans, "service-a", "SERVER");
    let a_client = span(spans, "service-a", "CLIENT");
    let b = span(spans, "service-b", "SERVER");
    assert_eq!(gateway["name"], "GET /a", "named by its API");
    assert_eq!(gateway_client["parentId"], gateway["id"]);
    assert_eq!(gateway_client["remoteEndpoint"]["serviceName"], "service-a");
    assert_eq!(
        a["parentId"], gateway_client["id"],
        "A's parent is the gateway's attempt"
    );
    assert_eq!(a_client["parentId"], a["id"]);
    assert_eq!(b["parentId"], a_client["id"]);
    let trace = &gateway["traceId"];
    assert!(spans.iter().all(|s| &s["traceId"] == trace), "one trace");
    gateway.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_otel_instrumented_call_chain_is_one_trace_with_a_dependency_graph() {
    let dir = tempfile::tempdir().unwrap();
    let sluice = Sluice::up_with(
        dir.path(),
        &["--tracing-window", "1s", "--tracing-keep-ratio", "1"],
    );
    let otlp = sluice.otlp.clone().unwrap();
    let (port_a, port_b) = (sluice_testkit::free_port(), sluice_testkit::free_port());
    let b_dir = dir.path().join("b");
    let a_dir = dir.path().join("a");
    std::fs::create_dir_all(&b_dir).unwrap();
    std::fs::create_dir_all(&a_dir).unwrap();
    let _b = service(&b_dir, "service-b", &otlp, port_b, None);
    let b_url = format!("http://127.0.0.1:{port_b}/b");
    let _a = service(&a_dir, "service-a", &otlp, port_a, Some(&b_url));
    // Listening before the gateway may send to them (no failed attempt skews the graph).
    for port in [port_a, port_b] {
        assert!(
            sluice_testkit::wait_until(Duration::from_secs(30), || {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            }),
            "a Python service never listened on {port}"
        );
    }
    let api = Http::new(&sluice.url);
    api.register("service-a", "a1", &format!("127.0.0.1:{port_a}"))
        .await;
    api.route(
        "a",
        r#"{"match": {"path_prefix": "/a"}, "service": "service-a"}"#,
    )
    .await;
    let gateway = sluice.gateway.clone().unwrap();
    let client = reqwest::Client::new();
    // Until the route, the instance and both Python services are up.
    let mut started = None;
    for _ in 0..300 {
        if let Ok(response) = client.get(format!("{gateway}/a")).send().await {
            if response.status() == 200 {
                started = response
                    .headers()
                    .get("x-sluice-trace-id")
                    .map(|v| v.to_str().unwrap().to_owned());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = started.expect("the chain never answered 200 with a trace id");

    // A trace the gateway started: its SERVER span is the root.
    let spans = trace_with(&api, &started, 5).await;
    let root = check_parents(&spans);
    assert!(root.get("parentId").is_none(), "{root}");
    assert_eq!(root["traceId"], started);

    // A trace the caller started: the gateway's span is its child.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller = "00f067aa0ba902b7";
    let response = client
        .get(format!("{gateway}/a"))
        .header("traceparent", format!("00-{trace}-{caller}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-sluice-trace-id"], trace);
    let zipkin = Http::new(sluice.zipkin.as_deref().unwrap());
    let spans = trace_with(&zipkin, trace, 5).await;
    let gateway_span = check_parents(&spans);
    assert_eq!(gateway_span["parentId"], caller);

    // The graph: sluice-gateway → service-a → service-b, twice each.
    let mut links = HashMap::new();
    for _ in 0..300 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let (_, answer) = api.get(&format!("/api/v2/dependencies?endTs={now}")).await;
        links = answer
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    format!(
                        "{} -> {}",
                        l["parent"].as_str().unwrap(),
                        l["child"].as_str().unwrap()
                    ),
                    (
                        l["callCount"].as_u64().unwrap(),
                        l["errorCount"].as_u64().unwrap(),
                    ),
                )
            })
            .collect();
        if links.values().filter(|(calls, _)| *calls >= 2).count() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        links.get("sluice-gateway -> service-a"),
        Some(&(2, 0)),
        "{links:?}"
    );
    assert_eq!(
        links.get("service-a -> service-b"),
        Some(&(2, 0)),
        "{links:?}"
    );
    assert_eq!(links.len(), 2, "{links:?}");
    let (_, services) = api.get("/api/v2/services").await;
    assert_eq!(
        services,
        serde_json::json!(["service-a", "service-b", "sluice-gateway"])
    );
    let (_, graph) = api
        .get(&format!(
            "/v1/tracing/dependencies?endTs={}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
        ))
        .await;
    assert!(graph[0]["p99Us"].as_u64().is_some(), "{graph}");
}
