//! Opens N keep-alive HTTP/1.1 connections to a proxy, sends one request on each
//! (so each connection is fully set up, its first request answered), and holds
//! them idle — for measuring a proxy's memory per idle client connection.
//!
//! Usage: `idle-conns HOST:PORT PATH N HOLD_SECONDS` → prints `ready N` once every
//! connection has had its answer, then holds them for HOLD_SECONDS and exits.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Connections being set up at once (below a listen backlog of 1024).
const AT_ONCE: usize = 256;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let address = args.get(1).expect("HOST:PORT").clone();
    let path = args.get(2).expect("PATH").clone();
    let count: usize = args.get(3).expect("N").parse().expect("N is a number");
    let hold: u64 = args
        .get(4)
        .expect("HOLD_SECONDS")
        .parse()
        .expect("HOLD_SECONDS is a number");
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\n\r\n");
        let mut held = Vec::with_capacity(count);
        let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(AT_ONCE));
        let mut tasks = Vec::with_capacity(count);
        for _ in 0..count {
            let permit = std::sync::Arc::clone(&semaphore)
                .acquire_owned()
                .await
                .unwrap();
            let (address, request) = (address.clone(), request.clone());
            tasks.push(tokio::spawn(async move {
                let mut stream = tokio::net::TcpStream::connect(&address)
                    .await
                    .expect("connect");
                stream.write_all(request.as_bytes()).await.unwrap();
                // Read the head and a short body ("ok"-sized answers).
                let mut seen = Vec::new();
                let mut buffer = [0u8; 1024];
                loop {
                    let n = stream.read(&mut buffer).await.unwrap();
                    assert!(n > 0, "the proxy closed the connection");
                    seen.extend_from_slice(&buffer[..n]);
                    if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse().unwrap_or(0));
                        if seen.len() >= end + 4 + length {
                            assert!(head.starts_with("http/1.1 200"), "{head}");
                            break;
                        }
                    }
                }
                drop(permit);
                stream
            }));
        }
        for task in tasks {
            held.push(task.await.unwrap());
        }
        println!("ready {}", held.len());
        let _ = std::io::stdout().flush();
        tokio::time::sleep(Duration::from_secs(hold)).await;
        drop(held);
    });
}
