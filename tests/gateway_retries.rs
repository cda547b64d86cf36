//! Retries: only idempotent requests without a body are retried, up to `attempts`,
//! within the retry budget; and a route's body limit stops large bodies.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::Request;
use futures::StreamExt;

use crate::support::{until_status, Http, Sluice};

/// An upstream that always answers 503 and counts requests per path.
async fn failing_upstream(count: Arc<AtomicUsize>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let app = axum::Router::new().fallback(move |request: Request| {
        let count = Arc::clone(&count);
        async move {
            count.fetch_add(1, Ordering::SeqCst);
            let mut body = request.into_body().into_data_stream();
            while body.next().await.is_some() {}
            (axum::http::StatusCode::SERVICE_UNAVAILABLE, "busy")
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_idempotent_requests_are_retried_within_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let sluice = Sluice::up(dir.path());
    let gateway = sluice.gateway.clone().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let upstream = failing_upstream(Arc::clone(&count)).await;
    let api = Http::new(&sluice.url);
    api.register("busy", "b", &upstream).await;
    api.put(
        "/v1/namespaces/default/resources/Route/generous",
        r#"{"spec": {"match": {"path_prefix": "/generous"}, "service": "busy", "max_body_bytes": 1000,
            "retries": {"attempts": 2, "on": ["5xx"], "budget_percent": 100, "min_per_second": 100},
            "outlier": {"consecutive_failures": 0}}}"#,
    )
    .await;
    api.put(
        "/v1/namespaces/default/resources/Route/stingy",
        r#"{"spec": {"match": {"path_prefix": "/stingy"}, "service": "busy",
            "retries": {"attempts": 2, "on": ["5xx"], "budget_percent": 0, "min_per_second": 0},
            "outlier": {"consecutive_failures": 0}}}"#,
    )
    .await;
    let client = reqwest::Client::new();
    until_status(&client, &format!("{gateway}/generous"), 503).await;
    until_status(&client, &format!("{gateway}/stingy"), 503).await;

    // GET without a body: first attempt + 2 retries.
    let before = count.load(Ordering::SeqCst);
    let status = client
        .get(format!("{gateway}/generous"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 503, "the last answer is passed on");
    assert_eq!(count.load(Ordering::SeqCst) - before, 3);
    // POST with a body: never retried.
    let before = count.load(Ordering::SeqCst);
    client
        .post(format!("{gateway}/generous"))
        .body("payload")
        .send()
        .await
        .unwrap();
    assert_eq!(count.load(Ordering::SeqCst) - before, 1);
    // An empty budget allows no retry.
    let before = count.load(Ordering::SeqCst);
    client
        .get(format!("{gateway}/stingy"))
        .send()
        .await
        .unwrap();
    assert_eq!(count.load(Ordering::SeqCst) - before, 1);

    // The body limit: a declared length over it never reaches the upstream; a
    // streamed body is cut off at it.
    let before = count.load(Ordering::SeqCst);
    let response = client
        .post(format!("{gateway}/generous"))
        .body(vec![b'x'; 2000])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(
        count.load(Ordering::SeqCst),
        before,
        "refused before the upstream"
    );
    let chunks = futures::stream::iter(
        (0..4).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'y'; 500]))),
    );
    let response = client
        .post(format!("{gateway}/generous"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
}
