//! The `/metrics` exposition (prometheus-client, OpenMetrics text): the gateway's
//! per-API request counts and latency histograms (running totals as of the last
//! step), its rejections by reason, and the metrics store's own figures — so an
//! existing Prometheus + Grafana can scrape Sluice.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::hist::bucket_range;
use crate::recorder::Recorder;
use crate::{Agg, Db};

/// Histogram bounds of the latency exposition, seconds.
const BOUNDS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Extra counters to expose, read at scrape time (such as the gateway's rejections).
pub type CounterSource = Box<dyn Fn() -> BTreeMap<&'static str, u64> + Send + Sync>;

/// What `/metrics` shows.
pub struct Exposition {
    /// The gateway's recorder.
    pub recorder: Option<Arc<Recorder>>,
    /// The metrics store.
    pub db: Option<Arc<Db>>,
    /// Rejections by reason.
    pub rejections: Option<CounterSource>,
    /// Connections accepted so far by each gateway thread.
    pub gateway_threads: Option<ThreadCounts>,
    /// More counters: (name without `_total`, help, current value).
    pub counters: Vec<(&'static str, &'static str, CounterValue)>,
}

/// Counts per gateway thread, read at scrape time.
pub type ThreadCounts = Box<dyn Fn() -> Vec<u64> + Send + Sync>;

/// A counter read at scrape time.
pub type CounterValue = Box<dyn Fn() -> u64 + Send + Sync>;

impl std::fmt::Debug for Exposition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exposition").finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Snapshot {
    requests: Vec<(Vec<(String, String)>, u64)>,
    latency: Vec<(Vec<(String, String)>, Agg)>,
    rejections: BTreeMap<&'static str, u64>,
    thread_connections: Vec<u64>,
    gauges: Vec<(&'static str, &'static str, i64)>,
    counters: Vec<(&'static str, &'static str, u64)>,
}

fn labels_of(labels: &BTreeMap<String, String>) -> Vec<(String, String)> {
    labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Counts per bucket at [`BOUNDS`] (prometheus-client accumulates them): a
/// histogram bucket counts toward the first bound its lower end is within; the
/// histogram's own resolution applies.
fn buckets(agg: &Agg) -> Vec<(f64, u64)> {
    let histogram = agg.histogram.clone().unwrap_or_default();
    let mut counts = vec![0u64; BOUNDS.len() + 1];
    for (index, n) in &histogram.buckets {
        let low_seconds = bucket_range(usize::from(*index)).0 as f64 / 1_000_000.0;
        let slot = BOUNDS
            .iter()
            .position(|bound| low_seconds <= *bound)
            .unwrap_or(BOUNDS.len());
        counts[slot] += n;
    }
    BOUNDS
        .iter()
        .copied()
        .chain([f64::MAX])
        .zip(counts)
        .collect()
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(
            "sluice_gateway_requests",
            "Requests answered by the gateway, by namespace, route, service, API (method and path template), instance and status code.",
            None,
            MetricType::Counter,
        )?;
        for (labels, count) in &self.requests {
            ConstCounter::new(*count).encode(family.encode_family(labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "sluice_gateway_request_duration_seconds",
            "Time from a request's arrival to its response head, by namespace, route, service, API and instance.",
            None,
            MetricType::Histogram,
        )?;
        for (labels, agg) in &self.latency {
            family
                .encode_family(labels)?
                .encode_histogram::<NoLabelSet>(agg.sum / 1000.0, agg.count, &buckets(agg), None)?;
        }
        let mut family = encoder.encode_descriptor(
            "sluice_gateway_rejections",
            "Requests the gateway refused or gave up on, by reason.",
            None,
            MetricType::Counter,
        )?;
        for (reason, count) in &self.rejections {
            let labels = vec![("reason".to_owned(), (*reason).to_owned())];
            ConstCounter::new(*count).encode(family.encode_family(&labels)?)?;
        }
        if !self.thread_connections.is_empty() {
            let mut family = encoder.encode_descriptor(
                "sluice_gateway_thread_connections",
                "Client connections accepted by each gateway thread.",
                None,
                MetricType::Counter,
            )?;
            for (thread, count) in self.thread_connections.iter().enumerate() {
                let labels = vec![("thread".to_owned(), thread.to_string())];
                ConstCounter::new(*count).encode(family.encode_family(&labels)?)?;
            }
        }
        for (name, help, value) in &self.gauges {
            let family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(*value).encode(family)?;
        }
        for (name, help, value) in &self.counters {
            let family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(*value).encode(family)?;
        }
        Ok(())
    }
}

impl Exposition {
    /// The exposition text.
    pub fn render(&self) -> String {
        let mut snapshot = Snapshot {
            requests: Vec::new(),
            latency: Vec::new(),
            rejections: self.rejections.as_ref().map(|f| f()).unwrap_or_default(),
            thread_connections: self
                .gateway_threads
                .as_ref()
                .map(|f| f())
                .unwrap_or_default(),
            gauges: Vec::new(),
            counters: Vec::new(),
        };
        if let Some(recorder) = &self.recorder {
            for (key, agg) in recorder.totals() {
                match key.name.as_str() {
                    "requests" => snapshot.requests.push((labels_of(&key.labels), agg.count)),
                    "latency_ms" => snapshot.latency.push((labels_of(&key.labels), agg)),
                    _ => {}
                }
            }
            snapshot.gauges.push((
                "sluice_gateway_recorder_cells",
                "Cells (namespace, service, API, instance) the gateway records.",
                i64::try_from(recorder.cells()).unwrap_or(i64::MAX),
            ));
            snapshot.counters.push((
                "sluice_gateway_recorder_overflow",
                "Requests not recorded because the cell limit was reached.",
                recorder.overflow(),
            ));
        }
        for (name, help, value) in &self.counters {
            snapshot.counters.push((name, help, value()));
        }
        if let Some(db) = &self.db {
            let usage = db.disk_use();
            snapshot.gauges.push((
                "sluice_metrics_series",
                "Series held by the metrics store.",
                i64::try_from(usage.series).unwrap_or(i64::MAX),
            ));
            snapshot.gauges.push((
                "sluice_metrics_disk_bytes",
                "Bytes the metrics store's series files take (fixed per series).",
                i64::try_from(usage.bytes).unwrap_or(i64::MAX),
            ));
            snapshot.counters.push((
                "sluice_metrics_dropped_series",
                "New series dropped because the series limit was reached.",
                usage.dropped,
            ));
        }
        let mut registry = Registry::default();
        registry.register_collector(Box::new(snapshot));
        let mut text = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &registry) {
            tracing::warn!(%error, "cannot encode the metrics exposition");
        }
        match &self.recorder {
            Some(recorder) => with_exemplars(&text, &recorder.exemplars()),
            None => text,
        }
    }
}

/// Label values as OpenMetrics escapes them.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Adds exemplars (OpenMetrics: `bucket{...} N # {trace_id="..."} VALUE TIME`)
/// to the latency histogram's bucket lines: each exemplar on the first bucket
/// whose bound holds its value.
fn with_exemplars(
    text: &str,
    exemplars: &HashMap<crate::SeriesKey, Vec<crate::recorder::Exemplar>>,
) -> String {
    if exemplars.is_empty() {
        return text.to_owned();
    }
    // Each series' labels as the encoder writes them after `le` (sorted).
    let mut by_labels: HashMap<String, &Vec<crate::recorder::Exemplar>> = HashMap::new();
    for (key, list) in exemplars {
        let labels: Vec<String> = key
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect();
        by_labels.insert(labels.join(","), list);
    }
    const BUCKET: &str = "sluice_gateway_request_duration_seconds_bucket{le=\"";
    let mut out = String::with_capacity(text.len() + exemplars.len() * 96);
    // Per series: exemplars placed, and the previous bucket's bound.
    let mut placed: HashMap<&str, (usize, f64)> = HashMap::new();
    for line in text.lines() {
        out.push_str(line);
        let parsed = line.strip_prefix(BUCKET).and_then(|rest| {
            let (bound, rest) = rest.split_once("\",")?;
            let (labels, _) = rest.rsplit_once('}')?;
            Some((bound.parse::<f64>().unwrap_or(f64::INFINITY), labels))
        });
        if let Some((labels, list)) = parsed.and_then(|(bound, labels)| {
            by_labels
                .get_key_value(labels)
                .map(|(k, list)| ((k.as_str(), bound), *list))
        }) {
            let (labels, bound) = labels;
            let (done, previous) = placed.entry(labels).or_insert((0, f64::MIN));
            let below = std::mem::replace(previous, bound);
            // Exemplars in a lower bucket already taken are skipped.
            while list
                .get(*done)
                .is_some_and(|e| (e.micros as f64 / 1_000_000.0) <= below)
            {
                *done += 1;
            }
            // One exemplar per bucket line, within its bounds.
            if let Some(exemplar) = list.get(*done) {
                let seconds = exemplar.micros as f64 / 1_000_000.0;
                if seconds <= bound {
                    out.push_str(&format!(
                        " # {{trace_id=\"{:032x}\"}} {seconds} {}.{:03}",
                        exemplar.trace_id,
                        exemplar.at_ms / 1000,
                        exemplar.at_ms % 1000
                    ));
                    *done += 1;
                }
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::{RequestSample, StepSource};

    #[test]
    fn the_exposition_has_counts_histograms_and_rejections() {
        let recorder = Arc::new(Recorder::new(10));
        for (ms, status, trace) in [(3, 200, 1u128), (30, 503, 2), (300, 200, 3)] {
            recorder.record(&RequestSample {
                namespace: "default",
                route: "echo",
                api: "GET /echo",
                service: "echo",
                instance: "i1",
                status,
                latency: std::time::Duration::from_millis(ms),
                rejected: None,
                trace_id: Some(trace),
            });
        }
        recorder.drain();
        let exposition = Exposition {
            recorder: Some(recorder),
            db: None,
            rejections: Some(Box::new(|| BTreeMap::from([("rate", 7u64)]))),
            gateway_threads: Some(Box::new(|| vec![4, 6])),
            counters: vec![("sluice_test", "A test counter.", Box::new(|| 5))],
        };
        let text = exposition.render();
        assert!(
            text.contains(r#"sluice_gateway_thread_connections_total{thread="1"} 6"#),
            "{text}"
        );
        assert!(
            text.contains(r#"sluice_gateway_requests_total{api="GET /echo",code="200",instance="i1",namespace="default",route="echo",service="echo"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"le="0.01",api="GET /echo",instance="i1",namespace="default",route="echo",service="echo"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"le="0.05",api="GET /echo",instance="i1",namespace="default",route="echo",service="echo"} 2 # {trace_id="00000000000000000000000000000002"} 0.03 "#
            ),
            "the failed request's trace: {text}"
        );
        assert!(
            text.contains(
                r#"service="echo"} 3 # {trace_id="00000000000000000000000000000003"} 0.3 "#
            ),
            "the slowest request's trace: {text}"
        );
        assert!(
            text.contains(
                r#"le="+Inf",api="GET /echo",instance="i1",namespace="default",route="echo",service="echo"} 3"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"sluice_gateway_rejections_total{reason="rate"} 7"#),
            "{text}"
        );
        assert!(text.contains("sluice_test_total 5"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
