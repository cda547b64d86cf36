//! The dependency graph: who calls whom, from the parent/child relations of
//! spans across services, kept live as traces are stored (no batch job) —
//! calls, errors and a latency histogram per edge, per minute for the last
//! hour and per hour before that.
//!
//! Links follow Zipkin's rules: a SERVER (or CONSUMER) span is called by the
//! service of its parent span (the CLIENT span that made the call, or with B3's
//! shared ids the CLIENT span of the same id), or, with no parent in the trace,
//! by its `remoteEndpoint`; a CLIENT (or PRODUCER) span that no instrumented
//! server answered links to its `remoteEndpoint` service. So an RPC
//! instrumented on both sides counts once.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::span::{Kind, Span};

/// Latency buckets: bucket `i` holds durations below `2^((i + 1) / 2)` µs
/// (factor √2), the last everything longer (over about 36 minutes).
const BUCKETS: usize = 64;

/// A latency histogram with √2-wide buckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    counts: [u32; BUCKETS],
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: [0; BUCKETS],
        }
    }
}

fn bucket(micros: u64) -> usize {
    if micros <= 1 {
        return 0;
    }
    // log2 in halves: 2·log2(x), rounded down.
    let log2 = 63 - u64::from(micros.leading_zeros());
    let half = u64::from(micros >= ((1u64 << log2) as f64 * std::f64::consts::SQRT_2) as u64);
    ((2 * log2 + half) as usize).min(BUCKETS - 1)
}

fn bucket_upper(index: usize) -> u64 {
    2f64.powf((index as f64 + 1.0) / 2.0).ceil() as u64
}

impl Histogram {
    /// Counts one duration.
    pub fn record(&mut self, micros: u64) {
        let slot = &mut self.counts[bucket(micros)];
        *slot = slot.saturating_add(1);
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a = a.saturating_add(b);
        }
    }

    /// Durations counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|&c| u64::from(c)).sum()
    }

    /// The duration below which `q` (0..=1) of the counts fall: the upper
    /// bound of that bucket (at most √2 too high). `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, &count) in self.counts.iter().enumerate() {
            seen += u64::from(count);
            if seen >= rank {
                return Some(bucket_upper(index));
            }
        }
        Some(bucket_upper(BUCKETS - 1))
    }
}

/// One call from a service to another, seen in a trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The caller.
    pub parent: String,
    /// The callee.
    pub child: String,
    /// Whether the call failed.
    pub error: bool,
    /// How long it took (the caller's span when there is one), µs.
    pub duration_us: Option<u64>,
    /// When it started, epoch µs.
    pub at_us: u64,
}

fn service(span: &Span) -> Option<&str> {
    span.service().filter(|s| !s.is_empty())
}

/// The calls between services in one trace's spans.
pub fn links(spans: &[Span]) -> Vec<Link> {
    let mut by_id: HashMap<&str, Vec<usize>> = HashMap::with_capacity(spans.len());
    for (index, span) in spans.iter().enumerate() {
        by_id.entry(span.id.as_str()).or_default().push(index);
    }
    let mut answered = vec![false; spans.len()];
    let mut out = Vec::new();
    for span in spans {
        if !matches!(span.kind, Some(Kind::Server | Kind::Consumer)) {
            continue;
        }
        let Some(child) = service(span) else {
            continue;
        };
        // The span that made the call: with shared ids the CLIENT span of the
        // same id; otherwise the parent.
        let caller = if span.shared {
            by_id.get(span.id.as_str()).and_then(|list| {
                list.iter()
                    .copied()
                    .find(|&i| matches!(spans[i].kind, Some(Kind::Client | Kind::Producer)))
            })
        } else {
            span.parent_id.as_deref().and_then(|parent| {
                let list = by_id.get(parent)?;
                // A shared pair under this id: the server side is the parent.
                list.iter()
                    .copied()
                    .find(|&i| spans[i].shared)
                    .or_else(|| list.first().copied())
            })
        };
        let (parent, duration, error) = match caller {
            Some(index) => {
                let caller = &spans[index];
                if matches!(caller.kind, Some(Kind::Client | Kind::Producer)) {
                    answered[index] = true;
                }
                (
                    service(caller).map(str::to_owned),
                    caller.duration.or(span.duration),
                    caller.is_error() || span.is_error(),
                )
            }
            None => (
                span.remote_endpoint
                    .as_ref()
                    .and_then(|e| e.service_name.clone()),
                span.duration,
                span.is_error(),
            ),
        };
        if let Some(parent) = parent.filter(|p| !p.is_empty() && p != child) {
            out.push(Link {
                parent,
                child: child.to_owned(),
                error,
                duration_us: duration,
                at_us: span.timestamp.unwrap_or(0),
            });
        }
    }
    for (index, span) in spans.iter().enumerate() {
        if answered[index] || !matches!(span.kind, Some(Kind::Client | Kind::Producer)) {
            continue;
        }
        let (Some(parent), Some(child)) = (
            service(span),
            span.remote_endpoint
                .as_ref()
                .and_then(|e| e.service_name.as_deref())
                .filter(|s| !s.is_empty()),
        ) else {
            continue;
        };
        if parent != child {
            out.push(Link {
                parent: parent.to_owned(),
                child: child.to_owned(),
                error: span.is_error(),
                duration_us: span.duration,
                at_us: span.timestamp.unwrap_or(0),
            });
        }
    }
    out
}

/// An edge's counts over some time.
#[derive(Debug, Clone, Default)]
struct Edge {
    calls: u64,
    errors: u64,
    latency: Histogram,
}

impl Edge {
    fn merge(&mut self, other: &Edge) {
        self.calls += other.calls;
        self.errors += other.errors;
        self.latency.merge(&other.latency);
    }
}

/// Zipkin's `DependencyLink`, with Sluice's latency quantiles when asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DependencyLink {
    /// The caller.
    pub parent: String,
    /// The callee.
    pub child: String,
    /// Calls.
    pub call_count: u64,
    /// Failed calls.
    pub error_count: u64,
    /// Median call duration, µs (Sluice's addition; absent in Zipkin's shape).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50_us: Option<u64>,
    /// 99th percentile call duration, µs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_us: Option<u64>,
}

const MINUTE_US: u64 = 60_000_000;
const HOUR_US: u64 = 60 * MINUTE_US;

type Edges = HashMap<(String, String), Edge>;

/// The graph over time: per-minute buckets for the last hour, per-hour ones
/// before.
#[derive(Debug, Default)]
pub struct Dependencies {
    minutes: BTreeMap<u64, Edges>,
    hours: BTreeMap<u64, Edges>,
}

impl Dependencies {
    /// Counts one call.
    pub fn add(&mut self, link: &Link) {
        let edge = self
            .minutes
            .entry(link.at_us / MINUTE_US)
            .or_default()
            .entry((link.parent.clone(), link.child.clone()))
            .or_default();
        edge.calls += 1;
        edge.errors += u64::from(link.error);
        if let Some(duration) = link.duration_us {
            edge.latency.record(duration);
        }
    }

    /// Folds minutes older than an hour into hours; forgets what ended before
    /// `oldest_us`.
    pub fn compact(&mut self, now_us: u64, oldest_us: u64) {
        let keep_from = (now_us.saturating_sub(HOUR_US)) / MINUTE_US;
        let old: Vec<u64> = self.minutes.range(..keep_from).map(|(m, _)| *m).collect();
        for minute in old {
            if let Some(edges) = self.minutes.remove(&minute) {
                let hour = self.hours.entry(minute * MINUTE_US / HOUR_US).or_default();
                for (key, edge) in edges {
                    hour.entry(key).or_default().merge(&edge);
                }
            }
        }
        self.hours
            .retain(|hour, _| (hour + 1) * HOUR_US > oldest_us);
        self.minutes
            .retain(|minute, _| (minute + 1) * MINUTE_US > oldest_us);
    }

    /// The links of calls that started in `[end - lookback, end]` (epoch µs),
    /// sorted by parent then child; an hour bucket counts when it overlaps.
    pub fn query(&self, end_us: u64, lookback_us: u64, quantiles: bool) -> Vec<DependencyLink> {
        let start_us = end_us.saturating_sub(lookback_us);
        let mut total: BTreeMap<(String, String), Edge> = BTreeMap::new();
        let buckets = self
            .minutes
            .range(start_us / MINUTE_US..=end_us / MINUTE_US)
            .chain(self.hours.range(start_us / HOUR_US..=end_us / HOUR_US));
        for (_, edges) in buckets {
            for (key, edge) in edges {
                total.entry(key.clone()).or_default().merge(edge);
            }
        }
        total
            .into_iter()
            .map(|((parent, child), edge)| DependencyLink {
                parent,
                child,
                call_count: edge.calls,
                error_count: edge.errors,
                p50_us: quantiles.then(|| edge.latency.quantile(0.5)).flatten(),
                p99_us: quantiles.then(|| edge.latency.quantile(0.99)).flatten(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::Endpoint;

    fn span(id: &str, parent: Option<&str>, kind: Kind, service: &str) -> Span {
        Span {
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            id: id.into(),
            parent_id: parent.map(Into::into),
            name: None,
            kind: Some(kind),
            timestamp: Some(MINUTE_US * 10),
            duration: Some(100),
            local_endpoint: Some(Endpoint {
                service_name: Some(service.into()),
                ..Endpoint::default()
            }),
            remote_endpoint: None,
            annotations: Vec::new(),
            tags: BTreeMap::new(),
            debug: false,
            shared: false,
        }
    }

    fn pairs(links: &[Link]) -> Vec<(&str, &str, bool)> {
        links
            .iter()
            .map(|l| (l.parent.as_str(), l.child.as_str(), l.error))
            .collect()
    }

    #[test]
    fn an_rpc_instrumented_on_both_sides_counts_once() {
        let mut retry = span(
            "0000000000000003",
            Some("0000000000000001"),
            Kind::Client,
            "gw",
        );
        retry.remote_endpoint = Some(Endpoint {
            service_name: Some("a".into()),
            ..Endpoint::default()
        });
        retry.tags.insert("error".into(), "connect refused".into());
        let mut to_db = span(
            "0000000000000006",
            Some("0000000000000004"),
            Kind::Client,
            "a",
        );
        to_db.remote_endpoint = Some(Endpoint {
            service_name: Some("db".into()),
            ..Endpoint::default()
        });
        let spans = vec![
            span("0000000000000001", None, Kind::Server, "gw"),
            span(
                "0000000000000002",
                Some("0000000000000001"),
                Kind::Client,
                "gw",
            ),
            retry,
            span(
                "0000000000000004",
                Some("0000000000000002"),
                Kind::Server,
                "a",
            ),
            span(
                "0000000000000005",
                Some("0000000000000004"),
                Kind::Client,
                "a",
            ),
            span(
                "0000000000000007",
                Some("0000000000000005"),
                Kind::Server,
                "b",
            ),
            to_db,
        ];
        let links = links(&spans);
        assert_eq!(
            pairs(&links),
            vec![
                ("gw", "a", false),
                ("a", "b", false),
                ("gw", "a", true),
                ("a", "db", false)
            ]
        );
        // B3 shared ids: the server joins the client's span.
        let mut shared = span(
            "0000000000000002",
            Some("0000000000000001"),
            Kind::Server,
            "a",
        );
        shared.shared = true;
        let b3 = vec![
            span("0000000000000001", None, Kind::Server, "gw"),
            span(
                "0000000000000002",
                Some("0000000000000001"),
                Kind::Client,
                "gw",
            ),
            shared,
            span(
                "0000000000000003",
                Some("0000000000000002"),
                Kind::Client,
                "a",
            ),
            span(
                "0000000000000004",
                Some("0000000000000003"),
                Kind::Server,
                "b",
            ),
        ];
        assert_eq!(
            pairs(&super::links(&b3)),
            vec![("gw", "a", false), ("a", "b", false)]
        );
    }

    #[test]
    fn the_graph_counts_by_time_and_folds_old_minutes_into_hours() {
        let mut deps = Dependencies::default();
        for minute in [0u64, 1, 70] {
            for i in 0..10 {
                deps.add(&Link {
                    parent: "a".into(),
                    child: "b".into(),
                    error: i == 0,
                    duration_us: Some(1000 * (i + 1)),
                    at_us: minute * MINUTE_US + 5,
                });
            }
        }
        let all = deps.query(71 * MINUTE_US, 71 * MINUTE_US, true);
        assert_eq!(all.len(), 1);
        assert_eq!((all[0].call_count, all[0].error_count), (30, 3));
        let p50 = all[0].p50_us.unwrap();
        assert!((5000..=8000).contains(&p50), "{p50}");
        assert!(all[0].p99_us.unwrap() >= 10_000);
        let recent = deps.query(71 * MINUTE_US, 2 * MINUTE_US, false);
        assert_eq!(recent[0].call_count, 10);
        assert_eq!(recent[0].p50_us, None);
        deps.compact(71 * MINUTE_US, 0);
        assert_eq!(
            deps.query(71 * MINUTE_US, 71 * MINUTE_US, false)[0].call_count,
            30
        );
        assert_eq!(
            deps.query(71 * MINUTE_US, 2 * MINUTE_US, false)[0].call_count,
            10
        );
        deps.compact(71 * MINUTE_US, 65 * MINUTE_US);
        assert_eq!(
            deps.query(71 * MINUTE_US, 71 * MINUTE_US, false)[0].call_count,
            10
        );
    }

    #[test]
    fn histogram_quantiles_are_within_a_bucket() {
        let mut h = Histogram::default();
        for us in 1..=1000 {
            h.record(us);
        }
        let p50 = h.quantile(0.5).unwrap();
        assert!((500..=725).contains(&p50), "{p50}");
        let p99 = h.quantile(0.99).unwrap();
        assert!((990..=1450).contains(&p99), "{p99}");
        assert_eq!(Histogram::default().quantile(0.5), None);
        h.record(u64::MAX);
    }
}
