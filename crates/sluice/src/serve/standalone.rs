//! `sluice gateway`: a standalone gateway that follows the control plane over its
//! API, and pushes its request metrics there step by step.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sluice_client::{ClientError, ControlPlane, Method};
use sluice_metrics::recorder::{Recorder, StepSource};

use super::metrics::GatewayRecorder;
use super::{shutdown_signal, SHUTDOWN_GRACE};

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
    let control = match ControlPlane::new(control, token, Duration::from_secs(10)) {
        Ok(control) => control,
        Err(error) => {
            tracing::warn!(%error, "cannot build the metrics client; not pushing metrics");
            return;
        }
    };
    let step = interval.as_secs().max(1);
    let mut unsent: std::collections::VecDeque<sluice_metrics::recorder::StepBatch> =
        std::collections::VecDeque::new();
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
            let body = match serde_json::to_value(batch) {
                Ok(body) => body,
                Err(error) => {
                    tracing::warn!(%error, "cannot encode a metrics step; dropping it");
                    unsent.pop_front();
                    continue;
                }
            };
            match control
                .request(Method::POST, "/v1/metrics/steps", Some(&body))
                .await
            {
                Ok(_) => {}
                Err(error @ ClientError::Api { .. }) => {
                    tracing::warn!(%error, "the control plane refused a metrics step; dropping it");
                }
                Err(error) => {
                    tracing::warn!(%error, "no control-plane node took metrics; keeping the step");
                    break;
                }
            }
            unsent.pop_front();
        }
        if stopping {
            return;
        }
    }
}
