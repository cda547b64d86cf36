//! A standalone `sluice gateway` when the control plane goes away: under load,
//! zero failed requests; restarted while no control node answers, it serves from
//! its disk snapshot. It is given a dead control URL first, so it also fails over.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::{echo_upstream, until_status, Http, Sluice};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_keeps_serving_without_the_control_plane() {
    let dir = tempfile::tempdir().unwrap();
    let mut control = Sluice::start(
        "server",
        &["--data", dir.path().join("cp").to_str().unwrap()],
        dir.path(),
    );
    let upstream = echo_upstream("only").await;
    let api = Http::new(&control.url);
    api.register("echo", "e1", &upstream).await;
    api.put(
        "/v1/namespaces/default/resources/Route/echo",
        r#"{"spec": {"match": {"path_prefix": "/echo"}, "service": "echo"}}"#,
    )
    .await;

    let dead = format!("http://127.0.0.1:{}", sluice_testkit::free_port());
    let controls = format!("{dead},{}", control.url);
    let gateway_data = dir.path().join("gw");
    let args = [
        "--control",
        controls.as_str(),
        "--data",
        gateway_data.to_str().unwrap(),
    ];
    let listening = |port: u16| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
    let port = sluice_testkit::free_port();
    let mut gateway = Sluice::start_until("gateway", &args, dir.path(), port, listening);
    let url = format!("http://127.0.0.1:{port}/echo");
    let client = reqwest::Client::new();
    let body = until_status(&client, &url, 200).await;
    assert_eq!(
        body["instance"], "only",
        "routed after failing over from the dead control URL"
    );
    assert!(gateway.log_text().contains("Sluice gateway is up"));

    // Load while the control plane is killed.
    let started = Instant::now();
    let statuses = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (client, url, statuses) = (client.clone(), url.clone(), Arc::clone(&statuses));
            tokio::spawn(async move {
                while started.elapsed() < Duration::from_millis(2500) {
                    let status = client
                        .get(&url)
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .unwrap_or(0);
                    statuses.lock().push(status);
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    control.kill();
    for worker in workers {
        worker.await.unwrap();
    }
    let statuses = statuses.lock().clone();
    let failed = statuses.iter().filter(|s| **s != 200).count();
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed after the control plane died",
        statuses.len()
    );

    // Restarted with no control plane at all: it serves from its disk snapshot.
    assert!(gateway_data.join("gateway-snapshot.json").exists());
    gateway.kill();
    let _gateway = Sluice::start_until("gateway", &args, dir.path(), port, listening);
    let body = until_status(&client, &url, 200).await;
    assert_eq!(body["instance"], "only");
}
