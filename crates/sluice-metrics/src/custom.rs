//! Business metrics pushed through the API (msec's "report your own figures"):
//! counters (increments), gauges (current values) and observations (values whose
//! distribution matters), each with labels. A batch is checked whole before any of
//! it is applied; each metric keeps the type it was first pushed with; the label
//! sets of one metric in one namespace are bounded.

use std::collections::{BTreeMap, HashMap, HashSet};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sluice_model::valid_metric_name;

use crate::recorder::StepSource;
use crate::{Agg, MetricsError, SeriesKey};

/// Most entries in one push.
pub const MAX_BATCH: usize = 1000;
/// Most labels on one metric.
pub const MAX_LABELS: usize = 8;
/// Names the gateway's and host's series use.
const RESERVED: [&str; 7] = [
    "requests",
    "latency_ms",
    "qps",
    "error_rate",
    "p50_ms",
    "p98_ms",
    "p99_ms",
];

/// A metric's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MetricType {
    /// Increments (read with `sum` or `rate`).
    Counter,
    /// A current value (read with `avg`, `min`, `max`).
    Gauge,
    /// Values whose distribution matters (read with `p50`, `p98`, `p99` too).
    Observation,
}

/// One pushed value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sample {
    /// The metric's name (`[a-zA-Z_][a-zA-Z0-9_]*`, up to 128 characters).
    #[schemars(with = "sluice_model::schema::MetricName")]
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: MetricType,
    /// The value (a counter's increment: not negative).
    pub value: f64,
    /// Labels (at most 8).
    #[serde(default)]
    #[schemars(extend("maxProperties" = 8, "propertyNames" = {"pattern": "^[A-Za-z_][A-Za-z0-9_]{0,63}$"}, "additionalProperties" = {"type": "string", "minLength": 1, "maxLength": 256}))]
    pub labels: BTreeMap<String, String>,
}

/// A push: `{"metrics": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Push {
    /// The values.
    #[schemars(length(max = 1000))]
    pub metrics: Vec<Sample>,
}

/// Checks one sample; the error names the entry and field.
pub fn validate(index: usize, sample: &Sample) -> Result<(), MetricsError> {
    let at = |field: &str| format!("metrics[{index}].{field}");
    let bad = |field: &str, why: String| {
        let field = at(field);
        Err(MetricsError::Invalid {
            message: format!("{field}: {why}"),
            field,
        })
    };
    if !valid_metric_name(&sample.name, 128) {
        return bad(
            "name",
            format!(
                "{:?} is not a metric name ([a-zA-Z_][a-zA-Z0-9_]*, at most 128)",
                sample.name
            ),
        );
    }
    if RESERVED.contains(&sample.name.as_str()) || sample.name.starts_with("host_") {
        return bad(
            "name",
            format!("{:?} is reserved for Sluice's own series", sample.name),
        );
    }
    if !sample.value.is_finite() {
        return bad("value", "must be a finite number".into());
    }
    if sample.kind == MetricType::Counter && sample.value < 0.0 {
        return bad(
            "value",
            format!("{} is negative; a counter only grows", sample.value),
        );
    }
    if sample.labels.len() > MAX_LABELS {
        return bad(
            "labels",
            format!("{} labels; at most {MAX_LABELS}", sample.labels.len()),
        );
    }
    for (name, value) in &sample.labels {
        if !valid_metric_name(name, 64) || name.starts_with("__") || name == "namespace" {
            return bad(
                "labels",
                format!("{name:?} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*, not namespace)"),
            );
        }
        if value.is_empty() || value.len() > 256 {
            return bad(
                &format!("labels.{name}"),
                "a label value is 1 to 256 bytes".into(),
            );
        }
    }
    Ok(())
}

#[derive(Default)]
struct State {
    types: HashMap<(String, String), MetricType>,
    label_sets: HashMap<(String, String), HashSet<BTreeMap<String, String>>>,
    step: HashMap<SeriesKey, Agg>,
}

/// Business metrics of every namespace, accumulated until the next step.
pub struct CustomMetrics {
    max_label_sets: usize,
    state: Mutex<State>,
}

impl std::fmt::Debug for CustomMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustomMetrics")
            .field("max_label_sets", &self.max_label_sets)
            .finish()
    }
}

impl CustomMetrics {
    /// At most `max_label_sets` distinct label sets per metric and namespace.
    pub fn new(max_label_sets: usize) -> Self {
        CustomMetrics {
            max_label_sets,
            state: Mutex::new(State::default()),
        }
    }

    /// Applies a push to `namespace`: all of it, or none with the first problem named.
    pub fn push(&self, namespace: &str, push: &Push) -> Result<usize, MetricsError> {
        if push.metrics.len() > MAX_BATCH {
            return Err(MetricsError::invalid(
                "metrics",
                format!(
                    "metrics: {} entries; at most {MAX_BATCH} per push",
                    push.metrics.len()
                ),
            ));
        }
        for (index, sample) in push.metrics.iter().enumerate() {
            validate(index, sample)?;
        }
        let mut state = self.state.lock();
        // Check types and cardinality for the whole batch first.
        let mut new_sets: HashMap<(String, String), HashSet<&BTreeMap<String, String>>> =
            HashMap::new();
        for (index, sample) in push.metrics.iter().enumerate() {
            let id = (namespace.to_owned(), sample.name.clone());
            if let Some(kind) = state.types.get(&id) {
                if *kind != sample.kind {
                    return Err(MetricsError::invalid(
                        format!("metrics[{index}].type"),
                        format!(
                            "metrics[{index}].type: {} is a {kind:?}, not a {:?}",
                            sample.name, sample.kind
                        ),
                    ));
                }
            }
            let known = state.label_sets.get(&id);
            if known.is_some_and(|sets| sets.contains(&sample.labels)) {
                continue;
            }
            let added = new_sets.entry(id.clone()).or_default();
            added.insert(&sample.labels);
            let total = known.map_or(0, HashSet::len) + added.len();
            if total > self.max_label_sets {
                return Err(MetricsError::Cardinality {
                    field: format!("metrics[{index}].labels"),
                    metric: sample.name.clone(),
                    namespace: namespace.to_owned(),
                    limit: self.max_label_sets,
                });
            }
        }
        for sample in &push.metrics {
            let id = (namespace.to_owned(), sample.name.clone());
            state.types.entry(id.clone()).or_insert(sample.kind);
            state
                .label_sets
                .entry(id)
                .or_default()
                .insert(sample.labels.clone());
            let mut key = SeriesKey {
                name: sample.name.clone(),
                labels: sample.labels.clone(),
            };
            key.labels.insert("namespace".into(), namespace.to_owned());
            let histogram = sample.kind == MetricType::Observation;
            state
                .step
                .entry(key)
                .or_insert_with(|| Agg::empty(histogram))
                .observe(sample.value);
        }
        Ok(push.metrics.len())
    }
}

impl StepSource for CustomMetrics {
    fn drain(&self) -> Vec<(SeriesKey, Agg)> {
        std::mem::take(&mut self.state.lock().step)
            .into_iter()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str, kind: MetricType, value: f64, labels: &[(&str, &str)]) -> Sample {
        Sample {
            name: name.into(),
            kind,
            value,
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn pushes_accumulate_until_drained() {
        let metrics = CustomMetrics::new(10);
        let push = Push {
            metrics: vec![
                sample("logins", MetricType::Counter, 1.0, &[("tier", "vip")]),
                sample("logins", MetricType::Counter, 2.0, &[("tier", "vip")]),
                sample("queue", MetricType::Gauge, 7.0, &[]),
                sample("order_ms", MetricType::Observation, 120.0, &[]),
            ],
        };
        assert_eq!(metrics.push("shop", &push), Ok(4));
        let drained = metrics.drain();
        let logins = drained.iter().find(|(k, _)| k.name == "logins").unwrap();
        assert_eq!(logins.0.label("namespace"), "shop");
        assert_eq!((logins.1.count, logins.1.sum), (2, 3.0));
        let order = drained.iter().find(|(k, _)| k.name == "order_ms").unwrap();
        assert!(order.1.histogram.is_some());
        assert!(metrics.drain().is_empty());
    }

    #[test]
    fn bad_samples_are_named_and_nothing_of_the_batch_applies() {
        let metrics = CustomMetrics::new(2);
        let cases = [
            (
                sample("1bad", MetricType::Gauge, 1.0, &[]),
                "metrics[1].name",
            ),
            (sample("requests", MetricType::Gauge, 1.0, &[]), "reserved"),
            (sample("host_cpu", MetricType::Gauge, 1.0, &[]), "reserved"),
            (
                sample("ok", MetricType::Counter, -1.0, &[]),
                "metrics[1].value",
            ),
            (
                sample("ok", MetricType::Gauge, f64::NAN, &[]),
                "metrics[1].value",
            ),
            (
                sample("ok", MetricType::Gauge, 1.0, &[("namespace", "x")]),
                "metrics[1].labels",
            ),
            (
                sample("ok", MetricType::Gauge, 1.0, &[("a-b", "x")]),
                "metrics[1].labels",
            ),
            (
                sample("ok", MetricType::Gauge, 1.0, &[("a", "")]),
                "metrics[1].labels.a",
            ),
        ];
        for (bad, expected) in cases {
            let push = Push {
                metrics: vec![sample("fine", MetricType::Gauge, 1.0, &[]), bad],
            };
            let error = metrics.push("default", &push).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
        }
        assert!(
            metrics.drain().is_empty(),
            "nothing of a refused batch applies"
        );
        // Types stick; label sets are bounded.
        let first = Push {
            metrics: vec![sample("m", MetricType::Gauge, 1.0, &[("k", "1")])],
        };
        metrics.push("default", &first).unwrap();
        let retyped = Push {
            metrics: vec![sample("m", MetricType::Counter, 1.0, &[("k", "1")])],
        };
        assert!(metrics
            .push("default", &retyped)
            .unwrap_err()
            .to_string()
            .contains("type"));
        let overflow = Push {
            metrics: vec![
                sample("m", MetricType::Gauge, 1.0, &[("k", "2")]),
                sample("m", MetricType::Gauge, 1.0, &[("k", "3")]),
            ],
        };
        let error = metrics.push("default", &overflow).unwrap_err();
        assert!(matches!(error, MetricsError::Cardinality { .. }), "{error}");
        // Another namespace has its own bound.
        metrics.push("other", &overflow).unwrap();
    }
}
