//! Every endpoint in the OpenAPI table is served by the router (none falls through
//! to the 404/405 fallbacks), and the served document is the table.

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request};
use sluice_api::openapi::ENDPOINTS;
use sluice_api::{AppState, Auth, Kinds, Resources};
use sluice_registry::{Registry, RegistryConfig};
use sluice_store::{LocalStore, LocalStoreOptions, Store};
use tower::ServiceExt;

#[tokio::test]
async fn every_documented_endpoint_is_routed() {
    let store: Arc<dyn Store> = Arc::new(LocalStore::memory(LocalStoreOptions::default()).unwrap());
    let state = AppState {
        registry: Registry::start(Arc::clone(&store), RegistryConfig::default()).unwrap(),
        resources: Resources::start(Arc::clone(&store), Kinds::builtin()),
        store,
        metrics: None,
        protection: None,
        tracing: None,
        configs: None,
    };
    let app = sluice_api::router(state, Auth::default(), 1024 * 1024);
    for endpoint in ENDPOINTS {
        let path = endpoint
            .path
            .replace("{ns}", "default")
            .replace("{svc}", "echo")
            .replace("{id}", "i1")
            .replace("{kind}", "Service")
            .replace("{name}", "echo")
            .replace("{traceId}", "4bf92f3577b34da6a3ce929d0e0e4736");
        let method = Method::from_bytes(endpoint.method.to_uppercase().as_bytes()).unwrap();
        let body = if endpoint.body {
            Body::from("{}")
        } else {
            Body::empty()
        };
        let request = Request::builder()
            .method(method.clone())
            .uri(&path)
            .body(body)
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("no such endpoint") && !text.contains("does not take that method"),
            "{method} {path} is documented but not routed: {text}"
        );
    }
    let request = Request::builder()
        .uri("/v1/openapi.json")
        .body(Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let document: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    assert!(document["paths"]["/v1/sd/prometheus"]["get"].is_object());
}
