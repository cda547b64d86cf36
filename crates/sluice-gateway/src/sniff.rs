//! Catching request smuggling that hyper would quietly repair: an HTTP/1.1 request
//! head with both `Content-Length` and `Transfer-Encoding`. hyper applies RFC 9112
//! §6.3 (chunked wins, the connection closes afterwards), but a proxy should refuse
//! such a request outright, so none of it reaches an upstream. [`SniffedIo`] wraps a
//! connection, watches the bytes hyper reads for request heads, and raises a flag the
//! request handler checks before forwarding anything.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Longest line the scanner keeps (longer lines cannot be the headers it looks for).
const MAX_LINE: usize = 64;

/// Finds request heads that carry both framings, across read boundaries.
#[derive(Debug, Default)]
pub(crate) struct HeadScanner {
    line: Vec<u8>,
    line_too_long: bool,
    in_head: bool,
    content_length: bool,
    transfer_encoding: bool,
    /// Set when the connection turned out to be HTTP/2 (its preface): nothing to scan.
    http2: bool,
    seen_first_line: bool,
}

impl HeadScanner {
    /// Feeds bytes; returns true once a head with both framing headers was seen.
    pub fn feed(&mut self, mut bytes: &[u8]) -> bool {
        if self.http2 {
            return false;
        }
        let mut found = false;
        while !bytes.is_empty() {
            match bytes.iter().position(|&b| b == b'\n') {
                Some(at) => {
                    self.keep(&bytes[..at]);
                    found |= self.end_line();
                    if self.http2 {
                        return found;
                    }
                    bytes = &bytes[at + 1..];
                }
                None => {
                    self.keep(bytes);
                    break;
                }
            }
        }
        found
    }

    /// Keeps the start of the current line (lower-cased), up to [`MAX_LINE`] bytes.
    fn keep(&mut self, part: &[u8]) {
        let room = MAX_LINE.saturating_sub(self.line.len());
        self.line
            .extend(part.iter().take(room).map(u8::to_ascii_lowercase));
        if part.len() > room {
            self.line_too_long = true;
        }
    }

    fn end_line(&mut self) -> bool {
        let line = std::mem::take(&mut self.line);
        let too_long = std::mem::take(&mut self.line_too_long);
        let line = line.strip_suffix(b"\r").unwrap_or(&line);
        if line.is_empty() {
            let both = self.in_head && self.content_length && self.transfer_encoding;
            self.in_head = false;
            self.content_length = false;
            self.transfer_encoding = false;
            return both;
        }
        if !std::mem::replace(&mut self.seen_first_line, true) && line == b"pri * http/2.0" {
            self.http2 = true;
            return false;
        }
        if !self.in_head {
            // A request line: METHOD SP target SP HTTP/1.x (the target may be long).
            self.in_head = too_long && line.contains(&b' ')
                || line.ends_with(b" http/1.1")
                || line.ends_with(b" http/1.0");
            return false;
        }
        if line.starts_with(b"content-length:") {
            self.content_length = true;
        } else if line.starts_with(b"transfer-encoding:") {
            self.transfer_encoding = true;
        }
        false
    }
}

/// A connection whose reads are scanned; `flag` rises on a smuggling attempt.
pub(crate) struct SniffedIo<T> {
    inner: T,
    scanner: HeadScanner,
    flag: Arc<AtomicBool>,
}

impl<T> SniffedIo<T> {
    pub fn new(inner: T, flag: Arc<AtomicBool>) -> Self {
        SniffedIo {
            inner,
            scanner: HeadScanner::default(),
            flag,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for SniffedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &poll {
            if this.scanner.feed(&buf.filled()[before..]) {
                this.flag.store(true, Ordering::Release);
            }
        }
        poll
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for SniffedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(chunks: &[&[u8]]) -> bool {
        let mut scanner = HeadScanner::default();
        chunks
            .iter()
            .fold(false, |found, chunk| found | scanner.feed(chunk))
    }

    #[test]
    fn finds_both_framings_in_one_head_even_across_reads() {
        let smuggle = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        assert!(scan(&[smuggle]));
        let (a, b) = smuggle.split_at(37);
        assert!(scan(&[a, b]), "split inside a header line");
        assert!(scan(&[
            b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n",
            b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n"
        ]));
    }

    #[test]
    fn http2_connections_are_not_scanned() {
        assert!(!scan(&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"]));
    }

    #[test]
    fn ordinary_requests_pass() {
        assert!(!scan(&[
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
        ]));
        assert!(!scan(&[
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        ]));
        // Two requests, each with one framing, are not one head with both.
        assert!(!scan(&[b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\nPOST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"]));
        // A body line that looks like a header is outside any head.
        assert!(!scan(&[b"POST / HTTP/1.1\r\nContent-Length: 40\r\n\r\ntransfer-encoding: x\r\ncontent-length: 1\r\n"]));
    }
}
