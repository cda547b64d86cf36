//! The in-process gateway harness: a gateway fed typed routes and instances
//! directly (no store, no admin API, no process), serving on a free loopback
//! port from its own gateway thread; the upstreams to send to are sluice-testkit's.

#![allow(dead_code)]

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

// Each test binary uses some of them.
#[allow(unused_imports)]
pub use sluice_testkit::upstream::{counting_upstream, echo_upstream};
