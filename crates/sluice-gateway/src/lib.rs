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
mod clock;
mod config;
mod ctx;
mod dataplane;
mod error;
mod feed;
mod gateway;
mod head_sampling;
mod limit;
mod observe;
mod outlier;
mod protect;
mod proxy;
mod proxy_body;
mod remote;
mod retry_budget;
mod snapshot;
mod sniff;
mod sources;
mod stages;
mod table;
mod tls;
mod upstream;

pub use config::GatewayConfig;
pub use dataplane::{thread_count, DataPlane};
pub use feed::{FeedError, GatewayFeed};
pub use gateway::Gateway;
pub use observe::{RequestObserver, RequestRecord, RequestSpans, SpanSink};
pub use protect::{Policies, Reason, POLICY_KINDS};
pub use proxy_body::ProxyBody;
pub use remote::RemoteError;
pub use snapshot::Snapshot;
pub use sources::{EndpointInfo, Instances, Routes};
pub use table::Endpoint;
pub use tls::{server_config as tls_server_config, CertificateConfig, TlsError};
