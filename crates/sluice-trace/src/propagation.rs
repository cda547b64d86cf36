//! Trace-context propagation: what a request says of the trace it belongs to,
//! and the headers that carry it on.
//!
//! Read ([`extract`]), in this order, the first that holds:
//! - W3C `traceparent` (Trace Context Level 1/2): `00-{trace-id}-{parent-id}-{flags}`,
//!   lowercase hex, exactly 55 characters for version `00`; a later version is read
//!   at the same offsets when it is at least as long (and has `-` after the flags).
//!   Version `ff`, uppercase or non-hex digits, all-zero ids, a wrong length:
//!   ignored, the trace restarts. Only the sampled bit of the flags counts.
//!   `tracestate` is read only with a valid `traceparent`, and a bad one is
//!   dropped without touching the `traceparent`.
//! - B3 single (`b3: {trace}-{span}[-{state}[-{parent}]]`, or `b3: {state}`
//!   alone), which takes precedence over B3 multi;
//! - B3 multi (`X-B3-TraceId`, `X-B3-SpanId`, `X-B3-Sampled`, `X-B3-Flags`);
//!   the first value of a header wins.
//!
//! Written ([`inject`]): always a version-00 `traceparent` whose parent is the
//! span of the one sending it, `tracestate` passed on as it came (normalised), and
//! B3 in the form the request came with (a 64-bit B3 trace id stays 64-bit there,
//! and is left-padded to 32 digits in `traceparent`).
//!
//! ```
//! use http::HeaderMap;
//! use sluice_trace::propagation::{extract, inject, Outgoing};
//! use sluice_trace::SpanId;
//!
//! let mut headers = HeaderMap::new();
//! headers.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap());
//! let incoming = extract(&headers).unwrap();
//! let (trace_id, caller) = incoming.ids.unwrap();
//! assert_eq!(caller.to_string(), "00f067aa0ba902b7");
//!
//! // Call on in the same trace, under a span of our own.
//! let ours = SpanId::random();
//! let mut upstream = HeaderMap::new();
//! inject(&mut upstream, &Outgoing {
//!     trace_id, span_id: ours, parent_id: Some(caller), sampled: true, debug: false,
//!     tracestate: incoming.tracestate.as_deref(), b3: None, b3_64_bit: false,
//! });
//! assert_eq!(upstream["traceparent"], format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{ours}-01").as_str());
//! ```

use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::{SpanId, TraceId};

/// `traceparent`.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// `tracestate`.
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
/// B3's single header.
pub const B3: HeaderName = HeaderName::from_static("b3");
/// B3 multi: the trace id.
pub const X_B3_TRACE_ID: HeaderName = HeaderName::from_static("x-b3-traceid");
/// B3 multi: the span id.
pub const X_B3_SPAN_ID: HeaderName = HeaderName::from_static("x-b3-spanid");
/// B3 multi: the parent span id.
pub const X_B3_PARENT_SPAN_ID: HeaderName = HeaderName::from_static("x-b3-parentspanid");
/// B3 multi: the sampling decision.
pub const X_B3_SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");
/// B3 multi: debug.
pub const X_B3_FLAGS: HeaderName = HeaderName::from_static("x-b3-flags");

/// The most `tracestate` list members.
const TRACESTATE_MEMBERS: usize = 32;
/// `tracestate` is passed on up to this many characters (whole members).
const TRACESTATE_KEEP: usize = 512;
/// Members longer than this go first when `tracestate` must be cut.
const TRACESTATE_LONG_MEMBER: usize = 128;

/// Which headers a context came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// W3C Trace Context.
    W3c,
    /// B3's single `b3` header.
    B3Single,
    /// B3's `X-B3-*` headers.
    B3Multi,
}

/// What a request says of its trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// The trace and the caller's span, when the request names them (B3 may
    /// carry a sampling decision alone).
    pub ids: Option<(TraceId, SpanId)>,
    /// The caller's sampling decision (`None`: B3's "defer", decide here).
    pub sampled: Option<bool>,
    /// B3 debug (`X-B3-Flags: 1`, `b3: …-d`): sample, and say so on.
    pub debug: bool,
    /// `tracestate`, valid and normalised (W3C only).
    pub tracestate: Option<String>,
    /// The headers it came in.
    pub format: Format,
}

/// The context a request goes on with: its trace, the span of the one sending
/// it (the new parent), and what came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outgoing<'a> {
    /// The trace.
    pub trace_id: TraceId,
    /// The sender's span: the receiver's parent.
    pub span_id: SpanId,
    /// The sender's own parent (B3's `ParentSpanId`), when it has one.
    pub parent_id: Option<SpanId>,
    /// Sampled.
    pub sampled: bool,
    /// B3 debug.
    pub debug: bool,
    /// `tracestate` to pass on.
    pub tracestate: Option<&'a str>,
    /// The B3 form to write too (the one the request came with), if any.
    pub b3: Option<Format>,
    /// Whether the trace id came as a 64-bit B3 id (written back as 16 digits in B3).
    pub b3_64_bit: bool,
}

/// Whether the headers carry any trace context at all (`traceparent`,
/// `tracestate`, `b3`, `X-B3-*`): one pass over the names, so a request without
/// one (most requests at a front gate) costs no lookups.
pub fn carries_context(headers: &HeaderMap) -> bool {
    headers.keys().any(|name| {
        let name = name.as_str();
        name == "traceparent" || name == "tracestate" || name == "b3" || name.starts_with("x-b3-")
    })
}

/// Reads the trace context of a request (see the module docs for the order).
/// `None`: the request carries none that holds.
pub fn extract(headers: &HeaderMap) -> Option<Incoming> {
    if let Some((trace_id, parent_id, flags)) =
        first(headers, &TRACEPARENT).and_then(parse_traceparent)
    {
        let tracestate = tracestate(headers);
        return Some(Incoming {
            ids: Some((trace_id, parent_id)),
            sampled: Some(flags & 1 == 1),
            debug: false,
            tracestate,
            format: Format::W3c,
        });
    }
    if let Some(single) = first(headers, &B3).and_then(parse_b3_single) {
        return Some(single);
    }
    parse_b3_multi(headers)
}

fn first<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Parses a `traceparent` value: (trace id, parent id, flags).
pub fn parse_traceparent(value: &str) -> Option<(TraceId, SpanId, u8)> {
    let bytes = value.as_bytes();
    if bytes.len() < 55 {
        return None;
    }
    let version = u8::try_from(crate::parse_hex(&bytes[0..2])?).ok()?;
    if version == 0xff {
        return None;
    }
    // Version 00 is exactly 55 characters; a later version may go on after a dash.
    if version == 0 && bytes.len() != 55 {
        return None;
    }
    if bytes.len() > 55 && bytes[55] != b'-' {
        return None;
    }
    if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
        return None;
    }
    let trace_id = TraceId::new(crate::parse_hex(&bytes[3..35])?)?;
    let parent_id = SpanId::new(u64::try_from(crate::parse_hex(&bytes[36..52])?).ok()?)?;
    let flags = u8::try_from(crate::parse_hex(&bytes[53..55])?).ok()?;
    Some((trace_id, parent_id, flags))
}

/// `tracestate`, joined over repeated headers, valid and cut to size; `None`
/// when absent, empty or invalid (which does not touch the `traceparent`).
fn tracestate(headers: &HeaderMap) -> Option<String> {
    let mut joined = String::new();
    for value in headers.get_all(&TRACESTATE) {
        let value = value.to_str().ok()?;
        if !joined.is_empty() {
            joined.push(',');
        }
        joined.push_str(value);
    }
    normalize_tracestate(&joined)
}

/// Checks a `tracestate` list and cuts it to what is passed on: at most 32
/// members, each `key=value` per the grammar, no key twice; over 512 characters,
/// whole members go — those over 128 characters first, then from the right.
/// Empty members (`a=1,,b=2`) and spaces around members are dropped.
pub fn normalize_tracestate(value: &str) -> Option<String> {
    let mut members: Vec<&str> = Vec::new();
    for member in value.split(',') {
        let member = member.trim_matches(|c| c == ' ' || c == '\t');
        if member.is_empty() {
            continue;
        }
        let (key, val) = member.split_once('=')?;
        if !valid_key(key) || !valid_value(val) {
            return None;
        }
        if members
            .iter()
            .any(|m| m.split_once('=').is_some_and(|(k, _)| k == key))
        {
            return None;
        }
        members.push(member);
        if members.len() > TRACESTATE_MEMBERS {
            return None;
        }
    }
    let length = |members: &[&str]| {
        members.iter().map(|m| m.len()).sum::<usize>() + members.len().saturating_sub(1)
    };
    while length(&members) > TRACESTATE_KEEP {
        match members
            .iter()
            .rposition(|m| m.len() > TRACESTATE_LONG_MEMBER)
        {
            Some(long) => {
                members.remove(long);
            }
            None => {
                members.pop();
            }
        }
    }
    (!members.is_empty()).then(|| members.join(","))
}

/// `simple-key` (`lcalpha 0*255(lcalpha / DIGIT / "_" / "-" / "*" / "/")`) or
/// `tenant@system` (tenant `(lcalpha / DIGIT) 0*240(…)`, system `lcalpha 0*13(…)`).
fn valid_key(key: &str) -> bool {
    let allowed = |c: u8| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/');
    match key.split_once('@') {
        None => {
            let bytes = key.as_bytes();
            (1..=256).contains(&bytes.len())
                && bytes[0].is_ascii_lowercase()
                && bytes.iter().all(|&c| allowed(c))
        }
        Some((tenant, system)) => {
            let (tenant, system) = (tenant.as_bytes(), system.as_bytes());
            (1..=241).contains(&tenant.len())
                && (1..=14).contains(&system.len())
                && (tenant[0].is_ascii_lowercase() || tenant[0].is_ascii_digit())
                && system[0].is_ascii_lowercase()
                && tenant.iter().chain(system).all(|&c| allowed(c))
        }
    }
}

/// `0*255(chr) nblk-chr`: printable ASCII but `,` and `=`, not ending in a space.
fn valid_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    (1..=256).contains(&bytes.len())
        && bytes
            .iter()
            .all(|&c| (0x20..=0x7e).contains(&c) && c != b',' && c != b'=')
        && bytes.last() != Some(&b' ')
}

/// B3's sampling state: `1`, `0` or `d` (debug).
fn b3_state(state: &str) -> Option<(Option<bool>, bool)> {
    match state {
        "1" => Some((Some(true), false)),
        "0" => Some((Some(false), false)),
        "d" => Some((Some(true), true)),
        _ => None,
    }
}

/// Parses the single `b3` header.
pub fn parse_b3_single(value: &str) -> Option<Incoming> {
    let value = value.trim();
    let mut parts = value.split('-');
    let first = parts.next()?;
    let Some(span) = parts.next() else {
        // A sampling state alone.
        let (sampled, debug) = b3_state(first)?;
        return Some(Incoming {
            ids: None,
            sampled,
            debug,
            tracestate: None,
            format: Format::B3Single,
        });
    };
    let trace_id = TraceId::from_hex(first)?;
    let span_id = SpanId::from_hex(span)?;
    let (sampled, debug) = match parts.next() {
        None => (None, false),
        Some(state) => b3_state(state)?,
    };
    if let Some(parent) = parts.next() {
        SpanId::from_hex(parent)?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(Incoming {
        ids: Some((trace_id, span_id)),
        sampled,
        debug,
        tracestate: None,
        format: Format::B3Single,
    })
}

/// Parses the `X-B3-*` headers: the ids need both `TraceId` and `SpanId`;
/// `Sampled` is `1`/`0` (or `true`/`false`); `Flags: 1` is debug.
pub fn parse_b3_multi(headers: &HeaderMap) -> Option<Incoming> {
    let debug = first(headers, &X_B3_FLAGS).map(str::trim) == Some("1");
    let sampled = match first(headers, &X_B3_SAMPLED).map(str::trim) {
        Some("1" | "true") => Some(true),
        Some("0" | "false") => Some(false),
        _ => None,
    };
    let ids = match (
        first(headers, &X_B3_TRACE_ID),
        first(headers, &X_B3_SPAN_ID),
    ) {
        (Some(trace), Some(span)) => Some((
            TraceId::from_hex(trace.trim())?,
            SpanId::from_hex(span.trim())?,
        )),
        _ => None,
    };
    if ids.is_none() && sampled.is_none() && !debug {
        return None;
    }
    Some(Incoming {
        ids,
        sampled: if debug { Some(true) } else { sampled },
        debug,
        tracestate: None,
        format: Format::B3Multi,
    })
}

/// The `traceparent` of an outgoing context: `00-{trace}-{span}-{01|00}`.
pub fn traceparent(trace_id: TraceId, span_id: SpanId, sampled: bool) -> HeaderValue {
    let mut text = [0u8; 55];
    text[0..3].copy_from_slice(b"00-");
    text[3..35].copy_from_slice(&trace_id.to_hex());
    text[35] = b'-';
    text[36..52].copy_from_slice(&span_id.to_hex());
    text[52..55].copy_from_slice(if sampled { b"-01" } else { b"-00" });
    header_value(&text)
}

/// A value of hex digits and dashes (always a valid header value).
fn header_value(text: &[u8]) -> HeaderValue {
    HeaderValue::from_bytes(text).unwrap_or(HeaderValue::from_static("0"))
}

/// Writes `out` into `headers`: `traceparent` always, `tracestate` when there is
/// one to pass on, and B3 in the form asked for (the other B3 form's headers
/// removed). Nothing else is looked up: a request whose own `tracestate` was
/// invalid has it removed by the caller ([`TRACESTATE`]).
pub fn inject(headers: &mut HeaderMap, out: &Outgoing<'_>) {
    headers.insert(
        TRACEPARENT,
        traceparent(out.trace_id, out.span_id, out.sampled),
    );
    if let Some(state) = out.tracestate.and_then(|t| HeaderValue::from_str(t).ok()) {
        headers.insert(TRACESTATE, state);
    }
    let trace = out.trace_id.to_hex();
    let trace: &[u8] = if out.b3_64_bit && out.trace_id.is_64_bit() {
        &trace[16..]
    } else {
        &trace
    };
    match out.b3 {
        Some(Format::B3Single) => {
            for name in [
                &X_B3_TRACE_ID,
                &X_B3_SPAN_ID,
                &X_B3_PARENT_SPAN_ID,
                &X_B3_SAMPLED,
                &X_B3_FLAGS,
            ] {
                headers.remove(name);
            }
            let mut text = Vec::with_capacity(32 + 1 + 16 + 2 + 17);
            text.extend_from_slice(trace);
            text.push(b'-');
            text.extend_from_slice(&out.span_id.to_hex());
            text.extend_from_slice(match (out.debug, out.sampled) {
                (true, _) => b"-d",
                (false, true) => b"-1",
                (false, false) => b"-0",
            });
            if let Some(parent) = out.parent_id {
                text.push(b'-');
                text.extend_from_slice(&parent.to_hex());
            }
            headers.insert(B3, header_value(&text));
        }
        Some(Format::B3Multi) => {
            headers.remove(&B3);
            headers.insert(X_B3_TRACE_ID, header_value(trace));
            headers.insert(X_B3_SPAN_ID, header_value(&out.span_id.to_hex()));
            match out.parent_id {
                Some(parent) => {
                    headers.insert(X_B3_PARENT_SPAN_ID, header_value(&parent.to_hex()));
                }
                None => {
                    headers.remove(&X_B3_PARENT_SPAN_ID);
                }
            }
            if out.debug {
                headers.remove(&X_B3_SAMPLED);
                headers.insert(X_B3_FLAGS, HeaderValue::from_static("1"));
            } else {
                headers.remove(&X_B3_FLAGS);
                headers.insert(
                    X_B3_SAMPLED,
                    HeaderValue::from_static(if out.sampled { "1" } else { "0" }),
                );
            }
        }
        Some(Format::W3c) | None => {}
    }
}

/// The B3 form a request's headers carry, if any, and whether its B3 trace id
/// is 64-bit — so what goes on speaks B3 as the request did, even when its
/// context was read from `traceparent`.
pub fn b3_form(headers: &HeaderMap) -> Option<(Format, bool)> {
    if let Some(single) = first(headers, &B3) {
        let trace = single.trim().split('-').next().unwrap_or("");
        return Some((Format::B3Single, trace.len() == 16));
    }
    let trace = first(headers, &X_B3_TRACE_ID)?;
    Some((Format::B3Multi, trace.trim().len() == 16))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const PARENT: &str = "00f067aa0ba902b7";

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn w3c(value: &str) -> Option<(String, String, u8)> {
        parse_traceparent(value).map(|(t, p, f)| (t.to_string(), p.to_string(), f))
    }

    #[test]
    fn traceparent_as_the_specification_says() {
        let valid = format!("00-{TRACE}-{PARENT}-01");
        assert_eq!(w3c(&valid), Some((TRACE.into(), PARENT.into(), 1)));
        // Flags: other bits are carried in the flags but only the sampled bit counts.
        let incoming = extract(&headers(&[(
            "traceparent",
            &format!("00-{TRACE}-{PARENT}-09"),
        )]))
        .unwrap();
        assert_eq!(incoming.sampled, Some(true));
        let unsampled = extract(&headers(&[(
            "traceparent",
            &format!("00-{TRACE}-{PARENT}-00"),
        )]))
        .unwrap();
        assert_eq!(unsampled.sampled, Some(false));
        // Header names in any case.
        assert!(extract(&headers(&[("TraceParent", &valid)])).is_some());
        assert!(carries_context(&headers(&[("TraceParent", &valid)])));
        assert!(carries_context(&headers(&[("X-B3-Sampled", "1")])));
        assert!(!carries_context(&headers(&[
            ("x-request-id", "1"),
            ("b3x", "1")
        ])));
        for invalid in [
            format!("00-{}-{PARENT}-01", "0".repeat(32)), // all-zero trace id
            format!("00-{TRACE}-{}-01", "0".repeat(16)),  // all-zero parent id
            format!("00-{}-{PARENT}-01", TRACE.to_uppercase()), // uppercase
            format!("00-{TRACE}-{PARENT}-0g"),            // not hex
            format!("00-{TRACE}-{PARENT}-01-"),           // version 00 is 55 long
            format!("00-{TRACE}-{PARENT}-1"),             // short
            format!("00_{TRACE}-{PARENT}-01"),            // separator
            format!("ff-{TRACE}-{PARENT}-01"),            // version ff is invalid
            format!("0-{TRACE}-{PARENT}-01"),
            format!("00-{}-{PARENT}-01", &TRACE[..31]),
            String::new(),
        ] {
            assert_eq!(w3c(&invalid), None, "{invalid}");
        }
        // A later version: read at the same offsets, whatever follows a dash.
        assert_eq!(
            w3c(&format!("cc-{TRACE}-{PARENT}-01-what-the-future-holds")),
            Some((TRACE.into(), PARENT.into(), 1))
        );
        assert_eq!(
            w3c(&format!("cc-{TRACE}-{PARENT}-01")),
            Some((TRACE.into(), PARENT.into(), 1))
        );
        assert_eq!(w3c(&format!("cc-{TRACE}-{PARENT}-01x")), None);
        assert_eq!(w3c(&format!("cc-{TRACE}-{PARENT}-1")), None);
    }

    #[test]
    fn tracestate_is_checked_deduplicated_and_cut_to_size() {
        assert_eq!(
            normalize_tracestate("congo=t61rcWkgMzE, rojo=00f067aa0ba902b7").as_deref(),
            Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
        );
        assert_eq!(
            normalize_tracestate("a=1,,b=2, ").as_deref(),
            Some("a=1,b=2")
        );
        assert_eq!(
            normalize_tracestate("tenant@vendor=x,0tenant@v=y").as_deref(),
            Some("tenant@vendor=x,0tenant@v=y")
        );
        for invalid in [
            "Upper=1",    // uppercase key
            "0simple=1",  // a simple key starts with a letter
            "a=1,a=2",    // a key twice
            "a",          // no value
            "a=",         // empty value
            "a=x=y",      // '=' in the value
            "t@Vendor=1", // uppercase system id
            "t@waytoolongvendor=1",
        ] {
            assert_eq!(normalize_tracestate(invalid), None, "{invalid}");
        }
        // Spaces around a member are optional whitespace, not part of its value.
        assert_eq!(normalize_tracestate(" a=x ").as_deref(), Some("a=x"));
        // 32 members pass, 33 do not.
        let members: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        assert!(normalize_tracestate(&members[..32].join(",")).is_some());
        assert_eq!(normalize_tracestate(&members.join(",")), None);
        // Over 512 characters: long members go first, then from the right.
        let long = format!("long={}", "x".repeat(200));
        let short: Vec<String> = (0..20)
            .map(|i| format!("k{i:02}={}", "y".repeat(16)))
            .collect();
        let mut list = vec![short[0].clone(), long.clone()];
        list.extend(short[1..].iter().cloned());
        let kept = normalize_tracestate(&list.join(",")).unwrap();
        assert!(!kept.contains("long="), "the long member goes first");
        assert!(kept.len() <= 512);
        assert!(kept.starts_with("k00="));
        let many: Vec<String> = (0..30)
            .map(|i| format!("k{i:02}={}", "y".repeat(20)))
            .collect();
        let kept = normalize_tracestate(&many.join(",")).unwrap();
        assert!(kept.len() <= 512 && kept.starts_with("k00=") && !kept.contains("k29="));
        // A bad tracestate never breaks the traceparent.
        let incoming = extract(&headers(&[
            ("traceparent", &format!("00-{TRACE}-{PARENT}-01")),
            ("tracestate", "a=1,a=2"),
        ]))
        .unwrap();
        assert_eq!(incoming.tracestate, None);
        assert!(incoming.ids.is_some());
        // Repeated headers are one list.
        let incoming = extract(&headers(&[
            ("traceparent", &format!("00-{TRACE}-{PARENT}-01")),
            ("tracestate", "a=1"),
            ("tracestate", "b=2"),
        ]))
        .unwrap();
        assert_eq!(incoming.tracestate.as_deref(), Some("a=1,b=2"));
        // Without a valid traceparent, tracestate is not read.
        assert_eq!(extract(&headers(&[("tracestate", "a=1")])), None);
    }

    #[test]
    fn b3_single_and_multi() {
        let single = extract(&headers(&[(
            "b3",
            &format!("{TRACE}-{PARENT}-1-{}", "05e3ac9a4f6e3b90"),
        )]))
        .unwrap();
        assert_eq!(single.format, Format::B3Single);
        assert_eq!(single.sampled, Some(true));
        let (trace, span) = single.ids.unwrap();
        assert_eq!(
            (trace.to_string().as_str(), span.to_string().as_str()),
            (TRACE, PARENT)
        );
        // 64-bit trace ids are padded for W3C.
        let short = extract(&headers(&[("b3", &format!("a3ce929d0e0e4736-{PARENT}"))])).unwrap();
        let (trace, _) = short.ids.unwrap();
        assert_eq!(trace.to_string(), "0000000000000000a3ce929d0e0e4736");
        assert_eq!(short.sampled, None, "no state: defer");
        assert!(
            extract(&headers(&[("b3", &format!("{TRACE}-{PARENT}-d"))]))
                .unwrap()
                .debug
        );
        // A sampling state alone.
        let deny = extract(&headers(&[("b3", "0")])).unwrap();
        assert_eq!((deny.ids, deny.sampled), (None, Some(false)));
        for invalid in [
            format!("{TRACE}-{PARENT}-2"),
            format!("{TRACE}-{}-1", "0".repeat(16)),
            format!("{}-{PARENT}-1", "0".repeat(32)),
            format!("{TRACE}-{PARENT}-1-{PARENT}-x"),
            TRACE.to_string(),
            "x".into(),
        ] {
            assert_eq!(parse_b3_single(&invalid), None, "{invalid}");
        }
        // Single takes precedence over multi; W3C over both.
        let both = extract(&headers(&[
            ("b3", &format!("{TRACE}-{PARENT}-0")),
            ("x-b3-traceid", "a3ce929d0e0e4736"),
            ("x-b3-spanid", "05e3ac9a4f6e3b90"),
        ]))
        .unwrap();
        assert_eq!(both.format, Format::B3Single);
        let w3c_first = extract(&headers(&[
            ("traceparent", &format!("00-{TRACE}-{PARENT}-01")),
            ("b3", "0"),
        ]))
        .unwrap();
        assert_eq!(w3c_first.format, Format::W3c);

        let multi = extract(&headers(&[
            ("X-B3-TraceId", "a3ce929d0e0e4736"),
            ("X-B3-SpanId", PARENT),
            ("X-B3-Sampled", "1"),
        ]))
        .unwrap();
        assert_eq!(multi.format, Format::B3Multi);
        assert_eq!(multi.sampled, Some(true));
        let debug = extract(&headers(&[
            ("x-b3-traceid", TRACE),
            ("x-b3-spanid", PARENT),
            ("x-b3-flags", "1"),
        ]))
        .unwrap();
        assert!(debug.debug && debug.sampled == Some(true));
        let lenient = extract(&headers(&[("x-b3-sampled", "false")])).unwrap();
        assert_eq!((lenient.ids, lenient.sampled), (None, Some(false)));
        // First value wins; a bad id is no context.
        let first = extract(&headers(&[
            ("x-b3-traceid", TRACE),
            ("x-b3-traceid", "a3ce929d0e0e4736"),
            ("x-b3-spanid", PARENT),
        ]))
        .unwrap();
        assert_eq!(first.ids.unwrap().0.to_string(), TRACE);
        assert_eq!(
            extract(&headers(&[
                ("x-b3-traceid", "xyz"),
                ("x-b3-spanid", PARENT)
            ])),
            None
        );
        assert_eq!(extract(&headers(&[("x-b3-spanid", PARENT)])), None);
    }

    #[test]
    fn what_goes_on_names_the_senders_span_as_parent() {
        let trace = TraceId::from_hex(TRACE).unwrap();
        let span = SpanId::from_hex("53995c3f42cd8ad8").unwrap();
        let server = SpanId::from_hex(PARENT).unwrap();
        let mut map = headers(&[("x-b3-sampled", "1"), ("tracestate", "old=1")]);
        inject(
            &mut map,
            &Outgoing {
                trace_id: trace,
                span_id: span,
                parent_id: Some(server),
                sampled: true,
                debug: false,
                tracestate: Some("congo=t61rcWkgMzE"),
                b3: None,
                b3_64_bit: false,
            },
        );
        assert_eq!(
            map["traceparent"],
            format!("00-{TRACE}-53995c3f42cd8ad8-01").as_str()
        );
        assert_eq!(map["tracestate"], "congo=t61rcWkgMzE");
        assert_eq!(
            map["x-b3-sampled"], "1",
            "B3 is written only when asked for"
        );

        let short = TraceId::from_hex("a3ce929d0e0e4736").unwrap();
        let mut map = HeaderMap::new();
        let out = Outgoing {
            trace_id: short,
            span_id: span,
            parent_id: Some(server),
            sampled: false,
            debug: false,
            tracestate: None,
            b3: Some(Format::B3Single),
            b3_64_bit: true,
        };
        inject(&mut map, &out);
        assert_eq!(
            map["traceparent"],
            "00-0000000000000000a3ce929d0e0e4736-53995c3f42cd8ad8-00"
        );
        assert_eq!(
            map["b3"],
            format!("a3ce929d0e0e4736-53995c3f42cd8ad8-0-{PARENT}").as_str()
        );
        assert!(map.get("tracestate").is_none());
        let mut map = HeaderMap::new();
        inject(
            &mut map,
            &Outgoing {
                b3: Some(Format::B3Multi),
                debug: true,
                sampled: true,
                ..out
            },
        );
        assert_eq!(map["x-b3-traceid"], "a3ce929d0e0e4736");
        assert_eq!(map["x-b3-spanid"], "53995c3f42cd8ad8");
        assert_eq!(map["x-b3-parentspanid"], PARENT);
        assert_eq!(map["x-b3-flags"], "1");
        assert!(map.get("x-b3-sampled").is_none(), "debug implies sampled");
        assert!(map.get("b3").is_none(), "one B3 form");
        assert_eq!(b3_form(&map), Some((Format::B3Multi, true)));
        // What is written reads back the same.
        let read = extract(&map).unwrap();
        assert_eq!(read.ids, Some((short, span)));
        assert_eq!(
            parse_traceparent(map["traceparent"].to_str().unwrap()),
            Some((short, span, 1))
        );
    }
}
