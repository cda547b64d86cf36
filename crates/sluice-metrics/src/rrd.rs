//! Round-robin series files: one file per series, fixed in size, holding tiers of
//! step-aligned slots (defaults: 10 s × 6 h, 1 min × 7 d, 1 h × 90 d). Each slot
//! keeps count, sum, min, max and — for histogram series — a sparse histogram of at
//! most [`HIST_SLOTS`] buckets. A step's aggregate is merged into the current slot
//! of every tier, so the coarser tiers are exact rollups (count and sum add, min and
//! max fold, histograms merge).
//!
//! Writes are positioned writes into the file (no append, no rewrite of the rest), so
//! a `kill -9` loses nothing already written; an OS crash may lose what the page
//! cache had not yet written back (open files are synced every minute). Files are
//! opened through a bounded pool ([`open_files`]), so tens of thousands of series
//! do not exhaust the process's file descriptors.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::hist::Histogram;
use crate::{Agg, MetricsError, SeriesKey};

/// Histogram buckets a slot keeps (more are merged into neighbours).
pub const HIST_SLOTS: usize = 24;
const HEADER: u64 = 4096;
const MAGIC: &[u8; 8] = b"SLUICRRD";
/// time, count, sum, min, max (8 bytes each) and the histogram length (2).
const FIXED: usize = 8 * 5 + 2;
/// A histogram entry: bucket (2) and count (8).
const ENTRY: usize = 10;

/// Most series files held open at once: the process's file-descriptor limit (raised
/// to its hard limit first) less 1024 for sockets and the store, within 64..=100000.
pub fn open_files() -> usize {
    static LIMIT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *LIMIT.get_or_init(|| {
        let soft = rlimit::increase_nofile_limit(u64::MAX)
            .or_else(|_| rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft))
            .unwrap_or(1024);
        usize::try_from(soft.saturating_sub(1024))
            .unwrap_or(usize::MAX)
            .clamp(64, 100_000)
    })
}

/// Open series files, least recently used closed first.
fn pool() -> &'static parking_lot::Mutex<lru::LruCache<PathBuf, Arc<File>>> {
    static POOL: std::sync::OnceLock<parking_lot::Mutex<lru::LruCache<PathBuf, Arc<File>>>> =
        std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        parking_lot::Mutex::new(lru::LruCache::new(
            std::num::NonZeroUsize::new(open_files()).unwrap_or(std::num::NonZeroUsize::MIN),
        ))
    })
}

/// Puts an open file in the pool (closing the least recently used one beyond it;
/// what was written to that one is in the page cache and reaches the disk as the
/// kernel writes back — the periodic sync covers only open files).
fn remember(path: &Path, file: Arc<File>) {
    pool().lock().push(path.to_owned(), file);
}

/// One tier: `slots` slots of `step_s` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tier {
    /// Seconds per slot.
    pub step_s: u64,
    /// Slots kept (retention = step × slots).
    pub slots: u64,
}

impl Tier {
    /// How far back the tier reaches.
    pub fn retention_s(&self) -> u64 {
        self.step_s * self.slots
    }
}

/// The default tiers: 10 s for 6 hours, 1 minute for 7 days, 1 hour for 90 days.
pub fn default_tiers() -> Vec<Tier> {
    vec![
        Tier {
            step_s: 10,
            slots: 6 * 360,
        },
        Tier {
            step_s: 60,
            slots: 7 * 1440,
        },
        Tier {
            step_s: 3600,
            slots: 90 * 24,
        },
    ]
}

/// Parses tiers such as `10s:6h,1m:7d,1h:90d`.
pub fn parse_tiers(text: &str) -> Result<Vec<Tier>, MetricsError> {
    tiers_from_text(text).map_err(|message| MetricsError::invalid("tiers", message))
}

fn tiers_from_text(text: &str) -> Result<Vec<Tier>, String> {
    let mut tiers = Vec::new();
    for part in text.split(',') {
        let (step, keep) = part
            .split_once(':')
            .ok_or_else(|| format!("{part:?} is not STEP:RETENTION (such as 10s:6h)"))?;
        let step = sluice_model::duration_text::parse(step.trim())?.as_secs();
        let keep = sluice_model::duration_text::parse(keep.trim())?.as_secs();
        if step == 0 || keep < step || keep / step > 1_000_000 {
            return Err(format!(
                "{part:?}: the step must be at least 1s, and the retention 1 to 1000000 steps"
            ));
        }
        if let Some(previous) = tiers.last() {
            let previous: &Tier = previous;
            if step <= previous.step_s || step % previous.step_s != 0 {
                return Err(format!(
                    "{part:?}: each tier's step must be a multiple of the previous one's"
                ));
            }
        }
        tiers.push(Tier {
            step_s: step,
            slots: keep / step,
        });
    }
    if tiers.is_empty() {
        return Err("no tiers".into());
    }
    Ok(tiers)
}

/// What the header records.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Header {
    key: SeriesKey,
    histogram: bool,
    tiers: Vec<Tier>,
}

/// One series file.
#[derive(Debug)]
pub struct Rrd {
    path: PathBuf,
    key: SeriesKey,
    histogram: bool,
    tiers: Vec<Tier>,
    slot_size: usize,
}

fn io_error(path: &Path, error: std::io::Error) -> MetricsError {
    MetricsError::io(path, error)
}

impl Rrd {
    /// The size of a file with these tiers.
    pub fn file_size(tiers: &[Tier], histogram: bool) -> u64 {
        let slot = Self::slot_size(histogram) as u64;
        HEADER + tiers.iter().map(|t| t.slots * slot).sum::<u64>()
    }

    fn slot_size(histogram: bool) -> usize {
        if histogram {
            FIXED + HIST_SLOTS * ENTRY
        } else {
            FIXED
        }
    }

    /// Creates the file of a new series, at its full size.
    pub fn create(
        path: &Path,
        key: SeriesKey,
        histogram: bool,
        tiers: &[Tier],
    ) -> Result<Self, MetricsError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| io_error(path, e))?;
        let header = Header {
            key: key.clone(),
            histogram,
            tiers: tiers.to_vec(),
        };
        let mut bytes = MAGIC.to_vec();
        let json = serde_json::to_vec(&header).map_err(|e| MetricsError::io(path, e))?;
        if json.len() + 12 > HEADER as usize {
            return Err(MetricsError::invalid(
                "labels",
                format!("series {key} has too long a name or labels"),
            ));
        }
        bytes.extend_from_slice(&(json.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&json);
        file.set_len(Self::file_size(tiers, histogram))
            .map_err(|e| io_error(path, e))?;
        file.write_all_at(&bytes, 0)
            .map_err(|e| io_error(path, e))?;
        file.sync_all().map_err(|e| io_error(path, e))?;
        remember(path, Arc::new(file));
        Ok(Rrd {
            path: path.to_owned(),
            key,
            histogram,
            tiers: tiers.to_vec(),
            slot_size: Self::slot_size(histogram),
        })
    }

    /// Opens an existing file.
    pub fn open(path: &Path) -> Result<Self, MetricsError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| io_error(path, e))?;
        let mut head = vec![0u8; HEADER as usize];
        file.read_exact_at(&mut head, 0)
            .map_err(|e| io_error(path, e))?;
        if &head[..8] != MAGIC {
            return Err(MetricsError::Corrupt {
                path: path.to_owned(),
                reason: "not a Sluice series file".into(),
            });
        }
        let length = u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as usize;
        let header: Header = head
            .get(12..12 + length)
            .and_then(|json| serde_json::from_slice(json).ok())
            .ok_or_else(|| MetricsError::Corrupt {
                path: path.to_owned(),
                reason: "unreadable header".into(),
            })?;
        let expected = Self::file_size(&header.tiers, header.histogram);
        let actual = file.metadata().map_err(|e| io_error(path, e))?.len();
        if actual != expected {
            return Err(MetricsError::Corrupt {
                path: path.to_owned(),
                reason: format!("{actual} bytes, expected {expected}"),
            });
        }
        remember(path, Arc::new(file));
        Ok(Rrd {
            path: path.to_owned(),
            key: header.key,
            histogram: header.histogram,
            tiers: header.tiers,
            slot_size: Self::slot_size(header.histogram),
        })
    }

    /// The open file (reopened when the pool closed it).
    fn file(&self) -> Result<Arc<File>, MetricsError> {
        if let Some(file) = pool().lock().get(&self.path) {
            return Ok(Arc::clone(file));
        }
        let file = Arc::new(
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(&self.path)
                .map_err(|e| io_error(&self.path, e))?,
        );
        remember(&self.path, Arc::clone(&file));
        Ok(file)
    }

    /// The series this file holds.
    pub fn key(&self) -> &SeriesKey {
        &self.key
    }

    /// Whether slots keep a histogram.
    pub fn has_histogram(&self) -> bool {
        self.histogram
    }

    /// The tiers.
    pub fn tiers(&self) -> &[Tier] {
        &self.tiers
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn offset(&self, tier: usize, slot_time: u64) -> u64 {
        let before: u64 = self.tiers[..tier]
            .iter()
            .map(|t| t.slots * self.slot_size as u64)
            .sum();
        let t = self.tiers[tier];
        let index = (slot_time / t.step_s) % t.slots;
        HEADER + before + index * self.slot_size as u64
    }

    fn read_slot(&self, tier: usize, slot_time: u64) -> Result<Option<(u64, Agg)>, MetricsError> {
        let mut bytes = vec![0u8; self.slot_size];
        self.file()?
            .read_exact_at(&mut bytes, self.offset(tier, slot_time))
            .map_err(|e| io_error(&self.path, e))?;
        Ok(decode(&bytes))
    }

    /// Merges a step's aggregate, taken at `time` (Unix seconds), into every tier.
    pub fn add(&self, time: u64, agg: &Agg) -> Result<(), MetricsError> {
        let file = self.file()?;
        for (index, tier) in self.tiers.iter().enumerate() {
            let slot_time = time - time % tier.step_s;
            let mut merged = match self.read_slot(index, slot_time)? {
                Some((t, mut held)) if t == slot_time => {
                    held.merge(agg);
                    held
                }
                _ => agg.clone(),
            };
            if !self.histogram {
                merged.histogram = None;
            }
            let bytes = encode(slot_time, &mut merged, self.slot_size);
            file.write_all_at(&bytes, self.offset(index, slot_time))
                .map_err(|e| io_error(&self.path, e))?;
        }
        Ok(())
    }

    /// The slots of tier `tier` with times in `[from, to)`, oldest first — read
    /// with at most two positioned reads (the ring may wrap).
    pub fn read(&self, tier: usize, from: u64, to: u64) -> Result<Vec<(u64, Agg)>, MetricsError> {
        let t = self.tiers[tier];
        let from = from.max(to.saturating_sub(t.retention_s()));
        if from >= to {
            return Ok(Vec::new());
        }
        // The ring holds the last `slots` slots up to the one holding `to - 1`.
        let last = (to - 1) - (to - 1) % t.step_s;
        let first = (from - from % t.step_s).max(last.saturating_sub((t.slots - 1) * t.step_s));
        let count = ((to - first).div_ceil(t.step_s)).min(t.slots);
        let file = self.file()?;
        let start = (first / t.step_s) % t.slots;
        let mut out = Vec::with_capacity(count as usize);
        let mut read_run = |index: u64, slots: u64, first_time: u64| -> Result<(), MetricsError> {
            let mut bytes = vec![0u8; (slots as usize) * self.slot_size];
            let before: u64 = self.tiers[..tier]
                .iter()
                .map(|t| t.slots * self.slot_size as u64)
                .sum();
            let offset = HEADER + before + index * self.slot_size as u64;
            file.read_exact_at(&mut bytes, offset)
                .map_err(|e| io_error(&self.path, e))?;
            for (i, chunk) in bytes.chunks(self.slot_size).enumerate() {
                let expected = first_time + i as u64 * t.step_s;
                if let Some((time, agg)) = decode(chunk) {
                    // A slot still holding an older lap of the ring is not in range.
                    if time == expected && time < to {
                        out.push((time, agg));
                    }
                }
            }
            Ok(())
        };
        let head = count.min(t.slots - start);
        read_run(start, head, first)?;
        if head < count {
            read_run(0, count - head, first + head * t.step_s)?;
        }
        Ok(out)
    }

    /// Flushes written slots to disk.
    pub fn sync(&self) -> Result<(), MetricsError> {
        let open = pool().lock().get(&self.path).cloned();
        match open {
            Some(file) => file.sync_data().map_err(|e| io_error(&self.path, e)),
            None => Ok(()),
        }
    }
}

fn encode(time: u64, agg: &mut Agg, size: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(size);
    bytes.extend_from_slice(&time.to_le_bytes());
    bytes.extend_from_slice(&agg.count.to_le_bytes());
    bytes.extend_from_slice(&agg.sum.to_le_bytes());
    bytes.extend_from_slice(&agg.min.to_le_bytes());
    bytes.extend_from_slice(&agg.max.to_le_bytes());
    let entries = match &mut agg.histogram {
        Some(histogram) if size > FIXED => {
            histogram.coarsen(HIST_SLOTS);
            histogram.buckets.clone()
        }
        _ => Vec::new(),
    };
    bytes.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    for (bucket, count) in entries {
        bytes.extend_from_slice(&bucket.to_le_bytes());
        bytes.extend_from_slice(&count.to_le_bytes());
    }
    bytes.resize(size, 0);
    bytes
}

fn decode(bytes: &[u8]) -> Option<(u64, Agg)> {
    let u64_at = |at: usize| -> u64 {
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(word)
    };
    let time = u64_at(0);
    if time == 0 {
        return None;
    }
    let entries = u16::from_le_bytes([bytes[40], bytes[41]]) as usize;
    let histogram = (bytes.len() > FIXED).then(|| Histogram {
        buckets: (0..entries.min(HIST_SLOTS))
            .map(|i| {
                let at = FIXED + i * ENTRY;
                (
                    u16::from_le_bytes([bytes[at], bytes[at + 1]]),
                    u64_at(at + 2),
                )
            })
            .collect(),
    });
    Some((
        time,
        Agg {
            count: u64_at(8),
            sum: f64::from_bits(u64_at(16)),
            min: f64::from_bits(u64_at(24)),
            max: f64::from_bits(u64_at(32)),
            histogram,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SeriesKey {
        SeriesKey::new("latency_ms", [("service", "echo")])
    }

    fn small_tiers() -> Vec<Tier> {
        parse_tiers("10s:1m,1m:10m,1h:2h").unwrap()
    }

    #[test]
    fn tiers_parse_and_are_checked() {
        assert_eq!(parse_tiers("10s:6h,1m:7d,1h:90d").unwrap(), default_tiers());
        for bad in [
            "",
            "10s",
            "0s:1h",
            "10s:5s",
            "10s:1h,15s:1h",
            "1m:1h,10s:1h",
            "x:1h",
        ] {
            assert!(parse_tiers(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn slots_are_step_aligned_and_roll_up_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.rrd");
        let rrd = Rrd::create(&path, key(), true, &small_tiers()).unwrap();
        // Six 10 s steps inside one minute, the first not at a step boundary.
        let base = 1_800_000_000; // a whole hour
        for (i, values) in [
            [10u64, 20],
            [30, 40],
            [5, 5],
            [7, 9],
            [1000, 2000],
            [50, 60],
        ]
        .iter()
        .enumerate()
        {
            let agg = Agg::of_values(values.iter().map(|v| *v as f64), true);
            rrd.add(base + 3 + i as u64 * 10, &agg).unwrap();
        }
        let fine = rrd.read(0, base, base + 60).unwrap();
        assert_eq!(fine.len(), 6);
        assert!(fine.iter().all(|(t, _)| t % 10 == 0));
        assert_eq!(fine[0].1.count, 2);
        let minute = rrd.read(1, base, base + 60).unwrap();
        assert_eq!(minute.len(), 1);
        let m = &minute[0].1;
        assert_eq!(m.count, 12);
        assert_eq!(m.sum, 3236.0);
        assert_eq!((m.min, m.max), (5.0, 2000.0));
        let all = [10u64, 20, 30, 40, 5, 5, 7, 9, 1000, 2000, 50, 60];
        let mut exact = Histogram::of(all.iter().map(|v| v * 1000));
        exact.coarsen(HIST_SLOTS);
        assert_eq!(m.histogram.as_ref().unwrap(), &exact);
        let hour = rrd.read(2, base, base + 3600).unwrap();
        assert_eq!(hour[0].1.count, 12);
        assert_eq!(hour[0].1.sum, 3236.0);
    }

    #[test]
    fn the_file_size_is_fixed_and_old_slots_are_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.rrd");
        let tiers = small_tiers();
        let rrd = Rrd::create(&path, key(), false, &tiers).unwrap();
        let size = std::fs::metadata(&path).unwrap().len();
        assert_eq!(size, Rrd::file_size(&tiers, false));
        let base = 1_800_000_000; // a whole hour
        for i in 0..1000 {
            rrd.add(base + i * 10, &Agg::of_values([1.0], false))
                .unwrap();
        }
        assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
        // The 10 s tier keeps the last minute only.
        let end = base + 1000 * 10;
        assert_eq!(rrd.read(0, base, end).unwrap().len(), 6);
        assert_eq!(rrd.read(1, base, end).unwrap().len(), 10);
    }

    #[test]
    fn data_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.rrd");
        let base = 1_800_000_000; // a whole hour
        {
            let rrd = Rrd::create(&path, key(), true, &small_tiers()).unwrap();
            rrd.add(base, &Agg::of_values([3.0, 4.0], true)).unwrap();
        }
        let rrd = Rrd::open(&path).unwrap();
        assert_eq!(rrd.key(), &key());
        let slots = rrd.read(0, base, base + 10).unwrap();
        assert_eq!(slots[0].1.count, 2);
        assert_eq!(slots[0].1.histogram.as_ref().unwrap().count(), 2);
        // A truncated or foreign file is refused with its path named.
        std::fs::write(dir.path().join("bad.rrd"), b"hello").unwrap();
        let error = Rrd::open(&dir.path().join("bad.rrd"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("bad.rrd"), "{error}");
    }
}
