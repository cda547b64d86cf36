//! A WebSocket echo through the gateway: the upgrade is forwarded and both
//! directions are spliced together.

use std::time::Duration;

use axum::extract::ws::{Message as AxumMessage, WebSocketUpgrade};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{Http, Sluice};

async fn websocket_echo_upstream() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let app = axum::Router::new().route(
        "/ws",
        axum::routing::get(|upgrade: WebSocketUpgrade| async move {
            upgrade.on_upgrade(|mut socket| async move {
                while let Some(Ok(message)) = socket.recv().await {
                    if let AxumMessage::Text(text) = message {
                        let _ = socket
                            .send(AxumMessage::Text(format!("echo: {text}").into()))
                            .await;
                    }
                }
            })
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_through_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let sluice = Sluice::up(dir.path());
    let gateway = sluice.gateway.clone().unwrap();
    let upstream = websocket_echo_upstream().await;
    let api = Http::new(&sluice.url);
    api.register("ws", "w1", &upstream).await;
    api.put(
        "/v1/namespaces/default/resources/Route/ws",
        r#"{"spec": {"match": {"path": "/ws"}, "service": "ws"}}"#,
    )
    .await;
    let url = format!("{}/ws", gateway.replace("http://", "ws://"));
    let mut socket = None;
    for _ in 0..200 {
        if let Ok((connected, _)) = tokio_tungstenite::connect_async(&url).await {
            socket = Some(connected);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let mut socket = socket.expect("the WebSocket upgrade went through the gateway");
    for i in 0..5 {
        socket
            .send(Message::Text(format!("hello {i}").into()))
            .await
            .unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(
            answer.into_text().unwrap().as_str(),
            format!("echo: hello {i}")
        );
    }
    socket.close(None).await.unwrap();
}
