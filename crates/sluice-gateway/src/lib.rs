//! Sluice's data plane: the gateway every request passes.
//!
//! One listener speaks HTTP/1.1 (keep-alive) and HTTP/2 with prior knowledge (h2c).
//! Each request is matched against the route table (see [`sluice_model::RouteSpec`]
//! for precedence), sent to an instance of the route's service chosen by the route's
//! load balancer (from `sluice-guard`), with proxy headers set and hop-by-hop
//! headers stripped, and the answer is streamed back.
//!
//! The gateway reads an immutable [`Snapshot`] through an `ArcSwap`: a change of a
//! route or of a service's instances builds a new snapshot and swaps it in, so
//! requests in flight keep the one they started with and new requests see the change.
//! Inside `sluice up` the snapshot is fed from the store and the registry directly.

pub mod api_names;
mod ctx;
mod dataplane;
mod error;
mod feed;
mod health;
mod limit;
mod protect;
mod proxy;
mod remote;
mod sniff;
mod stages;
mod table;
mod tls;
mod upstream;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use sluice_model::RouteSpec;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use dataplane::{thread_count, DataPlane};
pub use feed::FeedError;
pub use feed::GatewayFeed;
pub use protect::{Policies, Reason, POLICY_KINDS};
pub use proxy::ProxyBody;
pub use remote::RemoteError;
pub use table::Endpoint;
use table::{CompiledRoute, RouteTable};
pub use tls::{server_config as tls_server_config, CertificateConfig, TlsError};

/// Routes by (namespace, name).
pub type Routes = BTreeMap<(String, String), RouteSpec>;

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

/// What the gateway tells an observer about each request it answered: where the
/// monitoring issue records metrics and spans. Called once per request, after the
/// response head is known; nothing is computed for it when no observer is set.
pub trait RequestObserver: Send + Sync + 'static {
    /// One answered request.
    fn on_response(&self, record: &RequestRecord<'_>);
}

/// One answered request, as an observer sees it.
#[derive(Debug)]
pub struct RequestRecord<'a> {
    /// The route's namespace and name (`None` when no route matched).
    pub route: Option<(&'a str, &'a str)>,
    /// The target service's namespace and name, when one was chosen.
    pub service: Option<(&'a str, &'a str)>,
    /// The instance that answered (the last one tried).
    pub instance: Option<&'a str>,
    /// The request method.
    pub method: &'a hyper::Method,
    /// The API the request called: its method and path template (`GET
    /// /articles/{id}`), from the route's `apis` or automatic normalisation;
    /// `{other}` past the route's `max_apis`; `None` when no route matched.
    pub api: Option<&'a str>,
    /// The status sent to the client.
    pub status: u16,
    /// From the request's arrival to the response head.
    pub latency: Duration,
    /// Upstream attempts made (0 when the gateway answered by itself).
    pub attempts: usize,
    /// Why the gateway refused or gave up on the request, if it did.
    pub rejected: Option<Reason>,
}

/// Listener settings of the gateway.
#[derive(Clone)]
pub struct GatewayConfig {
    /// How long a client may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers), bytes.
    pub max_header_bytes: usize,
    /// Most header fields in a request head (HTTP/1.1; HTTP/2 is bounded by `max_header_bytes`).
    pub max_headers: usize,
    /// How long in-flight requests get after shutdown starts.
    pub shutdown_grace: Duration,
    /// Told about every answered request (metrics, spans), when set.
    pub observer: Option<Arc<dyn RequestObserver>>,
    /// Gateway threads, each with its own runtime, listener and upstream
    /// connections (0: one per core).
    pub threads: usize,
}

impl std::fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("header_read_timeout", &self.header_read_timeout)
            .field("max_header_bytes", &self.max_header_bytes)
            .field("max_headers", &self.max_headers)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("observer", &self.observer.is_some())
            .field("threads", &self.threads)
            .finish()
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            shutdown_grace: Duration::from_secs(10),
            observer: None,
            threads: 0,
        }
    }
}

/// What requests are routed with: built whole, swapped in atomically.
#[derive(Default)]
pub struct Snapshot {
    table: RouteTable,
}

pub(crate) struct Shared {
    snapshot: ArcSwap<Snapshot>,
    observer: Option<Arc<dyn RequestObserver>>,
    rejections: protect::Rejections,
}

/// The gateway: a snapshot source and a listener.
///
/// Fed in-process (no store, no control plane): two routes that both match
/// `/api/v2/…`, where the longer path prefix takes precedence (the order is in
/// [`RouteSpec`]'s documentation), one gateway thread, one request.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// use sluice_gateway::{Gateway, GatewayConfig};
///
/// // An upstream that answers every request with "v2".
/// let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let upstream_address = upstream.local_addr()?.to_string();
/// tokio::spawn(async move {
///     while let Ok((mut connection, _)) = upstream.accept().await {
///         let mut request = [0u8; 4096];
///         let _ = connection.read(&mut request).await;
///         let _ = connection.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nv2").await;
///     }
/// });
///
/// let (gateway, mut feed) = Gateway::fed(GatewayConfig::default());
/// feed.instances("default", "v1", &[("a", "127.0.0.1:9")]).await;
/// feed.instances("default", "v2", &[("b", &upstream_address)]).await;
/// feed.route("default", "api", r#"{"match": {"path_prefix": "/api"}, "service": "v1"}"#).await?;
/// feed.route("default", "api-v2", r#"{"match": {"path_prefix": "/api/v2"}, "service": "v2"}"#).await?;
/// let data_plane = gateway.start("127.0.0.1:0".parse()?, None, 1)?;
///
/// let mut client = tokio::net::TcpStream::connect(data_plane.local_addr()).await?;
/// client.write_all(b"GET /api/v2/items HTTP/1.1\r\nhost: shop\r\nconnection: close\r\n\r\n").await?;
/// let mut answer = String::new();
/// client.read_to_string(&mut answer).await?;
/// assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
/// assert!(answer.ends_with("v2"), "the longer prefix wins: {answer}");
/// data_plane.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
    config: GatewayConfig,
    changes: watch::Receiver<u64>,
}

impl Gateway {
    /// A standalone gateway following the control plane at `control` (several URLs
    /// for failover), keeping its last state in `data_dir` to start from when no
    /// control node answers. Must run inside a Tokio runtime.
    pub fn remote(
        control: Vec<String>,
        token: Option<String>,
        data_dir: std::path::PathBuf,
        config: GatewayConfig,
    ) -> Result<Self, RemoteError> {
        let source = remote::RemoteSource::start(control, token, data_dir)?;
        let routes = source.routes();
        let policies = source.policies();
        Ok(Self::from_sources(routes, policies, source, config))
    }

    /// A gateway that builds its snapshot from these sources: the routes and
    /// policies in force (each change builds a new snapshot) and the instances.
    /// Must run inside a Tokio runtime.
    pub fn from_sources(
        routes: watch::Receiver<Routes>,
        policies: watch::Receiver<Policies>,
        instances: Arc<dyn Instances>,
        config: GatewayConfig,
    ) -> Self {
        let shared = Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            observer: config.observer.clone(),
            rejections: protect::Rejections::default(),
        });
        let (built_tx, changes) = watch::channel(0u64);
        tokio::spawn(rebuild_loop(
            Arc::downgrade(&shared),
            routes,
            policies,
            instances,
            built_tx,
        ));
        Gateway {
            shared,
            config,
            changes,
        }
    }

    /// Requests refused (or given up on) so far, by reason (`rate`, `conn`, `acl`,
    /// `ban`, `concurrency`, `breaker`, `timeout`).
    pub fn rejections(&self) -> BTreeMap<&'static str, u64> {
        self.shared.rejections.get()
    }

    /// What protection holds for service `namespace/service` now: the adaptive
    /// concurrency limits on it and its routes, and its circuit breakers.
    pub fn protection(&self, namespace: &str, service: &str) -> sluice_model::ProtectionStatus {
        self.shared
            .snapshot
            .load()
            .table
            .protection(namespace, service)
    }

    /// Requests counted under the API `{other}` because their route already had
    /// `max_apis` API names, summed over the current routes.
    pub fn api_name_overflow(&self) -> u64 {
        self.shared
            .snapshot
            .load()
            .table
            .routes()
            .map(|route| route.apis.overflow())
            .sum()
    }

    /// A receiver that changes each time a new snapshot is in force.
    pub fn snapshots(&self) -> watch::Receiver<u64> {
        self.changes.clone()
    }

    /// Serves on `listener` until `shutdown` completes, then gives in-flight
    /// requests `shutdown_grace` to finish.
    pub async fn serve(&self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        self.serve_with(listener, None, shutdown).await;
    }

    /// As [`serve`](Self::serve), with TLS (ALPN `h2` and `http/1.1`) on every connection.
    pub async fn serve_tls(
        &self,
        listener: TcpListener,
        tls: Arc<rustls::ServerConfig>,
        shutdown: impl Future<Output = ()>,
    ) {
        self.serve_with(
            listener,
            Some(tokio_rustls::TlsAcceptor::from(tls)),
            shutdown,
        )
        .await;
    }

    async fn serve_with(
        &self,
        listener: TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
        shutdown: impl Future<Output = ()>,
    ) {
        let accepted = std::sync::atomic::AtomicU64::new(0);
        self.serve_counted(listener, tls, shutdown, &accepted).await;
    }

    /// Serves `listener`, counting accepted connections in `accepted`.
    async fn serve_counted(
        &self,
        listener: TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
        shutdown: impl Future<Output = ()>,
        accepted: &std::sync::atomic::AtomicU64,
    ) {
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let builder = self.connection_builder();
        let handshake_timeout = self.config.header_read_timeout;
        tokio::pin!(shutdown);
        loop {
            let (stream, client) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let _ = stream.set_nodelay(true);
            let shared = Arc::clone(&self.shared);
            let watcher = graceful.watcher();
            let builder = builder.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let result = match tls {
                    None => {
                        serve_connection(&builder, watcher, stream, shared, client, "http").await
                    }
                    Some(acceptor) => {
                        // A client that does not finish the handshake in time is dropped.
                        let Ok(Ok(stream)) =
                            tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await
                        else {
                            tracing::debug!(%client, "TLS handshake failed or timed out");
                            return;
                        };
                        serve_connection(&builder, watcher, stream, shared, client, "https").await
                    }
                };
                if let Err(error) = result {
                    tracing::debug!(%error, %client, "connection ended with an error");
                }
            });
        }
        drop(listener);
        if tokio::time::timeout(self.config.shutdown_grace, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("shutdown grace ended with requests still in flight");
        }
    }
}

impl Gateway {
    /// How client connections are served: HTTP/1.1 and h2c, with the listener settings.
    fn connection_builder(&self) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.config.header_read_timeout)
            .max_headers(self.config.max_headers)
            .max_buf_size(self.config.max_header_bytes.max(8192));
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(self.config.max_header_bytes).unwrap_or(u32::MAX));
        builder
    }
}

/// Serves one accepted connection (plain or TLS) until it ends or shutdown drains it.
async fn serve_connection<I>(
    builder: &auto::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
    io: I,
    shared: Arc<Shared>,
    client: std::net::SocketAddr,
    scheme: &'static str,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // Raised when a request head carries both framings (see `sniff`).
    let smuggling = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let conn = Arc::new(ctx::Connection::new(client, scheme, Arc::clone(&smuggling)));
    let service =
        // Boxed: hyper keeps a connection's request future for the connection's life
        // (HTTP/1.1) or moves it into a task per stream (HTTP/2); a box is 8 bytes there,
        // and freed between requests.
        service_fn(move |request| {
            Box::pin(proxy::handle(Arc::clone(&shared), request, Arc::clone(&conn)))
        });
    let io = TokioIo::new(sniff::SniffedIo::new(io, smuggling));
    let connection = builder.serve_connection_with_upgrades(io, service);
    watcher.watch(connection.into_owned()).await
}

/// Builds a new snapshot whenever routes or instances change.
async fn rebuild_loop(
    shared: std::sync::Weak<Shared>,
    mut routes: watch::Receiver<Routes>,
    mut policies: watch::Receiver<Policies>,
    source: Arc<dyn Instances>,
    built: watch::Sender<u64>,
) {
    let mut instances = source.changes();
    // Limits, breakers and limiters keep their state across snapshots while their spec is unchanged.
    let mut guards = protect::GuardState::default();
    // Failure state per instance address, kept across snapshots.
    let mut healths: HashMap<String, Arc<health::EndpointHealth>> = HashMap::new();
    // API names per route, kept across snapshots while its naming settings are unchanged.
    let mut namers: HashMap<(String, String), Arc<api_names::ApiNamer>> = HashMap::new();
    let mut generation = 0u64;
    loop {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let specs = routes.borrow_and_update().clone();
        guards.update(&policies.borrow_and_update());
        instances.borrow_and_update();
        let mut live = HashSet::new();
        let mut compiled: Vec<CompiledRoute> = specs
            .iter()
            .filter_map(|((namespace, name), spec)| {
                let mut endpoints = |ns: &str, svc: &str| {
                    source
                        .endpoints(ns, svc)
                        .into_iter()
                        .map(|i| {
                            live.insert(i.address.clone());
                            let health = Arc::clone(healths.entry(i.address.clone()).or_default());
                            Endpoint {
                                id: i.id,
                                pool_key: i.address.as_str().into(),
                                address: i.address,
                                weight: i.weight,
                                health,
                            }
                        })
                        .collect()
                };
                let settings = CompiledRoute::naming_settings(spec);
                let id = (namespace.clone(), name.clone());
                let namer = match namers.get(&id) {
                    Some(namer) if *namer.settings() == settings => Arc::clone(namer),
                    _ => {
                        let route = format!("{namespace}/{name}");
                        let namer = Arc::new(api_names::ApiNamer::new(route, settings));
                        namers.insert(id, Arc::clone(&namer));
                        namer
                    }
                };
                CompiledRoute::compile(namespace, name, spec, &mut endpoints, namer)
            })
            .collect();
        namers.retain(|id, _| specs.contains_key(id));
        healths.retain(|address, _| live.contains(address));
        guards.retain_breakers(&live);
        for route in &mut compiled {
            route.guards = guards.route(&route.namespace, &route.name);
            for target in route
                .targets
                .iter_mut()
                .chain(route.fallback_target.as_mut())
            {
                let addresses: Vec<&str> = target
                    .endpoints
                    .iter()
                    .map(|e| e.address.as_str())
                    .collect();
                target.guards = guards.service(&target.namespace, &target.service, &addresses);
            }
        }
        shared.snapshot.store(Arc::new(Snapshot {
            table: RouteTable::new(compiled),
        }));
        drop(shared);
        generation += 1;
        built.send_replace(generation);
        tokio::select! {
            changed = routes.changed() => if changed.is_err() { return },
            changed = policies.changed() => if changed.is_err() { return },
            changed = instances.changed() => if changed.is_err() { return },
        }
    }
}
