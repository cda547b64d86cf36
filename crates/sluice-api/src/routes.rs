//! The handlers of the admin API.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::Value;
use sluice_model::{duration_text, validate_name, InstanceSpec};
use sluice_registry::{validate_path, InstancePatch};

use crate::auth::Access;
use crate::error::ApiError;
use crate::json::ApiJson;
use crate::resources::ResourceBody;
use crate::{views, AppState};
use sluice_model::Resource;

/// Longest blocking-query wait.
pub const MAX_WAIT: Duration = Duration::from_secs(600);
/// Wait of a blocking query that gives an index but no wait.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(300);

/// Parses a query string, rejecting unknown and repeated parameters by name.
pub(crate) fn query(
    raw: Option<String>,
    allowed: &[&str],
) -> Result<HashMap<String, String>, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("malformed query string: {e}")))?;
    let mut out = HashMap::new();
    for (key, value) in pairs {
        if !allowed.contains(&key.as_str()) {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter {key:?}; this endpoint takes {}",
                if allowed.is_empty() {
                    "none".to_owned()
                } else {
                    allowed.join(", ")
                }
            )));
        }
        if out.insert(key.clone(), value).is_some() {
            return Err(ApiError::bad_request(format!(
                "query parameter {key:?} is given twice"
            )));
        }
    }
    Ok(out)
}

fn parse_bool(params: &HashMap<String, String>, name: &str) -> Result<bool, ApiError> {
    match params.get(name).map(String::as_str) {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") | Some("") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "query parameter {name}={other:?} is not true or false"
        ))),
    }
}

fn parse_u64(params: &HashMap<String, String>, name: &str) -> Result<Option<u64>, ApiError> {
    params
        .get(name)
        .map(|value| {
            value.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!(
                    "query parameter {name}={value:?} is not a whole number"
                ))
            })
        })
        .transpose()
}

/// `index` and `wait` of a blocking query.
fn blocking(params: &HashMap<String, String>) -> Result<Option<(u64, Duration)>, ApiError> {
    let index = parse_u64(params, "index")?;
    let wait = params
        .get("wait")
        .map(|text| {
            duration_text::parse(text)
                .map_err(|e| ApiError::bad_request(format!("query parameter wait: {e}")))
        })
        .transpose()?;
    if let Some(wait) = wait {
        if wait > MAX_WAIT {
            return Err(ApiError::bad_request(format!(
                "query parameter wait={} is over the maximum of 10m",
                duration_text::format(wait)
            )));
        }
    }
    Ok(index.map(|index| (index, wait.unwrap_or(DEFAULT_WAIT))))
}

fn with_index(index: u64, status: StatusCode, body: Value) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert("x-sluice-index", HeaderValue::from(index));
    (status, headers, Json(body)).into_response()
}

fn to_value<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

pub async fn healthz() -> Json<views::Alive> {
    Json(views::Alive { status: "ok" })
}

pub async fn readyz(State(state): State<AppState>) -> Response {
    if !state.registry.is_ready() {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "still loading the registry from the store",
        )
        .into_response();
    }
    match state.store.current_revision().await {
        Ok(revision) => Json(views::Ready {
            status: "ready",
            store: state.store.backend(),
            revision,
        })
        .into_response(),
        Err(error) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            error.to_string(),
        )
        .into_response(),
    }
}

pub async fn openapi(State(state): State<AppState>) -> Json<Value> {
    let step_times = state
        .metrics
        .as_ref()
        .map(|metrics| crate::metrics::step_times(metrics, sluice_metrics::unix_now()));
    Json(crate::openapi::document_with(step_times))
}

pub async fn kinds(State(state): State<AppState>) -> Json<views::KindNames> {
    Json(views::KindNames {
        kinds: state.resources.kinds().names(),
    })
}

pub async fn register(
    State(state): State<AppState>,
    Path((ns, svc, id)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
    ApiJson(spec): ApiJson<InstanceSpec>,
) -> Result<Response, ApiError> {
    query(raw, &[])?;
    let registered = state.registry.register(&ns, &svc, &id, spec).await?;
    let view = state.registry.instance(&ns, &svc, &id);
    let status = if registered.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(with_index(registered.revision, status, to_value(&view)))
}

pub async fn heartbeat(
    State(state): State<AppState>,
    Path((ns, svc, id)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Json<views::Heartbeated>, ApiError> {
    query(raw, &[])?;
    let beat = state.registry.heartbeat(&ns, &svc, &id).await?;
    Ok(Json(views::Heartbeated {
        healthy: true,
        was_unhealthy: beat.was_unhealthy,
        heartbeat_interval: duration_text::format(beat.interval),
    }))
}

pub async fn patch_instance(
    State(state): State<AppState>,
    Path((ns, svc, id)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
    ApiJson(patch): ApiJson<InstancePatch>,
) -> Result<Json<sluice_registry::InstanceView>, ApiError> {
    query(raw, &[])?;
    let view = state.registry.update(&ns, &svc, &id, patch).await?;
    Ok(Json(view))
}

pub async fn deregister(
    State(state): State<AppState>,
    Path((ns, svc, id)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Json<views::Deregistered>, ApiError> {
    query(raw, &[])?;
    state.registry.deregister(&ns, &svc, &id).await?;
    Ok(Json(views::Deregistered { deregistered: id }))
}

pub async fn get_instance(
    State(state): State<AppState>,
    Path((ns, svc, id)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Json<sluice_registry::InstanceView>, ApiError> {
    query(raw, &[])?;
    validate_path(&ns, &svc, &id)?;
    match state.registry.instance(&ns, &svc, &id) {
        Some(view) => Ok(Json(view)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "instance_not_found",
            format!("instance {id:?} of service {ns}/{svc} is not registered"),
        )),
    }
}

pub async fn list_instances(
    State(state): State<AppState>,
    Path((ns, svc)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params = query(raw, &["all", "index", "wait"])?;
    validate_name("namespace", &ns)?;
    validate_name("service", &svc)?;
    let all = parse_bool(&params, "all")?;
    let list = match blocking(&params)? {
        Some((index, wait)) => {
            state
                .registry
                .wait_instances(&ns, &svc, all, index, wait)
                .await
        }
        None => state.registry.instances(&ns, &svc, all),
    };
    Ok(with_index(list.index, StatusCode::OK, to_value(&list)))
}

pub async fn list_services(
    State(state): State<AppState>,
    Path(ns): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    query(raw, &[])?;
    validate_name("namespace", &ns)?;
    let services = state.registry.services(&ns);
    Ok(with_index(
        state.registry.revision().max(1),
        StatusCode::OK,
        to_value(&views::ServiceList {
            namespace: ns,
            services,
        }),
    ))
}

/// Prometheus HTTP service discovery: one target group per instance.
pub async fn prometheus_sd(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Vec<views::TargetGroup>>, ApiError> {
    let params = query(raw, &["namespace", "service"])?;
    for name in ["namespace", "service"] {
        if let Some(value) = params.get(name) {
            validate_name(name, value)?;
        }
    }
    let groups: Vec<views::TargetGroup> = state
        .registry
        .all_instances()
        .into_iter()
        .filter(|(ns, svc, _)| {
            access.covers(ns)
                && params.get("namespace").is_none_or(|want| want == ns)
                && params.get("service").is_none_or(|want| want == svc)
        })
        .map(|(ns, svc, instance)| {
            let mut labels = BTreeMap::new();
            labels.insert("__meta_sluice_namespace".to_owned(), ns);
            labels.insert("__meta_sluice_service".to_owned(), svc);
            labels.insert("__meta_sluice_instance_id".to_owned(), instance.id.clone());
            labels.insert(
                "__meta_sluice_healthy".to_owned(),
                instance.healthy.to_string(),
            );
            labels.insert(
                "__meta_sluice_draining".to_owned(),
                instance.draining.to_string(),
            );
            labels.insert(
                "__meta_sluice_weight".to_owned(),
                instance.weight.to_string(),
            );
            for (key, value) in &instance.labels {
                labels.insert(
                    format!("__meta_sluice_label_{}", sanitize_label(key)),
                    value.clone(),
                );
            }
            for (key, value) in &instance.metadata {
                labels.insert(
                    format!("__meta_sluice_metadata_{}", sanitize_label(key)),
                    value.clone(),
                );
            }
            views::TargetGroup {
                targets: vec![instance.address],
                labels,
            }
        })
        .collect();
    Ok(Json(groups))
}

/// Prometheus label names take `[a-zA-Z0-9_]` only.
fn sanitize_label(key: &str) -> String {
    key.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

pub async fn put_resource(
    State(state): State<AppState>,
    Path((ns, kind, name)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
    ApiJson(body): ApiJson<ResourceBody>,
) -> Result<Response, ApiError> {
    query(raw, &[])?;
    let (resource, created) = state.resources.put(&ns, &kind, &name, body).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(with_index(
        resource.metadata.revision,
        status,
        to_value(&resource),
    ))
}

pub async fn get_resource(
    State(state): State<AppState>,
    Path((ns, kind, name)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    query(raw, &[])?;
    let resource = state.resources.get(&ns, &kind, &name).await?;
    Ok(with_index(
        resource.metadata.revision,
        StatusCode::OK,
        to_value(&resource),
    ))
}

pub async fn delete_resource(
    State(state): State<AppState>,
    Path((ns, kind, name)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Json<views::Deleted>, ApiError> {
    query(raw, &[])?;
    let revision = state.resources.delete(&ns, &kind, &name).await?;
    Ok(Json(views::Deleted {
        deleted: name,
        revision,
    }))
}

pub async fn list_resources(
    State(state): State<AppState>,
    Path((ns, kind)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params = query(raw, &["index", "wait"])?;
    let (items, index) = match blocking(&params)? {
        Some((after, wait)) => state.resources.wait_list(&ns, &kind, after, wait).await?,
        None => state.resources.list(&ns, &kind).await?,
    };
    Ok(with_index(
        index,
        StatusCode::OK,
        to_value(&views::ResourceList {
            kind,
            namespace: Some(ns),
            items,
        }),
    ))
}

/// Every namespace's resources of a kind (blocking with index/wait), limited to
/// the namespaces the caller's token covers. Gateways follow routes with it.
pub async fn list_resources_everywhere(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    Path(kind): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params = query(raw, &["index", "wait"])?;
    let all = crate::resources::ALL_NAMESPACES;
    let (items, index) = match blocking(&params)? {
        Some((after, wait)) => state.resources.wait_list(all, &kind, after, wait).await?,
        None => state.resources.list(all, &kind).await?,
    };
    let items: Vec<_> = items
        .into_iter()
        .filter(|r| access.covers(&r.metadata.namespace))
        .collect();
    Ok(with_index(
        index,
        StatusCode::OK,
        to_value(&views::ResourceList {
            kind,
            namespace: None,
            items,
        }),
    ))
}

pub async fn resource_history(
    State(state): State<AppState>,
    Path((ns, kind, name)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Json<views::History>, ApiError> {
    query(raw, &[])?;
    let items = state.resources.history(&ns, &kind, &name).await?;
    Ok(Json(views::History { items }))
}

pub async fn rollback_resource(
    State(state): State<AppState>,
    Path((ns, kind, name)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Resource>, ApiError> {
    let params = query(raw, &["revision"])?;
    let revision = parse_u64(&params, "revision")?.ok_or_else(|| {
        ApiError::bad_request("rollback needs ?revision=N (see the resource's history)")
    })?;
    let resource = state
        .resources
        .rollback(&ns, &kind, &name, revision)
        .await?;
    Ok(Json(resource))
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; see GET /v1/openapi.json")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method; see GET /v1/openapi.json",
    )
}
