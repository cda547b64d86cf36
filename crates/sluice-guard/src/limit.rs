//! nginx's `limit_req` and `limit_conn`, exactly (ngx_http_limit_req_module.c;
//! algorithms.md §1): a leaky bucket per key in milli-requests, `burst`, `delay` /
//! `nodelay`, `dry_run`, several limits on one request charged only when all pass,
//! and a bounded key table (LRU, idle keys freed first).
//!
//! Time is passed in (milliseconds), so the arithmetic is testable to the
//! millisecond; the key table is sharded, so checks on different keys rarely contend.

use std::hash::BuildHasher;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lru::LruCache;
use parking_lot::Mutex;

/// Shards of the key table.
const SHARDS: usize = 16;
/// A key idle this long with an empty bucket may be freed before the LRU one (nginx: 60 s).
const IDLE_MS: i64 = 60_000;

/// Why a rate or limit was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidLimit(pub String);

impl std::fmt::Display for InvalidLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidLimit {}

/// Parses `10r/s` or `30r/m` into milli-requests per second, as nginx does
/// (`Nr/m` is `N*1000/60`, integer division: `1r/m` = 16).
pub fn parse_rate(text: &str) -> Result<u64, InvalidLimit> {
    let bad = || {
        InvalidLimit(format!(
            "rate {text:?} is not N r/s or N r/m (such as 10r/s)"
        ))
    };
    let (number, per) = text.split_once("r/").ok_or_else(bad)?;
    let number: u64 = number.trim().parse().map_err(|_| bad())?;
    if number == 0 || number > 1_000_000 {
        return Err(InvalidLimit(format!(
            "rate {text:?} must be within 1..=1000000"
        )));
    }
    match per.trim() {
        "s" => Ok(number * 1000),
        "m" => Ok(number * 1000 / 60),
        _ => Err(bad()),
    }
}

/// The settings of one `limit_req`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitReqSpec {
    /// Milli-requests per second.
    pub rate: u64,
    /// Requests that may queue beyond the rate.
    pub burst: u64,
    /// `None`: `nodelay` (queued requests pass at once); `Some(d)`: the first `d`
    /// excess requests pass at once, later ones are delayed (nginx's default is `delay=0`).
    pub delay: Option<u64>,
    /// Report, but neither reject nor delay.
    pub dry_run: bool,
}

/// The outcome for one request (nginx's `$limit_req_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Passed at once.
    Passed,
    /// Passes after this delay.
    Delayed(Duration),
    /// Rejected.
    Rejected,
    /// Would have been delayed (dry run).
    DelayedDryRun(Duration),
    /// Would have been rejected (dry run).
    RejectedDryRun,
}

#[derive(Debug, Clone, Copy)]
struct Node {
    /// Milli-requests.
    excess: i64,
    last: i64,
}

/// One `limit_req` zone: the spec and its key table.
///
/// `rate=2r/s burst=1 nodelay`, as nginx answers it: a burst of three requests at
/// one instant gets the rate's one plus the burst's one, the third is rejected;
/// half a second later (one request's worth at 2 r/s) one more passes.
///
/// ```
/// use sluice_guard::limit::{parse_rate, Decision, LimitReq, LimitReqSpec};
/// let spec = LimitReqSpec { rate: parse_rate("2r/s")?, burst: 1, delay: None, dry_run: false };
/// let zone = LimitReq::new(spec, 1024);
/// assert_eq!(zone.check(b"10.0.0.1", 0), Decision::Passed);
/// assert_eq!(zone.check(b"10.0.0.1", 0), Decision::Passed);
/// assert_eq!(zone.check(b"10.0.0.1", 0), Decision::Rejected);
/// assert_eq!(zone.check(b"10.0.0.2", 0), Decision::Passed); // keys are separate
/// assert_eq!(zone.check(b"10.0.0.1", 500), Decision::Passed);
/// # Ok::<(), sluice_guard::limit::InvalidLimit>(())
/// ```
pub struct LimitReq {
    spec: LimitReqSpec,
    shards: Vec<Mutex<LruCache<Vec<u8>, Node>>>,
    /// Serialises evaluate-then-charge per shard of keys.
    serials: Vec<Mutex<()>>,
    hasher: std::collections::hash_map::RandomState,
    evicted: AtomicUsize,
}

/// The state a check would leave, applied only when every limit passes.
struct Pending<'a> {
    limit: &'a LimitReq,
    key: &'a [u8],
    node: Node,
}

impl LimitReq {
    /// A zone holding at most `max_keys` keys.
    pub fn new(spec: LimitReqSpec, max_keys: usize) -> Self {
        let per_shard =
            NonZeroUsize::new(max_keys.div_ceil(SHARDS).max(1)).unwrap_or(NonZeroUsize::MIN);
        LimitReq {
            spec,
            shards: (0..SHARDS)
                .map(|_| Mutex::new(LruCache::new(per_shard)))
                .collect(),
            serials: (0..SHARDS).map(|_| Mutex::new(())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            evicted: AtomicUsize::new(0),
        }
    }

    fn shard_index(&self, key: &[u8]) -> usize {
        (self.hasher.hash_one(key) as usize) % SHARDS
    }

    /// Keys freed because the table was full (for a metric).
    pub fn evicted(&self) -> usize {
        self.evicted.load(Ordering::Relaxed)
    }

    fn shard(&self, key: &[u8]) -> &Mutex<LruCache<Vec<u8>, Node>> {
        &self.shards[self.shard_index(key)]
    }

    /// Evaluates a request at `now_ms` without charging: the excess it would leave,
    /// or `None` when it is rejected.
    fn evaluate(&self, key: &[u8], now_ms: i64) -> (Option<Node>, i64) {
        let spec = &self.spec;
        let current = self.shard(key).lock().peek(key).copied();
        let Some(node) = current else {
            return (
                Some(Node {
                    excess: 0,
                    last: now_ms,
                }),
                0,
            );
        };
        let mut ms = now_ms - node.last;
        if ms < -60_000 {
            ms = 1;
        } else if ms < 0 {
            ms = 0;
        }
        let rate = i64::try_from(spec.rate).unwrap_or(i64::MAX);
        let excess = (node.excess - rate * ms / 1000 + 1000).max(0);
        if excess > i64::try_from(spec.burst * 1000).unwrap_or(i64::MAX) {
            return (None, excess);
        }
        let last = if ms != 0 { now_ms } else { node.last };
        (Some(Node { excess, last }), excess)
    }

    fn delay_for(&self, excess: i64) -> Duration {
        match self.spec.delay {
            None => Duration::ZERO,
            Some(delay) => {
                let delay = i64::try_from(delay * 1000).unwrap_or(i64::MAX);
                if excess <= delay {
                    Duration::ZERO
                } else {
                    let rate = i64::try_from(self.spec.rate.max(1)).unwrap_or(i64::MAX);
                    Duration::from_millis(
                        u64::try_from((excess - delay) * 1000 / rate).unwrap_or(0),
                    )
                }
            }
        }
    }

    fn store(&self, key: &[u8], node: Node, now_ms: i64) {
        let mut shard = self.shard(key).lock();
        if let Some(held) = shard.get_mut(key) {
            *held = node;
            return;
        }
        if shard.len() == shard.cap().get() {
            // As nginx: free a drained key idle for a minute first, else the least recently used.
            let idle = shard
                .iter()
                .rev()
                .take(2)
                .find(|(_, n)| n.excess == 0 && now_ms - n.last >= IDLE_MS)
                .map(|(k, _)| k.clone());
            match idle {
                Some(idle) => {
                    shard.pop(&idle);
                }
                None => {
                    shard.pop_lru();
                }
            }
            self.evicted.fetch_add(1, Ordering::Relaxed);
        }
        shard.put(key.to_vec(), node);
    }

    /// Checks and charges one limit (an empty key is not limited), atomically per key.
    pub fn check(&self, key: &[u8], now_ms: i64) -> Decision {
        if key.is_empty() {
            return Decision::Passed;
        }
        // Hold the shard across evaluation and charge, so concurrent requests on
        // one key cannot both pass on the same budget.
        let _serial = self.serial(key).lock();
        check_all(&[(self, key)], now_ms)
    }

    fn serial(&self, key: &[u8]) -> &Mutex<()> {
        &self.serials[self.shard_index(key)]
    }
}

/// Checks a request against several limits, nginx's way: every limit is evaluated;
/// if any rejects, none is charged; otherwise all are, and the largest delay wins.
/// Dry-run limits report but never reject or delay. As in nginx, which locks one zone
/// at a time, two requests evaluated at the same instant across zones may both pass;
/// a single limit is exact under concurrency through [`LimitReq::check`].
pub fn check_all(limits: &[(&LimitReq, &[u8])], now_ms: i64) -> Decision {
    let mut pending = Vec::with_capacity(limits.len());
    let mut rejected = false;
    let mut rejected_dry = false;
    let mut delay = Duration::ZERO;
    let mut delay_dry = Duration::ZERO;
    for (limit, key) in limits {
        if key.is_empty() {
            continue;
        }
        let (node, excess) = limit.evaluate(key, now_ms);
        match (node, limit.spec.dry_run) {
            (None, false) => rejected = true,
            (None, true) => rejected_dry = true,
            (Some(node), dry_run) => {
                let wait = limit.delay_for(excess);
                if dry_run {
                    delay_dry = delay_dry.max(wait);
                } else {
                    delay = delay.max(wait);
                }
                pending.push(Pending { limit, key, node });
            }
        }
    }
    if rejected {
        return Decision::Rejected;
    }
    for Pending { limit, key, node } in pending {
        limit.store(key, node, now_ms);
    }
    if !delay.is_zero() {
        Decision::Delayed(delay)
    } else if rejected_dry {
        Decision::RejectedDryRun
    } else if !delay_dry.is_zero() {
        Decision::DelayedDryRun(delay_dry)
    } else {
        Decision::Passed
    }
}

/// nginx's `limit_conn`: at most `limit` requests in flight per key. Keys live in
/// the table only while they have requests in flight, so it is bounded by them.
pub struct LimitConn {
    limit: usize,
    hasher: std::collections::hash_map::RandomState,
    shards: [Mutex<std::collections::HashMap<Vec<u8>, usize>>; SHARDS],
}

/// Holds one request's place; frees it when dropped.
pub struct ConnPermit {
    owner: std::sync::Arc<LimitConn>,
    shard: usize,
    key: Vec<u8>,
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut counts = self.owner.shards[self.shard].lock();
        if let Some(count) = counts.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

impl LimitConn {
    /// At most `limit` concurrent requests per key.
    pub fn new(limit: usize) -> Self {
        LimitConn {
            limit,
            hasher: std::collections::hash_map::RandomState::new(),
            shards: std::array::from_fn(|_| Mutex::new(std::collections::HashMap::new())),
        }
    }

    /// A permit, or `None` when the key already has `limit` requests in flight.
    pub fn acquire(self: &std::sync::Arc<Self>, key: &[u8]) -> Option<ConnPermit> {
        let shard = (self.hasher.hash_one(key) as usize) % SHARDS;
        let mut counts = self.shards[shard].lock();
        let count = counts.entry(key.to_vec()).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(ConnPermit {
            owner: std::sync::Arc::clone(self),
            shard,
            key: key.to_vec(),
        })
    }

    /// Keys with requests in flight.
    pub fn keys(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(rate: &str, burst: u64, delay: Option<u64>) -> LimitReq {
        LimitReq::new(
            LimitReqSpec {
                rate: parse_rate(rate).unwrap(),
                burst,
                delay,
                dry_run: false,
            },
            1000,
        )
    }

    #[test]
    fn rates_parse_as_nginx_does() {
        assert_eq!(parse_rate("10r/s"), Ok(10_000));
        assert_eq!(parse_rate("1r/m"), Ok(16));
        assert_eq!(parse_rate("30r/m"), Ok(500));
        assert!(
            parse_rate("10/s").is_err()
                && parse_rate("0r/s").is_err()
                && parse_rate("5r/h").is_err()
        );
    }

    #[test]
    fn burst_5_nodelay_passes_6_of_20_at_once() {
        let limit = zone("10r/s", 5, None);
        let decisions: Vec<Decision> = (0..20).map(|_| limit.check(b"ip", 0)).collect();
        assert_eq!(
            decisions.iter().filter(|d| **d == Decision::Passed).count(),
            6
        );
        assert_eq!(
            decisions
                .iter()
                .filter(|d| **d == Decision::Rejected)
                .count(),
            14
        );
        // Rejections did not fill the bucket: at 100 ms exactly one more passes.
        assert_eq!(limit.check(b"ip", 100), Decision::Passed);
        assert_eq!(limit.check(b"ip", 100), Decision::Rejected);
    }

    /// The delays (ms) of the requests that pass among `count` sent at t = 0.
    fn passing_delays(limit: &LimitReq, count: usize) -> Vec<u64> {
        (0..count)
            .filter_map(|_| match limit.check(b"ip", 0) {
                Decision::Passed => Some(0),
                Decision::Delayed(d) => Some(d.as_millis() as u64),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn without_nodelay_the_six_are_spaced_by_the_rate() {
        let limit = zone("10r/s", 5, Some(0));
        let delays = passing_delays(&limit, 20);
        assert_eq!(delays, [0, 100, 200, 300, 400, 500]);
    }

    #[test]
    fn delay_3_lets_the_first_excess_through_at_once() {
        let limit = zone("10r/s", 5, Some(3));
        let delays = passing_delays(&limit, 20);
        assert_eq!(delays, [0, 0, 0, 0, 100, 200]);
    }

    #[test]
    fn one_per_minute_rejects_at_60_s_and_passes_at_62_5_s() {
        let limit = zone("1r/m", 0, None);
        assert_eq!(limit.check(b"k", 0), Decision::Passed);
        assert_eq!(
            limit.check(b"k", 60_000),
            Decision::Rejected,
            "excess 1000 - 960 = 40 > 0"
        );
        assert_eq!(limit.check(b"k", 62_500), Decision::Passed);
    }

    #[test]
    fn several_limits_charge_only_when_all_pass() {
        let generous = zone("100r/s", 10, None);
        let strict = zone("1r/s", 0, None);
        assert_eq!(
            check_all(&[(&generous, b"a"), (&strict, b"a")], 0),
            Decision::Passed
        );
        assert_eq!(
            check_all(&[(&generous, b"a"), (&strict, b"a")], 0),
            Decision::Rejected
        );
        // The rejected request charged neither: the generous zone still holds only one.
        let generous_excess = generous
            .shard(b"a")
            .lock()
            .peek(b"a".as_slice())
            .map(|n| n.excess);
        assert_eq!(generous_excess, Some(0));
        // The largest delay wins.
        let slow = zone("10r/s", 5, Some(0));
        let fast = zone("100r/s", 5, Some(0));
        check_all(&[(&slow, b"b"), (&fast, b"b")], 0);
        assert_eq!(
            check_all(&[(&slow, b"b"), (&fast, b"b")], 0),
            Decision::Delayed(Duration::from_millis(100))
        );
        // An empty key is not limited.
        assert_eq!(strict.check(b"", 0), Decision::Passed);
    }

    #[test]
    fn dry_run_reports_without_acting() {
        let limit = LimitReq::new(
            LimitReqSpec {
                rate: 1000,
                burst: 0,
                delay: None,
                dry_run: true,
            },
            10,
        );
        assert_eq!(limit.check(b"k", 0), Decision::Passed);
        assert_eq!(limit.check(b"k", 0), Decision::RejectedDryRun);
    }

    #[test]
    fn the_key_table_is_bounded() {
        let limit = zone("1r/s", 0, None);
        let small = LimitReq::new(limit.spec.clone(), SHARDS);
        for i in 0..1000u32 {
            small.check(&i.to_be_bytes(), 0);
        }
        let held: usize = small.shards.iter().map(|s| s.lock().len()).sum();
        assert!(held <= SHARDS, "{held}");
        assert!(small.evicted() >= 1000 - SHARDS);
    }

    #[test]
    fn limit_conn_counts_requests_in_flight() {
        let limit = std::sync::Arc::new(LimitConn::new(2));
        let a = limit.acquire(b"ip").unwrap();
        let _b = limit.acquire(b"ip").unwrap();
        assert!(limit.acquire(b"ip").is_none());
        assert!(limit.acquire(b"other").is_some());
        drop(a);
        assert!(limit.acquire(b"ip").is_some());
        assert_eq!(limit.keys(), 1, "keys without requests in flight are gone");
    }

    #[test]
    fn a_million_distinct_keys_stay_within_the_table_bound() {
        let zone = LimitReq::new(
            LimitReqSpec {
                rate: parse_rate("10r/s").unwrap(),
                burst: 5,
                delay: None,
                dry_run: false,
            },
            10_000,
        );
        for i in 0..1_000_000u32 {
            assert_eq!(
                zone.check(&i.to_be_bytes(), i64::from(i / 1000)),
                Decision::Passed
            );
        }
        let held: usize = zone.shards.iter().map(|s| s.lock().len()).sum();
        assert!(held <= 10_000, "{held} keys held");
        assert!(zone.evicted() >= 990_000);
    }
}
