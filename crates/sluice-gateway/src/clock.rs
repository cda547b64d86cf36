//! The gateway's clocks, read in one place: a request reads the clock once
//! ([`Clock::now`]) and its stages share that read; guards and snapshots read
//! [`now_ms`] / [`now_us`] on the same monotonic clock. Clippy's
//! `disallowed-methods` (this crate's `clippy.toml`) keeps other clock reads out.
#![allow(clippy::disallowed_methods)]

use std::sync::OnceLock;
use std::time::Instant;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Milliseconds since the gateway's clock started (monotonic).
pub(crate) fn now_ms() -> u64 {
    u64::try_from(EPOCH.get_or_init(Instant::now).elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Microseconds on the same monotonic clock, starting above zero (limiters take 0 as "never").
pub(crate) fn now_us() -> i64 {
    i64::try_from(EPOCH.get_or_init(Instant::now).elapsed().as_micros())
        .unwrap_or(i64::MAX)
        .saturating_add(1_000_000)
}

/// Wall-clock Unix milliseconds (for expiry times given as dates).
pub(crate) fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The monotonic clock's start and the wall clock then: a request's one clock
/// read (an `Instant`) gives its Unix time without asking the wall clock again.
static UNIX_AT_EPOCH: OnceLock<(Instant, i64)> = OnceLock::new();

/// The clocks of one instant: what a request reads once and its stages share.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    /// The instant itself.
    pub at: Instant,
    /// Milliseconds on [`now_ms`]'s monotonic clock.
    pub ms: i64,
    /// Unix milliseconds (the wall clock as it was when the gateway started, moved on
    /// by the monotonic clock).
    pub unix_ms: i64,
}

impl Clock {
    /// Reads the clock once.
    pub fn now() -> Self {
        Self::at(Instant::now())
    }

    /// The clocks at `at`.
    pub fn at(at: Instant) -> Self {
        let epoch = *EPOCH.get_or_init(Instant::now);
        let (anchor, anchor_unix) = *UNIX_AT_EPOCH.get_or_init(|| (Instant::now(), unix_ms()));
        let since = |start: Instant| {
            i64::try_from(at.saturating_duration_since(start).as_millis()).unwrap_or(i64::MAX)
        };
        Clock {
            at,
            ms: since(epoch),
            unix_ms: anchor_unix.saturating_add(since(anchor)),
        }
    }

    /// Microseconds on [`now_us`]'s clock.
    pub fn us(&self) -> i64 {
        let epoch = *EPOCH.get_or_init(Instant::now);
        i64::try_from(self.at.saturating_duration_since(epoch).as_micros())
            .unwrap_or(i64::MAX)
            .saturating_add(1_000_000)
    }
}

/// Unix microseconds of the instant `at` (the wall clock as it was when the
/// gateway started, moved on by the monotonic clock): a span's start.
pub(crate) fn unix_us(at: Instant) -> u64 {
    let (anchor, anchor_unix_ms) = *UNIX_AT_EPOCH.get_or_init(|| (Instant::now(), unix_ms()));
    let anchor_us = u64::try_from(anchor_unix_ms)
        .unwrap_or(0)
        .saturating_mul(1000);
    let since = |a: Instant, b: Instant| {
        u64::try_from(a.saturating_duration_since(b).as_micros()).unwrap_or(u64::MAX)
    };
    if at >= anchor {
        anchor_us.saturating_add(since(at, anchor))
    } else {
        anchor_us.saturating_sub(since(anchor, at))
    }
}

/// The instant now, for what measures a duration against a request's clock
/// (an attempt's end, a response head's arrival).
pub(crate) fn instant() -> Instant {
    Instant::now()
}
