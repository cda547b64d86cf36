//! TLS at the gateway: a certificate per host chosen by SNI, ALPN offering h2 and
//! http/1.1, and requests over both reaching the upstream as HTTPS-forwarded.

use std::sync::Arc;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};

use crate::support::{echo_upstream, until_status, Http, Sluice};

struct Connected {
    alpn: Option<Vec<u8>>,
    peer: CertificateDer<'static>,
    stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
}

async fn connect(port: u16, sni: &str, roots: &rustls::RootCertStore, alpn: &[&[u8]]) -> Connected {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let stream = connector
        .connect(ServerName::try_from(sni.to_owned()).unwrap(), tcp)
        .await
        .unwrap();
    let (_, session) = stream.get_ref();
    Connected {
        alpn: session.alpn_protocol().map(<[u8]>::to_vec),
        peer: session.peer_certificates().unwrap()[0].clone().into_owned(),
        stream,
    }
}

async fn get(connected: Connected, host: &str, path: &str) -> (u16, serde_json::Value) {
    let request = hyper::Request::builder()
        .uri(format!("https://{host}{path}"))
        .header("host", host)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let io = TokioIo::new(connected.stream);
    let response = if connected.alpn.as_deref() == Some(b"h2") {
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .unwrap();
        tokio::spawn(connection);
        sender.send_request(request).await.unwrap()
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(connection);
        sender.send_request(request).await.unwrap()
    };
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_sni_and_alpn() {
    let dir = tempfile::tempdir().unwrap();
    let a = rcgen::generate_simple_self_signed(vec!["a.test".to_owned()]).unwrap();
    let b = rcgen::generate_simple_self_signed(vec!["*.b.test".to_owned()]).unwrap();
    for (name, certified) in [("a", &a), ("b", &b)] {
        std::fs::write(dir.path().join(format!("{name}.pem")), certified.cert.pem()).unwrap();
        std::fs::write(
            dir.path().join(format!("{name}.key")),
            certified.signing_key.serialize_pem(),
        )
        .unwrap();
    }
    let config = dir.path().join("sluice.toml");
    let path = |file: &str| dir.path().join(file).display().to_string();
    std::fs::write(
        &config,
        format!(
            "[[gateway_tls.certificates]]\nhosts = [\"a.test\"]\ncert = \"{}\"\nkey = \"{}\"\n\n[[gateway_tls.certificates]]\nhosts = [\"*.b.test\"]\ncert = \"{}\"\nkey = \"{}\"\n",
            path("a.pem"), path("a.key"), path("b.pem"), path("b.key")
        ),
    )
    .unwrap();
    let tls_port = sluice_testkit::free_port();
    let tls_address = format!("127.0.0.1:{tls_port}");
    let data = dir.path().join("d");
    let sluice = Sluice::start(
        "up",
        &[
            "--data",
            data.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--gateway-tls",
            &tls_address,
        ],
        dir.path(),
    );
    let upstream = echo_upstream("secure").await;
    let api = Http::new(&sluice.url);
    api.register("web", "w", &upstream).await;
    api.put(
        "/v1/namespaces/default/resources/Route/web",
        r#"{"spec": {"match": {"path_prefix": "/"}, "service": "web"}}"#,
    )
    .await;
    until_status(
        &reqwest::Client::new(),
        &format!("{}/ready", sluice.gateway.clone().unwrap()),
        200,
    )
    .await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(a.cert.der().clone()).unwrap();
    roots.add(b.cert.der().clone()).unwrap();

    // SNI a.test → certificate a; ALPN h2.
    let connected = connect(tls_port, "a.test", &roots, &[b"h2", b"http/1.1"]).await;
    assert_eq!(
        connected.peer.as_ref(),
        a.cert.der().as_ref(),
        "SNI a.test gets a's certificate"
    );
    assert_eq!(connected.alpn.as_deref(), Some(b"h2".as_slice()));
    let (status, body) = get(connected, "a.test", "/over-h2").await;
    assert_eq!(status, 200);
    assert_eq!(body["path"], "/over-h2");
    assert_eq!(body["headers"]["x-forwarded-proto"], "https");

    // SNI x.b.test → the wildcard certificate; ALPN http/1.1.
    let connected = connect(tls_port, "x.b.test", &roots, &[b"http/1.1"]).await;
    assert_eq!(
        connected.peer.as_ref(),
        b.cert.der().as_ref(),
        "SNI x.b.test gets the *.b.test certificate"
    );
    assert_eq!(connected.alpn.as_deref(), Some(b"http/1.1".as_slice()));
    let (status, body) = get(connected, "x.b.test", "/over-h1").await;
    assert_eq!(status, 200);
    assert_eq!(body["instance"], "secure");
}
