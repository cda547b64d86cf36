//! Where a gateway's snapshot comes from: the routes in force, and the instances
//! of each service ([`Instances`]). The in-process control plane, the standalone
//! gateway's follower and a fed gateway each provide them.

use std::collections::{BTreeMap, HashMap};

use sluice_model::{ResourceId, RouteSpec};
use tokio::sync::watch;

/// Routes by (namespace, name).
pub type Routes = BTreeMap<ResourceId, RouteSpec>;

/// An instance as a snapshot source reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EndpointInfo {
    /// Instance ID.
    pub id: String,
    /// `host:port`.
    pub address: String,
    /// Weight.
    pub weight: u32,
}

/// Where a gateway learns the instances to send a service's traffic to. The
/// in-process control plane implements it over the registry (where roles are
/// wired, in the `sluice` binary); a standalone gateway over what it follows.
pub trait Instances: Send + Sync + 'static {
    /// The instances to use now (healthy, not draining; or as the protection threshold says).
    fn endpoints(&self, namespace: &str, service: &str) -> Vec<EndpointInfo>;
    /// Changes whenever any service's instances may have changed.
    fn changes(&self) -> watch::Receiver<u64>;
}

/// Instances by service, with a counter that changes with them: the instance
/// source of a gateway that is told its instances (the remote follower, a fed gateway).
#[derive(Default)]
pub(crate) struct InstanceTable {
    by_service: parking_lot::RwLock<HashMap<(String, String), Vec<EndpointInfo>>>,
    changes: watch::Sender<u64>,
}

impl InstanceTable {
    /// Sets a service's instances; when they differ from before, watchers are told
    /// and this returns true.
    pub fn set(&self, namespace: &str, service: &str, instances: Vec<EndpointInfo>) -> bool {
        let changed = {
            let mut by_service = self.by_service.write();
            let key = (namespace.to_owned(), service.to_owned());
            let changed = by_service.get(&key) != Some(&instances);
            by_service.insert(key, instances);
            changed
        };
        if changed {
            self.changes.send_modify(|n| *n += 1);
        }
        changed
    }

    /// Replaces every service's instances, and tells the watchers.
    pub fn replace_all(&self, all: HashMap<(String, String), Vec<EndpointInfo>>) {
        *self.by_service.write() = all;
        self.changes.send_modify(|n| *n += 1);
    }

    /// Every service's instances, as `((namespace, service), instances)`.
    pub fn all(&self) -> Vec<((String, String), Vec<EndpointInfo>)> {
        let by_service = self.by_service.read();
        by_service
            .iter()
            .map(|(key, instances)| (key.clone(), instances.clone()))
            .collect()
    }
}

impl Instances for InstanceTable {
    fn endpoints(&self, namespace: &str, service: &str) -> Vec<EndpointInfo> {
        self.by_service
            .read()
            .get(&(namespace.to_owned(), service.to_owned()))
            .cloned()
            .unwrap_or_default()
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}
