//! The gateway: a snapshot built from its sources, served on a listener
//! (HTTP/1.1 and h2c, or TLS with ALPN), one task per client connection.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::GatewayConfig;
use crate::protect::{self, Policies};
use crate::remote::{self, RemoteError};
use crate::snapshot::{rebuild_loop, Shared, Snapshot};
use crate::sources::{Instances, Routes};
use crate::{ctx, proxy, sniff};

/// The gateway: a snapshot source and a listener.
///
/// Fed in-process (no store, no control plane): two routes that both match
/// `/api/v2/…`, where the longer path prefix takes precedence (the order is in
/// [`RouteSpec`](sluice_model::RouteSpec)'s documentation), one gateway thread, one request.
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
            spans: config.spans.clone(),
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
    pub(crate) async fn serve_counted(
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
