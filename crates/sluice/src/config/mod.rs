//! Settings of the server roles: command-line flags, environment variables and the
//! config file, in that order of precedence, over defaults that work on one machine.
//!
//! Every flag has an environment variable (`SLUICE_<FLAG>`) and a config-file key:
//!
//! ```toml
//! data = "./sluice-data"          # --data,  SLUICE_DATA
//! store = "redb://./sluice-data"  # --store, SLUICE_STORE (default: redb://<data>)
//! admin = "127.0.0.1:7700"        # --admin, SLUICE_ADMIN
//! gateway = "127.0.0.1:7780"      # --gateway, SLUICE_GATEWAY (up: on by default)
//! gateway_header_timeout = "10s"  # --gateway-header-timeout, SLUICE_GATEWAY_HEADER_TIMEOUT
//! gateway_threads = 0             # --gateway-threads, SLUICE_GATEWAY_THREADS (0: one per core)
//!
//! [gateway_tls]                   # --gateway-tls ADDR --tls-cert PEM --tls-key PEM
//! listen = "127.0.0.1:7743"
//! [[gateway_tls.certificates]]    # chosen by SNI; the first one is the default
//! hosts = ["api.example.com", "*.example.com"]
//! cert = "/etc/sluice/example.pem"
//! key = "/etc/sluice/example.key"
//! body_limit = 1048576            # largest request body, bytes
//! secrets_key_file = "/etc/sluice/secrets.key"  # --secrets-key-file, SLUICE_SECRETS_KEY_FILE:
//!                                 # the key secret config items are sealed with (default, with
//!                                 # the embedded store: <data>/secrets.key, made on first start)
//!
//! [metrics]
//! dir = "./sluice-data/metrics"   # --metrics-dir, SLUICE_METRICS_DIR (default: <data>/metrics)
//! tiers = "10s:6h,1m:7d,1h:90d"   # --metrics-tiers, SLUICE_METRICS_TIERS
//! max_series = 10000              # --metrics-max-series, SLUICE_METRICS_MAX_SERIES
//! max_cells = 10000               # gateway (namespace, service, API, instance) cells recorded
//! max_label_sets = 1000           # label sets per business metric and namespace
//! host = true                     # sample this host's CPU, memory, load, network, disk
//! gateway = true                  # --metrics-gateway, SLUICE_METRICS_GATEWAY: record every request
//!
//! [tracing]                       # --tracing false, SLUICE_TRACING: no span ingest or storage
//! dir = "./sluice-data/traces"    # spans on disk (default: <data>/traces)
//! max_mib = 1024                  # most disk used by spans, oldest dropped first
//! max_age = "7d"                  # oldest span kept
//! otlp = "127.0.0.1:4318"         # --tracing-otlp, SLUICE_TRACING_OTLP: OTLP/HTTP port, or "off"
//! zipkin = "127.0.0.1:9411"       # --tracing-zipkin, SLUICE_TRACING_ZIPKIN: Zipkin API port, or "off"
//! window = "5s"                   # --tracing-window: spans held before a trace is decided
//! keep_ratio = 0.1                # --tracing-keep-ratio: share of ordinary traces kept
//! slow = "p98"                    # --tracing-slow: kept when the root is slower (p98 | off | 300ms)
//! floor_per_second = 1            # traces kept per API per second whatever the ratio
//! max_held_spans = 500000         # spans held undecided at most (older traces decided early)
//! max_queued_spans = 200000       # spans waiting for the sampler at most (then 503 + Retry-After)
//! export = "http://jaeger:4318/v1/traces"  # --trace-export: also forward kept traces over OTLP
//!
//! [registry]
//! heartbeat_interval = "5s"       # --heartbeat-interval, SLUICE_HEARTBEAT_INTERVAL
//! unhealthy_after = "15s"         # --unhealthy-after,    SLUICE_UNHEALTHY_AFTER
//! remove_after = "30s"            # --remove-after,       SLUICE_REMOVE_AFTER
//!
//! [[tokens]]                      # optional; with any, every request needs one
//! name = "ci"
//! token = "a-secret-of-16-chars-or-more"
//! role = "write"                  # read | write | admin
//! namespaces = ["default"]        # or ["*"]
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use serde::Deserialize;
use sluice_api::TokenConfig;
use sluice_model::duration_text;
use sluice_registry::RegistryConfig;

mod standalone;
pub use standalone::{GatewayArgs, StandaloneGatewayConfig};

/// Flags of `sluice up` and `sluice server`.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Config file (TOML).
    #[arg(long, env = "SLUICE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory of the embedded store [default: ./sluice-data].
    #[arg(long, env = "SLUICE_DATA")]
    pub data: Option<PathBuf>,
    /// Store URL [default: redb://<data>]: redb://DIR, etcd://H:P[,H:P...][/PREFIX], memory://.
    #[arg(long, env = "SLUICE_STORE")]
    pub store: Option<String>,
    /// Key that secret config items are sealed with: 64 hex digits in a file (the same
    /// file on every node) [default with the embedded store: <data>/secrets.key, made on
    /// first start].
    #[arg(long, env = "SLUICE_SECRETS_KEY_FILE")]
    pub secrets_key_file: Option<PathBuf>,
    /// Admin API address [default: 127.0.0.1:7700].
    #[arg(long, env = "SLUICE_ADMIN")]
    pub admin: Option<String>,
    /// Gateway address [default: 127.0.0.1:7780 for `up`, none for `server`].
    #[arg(long, env = "SLUICE_GATEWAY")]
    pub gateway: Option<String>,
    /// How long a gateway client may take to send a request's headers [default: 10s].
    #[arg(long, env = "SLUICE_GATEWAY_HEADER_TIMEOUT")]
    pub gateway_header_timeout: Option<String>,
    /// Gateway threads, each with its own runtime, listener and upstream connections [default: 0, one per core].
    #[arg(long, env = "SLUICE_GATEWAY_THREADS")]
    pub gateway_threads: Option<usize>,
    /// Address of the gateway's TLS listener (needs --tls-cert and --tls-key, or certificates in the config file).
    #[arg(long, env = "SLUICE_GATEWAY_TLS")]
    pub gateway_tls: Option<String>,
    /// PEM certificate chain for the TLS listener (served for every host).
    #[arg(long, env = "SLUICE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for the TLS listener.
    #[arg(long, env = "SLUICE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// How often ephemeral instances should heartbeat [default: 5s].
    #[arg(long, env = "SLUICE_HEARTBEAT_INTERVAL")]
    pub heartbeat_interval: Option<String>,
    /// Ephemeral instances without a heartbeat this long are unhealthy [default: 15s].
    #[arg(long, env = "SLUICE_UNHEALTHY_AFTER")]
    pub unhealthy_after: Option<String>,
    /// Ephemeral instances without a heartbeat this long are removed [default: 30s].
    #[arg(long, env = "SLUICE_REMOVE_AFTER")]
    pub remove_after: Option<String>,
    /// Where metrics series files go [default: <data>/metrics].
    #[arg(long, env = "SLUICE_METRICS_DIR")]
    pub metrics_dir: Option<PathBuf>,
    /// Metrics tiers, STEP:RETENTION,... [default: 10s:6h,1m:7d,1h:90d].
    #[arg(long, env = "SLUICE_METRICS_TIERS")]
    pub metrics_tiers: Option<String>,
    /// Most metrics series kept [default: 10000].
    #[arg(long, env = "SLUICE_METRICS_MAX_SERIES")]
    pub metrics_max_series: Option<usize>,
    /// Record every gateway request's metrics [default: true].
    #[arg(long, env = "SLUICE_METRICS_GATEWAY")]
    pub metrics_gateway: Option<bool>,
    /// Take in, keep and answer traces [default: true].
    #[arg(long, env = "SLUICE_TRACING")]
    pub tracing: Option<bool>,
    /// OTLP/HTTP listener (POST /v1/traces), or off [default: 127.0.0.1:4318].
    #[arg(long, env = "SLUICE_TRACING_OTLP")]
    pub tracing_otlp: Option<String>,
    /// Zipkin API listener (/api/v2/...), or off [default: 127.0.0.1:9411].
    #[arg(long, env = "SLUICE_TRACING_ZIPKIN")]
    pub tracing_zipkin: Option<String>,
    /// How long a trace's spans are held before it is kept or dropped [default: 5s].
    #[arg(long, env = "SLUICE_TRACING_WINDOW")]
    pub tracing_window: Option<String>,
    /// Share of ordinary traces kept, 0 to 1 (failed and slow ones always are) [default: 0.1].
    #[arg(long, env = "SLUICE_TRACING_KEEP_RATIO")]
    pub tracing_keep_ratio: Option<f64>,
    /// When a trace counts as slow: p98 (its API's), off, or a duration [default: p98].
    #[arg(long, env = "SLUICE_TRACING_SLOW")]
    pub tracing_slow: Option<String>,
    /// Also forward the traces kept, over OTLP/HTTP protobuf, to this URL
    /// (Jaeger's or Tempo's `http://HOST:4318/v1/traces`).
    #[arg(long, env = "SLUICE_TRACE_EXPORT")]
    pub trace_export: Option<String>,
}

/// `[tracing]` in the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTracing {
    enabled: Option<bool>,
    dir: Option<PathBuf>,
    max_mib: Option<u64>,
    max_age: Option<String>,
    otlp: Option<String>,
    zipkin: Option<String>,
    window: Option<String>,
    keep_ratio: Option<f64>,
    slow: Option<String>,
    floor_per_second: Option<u32>,
    max_held_spans: Option<usize>,
    max_queued_spans: Option<usize>,
    export: Option<String>,
}

/// Tracing settings in force (`None` in [`ServerConfig`] when turned off).
#[derive(Debug, Clone)]
pub struct TracingSettings {
    /// The pipeline: storage and tail decisions.
    pub pipeline: sluice_trace::pipeline::TracingConfig,
    /// The OTLP/HTTP listener.
    pub otlp: Option<SocketAddr>,
    /// The Zipkin API listener.
    pub zipkin: Option<SocketAddr>,
    /// Where kept traces are forwarded (OTLP/HTTP), when anywhere.
    pub export: Option<reqwest::Url>,
}

/// An optional listener: `off` or `IP:PORT`.
fn listener(name: &str, text: &str) -> anyhow::Result<Option<SocketAddr>> {
    if text.eq_ignore_ascii_case("off") || text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .with_context(|| format!("{name} {text:?} is not IP:PORT or off"))
}

impl FileTracing {
    /// Merges `args` over the file and defaults.
    fn resolve(
        self,
        args: &mut ServerArgs,
        data: &Path,
    ) -> anyhow::Result<Option<TracingSettings>> {
        if !args.tracing.or(self.enabled).unwrap_or(true) {
            return Ok(None);
        }
        let mut pipeline = sluice_trace::pipeline::TracingConfig::new(
            self.dir.unwrap_or_else(|| data.join("traces")),
        );
        let mib = self.max_mib.unwrap_or(1024);
        if !(16..=16 * 1024 * 1024).contains(&mib) {
            bail!("tracing max_mib {mib} is outside 16..=16777216");
        }
        pipeline.store.max_bytes = mib << 20;
        pipeline.store.max_age = duration("tracing max_age", self.max_age, pipeline.store.max_age)?;
        if pipeline.store.max_age < Duration::from_secs(60) {
            bail!("tracing max_age must be at least 1m");
        }
        let tail = &mut pipeline.tail;
        tail.window = duration(
            "tracing window",
            args.tracing_window.take().or(self.window),
            tail.window,
        )?;
        if tail.window > Duration::from_secs(300) {
            bail!("tracing window must be at most 5m");
        }
        tail.keep_ratio = args
            .tracing_keep_ratio
            .or(self.keep_ratio)
            .unwrap_or(tail.keep_ratio);
        if !(0.0..=1.0).contains(&tail.keep_ratio) {
            bail!("tracing keep_ratio {} is outside 0..=1", tail.keep_ratio);
        }
        if let Some(slow) = args.tracing_slow.take().or(self.slow) {
            tail.slow =
                match slow.trim() {
                    "p98" => sluice_trace::tail::Slow::P98,
                    "off" => sluice_trace::tail::Slow::Off,
                    text => sluice_trace::tail::Slow::Above(duration_text::parse(text).map_err(
                        |e| anyhow::anyhow!("tracing slow {text:?}: p98, off or a duration ({e})"),
                    )?),
                };
        }
        tail.floor_per_second = self.floor_per_second.unwrap_or(tail.floor_per_second);
        if tail.floor_per_second > 1000 {
            bail!(
                "tracing floor_per_second {} is over 1000",
                tail.floor_per_second
            );
        }
        tail.max_spans = self.max_held_spans.unwrap_or(tail.max_spans);
        if !(1000..=100_000_000).contains(&tail.max_spans) {
            bail!(
                "tracing max_held_spans {} is outside 1000..=100000000",
                tail.max_spans
            );
        }
        pipeline.queue_spans = self.max_queued_spans.unwrap_or(pipeline.queue_spans);
        if !(1000..=100_000_000).contains(&pipeline.queue_spans) {
            bail!(
                "tracing max_queued_spans {} is outside 1000..=100000000",
                pipeline.queue_spans
            );
        }
        let otlp = args
            .tracing_otlp
            .take()
            .or(self.otlp)
            .unwrap_or_else(|| "127.0.0.1:4318".into());
        let zipkin = args
            .tracing_zipkin
            .take()
            .or(self.zipkin)
            .unwrap_or_else(|| "127.0.0.1:9411".into());
        let export = match args.trace_export.take().or(self.export) {
            None => None,
            Some(text) => {
                let url = reqwest::Url::parse(&text)
                    .with_context(|| format!("trace export {text:?} is not a URL"))?;
                if !matches!(url.scheme(), "http" | "https") {
                    bail!("trace export {text:?} is not an http or https URL");
                }
                Some(url)
            }
        };
        Ok(Some(TracingSettings {
            pipeline,
            otlp: listener("tracing otlp", &otlp)?,
            zipkin: listener("tracing zipkin", &zipkin)?,
            export,
        }))
    }
}

/// `[gateway_tls]` in the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTls {
    listen: Option<String>,
    #[serde(default)]
    certificates: Vec<sluice_gateway::CertificateConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    gateway_tls: FileTls,
    data: Option<PathBuf>,
    store: Option<String>,
    secrets_key_file: Option<PathBuf>,
    admin: Option<String>,
    gateway: Option<String>,
    gateway_header_timeout: Option<String>,
    gateway_threads: Option<usize>,
    body_limit: Option<usize>,
    #[serde(default)]
    registry: FileRegistry,
    #[serde(default)]
    metrics: FileMetrics,
    #[serde(default)]
    tracing: FileTracing,
    #[serde(default)]
    tokens: Vec<TokenConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMetrics {
    dir: Option<PathBuf>,
    tiers: Option<String>,
    max_series: Option<usize>,
    max_cells: Option<usize>,
    max_label_sets: Option<usize>,
    host: Option<bool>,
    gateway: Option<bool>,
}

/// Metrics settings in force.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// Series files.
    pub dir: PathBuf,
    /// Tiers.
    pub tiers: Vec<sluice_metrics::rrd::Tier>,
    /// Most series.
    pub max_series: usize,
    /// Most gateway cells.
    pub max_cells: usize,
    /// Most label sets per business metric and namespace.
    pub max_label_sets: usize,
    /// Sample this host.
    pub host: bool,
    /// Record gateway requests.
    pub gateway: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRegistry {
    heartbeat_interval: Option<String>,
    unhealthy_after: Option<String>,
    remove_after: Option<String>,
}

/// The settings in force.
#[derive(Debug)]
pub struct ServerConfig {
    /// Store URL.
    pub store: String,
    /// Admin API address.
    pub admin: SocketAddr,
    /// Gateway address, when this node runs the gateway.
    pub gateway: Option<SocketAddr>,
    /// Gateway listener settings.
    pub gateway_config: sluice_gateway::GatewayConfig,
    /// The gateway's TLS listener and its certificates.
    pub gateway_tls: Option<(SocketAddr, Vec<sluice_gateway::CertificateConfig>)>,
    /// Largest request body.
    pub body_limit: usize,
    /// Naming-service timings.
    pub registry: RegistryConfig,
    /// Bearer tokens.
    pub tokens: Vec<TokenConfig>,
    /// Metrics.
    pub metrics: MetricsConfig,
    /// Tracing, unless turned off.
    pub tracing: Option<TracingSettings>,
    /// The secrets key file, and whether to make it when missing.
    pub secrets_key: Option<(PathBuf, bool)>,
}

fn duration(name: &str, value: Option<String>, default: Duration) -> anyhow::Result<Duration> {
    match value {
        None => Ok(default),
        Some(text) => duration_text::parse(&text).map_err(|e| anyhow::anyhow!("{name}: {e}")),
    }
}

impl ServerArgs {
    /// Merges flags, environment, the config file and defaults.
    pub fn resolve(mut self, default_gateway: Option<&str>) -> anyhow::Result<ServerConfig> {
        let mut file = match &self.config {
            Some(path) => load(path)?,
            None => FileConfig::default(),
        };
        let data = self
            .data
            .take()
            .or(file.data.take())
            .unwrap_or_else(|| PathBuf::from("./sluice-data"));
        let tracing = std::mem::take(&mut file.tracing).resolve(&mut self, &data)?;
        let store = self
            .store
            .or(file.store)
            .unwrap_or_else(|| format!("redb://{}", data.display()));
        // A key made on first start suits one node; nodes sharing etcd need one file.
        let secrets_key = match self.secrets_key_file.or(file.secrets_key_file) {
            Some(path) => Some((path, false)),
            None if store.starts_with("redb://") => Some((data.join("secrets.key"), true)),
            None => None,
        };
        let gateway = match self
            .gateway
            .or(file.gateway)
            .or(default_gateway.map(str::to_owned))
        {
            Some(text) => Some(
                text.parse::<SocketAddr>()
                    .with_context(|| format!("gateway address {text:?} is not IP:PORT"))?,
            ),
            None => None,
        };
        let admin_text = self
            .admin
            .or(file.admin)
            .unwrap_or_else(|| "127.0.0.1:7700".to_owned());
        let admin: SocketAddr = admin_text
            .parse()
            .with_context(|| format!("admin address {admin_text:?} is not IP:PORT"))?;
        let defaults = RegistryConfig::default();
        let registry = RegistryConfig {
            heartbeat_interval: duration(
                "heartbeat_interval",
                self.heartbeat_interval.or(file.registry.heartbeat_interval),
                defaults.heartbeat_interval,
            )?,
            unhealthy_after: duration(
                "unhealthy_after",
                self.unhealthy_after.or(file.registry.unhealthy_after),
                defaults.unhealthy_after,
            )?,
            remove_after: duration(
                "remove_after",
                self.remove_after.or(file.registry.remove_after),
                defaults.remove_after,
            )?,
        };
        registry
            .validate()
            .map_err(|e| anyhow::anyhow!("registry settings: {e}"))?;
        let body_limit = file.body_limit.unwrap_or(sluice_api::DEFAULT_BODY_LIMIT);
        if !(1024..=64 * 1024 * 1024).contains(&body_limit) {
            bail!("body_limit {body_limit} is outside 1024..=67108864 bytes");
        }
        let mut gateway_config = sluice_gateway::GatewayConfig::default();
        gateway_config.header_read_timeout = duration(
            "gateway_header_timeout",
            self.gateway_header_timeout.or(file.gateway_header_timeout),
            gateway_config.header_read_timeout,
        )?;
        gateway_config.threads = gateway_threads(self.gateway_threads.or(file.gateway_threads))?;
        let gateway_tls = match self.gateway_tls.or(file.gateway_tls.listen) {
            None => None,
            Some(text) => {
                let address: SocketAddr = text
                    .parse()
                    .with_context(|| format!("gateway TLS address {text:?} is not IP:PORT"))?;
                let mut certificates = file.gateway_tls.certificates;
                if let (Some(cert), Some(key)) = (self.tls_cert, self.tls_key) {
                    certificates.insert(
                        0,
                        sluice_gateway::CertificateConfig {
                            hosts: Vec::new(),
                            cert,
                            key,
                        },
                    );
                }
                if certificates.is_empty() {
                    bail!("the gateway TLS listener needs --tls-cert and --tls-key, or [[gateway_tls.certificates]] in the config file");
                }
                Some((address, certificates))
            }
        };
        let tiers = match self.metrics_tiers.or(file.metrics.tiers) {
            Some(text) => sluice_metrics::rrd::parse_tiers(&text)
                .map_err(|e| anyhow::anyhow!("metrics tiers {text:?}: {e}"))?,
            None => sluice_metrics::rrd::default_tiers(),
        };
        let bounded = |name: &str, value: Option<usize>, default: usize| -> anyhow::Result<usize> {
            let value = value.unwrap_or(default);
            if !(1..=10_000_000).contains(&value) {
                bail!("metrics {name} {value} is outside 1..=10000000");
            }
            Ok(value)
        };
        let metrics = MetricsConfig {
            dir: self
                .metrics_dir
                .or(file.metrics.dir)
                .unwrap_or_else(|| data.join("metrics")),
            tiers,
            max_series: bounded(
                "max_series",
                self.metrics_max_series.or(file.metrics.max_series),
                10_000,
            )?,
            max_cells: bounded("max_cells", file.metrics.max_cells, 10_000)?,
            max_label_sets: bounded("max_label_sets", file.metrics.max_label_sets, 1_000)?,
            host: file.metrics.host.unwrap_or(true),
            gateway: self
                .metrics_gateway
                .or(file.metrics.gateway)
                .unwrap_or(true),
        };
        Ok(ServerConfig {
            store,
            admin,
            gateway,
            gateway_config,
            gateway_tls,
            body_limit,
            registry,
            tokens: file.tokens,
            metrics,
            tracing,
            secrets_key,
        })
    }
}

fn load(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config file {}", path.display()))
}

/// Most gateway threads accepted (far above any core count this runs on).
const MAX_GATEWAY_THREADS: usize = 1024;

/// The `gateway_threads` setting, checked: 0 (one per core) up to [`MAX_GATEWAY_THREADS`].
fn gateway_threads(value: Option<usize>) -> anyhow::Result<usize> {
    let threads = value.unwrap_or(0);
    if threads > MAX_GATEWAY_THREADS {
        bail!("gateway_threads {threads} is over {MAX_GATEWAY_THREADS} (0 means one per core)");
    }
    Ok(threads)
}
