//! Sluice's tracing.
//!
//! [`propagation`] reads and writes the trace context of a request — W3C Trace
//! Context (`traceparent`, `tracestate`) and Zipkin's B3 (the single `b3` header
//! and the `X-B3-*` headers) — exactly as their specifications say. The ids are
//! [`TraceId`] (128 bits) and [`SpanId`] (64 bits), never zero when valid.
//! [`span`] is the span as Sluice keeps and answers it: Zipkin v2's model, with
//! its validation and limits; [`otlp`] decodes what OpenTelemetry SDKs export
//! (protobuf and OTLP's JSON) into it.
//!
//! What a node does with spans: [`pipeline`] queues them, [`tail`] decides
//! which traces to keep whole, [`store`] keeps them on disk (segments of
//! [`codec`] blocks) and answers Zipkin's queries, and [`deps`] keeps the
//! dependency graph between services live.

pub mod codec;
pub mod deps;
pub mod otlp;
pub mod pipeline;
pub mod propagation;
pub mod span;
pub mod store;
pub mod tail;

/// Lowercase hex digits.
const HEX: &[u8; 16] = b"0123456789abcdef";

/// A trace's id: 128 bits, never all zero. A 64-bit id (from B3) is held
/// left-padded with zeros, as W3C Trace Context carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId(u128);

impl TraceId {
    /// A random id (never zero; the high 64 bits random too, so it is a full
    /// 128-bit id).
    pub fn random() -> Self {
        loop {
            let id = (u128::from(fastrand::u64(1..)) << 64) | u128::from(fastrand::u64(..));
            if id != 0 {
                return TraceId(id);
            }
        }
    }

    /// The id of these bits, unless they are all zero.
    pub fn new(bits: u128) -> Option<Self> {
        (bits != 0).then_some(TraceId(bits))
    }

    /// The bits.
    pub fn get(self) -> u128 {
        self.0
    }

    /// Parses 32 lowercase hex digits, or 16 (a 64-bit id, padded); all zero is invalid.
    pub fn from_hex(text: &str) -> Option<Self> {
        match text.len() {
            16 | 32 => Self::new(parse_hex(text.as_bytes())?),
            _ => None,
        }
    }

    /// Whether the id fits in 64 bits (came from a 64-bit B3 id, say).
    pub fn is_64_bit(self) -> bool {
        self.0 >> 64 == 0
    }

    /// The 32 lowercase hex digits.
    pub fn to_hex(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        write_hex(self.0, &mut out);
        out
    }
}

impl std::fmt::Display for TraceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// A span's id: 64 bits, never all zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId(u64);

impl SpanId {
    /// A random id (never zero).
    pub fn random() -> Self {
        SpanId(fastrand::u64(1..))
    }

    /// The id of these bits, unless they are all zero.
    pub fn new(bits: u64) -> Option<Self> {
        (bits != 0).then_some(SpanId(bits))
    }

    /// The bits.
    pub fn get(self) -> u64 {
        self.0
    }

    /// Parses 16 lowercase hex digits; all zero is invalid.
    pub fn from_hex(text: &str) -> Option<Self> {
        if text.len() != 16 {
            return None;
        }
        Self::new(u64::try_from(parse_hex(text.as_bytes())?).ok()?)
    }

    /// The 16 lowercase hex digits.
    pub fn to_hex(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        write_hex(u128::from(self.0), &mut out);
        out
    }
}

impl std::fmt::Display for SpanId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Lowercase hex digits as a number (at most 32 of them); `None` on any other
/// character, uppercase included (the specifications say lowercase).
fn parse_hex(digits: &[u8]) -> Option<u128> {
    if digits.is_empty() || digits.len() > 32 {
        return None;
    }
    let mut value = 0u128;
    for &digit in digits {
        let nibble = match digit {
            b'0'..=b'9' => digit - b'0',
            b'a'..=b'f' => digit - b'a' + 10,
            _ => return None,
        };
        value = (value << 4) | u128::from(nibble);
    }
    Some(value)
}

/// Writes the low `out.len()` hex digits of `value`, most significant first.
fn write_hex(value: u128, out: &mut [u8]) {
    let digits = out.len();
    for (i, digit) in out.iter_mut().enumerate() {
        let shift = 4 * (digits - 1 - i);
        *digit = HEX[((value >> shift) & 0xf) as usize];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_lowercase_hex_and_never_zero() {
        let trace = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        assert_eq!(trace.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(&trace.to_hex(), b"4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(TraceId::from_hex("00000000000000000000000000000000").is_none());
        assert!(TraceId::from_hex("4BF92F3577B34DA6A3CE929D0E0E4736").is_none());
        assert!(TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e473").is_none());
        let short = TraceId::from_hex("a3ce929d0e0e4736").unwrap();
        assert!(short.is_64_bit());
        assert_eq!(short.to_string(), "0000000000000000a3ce929d0e0e4736");
        let span = SpanId::from_hex("00f067aa0ba902b7").unwrap();
        assert_eq!(span.to_string(), "00f067aa0ba902b7");
        assert_eq!(&span.to_hex(), b"00f067aa0ba902b7");
        assert!(SpanId::from_hex("0000000000000000").is_none());
        assert!(SpanId::from_hex("00f067aa0ba902b").is_none());
        assert!(SpanId::from_hex("00f067aa0ba902g7").is_none());
        for _ in 0..1000 {
            assert_ne!(TraceId::random().get(), 0);
            assert!(!TraceId::random().is_64_bit());
            assert_ne!(SpanId::random().get(), 0);
        }
    }
}
