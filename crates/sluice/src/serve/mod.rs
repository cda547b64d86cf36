//! The server roles: `sluice up` (everything on one machine, embedded store),
//! `sluice server` (a control-plane node, usually one of several on etcd) and
//! `sluice gateway` (standalone, in [`standalone`]).
//!
//! [`run`] reads as the list of what a node runs — store, registry, resources,
//! metrics, tracing, gateway, alarms, admin API — each started by its own module with
//! what it depends on, then one wait for the signal and one ordered stop.

mod alarms;
mod gateway;
mod metrics;
mod standalone;
mod traces;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sluice_api::{AppState, Auth, Kinds, MetricsHandle, Resources};
use sluice_metrics::Db;
use sluice_registry::Registry;

use crate::config::ServerConfig;
pub use standalone::run_gateway;

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

/// Runs the control plane (and the gateway, when configured) until SIGINT or SIGTERM.
pub async fn run(config: ServerConfig, role: Role) -> anyhow::Result<()> {
    let auth = Auth::new(config.tokens.clone()).map_err(|e| anyhow::anyhow!("tokens: {e}"))?;
    let store = sluice_store::open(&config.store).await?;
    let registry = Registry::start(Arc::clone(&store), config.registry.clone())
        .map_err(|e| anyhow::anyhow!(e))?;
    let resources = Resources::start(Arc::clone(&store), Kinds::builtin());
    let metrics = metrics::Metrics::start(&config).await?;
    let configs = start_configs(&config, &store)?;
    let mut traces = match &config.tracing {
        Some(settings) => Some(traces::Tracing::start(settings).await?),
        None => None,
    };
    if let (Some(traces), Some(url)) = (
        &traces,
        config.tracing.as_ref().and_then(|t| t.export.clone()),
    ) {
        traces.export_to(url)?;
    }
    let gateway = gateway::Planes::start(
        &config,
        &store,
        &registry,
        &metrics.recorder,
        traces.as_ref().map(traces::Tracing::sink),
    )?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let alarms = alarms::Alarms::start(&store, &metrics.db, &stop_rx);
    let mut counters = alarms.counters();
    counters.extend(traces.iter().flat_map(traces::Tracing::counters));
    let state = AppState {
        registry,
        resources,
        store: Arc::clone(&store),
        metrics: Some(MetricsHandle {
            db: Arc::clone(&metrics.db),
            custom: Arc::clone(&metrics.custom),
            agents: Arc::clone(&metrics.agents),
            exposition: metrics.exposition(gateway.as_ref(), counters),
        }),
        protection: gateway.as_ref().map(gateway::Planes::protection),
        tracing: traces.as_ref().map(|t| Arc::clone(&t.pipeline)),
        configs: Some(configs),
    };
    if let (Some(traces), Some(settings)) = (&mut traces, &config.tracing) {
        traces.listen(settings, &state, &auth, &stop_rx).await;
    }
    let admin = start_admin(&config, state, &auth, stop_rx.clone()).await?;
    print_banner(
        role,
        &config,
        admin.address,
        gateway.as_ref().map(|planes| planes.plain.local_addr()),
        auth.enabled(),
        &metrics.db,
        traces.as_ref(),
    );
    if let Some(tls) = gateway.as_ref().and_then(|planes| planes.tls.as_ref()) {
        println!(
            "  gateway    https://{} (TLS, h2 and http/1.1)",
            tls.local_addr()
        );
    }
    let flusher = metrics.start_flusher(&config, stop_rx);

    shutdown_signal().await;
    eprintln!("sluice: shutting down (in-flight requests get {SHUTDOWN_GRACE:?})");
    let _ = stop_tx.send(true);
    if let Some(gateway) = gateway {
        gateway.stop(SHUTDOWN_GRACE).await;
    }
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, flusher).await;
    alarms.stop(SHUTDOWN_GRACE).await;
    if let Some(traces) = traces {
        traces.stop(SHUTDOWN_GRACE).await;
    }
    match tokio::time::timeout(SHUTDOWN_GRACE, admin.server).await {
        Ok(Ok(Ok(()))) | Err(_) => Ok(()),
        Ok(Ok(Err(error))) => Err(error.into()),
        Ok(Err(error)) => Err(error.into()),
    }
}

/// The config center, with the secrets key when one is configured (or made).
fn start_configs(
    config: &ServerConfig,
    store: &Arc<dyn sluice_store::Store>,
) -> anyhow::Result<Arc<sluice_config::ConfigCenter>> {
    let sealer = match &config.secrets_key {
        Some((path, create)) => Some(Arc::new(
            sluice_config::Sealer::load(path, *create).map_err(|e| anyhow::anyhow!(e))?,
        )),
        None => None,
    };
    Ok(Arc::new(sluice_config::ConfigCenter::start(
        Arc::clone(store),
        sealer,
    )))
}

/// The admin API and the console, serving until `stop`.
struct Admin {
    address: std::net::SocketAddr,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start_admin(
    config: &ServerConfig,
    state: AppState,
    auth: &Auth,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Admin> {
    let app = sluice_api::router(state.clone(), auth.clone(), config.body_limit)
        .merge(sluice_ui::router(state, auth.clone()));
    let listener = tokio::net::TcpListener::bind(config.admin)
        .await
        .with_context(|| format!("cannot listen on {} (admin API)", config.admin))?;
    let address = listener.local_addr()?;
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = stop.wait_for(|stop| *stop).await;
    });
    Ok(Admin {
        address,
        server: tokio::spawn(async move { server.await }),
    })
}

fn print_banner(
    role: Role,
    config: &ServerConfig,
    admin: std::net::SocketAddr,
    gateway: Option<std::net::SocketAddr>,
    auth: bool,
    metrics: &Db,
    traces: Option<&traces::Tracing>,
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
    match traces {
        Some(traces) => {
            let stats = traces.pipeline.store().stats();
            let ports: Vec<String> = traces
                .listening
                .iter()
                .map(|(what, address)| format!("{what} http://{address}"))
                .collect();
            println!(
                "  tracing    {} spans stored ({:.1} MiB); OTLP and Zipkin on the admin address{}{}",
                stats.spans,
                mib(stats.bytes),
                if ports.is_empty() { "" } else { ", " },
                ports.join(", "),
            );
        }
        None => println!("  tracing    off"),
    }
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
