//! Bad input at the gateway: malformed request lines, conflicting Content-Length /
//! Transfer-Encoding, oversized headers and invalid HTTP/2 frames get a 400 / 431
//! or a closed connection, and none of it reaches the upstream; a slow client is cut
//! off at the header timeout. Also: a 100 MB upload and download stream through
//! with the gateway's memory staying flat.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use futures::StreamExt;

use crate::support::{until_status, Http, Sluice};

/// An upstream that counts the requests it gets; `/big` answers 100 MB, anything
/// else answers the number of body bytes it read.
async fn counting_upstream(count: Arc<AtomicUsize>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let app = axum::Router::new().fallback(move |request: Request| {
        let count = Arc::clone(&count);
        async move {
            count.fetch_add(1, Ordering::SeqCst);
            if request.uri().path() == "/big" {
                let chunk = bytes::Bytes::from(vec![b'x'; 1 << 20]);
                let stream = futures::stream::iter(
                    (0..100).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
                );
                return axum::response::Response::new(Body::from_stream(stream));
            }
            let mut body = request.into_body().into_data_stream();
            let mut total = 0usize;
            while let Some(chunk) = body.next().await {
                total += chunk.map(|c| c.len()).unwrap_or(0);
            }
            axum::response::Response::new(Body::from(total.to_string()))
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

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

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_never_reach_the_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let sluice = Sluice::start(
        "up",
        &[
            "--data",
            data.to_str().unwrap(),
            "--gateway-header-timeout",
            "1s",
        ],
        dir.path(),
    );
    let gateway = sluice.gateway.clone().unwrap();
    let port: u16 = gateway.rsplit(':').next().unwrap().parse().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let upstream = counting_upstream(Arc::clone(&count)).await;
    let api = Http::new(&sluice.url);
    api.register("up", "u", &upstream).await;
    api.put(
        "/v1/namespaces/default/resources/Route/all",
        r#"{"spec": {"match": {"path_prefix": "/"}, "service": "up", "retries": {"attempts": 0}}}"#,
    )
    .await;
    let client = reqwest::Client::new();
    until_status(&client, &format!("{gateway}/ok"), 200).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_megabytes_stream_through_with_flat_memory() {
    let dir = tempfile::tempdir().unwrap();
    let sluice = Sluice::up(dir.path());
    let gateway = sluice.gateway.clone().unwrap();
    let pid = sluice.pid();
    let count = Arc::new(AtomicUsize::new(0));
    let upstream = counting_upstream(count).await;
    let api = Http::new(&sluice.url);
    api.register("up", "u", &upstream).await;
    api.put(
        "/v1/namespaces/default/resources/Route/all",
        r#"{"spec": {"match": {"path_prefix": "/"}, "service": "up"}}"#,
    )
    .await;
    let client = reqwest::Client::new();
    until_status(&client, &format!("{gateway}/ok"), 200).await;
    let before = rss_kib(pid);
    let mut peak = before;

    // Upload 100 MB in 1 MB chunks.
    let chunk = bytes::Bytes::from(vec![b'u'; 1 << 20]);
    let upload =
        futures::stream::iter((0..100).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let sampler = tokio::spawn(async move {
        let mut peak = 0;
        for _ in 0..400 {
            peak = peak.max(rss_kib(pid));
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        peak
    });
    let response = client
        .post(format!("{gateway}/upload"))
        .body(reqwest::Body::wrap_stream(upload))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.text().await.unwrap(),
        (100usize << 20).to_string(),
        "every byte arrived"
    );

    // Download 100 MB.
    let mut download = client
        .get(format!("{gateway}/big"))
        .send()
        .await
        .unwrap()
        .bytes_stream();
    let mut total = 0usize;
    while let Some(chunk) = download.next().await {
        total += chunk.unwrap().len();
        peak = peak.max(rss_kib(pid));
    }
    assert_eq!(total, 100 << 20);
    sampler.abort();
    let growth_mib = (peak.saturating_sub(before)) / 1024;
    assert!(
        growth_mib < 40,
        "the gateway grew by {growth_mib} MiB while streaming 2 × 100 MB"
    );
}
