//! The metrics of a control-plane node: the series store, the gateway's request
//! recorder, custom and host metrics, the Prometheus exposition and the flusher
//! that writes one step of everything to the store.

use std::sync::Arc;

use sluice_gateway::{RequestObserver, RequestRecord};
use sluice_metrics::custom::CustomMetrics;
use sluice_metrics::host::{AgentMetrics, HostSampler};
use sluice_metrics::prometheus::{CounterValue, Exposition};
use sluice_metrics::recorder::{Recorder, RequestSample, StepSource};
use sluice_metrics::{Db, DbConfig};

use crate::config::ServerConfig;

use super::gateway::Planes;

/// Hands the gateway's answered requests to the metrics recorder.
pub(super) struct GatewayRecorder(pub(super) Arc<Recorder>);

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
            trace_id: record.trace_id,
        });
    }
}

/// What records and keeps metrics.
pub(super) struct Metrics {
    pub(super) db: Arc<Db>,
    pub(super) recorder: Arc<Recorder>,
    pub(super) custom: Arc<CustomMetrics>,
    pub(super) agents: Arc<AgentMetrics>,
}

/// A named counter for the exposition: (name without `_total`, help, value).
pub(super) type Counter = (&'static str, &'static str, CounterValue);

impl Metrics {
    /// Opens the series store (off the runtime's threads) and makes the recorders.
    pub(super) async fn start(config: &ServerConfig) -> anyhow::Result<Self> {
        let db_config = DbConfig {
            dir: config.metrics.dir.clone(),
            tiers: config.metrics.tiers.clone(),
            max_series: config.metrics.max_series,
        };
        let db = tokio::task::spawn_blocking(move || Db::open(db_config))
            .await?
            .map_err(|e| anyhow::anyhow!("metrics store: {e}"))?;
        Ok(Metrics {
            db: Arc::new(db),
            recorder: Arc::new(Recorder::new(config.metrics.max_cells)),
            custom: Arc::new(CustomMetrics::new(config.metrics.max_label_sets)),
            agents: Arc::new(AgentMetrics::default()),
        })
    }

    /// The `/metrics` exposition: the gateway's requests, rejections and threads
    /// when there is a gateway, the store's series, and `counters`.
    pub(super) fn exposition(
        &self,
        gateway: Option<&Planes>,
        mut counters: Vec<Counter>,
    ) -> Arc<Exposition> {
        if let Some(planes) = gateway {
            let gateway = planes.gateway.clone();
            counters.insert(
                0,
                (
                    "sluice_gateway_api_names_overflow",
                    "Requests counted under the API {other}: their route already had max_apis API names.",
                    Box::new(move || gateway.api_name_overflow()),
                ),
            );
        }
        Arc::new(Exposition {
            recorder: gateway.map(|_| Arc::clone(&self.recorder)),
            db: Some(Arc::clone(&self.db)),
            rejections: gateway.map(|planes| {
                let gateway = planes.gateway.clone();
                Box::new(move || gateway.rejections()) as sluice_metrics::prometheus::CounterSource
            }),
            gateway_threads: gateway.map(|planes| Box::new(planes.plain.connection_counts()) as _),
            counters,
        })
    }

    /// Starts the flusher: every step, the recorders' and samplers' values go to
    /// the store, until `stop`.
    pub(super) fn start_flusher(
        &self,
        config: &ServerConfig,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let mut sources: Vec<Arc<dyn StepSource>> = vec![
            Arc::clone(&self.recorder) as Arc<dyn StepSource>,
            Arc::clone(&self.custom) as Arc<dyn StepSource>,
            Arc::clone(&self.agents) as Arc<dyn StepSource>,
        ];
        if config.metrics.host {
            sources.push(Arc::new(HostSampler::new(sluice_metrics::host::hostname())));
        }
        tokio::spawn(sluice_metrics::recorder::run_flusher(
            Arc::clone(&self.db),
            sources,
            stop,
        ))
    }
}
