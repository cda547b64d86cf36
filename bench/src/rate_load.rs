//! A fixed-rate HTTP load generator for latency at a given throughput: each of C
//! keep-alive connections sends on its own schedule (rate / C per second), and a
//! request's latency is measured from its *scheduled* time, so a stalled server
//! cannot hide queueing (no coordinated omission).
//!
//! Usage: `rate-load URL RATE SECONDS [CONNECTIONS] [h2]` → prints `sent p50_ms p99_ms`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

async fn connect(authority: &str, h2: bool) -> Sender {
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .expect("connect");
    stream.set_nodelay(true).unwrap();
    let io = TokioIo::new(stream);
    if h2 {
        let (sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        tokio::spawn(connection);
        Sender::H2(sender)
    } else {
        let (sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(connection);
        Sender::H1(sender)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url: hyper::Uri = args.get(1).expect("URL").parse().expect("a URL");
    let rate: f64 = args
        .get(2)
        .expect("RATE")
        .parse()
        .expect("RATE is a number");
    let seconds: u64 = args
        .get(3)
        .expect("SECONDS")
        .parse()
        .expect("SECONDS is a number");
    let connections: usize = args
        .get(4)
        .map_or(64, |c| c.parse().expect("CONNECTIONS is a number"));
    let h2 = args.get(5).is_some_and(|a| a == "h2");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let authority = url.authority().expect("URL with host:port").to_string();
        let interval = Duration::from_secs_f64(connections as f64 / rate);
        let start = Instant::now() + Duration::from_millis(200);
        let end = start + Duration::from_secs(seconds);
        let tasks: Vec<_> = (0..connections)
            .map(|c| {
                let (url, authority) = (url.clone(), authority.clone());
                tokio::spawn(async move {
                    let mut sender = connect(&authority, h2).await;
                    let mut latencies = Vec::new();
                    // Spread the connections' schedules over one interval.
                    let mut due = start + interval.mul_f64(c as f64 / connections as f64);
                    while due < end {
                        tokio::time::sleep_until(due.into()).await;
                        let request = hyper::Request::builder()
                            .uri(url.clone())
                            .header("host", authority.as_str())
                            .body(Empty::<Bytes>::new())
                            .unwrap();
                        let response = match &mut sender {
                            Sender::H1(s) => {
                                s.ready().await.unwrap();
                                s.send_request(request).await
                            }
                            Sender::H2(s) => s.send_request(request).await,
                        };
                        let body = response.expect("response").into_body().collect().await;
                        assert!(body.is_ok());
                        latencies.push(due.elapsed());
                        due += interval;
                    }
                    latencies
                })
            })
            .collect();
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.unwrap());
        }
        all.sort();
        let at = |q: f64| {
            all[((all.len() as f64 * q) as usize).min(all.len() - 1)].as_secs_f64() * 1000.0
        };
        println!("{} {:.2} {:.2}", all.len(), at(0.5), at(0.99));
    });
}
