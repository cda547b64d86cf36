//! The standalone gateway's view of the control plane: it follows routes and the
//! instances of the services they send to with blocking queries against any of
//! the control-plane URLs (failing over between them), and keeps the last state
//! on disk so that a gateway restarted while no control node answers still serves.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_client::{ControlPlane, Method};
use sluice_model::{Resource, ResourceId, RouteSpec};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::sources::{EndpointInfo, InstanceTable, Instances, Routes};

/// How long one blocking query waits at the control plane.
const WAIT: &str = "30s";
/// The HTTP timeout of one blocking query (the wait, its jitter, and slack).
const POLL_TIMEOUT: Duration = Duration::from_secs(40);

/// The state kept on disk.
#[derive(Debug, Default, Serialize, Deserialize)]
struct DiskSnapshot {
    routes: Vec<DiskRoute>,
    services: Vec<DiskService>,
    /// Rate limits, as snapshots before other protection kinds were kept had them.
    #[serde(default, skip_serializing)]
    limits: Vec<DiskPolicy>,
    /// Protection resources by kind.
    #[serde(default)]
    policies: BTreeMap<String, Vec<DiskPolicy>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct DiskPolicy {
    namespace: String,
    name: String,
    spec: serde_json::Value,
}

#[derive(Debug, Serialize, Deserialize)]
struct DiskRoute {
    namespace: String,
    name: String,
    spec: RouteSpec,
}

#[derive(Debug, Serialize, Deserialize)]
struct DiskService {
    namespace: String,
    service: String,
    instances: Vec<EndpointInfo>,
}

/// Follows a remote control plane.
pub(crate) struct RemoteSource {
    control: ControlPlane,
    routes: watch::Sender<Routes>,
    policies: watch::Sender<crate::protect::Policies>,
    instances: InstanceTable,
    dirty: Notify,
    snapshot_path: PathBuf,
}

impl Instances for RemoteSource {
    fn endpoints(&self, namespace: &str, service: &str) -> Vec<EndpointInfo> {
        self.instances.endpoints(namespace, service)
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.instances.changes()
    }
}

/// Why a standalone gateway could not start following the control plane.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// No control-plane URL was given.
    #[error("no control-plane URL given")]
    NoControl,
    /// The data directory could not be created.
    #[error("cannot create {}: {reason}", path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// What the system said.
        reason: String,
    },
    /// The control-plane client could not be built.
    #[error(transparent)]
    Client(#[from] sluice_client::ClientError),
}

impl RemoteSource {
    /// Loads the disk snapshot (if any) and starts following `control`.
    pub fn start(
        control: Vec<String>,
        token: Option<String>,
        data_dir: PathBuf,
    ) -> Result<Arc<Self>, RemoteError> {
        if control.is_empty() {
            return Err(RemoteError::NoControl);
        }
        std::fs::create_dir_all(&data_dir).map_err(|e| RemoteError::DataDir {
            path: data_dir.clone(),
            reason: e.to_string(),
        })?;
        let control = ControlPlane::new(control, token, POLL_TIMEOUT)?;
        let (routes, _) = watch::channel(Routes::new());
        let (policies, _) = watch::channel(crate::protect::Policies::new());
        let source = Arc::new(RemoteSource {
            control,
            routes,
            policies,
            instances: InstanceTable::default(),
            dirty: Notify::new(),
            snapshot_path: data_dir.join("gateway-snapshot.json"),
        });
        source.load_disk_snapshot();
        tokio::spawn(Arc::clone(&source).follow_routes());
        for kind in crate::protect::POLICY_KINDS {
            tokio::spawn(Arc::clone(&source).follow_policies(kind));
        }
        tokio::spawn(Arc::clone(&source).follow_services());
        tokio::spawn(Arc::clone(&source).persist());
        Ok(source)
    }

    /// The protection resources as last seen.
    pub fn policies(&self) -> watch::Receiver<crate::protect::Policies> {
        self.policies.subscribe()
    }

    /// The routes as last seen.
    pub fn routes(&self) -> watch::Receiver<Routes> {
        self.routes.subscribe()
    }

    fn load_disk_snapshot(&self) {
        let Ok(text) = std::fs::read(&self.snapshot_path) else {
            return;
        };
        match serde_json::from_slice::<DiskSnapshot>(&text) {
            Ok(snapshot) => {
                let routes: Routes = snapshot
                    .routes
                    .into_iter()
                    .filter(|r| r.spec.validate().is_ok())
                    .map(|r| (ResourceId::new(r.namespace, r.name), r.spec))
                    .collect();
                let instances = snapshot
                    .services
                    .into_iter()
                    .map(|s| ((s.namespace, s.service), s.instances))
                    .collect();
                let mut policies = snapshot.policies;
                if !snapshot.limits.is_empty() {
                    policies
                        .entry("RateLimit".to_owned())
                        .or_default()
                        .extend(snapshot.limits);
                }
                let policies: crate::protect::Policies = policies
                    .into_iter()
                    .map(|(kind, specs)| {
                        let specs = specs
                            .into_iter()
                            .map(|p| (ResourceId::new(p.namespace, p.name), p.spec))
                            .collect();
                        (kind, specs)
                    })
                    .collect();
                self.policies.send_replace(policies);
                tracing::info!(routes = routes.len(), path = %self.snapshot_path.display(), "loaded the disk snapshot");
                self.routes.send_replace(routes);
                self.instances.replace_all(instances);
            }
            Err(error) => {
                tracing::warn!(%error, path = %self.snapshot_path.display(), "ignoring an unreadable disk snapshot")
            }
        }
    }

    /// Long-polls `path` at the current control node; moves to the next one on failure.
    async fn poll(&self, path: &str, index: u64) -> Option<(u64, serde_json::Value)> {
        let path = format!("{path}?index={index}&wait={WAIT}");
        let answer = self
            .control
            .request_once(Method::GET, &path, None)
            .await
            .and_then(|answer| Ok((answer.index.unwrap_or(0), answer.json()?)));
        match answer {
            Ok(answer) => Some(answer),
            Err(error) => {
                tracing::warn!(%error, "control plane did not answer; trying the next one");
                None
            }
        }
    }

    /// Blocking-queries `path` until it answers with an index other than `index`
    /// (any answer when `index` is 0), retrying with backoff across control nodes.
    async fn next_change(&self, path: &str, index: u64) -> (u64, serde_json::Value) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.poll(path, index).await {
                Some((new_index, body)) if new_index != index || index == 0 => {
                    return (new_index, body)
                }
                Some(_) => backoff = Duration::from_millis(100),
                None => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    async fn follow_routes(self: Arc<Self>) {
        let sender = self.routes.clone();
        self.follow_kind(
            "Route",
            |spec: &RouteSpec| spec.validate().is_ok(),
            move |specs| {
                sender.send_if_modified(|held| {
                    let changed = *held != specs;
                    *held = specs;
                    changed
                });
            },
        )
        .await;
    }

    async fn follow_policies(self: Arc<Self>, kind: &'static str) {
        let policies = self.policies.clone();
        self.follow_kind(
            kind,
            |_: &serde_json::Value| true,
            move |specs| {
                policies.send_if_modified(|held| {
                    let slot = held.entry(kind.to_owned()).or_default();
                    let changed = *slot != specs;
                    *slot = specs;
                    changed
                });
            },
        )
        .await;
    }

    async fn follow_kind<T: serde::de::DeserializeOwned>(
        &self,
        kind: &str,
        valid: fn(&T) -> bool,
        apply: impl Fn(BTreeMap<ResourceId, T>),
    ) {
        let path = format!("/v1/resources/{kind}");
        let mut index = 0;
        loop {
            let (new_index, body) = self.next_change(&path, index).await;
            index = new_index;
            let specs: BTreeMap<ResourceId, T> = body["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|item| serde_json::from_value::<Resource>(item.clone()).ok())
                .filter_map(|resource| {
                    let spec = serde_json::from_value::<T>(resource.spec)
                        .ok()
                        .filter(valid)?;
                    Some((resource.metadata.id(), spec))
                })
                .collect();
            apply(specs);
            self.dirty.notify_one();
        }
    }

    /// Keeps one blocking query running per service the routes send to.
    async fn follow_services(self: Arc<Self>) {
        let mut routes = self.routes.subscribe();
        let mut followers: BTreeMap<(String, String), JoinHandle<()>> = BTreeMap::new();
        loop {
            let wanted: std::collections::BTreeSet<(String, String)> = routes
                .borrow_and_update()
                .iter()
                .flat_map(|(ResourceId { namespace, .. }, spec)| {
                    let fallback = spec
                        .fallback
                        .as_ref()
                        .and_then(|f| f.service.clone())
                        .map(|svc| (namespace.clone(), svc));
                    spec.targets(namespace)
                        .into_iter()
                        .map(|(ns, svc, _)| (ns, svc))
                        .chain(fallback)
                })
                .collect();
            followers.retain(|service, task| {
                let keep = wanted.contains(service);
                if !keep {
                    task.abort();
                }
                keep
            });
            for service in wanted {
                if let std::collections::btree_map::Entry::Vacant(slot) = followers.entry(service) {
                    let service = slot.key().clone();
                    slot.insert(tokio::spawn(Arc::clone(&self).follow_service(service)));
                }
            }
            if routes.changed().await.is_err() {
                return;
            }
        }
    }

    async fn follow_service(self: Arc<Self>, (namespace, service): (String, String)) {
        let path = format!("/v1/namespaces/{namespace}/services/{service}/instances");
        let mut index = 0;
        loop {
            let (new_index, body) = self.next_change(&path, index).await;
            index = new_index;
            let instances: Vec<EndpointInfo> = body["instances"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| {
                    Some(EndpointInfo {
                        id: i["id"].as_str()?.to_owned(),
                        address: i["address"].as_str()?.to_owned(),
                        weight: u32::try_from(i["weight"].as_u64()?).ok()?,
                    })
                })
                .collect();
            if self.instances.set(&namespace, &service, instances) {
                self.dirty.notify_one();
            }
        }
    }

    /// Writes the state to disk after changes (at most every 100 ms), atomically.
    async fn persist(self: Arc<Self>) {
        loop {
            self.dirty.notified().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            let snapshot = DiskSnapshot {
                routes: self
                    .routes
                    .borrow()
                    .iter()
                    .map(|(ResourceId { namespace, name }, spec)| DiskRoute {
                        namespace: namespace.clone(),
                        name: name.clone(),
                        spec: spec.clone(),
                    })
                    .collect(),
                limits: Vec::new(),
                policies: self
                    .policies
                    .borrow()
                    .iter()
                    .map(|(kind, specs)| {
                        let specs = specs
                            .iter()
                            .map(|(ResourceId { namespace, name }, spec)| DiskPolicy {
                                namespace: namespace.clone(),
                                name: name.clone(),
                                spec: spec.clone(),
                            })
                            .collect();
                        (kind.clone(), specs)
                    })
                    .collect(),
                services: self
                    .instances
                    .all()
                    .into_iter()
                    .map(|((namespace, service), instances)| DiskService {
                        namespace,
                        service,
                        instances,
                    })
                    .collect(),
            };
            let Ok(bytes) = serde_json::to_vec_pretty(&snapshot) else {
                continue;
            };
            let temporary = self.snapshot_path.with_extension("json.tmp");
            let written = std::fs::write(&temporary, bytes).and_then(|()| {
                std::fs::File::open(&temporary)?.sync_all()?;
                std::fs::rename(&temporary, &self.snapshot_path)
            });
            if let Err(error) = written {
                tracing::warn!(%error, path = %self.snapshot_path.display(), "cannot write the disk snapshot");
            }
        }
    }
}
