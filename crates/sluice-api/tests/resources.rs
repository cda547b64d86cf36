//! Generic resources through the router: create, unchanged re-apply, replace,
//! history, rollback, delete, and the blocking watch by kind.

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use axum::Router;
use serde_json::Value;
use sluice_api::{AppState, Auth, Kinds, Resources};
use sluice_registry::{Registry, RegistryConfig};
use sluice_store::{LocalStore, LocalStoreOptions, Store};
use tower::ServiceExt;

fn app() -> Router {
    let store: Arc<dyn Store> = Arc::new(LocalStore::memory(LocalStoreOptions::default()).unwrap());
    let mut kinds = Kinds::builtin();
    kinds.register("Note", |spec| {
        if spec.get("text").and_then(Value::as_str).is_some() {
            Ok(())
        } else {
            Err(sluice_model::InvalidField::new(
                "spec.text",
                "a Note needs a text",
            ))
        }
    });
    let state = AppState {
        registry: Registry::start(Arc::clone(&store), RegistryConfig::default()).unwrap(),
        resources: Resources::start(Arc::clone(&store), kinds),
        store,
        metrics: None,
        protection: None,
        tracing: None,
        configs: None,
    };
    sluice_api::router(state, Auth::default(), 1024 * 1024)
}

async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    body: Option<&str>,
) -> (u16, Option<u64>, Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned())))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let index = response
        .headers()
        .get("x-sluice-index")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        index,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_keep_history_roll_back_and_can_be_watched() {
    let app = app();
    let path = "/v1/namespaces/default/resources/Note/hello";
    let (status, _, first) = call(
        &app,
        "PUT",
        path,
        Some(r#"{"spec":{"text":"v1"},"metadata":{"labels":{"team":"a"}}}"#),
    )
    .await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["kind"], "Note");
    assert_eq!(first["metadata"]["namespace"], "default");
    assert_eq!(first["metadata"]["labels"]["team"], "a");
    let r1 = first["metadata"]["revision"].as_u64().unwrap();
    let (status, _, same) = call(
        &app,
        "PUT",
        path,
        Some(r#"{"spec":{"text":"v1"},"metadata":{"labels":{"team":"a"}}}"#),
    )
    .await;
    assert_eq!(
        (status, same["metadata"]["revision"].as_u64()),
        (200, Some(r1)),
        "an unchanged apply keeps the revision"
    );
    let (status, _, error) = call(&app, "PUT", path, Some(r#"{"spec":{"txt":"v2"}}"#)).await;
    assert_eq!(status, 400);
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("spec.text"),
        "the kind's validation names the field"
    );

    // A blocking list of the kind wakes on the next change.
    let (_, index, list) = call(&app, "GET", "/v1/namespaces/default/resources/Note", None).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let index = index.unwrap();
    let waiter = {
        let app = app.clone();
        tokio::spawn(async move {
            call(
                &app,
                "GET",
                &format!("/v1/namespaces/default/resources/Note?index={index}&wait=30s"),
                None,
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiter.is_finished());
    let (status, _, second) = call(&app, "PUT", path, Some(r#"{"spec":{"text":"v2"}}"#)).await;
    assert_eq!(status, 200);
    let r2 = second["metadata"]["revision"].as_u64().unwrap();
    let (_, new_index, list) = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap();
    assert!(new_index.unwrap() > index);
    assert_eq!(list["items"][0]["spec"]["text"], "v2");

    let (_, _, history) = call(&app, "GET", &format!("{path}/history"), None).await;
    let revisions: Vec<u64> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["revision"].as_u64().unwrap())
        .collect();
    assert_eq!(revisions, [r2, r1], "newest first");
    assert_eq!(history["items"][0]["current"], true);

    let (status, _, rolled) = call(
        &app,
        "POST",
        &format!("{path}/rollback?revision={r1}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{rolled}");
    assert_eq!(rolled["spec"]["text"], "v1");
    assert!(
        rolled["metadata"]["revision"].as_u64().unwrap() > r2,
        "a rollback is a new revision"
    );
    let (status, _, _) = call(
        &app,
        "POST",
        &format!("{path}/rollback?revision=999999"),
        None,
    )
    .await;
    assert_eq!(status, 404);

    let (status, _, _) = call(&app, "DELETE", path, None).await;
    assert_eq!(status, 200);
    let (status, _, _) = call(&app, "GET", path, None).await;
    assert_eq!(status, 404);
    let (_, _, history) = call(&app, "GET", &format!("{path}/history"), None).await;
    assert_eq!(
        history["items"].as_array().unwrap().len(),
        3,
        "deleted versions stay in the history"
    );
    let (status, _, restored) = call(
        &app,
        "POST",
        &format!("{path}/rollback?revision={r2}"),
        None,
    )
    .await;
    assert_eq!(
        (status, restored["spec"]["text"].as_str()),
        (200, Some("v2")),
        "a deleted resource can be restored"
    );
}
