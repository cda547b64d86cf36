//! The registry's in-memory view of every service, kept current by following the
//! store, and the answers to queries computed from it.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use sluice_model::{HealthCheck, InstanceSpec, Resource, ServiceSpec};
use sluice_store::{EventKind, KeyValue, LeaseId, Revision};

use crate::keys::{parse_instance_key, parse_settings_key, Part};

/// A persistent instance's health as last set by a check or an operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthRecord {
    /// Whether the instance passes.
    pub passing: bool,
    /// What the check saw, or who set it.
    pub output: String,
    /// Wall-clock milliseconds since the Unix epoch when this state began.
    pub since_ms: u64,
}

/// One instance as a query returns it.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct InstanceView {
    /// The instance ID.
    pub id: String,
    /// `host:port`.
    pub address: String,
    /// 0–1000.
    pub weight: u32,
    /// Routing labels.
    pub labels: BTreeMap<String, String>,
    /// Free-form metadata.
    pub metadata: BTreeMap<String, String>,
    /// Whether it passes its heartbeat or check.
    pub healthy: bool,
    /// Registered, but taking no new traffic.
    pub draining: bool,
    /// Kept alive by heartbeats.
    pub ephemeral: bool,
    /// Its active check, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<HealthCheck>,
    /// What the last check saw, or why it is unhealthy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_output: Option<String>,
}

/// The answer to an instance query.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct InstanceList {
    /// The namespace.
    pub namespace: String,
    /// The service.
    pub service: String,
    /// The change index of the service (as in `X-Sluice-Index`).
    pub index: u64,
    /// True when fewer than `protect_threshold` of the instances are healthy, so the
    /// unhealthy ones are returned too (flagged `healthy: false`).
    pub protection_triggered: bool,
    /// The instances.
    pub instances: Vec<InstanceView>,
}

/// A service in a listing, with its counts.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ServiceSummary {
    /// The service's name.
    pub name: String,
    /// Healthy instances that are not draining.
    pub healthy: usize,
    /// All registered instances.
    pub total: usize,
    /// Instances draining.
    pub draining: usize,
    /// The protection threshold (0 = off).
    pub protect_threshold: f64,
    /// The change index of the service.
    pub index: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct InstanceEntry {
    pub spec: InstanceSpec,
    pub mod_revision: Revision,
    pub lease: Option<LeaseId>,
}

#[derive(Debug, Default)]
pub(crate) struct ServiceEntry {
    pub instances: BTreeMap<String, InstanceEntry>,
    /// Heartbeat markers of ephemeral instances: id → (revision, health lease).
    pub alive: HashMap<String, (Revision, Option<LeaseId>)>,
    pub health: HashMap<String, (Revision, HealthRecord)>,
    pub protect_threshold: f64,
    pub settings_revision: Revision,
    /// The revision of the last change to anything above.
    pub index: u64,
}

impl ServiceEntry {
    pub fn is_healthy(&self, id: &str, instance: &InstanceEntry) -> bool {
        if instance.spec.ephemeral {
            self.alive.contains_key(id)
        } else {
            self.health.get(id).is_none_or(|(_, record)| record.passing)
        }
    }

    pub fn view(&self, id: &str, instance: &InstanceEntry) -> InstanceView {
        let healthy = self.is_healthy(id, instance);
        let health_output = match (instance.spec.ephemeral, healthy) {
            (true, false) => Some("no heartbeat within unhealthy_after".to_owned()),
            _ => self.health.get(id).map(|(_, record)| record.output.clone()),
        };
        InstanceView {
            id: id.to_owned(),
            address: instance.spec.address.clone(),
            weight: instance.spec.weight,
            labels: instance.spec.labels.clone(),
            metadata: instance.spec.metadata.clone(),
            healthy,
            draining: instance.spec.draining,
            ephemeral: instance.spec.ephemeral,
            check: instance.spec.check.clone(),
            health_output,
        }
    }

    /// Healthy, non-draining instances; and all non-draining ones.
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut healthy = 0;
        let mut active = 0;
        let mut draining = 0;
        for (id, instance) in &self.instances {
            if instance.spec.draining {
                draining += 1;
                continue;
            }
            active += 1;
            if self.is_healthy(id, instance) {
                healthy += 1;
            }
        }
        (healthy, active, draining)
    }

    /// Instances a client should send traffic to, or with `all` every instance.
    pub fn list(&self, namespace: &str, service: &str, all: bool) -> InstanceList {
        let (healthy, active, _) = self.counts();
        let protection_triggered = self.protect_threshold > 0.0
            && active > 0
            && (healthy as f64) < self.protect_threshold * active as f64;
        let instances = self
            .instances
            .iter()
            .filter(|(id, instance)| {
                all || (!instance.spec.draining
                    && (protection_triggered || self.is_healthy(id, instance)))
            })
            .map(|(id, instance)| self.view(id, instance))
            .collect();
        InstanceList {
            namespace: namespace.to_owned(),
            service: service.to_owned(),
            index: self.index.max(1),
            protection_triggered,
            instances,
        }
    }
}

/// Every service of every namespace.
#[derive(Debug, Default)]
pub(crate) struct View {
    pub services: BTreeMap<(String, String), ServiceEntry>,
    pub revision: Revision,
}

impl View {
    /// Applies one key of the `svc/` prefix; returns whether anything changed.
    pub fn apply_instance_key(&mut self, kind: EventKind, kv: &KeyValue) -> bool {
        let Some((namespace, service, part, id)) = parse_instance_key(&kv.key) else {
            return false;
        };
        let entry = self
            .services
            .entry((namespace.to_owned(), service.to_owned()))
            .or_default();
        let revision = kv.mod_revision;
        let changed = match (part, kind) {
            (Part::Instance, EventKind::Put) => {
                if entry
                    .instances
                    .get(id)
                    .is_some_and(|held| held.mod_revision >= revision)
                {
                    return false;
                }
                let Ok(spec) = serde_json::from_slice::<InstanceSpec>(&kv.value) else {
                    tracing::warn!(key = kv.key, "ignoring an unreadable instance record");
                    return false;
                };
                entry.instances.insert(
                    id.to_owned(),
                    InstanceEntry {
                        spec,
                        mod_revision: revision,
                        lease: kv.lease,
                    },
                );
                true
            }
            (Part::Instance, EventKind::Delete) => {
                if entry
                    .instances
                    .get(id)
                    .is_some_and(|held| held.mod_revision > revision)
                {
                    return false;
                }
                entry.instances.remove(id).is_some()
            }
            (Part::Alive, EventKind::Put) => {
                if entry
                    .alive
                    .get(id)
                    .is_some_and(|(held, _)| *held >= revision)
                {
                    return false;
                }
                entry.alive.insert(id.to_owned(), (revision, kv.lease));
                true
            }
            (Part::Alive, EventKind::Delete) => {
                if entry
                    .alive
                    .get(id)
                    .is_some_and(|(held, _)| *held > revision)
                {
                    return false;
                }
                entry.alive.remove(id).is_some()
            }
            (Part::Health, EventKind::Put) => {
                if entry
                    .health
                    .get(id)
                    .is_some_and(|(held, _)| *held >= revision)
                {
                    return false;
                }
                let Ok(record) = serde_json::from_slice::<HealthRecord>(&kv.value) else {
                    return false;
                };
                entry.health.insert(id.to_owned(), (revision, record));
                true
            }
            (Part::Health, EventKind::Delete) => {
                if entry
                    .health
                    .get(id)
                    .is_some_and(|(held, _)| *held > revision)
                {
                    return false;
                }
                entry.health.remove(id).is_some()
            }
        };
        if changed {
            entry.index = entry.index.max(revision);
        }
        changed
    }

    /// Applies one key of the `res/Service/` prefix.
    pub fn apply_settings_key(&mut self, kind: EventKind, kv: &KeyValue) -> bool {
        let Some((namespace, service)) = parse_settings_key(&kv.key) else {
            return false;
        };
        let entry = self
            .services
            .entry((namespace.to_owned(), service.to_owned()))
            .or_default();
        if entry.settings_revision > kv.mod_revision {
            return false;
        }
        entry.settings_revision = kv.mod_revision;
        entry.protect_threshold = match kind {
            EventKind::Delete => 0.0,
            EventKind::Put => serde_json::from_slice::<Resource>(&kv.value)
                .ok()
                .and_then(|resource| serde_json::from_value::<ServiceSpec>(resource.spec).ok())
                .and_then(|spec| spec.protect_threshold)
                .unwrap_or(0.0),
        };
        entry.index = entry.index.max(kv.mod_revision);
        true
    }

    /// Replaces every key of one prefix with a fresh list.
    pub fn reset(&mut self, settings: bool, kvs: &[KeyValue], revision: Revision) {
        for entry in self.services.values_mut() {
            if settings {
                entry.protect_threshold = 0.0;
                entry.settings_revision = 0;
            } else {
                entry.instances.clear();
                entry.alive.clear();
                entry.health.clear();
            }
            entry.index = entry.index.max(revision);
        }
        for kv in kvs {
            if settings {
                self.apply_settings_key(EventKind::Put, kv);
            } else {
                self.apply_instance_key(EventKind::Put, kv);
            }
        }
    }
}
