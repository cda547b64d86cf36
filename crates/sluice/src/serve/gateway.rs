//! The gateway of `sluice up` (and of a `sluice server` given `--gateway`): fed by
//! the store and the registry in process, on its own threads, plain and with TLS.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sluice_gateway::{DataPlane, Gateway};
use sluice_metrics::recorder::Recorder;
use sluice_registry::Registry;
use sluice_store::Store;

use crate::config::ServerConfig;

use super::metrics::GatewayRecorder;

/// A running gateway: its snapshot source and its listeners.
pub(super) struct Planes {
    pub(super) gateway: Gateway,
    pub(super) plain: DataPlane,
    pub(super) tls: Option<DataPlane>,
}

impl Planes {
    /// Starts the gateway when `--gateway` is set (`None` otherwise); refuses
    /// `--gateway-tls` without it.
    pub(super) fn start(
        config: &ServerConfig,
        store: &Arc<dyn Store>,
        registry: &Registry,
        recorder: &Arc<Recorder>,
    ) -> anyhow::Result<Option<Self>> {
        let Some(address) = config.gateway else {
            if config.gateway_tls.is_some() {
                anyhow::bail!("--gateway-tls needs the gateway (--gateway)");
            }
            return Ok(None);
        };
        let mut gateway_config = config.gateway_config.clone();
        if config.metrics.gateway {
            gateway_config.observer = Some(Arc::new(GatewayRecorder(Arc::clone(recorder))));
        }
        let threads = gateway_config.threads;
        let gateway = Gateway::in_process(Arc::clone(store), registry.clone(), gateway_config);
        let plain = gateway
            .start(address, None, threads)
            .with_context(|| format!("cannot listen on {address} (gateway)"))?;
        let tls = match &config.gateway_tls {
            Some((address, certificates)) => {
                let tls = sluice_gateway::tls_server_config(certificates)
                    .map_err(|e| anyhow::anyhow!("gateway TLS: {e}"))?;
                Some(
                    gateway
                        .start(*address, Some(tls), threads)
                        .with_context(|| format!("cannot listen on {address} (gateway TLS)"))?,
                )
            }
            None => None,
        };
        Ok(Some(Planes {
            gateway,
            plain,
            tls,
        }))
    }

    /// What protection holds for a service now, for the admin API.
    pub(super) fn protection(&self) -> sluice_api::protection::ProtectionSource {
        let gateway = self.gateway.clone();
        Arc::new(move |ns: &str, svc: &str| gateway.protection(ns, svc))
    }

    /// Stops both listeners, giving in-flight requests `grace`.
    pub(super) async fn stop(self, grace: Duration) {
        for plane in [Some(self.plain), self.tls].into_iter().flatten() {
            let _ = tokio::time::timeout(grace, plane.shutdown()).await;
        }
    }
}
