//! Sluice's naming service: services find each other by name.
//!
//! Instances register under a namespace and service. **Ephemeral** instances stay
//! by heartbeats: each holds two store leases, a short one whose marker key says
//! "healthy" (TTL `unhealthy_after`) and a long one that keeps the registration
//! (TTL `remove_after`); a heartbeat renews both. Because this lives entirely in the
//! store, any control-plane node can take a heartbeat and every node sees the same
//! health. **Persistent** instances are checked by the control plane (HTTP or TCP,
//! see [`checker`]) and are never removed unless `deregister_after` says so.
//!
//! Queries are answered from an in-memory `View` (module `view`) that follows the store, so
//! they cost no store round trip; blocking queries wait for the service's index to
//! pass the caller's.

pub mod checker;
pub mod keys;
mod view;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::RwLock;
use serde::Deserialize;
use sluice_model::{validate_name, validate_weight, InstanceSpec, InvalidField, NameError};
use sluice_store::{follow, Compare, FollowUpdate, Revision, Store, StoreError, Txn, TxnOp};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use keys::{instance_key, Part};
use view::View;
pub use view::{HealthRecord, InstanceList, InstanceView, ServiceSummary};

/// Timings of the naming service (defaults as Nacos: 5 s / 15 s / 30 s).
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// How often ephemeral instances should heartbeat (told to clients).
    pub heartbeat_interval: Duration,
    /// An ephemeral instance with no heartbeat for this long is unhealthy.
    pub unhealthy_after: Duration,
    /// An ephemeral instance with no heartbeat for this long is removed.
    pub remove_after: Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            heartbeat_interval: Duration::from_secs(5),
            unhealthy_after: Duration::from_secs(15),
            remove_after: Duration::from_secs(30),
        }
    }
}

impl RegistryConfig {
    /// (unhealthy_after, remove_after) of an ephemeral instance: its own `ttl` if set.
    pub fn ttls(&self, spec: &InstanceSpec) -> (Duration, Duration) {
        match spec.ttl {
            Some(ttl) => (ttl, ttl * 2),
            None => (self.unhealthy_after, self.remove_after),
        }
    }

    /// Checks that the timings make sense together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, rule| Err(ConfigError { field, rule });
        if self.unhealthy_after < Duration::from_secs(1) {
            return bad("unhealthy_after", "must be at least 1s");
        }
        if self.remove_after <= self.unhealthy_after {
            return bad("remove_after", "must be longer than unhealthy_after");
        }
        if self.heartbeat_interval.is_zero() || self.heartbeat_interval >= self.unhealthy_after {
            return bad("heartbeat_interval", "must be shorter than unhealthy_after");
        }
        Ok(())
    }
}

/// Timings of the naming service that do not make sense together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {rule}")]
pub struct ConfigError {
    /// The setting at fault.
    pub field: &'static str,
    /// The rule it breaks.
    pub rule: &'static str,
}

/// What can go wrong in the naming service.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A name in the path is invalid.
    #[error(transparent)]
    Name(#[from] NameError),
    /// A field of the request is invalid.
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    /// The instance is not registered.
    #[error("instance {id:?} of service {namespace}/{service} is not registered")]
    NotFound {
        /// Namespace.
        namespace: String,
        /// Service.
        service: String,
        /// Instance ID.
        id: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Concurrent updates kept conflicting.
    #[error("the instance changed concurrently too often; try again")]
    Conflict,
    /// A heartbeat for a persistent instance (the control plane checks those).
    #[error("instance {id:?} is persistent: the control plane checks it, heartbeats are for ephemeral instances")]
    NotEphemeral {
        /// Instance ID.
        id: String,
    },
}

/// A partial update of an instance: `PATCH .../instances/{id}`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstancePatch {
    /// New weight.
    #[schemars(range(max = sluice_model::MAX_WEIGHT))]
    pub weight: Option<u32>,
    /// Drain (`true`) or undrain.
    pub draining: Option<bool>,
    /// Mark a persistent instance healthy or not (until its next check says otherwise).
    pub healthy: Option<bool>,
    /// Replace the labels.
    #[schemars(with = "Option<sluice_model::schema::LabelsMap>")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Replace the metadata.
    #[schemars(with = "Option<sluice_model::schema::MetadataMap>")]
    pub metadata: Option<BTreeMap<String, String>>,
}

/// The result of a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registered {
    /// Whether the instance is new (rather than updated).
    pub created: bool,
    /// The store revision of the registration.
    pub revision: Revision,
}

/// The result of a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// Whether the instance was unhealthy (no heartbeat within `unhealthy_after`) before this one.
    pub was_unhealthy: bool,
    /// When the next heartbeat is due.
    pub interval: Duration,
}

pub(crate) struct Inner {
    store: Arc<dyn Store>,
    config: RegistryConfig,
    view: RwLock<View>,
    changes: watch::Sender<Revision>,
    /// How many of the two followed prefixes have been listed.
    listed: AtomicUsize,
    tasks: parking_lot::Mutex<Vec<JoinHandle<()>>>,
}

impl Inner {
    /// Persistent instances with an active check: (namespace, service, id, spec, current health).
    pub(crate) fn checked_instances(
        &self,
    ) -> Vec<(String, String, String, InstanceSpec, Option<HealthRecord>)> {
        let view = self.view.read();
        let mut out = Vec::new();
        for ((ns, svc), entry) in &view.services {
            for (id, instance) in &entry.instances {
                if instance.spec.check.is_some() && !instance.spec.ephemeral {
                    let health = entry.health.get(id).map(|(_, record)| record.clone());
                    out.push((
                        ns.clone(),
                        svc.clone(),
                        id.clone(),
                        instance.spec.clone(),
                        health,
                    ));
                }
            }
        }
        out
    }
}

/// The naming service. Cheap to clone; background tasks stop when the last clone drops.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
    _stop: Arc<StopOnDrop>,
}

struct StopOnDrop(Arc<Inner>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        for task in self.0.tasks.lock().drain(..) {
            task.abort();
        }
    }
}

/// Wall-clock milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Registry {
    /// Starts following the store; must run inside a Tokio runtime. Active health
    /// checks run on whichever node holds the checker lock (see [`checker`]).
    pub fn start(store: Arc<dyn Store>, config: RegistryConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let (changes, _) = watch::channel(0);
        let inner = Arc::new(Inner {
            store: Arc::clone(&store),
            config,
            view: RwLock::new(View::default()),
            changes,
            listed: AtomicUsize::new(0),
            tasks: parking_lot::Mutex::new(Vec::new()),
        });
        for settings in [false, true] {
            let prefix = if settings {
                keys::service_settings_prefix()
            } else {
                keys::INSTANCES_PREFIX.to_owned()
            };
            let weak = Arc::downgrade(&inner);
            let mut first = true;
            let task = tokio::spawn(follow(Arc::clone(&store), prefix, move |update| {
                let Some(inner) = weak.upgrade() else { return };
                let revision = {
                    let mut view = inner.view.write();
                    match &update {
                        FollowUpdate::Snapshot { kvs, revision } => {
                            view.reset(settings, kvs, *revision);
                            view.revision = view.revision.max(*revision);
                        }
                        FollowUpdate::Events(events) => {
                            for event in events {
                                if settings {
                                    view.apply_settings_key(event.kind, &event.kv);
                                } else {
                                    view.apply_instance_key(event.kind, &event.kv);
                                }
                                view.revision = view.revision.max(event.revision());
                            }
                        }
                    }
                    view.revision
                };
                if first && matches!(update, FollowUpdate::Snapshot { .. }) {
                    first = false;
                    inner.listed.fetch_add(1, Ordering::SeqCst);
                }
                inner.changes.send_replace(revision);
            }));
            inner.tasks.lock().push(task);
        }
        let registry = Registry {
            _stop: Arc::new(StopOnDrop(Arc::clone(&inner))),
            inner,
        };
        let checker = tokio::spawn(checker::run(registry.downgrade()));
        registry.inner.tasks.lock().push(checker);
        Ok(registry)
    }

    fn downgrade(&self) -> std::sync::Weak<Inner> {
        Arc::downgrade(&self.inner)
    }

    /// Removes an instance (used by the checker for `deregister_after`).
    pub(crate) async fn deregister_inner(
        inner: &Inner,
        namespace: &str,
        service: &str,
        id: &str,
    ) -> Result<(), RegistryError> {
        inner
            .store
            .txn(deregistration(namespace, service, id))
            .await?;
        Ok(())
    }

    /// Whether the view has been loaded from the store.
    pub fn is_ready(&self) -> bool {
        self.inner.listed.load(Ordering::SeqCst) >= 2
    }

    /// A receiver that changes whenever the view does (any service).
    pub fn changes(&self) -> watch::Receiver<Revision> {
        self.inner.changes.subscribe()
    }

    /// The configured timings.
    pub fn config(&self) -> &RegistryConfig {
        &self.inner.config
    }

    /// The store revision the view has caught up with.
    pub fn revision(&self) -> Revision {
        self.inner.view.read().revision
    }

    /// Waits (up to 5 s) until the view reflects `revision`, so a caller reads its own writes.
    async fn caught_up(&self, revision: Revision) {
        let mut changes = self.inner.changes.subscribe();
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            changes.wait_for(|seen| *seen >= revision),
        )
        .await;
    }

    /// Registers or updates an instance.
    pub async fn register(
        &self,
        namespace: &str,
        service: &str,
        id: &str,
        spec: InstanceSpec,
    ) -> Result<Registered, RegistryError> {
        validate_path(namespace, service, id)?;
        spec.validate()?;
        let store = &self.inner.store;
        let key = instance_key(Part::Instance, namespace, service, id);
        let alive_key = instance_key(Part::Alive, namespace, service, id);
        let previous = store.get(&key).await?;
        let previous_alive = store.get(&alive_key).await?;
        let value =
            serde_json::to_vec(&spec).map_err(|e| StoreError::InvalidRequest(e.to_string()))?;
        let mut txn = Txn::new();
        if spec.ephemeral {
            let (unhealthy_after, remove_after) = self.inner.config.ttls(&spec);
            let removal = store.grant_lease(remove_after).await?;
            let health = store.grant_lease(unhealthy_after).await?;
            txn = txn
                .then(TxnOp::Put {
                    key,
                    value,
                    lease: Some(removal),
                })
                .then(TxnOp::Put {
                    key: alive_key,
                    value: Vec::new(),
                    lease: Some(health),
                })
                .then(TxnOp::delete(instance_key(
                    Part::Health,
                    namespace,
                    service,
                    id,
                )));
        } else {
            txn = txn
                .then(TxnOp::Put {
                    key,
                    value,
                    lease: None,
                })
                .then(TxnOp::delete(alive_key));
        }
        let outcome = store.txn(txn).await?;
        // The old leases now hold nothing of this instance; end them.
        for lease in [previous.as_ref(), previous_alive.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|kv| kv.lease)
        {
            let _ = store.revoke_lease(lease).await;
        }
        self.caught_up(outcome.revision).await;
        Ok(Registered {
            created: previous.is_none(),
            revision: outcome.revision,
        })
    }

    /// Records a heartbeat of an ephemeral instance.
    pub async fn heartbeat(
        &self,
        namespace: &str,
        service: &str,
        id: &str,
    ) -> Result<Heartbeat, RegistryError> {
        validate_path(namespace, service, id)?;
        let store = &self.inner.store;
        let not_found = || RegistryError::NotFound {
            namespace: namespace.to_owned(),
            service: service.to_owned(),
            id: id.to_owned(),
        };
        let key = instance_key(Part::Instance, namespace, service, id);
        let alive_key = instance_key(Part::Alive, namespace, service, id);
        let held = {
            let view = self.inner.view.read();
            view.services
                .get(&(namespace.to_owned(), service.to_owned()))
                .and_then(|entry| {
                    let instance = entry.instances.get(id)?;
                    Some((
                        instance.spec.ephemeral,
                        instance.spec.ttl,
                        instance.lease,
                        entry.alive.get(id).and_then(|(_, lease)| *lease),
                    ))
                })
        };
        let (ephemeral, ttl, removal, health) = match held {
            Some(held) => held,
            // Not in this node's view yet (registered a moment ago elsewhere): ask the store.
            None => {
                let kv = store.get(&key).await?.ok_or_else(not_found)?;
                let spec: InstanceSpec =
                    serde_json::from_slice(&kv.value).map_err(|_| not_found())?;
                let alive = store.get(&alive_key).await?.and_then(|kv| kv.lease);
                (spec.ephemeral, spec.ttl, kv.lease, alive)
            }
        };
        if !ephemeral {
            return Err(RegistryError::NotEphemeral { id: id.to_owned() });
        }
        let removal = removal.ok_or_else(not_found)?;
        match store.keep_alive(removal).await {
            Err(StoreError::LeaseNotFound(_)) => return Err(not_found()),
            other => other?,
        };
        let renewed = match health {
            Some(lease) => match store.keep_alive(lease).await {
                Ok(_) => true,
                Err(StoreError::LeaseNotFound(_)) => false,
                Err(error) => return Err(error.into()),
            },
            None => false,
        };
        if !renewed {
            // It had missed heartbeats: healthy again from now on, under a new lease.
            let lease = store
                .grant_lease(ttl.unwrap_or(self.inner.config.unhealthy_after))
                .await?;
            let txn = Txn::new().when(Compare::Exists(key)).then(TxnOp::Put {
                key: alive_key,
                value: Vec::new(),
                lease: Some(lease),
            });
            let outcome = store.txn(txn).await?;
            if !outcome.succeeded {
                let _ = store.revoke_lease(lease).await;
                return Err(not_found());
            }
            self.caught_up(outcome.revision).await;
        }
        Ok(Heartbeat {
            was_unhealthy: !renewed,
            interval: ttl.map_or(self.inner.config.heartbeat_interval, |ttl| ttl / 3),
        })
    }

    /// Applies a partial update (weight, drain, labels, metadata, operator health).
    pub async fn update(
        &self,
        namespace: &str,
        service: &str,
        id: &str,
        patch: InstancePatch,
    ) -> Result<InstanceView, RegistryError> {
        validate_path(namespace, service, id)?;
        if let Some(weight) = patch.weight {
            validate_weight(weight)?;
        }
        let store = &self.inner.store;
        let key = instance_key(Part::Instance, namespace, service, id);
        for _ in 0..16 {
            let kv = store
                .get(&key)
                .await?
                .ok_or_else(|| RegistryError::NotFound {
                    namespace: namespace.to_owned(),
                    service: service.to_owned(),
                    id: id.to_owned(),
                })?;
            let mut spec: InstanceSpec = serde_json::from_slice(&kv.value).map_err(|e| {
                StoreError::InvalidRequest(format!(
                    "the stored instance {key:?} is unreadable: {e}"
                ))
            })?;
            if patch.healthy.is_some() && spec.ephemeral {
                return Err(InvalidField::new(
                    "healthy",
                    "an ephemeral instance's health follows its heartbeats; drain it instead",
                )
                .into());
            }
            if let Some(weight) = patch.weight {
                spec.weight = weight;
            }
            if let Some(draining) = patch.draining {
                spec.draining = draining;
            }
            if let Some(labels) = &patch.labels {
                spec.labels = labels.clone();
            }
            if let Some(metadata) = &patch.metadata {
                spec.metadata = metadata.clone();
            }
            spec.validate()?;
            let value =
                serde_json::to_vec(&spec).map_err(|e| StoreError::InvalidRequest(e.to_string()))?;
            let mut txn = Txn::new()
                .when(Compare::ModRevision(key.clone(), kv.mod_revision))
                .then(TxnOp::Put {
                    key: key.clone(),
                    value,
                    lease: kv.lease,
                });
            if let Some(passing) = patch.healthy {
                let record = HealthRecord {
                    passing,
                    output: format!(
                        "set {} by an operator",
                        if passing { "healthy" } else { "unhealthy" }
                    ),
                    since_ms: now_ms(),
                };
                let record = serde_json::to_vec(&record)
                    .map_err(|e| StoreError::InvalidRequest(e.to_string()))?;
                txn = txn.then(TxnOp::put(
                    instance_key(Part::Health, namespace, service, id),
                    record,
                ));
            }
            let outcome = store.txn(txn).await?;
            if outcome.succeeded {
                self.caught_up(outcome.revision).await;
                return self.instance(namespace, service, id).ok_or_else(|| {
                    RegistryError::NotFound {
                        namespace: namespace.to_owned(),
                        service: service.to_owned(),
                        id: id.to_owned(),
                    }
                });
            }
        }
        Err(RegistryError::Conflict)
    }

    /// Removes an instance and everything about it.
    pub async fn deregister(
        &self,
        namespace: &str,
        service: &str,
        id: &str,
    ) -> Result<(), RegistryError> {
        validate_path(namespace, service, id)?;
        let store = &self.inner.store;
        let key = instance_key(Part::Instance, namespace, service, id);
        let alive_key = instance_key(Part::Alive, namespace, service, id);
        let alive = store.get(&alive_key).await?;
        let previous = store.get(&key).await?;
        let outcome = store.txn(deregistration(namespace, service, id)).await?;
        if !outcome.succeeded {
            return Err(RegistryError::NotFound {
                namespace: namespace.to_owned(),
                service: service.to_owned(),
                id: id.to_owned(),
            });
        }
        for lease in [previous, alive]
            .into_iter()
            .flatten()
            .filter_map(|kv| kv.lease)
        {
            let _ = store.revoke_lease(lease).await;
        }
        self.caught_up(outcome.revision).await;
        Ok(())
    }

    /// One instance as the view holds it.
    pub fn instance(&self, namespace: &str, service: &str, id: &str) -> Option<InstanceView> {
        let view = self.inner.view.read();
        let entry = view
            .services
            .get(&(namespace.to_owned(), service.to_owned()))?;
        entry
            .instances
            .get(id)
            .map(|instance| entry.view(id, instance))
    }

    /// The instances to send traffic to (healthy, not draining; all of the
    /// non-draining ones when the protection threshold is triggered), or every
    /// instance with `all`.
    pub fn instances(&self, namespace: &str, service: &str, all: bool) -> InstanceList {
        let view = self.inner.view.read();
        match view
            .services
            .get(&(namespace.to_owned(), service.to_owned()))
        {
            Some(entry) => entry.list(namespace, service, all),
            None => InstanceList {
                namespace: namespace.to_owned(),
                service: service.to_owned(),
                index: 1,
                protection_triggered: false,
                instances: Vec::new(),
            },
        }
    }

    /// A blocking query: answers at once if the service's index is past `after`,
    /// otherwise when it changes or when `wait` (plus up to 1/16 jitter) ends.
    pub async fn wait_instances(
        &self,
        namespace: &str,
        service: &str,
        all: bool,
        after: u64,
        wait: Duration,
    ) -> InstanceList {
        let jitter = wait.mul_f64(fastrand::f64() / 16.0);
        let deadline = tokio::time::Instant::now() + wait + jitter;
        // An index beyond the store's revision comes from a store before a
        // restore (whose revisions start again lower): answer now, with the
        // index to use from here on.
        let from_before_a_restore = self
            .inner
            .store
            .current_revision()
            .await
            .is_ok_and(|current| after > current);
        let mut changes = self.inner.changes.subscribe();
        loop {
            changes.borrow_and_update();
            // Any change wakes every waiter; only the index is looked at until this
            // service's changed, so other services' changes cost almost nothing.
            if self.service_index(namespace, service) > after || from_before_a_restore {
                break;
            }
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { break },
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        self.instances(namespace, service, all)
    }

    /// A service's change index (1 for an unknown service).
    pub fn service_index(&self, namespace: &str, service: &str) -> u64 {
        let view = self.inner.view.read();
        view.services
            .get(&(namespace.to_owned(), service.to_owned()))
            .map_or(1, |entry| entry.index.max(1))
    }

    /// The services of a namespace that have instances, with their counts.
    pub fn services(&self, namespace: &str) -> Vec<ServiceSummary> {
        let view = self.inner.view.read();
        view.services
            .iter()
            .filter(|((ns, _), entry)| ns == namespace && !entry.instances.is_empty())
            .map(|((_, name), entry)| {
                let (healthy, _, draining) = entry.counts();
                ServiceSummary {
                    name: name.clone(),
                    healthy,
                    total: entry.instances.len(),
                    draining,
                    protect_threshold: entry.protect_threshold,
                    index: entry.index.max(1),
                }
            })
            .collect()
    }

    /// Every instance of every service: (namespace, service, instance).
    pub fn all_instances(&self) -> Vec<(String, String, InstanceView)> {
        let view = self.inner.view.read();
        view.services
            .iter()
            .flat_map(|((ns, svc), entry)| {
                entry
                    .instances
                    .iter()
                    .map(move |(id, instance)| (ns.clone(), svc.clone(), entry.view(id, instance)))
            })
            .collect()
    }

    /// The store this registry keeps its state in.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }
}

/// Removes an instance's registration, heartbeat marker and health record at once,
/// if it is registered.
fn deregistration(namespace: &str, service: &str, id: &str) -> Txn {
    let key = instance_key(Part::Instance, namespace, service, id);
    Txn::new()
        .when(Compare::Exists(key.clone()))
        .then(TxnOp::delete(key))
        .then(TxnOp::delete(instance_key(
            Part::Alive,
            namespace,
            service,
            id,
        )))
        .then(TxnOp::delete(instance_key(
            Part::Health,
            namespace,
            service,
            id,
        )))
}

/// Checks the names in an instance path.
pub fn validate_path(namespace: &str, service: &str, id: &str) -> Result<(), NameError> {
    validate_name("namespace", namespace)?;
    validate_name("service", service)?;
    validate_name("instance id", id)
}
