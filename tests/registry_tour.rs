//! The README's tour against a real `sluice up`: start, register two instances,
//! query, drain one, and watch a blocking query see the change. Then a restart:
//! persistent instances and resources survive, ephemeral ones keep their lease.

use std::time::Duration;

use serde_json::Value;

use crate::support::{Http, Sluice};

fn ids(list: &Value) -> Vec<String> {
    list["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tour_works_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let sluice = Sluice::start("up", &["--data", data.to_str().unwrap()], dir.path());
    assert!(
        sluice.log_text().contains("Sluice is up"),
        "{}",
        sluice.log_text()
    );
    assert!(data.join("store.redb").exists(), "state lives in --data");

    // Register two instances (CLI and API), then query.
    let out = sluice.cli(&[
        "svc",
        "register",
        "echo",
        "127.0.0.1:9001",
        "--id",
        "i1",
        "--label",
        "version=v1",
    ]);
    assert!(out.contains("registered default/echo/i1"), "{out}");
    let http = Http::new(&sluice.url);
    http.put(
        "/v1/namespaces/default/services/echo/instances/i2",
        r#"{"address": "127.0.0.1:9002"}"#,
    )
    .await;
    let (index, list) = http
        .get("/v1/namespaces/default/services/echo/instances")
        .await;
    assert_eq!(ids(&list), ["i1", "i2"]);
    let index = index.expect("X-Sluice-Index is set");
    for item in list["instances"].as_array().unwrap() {
        for field in ["id", "address", "weight", "labels", "healthy", "draining"] {
            assert!(item.get(field).is_some(), "{field} missing in {item}");
        }
    }
    let table = sluice.cli(&["svc", "ls"]);
    assert!(table.contains("echo") && table.contains('2'), "{table}");

    // A blocking query waits; draining i1 wakes it with a new index, without i1.
    let waiter = {
        let http = Http::new(&sluice.url);
        tokio::spawn(async move {
            http.get(&format!(
                "/v1/namespaces/default/services/echo/instances?index={index}&wait=30s"
            ))
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiter.is_finished(), "the blocking query should wait");
    let out = sluice.cli(&["svc", "drain", "echo", "i1"]);
    assert!(out.contains("draining"), "{out}");
    let (new_index, list) = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap();
    assert!(new_index.unwrap() > index);
    assert_eq!(ids(&list), ["i2"]);
    let (_, all) = http
        .get("/v1/namespaces/default/services/echo/instances?all=true")
        .await;
    assert_eq!(all["instances"][0]["draining"], true);
    let show = sluice.cli(&["svc", "show", "echo"]);
    assert!(show.contains("i1") && show.contains("true"), "{show}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_instances_and_resources() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = [
        "--data",
        data.to_str().unwrap(),
        "--unhealthy-after",
        "2s",
        "--remove-after",
        "4s",
        "--heartbeat-interval",
        "1s",
    ];
    let mut sluice = Sluice::start("up", &args, dir.path());
    let http = Http::new(&sluice.url);
    http.put(
        "/v1/namespaces/default/services/db/instances/p1",
        r#"{"address": "127.0.0.1:5432"}"#,
    )
    .await;
    http.put(
        "/v1/namespaces/default/services/api/instances/e1",
        r#"{"address": "127.0.0.1:8080", "ephemeral": true}"#,
    )
    .await;
    http.put(
        "/v1/namespaces/default/resources/Service/db",
        r#"{"spec": {"protect_threshold": 0.3}}"#,
    )
    .await;
    let file = dir.path().join("service.yaml");
    std::fs::write(
        &file,
        "kind: Service\nmetadata:\n  name: api\nspec:\n  protect_threshold: 0.5\n",
    )
    .unwrap();
    let out = sluice.cli(&["apply", "-f", file.to_str().unwrap()]);
    assert!(out.contains("Service/default/api created"), "{out}");
    let out = sluice.cli(&["apply", "-f", file.to_str().unwrap()]);
    assert!(out.contains("unchanged"), "{out}");

    sluice.kill(); // SIGKILL: acknowledged writes must survive
    let port = sluice.port;
    let sluice = Sluice::start_on("up", &args, dir.path(), port);
    let http = Http::new(&sluice.url);
    let (_, db) = http
        .get("/v1/namespaces/default/services/db/instances")
        .await;
    assert_eq!(ids(&db), ["p1"], "persistent instance kept");
    let (_, resource) = http
        .get("/v1/namespaces/default/resources/Service/db")
        .await;
    assert_eq!(resource["spec"]["protect_threshold"], 0.3);
    let get = sluice.cli(&["get", "Service"]);
    assert!(get.contains("api") && get.contains("db"), "{get}");
    // The ephemeral instance kept its lease: a heartbeat works and it is healthy...
    let (status, _, body) = http
        .send(
            "PUT",
            "/v1/namespaces/default/services/api/instances/e1/heartbeat",
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, api) = http
        .get("/v1/namespaces/default/services/api/instances")
        .await;
    assert_eq!(ids(&api), ["e1"], "not lost early");
    // ...and without heartbeats it goes on schedule (removed after 4s), not lingering.
    let gone = sluice_testkit::wait_until(Duration::from_secs(20), || {
        sluice_testkit::http_get(
            port,
            "/v1/namespaces/default/services/api/instances?all=true",
        )
        .is_some_and(|r| r.contains("\"instances\":[]"))
    });
    assert!(gone, "the ephemeral instance lingered");
}
