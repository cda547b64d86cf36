//! The data plane's threads: requests run on gateway threads that do nothing else.
//!
//! Each gateway thread owns a single-threaded Tokio runtime and its own listening
//! socket on the gateway's address (`SO_REUSEPORT`: the kernel spreads new
//! connections over the sockets), so a connection, its requests and their upstream
//! connections (the per-thread pool in `upstream`) never leave the thread that
//! accepted it: no work stealing, no cross-thread wake-ups, no shared pool lock.
//! The control plane (admin API, store, registry, metrics, alarms) runs on another
//! runtime; what it changes reaches the gateway threads as a new snapshot, swapped
//! in atomically, and nothing it does can hold up a request's thread.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{oneshot, watch};

use crate::gateway::Gateway;

/// The gateway threads serving one address; stopped by [`DataPlane::shutdown`].
pub struct DataPlane {
    address: SocketAddr,
    stop: watch::Sender<bool>,
    finished: Vec<oneshot::Receiver<()>>,
    connections: Arc<[AtomicU64]>,
}

impl std::fmt::Debug for DataPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataPlane")
            .field("address", &self.address)
            .field("threads", &self.connections.len())
            .finish()
    }
}

/// The number of gateway threads `requested` means: 0 is one per core.
pub fn thread_count(requested: usize) -> usize {
    if requested > 0 {
        return requested;
    }
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// Opens `count` listening sockets on `address`, all sharing it through
/// `SO_REUSEPORT` (port 0 picks one free port for all of them).
fn bind_all(address: SocketAddr, count: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    let mut listeners = Vec::with_capacity(count);
    let mut address = address;
    for _ in 0..count {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(address),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        #[cfg(unix)]
        if count > 1 {
            socket.set_reuse_port(true)?;
        }
        socket.set_nonblocking(true)?;
        socket.bind(&address.into())?;
        socket.listen(1024)?;
        let listener: std::net::TcpListener = socket.into();
        // Later sockets join the port the first one got.
        address = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

impl Gateway {
    /// Starts the data plane: `threads` gateway threads (0: one per core) serving
    /// `address`, each on its own single-threaded runtime with its own listener,
    /// with TLS on every connection when `tls` is set. Errors when the address
    /// cannot be bound or a thread cannot start.
    pub fn start(
        &self,
        address: SocketAddr,
        tls: Option<Arc<rustls::ServerConfig>>,
        threads: usize,
    ) -> std::io::Result<DataPlane> {
        let count = thread_count(threads);
        let listeners = bind_all(address, count)?;
        let address = listeners[0].local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let connections: Arc<[AtomicU64]> = (0..count).map(|_| AtomicU64::new(0)).collect();
        let mut finished = Vec::with_capacity(count);
        for (index, listener) in listeners.into_iter().enumerate() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let gateway = self.clone();
            let tls = tls.clone();
            let mut stopped = stopped.clone();
            let connections = Arc::clone(&connections);
            let (done, finished_rx) = oneshot::channel();
            finished.push(finished_rx);
            std::thread::Builder::new()
                .name(format!("sluice-gateway-{index}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        let listener = match tokio::net::TcpListener::from_std(listener) {
                            Ok(listener) => listener,
                            Err(error) => {
                                tracing::error!(%error, "a gateway thread cannot use its listener");
                                return;
                            }
                        };
                        let stop = async move {
                            let _ = stopped.wait_for(|stop| *stop).await;
                        };
                        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
                        gateway
                            .serve_counted(listener, acceptor, stop, &connections[index])
                            .await;
                    });
                    let _ = done.send(());
                })?;
        }
        Ok(DataPlane {
            address,
            stop,
            finished,
            connections,
        })
    }
}

fn read_counts(counts: &[AtomicU64]) -> Vec<u64> {
    counts
        .iter()
        .map(|count| count.load(Ordering::Relaxed))
        .collect()
}

impl DataPlane {
    /// The address the gateway threads listen on.
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// Connections accepted so far, per gateway thread.
    pub fn connections_by_thread(&self) -> Vec<u64> {
        read_counts(&self.connections)
    }

    /// A reader of the per-thread connection counts that outlives this handle's borrow.
    pub fn connection_counts(&self) -> impl Fn() -> Vec<u64> + Send + Sync + 'static {
        let connections = Arc::clone(&self.connections);
        move || read_counts(&connections)
    }

    /// Stops accepting, gives in-flight requests the shutdown grace, and waits for
    /// every gateway thread to end.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for finished in self.finished {
            let _ = finished.await;
        }
    }
}
