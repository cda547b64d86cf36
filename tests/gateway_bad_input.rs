//! Bad input at the gateway, as a process: a 100 MB upload and download stream
//! through with the gateway's memory staying flat. (Malformed requests are tested
//! in-process: crates/sluice-gateway/tests/bad_input.rs.)

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use crate::support::{until_status, Http, Sluice};
use sluice_testkit::upstream::counting_upstream;

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
async fn hundred_megabytes_stream_through_with_flat_memory() {
    let dir = tempfile::tempdir().unwrap();
    let sluice = Sluice::up(dir.path());
    let gateway = sluice.gateway.clone().unwrap();
    let pid = sluice.pid();
    let count = Arc::new(AtomicUsize::new(0));
    let upstream = counting_upstream(count, 200).await;
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
