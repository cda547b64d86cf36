//! Reading metrics back: the API-health board of a namespace (or service), and
//! series queries for charts and alarm rules.
//!
//! The gateway's signals are derived at query time from its two stored series:
//! `qps` (requests per second), `error_rate` (share of 5xx answers), and `p50_ms`,
//! `p98_ms`, `p99_ms` (latency quantiles, ±3.2 %). They take the labels `namespace`,
//! `service`, `api` and `instance`. Any other metric is read with an aggregation:
//! `avg` (default), `sum`, `count`, `min`, `max`, `rate` (sum per second), `p50`,
//! `p98`, `p99`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::rrd::Tier;
use crate::{Agg, Db, MetricsError};

/// The derived gateway signals.
pub const SIGNALS: [&str; 5] = ["qps", "error_rate", "p50_ms", "p98_ms", "p99_ms"];

/// The figures of one scope of the board.
#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Signals {
    /// Requests answered in the window.
    pub requests: u64,
    /// Average requests per second over the window.
    pub qps: f64,
    /// Share of answers with a 5xx status (0 when there were none).
    pub error_rate: f64,
    /// Latency quantiles, milliseconds (`null` without requests).
    pub p50_ms: Option<f64>,
    /// 98th percentile.
    pub p98_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
    /// Answers by status code.
    pub codes: BTreeMap<String, u64>,
    /// The (at most) 10 APIs with the highest QPS.
    pub top_apis: Vec<ApiHealth>,
}

/// One API in a top list.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ApiHealth {
    /// Method and path template: `GET /articles/{id}`.
    pub api: String,
    /// Its service.
    pub service: String,
    /// Requests per second.
    pub qps: f64,
    /// 98th-percentile latency, ms.
    pub p98_ms: Option<f64>,
    /// Share of 5xx answers.
    pub error_rate: f64,
}

/// A service's figures.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ServiceHealth {
    /// The service.
    pub service: String,
    /// Its figures.
    #[serde(flatten)]
    pub signals: Signals,
}

/// An instance's figures.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct InstanceHealth {
    /// The service.
    pub service: String,
    /// The instance.
    pub instance: String,
    /// Its figures.
    #[serde(flatten)]
    pub signals: Signals,
}

/// The API-health board.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Board {
    /// The namespace.
    pub namespace: String,
    /// The service, when the board is of one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Window length, seconds.
    pub window_s: u64,
    /// Window start (Unix seconds, inclusive).
    pub from: u64,
    /// Window end (Unix seconds, exclusive; the last completed step).
    pub to: u64,
    /// The whole scope.
    #[serde(flatten)]
    pub signals: Signals,
    /// Per service.
    pub services: Vec<ServiceHealth>,
    /// Per instance.
    pub instances: Vec<InstanceHealth>,
}

/// Accumulates requests and latency of one scope.
#[derive(Default)]
struct Scope {
    requests: u64,
    errors: u64,
    codes: BTreeMap<String, u64>,
    latency: Option<Agg>,
    apis: BTreeMap<(String, String), (u64, u64, Option<Agg>)>,
}

impl Scope {
    fn add_requests(&mut self, service: &str, api: &str, code: &str, n: u64) {
        self.requests += n;
        let error = code.starts_with('5') && code.len() == 3;
        if error {
            self.errors += n;
        }
        *self.codes.entry(code.to_owned()).or_default() += n;
        let entry = self
            .apis
            .entry((service.to_owned(), api.to_owned()))
            .or_default();
        entry.0 += n;
        if error {
            entry.1 += n;
        }
    }

    fn add_latency(&mut self, service: &str, api: &str, agg: &Agg) {
        self.latency
            .get_or_insert_with(|| Agg::empty(true))
            .merge(agg);
        let entry = self
            .apis
            .entry((service.to_owned(), api.to_owned()))
            .or_default();
        entry.2.get_or_insert_with(|| Agg::empty(true)).merge(agg);
    }

    fn signals(self, window_s: u64) -> Signals {
        let window = window_s.max(1) as f64;
        let rate = |errors: u64, total: u64| {
            if total == 0 {
                0.0
            } else {
                errors as f64 / total as f64
            }
        };
        let mut top_apis: Vec<ApiHealth> = self
            .apis
            .into_iter()
            .filter(|(_, (n, _, _))| *n > 0)
            .map(|((service, api), (n, errors, latency))| ApiHealth {
                api,
                service,
                qps: n as f64 / window,
                p98_ms: latency.and_then(|l| l.quantile(0.98)),
                error_rate: rate(errors, n),
            })
            .collect();
        top_apis.sort_by(|a, b| b.qps.total_cmp(&a.qps).then_with(|| a.api.cmp(&b.api)));
        top_apis.truncate(10);
        let quantile = |q| self.latency.as_ref().and_then(|l| l.quantile(q));
        Signals {
            requests: self.requests,
            qps: self.requests as f64 / window,
            error_rate: rate(self.errors, self.requests),
            p50_ms: quantile(0.50),
            p98_ms: quantile(0.98),
            p99_ms: quantile(0.99),
            codes: self.codes,
            top_apis,
        }
    }
}

/// The finest tier that still holds `from`.
fn tier_for(tiers: &[Tier], from: u64, now: u64) -> usize {
    tiers
        .iter()
        .position(|t| now.saturating_sub(t.retention_s()) <= from)
        .unwrap_or(tiers.len().saturating_sub(1))
}

/// The health board of `namespace` (or of one service) over the last `window_s`
/// seconds of completed steps, as of `now`.
pub fn health(
    db: &Db,
    namespace: &str,
    service: Option<&str>,
    window_s: u64,
    now: u64,
) -> Result<Board, MetricsError> {
    let tiers = db.tiers();
    let fine = tiers.first().map_or(10, |t| t.step_s);
    let to = now - now % fine;
    let from = to.saturating_sub(window_s);
    let tier = tier_for(tiers, from, now);
    let mut matching = BTreeMap::from([("namespace".to_owned(), namespace.to_owned())]);
    if let Some(service) = service {
        matching.insert("service".to_owned(), service.to_owned());
    }
    let mut all = Scope::default();
    let mut services: BTreeMap<String, Scope> = BTreeMap::new();
    let mut instances: BTreeMap<(String, String), Scope> = BTreeMap::new();
    for rrd in db.find("requests", &matching) {
        let key = rrd.key();
        let (svc, api, code) = (key.label("service"), key.label("api"), key.label("code"));
        let n: u64 = rrd.read(tier, from, to)?.iter().map(|(_, a)| a.count).sum();
        if n == 0 {
            continue;
        }
        all.add_requests(svc, api, code, n);
        services
            .entry(svc.to_owned())
            .or_default()
            .add_requests(svc, api, code, n);
        instances
            .entry((svc.to_owned(), key.label("instance").to_owned()))
            .or_default()
            .add_requests(svc, api, code, n);
    }
    for rrd in db.find("latency_ms", &matching) {
        let key = rrd.key();
        let (svc, api) = (key.label("service"), key.label("api"));
        let mut agg = Agg::empty(true);
        for (_, slot) in rrd.read(tier, from, to)? {
            agg.merge(&slot);
        }
        if agg.count == 0 {
            continue;
        }
        all.add_latency(svc, api, &agg);
        services
            .entry(svc.to_owned())
            .or_default()
            .add_latency(svc, api, &agg);
        instances
            .entry((svc.to_owned(), key.label("instance").to_owned()))
            .or_default()
            .add_latency(svc, api, &agg);
    }
    Ok(Board {
        namespace: namespace.to_owned(),
        service: service.map(str::to_owned),
        window_s,
        from,
        to,
        signals: all.signals(window_s),
        services: services
            .into_iter()
            .map(|(service, scope)| ServiceHealth {
                service,
                signals: scope.signals(window_s),
            })
            .collect(),
        instances: instances
            .into_iter()
            .map(|((service, instance), scope)| InstanceHealth {
                service,
                instance,
                signals: scope.signals(window_s),
            })
            .collect(),
    })
}

/// A series query.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesQuery {
    /// A derived signal (`qps`, `error_rate`, `p50_ms`, `p98_ms`, `p99_ms`) or a stored metric.
    pub metric: String,
    /// Labels the series must have.
    pub matching: BTreeMap<String, String>,
    /// Labels to group by (`None`: every label but `code`).
    pub by: Option<Vec<String>>,
    /// How a stored metric's slots read (ignored for derived signals).
    pub agg: String,
    /// Range start (Unix seconds).
    pub from: u64,
    /// Range end (Unix seconds, exclusive).
    pub to: u64,
    /// Point spacing, seconds (rounded up to a multiple of the tier's step).
    pub step: u64,
}

/// One series of a query's answer.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct SeriesResult {
    /// The group's labels.
    pub labels: BTreeMap<String, String>,
    /// `[time, value]`; the value is `null` where there was no data.
    pub points: Vec<(u64, Option<f64>)>,
}

/// A query's answer.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct SeriesAnswer {
    /// The metric asked for.
    pub metric: String,
    /// The step used, seconds.
    pub step: u64,
    /// Range start (aligned).
    pub from: u64,
    /// Range end.
    pub to: u64,
    /// The series.
    pub series: Vec<SeriesResult>,
}

/// A point's data: the merged slots and how many of them were 5xx answers.
type Bucket = Option<(Agg, u64)>;

/// Aggregations a stored metric can be read with.
pub const AGGREGATIONS: [&str; 9] = [
    "avg", "sum", "count", "min", "max", "rate", "p50", "p98", "p99",
];

/// Runs a series query as of `now`.
pub fn series(db: &Db, query: &SeriesQuery, now: u64) -> Result<SeriesAnswer, MetricsError> {
    if query.from >= query.to {
        return Err(MetricsError::invalid(
            "from",
            format!("from ({}) must be before to ({})", query.from, query.to),
        ));
    }
    let derived = SIGNALS.contains(&query.metric.as_str());
    if !derived && !AGGREGATIONS.contains(&query.agg.as_str()) {
        return Err(MetricsError::invalid(
            "agg",
            format!(
                "agg {:?} is not one of {}",
                query.agg,
                AGGREGATIONS.join(", ")
            ),
        ));
    }
    let tiers = db.tiers();
    let tier = tier_for(tiers, query.from, now);
    let tier_step = tiers.get(tier).map_or(10, |t| t.step_s);
    let step = query.step.max(tier_step).div_ceil(tier_step) * tier_step;
    // Buckets start at `from` (on the tier's grid), so a window of `to - from` read with
    // `step = to - from` is one bucket holding exactly that window.
    let from = query.from - query.from % tier_step;
    let points = (query.to - from).div_ceil(step);
    if points > 20_000 {
        return Err(MetricsError::invalid(
            "step",
            format!("{points} points asked for; at most 20000 (raise step)"),
        ));
    }
    let stored = match query.metric.as_str() {
        "qps" | "error_rate" => "requests",
        "p50_ms" | "p98_ms" | "p99_ms" => "latency_ms",
        other => other,
    };
    let mut groups: BTreeMap<BTreeMap<String, String>, Vec<Bucket>> = BTreeMap::new();
    for rrd in db.find(stored, &query.matching) {
        let key = rrd.key();
        let labels: BTreeMap<String, String> = key
            .labels
            .iter()
            .filter(|(k, _)| match &query.by {
                Some(by) => by.iter().any(|b| b == *k),
                None => k.as_str() != "code",
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let error = {
            let code = key.label("code");
            code.len() == 3 && code.starts_with('5')
        };
        let buckets = groups
            .entry(labels)
            .or_insert_with(|| vec![None; points as usize]);
        for (time, agg) in rrd.read(tier, from, query.to)? {
            let index = ((time - from) / step) as usize;
            let Some(bucket) = buckets.get_mut(index) else {
                continue;
            };
            let (held, errors) =
                bucket.get_or_insert_with(|| (Agg::empty(agg.histogram.is_some()), 0));
            held.merge(&agg);
            if error {
                *errors += agg.count;
            }
        }
    }
    let value = |agg: &Agg, errors: u64| -> Option<f64> {
        let mean = || (agg.count > 0).then(|| agg.sum / agg.count as f64);
        match query.metric.as_str() {
            "qps" => Some(agg.count as f64 / step as f64),
            "error_rate" => (agg.count > 0).then(|| errors as f64 / agg.count as f64),
            "p50_ms" => agg.quantile(0.50),
            "p98_ms" => agg.quantile(0.98),
            "p99_ms" => agg.quantile(0.99),
            _ => match query.agg.as_str() {
                "sum" => Some(agg.sum),
                "count" => Some(agg.count as f64),
                "min" => Some(agg.min),
                "max" => Some(agg.max),
                "rate" => Some(agg.sum / step as f64),
                "p50" => agg.quantile(0.50),
                "p98" => agg.quantile(0.98),
                "p99" => agg.quantile(0.99),
                _ => mean(),
            },
        }
    };
    let series = groups
        .into_iter()
        .map(|(labels, buckets)| SeriesResult {
            labels,
            points: buckets
                .iter()
                .enumerate()
                .map(|(i, bucket)| {
                    let time = from + i as u64 * step;
                    (
                        time,
                        bucket
                            .as_ref()
                            .and_then(|(agg, errors)| value(agg, *errors)),
                    )
                })
                .collect(),
        })
        .collect();
    Ok(SeriesAnswer {
        metric: query.metric.clone(),
        step,
        from,
        to: query.to,
        series,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::{counter, RequestSample, StepSource};
    use crate::{rrd, DbConfig, SeriesKey};

    fn db(dir: &std::path::Path) -> Db {
        Db::open(DbConfig {
            dir: dir.to_owned(),
            tiers: rrd::parse_tiers("1s:10m,1m:1h").unwrap(),
            max_series: 1000,
        })
        .unwrap()
    }

    #[test]
    fn the_board_reports_what_was_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(dir.path());
        let recorder = crate::recorder::Recorder::new(100);
        let now = 1_800_000_000;
        // 10 seconds: api a at 10/s (10 ms, 1 in 10 answers 500), b at 5/s (50 ms).
        for second in 0..10 {
            for i in 0..10 {
                recorder.record(&RequestSample {
                    namespace: "default",
                    route: "a",
                    api: "GET /a",
                    service: "echo",
                    instance: "i1",
                    status: if i == 0 { 500 } else { 200 },
                    latency: std::time::Duration::from_millis(10),
                    rejected: None,
                    trace_id: None,
                });
            }
            for _ in 0..5 {
                recorder.record(&RequestSample {
                    namespace: "default",
                    route: "b",
                    api: "POST /b",
                    service: "echo",
                    instance: "i2",
                    status: 201,
                    latency: std::time::Duration::from_millis(50),
                    rejected: None,
                    trace_id: None,
                });
            }
            for (key, agg) in recorder.drain() {
                db.add(&key, now - 10 + second, &agg).unwrap();
            }
        }
        let board = health(&db, "default", None, 10, now).unwrap();
        assert_eq!(board.signals.requests, 150);
        assert!((board.signals.qps - 15.0).abs() < 1e-9);
        assert!((board.signals.error_rate - 10.0 / 150.0).abs() < 1e-9);
        assert_eq!(board.signals.codes["200"], 90);
        assert_eq!(board.signals.codes["201"], 50);
        assert_eq!(board.signals.codes["500"], 10);
        let p50 = board.signals.p50_ms.unwrap();
        assert!((p50 - 10.0).abs() <= 10.0 / 32.0, "{p50}");
        let p99 = board.signals.p99_ms.unwrap();
        assert!((p99 - 50.0).abs() <= 50.0 / 32.0, "{p99}");
        let top = &board.signals.top_apis;
        assert_eq!(top[0].api, "GET /a");
        assert!((top[0].qps - 10.0).abs() < 1e-9);
        assert!((top[0].error_rate - 0.1).abs() < 1e-9);
        assert_eq!(top[1].api, "POST /b");
        assert_eq!(board.instances.len(), 2);
        assert_eq!(board.services[0].signals.requests, 150);
        // A service filter and an empty namespace.
        assert_eq!(
            health(&db, "default", Some("other"), 10, now)
                .unwrap()
                .signals
                .requests,
            0
        );
        assert_eq!(
            health(&db, "prod", None, 10, now).unwrap().signals.requests,
            0
        );

        // The same as series.
        let query = |metric: &str, by: Option<Vec<String>>| SeriesQuery {
            metric: metric.into(),
            matching: BTreeMap::from([("service".into(), "echo".into())]),
            by,
            agg: "avg".into(),
            from: now - 10,
            to: now,
            step: 5,
        };
        let qps = series(&db, &query("qps", Some(vec!["service".into()])), now).unwrap();
        assert_eq!(qps.series.len(), 1);
        assert_eq!(
            qps.series[0].points,
            vec![(now - 10, Some(15.0)), (now - 5, Some(15.0))]
        );
        let errors = series(&db, &query("error_rate", Some(vec!["api".into()])), now).unwrap();
        let a = errors
            .series
            .iter()
            .find(|s| s.labels["api"] == "GET /a")
            .unwrap();
        assert_eq!(a.points[0].1, Some(0.1));
        let p98 = series(&db, &query("p98_ms", None), now).unwrap();
        assert_eq!(p98.series.len(), 2, "by api and instance");
    }

    #[test]
    fn stored_metrics_read_with_an_aggregation_and_bad_queries_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(dir.path());
        let now = 1_800_000_000;
        let key = SeriesKey::new("logins", [("tier", "vip")]);
        db.add(&key, now - 2, &counter(4)).unwrap();
        db.add(&key, now - 1, &counter(6)).unwrap();
        let mut query = SeriesQuery {
            metric: "logins".into(),
            matching: BTreeMap::new(),
            by: None,
            agg: "sum".into(),
            from: now - 2,
            to: now,
            step: 2,
        };
        let answer = series(&db, &query, now).unwrap();
        assert_eq!(answer.series[0].points, vec![(now - 2, Some(10.0))]);
        query.agg = "rate".into();
        assert_eq!(
            series(&db, &query, now).unwrap().series[0].points[0].1,
            Some(5.0)
        );
        query.agg = "median".into();
        assert!(series(&db, &query, now)
            .unwrap_err()
            .to_string()
            .contains("agg"));
        query.agg = "sum".into();
        query.from = now;
        assert!(series(&db, &query, now)
            .unwrap_err()
            .to_string()
            .contains("before"));
    }
}
