//! An upstream instance killed under load: with retries on, idempotent requests
//! keep succeeding, the instance is ejected, and it gets traffic again once it is
//! back and its ejection is over.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::{Http, Sluice};

/// A real HTTP server process (Python's http.server) answering GET /who with `name`.
struct Upstream {
    child: Option<Child>,
    port: u16,
    dir: std::path::PathBuf,
}

impl Upstream {
    fn start(name: &str, root: &Path, port: u16) -> Self {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("who"), name).unwrap();
        let mut upstream = Upstream {
            child: None,
            port,
            dir,
        };
        upstream.spawn();
        upstream
    }

    fn spawn(&mut self) {
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs the test upstream");
        self.child = Some(child);
        let port = self.port;
        assert!(sluice_testkit::wait_until(Duration::from_secs(10), || {
            sluice_testkit::http_get(port, "/who").is_some()
        }));
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_is_retried_around_ejected_and_readmitted() {
    let dir = tempfile::tempdir().unwrap();
    let sluice = Sluice::up(dir.path());
    let gateway = sluice.gateway.clone().unwrap();
    let api = Http::new(&sluice.url);
    let a = Upstream::start("a", dir.path(), sluice_testkit::free_port());
    let mut b = Upstream::start("b", dir.path(), sluice_testkit::free_port());
    api.put(
        "/v1/namespaces/default/services/web/instances/a",
        &format!(r#"{{"address":"127.0.0.1:{}"}}"#, a.port),
    )
    .await;
    api.put(
        "/v1/namespaces/default/services/web/instances/b",
        &format!(r#"{{"address":"127.0.0.1:{}"}}"#, b.port),
    )
    .await;
    api.put(
        "/v1/namespaces/default/resources/Route/web",
        r#"{"spec": {"match": {"path_prefix": "/"}, "service": "web",
            "retries": {"attempts": 2, "on": ["connect_failure", "reset"]},
            "outlier": {"consecutive_failures": 2, "base_ejection": "1s"}}}"#,
    )
    .await;
    let client = reqwest::Client::new();
    let url = format!("{gateway}/who");
    let mut routed = false;
    for _ in 0..200 {
        if client
            .get(&url)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            routed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(routed, "the route never applied");

    // Load: 8 clients for 3 s; b is killed after 0.7 s.
    let started = Instant::now();
    let results = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (client, url, results) = (client.clone(), url.clone(), Arc::clone(&results));
            tokio::spawn(async move {
                while started.elapsed() < Duration::from_secs(3) {
                    let response = client.get(&url).send().await.unwrap();
                    let status = response.status().as_u16();
                    let body = response.text().await.unwrap_or_default();
                    results.lock().push((started.elapsed(), status, body));
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    b.kill();
    for worker in workers {
        worker.await.unwrap();
    }
    let results = results.lock().clone();
    let failed: Vec<_> = results
        .iter()
        .filter(|(_, status, _)| *status != 200)
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        results.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(
        results
            .iter()
            .any(|(at, _, who)| *at < Duration::from_millis(700) && who == "b"),
        "b served before the kill"
    );
    // Once ejected, b gets no attempts: answers late in the run all come from a.
    let late: Vec<_> = results
        .iter()
        .filter(|(at, _, _)| *at > Duration::from_secs(2))
        .collect();
    assert!(!late.is_empty() && late.iter().all(|(_, _, who)| who == "a"));

    // b comes back: after its ejection ends, it gets traffic again.
    b.spawn();
    let mut back = false;
    for _ in 0..200 {
        let body = client
            .get(&url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap_or_default();
        if body == "b" {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(back, "the recovered instance never got traffic again");
}
