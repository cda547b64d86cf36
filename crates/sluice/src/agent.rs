//! `sluice agent`: runs on each host and pushes its host metrics (CPU, memory,
//! load, network, disk from `/proc`) to the control plane every interval, failing
//! over between control URLs. Later issues give it releases, cron and logs.

use std::time::Duration;

use clap::Args;
use serde_json::json;
use sluice_client::{ClientError, ControlPlane, Method};
use sluice_metrics::host::{hostname, HostSampler};

/// Flags of `sluice agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Control-plane URLs, comma-separated.
    #[arg(long, env = "SLUICE_CONTROL", value_delimiter = ',', required = true)]
    control: Vec<String>,
    /// Bearer token (a write token), when the control plane requires one.
    #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// This host's name in the series [default: the kernel's host name].
    #[arg(long, env = "SLUICE_HOST")]
    host: Option<String>,
    /// How often to sample and push.
    #[arg(long, env = "SLUICE_AGENT_INTERVAL", default_value = "10s")]
    interval: String,
}

/// Runs the agent until SIGINT or SIGTERM.
pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let interval = sluice_model::duration_text::parse(&args.interval)
        .map_err(|e| anyhow::anyhow!("--interval: {e}"))?;
    if interval < Duration::from_secs(1) {
        anyhow::bail!("--interval must be at least 1s");
    }
    let host = args.host.unwrap_or_else(hostname);
    let sampler = HostSampler::new(host.clone());
    let control = ControlPlane::new(args.control, args.token, Duration::from_secs(10))?;
    println!("Sluice agent is up ({})", env!("CARGO_PKG_VERSION"));
    println!("  host       {host}");
    println!("  control    {}", control.nodes().join(", "));
    use std::io::Write;
    let _ = std::io::stdout().flush();
    // The first sample only primes the rates.
    sampler.sample();
    let path = format!("/v1/hosts/{host}/metrics");
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    let stop = crate::serve::shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = &mut stop => return Ok(()),
        }
        let values = sampler.sample();
        let body = json!({ "values": values });
        match control.request(Method::POST, &path, Some(&body)).await {
            Ok(_) => {}
            Err(error @ ClientError::Api { .. }) => {
                tracing::warn!(%error, "the control plane refused host metrics");
            }
            Err(error) => tracing::warn!(%error, "no control-plane node took host metrics"),
        }
    }
}
