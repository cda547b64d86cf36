//! The naming service's behaviour with short timings: heartbeats, active checks
//! (HTTP and TCP, failing and recovering), draining, the protection threshold and
//! blocking queries.

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use sluice_model::keys::resource_key;
use sluice_model::InstanceSpec;
use sluice_registry::{InstancePatch, Registry, RegistryConfig, RegistryError};
use sluice_store::{LocalStore, LocalStoreOptions, Store};

fn fast() -> RegistryConfig {
    RegistryConfig {
        heartbeat_interval: Duration::from_millis(300),
        unhealthy_after: Duration::from_secs(1),
        remove_after: Duration::from_secs(2),
    }
}

async fn registry() -> Registry {
    let store: Arc<dyn Store> = Arc::new(LocalStore::memory(LocalStoreOptions::default()).unwrap());
    let registry = Registry::start(store, fast()).unwrap();
    while !registry.is_ready() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    registry
}

fn spec(json: &str) -> InstanceSpec {
    serde_json::from_str(json).unwrap()
}

/// Polls until `check` holds (a hang guard of 20 s, not a timing claim).
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what} did not happen within 20 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_instances_live_by_heartbeats() {
    let registry = registry().await;
    let created = registry
        .register(
            "default",
            "echo",
            "i1",
            spec(r#"{"address":"127.0.0.1:9001","ephemeral":true}"#),
        )
        .await
        .unwrap();
    assert!(created.created);
    assert!(registry.instance("default", "echo", "i1").unwrap().healthy);
    // Heartbeats keep it healthy well past unhealthy_after and remove_after.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let beat = registry.heartbeat("default", "echo", "i1").await.unwrap();
        assert!(!beat.was_unhealthy);
        assert_eq!(beat.interval, Duration::from_millis(300));
    }
    assert!(registry.instance("default", "echo", "i1").unwrap().healthy);
    // Silence: unhealthy first (not listed by default, listed with all=true) ...
    eventually("unhealthy after missed heartbeats", || {
        registry
            .instance("default", "echo", "i1")
            .is_some_and(|i| !i.healthy)
    })
    .await;
    assert!(registry
        .instances("default", "echo", false)
        .instances
        .is_empty());
    let all = registry.instances("default", "echo", true);
    assert_eq!(all.instances.len(), 1);
    assert_eq!(
        all.instances[0].health_output.as_deref(),
        Some("no heartbeat within unhealthy_after")
    );
    // ... a heartbeat now brings it back ...
    let beat = registry.heartbeat("default", "echo", "i1").await.unwrap();
    assert!(beat.was_unhealthy);
    assert!(registry.instance("default", "echo", "i1").unwrap().healthy);
    // ... and silence past remove_after removes it; heartbeats then get "not found".
    eventually("removed after remove_after", || {
        registry.instance("default", "echo", "i1").is_none()
    })
    .await;
    let error = registry
        .heartbeat("default", "echo", "i1")
        .await
        .unwrap_err();
    assert!(matches!(error, RegistryError::NotFound { .. }), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_instances_without_checks_stay_healthy_and_take_operator_health() {
    let registry = registry().await;
    registry
        .register(
            "default",
            "db",
            "p1",
            spec(r#"{"address":"127.0.0.1:5432"}"#),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let instance = registry.instance("default", "db", "p1").unwrap();
    assert!(
        instance.healthy && !instance.ephemeral,
        "no heartbeat needed"
    );
    let error = registry.heartbeat("default", "db", "p1").await.unwrap_err();
    assert!(error.to_string().contains("persistent"), "{error}");
    let patch = InstancePatch {
        healthy: Some(false),
        ..InstancePatch::default()
    };
    let view = registry.update("default", "db", "p1", patch).await.unwrap();
    assert!(!view.healthy);
    assert_eq!(
        view.health_output.as_deref(),
        Some("set unhealthy by an operator")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_checks_fail_and_recover() {
    let registry = registry().await;
    let (address, upstream) = sluice_testkit::upstream::controlled_upstream("checked").await;
    let body = format!(
        r#"{{"address":"{address}","check":{{"type":"http","path":"/health","interval":"100ms","timeout":"100ms","healthy_threshold":2,"unhealthy_threshold":2}}}}"#
    );
    registry
        .register("default", "web", "w1", spec(&body))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(registry.instance("default", "web", "w1").unwrap().healthy);
    upstream.set(503, 0);
    eventually("unhealthy after failing checks", || {
        registry
            .instance("default", "web", "w1")
            .is_some_and(|i| !i.healthy)
    })
    .await;
    let output = registry
        .instance("default", "web", "w1")
        .unwrap()
        .health_output
        .unwrap();
    assert!(output.contains("503"), "{output}");
    upstream.set(200, 0);
    eventually("healthy after passing checks", || {
        registry
            .instance("default", "web", "w1")
            .is_some_and(|i| i.healthy)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_checks_fail_and_recover_and_deregister_after() {
    let registry = registry().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let body = format!(
        r#"{{"address":"{address}","check":{{"type":"tcp","interval":"100ms","timeout":"100ms","healthy_threshold":1,"unhealthy_threshold":1}}}}"#
    );
    registry
        .register("default", "tcp", "t1", spec(&body))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(registry.instance("default", "tcp", "t1").unwrap().healthy);
    drop(listener);
    eventually("unhealthy when the port closes", || {
        registry
            .instance("default", "tcp", "t1")
            .is_some_and(|i| !i.healthy)
    })
    .await;
    let listener = std::net::TcpListener::bind(address).unwrap();
    eventually("healthy when the port opens again", || {
        registry
            .instance("default", "tcp", "t1")
            .is_some_and(|i| i.healthy)
    })
    .await;
    drop(listener);

    // Stays registered while unhealthy, unless deregister_after says otherwise.
    let dead = sluice_testkit::free_port();
    let body = format!(
        r#"{{"address":"127.0.0.1:{dead}","check":{{"type":"tcp","interval":"100ms","timeout":"100ms","unhealthy_threshold":1,"deregister_after":"1s"}}}}"#
    );
    registry
        .register("default", "tcp", "gone", spec(&body))
        .await
        .unwrap();
    eventually("removed after deregister_after", || {
        registry.instance("default", "tcp", "gone").is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_instances_get_no_traffic_but_stay_registered() {
    let registry = registry().await;
    for id in ["a", "b"] {
        registry
            .register(
                "default",
                "echo",
                id,
                spec(r#"{"address":"127.0.0.1:9001"}"#),
            )
            .await
            .unwrap();
    }
    let patch = InstancePatch {
        draining: Some(true),
        ..InstancePatch::default()
    };
    let view = registry
        .update("default", "echo", "a", patch)
        .await
        .unwrap();
    assert!(view.draining && view.healthy);
    let ids: Vec<String> = registry
        .instances("default", "echo", false)
        .instances
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(ids, ["b"]);
    let all = registry.instances("default", "echo", true);
    assert_eq!(all.instances.len(), 2);
    assert!(all.instances[0].draining);
    let summary = &registry.services("default")[0];
    assert_eq!(
        (summary.healthy, summary.total, summary.draining),
        (1, 2, 1)
    );
    let patch = InstancePatch {
        draining: Some(false),
        weight: Some(7),
        ..InstancePatch::default()
    };
    let view = registry
        .update("default", "echo", "a", patch)
        .await
        .unwrap();
    assert!(!view.draining);
    assert_eq!(view.weight, 7);
    assert_eq!(
        registry.instances("default", "echo", false).instances.len(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protection_threshold_returns_unhealthy_instances_when_too_few_are_healthy() {
    let registry = registry().await;
    for i in 0..10 {
        registry
            .register(
                "default",
                "pay",
                &format!("i{i}"),
                spec(r#"{"address":"127.0.0.1:9001"}"#),
            )
            .await
            .unwrap();
    }
    let settings = r#"{"kind":"Service","metadata":{"namespace":"default","name":"pay"},"spec":{"protect_threshold":0.5}}"#;
    let revision = registry
        .store()
        .put(
            &resource_key("Service", "default", "pay"),
            settings.as_bytes().to_vec(),
            None,
        )
        .await
        .unwrap();
    eventually("settings applied", || registry.revision() >= revision).await;
    let mark = |i: usize, healthy: bool| {
        let registry = registry.clone();
        async move {
            let patch = InstancePatch {
                healthy: Some(healthy),
                ..InstancePatch::default()
            };
            registry
                .update("default", "pay", &format!("i{i}"), patch)
                .await
                .unwrap();
        }
    };
    for i in 0..8 {
        mark(i, false).await;
    }
    let list = registry.instances("default", "pay", false);
    assert!(list.protection_triggered);
    assert_eq!(
        list.instances.len(),
        10,
        "8 of 10 unhealthy with threshold 0.5: all returned"
    );
    assert_eq!(
        list.instances.iter().filter(|i| !i.healthy).count(),
        8,
        "flagged"
    );
    for i in 2..8 {
        mark(i, true).await;
    }
    let list = registry.instances("default", "pay", false);
    assert!(!list.protection_triggered);
    assert_eq!(
        list.instances.len(),
        8,
        "2 of 10 unhealthy: the 8 healthy returned"
    );
    assert!(list.instances.iter().all(|i| i.healthy));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blocking_queries_wake_on_change_or_time_out() {
    let registry = registry().await;
    registry
        .register(
            "default",
            "echo",
            "a",
            spec(r#"{"address":"127.0.0.1:9001"}"#),
        )
        .await
        .unwrap();
    let index = registry.instances("default", "echo", false).index;
    // Past index: at once.
    let list = registry
        .wait_instances("default", "echo", false, index - 1, Duration::from_secs(30))
        .await;
    assert_eq!(list.index, index);
    // Nothing changes: at the wait limit, with the same index.
    let started = tokio::time::Instant::now();
    let list = registry
        .wait_instances("default", "echo", false, index, Duration::from_millis(300))
        .await;
    assert_eq!(list.index, index);
    assert!(started.elapsed() >= Duration::from_millis(300));
    // A change elsewhere does not wake it; a change of this service does.
    let waiter = {
        let registry = registry.clone();
        tokio::spawn(async move {
            registry
                .wait_instances("default", "echo", false, index, Duration::from_secs(30))
                .await
        })
    };
    registry
        .register(
            "default",
            "other",
            "x",
            spec(r#"{"address":"127.0.0.1:9002"}"#),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiter.is_finished());
    registry
        .register(
            "default",
            "echo",
            "b",
            spec(r#"{"address":"127.0.0.1:9003"}"#),
        )
        .await
        .unwrap();
    let list = waiter.await.unwrap();
    assert!(list.index > index);
    assert_eq!(list.instances.len(), 2);

    // 1000 concurrent blocking queries on one service all wake on one change.
    let index = list.index;
    let waiters: Vec<_> = (0..1000)
        .map(|_| {
            let registry = registry.clone();
            tokio::spawn(async move {
                registry
                    .wait_instances("default", "echo", false, index, Duration::from_secs(60))
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(waiters.iter().all(|w| !w.is_finished()));
    registry
        .register(
            "default",
            "echo",
            "c",
            spec(r#"{"address":"127.0.0.1:9004"}"#),
        )
        .await
        .unwrap();
    for waiter in waiters {
        let list = tokio::time::timeout(Duration::from_secs(20), waiter)
            .await
            .unwrap()
            .unwrap();
        assert!(list.index > index);
        assert_eq!(list.instances.len(), 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_name_the_problem() {
    let registry = registry().await;
    let error = registry
        .register("default", "bad/name", "i", spec(r#"{"address":"h:1"}"#))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("service"), "{error}");
    let error = registry
        .register("default", "s", "i", spec(r#"{"address":"h:0"}"#))
        .await
        .unwrap_err();
    assert!(error.to_string().starts_with("address:"), "{error}");
    let patch = InstancePatch {
        weight: Some(5000),
        ..InstancePatch::default()
    };
    let error = registry
        .update("default", "s", "missing", patch)
        .await
        .unwrap_err();
    assert!(error.to_string().starts_with("weight:"), "{error}");
    let error = registry
        .deregister("default", "s", "missing")
        .await
        .unwrap_err();
    assert!(matches!(error, RegistryError::NotFound { .. }), "{error}");
}
