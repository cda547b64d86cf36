//! Settings of `sluice gateway`, the standalone gateway: which control plane to
//! follow, where to listen and keep its last snapshot, how often to push metrics
//! (flags, then `SLUICE_*` variables, then the config file).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use serde::Deserialize;

use super::{duration, gateway_threads};

/// Flags of `sluice gateway` (a standalone data-plane node).
#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// Config file (TOML): keys `control`, `gateway`, `data`, `token`, `gateway_header_timeout`, `gateway_threads`, `metrics_interval`.
    #[arg(long, env = "SLUICE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Control-plane URLs, comma-separated; the gateway fails over between them.
    #[arg(long, env = "SLUICE_CONTROL")]
    pub control: Option<String>,
    /// Gateway address [default: 127.0.0.1:7780].
    #[arg(long, env = "SLUICE_GATEWAY")]
    pub gateway: Option<String>,
    /// Where the gateway keeps its last snapshot [default: ./sluice-gateway-data].
    #[arg(long, env = "SLUICE_DATA")]
    pub data: Option<PathBuf>,
    /// Bearer token for the control plane, when it requires one.
    #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// How long a client may take to send a request's headers [default: 10s].
    #[arg(long, env = "SLUICE_GATEWAY_HEADER_TIMEOUT")]
    pub gateway_header_timeout: Option<String>,
    /// Gateway threads, each with its own runtime, listener and upstream connections [default: 0, one per core].
    #[arg(long, env = "SLUICE_GATEWAY_THREADS")]
    pub gateway_threads: Option<usize>,
    /// How often the gateway pushes its request metrics to the control plane [default: 10s].
    #[arg(long, env = "SLUICE_METRICS_INTERVAL")]
    pub metrics_interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GatewayFile {
    control: Option<String>,
    gateway: Option<String>,
    data: Option<PathBuf>,
    token: Option<String>,
    gateway_header_timeout: Option<String>,
    gateway_threads: Option<usize>,
    metrics_interval: Option<String>,
}

/// The settings of a standalone gateway.
#[derive(Debug)]
pub struct StandaloneGatewayConfig {
    /// Control-plane URLs.
    pub control: Vec<String>,
    /// Listen address.
    pub listen: SocketAddr,
    /// Snapshot directory.
    pub data: PathBuf,
    /// Token for the control plane.
    pub token: Option<String>,
    /// Listener settings.
    pub gateway: sluice_gateway::GatewayConfig,
    /// How often request metrics are pushed.
    pub metrics_interval: Duration,
}

impl GatewayArgs {
    /// Merges flags, environment, the config file and defaults.
    pub fn resolve(self) -> anyhow::Result<StandaloneGatewayConfig> {
        let file: GatewayFile = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("config file {}", path.display()))?
            }
            None => GatewayFile::default(),
        };
        let control_text = self.control.or(file.control).context(
            "--control is required: the control-plane URL(s), such as http://127.0.0.1:7700",
        )?;
        let control: Vec<String> = control_text
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(str::to_owned)
            .collect();
        for url in &control {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("control URL {url:?} must start with http:// or https://");
            }
        }
        if control.is_empty() {
            bail!("--control holds no URL");
        }
        let listen_text = self
            .gateway
            .or(file.gateway)
            .unwrap_or_else(|| "127.0.0.1:7780".to_owned());
        let listen = listen_text
            .parse()
            .with_context(|| format!("gateway address {listen_text:?} is not IP:PORT"))?;
        let mut gateway = sluice_gateway::GatewayConfig::default();
        gateway.header_read_timeout = duration(
            "gateway_header_timeout",
            self.gateway_header_timeout.or(file.gateway_header_timeout),
            gateway.header_read_timeout,
        )?;
        gateway.threads = gateway_threads(self.gateway_threads.or(file.gateway_threads))?;
        Ok(StandaloneGatewayConfig {
            control,
            listen,
            data: self
                .data
                .or(file.data)
                .unwrap_or_else(|| PathBuf::from("./sluice-gateway-data")),
            token: self.token.or(file.token),
            gateway,
            metrics_interval: {
                let interval = duration(
                    "metrics_interval",
                    self.metrics_interval.or(file.metrics_interval),
                    Duration::from_secs(10),
                )?;
                if interval < Duration::from_secs(1) || interval > Duration::from_secs(3600) {
                    bail!("metrics_interval must be within 1s..=1h");
                }
                interval
            },
        })
    }
}
