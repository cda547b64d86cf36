//! HTTP upstreams for tests that send traffic through a gateway: each listens on
//! a free loopback port, runs as a task of the test's runtime (gone with it), and
//! returns its `host:port`.
//!
//! - [`echo_upstream`]: answers what it got, as JSON;
//! - [`counting_upstream`]: counts requests, reads whole bodies, answers a fixed status;
//! - [`controlled_upstream`]: its status and latency steered by the test;
//! - [`capacity_upstream`]: a fixed capacity (C requests in service at once, L ms
//!   each, the rest queued first come, first served), for overload benchmarks.

use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;

/// Serves `app` on `listener` until the runtime ends.
/// Serves `app` on `listener` until the runtime ends (answers are not held back
/// by Nagle's algorithm).
async fn serve_on(listener: tokio::net::TcpListener, app: axum::Router) {
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|stream| {
        let _ = stream.set_nodelay(true);
    });
    let _ = axum::serve(listener, app).await;
}

async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(serve_on(listener, app));
    address
}

/// Answers every request with JSON saying what it got: `instance` and `upstream`
/// (both `name`), `method`, `path`, `query`, `uri` (path and query) and `headers`.
pub async fn echo_upstream(name: &'static str) -> String {
    serve(
        axum::Router::new().fallback(move |request: Request| async move {
            let headers: serde_json::Map<String, serde_json::Value> = request
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").into()))
                .collect();
            axum::Json(serde_json::json!({
                "instance": name,
                "upstream": name,
                "method": request.method().as_str(),
                "path": request.uri().path(),
                "query": request.uri().query(),
                "uri": request.uri().to_string(),
                "headers": headers,
            }))
        }),
    )
    .await
}

/// Counts the requests it gets in `count`; reads each body whole and answers
/// `status` with the number of bytes read — except `/big`, answered with 100 MiB.
pub async fn counting_upstream(count: Arc<AtomicUsize>, status: u16) -> String {
    serve(axum::Router::new().fallback(move |request: Request| {
        let count = Arc::clone(&count);
        async move {
            count.fetch_add(1, Ordering::SeqCst);
            if request.uri().path() == "/big" {
                let chunk = axum::body::Bytes::from(vec![b'x'; 1 << 20]);
                let chunks = (0..100).map(move |_| Ok::<_, std::io::Error>(chunk.clone()));
                return axum::response::Response::new(Body::from_stream(futures::stream::iter(
                    chunks,
                )));
            }
            let read = axum::body::to_bytes(request.into_body(), usize::MAX)
                .await
                .map_or(0, |body| body.len());
            let mut response = axum::response::Response::new(Body::from(read.to_string()));
            *response.status_mut() = StatusCode::from_u16(status).unwrap();
            response
        }
    }))
    .await
}

/// How a [`controlled_upstream`] answers: its status and how long it waits first.
#[derive(Clone, Default)]
pub struct UpstreamControl {
    /// The status to answer (0: 200).
    pub status: Arc<AtomicU16>,
    /// Milliseconds to wait before answering.
    pub delay_ms: Arc<AtomicU64>,
    /// Requests received.
    pub hits: Arc<AtomicU64>,
}

impl UpstreamControl {
    /// Answers `status` after `delay_ms` from now on.
    pub fn set(&self, status: u16, delay_ms: u64) {
        self.status.store(status, Ordering::SeqCst);
        self.delay_ms.store(delay_ms, Ordering::SeqCst);
    }
}

/// An upstream whose answers (`{"instance": name}`) a test steers through the
/// returned [`UpstreamControl`].
pub async fn controlled_upstream(name: &'static str) -> (String, UpstreamControl) {
    let control = UpstreamControl::default();
    let state = control.clone();
    let address = serve(axum::Router::new().fallback(move || {
        let state = state.clone();
        async move {
            state.hits.fetch_add(1, Ordering::SeqCst);
            let delay = state.delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            let status = match state.status.load(Ordering::SeqCst) {
                0 => 200,
                status => status,
            };
            (
                StatusCode::from_u16(status).unwrap(),
                axum::Json(serde_json::json!({"instance": name})),
            )
        }
    }))
    .await;
    (address, control)
}

/// Serves on `listener`, forever, as an upstream of fixed capacity: at most
/// `capacity` requests in service at once, each taking `latency` and answered
/// 200 `ok`; more wait in a FIFO queue (Tokio's semaphore is fair).
pub async fn capacity_upstream(
    listener: tokio::net::TcpListener,
    capacity: usize,
    latency: Duration,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(capacity));
    let app = axum::Router::new().fallback(move || {
        let slots = Arc::clone(&slots);
        async move {
            let _slot = slots.acquire().await;
            tokio::time::sleep(latency).await;
            "ok"
        }
    });
    serve_on(listener, app).await;
}
