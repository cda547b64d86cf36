//! Connections to upstream instances: per-thread pools of hyper `client::conn`
//! senders, HTTP/1.1 and HTTP/2 (prior knowledge, for gRPC).
//!
//! Each gateway thread keeps its own pools (a thread-local map by instance
//! address), so checking a connection out or in takes no lock and never wakes
//! another thread. An HTTP/1.1 connection is reused newest-first (it is the one
//! most likely still open) and goes back to its thread's pool when the response
//! body has been read to its end; one whose upstream closed it is dropped when
//! found. A request that an idle connection could not even start sending (the
//! upstream had just closed it) is sent again on a new connection, whatever its
//! method: nothing of it reached the upstream. New connections to one instance are
//! capped ([`MAX_CONNECTING`] at once per thread): past the cap a request waits
//! for a connection to come back or a connect to finish, rather than dialling
//! more — bursts do not turn into connection storms. There is no race between
//! checking out and connecting: a request connects only when nothing is idle.

use std::cell::RefCell;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::{http1, http2};
use hyper::{Request, Response, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tokio::sync::Notify;

use crate::proxy_body::ProxyBody;

/// Most connects in progress to one instance from one thread at once.
pub(crate) const MAX_CONNECTING: usize = 16;

/// Most idle HTTP/1.1 connections kept per instance and thread.
const MAX_IDLE: usize = 256;

/// How long an idle connection is kept before it is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Why an upstream call failed, as far as the connection can tell.
#[derive(Debug)]
pub(crate) enum UpstreamError {
    /// No connection could be made (refused, unreachable, timed out).
    Connect(String),
    /// The connection failed after the request was (perhaps partly) sent.
    Send(hyper::Error),
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamError::Connect(message) => write!(f, "cannot connect: {message}"),
            UpstreamError::Send(error) => write!(f, "{error}"),
        }
    }
}

struct IdleSender {
    sender: http1::SendRequest<ProxyBody>,
    since: Instant,
}

/// The HTTP/1.1 connections of one instance on one thread.
#[derive(Default)]
struct Http1Pool {
    idle: Vec<IdleSender>,
    /// Connects under way. Shared with them: a request on a multi-threaded
    /// runtime (`Gateway::serve`) may end its connect on another thread.
    connecting: Arc<AtomicUsize>,
    /// Woken when a connection comes back or a connect ends.
    returned: Arc<Notify>,
}

/// The HTTP/2 connection of one instance on one thread (multiplexed, shared).
#[derive(Default)]
struct Http2Pool {
    sender: Option<http2::SendRequest<ProxyBody>>,
    /// A connect under way (shared with it, as for HTTP/1.1).
    connecting: Arc<AtomicBool>,
    connected: Arc<Notify>,
}

#[derive(Default)]
struct Pools {
    http1: HashMap<Box<str>, Http1Pool>,
    http2: HashMap<Box<str>, Http2Pool>,
}

thread_local! {
    static POOLS: RefCell<Pools> = RefCell::new(Pools::default());
}

/// Runs `use_pool` on the pool of `address`, made when missing (the address is
/// copied only then).
fn with_pool<P: Default, R>(
    pools: &mut HashMap<Box<str>, P>,
    address: &str,
    use_pool: impl FnOnce(&mut P) -> R,
) -> R {
    if let Some(pool) = pools.get_mut(address) {
        return use_pool(pool);
    }
    use_pool(pools.entry(address.into()).or_default())
}

/// What a checkout found.
enum Checkout<S, C> {
    Ready(S),
    /// Connect, and then release this pool's connect slot.
    Connect(C, Arc<Notify>),
    Wait(Arc<Notify>),
}

/// A connection ready to take one request.
pub(crate) enum Sender {
    Http1 {
        sender: http1::SendRequest<ProxyBody>,
        /// Whether it came from the pool (it may have been closed meanwhile).
        reused: bool,
        address: Arc<str>,
        connect_timeout: Duration,
        /// When its request started.
        since: Instant,
    },
    Http2(http2::SendRequest<ProxyBody>),
}

/// A connection to the instance at `address` (`host:port`) over `version` (HTTP/2
/// for gRPC, else HTTP/1.1): a pooled one, or a new one made within
/// `connect_timeout`. No request is needed yet, so a failure to connect costs the
/// request nothing. `now` is the request's clock read.
pub(crate) async fn checkout(
    address: &Arc<str>,
    version: Version,
    connect_timeout: Duration,
    now: Instant,
) -> Result<Sender, UpstreamError> {
    if version == Version::HTTP_2 {
        return checkout_http2(address, connect_timeout)
            .await
            .map(Sender::Http2);
    }
    let (sender, reused) = checkout_http1(address, connect_timeout, now).await?;
    Ok(Sender::Http1 {
        sender,
        reused,
        address: Arc::clone(address),
        connect_timeout,
        since: now,
    })
}

impl Sender {
    /// Sends `request`; its response body hands an HTTP/1.1 connection back to
    /// the pool when read to its end.
    pub async fn send(
        self,
        request: Request<ProxyBody>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let (mut sender, mut reused, address, connect_timeout, since) = match self {
            Sender::Http2(mut sender) => {
                return match sender.send_request(request).await {
                    Ok(response) => Ok(response.map(UpstreamBody::plain)),
                    Err(error) => Err(UpstreamError::Send(error)),
                };
            }
            Sender::Http1 {
                sender,
                reused,
                address,
                connect_timeout,
                since,
            } => (sender, reused, address, connect_timeout, since),
        };
        let mut request = request;
        loop {
            match sender.try_send_request(request).await {
                Ok(response) => {
                    if response.status() == hyper::StatusCode::SWITCHING_PROTOCOLS {
                        // The connection now belongs to the upgraded protocol.
                        return Ok(response.map(UpstreamBody::plain));
                    }
                    return Ok(
                        response.map(|body| UpstreamBody::pooled(body, sender, address, since))
                    );
                }
                Err(mut error) => match error.take_message() {
                    // A pooled connection closed before anything was written: the
                    // request goes again, once, on a fresh connection.
                    Some(unsent) if reused => {
                        request = unsent;
                        sender = Box::pin(connect_http1(&address, connect_timeout)).await?;
                        reused = false;
                    }
                    _ => return Err(UpstreamError::Send(error.into_error())),
                },
            }
        }
    }
}

/// A ready HTTP/1.1 sender for `address`, and whether it was reused from the
/// pool; `now` is the request's clock (idle expiry needs no clock read of its own).
async fn checkout_http1(
    address: &str,
    connect_timeout: Duration,
    now: Instant,
) -> Result<(http1::SendRequest<ProxyBody>, bool), UpstreamError> {
    let mut deadline = None;
    loop {
        let found = POOLS.with(|pools| {
            with_pool(&mut pools.borrow_mut().http1, address, |pool| {
                while let Some(idle) = pool.idle.pop() {
                    if idle.sender.is_ready()
                        && now.saturating_duration_since(idle.since) < IDLE_TIMEOUT
                    {
                        return Checkout::Ready(idle.sender);
                    }
                    // Closed by the upstream, or idle too long: dropped (and closed).
                }
                if pool.connecting.load(Ordering::Relaxed) < MAX_CONNECTING {
                    pool.connecting.fetch_add(1, Ordering::Relaxed);
                    Checkout::Connect(Arc::clone(&pool.connecting), Arc::clone(&pool.returned))
                } else {
                    Checkout::Wait(Arc::clone(&pool.returned))
                }
            })
        });
        match found {
            Checkout::Ready(sender) => return Ok((sender, true)),
            Checkout::Connect(connecting, returned) => {
                // Connecting is the cold path: its future is boxed, not carried by every request.
                let connected = Box::pin(connect_http1(address, connect_timeout)).await;
                // The slot of the pool it was taken from, whichever thread this is now.
                connecting.fetch_sub(1, Ordering::Relaxed);
                returned.notify_one();
                return connected.map(|sender| (sender, false));
            }
            Checkout::Wait(returned) => {
                let deadline =
                    *deadline.get_or_insert_with(|| tokio::time::Instant::now() + connect_timeout);
                wait_until(deadline, &returned, address, connect_timeout).await?;
            }
        }
    }
}

/// Waits for a connection to come back (or a connect to end), at most until `deadline`.
async fn wait_until(
    deadline: tokio::time::Instant,
    notify: &Notify,
    address: &str,
    connect_timeout: Duration,
) -> Result<(), UpstreamError> {
    match tokio::time::timeout_at(deadline, notify.notified()).await {
        Ok(()) => Ok(()),
        Err(_) => Err(UpstreamError::Connect(format!(
            "no connection to {address} within {connect_timeout:?}"
        ))),
    }
}

async fn connect_stream(
    address: &str,
    connect_timeout: Duration,
) -> Result<TokioIo<tokio::net::TcpStream>, UpstreamError> {
    let stream = match tokio::time::timeout(
        connect_timeout,
        tokio::net::TcpStream::connect(address),
    )
    .await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => return Err(UpstreamError::Connect(format!("{address}: {error}"))),
        Err(_) => {
            return Err(UpstreamError::Connect(format!(
                "{address}: no connection within {connect_timeout:?}"
            )))
        }
    };
    let _ = stream.set_nodelay(true);
    Ok(TokioIo::new(stream))
}

async fn connect_http1(
    address: &str,
    connect_timeout: Duration,
) -> Result<http1::SendRequest<ProxyBody>, UpstreamError> {
    let io = connect_stream(address, connect_timeout).await?;
    let (sender, connection) = http1::Builder::new()
        .handshake(io)
        .await
        .map_err(|error| UpstreamError::Connect(format!("{address}: {error}")))?;
    tokio::spawn(async move {
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(%error, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// Puts an HTTP/1.1 sender back into this thread's pool for `address`; `since`
/// is when its request started (a clock read already made).
fn check_in(address: &str, sender: http1::SendRequest<ProxyBody>, since: Instant) {
    POOLS.with(|pools| {
        with_pool(&mut pools.borrow_mut().http1, address, |pool| {
            if pool.idle.len() < MAX_IDLE {
                pool.idle.push(IdleSender { sender, since });
                pool.returned.notify_one();
            }
        });
    });
}

async fn checkout_http2(
    address: &str,
    connect_timeout: Duration,
) -> Result<http2::SendRequest<ProxyBody>, UpstreamError> {
    let mut deadline = None;
    loop {
        let found = POOLS.with(|pools| {
            with_pool(&mut pools.borrow_mut().http2, address, |pool| {
                match &pool.sender {
                    Some(sender) if !sender.is_closed() => return Checkout::Ready(sender.clone()),
                    _ => pool.sender = None,
                }
                if pool.connecting.load(Ordering::Relaxed) {
                    Checkout::Wait(Arc::clone(&pool.connected))
                } else {
                    pool.connecting.store(true, Ordering::Relaxed);
                    Checkout::Connect(Arc::clone(&pool.connecting), Arc::clone(&pool.connected))
                }
            })
        });
        match found {
            Checkout::Ready(sender) => return Ok(sender),
            Checkout::Connect(connecting, connected_notify) => {
                let connected = Box::pin(connect_http2(address, connect_timeout)).await;
                if let Ok(sender) = &connected {
                    POOLS.with(|pools| {
                        if let Some(pool) = pools.borrow_mut().http2.get_mut(address) {
                            pool.sender = Some(sender.clone());
                        }
                    });
                }
                // The flag of the pool it was set in, whichever thread this is now.
                connecting.store(false, Ordering::Relaxed);
                connected_notify.notify_waiters();
                return connected;
            }
            Checkout::Wait(connected) => {
                let deadline =
                    *deadline.get_or_insert_with(|| tokio::time::Instant::now() + connect_timeout);
                wait_until(deadline, &connected, address, connect_timeout).await?;
            }
        }
    }
}

async fn connect_http2(
    address: &str,
    connect_timeout: Duration,
) -> Result<http2::SendRequest<ProxyBody>, UpstreamError> {
    let io = connect_stream(address, connect_timeout).await?;
    let (sender, connection) = http2::Builder::new(TokioExecutor::new())
        .handshake(io)
        .await
        .map_err(|error| UpstreamError::Connect(format!("{address}: {error}")))?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "upstream HTTP/2 connection ended with an error");
        }
    });
    Ok(sender)
}

/// An upstream response body; an HTTP/1.1 one hands its connection back to the
/// pool of the thread that reads its end.
pub(crate) struct UpstreamBody {
    inner: Incoming,
    pooled: Option<(http1::SendRequest<ProxyBody>, Arc<str>, Instant)>,
}

impl UpstreamBody {
    fn plain(inner: Incoming) -> Self {
        UpstreamBody {
            inner,
            pooled: None,
        }
    }

    fn pooled(
        inner: Incoming,
        sender: http1::SendRequest<ProxyBody>,
        address: Arc<str>,
        since: Instant,
    ) -> Self {
        let mut body = UpstreamBody {
            inner,
            pooled: Some((sender, address, since)),
        };
        if body.inner.is_end_stream() {
            body.release();
        }
        body
    }

    /// The body is read to its end: its connection may take the next request.
    fn release(&mut self) {
        if let Some((sender, address, since)) = self.pooled.take() {
            if sender.is_ready() {
                check_in(&address, sender, since);
            } else if !sender.is_closed() {
                // The connection is still finishing this response: back once it has.
                let mut sender = sender;
                tokio::spawn(async move {
                    if sender.ready().await.is_ok() {
                        check_in(&address, sender, since);
                    }
                });
            }
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.release(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.release(),
            Poll::Ready(Some(Err(_))) => self.pooled = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
