//! The in-process gateway harness: a gateway fed typed routes and instances
//! directly (no store, no admin API, no process), serving on a free loopback
//! port from its own gateway thread, and small upstreams to send to.

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::Request;
use futures::StreamExt;
use sluice_gateway::{DataPlane, Gateway, GatewayConfig, GatewayFeed};

/// A gateway on `127.0.0.1:PORT`, stopped when dropped.
pub struct Harness {
    pub gateway: Gateway,
    pub feed: GatewayFeed,
    pub url: String,
    pub port: u16,
    _plane: DataPlane,
}

impl Harness {
    /// A gateway with the default settings.
    pub async fn start() -> Self {
        Self::with_config(GatewayConfig::default()).await
    }

    /// A gateway with `config`, on one gateway thread.
    pub async fn with_config(config: GatewayConfig) -> Self {
        let (gateway, feed) = Gateway::fed(config);
        let plane = gateway
            .start("127.0.0.1:0".parse().unwrap(), None, 1)
            .unwrap();
        let port = plane.local_addr().port();
        Harness {
            gateway,
            feed,
            url: format!("http://127.0.0.1:{port}"),
            port,
            _plane: plane,
        }
    }

    /// Sets route `default/NAME`, in force when this returns.
    pub async fn route(&mut self, name: &str, spec: &str) {
        self.feed.route("default", name, spec).await.unwrap();
    }

    /// Sets the instances of `default/SERVICE`, in force when this returns.
    pub async fn instances(&mut self, service: &str, instances: &[(&str, &str)]) {
        self.feed.instances("default", service, instances).await;
    }
}

/// An upstream that counts the requests it gets and answers each with `status`
/// and the number of body bytes it read (reading the whole body first).
pub async fn counting_upstream(count: Arc<AtomicUsize>, status: u16) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let app = axum::Router::new().fallback(move |request: Request| {
        let count = Arc::clone(&count);
        async move {
            count.fetch_add(1, Ordering::SeqCst);
            let mut body = request.into_body().into_data_stream();
            let mut total = 0usize;
            while let Some(chunk) = body.next().await {
                total += chunk.map(|c| c.len()).unwrap_or(0);
            }
            (
                axum::http::StatusCode::from_u16(status).unwrap(),
                total.to_string(),
            )
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

/// An upstream answering, as JSON, its name and the request it got: method,
/// path with query, and headers.
pub async fn echo_upstream(name: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let app = axum::Router::new().fallback(move |request: Request| async move {
        let headers: serde_json::Map<String, serde_json::Value> = request
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").into()))
            .collect();
        axum::Json(serde_json::json!({
            "upstream": name,
            "method": request.method().as_str(),
            "uri": request.uri().to_string(),
            "headers": headers,
        }))
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}
