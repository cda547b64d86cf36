//! Console render time with many services: starts `sluice up` (the binary given),
//! registers SERVICES services with two instances and a route each, sends traffic
//! through every route so the boards and charts have data (and an alarm rule fires
//! for every service), then loads every console
//! page 20 times and reports the server's time per page (its `Server-Timing`
//! header) and the time the client saw, median / p90 / max.
//!
//! Usage: ui-bench SLUICE_BINARY \[SERVICES\]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An upstream answering every request with a small 200 (HTTP/1.1 keep-alive).
async fn upstream() -> anyhow::Result<u16> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 8192];
                let mut held = Vec::new();
                loop {
                    let Ok(n) = socket.read(&mut buffer).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    held.extend_from_slice(&buffer[..n]);
                    while let Some(end) = held.windows(4).position(|w| w == b"\r\n\r\n") {
                        held.drain(..end + 4);
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok";
                        if socket.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    Ok(port)
}

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted.get(index).copied().unwrap_or(f64::NAN)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let binary = args
        .next()
        .context("usage: ui-bench SLUICE_BINARY [SERVICES]")?;
    let services: usize = args.next().map_or(Ok(1000), |s| s.parse())?;
    let work = tempfile::tempdir()?;
    let admin = sluice_testkit::free_port();
    let gateway = sluice_testkit::free_port();
    let log = std::fs::File::create(work.path().join("sluice.log"))?;
    let _sluice = Killed(
        Command::new(&binary)
            .args(["up", "--data"])
            .arg(work.path().join("d"))
            .args(["--admin", &format!("127.0.0.1:{admin}")])
            .args(["--gateway", &format!("127.0.0.1:{gateway}")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {binary}"))?,
    );
    if !sluice_testkit::wait_until(Duration::from_secs(30), || {
        sluice_testkit::http_get(admin, "/readyz").is_some_and(|r| r.contains(" 200 "))
    }) {
        bail!("sluice up never became ready");
    }
    let base = format!("http://127.0.0.1:{admin}");
    let upstream = upstream().await?;
    let http = reqwest::Client::new();

    let started = Instant::now();
    let puts: Vec<(String, String)> = (0..services)
        .flat_map(|i| {
            let instances = (0..2).map(move |j| {
                (
                    format!("/v1/namespaces/default/services/s{i}/instances/i{j}"),
                    format!(
                        r#"{{"address": "127.0.0.1:{upstream}", "labels": {{"zone": "z{j}"}}}}"#
                    ),
                )
            });
            instances.chain(std::iter::once((
                format!("/v1/namespaces/default/resources/Route/r{i}"),
                format!(
                    r#"{{"spec": {{"match": {{"path_prefix": "/s{i}"}}, "service": "s{i}"}}}}"#
                ),
            )))
        })
        .collect();
    let failures = futures::stream::iter(puts)
        .map(|(path, body)| {
            let http = http.clone();
            let url = format!("{base}{path}");
            async move {
                http.put(url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .map(|r| r.status().is_success())
                    .unwrap_or(false)
            }
        })
        .buffer_unordered(16)
        .filter(|ok| std::future::ready(!ok))
        .count()
        .await;
    if failures > 0 {
        bail!("{failures} registrations failed");
    }
    for (kind, body) in [
        ("Breaker", r#"{"spec": {"service": "s0"}}"#),
        ("Concurrency", r#"{"spec": {"service": "s0"}}"#),
        (
            "RateLimit",
            r#"{"spec": {"route": "r0", "rate": "100r/s", "burst": 50}}"#,
        ),
        // Fires for every service with traffic: a thousand firing alarms to list.
        (
            "AlarmRule",
            r#"{"spec": {"metric": "qps", "by": ["service"], "above": 0, "for": "0s"}}"#,
        ),
    ] {
        http.put(format!("{base}/v1/namespaces/default/resources/{kind}/s0"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?
            .error_for_status()?;
    }
    eprintln!(
        "registered {services} services (2 instances and a route each) in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Traffic through every route, over two 10 s steps, so boards and charts have data.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let gateway_base = format!("http://127.0.0.1:{gateway}");
    for round in 0..2 {
        let sent = futures::stream::iter(0..services * 5)
            .map(|n| {
                let http = http.clone();
                let url = format!("{gateway_base}/s{}/x", n % services);
                async move { http.get(url).send().await.map(|r| r.status().is_success()) }
            })
            .buffer_unordered(32)
            .filter(|r| std::future::ready(matches!(r, Ok(true))))
            .count()
            .await;
        eprintln!(
            "round {round}: {sent} of {} requests answered 200",
            services * 5
        );
        tokio::time::sleep(Duration::from_secs(10)).await;
    }

    let pages = [
        "/ui/",
        "/ui/services",
        "/ui/services/s0",
        "/ui/resources",
        "/ui/alarms",
        "/ui/errors",
        "/ui/hosts",
        "/ui/series?metric=qps&by=api&range=5m",
        "/ui/series?metric=qps&by=&range=1h",
    ];
    println!("| page ({services} services) | server median | server p90 | server max | client median | bytes |");
    println!("|---|---|---|---|---|---|");
    for page in pages {
        let mut server = Vec::new();
        let mut client = Vec::new();
        let mut bytes = 0;
        for _ in 0..20 {
            let sent = Instant::now();
            let response = http.get(format!("{base}{page}")).send().await?;
            if !response.status().is_success() {
                bail!("{page}: {}", response.status());
            }
            let timing = response
                .headers()
                .get("server-timing")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("app;dur="))
                .and_then(|v| v.parse::<f64>().ok())
                .context("no Server-Timing header")?;
            bytes = response.bytes().await?.len();
            client.push(sent.elapsed().as_secs_f64() * 1000.0);
            server.push(timing);
        }
        server.sort_by(f64::total_cmp);
        client.sort_by(f64::total_cmp);
        println!(
            "| `{page}` | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {} |",
            quantile(&server, 0.5),
            quantile(&server, 0.9),
            quantile(&server, 1.0),
            quantile(&client, 0.5),
            bytes
        );
    }
    Ok(())
}
