//! The encoding of a block of spans on disk: the spans of a few thousand
//! traces, grouped by trace, with every string (names, services, tag keys and
//! values, addresses) written once in a table at the front and referred to by
//! number, ids as raw bytes, times as offsets from the block's first, and a
//! parent that is in the same trace as the index of that span. The whole block
//! is then deflated by the store.
//!
//! A decoded block ([`BlockView`]) keeps its bytes and only the positions of
//! its strings and trace groups, so reading one trace out of it builds only
//! that trace's spans.

use std::collections::{BTreeMap, HashMap};

use crate::span::{Annotation, Endpoint, Kind, Span};
use crate::TraceId;

/// FNV-1a, for the block's string table (short keys; SipHash's flood
/// resistance is not needed for strings interned per block).
#[derive(Default, Clone, Copy)]
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = hash;
    }
}

type FnvBuild = std::hash::BuildHasherDefault<Fnv>;

/// The format version written in each block's first byte.
const VERSION: u8 = 1;

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

/// What a malformed block is (a torn write, or a file that is not ours).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corrupt(pub &'static str);

impl std::fmt::Display for Corrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "corrupt span block: {}", self.0)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, Corrupt> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self
                .bytes
                .get(self.at)
                .ok_or(Corrupt("a number runs past the end"))?;
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Corrupt("a number is over 64 bits"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Corrupt> {
        let end = self
            .at
            .checked_add(n)
            .ok_or(Corrupt("a length overflows"))?;
        let slice = self
            .bytes
            .get(self.at..end)
            .ok_or(Corrupt("a field runs past the end"))?;
        self.at = end;
        Ok(slice)
    }

    fn byte(&mut self) -> Result<u8, Corrupt> {
        Ok(self.take(1)?[0])
    }

    fn u64_le(&mut self) -> Result<u64, Corrupt> {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(bytes))
    }

    fn u128_le(&mut self) -> Result<u128, Corrupt> {
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(self.take(16)?);
        Ok(u128::from_le_bytes(bytes))
    }

    fn len(&mut self) -> Result<usize, Corrupt> {
        usize::try_from(self.varint()?).map_err(|_| Corrupt("a count is too large"))
    }
}

/// What the store indexes about one trace's spans in a block.
#[derive(Debug, Clone)]
pub struct GroupSummary {
    /// The trace.
    pub trace_id: u128,
    /// Earliest span start, epoch µs (0 when no span has a timestamp).
    pub start_us: u64,
    /// Latest span end, epoch µs.
    pub end_us: u64,
    /// Whether any span carries an `error` tag.
    pub error: bool,
    /// `(service, span name, remote service)` of every span (deduplicated).
    pub names: Vec<(String, Option<String>, Option<String>)>,
}

/// What the store indexes about one trace's spans.
pub fn summarize(trace_id: TraceId, spans: &[Span]) -> GroupSummary {
    let mut summary = GroupSummary {
        trace_id: trace_id.get(),
        start_us: 0,
        end_us: 0,
        error: false,
        names: Vec::new(),
    };
    for span in spans {
        if let Some(timestamp) = span.timestamp {
            if summary.start_us == 0 || timestamp < summary.start_us {
                summary.start_us = timestamp;
            }
            summary.end_us = summary
                .end_us
                .max(timestamp.saturating_add(span.duration.unwrap_or(0)));
        }
        summary.error |= span.is_error();
        let service = span.service().unwrap_or("");
        let remote = span
            .remote_endpoint
            .as_ref()
            .and_then(|e| e.service_name.as_deref());
        let known = summary.names.iter().any(|(s, n, r)| {
            s == service && n.as_deref() == span.name.as_deref() && r.as_deref() == remote
        });
        if !known {
            summary.names.push((
                service.to_owned(),
                span.name.clone(),
                remote.map(str::to_owned),
            ));
        }
    }
    summary
}

/// Builds a block.
#[derive(Default)]
pub struct BlockWriter {
    strings: Vec<u8>,
    string_count: u64,
    interned: HashMap<String, u64, FnvBuild>,
    body: Vec<u8>,
    groups: u64,
    spans: usize,
    base_us: Option<u64>,
}

impl BlockWriter {
    /// An empty block whose times are offsets from `base_us`.
    pub fn new(base_us: u64) -> Self {
        BlockWriter {
            base_us: Some(base_us),
            ..BlockWriter::default()
        }
    }

    /// The same, with room for about `spans` spans.
    pub fn with_capacity(base_us: u64, spans: usize) -> Self {
        BlockWriter {
            base_us: Some(base_us),
            strings: Vec::with_capacity(spans * 48),
            body: Vec::with_capacity(spans * 96),
            interned: HashMap::with_capacity_and_hasher(spans, FnvBuild::default()),
            ..BlockWriter::default()
        }
    }

    /// Spans written so far.
    pub fn spans(&self) -> usize {
        self.spans
    }

    fn string(&mut self, text: &str) -> u64 {
        if let Some(&id) = self.interned.get(text) {
            return id;
        }
        let id = self.string_count;
        self.string_count += 1;
        put_varint(&mut self.strings, text.len() as u64);
        self.strings.extend_from_slice(text.as_bytes());
        self.interned.insert(text.to_owned(), id);
        id
    }

    fn optional_string(&mut self, text: Option<&str>) -> u64 {
        text.map_or(0, |t| self.string(t) + 1)
    }

    fn endpoint(&mut self, endpoint: &Endpoint) {
        let service = self.optional_string(endpoint.service_name.as_deref());
        let ipv4 = self.optional_string(endpoint.ipv4.as_deref());
        let ipv6 = self.optional_string(endpoint.ipv6.as_deref());
        put_varint(&mut self.body, service);
        put_varint(&mut self.body, ipv4);
        put_varint(&mut self.body, ipv6);
        put_varint(&mut self.body, u64::from(endpoint.port.unwrap_or(0)));
    }

    /// Adds one trace's spans (all of the same trace id, already normalised)
    /// and says what to index about them.
    pub fn add_trace(&mut self, trace_id: TraceId, spans: &[Span]) -> GroupSummary {
        let base = *self.base_us.get_or_insert(0) as i64;
        let short = spans.first().is_some_and(|s| s.trace_id.len() == 16);
        self.groups += 1;
        self.spans += spans.len();
        self.body.push(u8::from(short));
        self.body.extend_from_slice(&trace_id.get().to_le_bytes());
        put_varint(&mut self.body, spans.len() as u64);
        let mut ids: Vec<u64> = Vec::with_capacity(spans.len());
        for span in spans {
            let id = crate::SpanId::from_hex(&span.id).map_or(0, crate::SpanId::get);
            self.body.extend_from_slice(&id.to_le_bytes());
            let parent = span
                .parent_id
                .as_deref()
                .and_then(crate::SpanId::from_hex)
                .map(crate::SpanId::get);
            match parent {
                None => put_varint(&mut self.body, 0),
                Some(parent) => match ids.iter().rposition(|&i| i == parent) {
                    Some(index) => put_varint(&mut self.body, index as u64 + 2),
                    None => {
                        put_varint(&mut self.body, 1);
                        self.body.extend_from_slice(&parent.to_le_bytes());
                    }
                },
            }
            ids.push(id);
            let name = self.optional_string(span.name.as_deref());
            put_varint(&mut self.body, name);
            let kind = match span.kind {
                None => 0u8,
                Some(Kind::Client) => 1,
                Some(Kind::Server) => 2,
                Some(Kind::Producer) => 3,
                Some(Kind::Consumer) => 4,
            };
            let flags = kind
                | u8::from(span.debug) << 3
                | u8::from(span.shared) << 4
                | u8::from(span.timestamp.is_some()) << 5
                | u8::from(span.duration.is_some()) << 6
                | u8::from(span.local_endpoint.is_some()) << 7;
            self.body.push(flags);
            self.body.push(u8::from(span.remote_endpoint.is_some()));
            if let Some(timestamp) = span.timestamp {
                put_varint(&mut self.body, zigzag(timestamp as i64 - base));
            }
            if let Some(duration) = span.duration {
                put_varint(&mut self.body, duration);
            }
            if let Some(local) = &span.local_endpoint {
                self.endpoint(local);
            }
            if let Some(remote) = &span.remote_endpoint {
                self.endpoint(remote);
            }
            put_varint(&mut self.body, span.annotations.len() as u64);
            for annotation in &span.annotations {
                let value = self.string(&annotation.value);
                put_varint(&mut self.body, zigzag(annotation.timestamp as i64 - base));
                put_varint(&mut self.body, value);
            }
            put_varint(&mut self.body, span.tags.len() as u64);
            for (key, value) in &span.tags {
                let key = self.string(key);
                let value = self.string(value);
                put_varint(&mut self.body, key);
                put_varint(&mut self.body, value);
            }
        }
        summarize(trace_id, spans)
    }

    /// The block's bytes (before compression).
    pub fn finish(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.strings.len() + self.body.len() + 24);
        out.push(VERSION);
        put_varint(&mut out, self.base_us.unwrap_or(0));
        put_varint(&mut out, self.string_count);
        out.extend_from_slice(&self.strings);
        put_varint(&mut out, self.groups);
        out.extend_from_slice(&self.body);
        out
    }
}

/// A decoded block: its bytes, where its strings are, and where each trace's
/// spans start.
#[derive(Debug)]
pub struct BlockView {
    bytes: Vec<u8>,
    base_us: u64,
    strings: Vec<(u32, u32)>,
    /// `(trace id, whether the id is 64-bit, offset of the group's first span, span count)`.
    groups: Vec<(u128, bool, usize, usize)>,
}

impl BlockView {
    /// Reads a block's layout (not its spans).
    pub fn parse(bytes: Vec<u8>) -> Result<Self, Corrupt> {
        let mut reader = Reader {
            bytes: &bytes,
            at: 0,
        };
        if reader.byte()? != VERSION {
            return Err(Corrupt("unknown block version"));
        }
        let base_us = reader.varint()?;
        let count = reader.len()?;
        if count > bytes.len() {
            return Err(Corrupt("more strings than bytes"));
        }
        let mut strings = Vec::with_capacity(count);
        for _ in 0..count {
            let len = reader.len()?;
            let start = reader.at;
            reader.take(len)?;
            std::str::from_utf8(&bytes[start..start + len])
                .map_err(|_| Corrupt("a string is not UTF-8"))?;
            strings.push((start as u32, len as u32));
        }
        let group_count = reader.len()?;
        let mut view = BlockView {
            bytes: Vec::new(),
            base_us,
            strings,
            groups: Vec::with_capacity(group_count.min(bytes.len())),
        };
        for _ in 0..group_count {
            let short = reader.byte()? == 1;
            let trace = reader.u128_le()?;
            let spans = reader.len()?;
            let start = reader.at;
            let mut ids = Vec::with_capacity(spans.min(1024));
            for _ in 0..spans {
                view.read_span(&mut reader, trace, short, &mut ids, &bytes, false)?;
            }
            view.groups.push((trace, short, start, spans));
        }
        view.bytes = bytes;
        Ok(view)
    }

    /// Traces in the block, in order.
    pub fn trace_ids(&self) -> impl Iterator<Item = u128> + '_ {
        self.groups.iter().map(|g| g.0)
    }

    /// Spans in the block.
    pub fn span_count(&self) -> usize {
        self.groups.iter().map(|g| g.3).sum()
    }

    /// The spans of `trace` in this block (empty when it has none).
    pub fn trace(&self, trace: u128) -> Vec<Span> {
        let mut out = Vec::new();
        for &(id, short, start, count) in &self.groups {
            if id != trace {
                continue;
            }
            self.read_group(id, short, start, count, &mut out);
        }
        out
    }

    /// Every trace's spans, grouped as written.
    pub fn all(&self) -> Vec<Vec<Span>> {
        self.groups
            .iter()
            .map(|&(id, short, start, count)| {
                let mut spans = Vec::with_capacity(count);
                self.read_group(id, short, start, count, &mut spans);
                spans
            })
            .collect()
    }

    fn read_group(&self, id: u128, short: bool, start: usize, count: usize, out: &mut Vec<Span>) {
        let mut reader = Reader {
            bytes: &self.bytes,
            at: start,
        };
        let mut ids = Vec::with_capacity(count);
        let first = out.len();
        for _ in 0..count {
            // Parsed once already in `parse`: it cannot fail now.
            match self.read_span(&mut reader, id, short, &mut ids, &self.bytes, true) {
                Ok(Some(span)) => out.push(span),
                _ => {
                    out.truncate(first);
                    return;
                }
            }
        }
    }

    /// String `id`: checked always, built only when `build` (else empty).
    fn string(&self, bytes: &[u8], id: u64, build: bool) -> Result<String, Corrupt> {
        let &(start, len) = usize::try_from(id)
            .ok()
            .and_then(|i| self.strings.get(i))
            .ok_or(Corrupt("a string number is out of range"))?;
        if !build {
            return Ok(String::new());
        }
        let slice = &bytes[start as usize..(start + len) as usize];
        Ok(String::from_utf8_lossy(slice).into_owned())
    }

    fn optional_string(
        &self,
        bytes: &[u8],
        id: u64,
        build: bool,
    ) -> Result<Option<String>, Corrupt> {
        match id {
            0 => Ok(None),
            n => self.string(bytes, n - 1, build).map(Some),
        }
    }

    fn endpoint(
        &self,
        reader: &mut Reader<'_>,
        bytes: &[u8],
        build: bool,
    ) -> Result<Endpoint, Corrupt> {
        let service = self.optional_string(bytes, reader.varint()?, build)?;
        let ipv4 = self.optional_string(bytes, reader.varint()?, build)?;
        let ipv6 = self.optional_string(bytes, reader.varint()?, build)?;
        let port = u16::try_from(reader.varint()?).map_err(|_| Corrupt("a port is over 65535"))?;
        Ok(Endpoint {
            service_name: service,
            ipv4,
            ipv6,
            port: (port != 0).then_some(port),
        })
    }

    /// Reads one span; `ids` are the span ids read so far in its group (for
    /// parents given by index). With `build` false, only checks it (the
    /// layout pass) and answers `None`.
    fn read_span(
        &self,
        reader: &mut Reader<'_>,
        trace: u128,
        short: bool,
        ids: &mut Vec<u64>,
        bytes: &[u8],
        build: bool,
    ) -> Result<Option<Span>, Corrupt> {
        let id = reader.u64_le()?;
        let parent = match reader.varint()? {
            0 => None,
            1 => Some(reader.u64_le()?),
            n => Some(
                *usize::try_from(n - 2)
                    .ok()
                    .and_then(|i| ids.get(i))
                    .ok_or(Corrupt("a parent index is out of range"))?,
            ),
        };
        ids.push(id);
        let name = self.optional_string(bytes, reader.varint()?, build)?;
        let flags = reader.byte()?;
        let remote = reader.byte()? & 1 == 1;
        let base = self.base_us as i64;
        let timestamp = if flags & (1 << 5) != 0 {
            Some((base + unzigzag(reader.varint()?)).max(0) as u64)
        } else {
            None
        };
        let duration = if flags & (1 << 6) != 0 {
            Some(reader.varint()?)
        } else {
            None
        };
        let local_endpoint = if flags & (1 << 7) != 0 {
            Some(self.endpoint(reader, bytes, build)?)
        } else {
            None
        };
        let remote_endpoint = if remote {
            Some(self.endpoint(reader, bytes, build)?)
        } else {
            None
        };
        let annotation_count = reader.len()?;
        let mut annotations = Vec::with_capacity(if build {
            annotation_count.min(crate::span::MAX_ANNOTATIONS)
        } else {
            0
        });
        for _ in 0..annotation_count {
            let timestamp = (base + unzigzag(reader.varint()?)).max(0) as u64;
            let value = self.string(bytes, reader.varint()?, build)?;
            if build {
                annotations.push(Annotation { timestamp, value });
            }
        }
        let tag_count = reader.len()?;
        let mut tags = BTreeMap::new();
        for _ in 0..tag_count {
            let key = self.string(bytes, reader.varint()?, build)?;
            let value = self.string(bytes, reader.varint()?, build)?;
            if build {
                tags.insert(key, value);
            }
        }
        if !build {
            return Ok(None);
        }
        let kind = match flags & 0b111 {
            1 => Some(Kind::Client),
            2 => Some(Kind::Server),
            3 => Some(Kind::Producer),
            4 => Some(Kind::Consumer),
            _ => None,
        };
        let trace_hex = TraceId::new(trace).map_or_else(String::new, |t| t.to_string());
        Ok(Some(Span {
            trace_id: if short {
                trace_hex[16..].to_owned()
            } else {
                trace_hex
            },
            id: format!("{id:016x}"),
            parent_id: parent.map(|p| format!("{p:016x}")),
            name,
            kind,
            timestamp,
            duration,
            local_endpoint,
            remote_endpoint,
            annotations,
            tags,
            debug: flags & (1 << 3) != 0,
            shared: flags & (1 << 4) != 0,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn span(trace: &str, id: &str, parent: Option<&str>, service: &str) -> Span {
        Span {
            trace_id: trace.into(),
            id: id.into(),
            parent_id: parent.map(Into::into),
            name: Some("get /a".into()),
            kind: Some(Kind::Server),
            timestamp: Some(1_700_000_000_000_000),
            duration: Some(1500),
            local_endpoint: Some(Endpoint {
                service_name: Some(service.into()),
                ipv4: Some("10.0.0.1".into()),
                ipv6: None,
                port: Some(8080),
            }),
            remote_endpoint: None,
            annotations: vec![Annotation {
                timestamp: 1_699_999_999_999_000,
                value: "ws".into(),
            }],
            tags: [("http.method".to_owned(), "GET".to_owned())].into(),
            debug: false,
            shared: true,
        }
    }

    #[test]
    fn a_block_reads_back_what_was_written() {
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let root = span(trace, "00f067aa0ba902b7", Some("1111111111111111"), "front");
        let mut child = span(trace, "00f067aa0ba902b8", Some("00f067aa0ba902b7"), "back");
        child.kind = Some(Kind::Client);
        child.timestamp = None;
        child.remote_endpoint = Some(Endpoint {
            service_name: Some("db".into()),
            ..Endpoint::default()
        });
        let short_trace = "a3ce929d0e0e4736";
        let other = span(short_trace, "00f067aa0ba902b9", None, "front");
        let mut writer = BlockWriter::new(1_700_000_000_000_000);
        let id = TraceId::from_hex(trace).unwrap();
        let summary = writer.add_trace(id, &[root.clone(), child.clone()]);
        assert_eq!(summary.names.len(), 2);
        assert_eq!(summary.start_us, 1_700_000_000_000_000);
        writer.add_trace(
            TraceId::from_hex(short_trace).unwrap(),
            std::slice::from_ref(&other),
        );
        let view = BlockView::parse(writer.finish()).unwrap();
        assert_eq!(view.span_count(), 3);
        assert_eq!(view.trace(id.get()), vec![root, child]);
        let short = TraceId::from_hex(short_trace).unwrap().get();
        assert_eq!(view.trace(short), vec![other]);
        assert!(view.trace(7).is_empty());
    }

    #[test]
    fn broken_blocks_are_errors_not_panics() {
        let mut writer = BlockWriter::new(0);
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        writer.add_trace(
            TraceId::from_hex(trace).unwrap(),
            &[span(trace, "00f067aa0ba902b7", None, "s")],
        );
        let bytes = writer.finish();
        for cut in 0..bytes.len() {
            assert!(
                BlockView::parse(bytes[..cut].to_vec()).is_err(),
                "cut {cut}"
            );
        }
        for i in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0xff;
            let _ = BlockView::parse(flipped).map(|v| v.all());
        }
    }
}
