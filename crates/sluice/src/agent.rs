//! `sluice agent`: runs on each host and pushes its host metrics (CPU, memory,
//! load, network, disk from `/proc`) to the control plane every interval, failing
//! over between control URLs. Later issues give it releases, cron and logs.

use std::time::Duration;

use clap::Args;
use serde_json::json;
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
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let control: Vec<String> = args
        .control
        .iter()
        .map(|url| url.trim_end_matches('/').to_owned())
        .collect();
    println!("Sluice agent is up ({})", env!("CARGO_PKG_VERSION"));
    println!("  host       {host}");
    println!("  control    {}", control.join(", "));
    use std::io::Write;
    let _ = std::io::stdout().flush();
    // The first sample only primes the rates.
    sampler.sample();
    let mut current = 0;
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
        for _ in 0..control.len() {
            let url = format!(
                "{}/v1/hosts/{host}/metrics",
                control[current % control.len()]
            );
            let mut request = http.post(&url).json(&body);
            if let Some(token) = &args.token {
                request = request.bearer_auth(token);
            }
            match request.send().await {
                Ok(response) if response.status().is_success() => break,
                Ok(response) => {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    tracing::warn!(url, %status, text, "the control plane refused host metrics");
                    break;
                }
                Err(error) => {
                    tracing::warn!(url, %error, "control plane unreachable; trying the next one");
                    current += 1;
                }
            }
        }
    }
}
