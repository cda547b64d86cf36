//! Per-request recording for the gateway, and the step flush.
//!
//! One cell per (namespace, route, service, API, instance), where the API is the
//! method and path template the gateway named (`GET /articles/{id}`) — never the raw
//! path: each route keeps a bounded number of API names, so cardinality stays
//! bounded. Recording a request is a hash of those strings, a
//! lookup in a copy-on-write map read through `ArcSwap` (no lock), and a few atomic
//! adds; only the first request of a new cell takes a lock. Cells beyond
//! `max_cells` are not created; their requests are counted as overflow.
//!
//! Every step the flusher drains each cell into series: `requests` (a counter, with
//! a `code` label), `latency_ms` (a histogram) and `rejections` (a counter of the
//! requests the gateway refused, with a `reason` label), all labelled `namespace`,
//! `route`, `service`, `api`, `instance`.
//!
//! Exemplars: each cell keeps the trace id of its slowest request of the step
//! and of its last failed one (5xx or refused), written lock-free (a sequence
//! number guards the pair of words); each step publishes them, and the
//! exposition shows them on the latency histogram's buckets.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use crate::hist::{AtomicHistogram, Histogram};
use crate::{Agg, Db, SeriesKey};

/// Status codes a cell counts apart (more distinct codes are counted as `other`).
const CODE_SLOTS: usize = 8;

/// Why the gateway refuses requests, as the `reason` label of `rejections`
/// (any other reason is counted as `other`).
pub const REJECTION_REASONS: [&str; 8] = [
    "rate",
    "conn",
    "acl",
    "ban",
    "concurrency",
    "breaker",
    "timeout",
    "other",
];

/// One answered request, as the gateway reports it.
#[derive(Debug, Clone, Copy)]
pub struct RequestSample<'a> {
    /// The route's namespace ("" when no route matched).
    pub namespace: &'a str,
    /// The route's name ("" when none matched).
    pub route: &'a str,
    /// The API called: method and path template, `GET /articles/{id}` ("" when no
    /// route matched).
    pub api: &'a str,
    /// The target service ("" when none was chosen).
    pub service: &'a str,
    /// The instance that answered ("" when none did).
    pub instance: &'a str,
    /// The status sent.
    pub status: u16,
    /// From arrival to the response head.
    pub latency: Duration,
    /// Why the gateway refused or gave up on the request (one of
    /// [`REJECTION_REASONS`]), if it did.
    pub rejected: Option<&'a str>,
    /// The request's trace, when it was sampled (for exemplars).
    pub trace_id: Option<u128>,
}

/// A request that stands for its cell's latency: its trace, how long it
/// took, when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exemplar {
    /// The trace id.
    pub trace_id: u128,
    /// Latency, µs.
    pub micros: u64,
    /// Unix ms.
    pub at_ms: u64,
}

/// One exemplar, written by any gateway thread without a lock: a writer takes
/// the sequence from even to odd (or skips when another writer holds it),
/// writes, and makes it even again; a reader retries a torn read.
#[derive(Default)]
struct ExemplarSlot {
    seq: AtomicU64,
    high: AtomicU64,
    low: AtomicU64,
    micros: AtomicU64,
    at_ms: AtomicU64,
}

impl ExemplarSlot {
    fn write(&self, exemplar: Exemplar) {
        let seq = self.seq.load(Ordering::Relaxed);
        if seq % 2 == 1
            || self
                .seq
                .compare_exchange(seq, seq + 1, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.high
            .store((exemplar.trace_id >> 64) as u64, Ordering::Relaxed);
        self.low.store(exemplar.trace_id as u64, Ordering::Relaxed);
        self.micros.store(exemplar.micros, Ordering::Relaxed);
        self.at_ms.store(exemplar.at_ms, Ordering::Relaxed);
        self.seq.store(seq + 2, Ordering::Release);
    }

    fn read(&self) -> Option<Exemplar> {
        for _ in 0..16 {
            let before = self.seq.load(Ordering::Acquire);
            if before % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let exemplar = Exemplar {
                trace_id: (u128::from(self.high.load(Ordering::Relaxed)) << 64)
                    | u128::from(self.low.load(Ordering::Relaxed)),
                micros: self.micros.load(Ordering::Relaxed),
                at_ms: self.at_ms.load(Ordering::Relaxed),
            };
            std::sync::atomic::fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == before {
                return (exemplar.trace_id != 0).then_some(exemplar);
            }
        }
        None
    }
}

/// A source of series for each step.
pub trait StepSource: Send + Sync {
    /// Takes what accumulated since the last call.
    fn drain(&self) -> Vec<(SeriesKey, Agg)>;
}

struct Cell {
    namespace: String,
    route: String,
    api: String,
    service: String,
    instance: String,
    codes: [(AtomicU16, AtomicU64); CODE_SLOTS],
    other_codes: AtomicU64,
    latency_us: AtomicHistogram,
    sum_us: AtomicU64,
    min_us: AtomicU64,
    max_us: AtomicU64,
    rejections: [AtomicU64; REJECTION_REASONS.len()],
    /// The slowest traced request of the step.
    slowest: ExemplarSlot,
    /// The last traced request that failed.
    failed: ExemplarSlot,
}

impl Cell {
    fn matches(&self, s: &RequestSample<'_>) -> bool {
        self.api == s.api
            && self.route == s.route
            && self.service == s.service
            && self.instance == s.instance
            && self.namespace == s.namespace
    }

    fn api(&self) -> &str {
        if self.route.is_empty() {
            "(no route)"
        } else {
            &self.api
        }
    }
}

fn hash_of(s: &RequestSample<'_>) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [s.namespace, s.route, s.api, s.service, s.instance] {
        for byte in part.bytes().chain([0xff]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

type Cells = HashMap<u64, Vec<Arc<Cell>>>;

/// The gateway's recorder.
pub struct Recorder {
    cells: ArcSwap<Cells>,
    insert: Mutex<()>,
    max_cells: usize,
    overflow: AtomicU64,
    /// Running totals since start, for the Prometheus exposition (updated each step).
    totals: Mutex<HashMap<SeriesKey, Agg>>,
    /// Exemplars published at the last step, by the latency series' labels.
    exemplars: Mutex<HashMap<SeriesKey, Vec<Exemplar>>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("cells", &self.cells.load().len())
            .field("max_cells", &self.max_cells)
            .finish()
    }
}

impl Recorder {
    /// A recorder keeping at most `max_cells` (namespace, service, API, instance) cells.
    pub fn new(max_cells: usize) -> Self {
        Recorder {
            cells: ArcSwap::from_pointee(Cells::new()),
            insert: Mutex::new(()),
            max_cells,
            overflow: AtomicU64::new(0),
            totals: Mutex::new(HashMap::new()),
            exemplars: Mutex::new(HashMap::new()),
        }
    }

    /// Records one request.
    pub fn record(&self, sample: &RequestSample<'_>) {
        let hash = hash_of(sample);
        let cell = {
            let cells = self.cells.load();
            cells
                .get(&hash)
                .and_then(|list| list.iter().find(|c| c.matches(sample)).cloned())
        };
        let cell = match cell {
            Some(cell) => cell,
            None => match self.insert(hash, sample) {
                Some(cell) => cell,
                None => {
                    self.overflow.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            },
        };
        let status = sample.status;
        let slot = cell.codes.iter().find(|(code, _)| {
            let held = code.load(Ordering::Relaxed);
            held == status
                || (held == 0
                    && code
                        .compare_exchange(0, status, Ordering::AcqRel, Ordering::Relaxed)
                        .map_or_else(|now| now == status, |_| true))
        });
        match slot {
            Some((_, count)) => count.fetch_add(1, Ordering::Relaxed),
            None => cell.other_codes.fetch_add(1, Ordering::Relaxed),
        };
        let micros = u64::try_from(sample.latency.as_micros()).unwrap_or(u64::MAX);
        cell.latency_us.record(micros);
        cell.sum_us.fetch_add(micros, Ordering::Relaxed);
        cell.min_us.fetch_min(micros, Ordering::Relaxed);
        cell.max_us.fetch_max(micros, Ordering::Relaxed);
        if let Some(reason) = sample.rejected {
            let index = REJECTION_REASONS[..REJECTION_REASONS.len() - 1]
                .iter()
                .position(|r| *r == reason)
                .unwrap_or(REJECTION_REASONS.len() - 1);
            cell.rejections[index].fetch_add(1, Ordering::Relaxed);
        }
        if let Some(trace_id) = sample.trace_id.filter(|t| *t != 0) {
            let exemplar = || Exemplar {
                trace_id,
                micros,
                at_ms: crate::unix_now_ms(),
            };
            if status >= 500 || sample.rejected.is_some() {
                cell.failed.write(exemplar());
            }
            if micros > cell.slowest.micros.load(Ordering::Relaxed) {
                cell.slowest.write(exemplar());
            }
        }
    }

    /// The exemplars of each latency series as of the last step: the slowest
    /// traced request of that step and the last failed one, by latency.
    pub fn exemplars(&self) -> HashMap<SeriesKey, Vec<Exemplar>> {
        self.exemplars.lock().clone()
    }

    fn insert(&self, hash: u64, sample: &RequestSample<'_>) -> Option<Arc<Cell>> {
        let _one_at_a_time = self.insert.lock();
        let cells = self.cells.load();
        if let Some(cell) = cells
            .get(&hash)
            .and_then(|list| list.iter().find(|c| c.matches(sample)))
        {
            return Some(Arc::clone(cell));
        }
        let held: usize = cells.values().map(Vec::len).sum();
        if held >= self.max_cells {
            return None;
        }
        let cell = Arc::new(Cell {
            namespace: sample.namespace.to_owned(),
            route: sample.route.to_owned(),
            api: sample.api.to_owned(),
            service: sample.service.to_owned(),
            instance: sample.instance.to_owned(),
            codes: std::array::from_fn(|_| (AtomicU16::new(0), AtomicU64::new(0))),
            other_codes: AtomicU64::new(0),
            latency_us: AtomicHistogram::default(),
            sum_us: AtomicU64::new(0),
            min_us: AtomicU64::new(u64::MAX),
            max_us: AtomicU64::new(0),
            rejections: std::array::from_fn(|_| AtomicU64::new(0)),
            slowest: ExemplarSlot::default(),
            failed: ExemplarSlot::default(),
        });
        let mut next = Cells::clone(&cells);
        next.entry(hash).or_default().push(Arc::clone(&cell));
        self.cells.store(Arc::new(next));
        Some(cell)
    }

    /// Requests not recorded because the cell limit was reached.
    pub fn overflow(&self) -> u64 {
        self.overflow.load(Ordering::Relaxed)
    }

    /// Cells held.
    pub fn cells(&self) -> usize {
        self.cells.load().values().map(Vec::len).sum()
    }

    /// Running totals since start (as of the last step), for the exposition.
    pub fn totals(&self) -> Vec<(SeriesKey, Agg)> {
        let totals = self.totals.lock();
        let mut all: Vec<(SeriesKey, Agg)> =
            totals.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

impl StepSource for Recorder {
    fn drain(&self) -> Vec<(SeriesKey, Agg)> {
        let cells = self.cells.load();
        let mut out = Vec::new();
        let mut exemplars = self.exemplars.lock();
        for cell in cells.values().flatten() {
            let api = cell.api();
            let labels = |extra: Option<(&str, &str)>| {
                let mut key = SeriesKey::new(
                    "",
                    [
                        ("namespace", cell.namespace.as_str()),
                        ("route", cell.route.as_str()),
                        ("service", cell.service.as_str()),
                        ("api", api),
                        ("instance", cell.instance.as_str()),
                    ],
                );
                if let Some((k, v)) = extra {
                    key.labels.insert(k.to_owned(), v.to_owned());
                }
                key.labels
            };
            let mut requests = 0;
            for (code, count) in &cell.codes {
                let n = count.swap(0, Ordering::Relaxed);
                if n == 0 {
                    continue;
                }
                requests += n;
                let code = code.load(Ordering::Relaxed).to_string();
                out.push((
                    SeriesKey {
                        name: "requests".into(),
                        labels: labels(Some(("code", &code))),
                    },
                    counter(n),
                ));
            }
            let other = cell.other_codes.swap(0, Ordering::Relaxed);
            if other > 0 {
                requests += other;
                out.push((
                    SeriesKey {
                        name: "requests".into(),
                        labels: labels(Some(("code", "other"))),
                    },
                    counter(other),
                ));
            }
            for (reason, count) in REJECTION_REASONS.iter().zip(&cell.rejections) {
                let n = count.swap(0, Ordering::Relaxed);
                if n > 0 {
                    out.push((
                        SeriesKey {
                            name: "rejections".into(),
                            labels: labels(Some(("reason", reason))),
                        },
                        counter(n),
                    ));
                }
            }
            let histogram: Histogram = cell.latency_us.take();
            let sum = cell.sum_us.swap(0, Ordering::Relaxed);
            let min = cell.min_us.swap(u64::MAX, Ordering::Relaxed);
            let max = cell.max_us.swap(0, Ordering::Relaxed);
            let count = histogram.count();
            if count == 0 && requests == 0 {
                continue;
            }
            let slowest = cell.slowest.read();
            cell.slowest.micros.store(0, Ordering::Relaxed);
            let mut published: Vec<Exemplar> =
                slowest.into_iter().chain(cell.failed.read()).collect();
            published.sort_by_key(|e| e.micros);
            published.dedup_by_key(|e| e.trace_id);
            if !published.is_empty() {
                exemplars.insert(
                    SeriesKey {
                        name: "latency_ms".into(),
                        labels: labels(None),
                    },
                    published,
                );
            }
            if count > 0 {
                out.push((
                    SeriesKey {
                        name: "latency_ms".into(),
                        labels: labels(None),
                    },
                    Agg {
                        count,
                        sum: sum as f64 / 1000.0,
                        min: min as f64 / 1000.0,
                        max: max as f64 / 1000.0,
                        histogram: Some(histogram),
                    },
                ));
            }
        }
        drop(exemplars);
        let mut totals = self.totals.lock();
        for (key, agg) in &out {
            totals
                .entry(key.clone())
                .and_modify(|t| t.merge(agg))
                .or_insert_with(|| agg.clone());
        }
        out
    }
}

/// A counter's step: `n` increments of 1.
pub fn counter(n: u64) -> Agg {
    Agg {
        count: n,
        sum: n as f64,
        min: 1.0,
        max: 1.0,
        histogram: None,
    }
}

/// Writes the sources' series to `db` every `step`, at step-aligned times, until
/// `stop` turns true; syncs files every minute. The step's time is its start.
pub async fn run_flusher(
    db: Arc<Db>,
    sources: Vec<Arc<dyn StepSource>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let step = db.tiers().first().map_or(10, |t| t.step_s).max(1);
    let mut last_sync = std::time::Instant::now();
    loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let next = (now.as_secs() / step + 1) * step;
        let wait = Duration::from_secs(next).saturating_sub(now);
        let stopping = tokio::select! {
            () = tokio::time::sleep(wait) => false,
            // The borrow the wait returns is dropped here, before any await.
            _ = stop.wait_for(|stop| *stop) => true,
        };
        // A step cut short by shutdown is written at the step it belongs to.
        flush(&db, &sources, next - step).await;
        if stopping {
            let db = Arc::clone(&db);
            let _ = tokio::task::spawn_blocking(move || db.sync()).await;
            return;
        }
        if last_sync.elapsed() >= Duration::from_secs(60) {
            let db = Arc::clone(&db);
            let _ = tokio::task::spawn_blocking(move || db.sync()).await;
            last_sync = std::time::Instant::now();
        }
    }
}

async fn flush(db: &Arc<Db>, sources: &[Arc<dyn StepSource>], time: u64) {
    let series: Vec<(SeriesKey, Agg)> = sources.iter().flat_map(|s| s.drain()).collect();
    if series.is_empty() {
        return;
    }
    let db = Arc::clone(db);
    let written = tokio::task::spawn_blocking(move || {
        for (key, agg) in &series {
            if let Err(error) = db.add(key, time, agg) {
                tracing::warn!(%error, series = %key, "cannot write a metrics step");
            }
        }
    })
    .await;
    if let Err(error) = written {
        tracing::warn!(%error, "the metrics flush failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>(route: &'a str, status: u16, ms: u64) -> RequestSample<'a> {
        RequestSample {
            namespace: "default",
            route,
            api: "GET /a",
            service: "echo",
            instance: "i1",
            status,
            latency: Duration::from_millis(ms),
            rejected: None,
            trace_id: None,
        }
    }

    #[test]
    fn requests_drain_into_counters_by_code_and_a_latency_histogram() {
        let recorder = Recorder::new(100);
        for _ in 0..3 {
            recorder.record(&sample("a", 200, 10));
        }
        recorder.record(&sample("a", 503, 30));
        recorder.record(&sample("b", 200, 5));
        let mut series = recorder.drain();
        series.sort_by(|x, y| x.0.cmp(&y.0));
        let find = |name: &str, api: &str, code: Option<&str>| {
            series
                .iter()
                .find(|(k, _)| {
                    k.name == name
                        && k.label("api") == api
                        && code.is_none_or(|c| k.label("code") == c)
                })
                .map(|(_, a)| a.clone())
                .unwrap()
        };
        assert_eq!(find("requests", "GET /a", Some("200")).count, 3);
        assert_eq!(find("requests", "GET /a", Some("503")).count, 1);
        let latency = find("latency_ms", "GET /a", None);
        assert_eq!(latency.count, 4);
        assert_eq!(latency.sum, 60.0);
        assert_eq!((latency.min, latency.max), (10.0, 30.0));
        assert!((latency.quantile(0.99).unwrap() - 30.0).abs() <= 30.0 / 32.0);
        assert_eq!(series.len(), 5);
        // Drained: the next step starts empty; totals keep the running sums.
        assert!(recorder.drain().is_empty());
        recorder.record(&sample("a", 200, 10));
        recorder.drain();
        let totals = recorder.totals();
        let total_200 = totals
            .iter()
            .find(|(k, _)| k.label("api") == "GET /a" && k.label("code") == "200")
            .unwrap();
        assert_eq!(total_200.1.count, 4);
    }

    #[test]
    fn pushed_steps_round_trip_and_are_checked() {
        let recorder = Recorder::new(10);
        recorder.record(&sample("a", 200, 10));
        let batch = StepBatch::new(1_000, recorder.drain());
        let json = serde_json::to_string(&batch).unwrap();
        let back: StepBatch = serde_json::from_str(&json).unwrap();
        let (time, series) = back.clone().validate(0, 2_000).unwrap();
        assert_eq!((time, series.len()), (1_000, 2));
        assert!(back
            .clone()
            .validate(1_500, 2_000)
            .unwrap_err()
            .to_string()
            .contains("time"));
        let mut renamed = back.clone();
        renamed.series[0].name = "logins".into();
        assert!(renamed
            .validate(0, 2_000)
            .unwrap_err()
            .to_string()
            .contains("series[0].name"));
        let mut labelled = back.clone();
        labelled.series[1].labels.insert("user".into(), "x".into());
        assert!(labelled
            .validate(0, 2_000)
            .unwrap_err()
            .to_string()
            .contains("series[1].labels"));
        let mut broken = back;
        let histogram = broken
            .series
            .iter_mut()
            .find(|s| s.histogram.is_some())
            .unwrap();
        histogram.histogram = Some(vec![(5000, 1)]);
        assert!(broken
            .validate(0, 2_000)
            .unwrap_err()
            .to_string()
            .contains("histogram"));
    }

    #[test]
    fn cells_are_bounded_and_overflow_is_counted() {
        let recorder = Recorder::new(2);
        for route in ["a", "b", "c", "d"] {
            recorder.record(&sample(route, 200, 1));
        }
        assert_eq!(recorder.cells(), 2);
        assert_eq!(recorder.overflow(), 2);
    }

    #[test]
    fn more_distinct_codes_than_slots_are_counted_as_other() {
        let recorder = Recorder::new(10);
        for code in 200..212 {
            recorder.record(&sample("a", code, 1));
        }
        let series = recorder.drain();
        let other = series
            .iter()
            .find(|(k, _)| k.label("code") == "other")
            .unwrap();
        assert_eq!(other.1.count, 4);
    }
}

/// One series of a step on the wire (a standalone gateway's push).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WireSeries {
    /// `requests` or `latency_ms`.
    #[schemars(extend("enum" = ["requests", "latency_ms"]))]
    pub name: String,
    /// Its labels.
    #[schemars(extend("propertyNames" = {"enum": ["namespace", "route", "service", "api", "instance", "code"]}, "additionalProperties" = {"type": "string", "maxLength": 512}))]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Samples.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
    /// Histogram buckets `[bucket, count]` (latency series).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histogram: Option<Vec<(u16, u64)>>,
}

/// A step of a gateway's recording, pushed to the control plane.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepBatch {
    /// The step's start, Unix seconds.
    pub time: u64,
    /// Its series.
    pub series: Vec<WireSeries>,
}

/// Labels a gateway series may carry.
const GATEWAY_LABELS: [&str; 6] = ["namespace", "route", "service", "api", "instance", "code"];
/// Most series in one pushed step.
pub const MAX_STEP_SERIES: usize = 100_000;

impl StepBatch {
    /// A batch of what a recorder drained.
    pub fn new(time: u64, drained: Vec<(SeriesKey, Agg)>) -> Self {
        StepBatch {
            time,
            series: drained
                .into_iter()
                .map(|(key, agg)| WireSeries {
                    name: key.name,
                    labels: key.labels,
                    count: agg.count,
                    sum: agg.sum,
                    min: agg.min,
                    max: agg.max,
                    histogram: agg.histogram.map(|h| h.buckets),
                })
                .collect(),
        }
    }

    /// Checks a pushed batch (gateway series only, sane numbers, a time within
    /// `oldest..=now + 60`) and turns it into series to add.
    pub fn validate(
        self,
        oldest: u64,
        now: u64,
    ) -> Result<(u64, Vec<(SeriesKey, Agg)>), crate::MetricsError> {
        let bad =
            |field: String, message: String| Err(crate::MetricsError::Invalid { field, message });
        if self.time < oldest || self.time > now + 60 {
            return bad(
                "time".into(),
                format!(
                    "time {} is outside the stored tiers ({oldest}..={})",
                    self.time,
                    now + 60
                ),
            );
        }
        if self.series.len() > MAX_STEP_SERIES {
            return bad(
                "series".into(),
                format!(
                    "series: {} in one step; at most {MAX_STEP_SERIES}",
                    self.series.len()
                ),
            );
        }
        let mut out = Vec::with_capacity(self.series.len());
        for (i, series) in self.series.into_iter().enumerate() {
            let at = |field: &str| format!("series[{i}].{field}");
            if series.name != "requests" && series.name != "latency_ms" {
                return bad(
                    at("name"),
                    format!(
                        "{}: {:?} is not a gateway series (requests, latency_ms)",
                        at("name"),
                        series.name
                    ),
                );
            }
            if let Some(label) = series
                .labels
                .keys()
                .find(|k| !GATEWAY_LABELS.contains(&k.as_str()))
            {
                return bad(
                    at("labels"),
                    format!("{}: {label:?} is not a gateway label", at("labels")),
                );
            }
            if series.labels.values().any(|v| v.len() > 512) {
                return bad(
                    at("labels"),
                    format!("{}: a value is over 512 bytes", at("labels")),
                );
            }
            if !(series.sum.is_finite() && series.min.is_finite() && series.max.is_finite())
                || series.count == 0
            {
                return bad(
                    at("count"),
                    format!(
                        "{}: count, sum, min and max must be finite, count above 0",
                        at("count")
                    ),
                );
            }
            let histogram = match series.histogram {
                None => None,
                Some(buckets) => {
                    if buckets.windows(2).any(|w| w[0].0 >= w[1].0)
                        || buckets
                            .iter()
                            .any(|(b, _)| usize::from(*b) >= crate::hist::BUCKETS)
                    {
                        return bad(
                            at("histogram"),
                            format!(
                                "{}: buckets must ascend within 0..{}",
                                at("histogram"),
                                crate::hist::BUCKETS
                            ),
                        );
                    }
                    Some(Histogram { buckets })
                }
            };
            out.push((
                SeriesKey {
                    name: series.name,
                    labels: series.labels,
                },
                Agg {
                    count: series.count,
                    sum: series.sum,
                    min: series.min,
                    max: series.max,
                    histogram,
                },
            ));
        }
        Ok((self.time, out))
    }
}
