//! Tail decisions at ingest: a trace's spans are held for a short window
//! (from its first span), then the trace is kept whole or dropped whole. Kept:
//! every trace with a failed span; every trace whose root was slower than its
//! API's threshold (by default that API's current p98, learnt from the roots
//! seen in the last two minutes); debug traces; the first few traces of each
//! API every second (the floor, so quiet APIs are never invisible); and of the
//! rest, the configured ratio — by trace id, so every node decides alike.
//!
//! Memory is bounded: past `max_spans` held, the oldest traces are decided
//! early. Decisions are remembered for a while, so spans that arrive after
//! their trace was decided follow it.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use crate::deps::Histogram;
use crate::span::Span;
use crate::TraceId;

/// When a root counts as slow.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Slow {
    /// Slower than its API's current p98 (once 20 roots of it were seen).
    P98,
    /// Slower than this.
    Above(Duration),
    /// Never.
    Off,
}

/// The tail sampler's settings.
#[derive(Debug, Clone)]
pub struct TailConfig {
    /// How long a trace's spans are held before it is decided.
    pub window: Duration,
    /// The share of ordinary traces kept (0..=1).
    pub keep_ratio: f64,
    /// When a root is slow.
    pub slow: Slow,
    /// Traces per API per second kept whatever the ratio.
    pub floor_per_second: u32,
    /// Most spans held undecided.
    pub max_spans: usize,
    /// Decisions remembered for late spans.
    pub remembered: usize,
}

impl Default for TailConfig {
    fn default() -> Self {
        TailConfig {
            window: Duration::from_secs(5),
            keep_ratio: 0.1,
            slow: Slow::P98,
            floor_per_second: 1,
            max_spans: 500_000,
            remembered: 200_000,
        }
    }
}

/// Why a trace was kept or dropped; the counters are by these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// A span failed.
    Error,
    /// The root was slow.
    Slow,
    /// Marked debug.
    Debug,
    /// Within its API's floor.
    Floor,
    /// Within the ratio.
    Ratio,
    /// None of those.
    Dropped,
}

impl Decision {
    /// Every decision, for counters.
    pub const ALL: [Decision; 6] = [
        Decision::Error,
        Decision::Slow,
        Decision::Debug,
        Decision::Floor,
        Decision::Ratio,
        Decision::Dropped,
    ];

    /// The label.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Error => "error",
            Decision::Slow => "slow",
            Decision::Debug => "debug",
            Decision::Floor => "floor",
            Decision::Ratio => "ratio",
            Decision::Dropped => "dropped",
        }
    }

    fn kept(self) -> bool {
        self != Decision::Dropped
    }
}

/// What the sampler has done.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TailCounts {
    /// Traces decided, by decision (in [`Decision::ALL`] order).
    pub decided: [u64; 6],
    /// Traces decided before their window ended, to stay within `max_spans`.
    pub decided_early: u64,
    /// Spans that came after their trace was kept (and were kept).
    pub late_kept: u64,
    /// Spans that came after their trace was dropped (and were dropped).
    pub late_dropped: u64,
}

struct Held {
    first_ms: u64,
    spans: Vec<Span>,
}

/// Recent root durations of one API: this minute's and the last.
#[derive(Default)]
struct ApiLatency {
    minute: u64,
    current: Histogram,
    previous: Histogram,
}

impl ApiLatency {
    fn roll(&mut self, minute: u64) {
        if minute != self.minute {
            self.previous = if minute == self.minute + 1 {
                std::mem::take(&mut self.current)
            } else {
                Histogram::default()
            };
            self.current = Histogram::default();
            self.minute = minute;
        }
    }

    fn p98(&self) -> Option<u64> {
        let mut both = self.current.clone();
        both.merge(&self.previous);
        (both.count() >= 20).then(|| both.quantile(0.98)).flatten()
    }
}

/// Most APIs whose latency and floor are tracked; others share one entry.
const MAX_APIS: usize = 10_000;

/// The sampler. Not thread-safe by itself: one ingest worker drives it.
pub struct Tail {
    config: TailConfig,
    held: HashMap<u128, Held>,
    order: VecDeque<u128>,
    held_spans: usize,
    decided: HashMap<u128, bool>,
    decided_order: VecDeque<u128>,
    latency: HashMap<String, ApiLatency>,
    floor: HashMap<String, (u64, u32)>,
    counts: TailCounts,
}

impl Tail {
    /// A sampler with these settings.
    pub fn new(config: TailConfig) -> Self {
        Tail {
            config,
            held: HashMap::new(),
            order: VecDeque::new(),
            held_spans: 0,
            decided: HashMap::new(),
            decided_order: VecDeque::new(),
            latency: HashMap::new(),
            floor: HashMap::new(),
            counts: TailCounts::default(),
        }
    }

    /// What it has done so far.
    pub fn counts(&self) -> &TailCounts {
        &self.counts
    }

    /// Spans held undecided.
    pub fn held_spans(&self) -> usize {
        self.held_spans
    }

    /// Takes spans (of any traces). Answers the traces to store now: late
    /// spans of kept traces, and traces decided early to stay within bounds.
    pub fn offer(&mut self, spans: Vec<Span>, now_ms: u64) -> Vec<Vec<Span>> {
        let mut out = Vec::new();
        for span in spans {
            let Some(trace) = TraceId::from_hex(&span.trace_id).map(TraceId::get) else {
                continue;
            };
            if let Some(&kept) = self.decided.get(&trace) {
                if kept {
                    self.counts.late_kept += 1;
                    out.push(vec![span]);
                } else {
                    self.counts.late_dropped += 1;
                }
                continue;
            }
            let held = self.held.entry(trace).or_insert_with(|| {
                self.order.push_back(trace);
                Held {
                    first_ms: now_ms,
                    spans: Vec::new(),
                }
            });
            held.spans.push(span);
            self.held_spans += 1;
        }
        while self.held_spans > self.config.max_spans {
            let Some(trace) = self.order.pop_front() else {
                break;
            };
            if let Some(kept) = self.decide(trace, now_ms) {
                self.counts.decided_early += 1;
                out.extend(kept);
            }
        }
        out
    }

    /// Decides the traces whose window has passed; answers the kept ones.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Vec<Span>> {
        let window = u64::try_from(self.config.window.as_millis()).unwrap_or(u64::MAX);
        let mut out = Vec::new();
        while let Some(&trace) = self.order.front() {
            let due = self
                .held
                .get(&trace)
                .is_none_or(|h| now_ms.saturating_sub(h.first_ms) >= window);
            if !due {
                break;
            }
            self.order.pop_front();
            if let Some(kept) = self.decide(trace, now_ms) {
                out.extend(kept);
            }
        }
        out
    }

    /// Decides every held trace now (at shutdown).
    pub fn drain(&mut self, now_ms: u64) -> Vec<Vec<Span>> {
        let mut out = Vec::new();
        while let Some(trace) = self.order.pop_front() {
            if let Some(kept) = self.decide(trace, now_ms) {
                out.extend(kept);
            }
        }
        out
    }

    /// Decides one held trace: `Some(Some(spans))` kept, `Some(None)` dropped
    /// (flattened by the callers), `None` not held.
    fn decide(&mut self, trace: u128, now_ms: u64) -> Option<Option<Vec<Span>>> {
        let held = self.held.remove(&trace)?;
        self.held_spans -= held.spans.len();
        let decision = self.judge(trace, &held.spans, now_ms);
        let index = Decision::ALL
            .iter()
            .position(|d| *d == decision)
            .unwrap_or(0);
        self.counts.decided[index] += 1;
        self.remember(trace, decision.kept());
        Some(decision.kept().then_some(held.spans))
    }

    fn remember(&mut self, trace: u128, kept: bool) {
        if self.decided.insert(trace, kept).is_none() {
            self.decided_order.push_back(trace);
        }
        while self.decided_order.len() > self.config.remembered {
            if let Some(old) = self.decided_order.pop_front() {
                self.decided.remove(&old);
            }
        }
    }

    fn judge(&mut self, trace: u128, spans: &[Span], now_ms: u64) -> Decision {
        // The root: the span without a parent, else the earliest.
        let root = spans
            .iter()
            .find(|s| s.parent_id.is_none())
            .or_else(|| spans.iter().min_by_key(|s| s.timestamp.unwrap_or(u64::MAX)));
        let api = root.map(|root| {
            format!(
                "{} {}",
                root.service().unwrap_or(""),
                root.name.as_deref().unwrap_or("")
            )
        });
        let duration = root.and_then(|r| r.duration);
        let slow = match (self.config.slow, duration) {
            (Slow::Off, _) | (_, None) => false,
            (Slow::Above(limit), Some(us)) => u128::from(us) > limit.as_micros(),
            (Slow::P98, Some(us)) => api
                .as_ref()
                .and_then(|api| self.latency_of(api, now_ms).p98())
                .is_some_and(|p98| us > p98),
        };
        if let (Some(api), Some(us)) = (&api, duration) {
            self.latency_of(api, now_ms).current.record(us);
        }
        if spans.iter().any(Span::is_error) {
            return Decision::Error;
        }
        if slow {
            return Decision::Slow;
        }
        if spans.iter().any(|s| s.debug) {
            return Decision::Debug;
        }
        if let Some(api) = api {
            if self.within_floor(api, now_ms) {
                return Decision::Floor;
            }
        }
        // Ratio by the trace id's low 64 bits (random in both id widths).
        let draw = (trace as u64) as f64 / u64::MAX as f64;
        if draw < self.config.keep_ratio {
            return Decision::Ratio;
        }
        Decision::Dropped
    }

    fn latency_of(&mut self, api: &str, now_ms: u64) -> &mut ApiLatency {
        let key = if self.latency.len() < MAX_APIS || self.latency.contains_key(api) {
            api
        } else {
            ""
        };
        let entry = self.latency.entry(key.to_owned()).or_default();
        entry.roll(now_ms / 60_000);
        entry
    }

    fn within_floor(&mut self, api: String, now_ms: u64) -> bool {
        if self.config.floor_per_second == 0 {
            return false;
        }
        let second = now_ms / 1000;
        let key = if self.floor.len() < MAX_APIS || self.floor.contains_key(&api) {
            api
        } else {
            String::new()
        };
        let (at, count) = self.floor.entry(key).or_insert((second, 0));
        if *at != second {
            *at = second;
            *count = 0;
        }
        if *count < self.config.floor_per_second {
            *count += 1;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::Endpoint;

    fn span(trace: u128, id: u64, parent: Option<u64>, us: u64, error: bool) -> Span {
        let mut tags = std::collections::BTreeMap::new();
        if error {
            tags.insert("error".to_owned(), "500".to_owned());
        }
        Span {
            trace_id: format!("{trace:032x}"),
            id: format!("{id:016x}"),
            parent_id: parent.map(|p| format!("{p:016x}")),
            name: Some("get /a".into()),
            kind: None,
            timestamp: Some(1),
            duration: Some(us),
            local_endpoint: Some(Endpoint {
                service_name: Some("gw".into()),
                ..Endpoint::default()
            }),
            remote_endpoint: None,
            annotations: Vec::new(),
            tags,
            debug: false,
            shared: false,
        }
    }

    #[test]
    fn failed_and_slow_traces_are_kept_whole_the_rest_at_the_ratio() {
        let mut tail = Tail::new(TailConfig {
            window: Duration::from_millis(100),
            keep_ratio: 0.01,
            floor_per_second: 0,
            ..TailConfig::default()
        });
        let mut kept = Vec::new();
        let (mut failed, mut slow) = (Vec::new(), Vec::new());
        for i in 0..5000u128 {
            let trace = (i + 1) << 64 | u128::from(fastrand::u64(1..));
            let error = i % 100 == 7;
            let duration = if i > 200 && i % 100 == 50 {
                90_000
            } else {
                1000 + (i as u64 % 50)
            };
            if error {
                failed.push(trace);
            } else if duration > 10_000 {
                slow.push(trace);
            }
            // The child arrives first, the root later in the window.
            kept.extend(tail.offer(vec![span(trace, 2, Some(1), 500, error)], i as u64));
            kept.extend(tail.offer(vec![span(trace, 1, None, duration, false)], i as u64));
            kept.extend(tail.tick(i as u64));
        }
        kept.extend(tail.drain(10_000));
        let by_trace: HashMap<String, usize> = kept.iter().fold(HashMap::new(), |mut m, t| {
            *m.entry(t[0].trace_id.clone()).or_default() += t.len();
            m
        });
        for trace in failed.iter().chain(&slow) {
            assert_eq!(
                by_trace.get(&format!("{trace:032x}")),
                Some(&2),
                "kept whole"
            );
        }
        let counts = tail.counts();
        assert_eq!(counts.decided[0], failed.len() as u64);
        assert_eq!(counts.decided[1], slow.len() as u64);
        let ordinary = 5000 - failed.len() - slow.len();
        let ratio = counts.decided[4] as f64 / ordinary as f64;
        assert!(ratio < 0.03, "{ratio}");
        assert_eq!(tail.held_spans(), 0);
        // A late span follows its trace's decision.
        let late = tail.offer(vec![span(failed[0], 3, Some(1), 1, false)], 10_001);
        assert_eq!(late.len(), 1);
        assert_eq!(tail.counts().late_kept, 1);
    }

    #[test]
    fn memory_stays_bounded_and_the_floor_keeps_quiet_apis() {
        let mut tail = Tail::new(TailConfig {
            max_spans: 100,
            keep_ratio: 0.0,
            floor_per_second: 2,
            ..TailConfig::default()
        });
        let mut kept = 0;
        for i in 0..1000u128 {
            kept += tail.offer(vec![span(i + 1, 1, None, 10, false)], 5).len();
            assert!(tail.held_spans() <= 100);
        }
        assert_eq!(tail.counts().decided_early, 900);
        assert_eq!(kept, 2, "the floor: two a second");
    }
}
