//! Sluice's metrics: what the gateway records per request, business metrics pushed
//! through the API, host metrics — aggregated into steps and kept in round-robin
//! series files; read back as API-health boards and series for charts and alarms;
//! exposed to Prometheus.
//!
//! - [`hist`]: the log-linear histogram (±3.2 % quantiles) used for latencies.
//! - [`rrd`]: fixed-size series files with step-aligned tiers.
//! - [`Db`]: the directory of series files, with a cardinality limit.
//! - [`recorder`]: the gateway's per-request recording (lock-free) and the step flush.
//! - [`query`]: the health board and series queries, with the derived signals
//!   `qps`, `error_rate`, `p50_ms`, `p98_ms`, `p99_ms`.
//! - [`custom`]: validated business metrics (counters, gauges, observations).
//! - [`host`]: CPU, memory, load, network and disk from `/proc`.
//! - [`prometheus`]: the `/metrics` exposition.

pub mod custom;
pub mod hist;
pub mod host;
pub mod prometheus;
pub mod query;
pub mod recorder;
pub mod rrd;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use crate::hist::Histogram;
use crate::rrd::{Rrd, Tier};

/// Errors of the metrics store and its inputs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricsError {
    /// A file or directory could not be read or written.
    #[error("{}: {reason}", path.display())]
    Io {
        /// The file or directory.
        path: std::path::PathBuf,
        /// What the system said.
        reason: String,
    },
    /// A series file is not what Sluice wrote.
    #[error("{}: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Bad input: `field` is where (`metrics[2].labels`, `from`, `agg`), `message`
    /// says what, naming the field.
    #[error("{message}")]
    Invalid {
        /// The field at fault, as a path into the input.
        field: String,
        /// The whole message.
        message: String,
    },
    /// A label-set limit was reached: `metric` in `namespace` would have more than `limit`.
    #[error("{field}: {metric} in namespace {namespace} would have more than {limit} label sets")]
    Cardinality {
        /// The entry at fault (`metrics[3].labels`).
        field: String,
        /// The metric.
        metric: String,
        /// Its namespace.
        namespace: String,
        /// The limit.
        limit: usize,
    },
}

impl MetricsError {
    /// Bad input in `field`; `message` names it.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        MetricsError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// `path` could not be read or written.
    pub fn io(path: &std::path::Path, error: impl std::fmt::Display) -> Self {
        MetricsError::Io {
            path: path.to_owned(),
            reason: error.to_string(),
        }
    }
}

/// A series: a metric name and its labels.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SeriesKey {
    /// The metric.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
}

impl SeriesKey {
    /// A key from a name and label pairs.
    pub fn new<'a>(name: &str, labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        SeriesKey {
            name: name.to_owned(),
            labels: labels
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }

    /// A label's value, or "".
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }

    /// A stable 64-bit hash (FNV-1a) of the key's text, for file names.
    pub fn stable_hash(&self) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in self.to_string().bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        hash
    }
}

impl std::fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)?;
        f.write_str("{")?;
        for (i, (k, v)) in self.labels.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}={v:?}")?;
        }
        f.write_str("}")
    }
}

/// Histogram values are kept in thousandths of the series' unit (a latency in ms
/// keeps µs resolution).
pub const HIST_SCALE: f64 = 1000.0;

/// What a step (or slot) holds for a series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agg {
    /// Samples (for counters: increments).
    pub count: u64,
    /// Sum of the samples' values.
    pub sum: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Distribution of the values (histogram series), in thousandths of the unit.
    pub histogram: Option<Histogram>,
}

impl Agg {
    /// The aggregate of `values`.
    pub fn of_values(values: impl IntoIterator<Item = f64>, histogram: bool) -> Self {
        let mut agg = Agg::empty(histogram);
        for value in values {
            agg.observe(value);
        }
        agg
    }

    /// Nothing yet.
    pub fn empty(histogram: bool) -> Self {
        Agg {
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            histogram: histogram.then(Histogram::default),
        }
    }

    /// Adds one value.
    pub fn observe(&mut self, value: f64) {
        self.count += 1;
        self.sum += value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        if let Some(histogram) = &mut self.histogram {
            let scaled = (value.max(0.0) * HIST_SCALE).round() as u64;
            histogram.merge(&Histogram::of([scaled]));
        }
    }

    /// Adds another aggregate (counts and sums add, min and max fold, histograms merge).
    pub fn merge(&mut self, other: &Agg) {
        if other.count == 0 {
            return;
        }
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        match (&mut self.histogram, &other.histogram) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (None, Some(theirs)) => self.histogram = Some(theirs.clone()),
            _ => {}
        }
    }

    /// The value at quantile `q`, in the series' unit.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        self.histogram
            .as_ref()
            .and_then(|h| h.quantile(q))
            .map(|v| v / HIST_SCALE)
    }
}

/// Settings of the metrics store.
#[derive(Debug, Clone)]
pub struct DbConfig {
    /// Where series files live.
    pub dir: PathBuf,
    /// Tiers of every series.
    pub tiers: Vec<Tier>,
    /// Most series kept; new ones beyond it are dropped (and counted).
    pub max_series: usize,
}

/// The series files of one Sluice node.
pub struct Db {
    config: DbConfig,
    series: RwLock<HashMap<SeriesKey, Arc<Rrd>>>,
    /// Series by name, and by (name, label, value): what queries look up.
    index: RwLock<Index>,
    create: Mutex<()>,
    dropped: AtomicU64,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("dir", &self.config.dir)
            .field("series", &self.series.read().len())
            .finish()
    }
}

/// Lookups of series by name and by one label.
#[derive(Default)]
struct Index {
    by_name: HashMap<String, Vec<Arc<Rrd>>>,
    by_label: HashMap<(String, String, String), Vec<Arc<Rrd>>>,
}

impl Index {
    fn add(&mut self, rrd: &Arc<Rrd>) {
        let key = rrd.key();
        self.by_name
            .entry(key.name.clone())
            .or_default()
            .push(Arc::clone(rrd));
        for (label, value) in &key.labels {
            self.by_label
                .entry((key.name.clone(), label.clone(), value.clone()))
                .or_default()
                .push(Arc::clone(rrd));
        }
    }
}

/// Disk use of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DiskUse {
    /// Series held.
    pub series: usize,
    /// Bytes their files take (fixed: they never grow).
    pub bytes: u64,
    /// Bytes at the series limit.
    pub bytes_at_limit: u64,
    /// Series dropped by the limit so far.
    pub dropped: u64,
}

impl Db {
    /// Opens (or creates) the store in `config.dir`, loading every series file.
    pub fn open(config: DbConfig) -> Result<Self, MetricsError> {
        std::fs::create_dir_all(&config.dir).map_err(|e| MetricsError::io(&config.dir, e))?;
        let mut series = HashMap::new();
        let entries =
            std::fs::read_dir(&config.dir).map_err(|e| MetricsError::io(&config.dir, e))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "rrd") {
                continue;
            }
            match Rrd::open(&path) {
                Ok(rrd) => {
                    series.insert(rrd.key().clone(), Arc::new(rrd));
                }
                Err(error) => tracing::warn!(%error, "skipping an unreadable series file"),
            }
        }
        let mut index = Index::default();
        for rrd in series.values() {
            index.add(rrd);
        }
        Ok(Db {
            config,
            series: RwLock::new(series),
            index: RwLock::new(index),
            create: Mutex::new(()),
            dropped: AtomicU64::new(0),
        })
    }

    /// The tiers series use.
    pub fn tiers(&self) -> &[Tier] {
        &self.config.tiers
    }

    /// Merges a step's aggregate of `key` (created on first use) at `time`.
    pub fn add(&self, key: &SeriesKey, time: u64, agg: &Agg) -> Result<(), MetricsError> {
        let existing = self.series.read().get(key).cloned();
        let rrd = match existing {
            Some(rrd) => rrd,
            None => match self.create(key, agg.histogram.is_some())? {
                Some(rrd) => rrd,
                None => return Ok(()),
            },
        };
        rrd.add(time, agg)
    }

    fn create(&self, key: &SeriesKey, histogram: bool) -> Result<Option<Arc<Rrd>>, MetricsError> {
        let _one_at_a_time = self.create.lock();
        if let Some(rrd) = self.series.read().get(key) {
            return Ok(Some(Arc::clone(rrd)));
        }
        if self.series.read().len() >= self.config.max_series {
            if self
                .dropped
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(1000)
            {
                tracing::warn!(
                    series = %key,
                    limit = self.config.max_series,
                    "the metrics series limit is reached; new series are dropped"
                );
            }
            return Ok(None);
        }
        let mut hash = key.stable_hash();
        let path = loop {
            let path = self.config.dir.join(format!("{hash:016x}.rrd"));
            if !path.exists() {
                break path;
            }
            hash = hash.wrapping_add(1);
        };
        let rrd = Arc::new(Rrd::create(
            &path,
            key.clone(),
            histogram,
            &self.config.tiers,
        )?);
        self.series.write().insert(key.clone(), Arc::clone(&rrd));
        self.index.write().add(&rrd);
        Ok(Some(rrd))
    }

    /// The series whose name is `name` and whose labels include `matching` — looked
    /// up through the most selective of the name and the matchers.
    pub fn find(&self, name: &str, matching: &BTreeMap<String, String>) -> Vec<Arc<Rrd>> {
        let index = self.index.read();
        let empty = Vec::new();
        let mut candidates = index.by_name.get(name).unwrap_or(&empty);
        for (label, value) in matching {
            let narrower = index
                .by_label
                .get(&(name.to_owned(), label.clone(), value.clone()))
                .unwrap_or(&empty);
            if narrower.len() < candidates.len() {
                candidates = narrower;
            }
        }
        candidates
            .iter()
            .filter(|rrd| {
                matching
                    .iter()
                    .all(|(k, v)| rrd.key().labels.get(k).is_some_and(|have| have == v))
            })
            .cloned()
            .collect()
    }

    /// The names of every metric held.
    pub fn names(&self) -> std::collections::BTreeSet<String> {
        self.series.read().keys().map(|k| k.name.clone()).collect()
    }

    /// Disk use: series held and bytes.
    pub fn disk_use(&self) -> DiskUse {
        let series = self.series.read();
        let bytes = series
            .values()
            .map(|r| Rrd::file_size(r.tiers(), r.has_histogram()))
            .sum();
        DiskUse {
            series: series.len(),
            bytes,
            bytes_at_limit: Rrd::file_size(&self.config.tiers, true)
                * self.config.max_series as u64,
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }

    /// Syncs every series file.
    pub fn sync(&self) {
        let all: Vec<Arc<Rrd>> = self.series.read().values().cloned().collect();
        for rrd in all {
            if let Err(error) = rrd.sync() {
                tracing::warn!(%error, "cannot sync a series file");
            }
        }
    }

    /// Where the files are.
    pub fn dir(&self) -> &Path {
        &self.config.dir
    }
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Milliseconds since the Unix epoch.
pub fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_print_and_hash_stably() {
        let key = SeriesKey::new("requests", [("service", "echo"), ("code", "200")]);
        assert_eq!(key.to_string(), r#"requests{code="200",service="echo"}"#);
        assert_eq!(
            key.stable_hash(),
            SeriesKey::new("requests", [("code", "200"), ("service", "echo")]).stable_hash()
        );
    }

    #[test]
    fn the_series_limit_drops_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(DbConfig {
            dir: dir.path().to_owned(),
            tiers: rrd::parse_tiers("10s:1m").unwrap(),
            max_series: 3,
        })
        .unwrap();
        for i in 0..5 {
            let key = SeriesKey::new("m", [("i", i.to_string().as_str())]);
            db.add(&key, 1_800_000_000, &Agg::of_values([1.0], false))
                .unwrap();
        }
        let usage = db.disk_use();
        assert_eq!((usage.series, usage.dropped), (3, 2));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3);
        // Reopened, the series are back.
        drop(db);
        let db = Db::open(DbConfig {
            dir: dir.path().to_owned(),
            tiers: rrd::parse_tiers("10s:1m").unwrap(),
            max_series: 3,
        })
        .unwrap();
        assert_eq!(db.find("m", &BTreeMap::new()).len(), 3);
    }
}
