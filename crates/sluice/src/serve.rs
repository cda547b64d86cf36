//! The server roles: `sluice up` (everything on one machine, embedded store) and
//! `sluice server` (a control-plane node, usually one of several on etcd).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sluice_api::{AppState, Auth, Kinds, MetricsHandle, Resources};
use sluice_gateway::{RequestObserver, RequestRecord};
use sluice_metrics::custom::CustomMetrics;
use sluice_metrics::host::{AgentMetrics, HostSampler};
use sluice_metrics::prometheus::Exposition;
use sluice_metrics::recorder::{Recorder, RequestSample, StepSource};
use sluice_metrics::{Db, DbConfig};
use sluice_registry::Registry;

use crate::config::ServerConfig;

/// How long in-flight requests (blocking queries among them) get after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Which role is starting, for what it prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `sluice up`
    Up,
    /// `sluice server`
    Server,
}

/// Hands the gateway's answered requests to the metrics recorder.
struct GatewayRecorder(Arc<Recorder>);

impl RequestObserver for GatewayRecorder {
    fn on_response(&self, record: &RequestRecord<'_>) {
        let (namespace, route) = record.route.unwrap_or(("", ""));
        self.0.record(&RequestSample {
            namespace,
            route,
            api: record.api.unwrap_or(""),
            service: record.service.map_or("", |(_, service)| service),
            instance: record.instance.unwrap_or(""),
            status: record.status,
            latency: record.latency,
            rejected: record.rejected.map(sluice_gateway::Reason::as_str),
        });
    }
}

/// Runs the control plane until SIGINT or SIGTERM.
pub async fn run(config: ServerConfig, role: Role) -> anyhow::Result<()> {
    let auth = Auth::new(config.tokens.clone()).map_err(|e| anyhow::anyhow!("tokens: {e}"))?;
    let store = sluice_store::open(&config.store).await?;
    let registry = Registry::start(Arc::clone(&store), config.registry.clone())
        .map_err(|e| anyhow::anyhow!(e))?;
    let resources = Resources::start(Arc::clone(&store), Kinds::builtin());
    let metrics_db = {
        let db_config = DbConfig {
            dir: config.metrics.dir.clone(),
            tiers: config.metrics.tiers.clone(),
            max_series: config.metrics.max_series,
        };
        Arc::new(
            tokio::task::spawn_blocking(move || Db::open(db_config))
                .await?
                .map_err(|e| anyhow::anyhow!("metrics store: {e}"))?,
        )
    };
    let recorder = Arc::new(Recorder::new(config.metrics.max_cells));
    let custom = Arc::new(CustomMetrics::new(config.metrics.max_label_sets));
    let agents = Arc::new(AgentMetrics::default());
    let gateway = match config.gateway {
        Some(address) => {
            let mut gateway_config = config.gateway_config.clone();
            if config.metrics.gateway {
                gateway_config.observer = Some(Arc::new(GatewayRecorder(Arc::clone(&recorder))));
            }
            let threads = gateway_config.threads;
            let gateway = sluice_gateway::Gateway::in_process(
                Arc::clone(&store),
                registry.clone(),
                gateway_config,
            );
            let data_plane = gateway
                .start(address, None, threads)
                .with_context(|| format!("cannot listen on {address} (gateway)"))?;
            Some((gateway, data_plane))
        }
        None => None,
    };
    let rejections = gateway.as_ref().map(|(gateway, _)| {
        let gateway = gateway.clone();
        Box::new(move || gateway.rejections()) as sluice_metrics::prometheus::CounterSource
    });
    let delivery = Arc::new(sluice_alarm::notify::DeliveryStats::default());
    let counter = |read: fn(&sluice_alarm::notify::DeliveryStats) -> u64| {
        let delivery = Arc::clone(&delivery);
        Box::new(move || read(&delivery)) as sluice_metrics::prometheus::CounterValue
    };
    let mut counters: Vec<(
        &'static str,
        &'static str,
        sluice_metrics::prometheus::CounterValue,
    )> = Vec::new();
    if let Some((gateway, _)) = &gateway {
        let gateway = gateway.clone();
        counters.push((
            "sluice_gateway_api_names_overflow",
            "Requests counted under the API {other}: their route already had max_apis API names.",
            Box::new(move || gateway.api_name_overflow()),
        ));
    }
    counters.extend([
        (
            "sluice_notifications_delivered",
            "Alarm notifications delivered.",
            counter(|d| d.delivered.load(std::sync::atomic::Ordering::Relaxed)),
        ),
        (
            "sluice_notifications_failed_attempts",
            "Alarm notification deliveries that failed (and are retried).",
            counter(|d| d.failed_attempts.load(std::sync::atomic::Ordering::Relaxed)),
        ),
        (
            "sluice_notifications_given_up",
            "Alarm notifications given up after a day of failures.",
            counter(|d| d.given_up.load(std::sync::atomic::Ordering::Relaxed)),
        ),
    ]);
    let exposition = Arc::new(Exposition {
        recorder: gateway.as_ref().map(|_| Arc::clone(&recorder)),
        db: Some(Arc::clone(&metrics_db)),
        rejections,
        gateway_threads: gateway
            .as_ref()
            .map(|(_, data_plane)| Box::new(data_plane.connection_counts()) as _),
        counters,
    });
    let mut sources: Vec<Arc<dyn StepSource>> = vec![
        Arc::clone(&recorder) as Arc<dyn StepSource>,
        Arc::clone(&custom) as Arc<dyn StepSource>,
        Arc::clone(&agents) as Arc<dyn StepSource>,
    ];
    if config.metrics.host {
        sources.push(Arc::new(HostSampler::new(sluice_metrics::host::hostname())));
    }
    let state = AppState {
        registry,
        resources,
        store: Arc::clone(&store),
        metrics: Some(MetricsHandle {
            db: Arc::clone(&metrics_db),
            custom,
            agents,
            exposition,
        }),
        protection: gateway.as_ref().map(|(gateway, _)| {
            let gateway = gateway.clone();
            Arc::new(move |ns: &str, svc: &str| gateway.protection(ns, svc))
                as sluice_api::protection::ProtectionSource
        }),
    };
    let app = sluice_api::router(state.clone(), auth.clone(), config.body_limit)
        .merge(sluice_ui::router(state, auth.clone()));
    let listener = tokio::net::TcpListener::bind(config.admin)
        .await
        .with_context(|| format!("cannot listen on {} (admin API)", config.admin))?;
    let admin = listener.local_addr()?;
    let gateway_address = gateway.as_ref().map(|(_, plane)| plane.local_addr());
    print_banner(
        role,
        &config,
        admin,
        gateway_address,
        auth.enabled(),
        &metrics_db,
    );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let flusher = tokio::spawn(sluice_metrics::recorder::run_flusher(
        Arc::clone(&metrics_db),
        sources,
        stop_rx.clone(),
    ));
    let alarm_resources = Arc::new(parking_lot::RwLock::new(
        sluice_alarm::judge::Resources::default(),
    ));
    sluice_alarm::judge::follow_resources(Arc::clone(&store), Arc::clone(&alarm_resources));
    let judge = tokio::spawn(sluice_alarm::judge::run(
        Arc::clone(&store),
        Arc::clone(&metrics_db),
        alarm_resources,
        stop_rx.clone(),
    ));
    let sender = tokio::spawn(sluice_alarm::notify::run_sender(
        Arc::clone(&store),
        delivery,
        stop_rx.clone(),
    ));
    let tls_plane = match (&gateway, &config.gateway_tls) {
        (Some((gateway, _)), Some((address, certificates))) => {
            let tls = sluice_gateway::tls_server_config(certificates)
                .map_err(|e| anyhow::anyhow!("gateway TLS: {e}"))?;
            let plane = gateway
                .start(*address, Some(tls), config.gateway_config.threads)
                .with_context(|| format!("cannot listen on {address} (gateway TLS)"))?;
            println!(
                "  gateway    https://{} (TLS, h2 and http/1.1)",
                plane.local_addr()
            );
            Some(plane)
        }
        (None, Some(_)) => anyhow::bail!("--gateway-tls needs the gateway (--gateway)"),
        _ => None,
    };
    let gateway_plane = gateway.map(|(_, plane)| plane);
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let mut stop_rx = stop_rx;
        let _ = stop_rx.wait_for(|stop| *stop).await;
    });
    let server = tokio::spawn(async move { server.await });
    shutdown_signal().await;
    eprintln!("sluice: shutting down (in-flight requests get {SHUTDOWN_GRACE:?})");
    let _ = stop_tx.send(true);
    for plane in [gateway_plane, tls_plane].into_iter().flatten() {
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, plane.shutdown()).await;
    }
    for task in [Some(flusher), Some(judge), Some(sender)]
        .into_iter()
        .flatten()
    {
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, task).await;
    }
    match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
        Ok(Ok(Ok(()))) | Err(_) => Ok(()),
        Ok(Ok(Err(error))) => Err(error.into()),
        Ok(Err(error)) => Err(error.into()),
    }
}

fn print_banner(
    role: Role,
    config: &ServerConfig,
    admin: std::net::SocketAddr,
    gateway: Option<std::net::SocketAddr>,
    auth: bool,
    metrics: &Db,
) {
    let what = match role {
        Role::Up => "Sluice is up",
        Role::Server => "Sluice control-plane node is up",
    };
    println!("{what} ({})", env!("CARGO_PKG_VERSION"));
    println!("  admin API  http://{admin}   (OpenAPI: http://{admin}/v1/openapi.json)");
    if let Some(gateway) = gateway {
        println!(
            "  gateway    http://{gateway}   (routes: PUT /v1/namespaces/NS/resources/Route/NAME)"
        );
    }
    println!("  store      {}", config.store);
    println!(
        "  registry   heartbeat every {}, unhealthy after {}, removed after {}",
        sluice_model::duration_text::format(config.registry.heartbeat_interval),
        sluice_model::duration_text::format(config.registry.unhealthy_after),
        sluice_model::duration_text::format(config.registry.remove_after),
    );
    let usage = metrics.disk_use();
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    println!(
        "  metrics    {} ({} series, {:.1} MiB; at most {:.0} MiB at the {}-series limit)",
        metrics.dir().display(),
        usage.series,
        mib(usage.bytes),
        mib(usage.bytes_at_limit),
        config.metrics.max_series,
    );
    if auth {
        println!(
            "  auth       bearer tokens required ({} configured)",
            config.tokens.len()
        );
    }
    let server = if admin.to_string() == "127.0.0.1:7700" {
        String::new()
    } else {
        format!(" --server http://{admin}")
    };
    println!("Try:");
    println!("  sluice svc register echo 127.0.0.1:9001 --id i1{server}");
    println!("  sluice svc ls{server}");
    println!("  curl http://{admin}/v1/namespaces/default/services/echo/instances");
    use std::io::Write;
    let _ = std::io::stdout().flush();
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Runs a standalone gateway until SIGINT or SIGTERM.
pub async fn run_gateway(config: crate::config::StandaloneGatewayConfig) -> anyhow::Result<()> {
    let recorder = Arc::new(Recorder::new(10_000));
    let mut gateway_config = config.gateway.clone();
    gateway_config.observer = Some(Arc::new(GatewayRecorder(Arc::clone(&recorder))));
    let gateway = sluice_gateway::Gateway::remote(
        config.control.clone(),
        config.token.clone(),
        config.data.clone(),
        gateway_config,
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    println!("Sluice gateway is up ({})", env!("CARGO_PKG_VERSION"));
    let plane = gateway
        .start(config.listen, None, config.gateway.threads)
        .with_context(|| format!("cannot listen on {} (gateway)", config.listen))?;
    println!(
        "  gateway    http://{}   ({} gateway threads)",
        plane.local_addr(),
        plane.connections_by_thread().len()
    );
    println!("  control    {}", config.control.join(", "));
    println!(
        "  snapshot   {}",
        config.data.join("gateway-snapshot.json").display()
    );
    println!(
        "  metrics    pushed to the control plane every {}",
        sluice_model::duration_text::format(config.metrics_interval)
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let pusher = tokio::spawn(push_gateway_metrics(
        recorder,
        config.control.clone(),
        config.token.clone(),
        config.metrics_interval,
        stop_rx,
    ));
    shutdown_signal().await;
    plane.shutdown().await;
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, pusher).await;
    Ok(())
}

/// Steps kept for the control plane while it does not answer (then the oldest go).
const UNSENT_STEPS: usize = 60;

/// Drains the standalone gateway's recorder every `interval` (aligned to it) and
/// pushes each step to the control plane, keeping unsent steps for a while.
async fn push_gateway_metrics(
    recorder: Arc<Recorder>,
    control: Vec<String>,
    token: Option<String>,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let http = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(http) => http,
        Err(error) => {
            tracing::warn!(%error, "cannot build the metrics client; not pushing metrics");
            return;
        }
    };
    let step = interval.as_secs().max(1);
    let mut unsent: std::collections::VecDeque<sluice_metrics::recorder::StepBatch> =
        std::collections::VecDeque::new();
    let mut current = 0usize;
    loop {
        let now = sluice_metrics::unix_now();
        let next = (now / step + 1) * step;
        let wait = Duration::from_secs(next.saturating_sub(now)).max(Duration::from_millis(50));
        let stopping = tokio::select! {
            () = tokio::time::sleep(wait) => false,
            _ = stop.wait_for(|stop| *stop) => true,
        };
        let drained = recorder.drain();
        if !drained.is_empty() {
            unsent.push_back(sluice_metrics::recorder::StepBatch::new(
                next - step,
                drained,
            ));
            if unsent.len() > UNSENT_STEPS {
                unsent.pop_front();
                tracing::warn!(
                    "the control plane has not taken metrics for a while; dropping the oldest step"
                );
            }
        }
        while let Some(batch) = unsent.front() {
            let mut sent = false;
            for _ in 0..control.len() {
                let url = format!(
                    "{}/v1/metrics/steps",
                    control[current % control.len()].trim_end_matches('/')
                );
                let mut request = http.post(&url).json(batch);
                if let Some(token) = &token {
                    request = request.bearer_auth(token);
                }
                match request.send().await {
                    Ok(response) if response.status().is_success() => {
                        sent = true;
                        break;
                    }
                    Ok(response) if response.status().is_client_error() => {
                        let status = response.status();
                        let text = response.text().await.unwrap_or_default();
                        tracing::warn!(url, %status, text, "the control plane refused a metrics step; dropping it");
                        sent = true;
                        break;
                    }
                    Ok(response) => {
                        tracing::warn!(url, status = %response.status(), "metrics push failed; trying the next control node");
                        current += 1;
                    }
                    Err(error) => {
                        tracing::warn!(url, %error, "metrics push failed; trying the next control node");
                        current += 1;
                    }
                }
            }
            if !sent {
                break;
            }
            unsent.pop_front();
        }
        if stopping {
            return;
        }
    }
}
