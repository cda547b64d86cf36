//! The agent's host cache: it follows items into files and a local API, keeps
//! answering reads and watches from its files while the control plane is
//! SIGKILLed (saying the data may be stale), catches up with a publish made once
//! the control plane is back, and serves its files when restarted with no control
//! plane at all.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{Http, Sluice};

const ITEM: &str = "/v1/namespaces/default/configs/app/db.yaml";

/// Status, the stale header, and the body of a GET on the agent's local API.
async fn agent_get(port: u16, path: &str) -> (u16, bool, serde_json::Value) {
    let response = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}{path}"))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let stale = response.headers().get("x-sluice-stale").is_some();
    let body = response.json().await.unwrap_or(serde_json::Value::Null);
    (status, stale, body)
}

fn start_agent(dir: &std::path::Path, control: &str, port: u16) -> Sluice {
    let cache = dir.join("agent");
    let listen = format!("127.0.0.1:{port}");
    let args = [
        "--control",
        control,
        "--config",
        "default/app/db.yaml",
        "--dir",
        cache.to_str().unwrap(),
        "--config-listen",
        listen.as_str(),
        "--labels",
        "zone=a",
    ];
    Sluice::start_until("agent", &args, dir, port, |port| {
        sluice_testkit::http_get(port, "/v1/agent/configs").is_some()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_serves_its_files_while_the_control_plane_is_gone_and_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let up_args = ["--data", data.to_str().unwrap()];
    let mut control = Sluice::start("up", &up_args, dir.path());
    let control_port = control.port;
    let api = Http::new(&control.url);
    api.put(ITEM, &json!({"content": "pool: 1\n"}).to_string())
        .await;

    let agent_port = sluice_testkit::free_port();
    let mut agent = start_agent(dir.path(), &control.url, agent_port);
    let file = dir.path().join("agent/configs/default/app/db.yaml");
    crate::support::until("the agent caches version 1", || {
        (std::fs::read_to_string(&file).ok()? == "pool: 1\n").then_some(())
    })
    .await;
    let (status, stale, read) = agent_get(agent_port, ITEM).await;
    assert_eq!((status, stale, &read["version"]), (200, false, &json!(1)));
    let (status, _, _) = agent_get(agent_port, "/v1/namespaces/default/configs/app/other").await;
    assert_eq!(status, 404, "items not followed are not served");

    // The control plane dies; a watch opened before keeps waiting.
    let waiting =
        tokio::spawn(
            async move { agent_get(agent_port, &format!("{ITEM}?version=1&wait=60s")).await },
        );
    control.kill();
    let stale_seen = sluice_testkit::wait_until(Duration::from_secs(20), || {
        sluice_testkit::http_get(agent_port, ITEM).is_some_and(|r| r.contains("x-sluice-stale"))
    });
    assert!(
        stale_seen,
        "reads say the data may be stale:\n{}",
        agent.log_text()
    );
    let (status, stale, read) = agent_get(agent_port, ITEM).await;
    assert_eq!(
        (status, stale, read["content"].as_str()),
        (200, true, Some("pool: 1\n"))
    );
    let (status, _, _) = agent_get(agent_port, &format!("{ITEM}?version=1&wait=300ms")).await;
    assert_eq!(status, 304, "watches are answered from the cache too");
    assert!(
        agent.log_text().contains("may be stale"),
        "{}",
        agent.log_text()
    );

    // Back, with a new publish: the agent and its waiting watcher have it.
    let control = Sluice::start_on("up", &up_args, dir.path(), control_port);
    let api = Http::new(&control.url);
    let published = Instant::now();
    api.put(ITEM, &json!({"content": "pool: 2\n"}).to_string())
        .await;
    let (status, stale, woke) = waiting.await.unwrap();
    eprintln!(
        "the agent's watcher woke {:?} after the publish",
        published.elapsed()
    );
    assert_eq!((status, woke["content"].as_str()), (200, Some("pool: 2\n")));
    assert!(!stale, "caught up: no longer stale");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "pool: 2\n");

    // Restarted with no control plane, the agent serves its files.
    agent.kill();
    drop(control);
    let agent = start_agent(
        dir.path(),
        &format!("http://127.0.0.1:{control_port}"),
        agent_port,
    );
    let (status, stale, read) = agent_get(agent_port, ITEM).await;
    assert_eq!(
        (status, stale, &read["version"]),
        (200, true, &json!(2)),
        "{}",
        agent.log_text()
    );
}
