//! Bad input at the gateway: malformed request lines, conflicting Content-Length /
//! Transfer-Encoding, oversized headers and invalid HTTP/2 frames get a 400 / 431
//! or a closed connection, and none of it reaches the upstream; a slow client is cut
//! off at the header timeout.

// The clock rule (clippy.toml) is for the request path; a test times what it sees.
#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_gateway::GatewayConfig;
use support::{counting_upstream, Harness};

fn raw(port: u16, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

fn status_or_closed(answer: &str) -> &str {
    answer.lines().next().unwrap_or("(closed)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_never_reach_the_upstream() {
    let mut gateway = Harness::with_config(GatewayConfig {
        header_read_timeout: Duration::from_secs(1),
        ..GatewayConfig::default()
    })
    .await;
    let port = gateway.port;
    let count = Arc::new(AtomicUsize::new(0));
    let upstream = counting_upstream(Arc::clone(&count), 200).await;
    gateway.instances("up", &[("u", &upstream)]).await;
    gateway
        .route(
            "all",
            r#"{"match": {"path_prefix": "/"}, "service": "up", "retries": {"attempts": 0}}"#,
        )
        .await;
    let status = reqwest::get(format!("{}/ok", gateway.url))
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    let before = count.load(Ordering::SeqCst);
    assert!(before >= 1, "the route works");

    let many_headers = format!(
        "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..150)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect::<String>()
    );
    let big_header = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("malformed request line", b"GARBAGE\r\n\r\n".to_vec()),
        (
            "bad method characters",
            b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "two different Content-Lengths",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"
                .to_vec(),
        ),
        (
            "invalid Content-Length",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n".to_vec(),
        ),
        ("oversized headers", big_header.into_bytes()),
        (
            "header without colon",
            b"GET / HTTP/1.1\r\nHost x\r\n\r\n".to_vec(),
        ),
        ("too many headers", many_headers.into_bytes()),
        (
            "invalid HTTP/2 frame",
            [
                b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".as_slice(),
                &[0, 0, 4, 0xff, 0xff, 0, 0, 0, 1, 1, 2, 3, 4],
            ]
            .concat(),
        ),
    ];
    for (name, request) in cases {
        let answer = raw(port, &request);
        let status = status_or_closed(&answer);
        let ok = status == "(closed)"
            || status.contains(" 400 ")
            || status.contains(" 431 ")
            || !answer.starts_with("HTTP/1.1 2");
        assert!(ok, "{name}: {status}");
        assert_eq!(
            count.load(Ordering::SeqCst),
            before,
            "{name} reached the upstream ({status})"
        );
    }

    // Content-Length with Transfer-Encoding (and a request smuggled behind it): refused,
    // and the connection closed; nothing reaches the upstream.
    let smuggle = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let answer = raw(port, smuggle);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("ambiguous_length"), "{answer}");
    assert_eq!(
        answer.matches("HTTP/1.1 ").count(),
        1,
        "the connection closes: {answer}"
    );
    assert_eq!(
        count.load(Ordering::SeqCst),
        before,
        "none of it reached the upstream"
    );

    // A slow client that never finishes its headers is cut off at the header timeout.
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    let mut buffer = Vec::new();
    let _ = slow.read_to_end(&mut buffer);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "held for {:?}",
        started.elapsed()
    );
    assert_eq!(count.load(Ordering::SeqCst), before);
}
