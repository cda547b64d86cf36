//! `sluice agent`: runs on each host and pushes its host metrics (CPU, memory,
//! load, network, disk from `/proc`) to the control plane every interval, failing
//! over between control URLs; and keeps the host's config cache ([`configs`]):
//! the items its services use, in files and on a local address, served also
//! while no control node answers. Later issues give it releases, cron and logs.

pub mod configs;

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
    /// Config items to follow and cache: NS/GROUP/KEY, comma-separated.
    #[arg(long = "config", env = "SLUICE_AGENT_CONFIG", value_delimiter = ',')]
    configs: Vec<String>,
    /// Where the cache lives (files at DIR/configs/NS/GROUP/KEY).
    #[arg(long, env = "SLUICE_AGENT_DIR", default_value = "./sluice-agent")]
    dir: std::path::PathBuf,
    /// The local config API (same read and watch API as the control plane), or `off`.
    #[arg(
        long,
        env = "SLUICE_AGENT_CONFIG_LISTEN",
        default_value = "127.0.0.1:7790"
    )]
    config_listen: String,
    /// This host's labels for gray rules: k=v,k2=v2.
    #[arg(long, env = "SLUICE_AGENT_LABELS", default_value = "")]
    labels: String,
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
    let config_task = start_configs(
        &args.configs,
        &args.dir,
        &args.config_listen,
        &args.labels,
        &host,
        ControlPlane::new(
            args.control.clone(),
            args.token.clone(),
            Duration::from_secs(90),
        )?,
    )
    .await?;
    let control = ControlPlane::new(args.control, args.token, Duration::from_secs(10))?;
    println!("Sluice agent is up ({})", env!("CARGO_PKG_VERSION"));
    println!("  host       {host}");
    println!("  control    {}", control.nodes().join(", "));
    if let Some((address, cached)) = &config_task.summary {
        println!(
            "  configs    {} followed ({cached} cached) in {}; local API http://{address}",
            args.configs.len(),
            args.dir.join("configs").display()
        );
    }
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
            () = &mut stop => {
                config_task.stop();
                return Ok(());
            }
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

/// The config cache's tasks (follower and local server), stopped with the agent.
struct ConfigTasks {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    summary: Option<(std::net::SocketAddr, usize)>,
}

impl ConfigTasks {
    fn stop(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn start_configs(
    items: &[String],
    dir: &std::path::Path,
    listen: &str,
    labels: &str,
    host: &str,
    control: ControlPlane,
) -> anyhow::Result<ConfigTasks> {
    if items.is_empty() {
        return Ok(ConfigTasks {
            tasks: Vec::new(),
            summary: None,
        });
    }
    let items = items
        .iter()
        .map(|text| {
            sluice_config::ItemPath::parse(text).map_err(|e| anyhow::anyhow!("--config: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    sluice_config::ClientInfo::parse_labels(labels)
        .map_err(|e| anyhow::anyhow!("--labels: {e}"))?;
    let cache = configs::ConfigCache::load(dir, items);
    let mut tasks = Vec::new();
    let mut summary = None;
    if listen != "off" {
        let address: std::net::SocketAddr = listen
            .parse()
            .map_err(|_| anyhow::anyhow!("--config-listen {listen:?} is not IP:PORT or off"))?;
        let listener = configs::bind(address).await?;
        summary = Some((listener.local_addr()?, cache.cached()));
        let served = std::sync::Arc::clone(&cache);
        tasks.push(tokio::spawn(async move {
            if let Err(error) = configs::serve(served, listener).await {
                tracing::error!(%error, "the agent's config API stopped");
            }
        }));
    }
    let identity = configs::Identity {
        labels: if labels.is_empty() {
            String::new()
        } else {
            format!("labels={labels}")
        },
        client_id: host.to_owned(),
    };
    tasks.push(tokio::spawn(configs::follow(cache, control, identity)));
    Ok(ConfigTasks { tasks, summary })
}
