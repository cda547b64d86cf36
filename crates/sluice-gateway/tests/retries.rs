//! Retries: only idempotent requests without a body are retried, up to `attempts`,
//! within the retry budget; and a route's body limit stops large bodies.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use support::{counting_upstream, Harness};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_idempotent_requests_are_retried_within_the_budget() {
    let mut gateway = Harness::start().await;
    let count = Arc::new(AtomicUsize::new(0));
    let upstream = counting_upstream(Arc::clone(&count), 503).await;
    gateway.instances("busy", &[("b", &upstream)]).await;
    gateway
        .route(
            "generous",
            r#"{"match": {"path_prefix": "/generous"}, "service": "busy", "max_body_bytes": 1000,
                "retries": {"attempts": 2, "on": ["5xx"], "budget_percent": 100, "min_per_second": 100},
                "outlier": {"consecutive_failures": 0}}"#,
        )
        .await;
    gateway
        .route(
            "stingy",
            r#"{"match": {"path_prefix": "/stingy"}, "service": "busy",
                "retries": {"attempts": 2, "on": ["5xx"], "budget_percent": 0, "min_per_second": 0},
                "outlier": {"consecutive_failures": 0}}"#,
        )
        .await;
    let url = &gateway.url;
    let client = reqwest::Client::new();

    // GET without a body: first attempt + 2 retries.
    let before = count.load(Ordering::SeqCst);
    let status = client
        .get(format!("{url}/generous"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 503, "the last answer is passed on");
    assert_eq!(count.load(Ordering::SeqCst) - before, 3);
    // POST with a body: never retried.
    let before = count.load(Ordering::SeqCst);
    client
        .post(format!("{url}/generous"))
        .body("payload")
        .send()
        .await
        .unwrap();
    assert_eq!(count.load(Ordering::SeqCst) - before, 1);
    // PUT with a streamed (chunked) body: idempotent, but its body is not kept, so
    // it is sent once — and whole.
    let before = count.load(Ordering::SeqCst);
    let chunks = futures::stream::iter(
        (0..3).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'z'; 100]))),
    );
    let response = client
        .put(format!("{url}/generous"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.text().await.unwrap(),
        "300",
        "the body arrives whole"
    );
    assert_eq!(count.load(Ordering::SeqCst) - before, 1);
    // An empty budget allows no retry.
    let before = count.load(Ordering::SeqCst);
    client.get(format!("{url}/stingy")).send().await.unwrap();
    assert_eq!(count.load(Ordering::SeqCst) - before, 1);

    // The body limit: a declared length over it never reaches the upstream; a
    // streamed body is cut off at it.
    let before = count.load(Ordering::SeqCst);
    let response = client
        .post(format!("{url}/generous"))
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
        .post(format!("{url}/generous"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
}
