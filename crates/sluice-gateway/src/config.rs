//! The gateway's listener settings.

use std::sync::Arc;
use std::time::Duration;

use crate::observe::{RequestObserver, SpanSink};

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
    /// Given the spans of sampled requests, when set.
    pub spans: Option<Arc<dyn SpanSink>>,
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
            .field("spans", &self.spans.is_some())
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
            spans: None,
            threads: 0,
        }
    }
}
