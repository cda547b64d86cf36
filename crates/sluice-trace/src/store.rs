//! Span storage: append-only segment files in the node's data directory, and
//! an index in memory, rebuilt from the segments when the node starts.
//!
//! A segment (`seg-000001.spans`) is a run of blocks. A block is the spans of a
//! few thousand traces ([`crate::codec`]), deflated, behind a 32-byte header:
//! magic `SLSB`, version, the payload's length and CRC-32, and the block's time
//! range. A torn block at the end of the newest segment (a crash mid-write) is
//! cut off when the store opens.
//!
//! The index holds, per trace and block, the trace's time range and whether it
//! failed, and lists of those entries by service and by (service, span name),
//! newest last — enough to answer Zipkin's queries by reading only the blocks of
//! the traces answered. Decoded blocks are cached.
//!
//! Bounds: total size (`max_bytes`, default 1 GiB) and age (`max_age`, default
//! 7 days); the oldest segment goes first. Blocks are written, not synced, as
//! they are made (spans are sampled telemetry: a crash may lose the last
//! second); a segment is synced when it is closed.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use crate::codec::{BlockView, BlockWriter, GroupSummary};
use crate::deps::{self, Dependencies, DependencyLink};
use crate::span::Span;
use crate::TraceId;

const MAGIC: &[u8; 4] = b"SLSB";
const HEADER: usize = 32;
/// Largest block payload read back (a corrupt length must not allocate more).
const MAX_BLOCK: usize = 64 * 1024 * 1024;

/// Where and how much.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The directory of the segments.
    pub dir: PathBuf,
    /// Most bytes on disk.
    pub max_bytes: u64,
    /// Oldest span kept.
    pub max_age: Duration,
    /// Spans per block (more compress better; fewer read faster).
    pub block_spans: usize,
    /// Most distinct span names indexed per service (beyond, searches by
    /// name read the service's traces).
    pub max_names: usize,
    /// Tag keys whose values `autocompleteValues` offers.
    pub autocomplete_keys: Vec<String>,
}

impl StoreConfig {
    /// The defaults, in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        StoreConfig {
            dir,
            max_bytes: 1 << 30,
            max_age: Duration::from_secs(7 * 24 * 3600),
            block_spans: 2048,
            max_names: 2000,
            autocomplete_keys: [
                "http.method",
                "http.status_code",
                "http.route",
                "sluice.route",
                "sluice.service",
                "sluice.rejected",
            ]
            .map(str::to_owned)
            .to_vec(),
        }
    }
}

/// What the store holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Spans stored.
    pub spans: u64,
    /// Trace entries (a trace per block it has spans in).
    pub entries: u64,
    /// Bytes on disk.
    pub bytes: u64,
    /// Segments.
    pub segments: usize,
    /// Spans dropped by the bounds so far.
    pub spans_expired: u64,
}

#[derive(Debug, Clone, Copy)]
struct BlockMeta {
    segment: u64,
    offset: u64,
    len: u32,
    spans: u32,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    trace: u128,
    block: u64,
    start_us: u64,
    end_us: u64,
    error: bool,
    /// The same trace's previous entry (its spans in an earlier block).
    previous: Option<u64>,
}

struct Segment {
    seq: u64,
    bytes: u64,
    newest_us: u64,
    /// The first block number in it.
    first_block: u64,
    spans: u64,
}

#[derive(Default)]
struct Names {
    services: HashMap<String, ServiceNames>,
    /// Known values of the autocomplete keys.
    values: HashMap<String, std::collections::BTreeSet<String>>,
}

#[derive(Default)]
struct ServiceNames {
    entries: VecDeque<u64>,
    spans: HashMap<String, VecDeque<u64>>,
    remote: std::collections::BTreeSet<String>,
    capped: bool,
}

#[derive(Default)]
struct Index {
    /// Blocks by number, from `first_block`.
    blocks: VecDeque<BlockMeta>,
    first_block: u64,
    /// Entries by number, from `first_entry`.
    entries: VecDeque<Entry>,
    first_entry: u64,
    /// The newest entry of each trace.
    latest: HashMap<u128, u64>,
    names: Names,
    segments: VecDeque<Segment>,
    deps: Dependencies,
    spans_expired: u64,
}

impl Index {
    fn entry(&self, number: u64) -> Option<&Entry> {
        let at = number.checked_sub(self.first_entry)?;
        self.entries.get(usize::try_from(at).ok()?)
    }

    fn block(&self, number: u64) -> Option<&BlockMeta> {
        let at = number.checked_sub(self.first_block)?;
        self.blocks.get(usize::try_from(at).ok()?)
    }

    fn add(&mut self, block: u64, summary: GroupSummary, config: &StoreConfig) {
        let number = self.first_entry + self.entries.len() as u64;
        let previous = self.latest.insert(summary.trace_id, number);
        self.entries.push_back(Entry {
            trace: summary.trace_id,
            block,
            start_us: summary.start_us,
            end_us: summary.end_us,
            error: summary.error,
            previous,
        });
        let mut seen_services: Vec<&str> = Vec::new();
        for (service, name, remote) in &summary.names {
            let names = self.names.services.entry(service.clone()).or_default();
            if !seen_services.contains(&service.as_str()) {
                names.entries.push_back(number);
                seen_services.push(service);
            }
            if let Some(name) = name {
                // Span names are indexed lowercase, as Zipkin keeps them.
                let name = lowercase(name);
                if let Some(list) = names.spans.get_mut(name.as_ref()) {
                    if list.back() != Some(&number) {
                        list.push_back(number);
                    }
                } else if names.spans.len() < config.max_names {
                    names
                        .spans
                        .insert(name.into_owned(), VecDeque::from([number]));
                } else {
                    names.capped = true;
                }
            }
            if let Some(remote) = remote {
                if names.remote.len() < config.max_names {
                    names.remote.insert(remote.clone());
                }
            }
        }
    }

    /// Forgets blocks before `block` and their entries.
    fn drop_before(&mut self, block: u64) {
        while self.first_block < block && self.blocks.pop_front().is_some() {
            self.first_block += 1;
        }
        while self.entries.front().is_some_and(|e| e.block < block) {
            if let Some(entry) = self.entries.pop_front() {
                if self.latest.get(&entry.trace) == Some(&self.first_entry) {
                    self.latest.remove(&entry.trace);
                }
                self.first_entry += 1;
            }
        }
        let first = self.first_entry;
        self.names.services.retain(|_, names| {
            while names.entries.front().is_some_and(|&n| n < first) {
                names.entries.pop_front();
            }
            names.spans.retain(|_, list| {
                while list.front().is_some_and(|&n| n < first) {
                    list.pop_front();
                }
                !list.is_empty()
            });
            !names.entries.is_empty()
        });
    }
}

/// `text` in lowercase, allocating only when it has uppercase letters.
fn lowercase(text: &str) -> std::borrow::Cow<'_, str> {
    if text.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(text.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// A Zipkin trace search (`GET /api/v2/traces`), in Zipkin's units converted
/// to µs.
#[derive(Debug, Clone, Default)]
pub struct TraceQuery {
    /// Spans of this service (lowercase).
    pub service: Option<String>,
    /// Calling this remote service.
    pub remote_service: Option<String>,
    /// With this span name (compared without case, as Zipkin lowercases names).
    pub span_name: Option<String>,
    /// `key=value` tags and bare words (a tag key or an annotation value), all
    /// to match.
    pub annotation_query: Vec<(String, Option<String>)>,
    /// Span duration at least, µs.
    pub min_duration_us: Option<u64>,
    /// Span duration at most, µs.
    pub max_duration_us: Option<u64>,
    /// Traces that started in `[end - lookback, end]`, epoch µs.
    pub end_us: u64,
    /// µs.
    pub lookback_us: u64,
    /// Most traces answered.
    pub limit: usize,
    /// Only traces with a failed span (Sluice's addition).
    pub errors_only: bool,
}

impl TraceQuery {
    fn needs_spans(&self) -> bool {
        self.remote_service.is_some()
            || !self.annotation_query.is_empty()
            || self.min_duration_us.is_some()
            || self.max_duration_us.is_some()
    }

    /// Whether one of the trace's spans matches (Zipkin: the conditions hold
    /// on spans of the service; tag terms may hold on different spans of it).
    fn matches(&self, spans: &[Span]) -> bool {
        let of_service: Vec<&Span> = spans
            .iter()
            .filter(|s| {
                self.service
                    .as_deref()
                    .is_none_or(|svc| s.service() == Some(svc))
            })
            .collect();
        if of_service.is_empty() {
            return false;
        }
        let named = |s: &&&Span| {
            self.span_name.as_deref().is_none_or(|name| {
                s.name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
            })
        };
        let timed = |s: &&&Span| {
            let d = s.duration.unwrap_or(0);
            self.min_duration_us.is_none_or(|min| d >= min)
                && self.max_duration_us.is_none_or(|max| d <= max)
        };
        let remote = |s: &&&Span| {
            self.remote_service.as_deref().is_none_or(|r| {
                s.remote_endpoint
                    .as_ref()
                    .and_then(|e| e.service_name.as_deref())
                    == Some(r)
            })
        };
        if !of_service
            .iter()
            .any(|s| named(&s) && timed(&s) && remote(&s))
        {
            return false;
        }
        self.annotation_query.iter().all(|(key, value)| {
            of_service.iter().any(|s| match value {
                Some(value) => s.tags.get(key) == Some(value),
                None => s.tags.contains_key(key) || s.annotations.iter().any(|a| &a.value == key),
            })
        })
    }
}

/// The entries a search walks, newest first.
enum Candidates<'i> {
    All,
    List(&'i VecDeque<u64>),
}

impl<'i> Candidates<'i> {
    /// Entry numbers below `cursor`, newest first.
    fn below(&self, index: &'i Index, cursor: u64) -> Box<dyn Iterator<Item = u64> + 'i> {
        match self {
            Candidates::All => {
                let end = (index.first_entry + index.entries.len() as u64).min(cursor);
                Box::new((index.first_entry..end).rev())
            }
            Candidates::List(list) => {
                let end = list.partition_point(|&n| n < cursor);
                Box::new(list.range(..end).rev().copied())
            }
        }
    }
}

struct Writer {
    file: Option<(u64, File, u64)>,
    next_seq: u64,
}

/// The span store.
pub struct SpanStore {
    config: StoreConfig,
    index: RwLock<Index>,
    writer: Mutex<Writer>,
    cache: Mutex<lru::LruCache<u64, Arc<BlockView>>>,
    /// Segments not read yet (see [`SpanStore::open_unloaded`]).
    unloaded: Mutex<Vec<u64>>,
    loading: std::sync::atomic::AtomicBool,
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("seg-{seq:06}.spans"))
}

fn inflate(payload: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(payload.len() * 4);
    flate2::read::DeflateDecoder::new(payload)
        .take(MAX_BLOCK as u64 * 8)
        .read_to_end(&mut out)?;
    Ok(out)
}

fn corrupt(what: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

impl SpanStore {
    /// Opens (or creates) the store, reading every segment to rebuild the index.
    pub fn open(config: StoreConfig) -> std::io::Result<Self> {
        let store = Self::open_unloaded(config)?;
        store.load_existing()?;
        Ok(store)
    }

    /// Opens (or creates) the store without reading its segments: they are
    /// read by [`SpanStore::load_existing`], which the pipeline's worker runs
    /// before it writes anything — so a node with a large store is ready at
    /// once, and its queries see the older spans as they are read.
    pub fn open_unloaded(config: StoreConfig) -> std::io::Result<Self> {
        std::fs::create_dir_all(&config.dir)?;
        let mut seqs: Vec<u64> = std::fs::read_dir(&config.dir)?
            .filter_map(|entry| {
                let name = entry.ok()?.file_name().into_string().ok()?;
                name.strip_prefix("seg-")?
                    .strip_suffix(".spans")?
                    .parse()
                    .ok()
            })
            .collect();
        seqs.sort_unstable();
        let store = SpanStore {
            index: RwLock::new(Index::default()),
            writer: Mutex::new(Writer {
                file: None,
                next_seq: seqs.last().map_or(1, |s| s + 1),
            }),
            cache: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(64).unwrap_or(NonZeroUsize::MIN),
            )),
            loading: std::sync::atomic::AtomicBool::new(!seqs.is_empty()),
            unloaded: Mutex::new(seqs),
            config,
        };
        Ok(store)
    }

    /// Reads the segments that were there when the store was opened, oldest
    /// first, indexing them block by block (queries are held off a block at a
    /// time, not for the whole load).
    pub fn load_existing(&self) -> std::io::Result<()> {
        let seqs = std::mem::take(&mut *self.unloaded.lock());
        let result = seqs.into_iter().try_for_each(|seq| self.load_segment(seq));
        self.loading
            .store(false, std::sync::atomic::Ordering::Release);
        result
    }

    /// Whether older segments are still being read.
    pub fn is_loading(&self) -> bool {
        self.loading.load(std::sync::atomic::Ordering::Acquire)
    }

    fn load_segment(&self, seq: u64) -> std::io::Result<()> {
        let path = segment_path(&self.config.dir, seq);
        let mut bytes = Vec::new();
        File::open(&path)?.read_to_end(&mut bytes)?;
        let mut offset = 0usize;
        let first_block = {
            let index = self.index.read();
            index.first_block + index.blocks.len() as u64
        };
        let mut segment = Segment {
            seq,
            bytes: 0,
            newest_us: 0,
            first_block,
            spans: 0,
        };
        while offset + HEADER <= bytes.len() {
            let header = &bytes[offset..offset + HEADER];
            let len = u32::from_le_bytes([header[8], header[9], header[10], header[11]]) as usize;
            let crc = u32::from_le_bytes([header[12], header[13], header[14], header[15]]);
            let newest = u64::from_le_bytes(header[24..32].try_into().unwrap_or([0; 8]));
            let end = offset + HEADER + len;
            if &header[..4] != MAGIC || len > MAX_BLOCK || end > bytes.len() {
                break;
            }
            let payload = &bytes[offset + HEADER..end];
            if crc32fast::hash(payload) != crc {
                break;
            }
            let Ok(view) = inflate(payload)
                .map_err(corrupt)
                .and_then(|raw| BlockView::parse(raw).map_err(corrupt))
            else {
                break;
            };
            let groups = view.all();
            let spans: usize = groups.iter().map(Vec::len).sum();
            let mut index = self.index.write();
            let block = index.first_block + index.blocks.len() as u64;
            index.blocks.push_back(BlockMeta {
                segment: seq,
                offset: offset as u64,
                len: (HEADER + len) as u32,
                spans: spans as u32,
            });
            for group in &groups {
                self.index_group(&mut index, block, group);
            }
            drop(index);
            segment.bytes = end as u64;
            segment.newest_us = segment.newest_us.max(newest);
            segment.spans += spans as u64;
            offset = end;
        }
        if offset < bytes.len() {
            tracing::warn!(
                segment = %path.display(),
                at = offset,
                "a span segment ends in a torn or corrupt block; cutting it off there"
            );
            OpenOptions::new()
                .write(true)
                .open(&path)?
                .set_len(offset as u64)?;
        }
        self.index.write().segments.push_back(segment);
        Ok(())
    }

    fn index_group(&self, index: &mut Index, block: u64, group: &[Span]) {
        let Some(first) = group.first() else {
            return;
        };
        let Some(trace) = TraceId::from_hex(&first.trace_id) else {
            return;
        };
        index.add(block, crate::codec::summarize(trace, group), &self.config);
        self.note_values(index, group);
        for link in deps::links(group) {
            index.deps.add(&link);
        }
    }

    fn note_values(&self, index: &mut Index, spans: &[Span]) {
        for key in &self.config.autocomplete_keys {
            for span in spans {
                if let Some(value) = span.tags.get(key) {
                    let values = index.names.values.entry(key.clone()).or_default();
                    if values.len() < 1000 && !values.contains(value) {
                        values.insert(value.clone());
                    }
                }
            }
        }
    }

    /// Stores traces (each the spans of one trace). Writes one block per
    /// `block_spans` spans.
    pub fn append(&self, traces: Vec<Vec<Span>>) -> std::io::Result<()> {
        let mut batch: Vec<(TraceId, Vec<Span>)> = Vec::new();
        let mut count = 0;
        for spans in traces {
            let Some(trace) = spans.first().and_then(|s| TraceId::from_hex(&s.trace_id)) else {
                continue;
            };
            count += spans.len();
            batch.push((trace, spans));
            if count >= self.config.block_spans {
                self.write_block(std::mem::take(&mut batch))?;
                count = 0;
            }
        }
        if !batch.is_empty() {
            self.write_block(batch)?;
        }
        Ok(())
    }

    fn write_block(&self, traces: Vec<(TraceId, Vec<Span>)>) -> std::io::Result<()> {
        let base = traces
            .iter()
            .flat_map(|(_, spans)| spans.iter().filter_map(|s| s.timestamp))
            .min()
            .unwrap_or(0);
        let total: usize = traces.iter().map(|(_, spans)| spans.len()).sum();
        let mut block = BlockWriter::with_capacity(base, total);
        let mut summaries = Vec::with_capacity(traces.len());
        let mut links = Vec::new();
        for (trace, spans) in &traces {
            summaries.push(block.add_trace(*trace, spans));
            links.extend(deps::links(spans));
        }
        let spans = block.spans();
        let newest = summaries.iter().map(|s| s.end_us).max().unwrap_or(0);
        let raw = block.finish();
        // Level 2: nearly level 6's ratio on string-tabled spans at a fraction
        // of its CPU (docs/BENCHMARKS.md, "Tracing").
        let mut encoder = flate2::write::DeflateEncoder::new(
            Vec::with_capacity(raw.len() / 3),
            flate2::Compression::new(2),
        );
        encoder.write_all(&raw)?;
        let payload = encoder.finish()?;
        if payload.len() > MAX_BLOCK {
            return Err(corrupt("a span block is over 64 MiB compressed"));
        }
        let mut record = Vec::with_capacity(HEADER + payload.len());
        record.extend_from_slice(MAGIC);
        record.extend_from_slice(&[1, 0, 0, 0]);
        record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        record.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        record.extend_from_slice(&base.to_le_bytes());
        record.extend_from_slice(&newest.to_le_bytes());
        record.extend_from_slice(&payload);

        let mut writer = self.writer.lock();
        let segment_limit = (self.config.max_bytes / 8).clamp(1 << 20, 64 << 20);
        if writer
            .file
            .as_ref()
            .is_some_and(|(_, _, size)| *size >= segment_limit)
        {
            if let Some((_, file, _)) = writer.file.take() {
                file.sync_all()?;
            }
        }
        if writer.file.is_none() {
            let seq = writer.next_seq;
            writer.next_seq += 1;
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(segment_path(&self.config.dir, seq))?;
            writer.file = Some((seq, file, 0));
            let mut index = self.index.write();
            let first_block = index.first_block + index.blocks.len() as u64;
            index.segments.push_back(Segment {
                seq,
                bytes: 0,
                newest_us: 0,
                first_block,
                spans: 0,
            });
        }
        let Some((seq, file, size)) = writer.file.as_mut() else {
            return Ok(());
        };
        let offset = *size;
        file.write_all(&record)?;
        *size += record.len() as u64;
        let seq = *seq;
        let mut index = self.index.write();
        let number = index.first_block + index.blocks.len() as u64;
        index.blocks.push_back(BlockMeta {
            segment: seq,
            offset,
            len: record.len() as u32,
            spans: spans as u32,
        });
        if let Some(segment) = index.segments.back_mut() {
            segment.bytes += record.len() as u64;
            segment.newest_us = segment.newest_us.max(newest);
            segment.spans += spans as u64;
        }
        for (summary, (_, spans)) in summaries.into_iter().zip(&traces) {
            index.add(number, summary, &self.config);
            self.note_values(&mut index, spans);
        }
        for link in &links {
            index.deps.add(link);
        }
        drop(index);
        drop(writer);
        Ok(())
    }

    /// Drops the oldest segments past the size or age bound. `now_us`: epoch µs.
    pub fn enforce_bounds(&self, now_us: u64) -> std::io::Result<()> {
        let oldest_allowed = now_us
            .saturating_sub(u64::try_from(self.config.max_age.as_micros()).unwrap_or(u64::MAX));
        let current = self.writer.lock().file.as_ref().map(|(seq, _, _)| *seq);
        loop {
            let mut index = self.index.write();
            let total: u64 = index.segments.iter().map(|s| s.bytes).sum();
            let Some(oldest) = index.segments.front() else {
                break;
            };
            let too_big = total > self.config.max_bytes && index.segments.len() > 1;
            let too_old = oldest.newest_us < oldest_allowed && oldest.newest_us > 0;
            // The segment being written goes only when it is too old.
            let writing = Some(oldest.seq) == current;
            if !too_old && (!too_big || writing) {
                break;
            }
            let Some(segment) = index.segments.pop_front() else {
                break;
            };
            let next_block = index
                .segments
                .front()
                .map_or(index.first_block + index.blocks.len() as u64, |s| {
                    s.first_block
                });
            index.drop_before(next_block);
            index.spans_expired += segment.spans;
            drop(index);
            if Some(segment.seq) == current {
                self.writer.lock().file = None;
            }
            std::fs::remove_file(segment_path(&self.config.dir, segment.seq))?;
        }
        self.index.write().deps.compact(now_us, oldest_allowed);
        Ok(())
    }

    fn view(&self, number: u64) -> Option<Arc<BlockView>> {
        if let Some(view) = self.cache.lock().get(&number) {
            return Some(Arc::clone(view));
        }
        let meta = *self.index.read().block(number)?;
        let read = || -> std::io::Result<BlockView> {
            let mut file = File::open(segment_path(&self.config.dir, meta.segment))?;
            file.seek(SeekFrom::Start(meta.offset))?;
            let mut record = vec![0u8; meta.len as usize];
            file.read_exact(&mut record)?;
            let payload = record.get(HEADER..).ok_or_else(|| corrupt("short block"))?;
            BlockView::parse(inflate(payload)?).map_err(corrupt)
        };
        match read() {
            Ok(view) => {
                let view = Arc::new(view);
                self.cache.lock().put(number, Arc::clone(&view));
                Some(view)
            }
            Err(error) => {
                tracing::warn!(%error, block = number, "cannot read a span block");
                None
            }
        }
    }

    /// Every span of a trace, by start time; empty when unknown.
    pub fn trace(&self, trace: TraceId) -> Vec<Span> {
        let blocks: Vec<u64> = {
            let index = self.index.read();
            let mut blocks = Vec::new();
            let mut next = index.latest.get(&trace.get()).copied();
            while let Some(entry) = next.and_then(|n| index.entry(n)) {
                if !blocks.contains(&entry.block) {
                    blocks.push(entry.block);
                }
                next = entry.previous;
            }
            blocks
        };
        let mut spans: Vec<Span> = blocks
            .into_iter()
            .rev()
            .filter_map(|b| self.view(b))
            .flat_map(|view| view.trace(trace.get()))
            .collect();
        spans.sort_by_key(|s| s.timestamp.unwrap_or(0));
        spans
    }

    /// Traces matching a search, newest first. Candidates are taken from the
    /// most selective entry list a few at a time (under the index's read lock),
    /// then read and checked (without it), until `limit` traces match.
    pub fn search(&self, query: &TraceQuery) -> Vec<Vec<Span>> {
        const BATCH: usize = 32;
        let start_us = query.end_us.saturating_sub(query.lookback_us);
        let verify = query.needs_spans() || query.span_name.is_some();
        let mut answer = Vec::new();
        let mut seen = HashSet::new();
        // Entries below this number are still to be looked at.
        let mut cursor = u64::MAX;
        while answer.len() < query.limit {
            let batch: Vec<u128> = {
                let index = self.index.read();
                let Some(list) = Self::candidates(&index, query) else {
                    return answer;
                };
                let mut batch = Vec::new();
                let mut last = None;
                for number in list.below(&index, cursor) {
                    last = Some(number);
                    let Some(entry) = index.entry(number) else {
                        continue;
                    };
                    if entry.start_us > query.end_us || entry.end_us < start_us {
                        continue;
                    }
                    if query.errors_only && !entry.error {
                        continue;
                    }
                    if seen.insert(entry.trace) {
                        batch.push(entry.trace);
                        if batch.len() >= BATCH.min(query.limit - answer.len()).max(1) && !verify
                            || batch.len() >= BATCH
                        {
                            break;
                        }
                    }
                }
                match last {
                    Some(number) => cursor = number,
                    None => return answer,
                }
                batch
            };
            for trace in batch {
                if answer.len() >= query.limit {
                    break;
                }
                let Some(trace) = TraceId::new(trace) else {
                    continue;
                };
                let spans = self.trace(trace);
                if spans.is_empty() || (verify && !query.matches(&spans)) {
                    continue;
                }
                answer.push(spans);
            }
            if cursor == 0 {
                break;
            }
        }
        answer
    }

    /// The entry list a search walks: all entries, a service's, or a
    /// (service, span name)'s. `None`: nothing can match.
    fn candidates<'i>(index: &'i Index, query: &TraceQuery) -> Option<Candidates<'i>> {
        let Some(service) = &query.service else {
            return Some(Candidates::All);
        };
        let names = index.names.services.get(service)?;
        match query
            .span_name
            .as_ref()
            .and_then(|n| names.spans.get(lowercase(n).as_ref()))
        {
            Some(list) => Some(Candidates::List(list)),
            None if query.span_name.is_some() && !names.capped => None,
            None => Some(Candidates::List(&names.entries)),
        }
    }

    /// Services that recorded spans, sorted.
    pub fn services(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .index
            .read()
            .names
            .services
            .keys()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect();
        names.sort();
        names
    }

    /// The span names of a service, sorted.
    pub fn span_names(&self, service: &str) -> Vec<String> {
        let index = self.index.read();
        let mut names: Vec<String> = index
            .names
            .services
            .get(service)
            .map(|n| n.spans.keys().cloned().collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    /// The services a service calls (its spans' remote endpoints), sorted.
    pub fn remote_services(&self, service: &str) -> Vec<String> {
        let index = self.index.read();
        index
            .names
            .services
            .get(service)
            .map(|n| n.remote.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The tag keys offered for autocompletion.
    pub fn autocomplete_keys(&self) -> Vec<String> {
        self.config.autocomplete_keys.clone()
    }

    /// Known values of an autocomplete key, sorted.
    pub fn autocomplete_values(&self, key: &str) -> Vec<String> {
        let index = self.index.read();
        index
            .names
            .values
            .get(key)
            .map(|v| v.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The dependency graph of `[end - lookback, end]`, epoch µs.
    pub fn dependencies(
        &self,
        end_us: u64,
        lookback_us: u64,
        quantiles: bool,
    ) -> Vec<DependencyLink> {
        self.index.read().deps.query(end_us, lookback_us, quantiles)
    }

    /// What it holds.
    pub fn stats(&self) -> StoreStats {
        let index = self.index.read();
        StoreStats {
            spans: index.blocks.iter().map(|b| u64::from(b.spans)).sum(),
            entries: index.entries.len() as u64,
            bytes: index.segments.iter().map(|s| s.bytes).sum(),
            segments: index.segments.len(),
            spans_expired: index.spans_expired,
        }
    }

    /// Syncs the open segment to disk.
    pub fn sync(&self) -> std::io::Result<()> {
        if let Some((_, file, _)) = self.writer.lock().file.as_ref() {
            file.sync_data()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::{Endpoint, Kind};

    pub(crate) fn span(trace: u128, id: u64, parent: Option<u64>, service: &str, at: u64) -> Span {
        Span {
            trace_id: format!("{trace:032x}"),
            id: format!("{id:016x}"),
            parent_id: parent.map(|p| format!("{p:016x}")),
            name: Some(format!("get /{service}")),
            kind: Some(Kind::Server),
            timestamp: Some(at),
            duration: Some(1000 + id),
            local_endpoint: Some(Endpoint {
                service_name: Some(service.into()),
                ..Endpoint::default()
            }),
            remote_endpoint: None,
            annotations: Vec::new(),
            tags: [("http.method".to_owned(), "GET".to_owned())].into(),
            debug: false,
            shared: false,
        }
    }

    fn store(dir: &Path) -> SpanStore {
        let mut config = StoreConfig::new(dir.to_owned());
        config.block_spans = 100;
        SpanStore::open(config).unwrap()
    }

    #[test]
    fn traces_are_found_by_id_and_by_search_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let base = 1_700_000_000_000_000u64;
        {
            let store = store(dir.path());
            let traces: Vec<Vec<Span>> = (1..=500u128)
                .map(|t| {
                    let at = base + t as u64 * 1000;
                    let mut root = span(t, 1, None, "front", at);
                    if t % 50 == 0 {
                        root.tags.insert("error".into(), "boom".into());
                    }
                    vec![root, span(t, 2, Some(1), "back", at + 10)]
                })
                .collect();
            store.append(traces).unwrap();
            // A late span of trace 7, in a block of its own.
            store
                .append(vec![vec![span(7, 3, Some(2), "db", base + 7010)]])
                .unwrap();
            assert_eq!(store.stats().spans, 1001);
        }
        let store = store(dir.path());
        assert_eq!(store.stats().spans, 1001);
        let trace = store.trace(TraceId::new(7).unwrap());
        assert_eq!(trace.len(), 3, "spans from two blocks");
        assert!(store.trace(TraceId::new(9999).unwrap()).is_empty());
        assert_eq!(store.services(), vec!["back", "db", "front"]);
        assert_eq!(store.span_names("front"), vec!["get /front"]);
        let end = base + 501 * 1000;
        let query = |f: &dyn Fn(&mut TraceQuery)| {
            let mut q = TraceQuery {
                end_us: end,
                lookback_us: 10_000_000,
                limit: 10,
                ..TraceQuery::default()
            };
            f(&mut q);
            store.search(&q)
        };
        let newest = query(&|q| q.service = Some("front".into()));
        assert_eq!(newest.len(), 10);
        assert_eq!(newest[0][0].trace_id, format!("{:032x}", 500));
        let failed = query(&|q| {
            q.annotation_query = vec![("error".into(), None)];
            q.limit = 100;
        });
        assert_eq!(failed.len(), 10);
        let errors = query(&|q| {
            q.errors_only = true;
            q.limit = 100;
        });
        assert_eq!(errors.len(), 10);
        let slow = query(&|q| {
            q.service = Some("db".into());
            q.min_duration_us = Some(1003);
        });
        assert_eq!(slow.len(), 1);
        let named = query(&|q| {
            q.service = Some("front".into());
            q.span_name = Some("GET /Front".into());
            q.min_duration_us = Some(1);
        });
        assert_eq!(named.len(), 10, "span names compare without case");
        let none = query(&|q| {
            q.service = Some("front".into());
            q.span_name = Some("nope".into());
        });
        assert!(none.is_empty());
        let old = query(&|q| {
            q.service = Some("front".into());
            q.end_us = base;
        });
        assert!(old.is_empty());
        assert_eq!(store.autocomplete_values("http.method"), vec!["GET"]);
    }

    #[test]
    fn a_torn_block_is_cut_and_size_bounds_drop_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = store(dir.path());
            store.append(vec![vec![span(1, 1, None, "a", 1)]]).unwrap();
        }
        let path = segment_path(dir.path(), 1);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"SLSB\x01\0\0\0garbage").unwrap();
        drop(file);
        let store = store(dir.path());
        assert_eq!(store.stats().spans, 1);
        assert_eq!(store.trace(TraceId::new(1).unwrap()).len(), 1);
        drop(store);

        let mut config = StoreConfig::new(dir.path().to_owned());
        config.max_bytes = 2 << 20;
        config.block_spans = 1000;
        let store = SpanStore::open(config).unwrap();
        let mut t = 10u128;
        for _ in 0..120 {
            let traces = (0..1000)
                .map(|_| {
                    t += 1;
                    let mut s = span(t, 1, None, "a", 1_000_000 + t as u64);
                    s.tags
                        .insert("noise".into(), format!("{:x}", fastrand::u128(..)));
                    vec![s]
                })
                .collect();
            store.append(traces).unwrap();
            store.enforce_bounds(2_000_000).unwrap();
        }
        let stats = store.stats();
        assert!(stats.bytes <= 2 << 20, "{stats:?}");
        assert!(stats.spans_expired > 0, "{stats:?}");
        assert!(
            store.trace(TraceId::new(1).unwrap()).is_empty(),
            "the oldest went"
        );
        assert_eq!(store.trace(TraceId::new(t).unwrap()).len(), 1);
        drop(store);
        let reopened = SpanStore::open(StoreConfig::new(dir.path().to_owned())).unwrap();
        assert_eq!(reopened.stats().spans, stats.spans);
    }
}
