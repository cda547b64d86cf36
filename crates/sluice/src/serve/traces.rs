//! Tracing on a control-plane node: the span pipeline (queue, tail decisions,
//! storage under `<data>/traces`), the gateway's span sink, and the listeners
//! on the standard ports — OTLP/HTTP (`127.0.0.1:4318`) and Zipkin
//! (`127.0.0.1:9411`) — besides the admin address. A standard port already
//! taken is a warning, not a failed start.

use std::net::SocketAddr;
use std::sync::Arc;

use sluice_api::{AppState, Auth};
use sluice_gateway::SpanSink;
use sluice_trace::pipeline::Tracing as Pipeline;

use super::metrics::Counter;
use crate::config::TracingSettings;

/// Hands the gateway's spans to the pipeline, to be built on its worker
/// (dropped, and counted there, when its queue is full: the request path
/// never waits for it).
struct GatewaySpans(Arc<Pipeline>);

impl SpanSink for GatewaySpans {
    fn record(&self, spans: sluice_gateway::RequestSpans) {
        let _ = self.0.submit_deferred(2, Box::new(move || spans.build()));
    }
}

/// A node's tracing.
pub(super) struct Tracing {
    pub(super) pipeline: Arc<Pipeline>,
    /// The standard-port listeners that started: (what, address).
    pub(super) listening: Vec<(&'static str, SocketAddr)>,
    servers: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Tracing {
    /// Opens the span store (off the runtime's threads: it reads every segment).
    pub(super) async fn start(settings: &TracingSettings) -> anyhow::Result<Self> {
        let config = settings.pipeline.clone();
        let dir = config.store.dir.clone();
        let pipeline = tokio::task::spawn_blocking(move || Pipeline::start(config))
            .await?
            .map_err(|e| anyhow::anyhow!("span store in {}: {e}", dir.display()))?;
        Ok(Tracing {
            pipeline,
            listening: Vec::new(),
            servers: Vec::new(),
        })
    }

    /// The gateway's span sink.
    pub(super) fn sink(&self) -> Arc<dyn SpanSink> {
        Arc::new(GatewaySpans(Arc::clone(&self.pipeline)))
    }

    /// Serves the tracing endpoints on the standard ports, until `stop`.
    pub(super) async fn listen(
        &mut self,
        settings: &TracingSettings,
        state: &AppState,
        auth: &Auth,
        stop: &tokio::sync::watch::Receiver<bool>,
    ) {
        for (what, address) in [("OTLP/HTTP", settings.otlp), ("Zipkin", settings.zipkin)] {
            let Some(address) = address else {
                continue;
            };
            let listener = match tokio::net::TcpListener::bind(address).await {
                Ok(listener) => listener,
                Err(error) => {
                    tracing::warn!(
                        %address, %error,
                        "cannot listen for {what} traces there (in use?); they are still taken on the admin address"
                    );
                    eprintln!(
                        "sluice: warning: cannot listen on {address} for {what} traces ({error}); the admin address takes them too"
                    );
                    continue;
                }
            };
            let address = listener.local_addr().unwrap_or(address);
            let app = sluice_api::tracing_router(state.clone(), auth.clone());
            let mut stop = stop.clone();
            let server = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stop.wait_for(|stop| *stop).await;
            });
            self.listening.push((what, address));
            self.servers.push(tokio::spawn(async move { server.await }));
        }
    }

    /// Forwards the kept traces to `url` over OTLP/HTTP protobuf, from a thread
    /// of its own (the pipeline never waits for it: batches beyond 64 waiting
    /// are dropped and counted).
    pub(super) fn export_to(&self, url: reqwest::Url) -> anyhow::Result<()> {
        let batches = self.pipeline.kept_traces(64);
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()?;
        let runtime = tokio::runtime::Handle::current();
        std::thread::Builder::new()
            .name("sluice-export".into())
            .spawn(move || {
                let mut failing = false;
                for traces in batches {
                    let spans: Vec<_> = traces.into_iter().flatten().collect();
                    let body = sluice_trace::otlp::encode_export(&spans);
                    // The request is made inside the runtime (its timeout needs the timer).
                    let sent = runtime.block_on(async {
                        client
                            .post(url.clone())
                            .header("content-type", "application/x-protobuf")
                            .body(body)
                            .send()
                            .await
                    });
                    match sent.map(|r| r.status()) {
                        Ok(status) if status.is_success() => failing = false,
                        outcome => {
                            // Once per run of failures.
                            if !failing {
                                tracing::warn!(%url, ?outcome, "cannot forward kept traces; dropping them until it works");
                            }
                            failing = true;
                        }
                    }
                }
            })?;
        Ok(())
    }

    /// Counters for `/metrics`.
    pub(super) fn counters(&self) -> Vec<Counter> {
        let counter = |read: fn(&sluice_trace::pipeline::TracingCounts) -> u64| {
            let pipeline = Arc::clone(&self.pipeline);
            Box::new(move || read(&pipeline.counts())) as sluice_metrics::prometheus::CounterValue
        };
        vec![
            (
                "sluice_trace_spans_received",
                "Spans taken in (OTLP, Zipkin, the gateway).",
                counter(|c| c.received),
            ),
            (
                "sluice_trace_spans_invalid",
                "Spans refused as invalid.",
                counter(|c| c.invalid),
            ),
            (
                "sluice_trace_spans_refused_busy",
                "Spans refused because the ingest queue was full.",
                counter(|c| c.refused_busy),
            ),
            (
                "sluice_trace_spans_stored",
                "Spans written to the span store.",
                counter(|c| c.stored),
            ),
            (
                "sluice_trace_kept_error",
                "Traces kept because a span failed.",
                counter(|c| c.tail.decided[0]),
            ),
            (
                "sluice_trace_kept_slow",
                "Traces kept because the root was slow.",
                counter(|c| c.tail.decided[1]),
            ),
            (
                "sluice_trace_kept_debug",
                "Traces kept because they were marked debug.",
                counter(|c| c.tail.decided[2]),
            ),
            (
                "sluice_trace_kept_floor",
                "Traces kept by their API's floor.",
                counter(|c| c.tail.decided[3]),
            ),
            (
                "sluice_trace_kept_ratio",
                "Traces kept by the keep ratio.",
                counter(|c| c.tail.decided[4]),
            ),
            (
                "sluice_trace_dropped",
                "Traces dropped by tail decisions.",
                counter(|c| c.tail.decided[5]),
            ),
            (
                "sluice_trace_decided_early",
                "Traces decided before their window ended (memory bound).",
                counter(|c| c.tail.decided_early),
            ),
        ]
    }

    /// Waits for the listeners (told to stop by the node's stop signal), then
    /// decides what is held and writes it.
    pub(super) async fn stop(self, grace: std::time::Duration) {
        for server in self.servers {
            let _ = tokio::time::timeout(grace, server).await;
        }
        let pipeline = self.pipeline;
        let _ = tokio::task::spawn_blocking(move || pipeline.stop()).await;
    }
}
