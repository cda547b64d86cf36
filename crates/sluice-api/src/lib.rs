//! Sluice's control-plane HTTP API (axum): the naming service's endpoints, generic
//! resources, Prometheus service discovery, health, the OpenAPI document, and
//! bearer-token access control, trace ingest and queries (OTLP, Zipkin), and
//! the config center.
//! Every error is `{"error": {"code", "message"}}`
//! with a 4xx/5xx status; bodies are size-limited and parsed strictly.

mod admin;
mod alarms;
mod auth;
pub mod configs;
mod error;
mod error_reports;
mod json;
mod metrics;
pub mod openapi;
pub mod protection;
mod resources;
mod routes;
pub mod traces;
pub mod views;

use std::sync::Arc;

use axum::routing::{get, post, put};
use axum::Router;
use sluice_registry::Registry;
use sluice_store::Store;

pub use auth::{Access, Auth, Role, TokenConfig};
pub use error::ApiError;
pub use json::{BodyLimit, DEFAULT_BODY_LIMIT};
pub use metrics::MetricsHandle;
pub use resources::{Kinds, ResourceBody, Resources, SpecSchema, SpecValidator};
pub use sluice_model::ServiceSpec;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The naming service.
    pub registry: Registry,
    /// Generic resources.
    pub resources: Arc<Resources>,
    /// The store.
    pub store: Arc<dyn Store>,
    /// Metrics (health board, series, pushes, exposition), when this node keeps them.
    pub metrics: Option<MetricsHandle>,
    /// The in-process gateway's protection state, when a gateway runs in this process.
    pub protection: Option<protection::ProtectionSource>,
    /// Trace ingest and storage, when this node keeps traces.
    pub tracing: Option<Arc<sluice_trace::pipeline::Tracing>>,
    /// The config center, when this node serves it.
    pub configs: Option<Arc<sluice_config::ConfigCenter>>,
}

/// What a request that hit a panic gets (the panic itself is logged).
fn bug_answer(_: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    use axum::response::IntoResponse;
    ApiError::new(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the request hit a bug in Sluice; it is logged",
    )
    .into_response()
}

/// Only the tracing endpoints (OTLP ingest, Zipkin's collector and query
/// API), with the same auth: what `sluice up` serves on the standard ports.
pub fn tracing_router(state: AppState, auth: Auth) -> Router {
    traces::routes()
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(auth),
            auth::authorize,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(bug_answer))
}

/// The admin API's router, with auth, body limits and panic protection.
pub fn router(state: AppState, auth: Auth, body_limit: usize) -> Router {
    use routes::*;
    let instance = "/v1/namespaces/{ns}/services/{svc}/instances/{id}";
    let resource = "/v1/namespaces/{ns}/resources/{kind}/{name}";
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/kinds", get(kinds))
        .route("/v1/sd/prometheus", get(prometheus_sd))
        .route("/v1/admin/backup", get(admin::backup))
        .route("/v1/namespaces/{ns}/services", get(list_services))
        .route(
            "/v1/namespaces/{ns}/services/{svc}/instances",
            get(list_instances),
        )
        .route(
            instance,
            get(get_instance)
                .put(register)
                .patch(patch_instance)
                .delete(deregister),
        )
        .route(&format!("{instance}/heartbeat"), put(heartbeat))
        .route("/v1/namespaces/{ns}/resources/{kind}", get(list_resources))
        .route("/v1/resources/{kind}", get(list_resources_everywhere))
        .route(
            resource,
            get(get_resource).put(put_resource).delete(delete_resource),
        )
        .route(&format!("{resource}/history"), get(resource_history))
        .route(&format!("{resource}/rollback"), post(rollback_resource))
        .route("/v1/namespaces/{ns}/alarms", get(alarms::list))
        .route(
            "/v1/namespaces/{ns}/alarms/{id}/ack",
            post(alarms::acknowledge),
        )
        .route(
            "/v1/namespaces/{ns}/notifications",
            get(alarms::notifications),
        )
        .route("/api/{project}/{endpoint}/", post(error_reports::sentry))
        .route(
            "/v1/namespaces/{ns}/errors",
            get(error_reports::list).post(error_reports::plain),
        )
        .route(
            "/v1/namespaces/{ns}/errors/{fingerprint}",
            get(error_reports::get),
        )
        .route("/metrics", get(metrics::exposition))
        .route("/v1/metrics/usage", get(metrics::usage))
        .route("/v1/metrics/steps", post(metrics::push_step))
        .route("/v1/query", get(metrics::series))
        .route("/v1/namespaces/{ns}/health", get(metrics::health))
        .route(
            "/v1/namespaces/{ns}/services/{svc}/protection",
            get(protection::get),
        )
        .route("/v1/namespaces/{ns}/metrics", post(metrics::push))
        .route("/v1/hosts/{host}/metrics", post(metrics::push_host))
        .merge(traces::routes())
        .merge(configs::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(auth),
            auth::authorize,
        ))
        .layer(axum::Extension(BodyLimit(body_limit)))
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(bug_answer))
}
