//! The gateway of `sluice up` (and of a `sluice server` given `--gateway`): fed by
//! the store and the registry in process, on its own threads, plain and with TLS.
//! The gateway crate knows neither: its sources are wired here — routes and
//! policies followed from the store by kind, instances read from the registry.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sluice_gateway::{
    DataPlane, EndpointInfo, Gateway, GatewayConfig, Instances, Policies, Routes, POLICY_KINDS,
};
use sluice_metrics::recorder::Recorder;
use sluice_model::RouteSpec;
use sluice_registry::Registry;
use sluice_store::{follow_kind, Store};
use tokio::sync::watch;

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
        spans: Option<Arc<dyn sluice_gateway::SpanSink>>,
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
        gateway_config.spans = spans;
        let threads = gateway_config.threads;
        let gateway = in_process(store, registry, gateway_config);
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

/// A gateway fed by the in-process control plane: routes and policies from the
/// store, instances from the registry. Must run inside a Tokio runtime.
fn in_process(store: &Arc<dyn Store>, registry: &Registry, config: GatewayConfig) -> Gateway {
    let (routes_tx, routes) = watch::channel(Routes::new());
    tokio::spawn(follow_kind(
        Arc::clone(store),
        "Route",
        |spec: RouteSpec| spec.validate().is_ok().then_some(spec),
        move |apply| routes_tx.send_modify(|routes| apply(routes)),
    ));
    let (policies_tx, policies) = watch::channel(Policies::new());
    for kind in POLICY_KINDS {
        let policies_tx = policies_tx.clone();
        tokio::spawn(follow_kind(
            Arc::clone(store),
            kind,
            |spec: serde_json::Value| Some(spec),
            move |apply| {
                policies_tx
                    .send_modify(|policies| apply(policies.entry(kind.to_owned()).or_default()))
            },
        ));
    }
    let instances = Arc::new(RegistryInstances(registry.clone()));
    Gateway::from_sources(routes, policies, instances, config)
}

/// The registry as the gateway's instance source.
struct RegistryInstances(Registry);

impl Instances for RegistryInstances {
    fn endpoints(&self, namespace: &str, service: &str) -> Vec<EndpointInfo> {
        self.0
            .instances(namespace, service, false)
            .instances
            .into_iter()
            .map(|i| EndpointInfo {
                id: i.id,
                address: i.address,
                weight: i.weight,
            })
            .collect()
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.0.changes()
    }
}
