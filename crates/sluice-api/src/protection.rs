//! A service's protection at a glance: the protection resources that apply to it,
//! what the in-process gateway's limiters and breakers hold now, and the requests
//! refused over a window by reason (from the `rejections` series). Served at
//! `GET /v1/namespaces/{ns}/services/{svc}/protection` and shown by the console.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::Json;
use serde::Serialize;
use serde_json::Value;
use sluice_metrics::query::{self, SeriesQuery};
use sluice_model::{validate_name, ProtectionStatus};

use crate::error::ApiError;
use crate::routes::query as parse_query;
use crate::AppState;

/// Reads an in-process gateway's protection state of (namespace, service).
pub type ProtectionSource = Arc<dyn Fn(&str, &str) -> ProtectionStatus + Send + Sync>;

/// Protection resource kinds that name a service or a route in their spec.
const KINDS: [&str; 5] = ["RateLimit", "ConnLimit", "Acl", "Concurrency", "Breaker"];

/// A protection resource that applies to the service.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct AppliedPolicy {
    /// Its kind.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// Its spec as stored.
    pub spec: Value,
}

/// What `GET .../services/{svc}/protection` answers.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ServiceProtection {
    /// Whether a gateway runs in this process (without one, `routes`, `limiters`
    /// and `breakers` are empty).
    pub gateway: bool,
    /// Routes, limiters and breakers as the gateway holds them now.
    #[serde(flatten)]
    pub status: ProtectionStatus,
    /// Protection resources that name the service or one of its routes.
    pub policies: Vec<AppliedPolicy>,
    /// Requests refused over the window, by reason.
    pub rejections: BTreeMap<String, u64>,
    /// The window, seconds.
    pub window_s: u64,
}

/// Gathers the protection of `namespace/service` over the last `window_s`.
pub async fn service_protection(
    state: &AppState,
    namespace: &str,
    service: &str,
    window_s: u64,
) -> ServiceProtection {
    let status = state
        .protection
        .as_ref()
        .map(|source| source(namespace, service))
        .unwrap_or_default();
    let routes: Vec<String> = match state.resources.list(namespace, "Route").await {
        Ok((items, _)) => items
            .into_iter()
            .filter(|route| route_targets(&route.spec, namespace, service))
            .map(|route| route.metadata.name)
            .collect(),
        Err(_) => status.routes.clone(),
    };
    let mut policies = Vec::new();
    for kind in KINDS {
        let Ok((items, _)) = state.resources.list(namespace, kind).await else {
            continue;
        };
        for item in items {
            let names_service = item.spec.get("service").and_then(Value::as_str) == Some(service);
            let names_route = item
                .spec
                .get("route")
                .and_then(Value::as_str)
                .is_some_and(|r| routes.iter().any(|own| own == r));
            if names_service || names_route {
                policies.push(AppliedPolicy {
                    kind: kind.to_owned(),
                    name: item.metadata.name,
                    spec: item.spec,
                });
            }
        }
    }
    let rejections = match &state.metrics {
        Some(metrics) => {
            let db = Arc::clone(&metrics.db);
            let (namespace, service) = (namespace.to_owned(), service.to_owned());
            tokio::task::spawn_blocking(move || rejections(&db, &namespace, &service, window_s))
                .await
                .unwrap_or_default()
        }
        None => BTreeMap::new(),
    };
    ServiceProtection {
        gateway: state.protection.is_some(),
        status: ProtectionStatus { routes, ..status },
        policies,
        rejections,
        window_s,
    }
}

/// Whether a route of `namespace` sends to `namespace/service` (as a target or its fallback).
fn route_targets(spec: &Value, namespace: &str, service: &str) -> bool {
    let Ok(route) = serde_json::from_value::<sluice_model::RouteSpec>(spec.clone()) else {
        return false;
    };
    route
        .targets(namespace)
        .iter()
        .any(|(ns, name, _)| ns == namespace && name == service)
        || route.fallback.as_ref().and_then(|f| f.service.as_deref()) == Some(service)
}

/// Requests of `namespace/service` refused over the last `window_s`, by reason.
fn rejections(
    db: &sluice_metrics::Db,
    namespace: &str,
    service: &str,
    window_s: u64,
) -> BTreeMap<String, u64> {
    let now = sluice_metrics::unix_now();
    let query = SeriesQuery {
        metric: "rejections".to_owned(),
        matching: BTreeMap::from([
            ("namespace".to_owned(), namespace.to_owned()),
            ("service".to_owned(), service.to_owned()),
        ]),
        by: Some(vec!["reason".to_owned()]),
        agg: "sum".to_owned(),
        from: now.saturating_sub(window_s),
        to: now,
        step: window_s.max(1),
    };
    let Ok(answer) = query::series(db, &query, now) else {
        return BTreeMap::new();
    };
    answer
        .series
        .into_iter()
        .filter_map(|series| {
            let reason = series.labels.get("reason")?.clone();
            let total: f64 = series.points.iter().filter_map(|(_, v)| *v).sum();
            Some((reason, total.round() as u64))
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// `GET /v1/namespaces/{ns}/services/{svc}/protection?window=5m`
pub async fn get(
    State(state): State<AppState>,
    Path((ns, svc)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Json<ServiceProtection>, ApiError> {
    let params = parse_query(raw, &["window"])?;
    validate_name("namespace", &ns).map_err(|e| ApiError::bad_request(e.to_string()))?;
    validate_name("service", &svc).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let window = crate::metrics::window_param(&params)?;
    if window == 0 {
        return Err(ApiError::bad_request(
            "query parameter window: must be at least 1s",
        ));
    }
    Ok(Json(service_protection(&state, &ns, &svc, window).await))
}
