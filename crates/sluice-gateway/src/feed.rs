//! A gateway fed directly: typed routes, protection policies and instances handed
//! to it in-process, with no store, registry or control plane — for tests that
//! exercise the request path through real sockets without starting a process, and
//! for embedding the gateway in another program.

use std::sync::Arc;

use sluice_model::ResourceId;
use tokio::sync::watch;

use crate::config::GatewayConfig;
use crate::gateway::Gateway;
use crate::protect::Policies;
use crate::sources::{EndpointInfo, InstanceTable, Instances, Routes};

/// A route or policy handed to a fed gateway that is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {name}: {reason}")]
pub struct FeedError {
    /// `route`, or the policy's kind.
    pub what: String,
    /// The resource's name.
    pub name: String,
    /// What is wrong (the field at fault).
    pub reason: String,
}

impl FeedError {
    fn new(what: &str, name: &str, reason: impl std::fmt::Display) -> Self {
        FeedError {
            what: what.to_owned(),
            name: name.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// What a fed gateway routes by; each change builds a new snapshot.
pub struct GatewayFeed {
    routes: watch::Sender<Routes>,
    policies: watch::Sender<Policies>,
    instances: Arc<InstanceTable>,
    snapshots: watch::Receiver<u64>,
}

impl std::fmt::Debug for GatewayFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayFeed").finish_non_exhaustive()
    }
}

impl Gateway {
    /// A gateway whose routes, policies and instances are handed to it through the
    /// returned [`GatewayFeed`]. Must run inside a Tokio runtime.
    pub fn fed(config: GatewayConfig) -> (Gateway, GatewayFeed) {
        let (routes, routes_rx) = watch::channel(Routes::new());
        let (policies, policies_rx) = watch::channel(Policies::new());
        let instances = Arc::new(InstanceTable::default());
        let gateway = Gateway::from_sources(
            routes_rx,
            policies_rx,
            Arc::clone(&instances) as Arc<dyn Instances>,
            config,
        );
        let snapshots = gateway.snapshots();
        let feed = GatewayFeed {
            routes,
            policies,
            instances,
            snapshots,
        };
        (gateway, feed)
    }
}

impl GatewayFeed {
    /// Sets route `namespace/name` (validated as the admin API would; an invalid
    /// one is an error naming the field).
    pub async fn route(
        &mut self,
        namespace: &str,
        name: &str,
        spec_json: &str,
    ) -> Result<(), FeedError> {
        let spec: sluice_model::RouteSpec =
            serde_json::from_str(spec_json).map_err(|e| FeedError::new("route", name, e))?;
        spec.validate()
            .map_err(|e| FeedError::new("route", name, e))?;
        self.change(|feed| {
            feed.routes.send_modify(|routes| {
                routes.insert(ResourceId::new(namespace, name), spec);
            });
            true
        })
        .await;
        Ok(())
    }

    /// Sets the protection policy `namespace/name` of `kind` (`RateLimit`, `Breaker`, ...).
    pub async fn policy(
        &mut self,
        kind: &str,
        namespace: &str,
        name: &str,
        spec_json: &str,
    ) -> Result<(), FeedError> {
        let spec: serde_json::Value =
            serde_json::from_str(spec_json).map_err(|e| FeedError::new(kind, name, e))?;
        self.change(|feed| {
            feed.policies.send_modify(|policies| {
                policies
                    .entry(kind.to_owned())
                    .or_default()
                    .insert(ResourceId::new(namespace, name), spec);
            });
            true
        })
        .await;
        Ok(())
    }

    /// Sets the instances of service `namespace/service`: `(id, host:port)` pairs, weight 100.
    pub async fn instances(&mut self, namespace: &str, service: &str, instances: &[(&str, &str)]) {
        let endpoints: Vec<EndpointInfo> = instances
            .iter()
            .map(|(id, address)| EndpointInfo {
                id: (*id).to_owned(),
                address: (*address).to_owned(),
                weight: 100,
            })
            .collect();
        self.change(|feed| feed.instances.set(namespace, service, endpoints))
            .await;
    }

    /// Makes a change (`make` says whether anything changed) and waits until a
    /// snapshot with it is in force. Changes through one feed are made one at a
    /// time, so no rebuild is under way when the change is made: the next
    /// snapshot has it.
    async fn change(&mut self, make: impl FnOnce(&Self) -> bool) {
        let _ = self.snapshots.wait_for(|generation| *generation >= 1).await;
        self.snapshots.borrow_and_update();
        if make(self) {
            let _ = self.snapshots.changed().await;
        }
    }
}
