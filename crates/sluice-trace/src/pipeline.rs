//! The path of spans through a node: a bounded queue that ingest endpoints
//! and the gateway hand spans to, one worker thread that feeds the tail
//! sampler and writes what it keeps to the [`SpanStore`], and the counters of
//! all of it. A full queue refuses more (the caller answers 503 with
//! `Retry-After`), so memory stays bounded whatever the senders do.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use crate::span::Span;
use crate::store::{SpanStore, StoreConfig};
use crate::tail::{Tail, TailConfig, TailCounts};

/// The pipeline's settings.
#[derive(Debug, Clone)]
pub struct TracingConfig {
    /// Storage.
    pub store: StoreConfig,
    /// Tail decisions.
    pub tail: TailConfig,
    /// Most spans queued for the worker.
    pub queue_spans: usize,
}

impl TracingConfig {
    /// The defaults, storing in `dir`.
    pub fn new(dir: std::path::PathBuf) -> Self {
        TracingConfig {
            store: StoreConfig::new(dir),
            tail: TailConfig::default(),
            queue_spans: 200_000,
        }
    }
}

/// Why spans were not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The queue is full: try again shortly.
    Busy,
    /// The pipeline has stopped.
    Stopped,
}

/// Counters of the pipeline, for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TracingCounts {
    /// Spans taken in.
    pub received: u64,
    /// Spans refused as invalid (by the ingest endpoints).
    pub invalid: u64,
    /// Spans refused because the queue was full.
    pub refused_busy: u64,
    /// Spans stored.
    pub stored: u64,
    /// Failed writes.
    pub write_errors: u64,
    /// The tail sampler's counts.
    pub tail: TailCounts,
    /// Spans held undecided now.
    pub held: u64,
    /// Spans queued now.
    pub queued: u64,
    /// Kept spans not forwarded because the export queue was full.
    pub export_dropped: u64,
}

#[derive(Default)]
struct Counters {
    received: AtomicU64,
    invalid: AtomicU64,
    refused_busy: AtomicU64,
    stored: AtomicU64,
    write_errors: AtomicU64,
    queued: AtomicUsize,
    tail: Mutex<(TailCounts, usize)>,
    /// Where kept traces are also sent (`--trace-export`), when somewhere.
    export: Mutex<Option<SyncSender<Vec<Vec<Span>>>>>,
    export_dropped: AtomicU64,
}

/// Spans to be built by the worker (so that the caller's thread — a gateway
/// thread — only moves plain data).
pub type Deferred = Box<dyn FnOnce() -> Vec<Span> + Send>;

enum Message {
    Spans(Vec<Span>),
    /// Spans built on the worker; counted in the queue as the estimate given.
    Deferred(Deferred, usize),
    Flush(mpsc::SyncSender<()>),
    Stop,
}

/// A node's tracing: queue, sampler, store.
pub struct Tracing {
    /// The queue (lock-free to send on: the gateway's threads use it).
    sender: SyncSender<Message>,
    stopped: std::sync::atomic::AtomicBool,
    store: Arc<SpanStore>,
    counters: Arc<Counters>,
    queue_spans: usize,
    worker: Mutex<Option<JoinHandle<()>>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// How often the worker decides due traces and applies the bounds.
const TICK: Duration = Duration::from_millis(100);
/// How long the worker sleeps when its queue is empty.
const IDLE: Duration = Duration::from_millis(5);
/// How often the size and age bounds are checked.
const BOUNDS_EVERY: Duration = Duration::from_secs(10);

impl Tracing {
    /// Opens the store and starts the worker, which first reads the segments
    /// already there (meanwhile the queue takes spans up to its bound, and
    /// queries see what is read so far).
    pub fn start(config: TracingConfig) -> std::io::Result<Arc<Self>> {
        let store = Arc::new(SpanStore::open_unloaded(config.store)?);
        let (sender, receiver) = mpsc::sync_channel::<Message>(4096);
        let counters = Arc::new(Counters::default());
        let worker = {
            let store = Arc::clone(&store);
            let counters = Arc::clone(&counters);
            let tail = Tail::new(config.tail);
            std::thread::Builder::new()
                .name("sluice-spans".into())
                .spawn(move || work(receiver, tail, &store, &counters))?
        };
        Ok(Arc::new(Tracing {
            sender,
            stopped: std::sync::atomic::AtomicBool::new(false),
            store,
            counters,
            queue_spans: config.queue_spans,
            worker: Mutex::new(Some(worker)),
        }))
    }

    /// Hands spans over; refused when the queue holds `queue_spans` already.
    pub fn submit(&self, spans: Vec<Span>) -> Result<(), Refused> {
        if spans.is_empty() {
            return Ok(());
        }
        self.enqueue(spans.len(), Message::Spans(spans))
    }

    /// Hands over spans the worker builds (`estimate`: about how many, for the
    /// queue's bound); refused like [`Tracing::submit`].
    pub fn submit_deferred(&self, estimate: usize, build: Deferred) -> Result<(), Refused> {
        let count = estimate.max(1);
        self.enqueue(count, Message::Deferred(build, count))
    }

    /// Queues `message` of `count` spans, within the queue's bound.
    fn enqueue(&self, count: usize, message: Message) -> Result<(), Refused> {
        let refuse = |why: Refused| {
            self.counters.queued.fetch_sub(count, Ordering::AcqRel);
            if why == Refused::Busy {
                self.counters
                    .refused_busy
                    .fetch_add(count as u64, Ordering::Relaxed);
            }
            Err(why)
        };
        let queued = self.counters.queued.fetch_add(count, Ordering::AcqRel);
        if queued + count > self.queue_spans && queued > 0 {
            return refuse(Refused::Busy);
        }
        if self.stopped.load(Ordering::Acquire) {
            return refuse(Refused::Stopped);
        }
        match self.sender.try_send(message) {
            Ok(()) => {
                self.counters
                    .received
                    .fetch_add(count as u64, Ordering::Relaxed);
                Ok(())
            }
            Err(TrySendError::Full(_)) => refuse(Refused::Busy),
            Err(TrySendError::Disconnected(_)) => refuse(Refused::Stopped),
        }
    }

    /// Whether the queue has room now (checked before decoding a body, so a
    /// full queue costs the sender a refusal, not the node a decode).
    pub fn has_room(&self) -> bool {
        !self.stopped.load(Ordering::Acquire)
            && self.counters.queued.load(Ordering::Acquire) < self.queue_spans
    }

    /// A copy of every batch of kept traces from now on, for forwarding them
    /// elsewhere; batches beyond `capacity` waiting are dropped (and counted).
    /// The channel closes when the pipeline stops.
    pub fn kept_traces(&self, capacity: usize) -> mpsc::Receiver<Vec<Vec<Span>>> {
        let (sender, receiver) = mpsc::sync_channel(capacity);
        *self.counters.export.lock() = Some(sender);
        receiver
    }

    /// Counts spans an ingest endpoint refused as invalid.
    pub fn count_invalid(&self, spans: u64) {
        self.counters.invalid.fetch_add(spans, Ordering::Relaxed);
    }

    /// Waits until everything submitted before has been through the sampler
    /// (decided traces written; undecided ones still held).
    pub fn flush(&self) {
        if self.stopped.load(Ordering::Acquire) {
            return;
        }
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        if self.sender.send(Message::Flush(done_tx)).is_ok() {
            let _ = done_rx.recv_timeout(Duration::from_secs(30));
        }
    }

    /// The store, for queries.
    pub fn store(&self) -> &SpanStore {
        &self.store
    }

    /// The counters now.
    pub fn counts(&self) -> TracingCounts {
        let (tail, held) = self.counters.tail.lock().clone();
        TracingCounts {
            received: self.counters.received.load(Ordering::Relaxed),
            invalid: self.counters.invalid.load(Ordering::Relaxed),
            refused_busy: self.counters.refused_busy.load(Ordering::Relaxed),
            stored: self.counters.stored.load(Ordering::Relaxed),
            write_errors: self.counters.write_errors.load(Ordering::Relaxed),
            tail,
            held: held as u64,
            queued: self.counters.queued.load(Ordering::Relaxed) as u64,
            export_dropped: self.counters.export_dropped.load(Ordering::Relaxed),
        }
    }

    /// Decides every held trace, writes what is kept, and stops the worker.
    pub fn stop(&self) {
        if self.stopped.swap(true, Ordering::AcqRel) {
            return;
        }
        let _ = self.sender.send(Message::Stop);
        if let Some(worker) = self.worker.lock().take() {
            let _ = worker.join();
        }
        self.counters.export.lock().take();
    }
}

impl Drop for Tracing {
    fn drop(&mut self) {
        self.stop();
    }
}

fn write(store: &SpanStore, counters: &Counters, traces: Vec<Vec<Span>>) {
    if traces.is_empty() {
        return;
    }
    let spans: usize = traces.iter().map(Vec::len).sum();
    if let Some(export) = counters.export.lock().as_ref() {
        if export.try_send(traces.clone()).is_err() {
            counters
                .export_dropped
                .fetch_add(spans as u64, Ordering::Relaxed);
        }
    }
    match store.append(traces) {
        Ok(()) => {
            counters.stored.fetch_add(spans as u64, Ordering::Relaxed);
        }
        Err(error) => {
            counters.write_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%error, spans, "cannot store spans; they are dropped");
        }
    }
}

fn work(receiver: mpsc::Receiver<Message>, mut tail: Tail, store: &SpanStore, counters: &Counters) {
    let started = std::time::Instant::now();
    match store.load_existing() {
        Ok(()) => {
            let stats = store.stats();
            if stats.spans > 0 {
                tracing::info!(
                    spans = stats.spans,
                    seconds = started.elapsed().as_secs_f64(),
                    "span store read"
                );
            }
        }
        Err(error) => {
            tracing::warn!(%error, "cannot read every span segment; the rest is served")
        }
    }
    let mut last_tick = std::time::Instant::now();
    let mut last_bounds = std::time::Instant::now();
    // Kept traces not yet written: written a block at a time, or every tick.
    let mut kept: Vec<Vec<Span>> = Vec::new();
    let mut kept_spans = 0;
    loop {
        // Polled, not waited on: a sender then never has to wake this thread
        // (a system call per request on the gateway's threads); an empty
        // queue costs a 5 ms sleep.
        let message = match receiver.try_recv() {
            Err(TryRecvError::Empty) => {
                std::thread::sleep(IDLE);
                Err(TryRecvError::Empty)
            }
            other => other,
        };
        let now = now_ms();
        let mut flushed = None;
        match message {
            Ok(Message::Spans(spans)) => {
                counters.queued.fetch_sub(spans.len(), Ordering::AcqRel);
                for trace in tail.offer(spans, now) {
                    kept_spans += trace.len();
                    kept.push(trace);
                }
            }
            Ok(Message::Deferred(build, estimate)) => {
                counters.queued.fetch_sub(estimate, Ordering::AcqRel);
                for trace in tail.offer(build(), now) {
                    kept_spans += trace.len();
                    kept.push(trace);
                }
            }
            Ok(Message::Flush(done)) => flushed = Some(done),
            Err(TryRecvError::Empty) => {}
            Ok(Message::Stop) | Err(TryRecvError::Disconnected) => {
                kept.extend(tail.drain(now));
                write(store, counters, kept);
                *counters.tail.lock() = (tail.counts().clone(), tail.held_spans());
                if let Err(error) = store.sync() {
                    tracing::warn!(%error, "cannot sync the span store");
                }
                return;
            }
        }
        let due = last_tick.elapsed() >= TICK || flushed.is_some();
        if due {
            last_tick = std::time::Instant::now();
            kept.extend(tail.tick(now));
            *counters.tail.lock() = (tail.counts().clone(), tail.held_spans());
        }
        if due || kept_spans >= 2048 {
            write(store, counters, std::mem::take(&mut kept));
            kept_spans = 0;
        }
        if let Some(done) = flushed {
            let _ = done.send(());
        }
        if last_bounds.elapsed() >= BOUNDS_EVERY {
            last_bounds = std::time::Instant::now();
            if let Err(error) = store.enforce_bounds(now.saturating_mul(1000)) {
                tracing::warn!(%error, "cannot drop old span segments");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::Endpoint;

    fn span(trace: u128, error: bool) -> Span {
        Span {
            trace_id: format!("{trace:032x}"),
            id: "00000000000000aa".into(),
            parent_id: None,
            name: Some("get /a".into()),
            kind: None,
            timestamp: Some(1_700_000_000_000_000),
            duration: Some(10),
            local_endpoint: Some(Endpoint {
                service_name: Some("a".into()),
                ..Endpoint::default()
            }),
            remote_endpoint: None,
            annotations: Vec::new(),
            tags: if error {
                [("error".to_owned(), "x".to_owned())].into()
            } else {
                Default::default()
            },
            debug: false,
            shared: false,
        }
    }

    #[test]
    fn the_worker_reads_the_old_segments_then_takes_new_spans() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SpanStore::open(StoreConfig::new(dir.path().to_owned())).unwrap();
            store.append(vec![vec![span(1, false)]]).unwrap();
        }
        let mut config = TracingConfig::new(dir.path().to_owned());
        config.tail.window = Duration::from_millis(1);
        let tracing = Tracing::start(config).unwrap();
        tracing.submit(vec![span(2, true)]).unwrap();
        let found = (0..200).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            tracing.flush();
            !tracing.store().is_loading()
                && tracing.store().trace(crate::TraceId::new(2).unwrap()).len() == 1
        });
        assert!(
            found,
            "the new trace was stored: {:?} {:?}",
            tracing.counts(),
            tracing.store().stats()
        );
        assert_eq!(
            tracing.store().trace(crate::TraceId::new(1).unwrap()).len(),
            1
        );
        assert_eq!(tracing.counts().stored, 1);
        tracing.stop();
        // Both segments are read on the next start.
        let store = SpanStore::open(StoreConfig::new(dir.path().to_owned())).unwrap();
        assert_eq!(store.stats().spans, 2);
        assert_eq!(store.stats().segments, 2);
    }
}
