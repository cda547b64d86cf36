//! Two `sluice server` nodes on one real etcd: an instance registered on one is
//! listed by the other, its heartbeats may go to either, and a blocking query on one
//! wakes on a change made through the other.

use std::time::Duration;

use crate::support::{Http, Sluice};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_etcd() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = sluice_testkit::EtcdCluster::single();
    let url = etcd.url("/nodes-test");
    let args = [
        "--store",
        url.as_str(),
        "--unhealthy-after",
        "2s",
        "--remove-after",
        "4s",
        "--heartbeat-interval",
        "1s",
    ];
    let a = Sluice::start("server", &args, dir.path());
    let b = Sluice::start("server", &args, dir.path());
    assert!(
        a.log_text().contains("control-plane node"),
        "{}",
        a.log_text()
    );
    let (on_a, on_b) = (Http::new(&a.url), Http::new(&b.url));

    on_a.put(
        "/v1/namespaces/default/services/echo/instances/e1",
        r#"{"address":"127.0.0.1:9001","ephemeral":true}"#,
    )
    .await;
    let listed = sluice_testkit::wait_until(Duration::from_secs(10), || {
        sluice_testkit::http_get(b.port, "/v1/namespaces/default/services/echo/instances")
            .is_some_and(|r| r.contains("\"e1\""))
    });
    assert!(listed, "node b lists what node a registered");

    // Heartbeats alternate between the nodes for longer than remove_after: it stays healthy.
    for round in 0..8 {
        let node = if round % 2 == 0 { &on_a } else { &on_b };
        let (status, _, body) = node
            .send(
                "PUT",
                "/v1/namespaces/default/services/echo/instances/e1/heartbeat",
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let (index, list) = on_b
        .get("/v1/namespaces/default/services/echo/instances")
        .await;
    assert_eq!(list["instances"][0]["healthy"], true);

    // A blocking query on b wakes on a change made through a.
    let index = index.unwrap();
    let waiter = {
        let url = b.url.clone();
        tokio::spawn(async move {
            Http::new(&url)
                .get(&format!(
                    "/v1/namespaces/default/services/echo/instances?index={index}&wait=30s"
                ))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished());
    on_a.put(
        "/v1/namespaces/default/services/echo/instances/p2",
        r#"{"address":"127.0.0.1:9002"}"#,
    )
    .await;
    let (new_index, list) = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap();
    assert!(new_index.unwrap() > index);
    assert_eq!(list["instances"].as_array().unwrap().len(), 2);

    // Without heartbeats, both nodes see it go.
    let gone = sluice_testkit::wait_until(Duration::from_secs(20), || {
        [a.port, b.port].iter().all(|port| {
            sluice_testkit::http_get(
                *port,
                "/v1/namespaces/default/services/echo/instances?all=true",
            )
            .is_some_and(|r| !r.contains("\"e1\""))
        })
    });
    assert!(gone);
}
