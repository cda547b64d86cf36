//! Backups and moving stores, as an operator does them: `sluice up` filled with
//! routes (with history), persistent and ephemeral instances, rate limits, an
//! alarm with its pending notification and an error group; its stopped data
//! directory exported, imported into a real etcd, a `sluice server` on that etcd
//! answering as `sluice up` did, and an export of the etcd holding the same
//! records; `sluice store copy` back; `GET /v1/admin/backup` for admin tokens only.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::{block_on, until, Http, Sluice};

/// Runs `sluice ARGS` (no server) and returns (success, stdout, stderr).
fn sluice(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env_remove("SLUICE_TOKEN")
        .env_remove("SLUICE_STORE")
        .output()
        .expect("run sluice");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Exports the store at `url` into `path` with the CLI; returns what it said.
fn export_store(url: &str, path: &Path) -> String {
    let (ok, _, stderr) = sluice(&[
        "store",
        "export",
        "--store",
        url,
        "--out",
        path.to_str().unwrap(),
    ]);
    assert!(ok, "export of {url}: {stderr}");
    stderr
}

/// Imports the backup at `path` into the store at `url` with the CLI: (success, what it said).
fn import_store(url: &str, path: &Path) -> (bool, String) {
    let (ok, _, stderr) = sluice(&["store", "import", "--store", url, path.to_str().unwrap()]);
    (ok, stderr)
}

/// The records of a backup file: every line but the header and the end line.
fn records(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    assert!(lines.len() >= 2, "{text}");
    lines[1..lines.len() - 1].to_vec()
}

/// What a user reads through the API, without what a new store numbers anew
/// (revisions) or what moves by itself (times of the judge's last look).
async fn answers(api: &Http) -> Value {
    let mut routes = api.get("/v1/namespaces/default/resources/Route").await.1;
    for item in routes["items"].as_array_mut().unwrap() {
        item["metadata"]["revision"] = Value::Null;
    }
    let history = api
        .get("/v1/namespaces/default/resources/Route/shop/history")
        .await
        .1;
    let history: Vec<Value> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|version| version["resource"]["spec"].clone())
        .collect();
    let instances = api
        .get("/v1/namespaces/default/services/shop/instances?all=true")
        .await
        .1;
    let mut instances: Vec<(Value, Value)> = instances["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["id"].clone(), i["address"].clone()))
        .collect();
    instances.sort_by_key(|(id, _)| id.to_string());
    let limits = api
        .get("/v1/namespaces/default/resources/RateLimit/shop-ip")
        .await
        .1["spec"]
        .clone();
    let alarms = api.get("/v1/namespaces/default/alarms").await.1;
    let alarms: Vec<(Value, Value, Value)> = alarms["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["id"].clone(), a["rule"].clone(), a["fired_at"].clone()))
        .collect();
    let notifications = api.get("/v1/namespaces/default/notifications").await.1;
    let notifications: Vec<(Value, Value, Value)> = notifications["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["notifier"].clone(),
                n["rule"].clone(),
                n["created_at"].clone(),
            )
        })
        .collect();
    let errors = api.get("/v1/namespaces/default/errors").await.1;
    let errors: Vec<(Value, Value)> = errors["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["fingerprint"].clone(), e["count"].clone()))
        .collect();
    serde_json::json!({
        "routes": routes["items"], "history": history, "instances": instances,
        "limits": limits, "alarms": alarms, "notifications": notifications, "errors": errors,
    })
}

/// Fills a running `sluice up` with every kind of data the store keeps.
async fn fill(api: &Http, url: &str) {
    let route = |version: u32| {
        format!(
            r#"{{"match": {{"path_prefix": "/shop"}}, "service": "shop", "max_body_bytes": {version}000}}"#
        )
    };
    for version in 1..=3 {
        api.route("shop", &route(version)).await;
    }
    api.register("shop", "persistent-1", "127.0.0.1:9101").await;
    api.register("shop", "persistent-2", "127.0.0.1:9102").await;
    api.put(
        "/v1/namespaces/default/services/shop/instances/ephemeral-1",
        r#"{"address": "127.0.0.1:9103", "ephemeral": true}"#,
    )
    .await;
    api.put(
        "/v1/namespaces/default/resources/RateLimit/shop-ip",
        r#"{"spec": {"route": "shop", "rate": "10r/s", "burst": 5, "nodelay": true, "key": "client_ip"}}"#,
    )
    .await;
    let dead = sluice_testkit::free_port();
    api.put(
        "/v1/namespaces/default/resources/Notifier/hook",
        &format!(r#"{{"spec": {{"webhook": {{"url": "http://127.0.0.1:{dead}/x"}}}}}}"#),
    )
    .await;
    api.put(
        "/v1/namespaces/default/resources/AlarmRule/queue",
        r#"{"spec": {"metric": "queue", "agg": "max", "above": 10, "notify": ["hook"], "message": "queue at {{value}}"}}"#,
    )
    .await;
    let (status, _, body) = api
        .send(
            "POST",
            "/v1/namespaces/default/errors",
            Some(r#"{"type": "KeyError", "message": "cart", "frames": [{"function": "checkout", "module": "shop.cart", "lineno": 12, "in_app": true}]}"#),
        )
        .await;
    assert!(status < 300, "{status} {body}");
    // A business metric above the rule's threshold until the alarm fires and its
    // notification has failed once (the receiver is not there).
    let client = reqwest::Client::new();
    until("a firing alarm with a pending notification", || {
        let (client, url, api) = (client.clone(), url.to_owned(), api.clone());
        block_on(async move {
            let _ = client
                .post(format!("{url}/v1/namespaces/default/metrics"))
                .header("content-type", "application/json")
                .body(r#"{"metrics": [{"name": "queue", "type": "gauge", "value": 50}]}"#)
                .send()
                .await;
            let notifications = api.get("/v1/namespaces/default/notifications").await.1;
            let first = notifications["items"].as_array()?.first()?.clone();
            (first["attempts"].as_u64()? >= 1).then_some(())
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_moves_from_redb_to_etcd_and_back_and_serves_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let up = Sluice::start(
        "up",
        &[
            "--data",
            data.to_str().unwrap(),
            "--metrics-tiers",
            "1s:10m,1m:1h",
        ],
        dir.path(),
    );
    let api = Http::new(&up.url);
    fill(&api, &up.url).await;

    // Online, through the node (its store is locked by it).
    let online = dir.path().join("online.jsonl");
    up.cli(&["store", "export", "--out", online.to_str().unwrap()]);
    assert!(records(&online)
        .iter()
        .any(|r| r.contains("res/Route/default/shop")));
    let redb_url = format!("redb://{}", data.display());
    let (ok, _, stderr) = sluice(&["store", "export", "--store", &redb_url]);
    assert!(!ok && stderr.contains("--server"), "{stderr}");

    let before = answers(&api).await;
    let (old_index, _) = api.get("/v1/resources/Route").await;
    let old_index = old_index.unwrap();
    drop(up);

    // Offline, from the stopped data directory.
    let first = dir.path().join("first.jsonl");
    let stderr = export_store(&redb_url, &first);
    assert!(
        stderr.contains("keys on leases left out"),
        "the export says what it left out: {stderr}"
    );
    let exported = records(&first);
    for expected in [
        "res/Route/default/shop",
        "hist/Route/default/shop/",
        "persistent-1",
        "res/RateLimit/default/shop-ip",
        "res/AlarmRule/default/queue",
        "alarm/",
        "notify/",
        "errors/",
    ] {
        assert!(
            exported.iter().any(|r| r.contains(expected)),
            "the backup holds {expected}"
        );
    }
    assert!(
        !exported.iter().any(|r| r.contains("ephemeral-1")),
        "the ephemeral instance hangs on a lease: left out"
    );

    // Into a real etcd, served by a `sluice server` there.
    let etcd = sluice_testkit::EtcdCluster::single();
    let etcd_url = etcd.url("/moved");
    let (ok, stderr) = import_store(&etcd_url, &first);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("imported"), "{stderr}");
    let second = dir.path().join("second.jsonl");
    export_store(&etcd_url, &second);
    assert_eq!(records(&first), records(&second), "the same records");

    let server = Sluice::start("server", &["--store", etcd_url.as_str()], dir.path());
    let after = answers(&Http::new(&server.url)).await;
    let mut expected = before.clone();
    // The ephemeral instance's owner registers it again; the rest is as it was.
    expected["instances"]
        .as_array_mut()
        .unwrap()
        .retain(|i| i[0] != "ephemeral-1");
    assert_eq!(after, expected);

    // The moved store numbers its revisions anew. A follower still holding an
    // index of the old store is answered at once (not at the end of its wait), with
    // the new index.
    let moved = Http::new(&server.url);
    for path in [
        "/v1/resources/Route",
        "/v1/namespaces/default/services/shop/instances",
    ] {
        // Asked to wait up to 5 minutes; answered long before (30 s is a hang guard).
        let url = format!("{path}?index={old_index}&wait=300s");
        let query = moved.send("GET", &url, None);
        let (status, new_index, _) =
            tokio::time::timeout(std::time::Duration::from_secs(30), query)
                .await
                .expect("an index of the old store is answered at once");
        assert_eq!(status, 200, "{path}");
        assert!(
            new_index.unwrap() < old_index,
            "{path}: {new_index:?} {old_index}"
        );
    }
    // A change after the move goes on top of the history, not under it.
    moved
        .route(
            "shop",
            r#"{"match": {"path_prefix": "/shop"}, "service": "shop", "max_body_bytes": 4000}"#,
        )
        .await;
    let history = moved
        .get("/v1/namespaces/default/resources/Route/shop/history")
        .await
        .1;
    let sizes: Vec<&Value> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|version| &version["resource"]["spec"]["max_body_bytes"])
        .collect();
    assert_eq!(sizes, [4000, 3000, 2000, 1000], "{history}");
    drop(server);

    // Importing again into the store that now holds it is refused, naming a key.
    let (ok, stderr) = import_store(&etcd_url, &first);
    assert!(!ok && stderr.contains("not empty"), "{stderr}");

    // And back: etcd (with the change made there) → a new redb directory.
    let moved_records = dir.path().join("moved.jsonl");
    export_store(&etcd_url, &moved_records);
    let back = dir.path().join("back");
    let back_url = format!("redb://{}", back.display());
    let (ok, _, stderr) = sluice(&["store", "copy", "--from", &etcd_url, "--to", &back_url]);
    assert!(ok, "{stderr}");
    let third = dir.path().join("third.jsonl");
    export_store(&back_url, &third);
    assert_eq!(records(&moved_records), records(&third));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_over_http_need_an_admin_token_and_a_damaged_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let up = Sluice::up_with_tokens(
        dir.path(),
        r#"
[[tokens]]
token = "admin-token-0123456789"
role = "admin"

[[tokens]]
token = "read-token-0123456789"
role = "read"

[[tokens]]
token = "team-admin-0123456789"
role = "admin"
namespaces = ["team-a"]
"#,
        &[],
    );
    let admin = Http::with_token(&up.url, "admin-token-0123456789");
    admin
        .route(
            "shop",
            r#"{"match": {"path_prefix": "/shop"}, "service": "shop"}"#,
        )
        .await;
    for (token, status) in [
        (None, 401),
        (Some("read-token-0123456789"), 403),
        (Some("team-admin-0123456789"), 403),
    ] {
        let api = match token {
            Some(token) => Http::with_token(&up.url, token),
            None => Http::new(&up.url),
        };
        let (got, _, body) = api.send("GET", "/v1/admin/backup", None).await;
        assert_eq!(got, status, "{token:?}: {body}");
    }
    let response = reqwest::Client::new()
        .get(format!("{}/v1/admin/backup", up.url))
        .bearer_auth("admin-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/jsonl"
    );
    let text = response.text().await.unwrap();
    assert!(text.contains("res/Route/default/shop"), "{text}");

    // The CLI takes the same backup with the token, and checks it.
    let path = dir.path().join("http.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["store", "export", "--server", &up.url, "--out"])
        .arg(&path)
        .env("SLUICE_TOKEN", "admin-token-0123456789")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::read_to_string(&path)
        .unwrap()
        .contains("res/Route/default/shop"));
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["store", "export", "--server", &up.url, "--out"])
        .arg(dir.path().join("refused.jsonl"))
        .env("SLUICE_TOKEN", "read-token-0123456789")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("admin"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dir.path().join("refused.jsonl").exists());

    // A damaged copy is refused with nothing written.
    let (ok, out, stderr) = sluice(&["store", "verify", path.to_str().unwrap()]);
    assert!(ok && out.contains("records from redb"), "{out} {stderr}");
    let damaged = dir.path().join("damaged.jsonl");
    std::fs::write(&damaged, text.replacen("/shop", "/shoq", 1)).unwrap();
    let (ok, _, stderr) = sluice(&["store", "verify", damaged.to_str().unwrap()]);
    assert!(!ok && stderr.contains("SHA-256"), "{stderr}");
    let target = format!("redb://{}", dir.path().join("target").display());
    let (ok, stderr) = import_store(&target, &damaged);
    assert!(!ok && stderr.contains("SHA-256"), "{stderr}");
    let (ok, out, stderr) = sluice(&["store", "export", "--store", &target]);
    assert!(ok, "{stderr}");
    assert_eq!(
        out.lines().count(),
        2,
        "an empty store: header and end line only: {out}"
    );
}
