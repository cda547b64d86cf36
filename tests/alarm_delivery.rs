//! Delivering notifications to real receivers: a webhook in each bot format, a real
//! Alertmanager (Debian's package) that lists the forwarded alert, and a pending
//! notification that survives `kill -9` and is delivered once after the restart.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::Value;

use crate::support::{block_on, python_with, until, Http, Peer, Sluice};

/// An HTTP receiver on `listener` collecting (path, JSON body) of every POST.
fn receive_on(listener: tokio::net::TcpListener) -> Arc<Mutex<Vec<(String, Value)>>> {
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&received);
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri, body: axum::body::Bytes| {
        let sink = Arc::clone(&sink);
        async move {
            if let Ok(value) = serde_json::from_slice::<Value>(&body) {
                sink.lock().push((uri.path().to_owned(), value));
            }
            "ok"
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    received
}

fn start(dir: &std::path::Path, port: Option<u16>) -> Sluice {
    let data = dir.join("d");
    let args = [
        "--data",
        data.to_str().unwrap(),
        "--metrics-tiers",
        "1s:10m,1m:1h",
    ];
    match port {
        Some(port) => Sluice::start_on("up", &args, dir, port),
        None => Sluice::start("up", &args, dir),
    }
}

/// Pushes `queue=50` to the `default` namespace every 200 ms until dropped.
struct Pusher(Arc<AtomicBool>);

impl Pusher {
    fn start(url: &str) -> Self {
        let running = Arc::new(AtomicBool::new(true));
        let (flag, url) = (Arc::clone(&running), url.to_owned());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            while flag.load(Ordering::Relaxed) {
                let _ = client
                    .post(format!("{url}/v1/namespaces/default/metrics"))
                    .body(r#"{"metrics": [{"name": "queue", "type": "gauge", "value": 50}]}"#)
                    .header("content-type", "application/json")
                    .send()
                    .await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Pusher(running)
    }
}

impl Drop for Pusher {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

const RULE: &str = r#"{"spec": {"metric": "queue", "agg": "max", "above": 10, "notify": ["hook"], "message": "queue at {{value}}"}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bot_format_reaches_the_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let sluice = start(dir.path(), None);
    let api = Http::new(&sluice.url);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let received = receive_on(listener);
    let formats = ["json", "slack", "feishu", "dingtalk", "wecom"];
    for format in formats {
        api.put(
            &format!("/v1/namespaces/default/resources/Notifier/{format}"),
            &format!(
                r#"{{"spec": {{"webhook": {{"url": "{base}/{format}", "format": "{format}"}}}}}}"#
            ),
        )
        .await;
    }
    api.put(
        "/v1/namespaces/default/resources/AlarmRule/queue",
        &RULE.replace(
            r#"["hook"]"#,
            r#"["json", "slack", "feishu", "dingtalk", "wecom"]"#,
        ),
    )
    .await;
    let _pusher = Pusher::start(&sluice.url);
    let bodies = until("a notification in every format", || {
        let got = received.lock().clone();
        (got.len() >= formats.len()).then_some(got)
    })
    .await;
    let body = |path: &str| {
        bodies
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, b)| b.clone())
            .unwrap_or_else(|| panic!("nothing at {path}: {bodies:?}"))
    };
    assert_eq!(body("/json")["rule"], "queue");
    assert_eq!(body("/json")["state"], "firing");
    assert_eq!(body("/slack")["text"], "[FIRING] queue at 50");
    assert_eq!(body("/feishu")["msg_type"], "text");
    assert_eq!(body("/feishu")["content"]["text"], "[FIRING] queue at 50");
    for bot in ["/dingtalk", "/wecom"] {
        assert_eq!(body(bot)["msgtype"], "text");
        assert_eq!(body(bot)["text"]["content"], "[FIRING] queue at 50");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_alertmanager_lists_the_forwarded_alert() {
    let dir = tempfile::tempdir().unwrap();
    let binary = sluice_testkit::find_program("prometheus-alertmanager").expect(
        "prometheus-alertmanager is not installed: run scripts/test.sh (it installs Debian's package)",
    );
    let port = sluice_testkit::free_port();
    let config = dir.path().join("alertmanager.yml");
    std::fs::write(
        &config,
        "route:\n  receiver: nobody\nreceivers:\n  - name: nobody\n",
    )
    .unwrap();
    let _alertmanager = Peer::spawn(
        Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("am").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let sluice = start(dir.path(), None);
    let api = Http::new(&sluice.url);
    api.put(
        "/v1/namespaces/default/resources/Notifier/hook",
        &format!(r#"{{"spec": {{"alertmanager": {{"url": "http://127.0.0.1:{port}"}}}}}}"#),
    )
    .await;
    api.put("/v1/namespaces/default/resources/AlarmRule/queue", RULE)
        .await;
    let _pusher = Pusher::start(&sluice.url);
    let client = reqwest::Client::new();
    let alert = until("Alertmanager listing the alert", || {
        let client = client.clone();
        let url = format!("http://127.0.0.1:{port}/api/v2/alerts");
        let alerts = block_on(async move {
            client
                .get(url)
                .send()
                .await
                .ok()?
                .json::<Value>()
                .await
                .ok()
        })?;
        alerts
            .as_array()?
            .iter()
            .find(|a| a["labels"]["alertname"] == "queue")
            .cloned()
    })
    .await;
    assert_eq!(alert["labels"]["namespace"], "default");
    assert_eq!(alert["labels"]["severity"], "warning");
    assert_eq!(alert["annotations"]["summary"], "queue at 50");
    assert_eq!(alert["status"]["state"], "active");
}

/// Starts aiosmtpd (PyPI) on a free loopback port with `args` (TLS options); it
/// prints every message it receives to `output`. Gives the server and its port.
fn start_smtp_server(output: &std::path::Path, args: &[&str]) -> (Peer, u16) {
    let port = sluice_testkit::free_port();
    let server = Peer::spawn(
        python_with("aiosmtpd")
            .args(["-u", "-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(args)
            .stdout(std::fs::File::create(output).unwrap())
            .stderr(Stdio::null()),
    );
    assert!(
        sluice_testkit::wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        }),
        "aiosmtpd did not start"
    );
    (server, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e_mail_reaches_a_real_smtp_server_plain_over_starttls_and_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    // One self-signed certificate for 127.0.0.1, trusted through the notifier's `ca`.
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let (cert, key) = (dir.path().join("smtp.pem"), dir.path().join("smtp.key"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let servers = [
        ("plain", vec![]),
        ("starttls", vec!["--tlscert", cert, "--tlskey", key]),
        ("tls", vec!["--smtpscert", cert, "--smtpskey", key]),
    ]
    .map(|(security, args)| {
        let output = dir.path().join(format!("{security}.out"));
        let (server, port) = start_smtp_server(&output, &args);
        (security, output, server, port)
    });
    let sluice = start(dir.path(), None);
    let api = Http::new(&sluice.url);
    let ca = serde_json::to_string(&certified.cert.pem()).unwrap();
    for (security, _, _, port) in &servers {
        let ca = if *security == "plain" {
            String::new()
        } else {
            format!(r#", "ca": {ca}"#)
        };
        api.put(
            &format!("/v1/namespaces/default/resources/Notifier/{security}"),
            &format!(
                r#"{{"spec": {{"email": {{"smtp": "127.0.0.1:{port}", "security": "{security}", "from": "sluice@example.com", "to": ["oncall@example.com"]{ca}}}}}}}"#
            ),
        )
        .await;
    }
    api.put(
        "/v1/namespaces/default/resources/AlarmRule/queue",
        &RULE.replace(r#"["hook"]"#, r#"["plain", "starttls", "tls"]"#),
    )
    .await;
    let _pusher = Pusher::start(&sluice.url);
    for (security, output, _, _) in &servers {
        let mail = until(&format!("the e-mail over {security}"), || {
            let text = std::fs::read_to_string(output).unwrap_or_default();
            text.contains("queue at 50").then_some(text)
        })
        .await;
        assert!(
            mail.contains("Subject: [FIRING] queue (1 alarm, default)"),
            "{security}: {mail}"
        );
        assert!(
            mail.contains("To: oncall@example.com"),
            "{security}: {mail}"
        );
        assert!(
            mail.contains("From: sluice@example.com"),
            "{security}: {mail}"
        );
    }
    // Without the CA, the self-signed certificate is refused and the failure is visible.
    api.put(
        "/v1/namespaces/default/resources/Notifier/tls",
        &format!(
            r#"{{"spec": {{"email": {{"smtp": "127.0.0.1:{}", "security": "tls", "from": "sluice@example.com", "to": ["oncall@example.com"]}}}}}}"#,
            servers[2].3
        ),
    )
    .await;
    api.put(
        "/v1/namespaces/default/resources/AlarmRule/queue2",
        &RULE.replace(r#"["hook"]"#, r#"["tls"]"#),
    )
    .await;
    let failing = until("a failed delivery without the CA", || {
        let api = api.clone();
        let listed =
            block_on(async move { api.get("/v1/namespaces/default/notifications").await.1 });
        listed["items"]
            .as_array()?
            .iter()
            .find(|item| item["last_error"].is_string())
            .cloned()
    })
    .await;
    assert!(
        failing["last_error"]
            .as_str()
            .unwrap()
            .contains("certificate"),
        "{failing}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_notification_survives_kill_9_and_is_delivered_once() {
    let dir = tempfile::tempdir().unwrap();
    // The receiver's port, with nothing listening yet.
    let receiver_port = sluice_testkit::free_port();
    let admin_port = sluice_testkit::free_port();
    let mut sluice = start(dir.path(), Some(admin_port));
    let api = Http::new(&sluice.url);
    api.put(
        "/v1/namespaces/default/resources/Notifier/hook",
        &format!(r#"{{"spec": {{"webhook": {{"url": "http://127.0.0.1:{receiver_port}/x"}}}}}}"#),
    )
    .await;
    api.put("/v1/namespaces/default/resources/AlarmRule/queue", RULE)
        .await;
    let pusher = Pusher::start(&sluice.url);
    // Delivery fails, visibly.
    let failing = until("a failed delivery attempt", || {
        let api = api.clone();
        let listed =
            block_on(async move { api.get("/v1/namespaces/default/notifications").await.1 });
        let item = listed["items"].as_array()?.first()?.clone();
        (item["attempts"].as_u64()? >= 1).then_some(item)
    })
    .await;
    assert!(failing["last_error"].as_str().is_some(), "{failing}");
    let exposition = reqwest::get(format!("{}/metrics", sluice.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let failed: u64 = exposition
        .lines()
        .find_map(|l| l.strip_prefix("sluice_notifications_failed_attempts_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(failed >= 1, "{exposition}");
    drop(pusher);
    sluice.kill();

    // The receiver comes up; Sluice restarts on the same data.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", receiver_port))
        .await
        .unwrap();
    let received = receive_on(listener);
    let sluice = start(dir.path(), Some(admin_port));
    let _pusher = Pusher::start(&sluice.url);
    until("the delivery after the restart", || {
        (!received.lock().is_empty()).then_some(())
    })
    .await;
    // Still firing, but told once: nothing more within the repeat interval.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let bodies = received.lock().clone();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_eq!(bodies[0].1["state"], "firing");
    let api = Http::new(&sluice.url);
    let (_, pending) = api.get("/v1/namespaces/default/notifications").await;
    assert_eq!(pending["items"].as_array().unwrap().len(), 0, "{pending}");
}
