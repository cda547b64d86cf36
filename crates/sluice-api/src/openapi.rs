//! The OpenAPI 3.1 document served at `GET /v1/openapi.json`, built from [`ENDPOINTS`],
//! the same table the tests check against the router. Request bodies are described
//! by JSON Schemas generated from the Rust types the handlers parse them into
//! (schemars, from the same serde attributes), and the generic resource endpoints
//! are listed once per kind, each with its own `spec` schema.

use schemars::generate::SchemaSettings;
use schemars::SchemaGenerator;
use serde_json::{json, Map, Value};
use sluice_model::schema::{DURATION_PATTERN, NAME_PATTERN};

/// An endpoint: method, path (OpenAPI template), summary, query parameters, whether it takes a body.
pub struct Endpoint {
    /// HTTP method, lower case.
    pub method: &'static str,
    /// Path template.
    pub path: &'static str,
    /// One line on what it does.
    pub summary: &'static str,
    /// Query parameters it takes.
    pub query: &'static [(&'static str, &'static str)],
    /// Whether it takes a JSON body.
    pub body: bool,
}

const BLOCKING: &[(&str, &str)] = &[
    ("index", "blocking query: answer once the index is past this (from X-Sluice-Index)"),
    ("wait", "blocking query: longest wait, such as 30s (default 5m, at most 10m; up to 1/16 jitter added)"),
];

const CONFIG_READ: &[(&str, &str)] = &[
    (
        "version",
        "watch: the version held (0: none); answers once another would be served",
    ),
    ("md5", "watch: the MD5 of the content held"),
    (
        "wait",
        "watch: longest wait, such as 30s (default 30s, at most 10m; up to 1/16 less)",
    ),
    ("labels", "the client's labels for gray rules: k=v,k2=v2"),
    (
        "client_id",
        "the client's id, for percentage rules and the clients list",
    ),
    (
        "ip",
        "the client's address for gray rules (default: the connection's)",
    ),
];

/// Every endpoint of the admin API.
pub const ENDPOINTS: &[Endpoint] = &[
    Endpoint { method: "get", path: "/healthz", summary: "The process is up.", query: &[], body: false },
    Endpoint { method: "get", path: "/readyz", summary: "The registry is loaded and the store answers.", query: &[], body: false },
    Endpoint { method: "get", path: "/v1/openapi.json", summary: "This document.", query: &[], body: false },
    Endpoint { method: "get", path: "/v1/kinds", summary: "Resource kinds this Sluice accepts.", query: &[], body: false },
    Endpoint { method: "get", path: "/v1/admin/backup", summary: "A backup of the whole store at one revision, streamed as JSON lines (header, one record per key, an end line with counts and SHA-256); keys on leases left out. Admin tokens covering every namespace only. Restore with sluice store import.", query: &[], body: false },
    Endpoint { method: "get", path: "/v1/sd/prometheus", summary: "Prometheus HTTP service discovery: a target group per instance with __meta_sluice_* labels.", query: &[("namespace", "only this namespace"), ("service", "only this service")], body: false },
    Endpoint { method: "get", path: "/v1/namespaces/{ns}/services", summary: "Services with instances, with healthy / total / draining counts.", query: &[], body: false },
    Endpoint { method: "get", path: "/v1/namespaces/{ns}/services/{svc}/instances", summary: "Instances to send traffic to (healthy, not draining; all non-draining when the protection threshold triggers), or all with all=true. Blocking with index/wait.", query: &[("all", "true: every instance, flagged"), BLOCKING[0], BLOCKING[1]], body: false },
    Endpoint { method: "get", path: "/v1/namespaces/{ns}/services/{svc}/instances/{id}", summary: "One instance.", query: &[], body: false },
    Endpoint { method: "put", path: "/v1/namespaces/{ns}/services/{svc}/instances/{id}", summary: "Register or update an instance: {address, ephemeral?, weight?, labels?, metadata?, check?, draining?}.", query: &[], body: true },
    Endpoint { method: "patch", path: "/v1/namespaces/{ns}/services/{svc}/instances/{id}", summary: "Change weight, draining, labels, metadata, or an operator's health verdict.", query: &[], body: true },
    Endpoint { method: "delete", path: "/v1/namespaces/{ns}/services/{svc}/instances/{id}", summary: "Deregister an instance.", query: &[], body: false },
    Endpoint { method: "put", path: "/v1/namespaces/{ns}/services/{svc}/instances/{id}/heartbeat", summary: "Heartbeat of an ephemeral instance; 404 means register again.", query: &[], body: false },
    Endpoint { method: "get", path: "/v1/namespaces/{ns}/resources/{kind}", summary: "List resources of a kind. Blocking with index/wait.", query: BLOCKING, body: false },
    Endpoint { method: "get", path: "/v1/resources/{kind}", summary: "List resources of a kind in every namespace the token covers. Blocking with index/wait (gateways follow routes with it).", query: BLOCKING, body: false },
    Endpoint { method: "get", path: "/v1/namespaces/{ns}/resources/{kind}/{name}", summary: "Read a resource: {kind, metadata: {namespace, name, labels, revision}, spec}.", query: &[], body: false },
    Endpoint { method: "put", path: "/v1/namespaces/{ns}/resources/{kind}/{name}", summary: "Create or replace a resource: {spec, metadata?: {labels}}.", query: &[], body: true },
    Endpoint { method: "delete", path: "/v1/namespaces/{ns}/resources/{kind}/{name}", summary: "Delete a resource (its last version stays in the history).", query: &[], body: false },
    Endpoint { method: "get", path: "/v1/namespaces/{ns}/resources/{kind}/{name}/history", summary: "Kept versions, newest first.", query: &[], body: false },
    Endpoint { method: "post", path: "/v1/namespaces/{ns}/resources/{kind}/{name}/rollback", summary: "Make the version at ?revision=N current again.", query: &[("revision", "a revision from the history")], body: false },
    Endpoint { method: "get", path: "/v1/namespaces/{ns}/alarms", summary: "Alarms: {items: [{id, rule, state, labels, value, threshold, message, count, first_seen, last_seen, fired_at, resolved_at, acknowledged, notified}]}.", query: &[("state", "firing | pending | resolved | all (default)")], body: false },
    Endpoint { method: "post", path: "/v1/namespaces/{ns}/alarms/{id}/ack", summary: "Acknowledge an alarm: no repeated notifications while it keeps firing.", query: &[], body: false },
    Endpoint { method: "get", path: "/v1/namespaces/{ns}/notifications", summary: "Notifications not yet delivered, with attempts and the last error.", query: &[], body: false },
    Endpoint { method: "post", path: "/api/{project}/{endpoint}/", summary: "Sentry's protocol (endpoint: envelope or store), for the official SDKs with DSN http://KEY@HOST/ID of an ErrorProject; gzip or deflate bodies.", query: &[("sentry_key", "the DSN key (or the X-Sentry-Auth header)")], body: true },
    Endpoint { method: "get", path: "/v1/namespaces/{ns}/errors", summary: "Error groups (by exception type and top in-app frames), most recent first: fingerprint, type, message, culprit, count, first_seen, last_seen, frames.", query: &[], body: false },
    Endpoint { method: "post", path: "/v1/namespaces/{ns}/errors", summary: "A plain error report: {type, message, frames: [{function, module, lineno, in_app}]}.", query: &[], body: true },
    Endpoint { method: "get", path: "/v1/namespaces/{ns}/errors/{fingerprint}", summary: "One error group with its sample events.", query: &[], body: false },
    Endpoint { method: "get", path: "/metrics", summary: "Prometheus / OpenMetrics exposition: the gateway's per-API request counts and latency histograms, rejections by reason, the metrics store's figures.", query: &[], body: false },
    Endpoint { method: "get", path: "/v1/metrics/usage", summary: "The metrics store: series held, bytes on disk (fixed per series), bytes at the series limit, dropped series, tiers.", query: &[], body: false },
    Endpoint { method: "post", path: "/v1/metrics/steps", summary: "A standalone gateway's recording of one step: {time, series: [{name: requests | latency_ms, labels, count, sum, min, max, histogram?}]}, merged into the stored series.", query: &[], body: true },
    Endpoint { method: "get", path: "/v1/query", summary: "Series for charts and alarms: derived signals qps, error_rate, p50_ms, p98_ms, p99_ms (labels namespace, service, api, instance) or any stored metric read with agg.", query: &[("metric", "qps | error_rate | p50_ms | p98_ms | p99_ms | a stored metric"), ("match", "label=value,... the series must have"), ("from", "Unix seconds, RFC 3339, now or -DURATION (default: to - 1h)"), ("to", "likewise (default: now)"), ("step", "point spacing such as 1m (rounded up to the tier's step)"), ("by", "labels to group by (default: all but code)"), ("agg", "avg | sum | count | min | max | rate | p50 | p98 | p99 (stored metrics)")], body: false },
    Endpoint { method: "get", path: "/v1/namespaces/{ns}/services/{svc}/protection", summary: "A service's protection: routes to it, adaptive concurrency limits and circuit breakers as the in-process gateway holds them, the protection resources naming it or its routes, and requests refused over the window by reason.", query: &[("window", "such as 5m (default)")], body: false },
    Endpoint { method: "get", path: "/v1/namespaces/{ns}/health", summary: "The API-health board: qps, error_rate, p50_ms, p98_ms, p99_ms, codes and top_apis for the namespace (or a service), each service and each instance.", query: &[("window", "such as 5m (default)"), ("service", "only this service")], body: false },
    Endpoint { method: "post", path: "/v1/namespaces/{ns}/metrics", summary: "Push business metrics: {metrics: [{name, type: counter | gauge | observation, value, labels}]}; all or nothing.", query: &[], body: true },
    Endpoint { method: "post", path: "/v1/traces", summary: "OTLP/HTTP trace export (protobuf or OTLP JSON; gzip or deflate), as OpenTelemetry SDKs send it. 200 with partialSuccess naming spans refused; 503 with Retry-After when the queue is full.", query: &[], body: true },
    Endpoint { method: "post", path: "/api/v2/spans", summary: "Zipkin v2 collector: a JSON list of spans (gzip allowed); 202, or 400 for the whole batch when a span is invalid.", query: &[], body: true },
    Endpoint { method: "get", path: "/api/v2/spans", summary: "Zipkin: the span names of a service, sorted.", query: &[("serviceName", "the service")], body: false },
    Endpoint { method: "get", path: "/api/v2/services", summary: "Zipkin: services that recorded spans, sorted.", query: &[], body: false },
    Endpoint { method: "get", path: "/api/v2/remoteServices", summary: "Zipkin: the services a service calls, sorted.", query: &[("serviceName", "the service")], body: false },
    Endpoint { method: "get", path: "/api/v2/traces", summary: "Zipkin: traces matching a search, newest first, as a list of span lists.", query: &[("serviceName", "spans of this service"), ("remoteServiceName", "calling this service"), ("spanName", "with this span name"), ("annotationQuery", "key=value tags and bare words (tag keys, annotations) joined by and"), ("minDuration", "span duration at least, microseconds"), ("maxDuration", "span duration at most, microseconds (needs minDuration)"), ("endTs", "epoch milliseconds (default now)"), ("lookback", "milliseconds before endTs (default a day)"), ("limit", "most traces (default 10)")], body: false },
    Endpoint { method: "get", path: "/api/v2/trace/{traceId}", summary: "Zipkin: one trace's spans by start time; 404 when unknown.", query: &[], body: false },
    Endpoint { method: "get", path: "/api/v2/traceMany", summary: "Zipkin: the traces found among several ids.", query: &[("traceIds", "trace ids separated by commas")], body: false },
    Endpoint { method: "get", path: "/api/v2/dependencies", summary: "Zipkin: the dependency links (parent, child, callCount, errorCount) of calls in the range.", query: &[("endTs", "epoch milliseconds"), ("lookback", "milliseconds before endTs (default a day)")], body: false },
    Endpoint { method: "get", path: "/api/v2/autocompleteKeys", summary: "Zipkin: the tag keys whose values are offered.", query: &[], body: false },
    Endpoint { method: "get", path: "/api/v2/autocompleteValues", summary: "Zipkin: known values of a tag key.", query: &[("key", "the tag key")], body: false },
    Endpoint { method: "get", path: "/v1/tracing", summary: "This node's tracing: spans received, refused, held and stored, tail decisions by reason, bytes on disk.", query: &[], body: false },
    Endpoint { method: "get", path: "/v1/tracing/dependencies", summary: "The dependency graph with p50 and p99 call durations per edge (microseconds).", query: &[("endTs", "epoch milliseconds"), ("lookback", "milliseconds before endTs (default a day)")], body: false },
    Endpoint { method: "get", path: "/v1/namespaces/{ns}/configs", summary: "Config items of the namespace, without contents: released version, gray candidate and rule, secret flag.", query: &[], body: false },
    Endpoint { method: "get", path: "/v1/namespaces/{ns}/configs/{group}/{key}", summary: "The version this client is served: {content, format, version, md5, gray, secret, ...}. With version or md5: a watch that answers once the client would be served something else, or 304 after wait. Secret items need an admin token or one with secrets = true.", query: CONFIG_READ, body: false },
    Endpoint { method: "put", path: "/v1/namespaces/{ns}/configs/{group}/{key}", summary: "Publish a released version: {content, format?, comment?, secret?, history?, expect_version?}; content that does not parse in its format is refused naming the line.", query: &[], body: true },
    Endpoint { method: "delete", path: "/v1/namespaces/{ns}/configs/{group}/{key}", summary: "Delete an item (its audit trail stays; a later publish continues its version numbers).", query: &[], body: false },
    Endpoint { method: "get", path: "/v1/namespaces/{ns}/configs/{group}/{key}/history", summary: "The kept versions, newest first, without contents.", query: &[], body: false },
    Endpoint { method: "get", path: "/v1/namespaces/{ns}/configs/{group}/{key}/versions/{version}", summary: "One kept version with its content.", query: &[], body: false },
    Endpoint { method: "get", path: "/v1/namespaces/{ns}/configs/{group}/{key}/diff", summary: "Unified diff between two kept versions (default: the released one and the one before it).", query: &[("from", "a kept version"), ("to", "a kept version")], body: false },
    Endpoint { method: "post", path: "/v1/namespaces/{ns}/configs/{group}/{key}/rollback", summary: "Publish a new version with a kept version's content: {version, comment?}.", query: &[], body: true },
    Endpoint { method: "get", path: "/v1/namespaces/{ns}/configs/{group}/{key}/gray", summary: "The gray candidate, its rule and the clients seen holding it.", query: &[], body: false },
    Endpoint { method: "put", path: "/v1/namespaces/{ns}/configs/{group}/{key}/gray", summary: "Publish a gray candidate for the clients a rule matches: {content, format?, comment?, match: {addresses?, labels?, percent?}}.", query: &[], body: true },
    Endpoint { method: "delete", path: "/v1/namespaces/{ns}/configs/{group}/{key}/gray", summary: "Abort the gray candidate (as POST .../gray/abort).", query: &[], body: false },
    Endpoint { method: "post", path: "/v1/namespaces/{ns}/configs/{group}/{key}/gray/promote", summary: "Release the gray candidate to every client, in one transaction; optional {comment}.", query: &[], body: false },
    Endpoint { method: "post", path: "/v1/namespaces/{ns}/configs/{group}/{key}/gray/abort", summary: "Drop the gray candidate: its clients go back to the released version; optional {comment}.", query: &[], body: false },
    Endpoint { method: "get", path: "/v1/namespaces/{ns}/configs/{group}/{key}/audit", summary: "Every publish, gray, promote, abort, rollback and delete: who, when, from which version to which.", query: &[], body: false },
    Endpoint { method: "get", path: "/v1/namespaces/{ns}/configs/{group}/{key}/clients", summary: "The clients this node saw reading or watching the item in the last minutes, with the version each holds.", query: &[], body: false },
    Endpoint { method: "post", path: "/v1/configs/watch", summary: "Watch many items in one request: {items: [{namespace, group, key, version | md5}], wait?, labels?, client_id?, ip?}; 200 {changed: [...]} or 304 after wait.", query: &[], body: true },
    Endpoint { method: "post", path: "/v1/hosts/{host}/metrics", summary: "An agent's host metrics: {values: {host_cpu_percent: 12.5, ...}}.", query: &[], body: true },
];

/// What `GET /metrics` answers with: the OpenMetrics text format.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The schema of path parameter `name`, as the handlers parse it.
fn path_schema(name: &str, path: &str) -> Value {
    match name {
        // An alarm's ID: a hash of namespace, rule and labels.
        "id" if path.contains("/alarms/") => {
            json!({"type": "string", "pattern": "^[0-9A-Fa-f]{16}$"})
        }
        "project" => json!({"type": "string", "pattern": "^[0-9]{1,18}$"}),
        "endpoint" => json!({"type": "string", "enum": ["envelope", "store"]}),
        "host" => json!({"type": "string", "pattern": "^[A-Za-z0-9._-]{1,253}$"}),
        // Zipkin's: up to 32 hex digits (left-padded to 16 or 32).
        "traceId" => json!({"type": "string", "pattern": "^[0-9a-fA-F]{1,32}$"}),
        "version" => json!({"type": "integer", "minimum": 0, "maximum": u64::MAX}),
        _ => json!({"type": "string", "pattern": NAME_PATTERN}),
    }
}

/// The schema of query parameter `name`, as the handlers parse it.
fn query_schema(name: &str, required: bool) -> Value {
    match name {
        "index" => json!({"type": "integer", "minimum": 0, "maximum": u64::MAX}),
        "revision" => json!({"type": "integer", "minimum": 1, "maximum": u64::MAX}),
        "all" => json!({"type": "string", "enum": ["true", "false", "1", "0", ""]}),
        "wait" | "step" => json!({"type": "string", "pattern": DURATION_PATTERN}),
        // At least a second: one component of seconds or more that is not zero.
        "window" => {
            json!({"type": "string", "pattern": "^([0-9]{1,9}(ms|s|m|h|d))*[1-9][0-9]{0,8}(s|m|h|d)([0-9]{1,9}(ms|s|m|h|d))*$"})
        }
        "namespace" | "service" => json!({"type": "string", "pattern": NAME_PATTERN}),
        // Empty means "any", as Zipkin's UI sends it; where one is required it
        // must say something.
        "serviceName" | "key" if required => json!({"type": "string", "pattern": "\\S"}),
        "serviceName" | "remoteServiceName" | "spanName" | "key" => json!({"type": "string"}),
        "minDuration" | "maxDuration" => {
            json!({"type": "integer", "minimum": 1, "maximum": crate::traces::MAX_DURATION_US})
        }
        "endTs" | "lookback" => {
            json!({"type": "integer", "minimum": 1, "maximum": crate::traces::MAX_MS})
        }
        "limit" => json!({"type": "integer", "minimum": 1, "maximum": crate::traces::MAX_LIMIT}),
        "traceIds" => {
            json!({"type": "string", "pattern": "^[0-9a-fA-F]{1,32}(,[0-9a-fA-F]{1,32})*$"})
        }
        "state" => json!({"type": "string", "enum": ["firing", "pending", "resolved", "all"]}),
        "version" => json!({"type": "integer", "minimum": 0, "maximum": u64::MAX}),
        "labels" => {
            json!({"type": "string", "pattern": "^([A-Za-z0-9]([A-Za-z0-9._-]{0,30}[A-Za-z0-9])?=[^,]*)?(,([A-Za-z0-9]([A-Za-z0-9._-]{0,30}[A-Za-z0-9])?=[^,]*)?)*$"})
        }
        "client_id" => json!({"type": "string", "minLength": 1, "maxLength": 256}),
        "ip" => json!({"type": "string", "format": "ipv4"}),
        "metric" => json!({"type": "string", "pattern": "^[A-Za-z0-9_]{1,128}$"}),
        "agg" => {
            json!({"type": "string", "enum": ["avg", "sum", "count", "min", "max", "rate", "p50", "p98", "p99"]})
        }
        "from" | "to" => {
            json!({"type": "string", "pattern": "^(now|-([0-9]{1,9}(ms|s|m|h|d))+|[0-9]{1,20}|[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2}))$"})
        }
        // Pairs separated by commas (empty ones skipped); names trimmed, values up to the next comma.
        "match" => {
            json!({"type": "string", "pattern": "^(\\s*[A-Za-z_][A-Za-z0-9_]*\\s*=[^,]*)?(,(\\s*[A-Za-z_][A-Za-z0-9_]*\\s*=[^,]*)?)*$"})
        }
        "by" => {
            json!({"type": "string", "pattern": "^([A-Za-z_][A-Za-z0-9_]*)?(,([A-Za-z_][A-Za-z0-9_]*)?)*$"})
        }
        _ => json!({"type": "string"}),
    }
}

/// Whether query parameter `name` of `endpoint` is required.
fn required(endpoint: &Endpoint, name: &str) -> bool {
    matches!(
        (endpoint.path, name),
        ("/v1/query", "metric")
            | ("/api/v2/spans" | "/api/v2/remoteServices", "serviceName")
            | ("/api/v2/traceMany", "traceIds")
            | ("/api/v2/autocompleteValues", "key")
            | ("/api/v2/dependencies" | "/v1/tracing/dependencies", "endTs")
    ) || (endpoint.path.ends_with("/rollback") && name == "revision")
}

/// The schema of a 200 answer of `method path`, from the type its handler answers with.
fn response_schema(generator: &mut SchemaGenerator, method: &str, path: &str) -> Option<Value> {
    use crate::views::*;
    fn of<T: schemars::JsonSchema>(generator: &mut SchemaGenerator) -> Option<Value> {
        Some(generator.subschema_for::<T>().to_value())
    }
    let instance = "/v1/namespaces/{ns}/services/{svc}/instances/{id}";
    let resource = "/v1/namespaces/{ns}/resources/{kind}/{name}";
    match (method, path) {
        ("get", "/healthz") => of::<Alive>(generator),
        ("get", "/readyz") => of::<Ready>(generator),
        ("get", "/v1/kinds") => of::<KindNames>(generator),
        ("get", "/v1/sd/prometheus") => of::<Vec<TargetGroup>>(generator),
        ("get", "/v1/namespaces/{ns}/services") => of::<ServiceList>(generator),
        ("get", "/v1/namespaces/{ns}/services/{svc}/instances") => {
            of::<sluice_registry::InstanceList>(generator)
        }
        ("get" | "patch", p) if p == instance => of::<sluice_registry::InstanceView>(generator),
        // A registration answers with the instance as the view holds it (null until
        // the view has it, which a read of one's own write rules out).
        ("put", p) if p == instance => of::<Option<sluice_registry::InstanceView>>(generator),
        ("delete", p) if p == instance => of::<Deregistered>(generator),
        ("put", "/v1/namespaces/{ns}/services/{svc}/instances/{id}/heartbeat") => {
            of::<Heartbeated>(generator)
        }
        ("get", "/v1/namespaces/{ns}/resources/{kind}" | "/v1/resources/{kind}") => {
            of::<ResourceList>(generator)
        }
        ("get" | "put", p) if p == resource => of::<sluice_model::Resource>(generator),
        ("delete", p) if p == resource => of::<Deleted>(generator),
        ("get", "/v1/namespaces/{ns}/resources/{kind}/{name}/history") => of::<History>(generator),
        ("post", "/v1/namespaces/{ns}/resources/{kind}/{name}/rollback") => {
            of::<sluice_model::Resource>(generator)
        }
        ("get", "/v1/namespaces/{ns}/alarms") => of::<Items<AlarmView>>(generator),
        ("post", "/v1/namespaces/{ns}/alarms/{id}/ack") => of::<AlarmView>(generator),
        ("get", "/v1/namespaces/{ns}/notifications") => of::<Items<NotificationView>>(generator),
        ("post", "/api/{project}/{endpoint}/") => of::<SentryAccepted>(generator),
        ("get", "/v1/namespaces/{ns}/errors") => of::<Items<ErrorGroupView>>(generator),
        ("post", "/v1/namespaces/{ns}/errors") => of::<ReportAccepted>(generator),
        ("get", "/v1/namespaces/{ns}/errors/{fingerprint}") => of::<ErrorGroupView>(generator),
        ("get", "/v1/metrics/usage") => of::<Usage>(generator),
        (
            "post",
            "/v1/metrics/steps" | "/v1/namespaces/{ns}/metrics" | "/v1/hosts/{host}/metrics",
        ) => of::<Accepted>(generator),
        ("get", "/v1/query") => of::<sluice_metrics::query::SeriesAnswer>(generator),
        ("get", "/v1/namespaces/{ns}/services/{svc}/protection") => {
            of::<crate::protection::ServiceProtection>(generator)
        }
        ("get", "/v1/namespaces/{ns}/health") => of::<sluice_metrics::query::Board>(generator),
        (
            "get",
            "/api/v2/spans"
            | "/api/v2/services"
            | "/api/v2/remoteServices"
            | "/api/v2/autocompleteKeys"
            | "/api/v2/autocompleteValues",
        ) => of::<Vec<String>>(generator),
        ("get", "/api/v2/traces" | "/api/v2/traceMany") => {
            of::<Vec<Vec<sluice_trace::span::Span>>>(generator)
        }
        ("get", "/api/v2/trace/{traceId}") => of::<Vec<sluice_trace::span::Span>>(generator),
        ("get", "/api/v2/dependencies" | "/v1/tracing/dependencies") => {
            of::<Vec<sluice_trace::deps::DependencyLink>>(generator)
        }
        ("get", "/v1/tracing") => of::<crate::traces::TracingStatus>(generator),
        (method, p) if p.starts_with("/v1/namespaces/{ns}/configs") || p == "/v1/configs/watch" => {
            Some(config_answer(method, p))
        }
        ("post", "/v1/traces") => Some(json!({
            "type": "object",
            "properties": {"partialSuccess": {"type": "object", "properties": {
                "rejectedSpans": {"type": ["string", "integer"]},
                "errorMessage": {"type": "string"},
            }}},
        })),
        _ => None,
    }
}

/// The schema of a config center answer.
fn config_answer(method: &str, path: &str) -> Value {
    let object = |required: &[&str], properties: Value| json!({"type": "object", "required": required, "properties": properties});
    let version = json!({"type": "integer", "minimum": 0});
    let list = json!({"type": "array", "items": {"type": "object"}});
    match (method, path.rsplit('/').next().unwrap_or("")) {
        ("get", "configs") => object(&["namespace", "items"], json!({"items": list})),
        ("get", "{key}" | "{version}") => object(
            &["version", "md5", "format", "content"],
            json!({"version": version, "md5": {"type": "string"}, "format": {"type": "string"},
                   "content": {"type": ["string", "null"]}, "gray": {"type": "boolean"},
                   "secret": {"type": "boolean"}}),
        ),
        ("get", "history") => object(&["item", "versions"], json!({"versions": list})),
        ("get", "diff") => object(
            &["from", "to", "diff"],
            json!({"from": version, "to": version, "diff": {"type": "string"}}),
        ),
        ("get", "gray") => object(&["candidate", "match", "clients"], json!({"clients": list})),
        ("get", "audit") => object(&["entries"], json!({"entries": list})),
        ("get", "clients") => object(&["clients"], json!({"clients": list})),
        ("post", "watch") => object(&["changed"], json!({"changed": list})),
        // Every change answers with the version it is about, the revision and its audit record.
        _ => object(
            &["namespace", "group", "key", "revision", "audit"],
            json!({"revision": version, "audit": {"type": "object"}, "gray_active": {"type": "boolean"}}),
        ),
    }
}

/// The body of a config publish (`gray`: with its rule).
fn config_publish_body(gray: bool) -> Value {
    let mut body = json!({
        "type": "object",
        "required": ["content"],
        "additionalProperties": false,
        "properties": {
            "content": {"type": "string", "maxLength": 1_048_576},
            "format": {"type": "string", "enum": ["text", "txt", "json", "yaml", "yml", "toml", "properties"]},
            "comment": {"type": "string", "maxLength": 1024},
            "secret": {"type": "boolean"},
            "history": {"type": "integer", "minimum": 1, "maximum": 100},
            "expect_version": {"type": "integer", "minimum": 0, "maximum": u64::MAX},
        },
    });
    if gray {
        body["required"] = json!(["content", "match"]);
        body["properties"]["match"] = json!({
            "type": "object",
            "additionalProperties": false,
            "minProperties": 1,
            "properties": {
                "addresses": {"type": "array", "minItems": 1, "items": {"type": "string"}},
                "labels": {"type": "object", "minProperties": 1, "additionalProperties": {"type": "string", "minLength": 1, "maxLength": 256}},
                "percent": {"type": "number", "exclusiveMinimum": 0, "maximum": 100},
            },
        });
    }
    body
}

/// The body of a multi-item config watch.
fn config_watch_body() -> Value {
    json!({
        "type": "object",
        "required": ["items"],
        "additionalProperties": false,
        "properties": {
            "items": {"type": "array", "minItems": 1, "maxItems": 10_000, "items": {
                "type": "object",
                "required": ["namespace", "group", "key"],
                "additionalProperties": false,
                "properties": {
                    "namespace": {"type": "string", "pattern": NAME_PATTERN},
                    "group": {"type": "string", "pattern": NAME_PATTERN},
                    "key": {"type": "string", "pattern": NAME_PATTERN},
                    "version": {"type": "integer", "minimum": 0, "maximum": u64::MAX},
                    "md5": {"type": "string"},
                },
                "oneOf": [{"required": ["version"]}, {"required": ["md5"]}],
            }},
            "wait": {"type": "string", "pattern": DURATION_PATTERN},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "client_id": {"type": "string", "minLength": 1, "maxLength": 256},
            "ip": {"type": "string", "format": "ipv4"},
        },
    })
}

/// Schemas of the request bodies that are not resources.
struct Bodies {
    patch: Value,
    push: Value,
    host: Value,
    step: Value,
}

/// The request body of `PUT .../resources/{kind}/{name}` for a kind whose spec is `spec`.
fn resource_body(spec: &Value, metadata: &Value) -> Value {
    json!({
        "type": "object",
        "required": ["spec"],
        "additionalProperties": false,
        "properties": {"spec": spec, "metadata": {"anyOf": [metadata, {"type": "null"}]}},
    })
}

/// The document, without the time range of pushed steps.
pub fn document() -> Value {
    document_with(None)
}

/// The document; `step_times` is the range of times a pushed gateway step may
/// have on this node (oldest, latest), when it keeps metrics.
pub fn document_with(step_times: Option<(u64, u64)>) -> Value {
    let mut generator = SchemaSettings::draft2020_12()
        .with(|settings| settings.definitions_path = "/components/schemas/".into())
        .into_generator();
    let kinds: Vec<(String, Value)> = crate::Kinds::builtin()
        .schemas(&mut generator)
        .into_iter()
        .map(|(kind, schema)| (kind, schema.to_value()))
        .collect();
    let metadata = generator
        .subschema_for::<crate::resources::BodyMetadata>()
        .to_value();
    let instance = generator
        .subschema_for::<sluice_model::InstanceSpec>()
        .to_value();
    let bodies = Bodies {
        patch: generator
            .subschema_for::<sluice_registry::InstancePatch>()
            .to_value(),
        push: generator
            .subschema_for::<sluice_metrics::custom::Push>()
            .to_value(),
        host: generator
            .subschema_for::<crate::metrics::HostPush>()
            .to_value(),
        step: generator
            .subschema_for::<sluice_metrics::recorder::StepBatch>()
            .to_value(),
    };
    let mut paths = Map::new();
    let per_kind = ENDPOINTS.iter().flat_map(|endpoint| {
        let kinds: Vec<Option<&(String, Value)>> = if endpoint.path.contains("{kind}") {
            kinds.iter().map(Some).collect()
        } else {
            vec![None]
        };
        kinds.into_iter().map(move |kind| (endpoint, kind))
    });
    for (endpoint, kind) in per_kind {
        let path = match kind {
            Some((name, _)) => endpoint.path.replace("{kind}", name),
            None => endpoint.path.to_owned(),
        };
        let mut parameters: Vec<Value> = path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": path_schema(name, endpoint.path)}))
            .collect();
        parameters.extend(endpoint.query.iter().map(|(name, description)| {
            json!({
                "name": name,
                "in": "query",
                "required": required(endpoint, name),
                "description": description,
                "schema": if endpoint.path.ends_with("/diff") {
                    json!({"type": "integer", "minimum": 0, "maximum": u64::MAX})
                } else {
                    query_schema(name, required(endpoint, name))
                },
            })
        }));
        let mut operation = json!({
            "summary": endpoint.summary,
            "parameters": parameters,
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {}}},
                "4XX": {"description": "Bad request, unauthorized, forbidden, not found", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            },
            "security": [{"bearer": []}, {}],
        });
        if endpoint.path == "/v1/admin/backup" {
            operation["responses"]["200"]["content"] = json!({
                "application/jsonl": {"schema": {"type": "string"}},
            });
        }
        if endpoint.path == "/metrics" {
            operation["responses"]["200"]["content"] = json!({
                OPENMETRICS_CONTENT_TYPE: {"schema": {"type": "string"}},
            });
        }
        if endpoint.body {
            let schema = match (kind, endpoint.method, endpoint.path) {
                (Some((_, spec)), "put", _) => resource_body(spec, &metadata),
                (None, method, "/v1/namespaces/{ns}/services/{svc}/instances/{id}") => {
                    if method == "put" {
                        instance.clone()
                    } else {
                        bodies.patch.clone()
                    }
                }
                (None, _, "/v1/namespaces/{ns}/metrics") => bodies.push.clone(),
                (None, _, "/v1/hosts/{host}/metrics") => bodies.host.clone(),
                (None, _, "/v1/metrics/steps") => match step_times {
                    Some((oldest, latest)) => json!({"allOf": [
                        bodies.step,
                        {"properties": {"time": {"minimum": oldest, "maximum": latest}}},
                    ]}),
                    None => bodies.step.clone(),
                },
                // A plain report or a Sentry event: an object with an exception type or a message.
                (None, _, "/v1/namespaces/{ns}/errors") => json!({
                    "type": "object",
                    "anyOf": [
                        {"required": ["type"], "properties": {"type": {"type": "string", "minLength": 1, "maxLength": 256}}},
                        {"required": ["message"], "properties": {"message": {"anyOf": [
                            {"type": "string", "minLength": 1},
                            {"type": "object", "required": ["formatted"], "properties": {"formatted": {"type": "string", "minLength": 1}}},
                        ]}}},
                        {"required": ["exception"]},
                    ],
                }),
                (None, "put", p) if p.starts_with("/v1/namespaces/{ns}/configs/") => {
                    config_publish_body(p.ends_with("/gray"))
                }
                (None, _, p) if p.ends_with("/configs/{group}/{key}/rollback") => json!({
                    "type": "object",
                    "required": ["version"],
                    "additionalProperties": false,
                    "properties": {
                        "version": {"type": "integer", "minimum": 0, "maximum": u64::MAX},
                        "comment": {"type": "string", "maxLength": 1024},
                    },
                }),
                (None, _, "/v1/configs/watch") => config_watch_body(),
                _ => json!({"type": "object"}),
            };
            operation["requestBody"] =
                json!({"required": true, "content": {"application/json": {"schema": schema}}});
            if endpoint.path.starts_with("/api/") {
                // Sentry SDKs send envelopes (newline-separated JSON) or single events.
                operation["requestBody"]["content"]["application/x-sentry-envelope"] =
                    json!({"schema": {"type": "string"}});
            }
        }
        if let Some(schema) = response_schema(&mut generator, endpoint.method, endpoint.path) {
            operation["responses"]["200"]["content"]["application/json"] =
                json!({"schema": schema});
        }
        if endpoint.path.starts_with("/api/v2/") {
            // Zipkin's errors are plain text.
            operation["responses"]["4XX"] = json!({"description": "Bad request, not found, too large", "content": {"text/plain": {"schema": {"type": "string"}}}});
            if endpoint.method == "post" {
                operation["responses"] = json!({
                    "202": {"description": "Accepted"},
                    "4XX": operation["responses"]["4XX"].clone(),
                    "503": {"description": "The span queue is full: retry after Retry-After seconds", "content": {"text/plain": {"schema": {"type": "string"}}}},
                });
                operation["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {
                    "type": "array",
                    "items": generator.subschema_for::<sluice_trace::span::Span>().to_value(),
                }}}});
            }
        }
        if endpoint.path == "/v1/traces" {
            // OTLP answers in the request's encoding, errors as google.rpc.Status.
            let status = json!({"type": "object", "properties": {"code": {"type": "integer"}, "message": {"type": "string"}}});
            operation["responses"]["200"]["content"]["application/x-protobuf"] =
                json!({"schema": {"type": "string", "format": "binary"}});
            operation["responses"]["4XX"] = json!({"description": "Not an OTLP export, too large, unsupported encoding", "content": {
                "application/json": {"schema": status},
                "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
            }});
            operation["responses"]["503"] = json!({"description": "The span queue is full: retry after Retry-After seconds", "content": {
                "application/json": {"schema": status},
                "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
            }});
            // An empty export succeeds, as OTLP says.
            operation["requestBody"] = json!({"required": false, "content": {
                "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
                "application/json": {"schema": {"type": "object"}},
            }});
        }
        if (endpoint.method == "get" && endpoint.path.ends_with("/configs/{group}/{key}"))
            || endpoint.path == "/v1/configs/watch"
        {
            operation["responses"]["304"] =
                json!({"description": "A watch that ended with nothing new for this client"});
        }
        if endpoint.method == "put" {
            // Creating answers 201, replacing 200.
            operation["responses"]["201"] = operation["responses"]["200"].clone();
        }
        let item = paths.entry(path).or_insert_with(|| json!({}));
        item[endpoint.method] = operation;
    }
    let mut schemas: Map<String, Value> = generator.take_definitions(true).into_iter().collect();
    schemas.insert(
        "Error".into(),
        json!({"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}}),
    );
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Sluice admin API", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_lists_every_endpoint_once_and_resource_endpoints_per_kind() {
        let document = document();
        let mut count = 0;
        for (path, item) in document["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                assert!(operation["summary"].is_string(), "{method} {path}");
                count += 1;
            }
        }
        let generic = ENDPOINTS
            .iter()
            .filter(|e| e.path.contains("{kind}"))
            .count();
        let kinds = crate::Kinds::builtin().names().len();
        assert_eq!(kinds, 12);
        assert_eq!(count, ENDPOINTS.len() - generic + generic * kinds);
    }

    #[test]
    fn every_kind_has_its_spec_schema_and_bodies_refer_to_it() {
        let document = document();
        let schemas = &document["components"]["schemas"];
        for kind in crate::Kinds::builtin().names() {
            let path = format!("/v1/namespaces/{{ns}}/resources/{kind}/{{name}}");
            let body = &document["paths"][&path]["put"]["requestBody"]["content"]
                ["application/json"]["schema"];
            let reference = body["properties"]["spec"]["$ref"]
                .as_str()
                .unwrap_or_else(|| panic!("{kind}: {body}"));
            let name = reference.trim_start_matches("#/components/schemas/");
            assert!(schemas[name].is_object(), "{kind}: {reference}");
        }
        let route = &schemas["RouteSpec"];
        assert_eq!(route["additionalProperties"], false, "{route}");
        assert!(route["properties"]["apis"].is_object(), "{route}");
        assert!(route["required"]
            .as_array()
            .unwrap()
            .contains(&json!("match")));
        let register = &document["paths"]["/v1/namespaces/{ns}/services/{svc}/instances/{id}"]
            ["put"]["requestBody"]["content"]["application/json"]["schema"];
        assert_eq!(register["$ref"], "#/components/schemas/InstanceSpec");
        // Per-kind paths declare only the parameters they hold.
        let list = &document["paths"]["/v1/resources/Route"]["get"]["parameters"];
        assert!(
            list.as_array().unwrap().iter().all(|p| p["in"] != "path"),
            "{list}"
        );
        let metrics = &document["paths"]["/metrics"]["get"]["responses"]["200"]["content"];
        assert!(metrics[OPENMETRICS_CONTENT_TYPE].is_object(), "{metrics}");
    }

    #[test]
    fn every_answer_but_the_document_itself_has_a_schema() {
        let document = document();
        for (path, item) in document["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let content = &operation["responses"]["200"]["content"];
                let schema = content
                    .as_object()
                    .and_then(|types| types.values().next())
                    .map(|media| &media["schema"]);
                // Zipkin's collector answers 202 with no body.
                if path == "/v1/openapi.json" || (path == "/api/v2/spans" && method == "post") {
                    continue;
                }
                assert!(
                    schema.is_some_and(Value::is_object),
                    "{method} {path} answers without a schema"
                );
            }
        }
    }
}
