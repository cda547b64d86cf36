//! The per-request hook: an observer is told route, service, instance, status,
//! latency and attempts of every answered request.

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use sluice_gateway::{Gateway, GatewayConfig, GatewayFeed, RequestObserver, RequestRecord};

/// (route, service, instance, status, attempts)
type Seen = (Option<String>, Option<String>, Option<String>, u16, usize);

#[derive(Default)]
struct Collect(Mutex<Vec<Seen>>, Mutex<Vec<Option<&'static str>>>);

impl RequestObserver for Collect {
    fn on_response(&self, record: &RequestRecord<'_>) {
        self.1.lock().push(record.rejected.map(|r| r.as_str()));
        self.0.lock().push((
            record.route.map(|(ns, name)| format!("{ns}/{name}")),
            record.service.map(|(ns, name)| format!("{ns}/{name}")),
            record.instance.map(str::to_owned),
            record.status,
            record.attempts,
        ));
    }
}

/// A fed gateway with route `echo` to one upstream; returns the gateway, its
/// address, its feed and the observer.
async fn gateway_with_observer() -> (Gateway, std::net::SocketAddr, GatewayFeed, Arc<Collect>) {
    let upstream = sluice_testkit::upstream::counting_upstream(Default::default(), 200).await;
    let observer = Arc::new(Collect::default());
    let config = GatewayConfig {
        observer: Some(observer.clone()),
        ..GatewayConfig::default()
    };
    let (gateway, mut feed) = Gateway::fed(config);
    feed.instances("default", "echo", &[("i1", &upstream)])
        .await;
    feed.route(
        "default",
        "echo",
        r#"{"match":{"path_prefix":"/echo"},"service":"echo"}"#,
    )
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let serving = gateway.clone();
    tokio::spawn(async move { serving.serve(listener, std::future::pending()).await });
    (gateway, address, feed, observer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_observer_sees_every_answered_request() {
    let (_gateway, address, _feed, observer) = gateway_with_observer().await;
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if client
            .get(format!("http://{address}/echo"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    observer.0.lock().clear();
    client
        .get(format!("http://{address}/echo/x"))
        .send()
        .await
        .unwrap();
    client
        .get(format!("http://{address}/nowhere"))
        .send()
        .await
        .unwrap();
    let records = observer.0.lock().clone();
    assert_eq!(
        records,
        vec![
            (
                Some("default/echo".into()),
                Some("default/echo".into()),
                Some("i1".into()),
                200,
                1
            ),
            (None, None, None, 404, 0),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_are_counted_by_reason_and_reported() {
    let (gateway, address, mut feed, observer) = gateway_with_observer().await;
    let client = reqwest::Client::new();
    let url = format!("http://{address}/echo");
    feed.policy(
        "Acl",
        "default",
        "a",
        r#"{"route":"echo","deny":["127.0.0.0/8"]}"#,
    )
    .await
    .unwrap();
    for _ in 0..400 {
        if client
            .get(&url)
            .send()
            .await
            .is_ok_and(|r| r.status() == 403)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let before = gateway.rejections()["acl"];
    assert!(before >= 1);
    observer.1.lock().clear();
    for _ in 0..3 {
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 403);
        assert_eq!(response.headers()["x-sluice-rejected"], "acl");
    }
    let counts = gateway.rejections();
    assert_eq!(counts["acl"], before + 3);
    assert_eq!(counts["rate"], 0);
    assert_eq!(counts.len(), 7, "{counts:?}");
    assert_eq!(*observer.1.lock(), vec![Some("acl"); 3]);
}
