//! The config center on a real `sluice up` (and two `sluice server` nodes on one
//! real etcd): publish, read, history, diff, rollback, gray to labelled clients,
//! promote with watchers waiting, abort, watches that reconnect, secrets, and
//! bad input.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{Http, Sluice};

const ITEM: &str = "/v1/namespaces/default/configs/app/db.yaml";

async fn publish(api: &Http, path: &str, body: Value) -> Value {
    let (status, _, answer) = api.send("PUT", path, Some(&body.to_string())).await;
    assert!(status == 200 || status == 201, "{status}: {answer}");
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_read_history_diff_rollback_gray_promote_abort() {
    let dir = tempfile::tempdir().unwrap();
    let sluice = Sluice::up(dir.path());
    let api = Http::new(&sluice.url);

    // The minimal contract: PUT answers the version and md5; GET the content.
    let first = publish(
        &api,
        ITEM,
        json!({"content": "pool: 10\n", "format": "yaml"}),
    )
    .await;
    assert_eq!(first["version"], 1);
    assert_eq!(first["md5"], "ac88a97a29528374755db96fd6f8c212");
    let (status, _, read) = api.send("GET", ITEM, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            &read["content"],
            &read["format"],
            &read["version"],
            &read["md5"]
        ),
        (
            &json!("pool: 10\n"),
            &json!("yaml"),
            &json!(1),
            &first["md5"]
        )
    );
    publish(
        &api,
        ITEM,
        json!({"content": "pool: 20\n", "comment": "more"}),
    )
    .await;

    // History, diff, rollback.
    let (_, _, history) = api.send("GET", &format!("{ITEM}/history"), None).await;
    let versions: Vec<u64> = history["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [2, 1]);
    assert_eq!(history["versions"][0]["comment"], "more");
    let (_, _, diff) = api
        .send("GET", &format!("{ITEM}/diff?from=1&to=2"), None)
        .await;
    assert!(
        diff["diff"]
            .as_str()
            .unwrap()
            .contains("-pool: 10\n+pool: 20\n"),
        "{diff}"
    );
    let (status, _, rolled) = api
        .send(
            "POST",
            &format!("{ITEM}/rollback"),
            Some(r#"{"version": 1}"#),
        )
        .await;
    assert_eq!(status, 200, "{rolled}");
    assert_eq!(
        (&rolled["version"], &rolled["rollback_of"]),
        (&json!(3), &json!(1))
    );
    let (_, _, read) = api.send("GET", ITEM, None).await;
    assert_eq!(read["content"], "pool: 10\n");

    // Gray to labelled clients; everyone else keeps the released version.
    let gray = json!({"content": "pool: 50\n", "format": "yaml",
                      "match": {"labels": {"canary": "true"}}});
    let (status, _, candidate) = api
        .send("PUT", &format!("{ITEM}/gray"), Some(&gray.to_string()))
        .await;
    assert_eq!(status, 200, "{candidate}");
    let candidate_version = candidate["version"].as_u64().unwrap();
    let (_, _, canary) = api
        .send(
            "GET",
            &format!("{ITEM}?labels=canary=true&client_id=c1"),
            None,
        )
        .await;
    assert_eq!(
        (&canary["content"], &canary["gray"]),
        (&json!("pool: 50\n"), &json!(true))
    );
    let (_, _, plain) = api.send("GET", &format!("{ITEM}?client_id=p1"), None).await;
    assert_eq!(
        (&plain["content"], &plain["version"]),
        (&json!("pool: 10\n"), &json!(3))
    );
    let (_, _, state) = api.send("GET", &format!("{ITEM}/gray"), None).await;
    assert_eq!(state["candidate"]["version"], candidate_version);
    assert!(
        state["clients"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == "c1"),
        "the canary is listed as holding the candidate: {state}"
    );

    // Watchers on the released version; the promotion wakes every one of them.
    let mut watchers = Vec::new();
    for n in 0..5 {
        let api = api.clone();
        watchers.push(tokio::spawn(async move {
            api.send(
                "GET",
                &format!("{ITEM}?version=3&wait=30s&client_id=w{n}"),
                None,
            )
            .await
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _, promoted) = api
        .send("POST", &format!("{ITEM}/gray/promote"), None)
        .await;
    assert_eq!(status, 200, "{promoted}");
    for watcher in watchers {
        let (status, _, woke) = watcher.await.unwrap();
        assert_eq!(status, 200, "{woke}");
        assert_eq!(
            (&woke["content"], &woke["gray"]),
            (&json!("pool: 50\n"), &json!(false))
        );
    }
    for query in ["labels=canary=true", "client_id=p1"] {
        let (_, _, read) = api.send("GET", &format!("{ITEM}?{query}"), None).await;
        assert_eq!(
            (&read["version"], &read["gray"]),
            (&json!(candidate_version), &json!(false))
        );
    }
    // The canary holds the promoted version already: its watch waits.
    let (status, _, _) = api
        .send(
            "GET",
            &format!("{ITEM}?version={candidate_version}&wait=200ms&labels=canary=true"),
            None,
        )
        .await;
    assert_eq!(status, 304);

    // Abort: the canary goes back to the released version, and its watch wakes.
    api.send(
        "PUT",
        &format!("{ITEM}/gray"),
        Some(&gray.to_string().replace("50", "60")),
    )
    .await;
    let (_, _, on_gray) = api
        .send("GET", &format!("{ITEM}?labels=canary=true"), None)
        .await;
    let held = on_gray["version"].as_u64().unwrap();
    let waiting = {
        let api = api.clone();
        tokio::spawn(async move {
            api.send(
                "GET",
                &format!("{ITEM}?version={held}&wait=30s&labels=canary=true"),
                None,
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, _, aborted) = api.send("POST", &format!("{ITEM}/gray/abort"), None).await;
    assert_eq!(status, 200, "{aborted}");
    let (status, _, back) = waiting.await.unwrap();
    assert_eq!((status, &back["version"]), (200, &json!(candidate_version)));

    // The audit trail names every change.
    let (_, _, audit) = api.send("GET", &format!("{ITEM}/audit"), None).await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["publish", "publish", "rollback", "gray", "promote", "gray", "abort"]
    );

    // The CLI reads what the API wrote.
    assert_eq!(sluice.cli(&["config", "get", "app/db.yaml"]), "pool: 50\n");
    let listed = sluice.cli(&["config", "ls"]);
    assert!(listed.contains("app/db.yaml"), "{listed}");
    let cli_history = sluice.cli(&["config", "history", "app/db.yaml"]);
    assert!(cli_history.contains("released"), "{cli_history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_away_across_three_publishes_gets_the_latest_and_many_items_watch_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let sluice = Sluice::up(dir.path());
    let api = Http::new(&sluice.url);
    publish(&api, ITEM, json!({"content": "n: 1\n"})).await;
    for n in 2..=4 {
        publish(&api, ITEM, json!({"content": format!("n: {n}\n")})).await;
    }
    let (status, _, latest) = api
        .send("GET", &format!("{ITEM}?version=1&wait=30s"), None)
        .await;
    assert_eq!((status, &latest["content"]), (200, &json!("n: 4\n")));
    let md5 = latest["md5"].as_str().unwrap().to_owned();
    let (status, _, _) = api
        .send("GET", &format!("{ITEM}?md5={md5}&wait=100ms"), None)
        .await;
    assert_eq!(status, 304);

    // One request watches several items, one of them not yet published.
    let body = json!({"items": [
        {"namespace": "default", "group": "app", "key": "db.yaml", "version": 4},
        {"namespace": "default", "group": "app", "key": "flags.json", "version": 0},
    ], "wait": "30s"});
    let waiting = {
        let api = api.clone();
        let body = body.to_string();
        tokio::spawn(async move { api.send("POST", "/v1/configs/watch", Some(&body)).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    publish(
        &api,
        "/v1/namespaces/default/configs/app/flags.json",
        json!({"content": "{\"dark\": true}"}),
    )
    .await;
    let (status, _, changed) = waiting.await.unwrap();
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["changed"].as_array().unwrap().len(), 1, "{changed}");
    assert_eq!(changed["changed"][0]["key"], "flags.json");
    assert_eq!(changed["changed"][0]["version"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let sluice = Sluice::up(dir.path());
    let api = Http::new(&sluice.url);
    publish(&api, ITEM, json!({"content": "pool: 10\n"})).await;
    let big = "x".repeat(1024 * 1024 + 1);
    let cases: Vec<(&str, String, String, u16, &str)> = vec![
        (
            "PUT",
            ITEM.into(),
            json!({"content": big, "format": "text"}).to_string(),
            413,
            "over the limit",
        ),
        (
            "PUT",
            ITEM.into(),
            json!({"content": "a: [1\n"}).to_string(),
            400,
            "line 2",
        ),
        (
            "PUT",
            "/v1/namespaces/default/configs/app/c.json".into(),
            json!({"content": "{\n\"a\": 1,\n}"}).to_string(),
            400,
            "line 3",
        ),
        (
            "PUT",
            "/v1/namespaces/default/configs/app/c.toml".into(),
            json!({"content": "a = 1\n[b\n"}).to_string(),
            400,
            "line 2",
        ),
        (
            "PUT",
            "/v1/namespaces/default/configs/a%20b/k".into(),
            json!({"content": "x"}).to_string(),
            400,
            "group",
        ),
        (
            "PUT",
            ITEM.into(),
            json!({"content": "x", "format": "xml"}).to_string(),
            400,
            "format",
        ),
        (
            "PUT",
            ITEM.into(),
            json!({"content": "x", "colour": 1}).to_string(),
            400,
            "colour",
        ),
        (
            "PUT",
            format!("{ITEM}/gray"),
            json!({"content": "pool: 1\n", "match": {}}).to_string(),
            400,
            "match",
        ),
        (
            "PUT",
            format!("{ITEM}/gray"),
            json!({"content": "pool: 1\n", "match": {"percent": 0}}).to_string(),
            400,
            "match.percent",
        ),
        (
            "PUT",
            format!("{ITEM}/gray"),
            json!({"content": "pool: 1\n", "match": {"addresses": ["10.0.0.300"]}}).to_string(),
            400,
            "match.addresses[0]",
        ),
        (
            "POST",
            format!("{ITEM}/gray/promote"),
            String::new(),
            409,
            "no gray candidate",
        ),
        (
            "POST",
            format!("{ITEM}/rollback"),
            json!({"version": 99}).to_string(),
            404,
            "no version 99",
        ),
        (
            "PUT",
            ITEM.into(),
            json!({"content": "p: 2\n", "expect_version": 7}).to_string(),
            409,
            "not the expected 7",
        ),
        (
            "GET",
            format!("{ITEM}?version=x"),
            String::new(),
            400,
            "version",
        ),
        (
            "GET",
            format!("{ITEM}?version=1&wait=11m"),
            String::new(),
            400,
            "wait",
        ),
        (
            "GET",
            format!("{ITEM}?labels=canary"),
            String::new(),
            400,
            "KEY=VALUE",
        ),
        (
            "GET",
            "/v1/namespaces/default/configs/app/missing".into(),
            String::new(),
            404,
            "does not exist",
        ),
    ];
    for (method, path, body, status, needle) in cases {
        let body = (!body.is_empty()).then_some(body.as_str());
        let (got, _, answer) = api.send(method, &path, body).await;
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert_eq!(got, status, "{method} {path}: {answer}");
        assert!(message.contains(needle), "{method} {path}: {message}");
    }
    // Nothing refused changed the item.
    let (_, _, read) = api.send("GET", ITEM, None).await;
    assert_eq!(read["version"], 1);
}

/// Every byte of every file under `dir` (but the key itself) is free of `needle`.
fn assert_not_in_files(dir: &std::path::Path, needle: &[u8]) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            assert_not_in_files(&path, needle);
        } else if path.file_name().is_some_and(|n| n != "secrets.key") {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{} holds the secret",
                path.display()
            );
        }
    }
}

const TOKENS: &str = r#"
[[tokens]]
name = "ops"
token = "admin-token-0123456789"
role = "admin"

[[tokens]]
name = "viewer"
token = "read-token-0123456789"
role = "read"

[[tokens]]
name = "app"
token = "app-token-0123456789ab"
role = "read"
secrets = true
namespaces = ["default"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_sealed_masked_and_need_a_token_that_may_read_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut sluice = Sluice::up_with_tokens(dir.path(), TOKENS, &[]);
    let admin = Http::with_token(&sluice.url, "admin-token-0123456789");
    let viewer = Http::with_token(&sluice.url, "read-token-0123456789");
    let app = Http::with_token(&sluice.url, "app-token-0123456789ab");
    let secret = "password: s3cr3t-Value-Nobody-Sees\n";
    let path = "/v1/namespaces/default/configs/app/creds.yaml";
    let published = publish(&admin, path, json!({"content": secret, "secret": true})).await;
    assert_eq!(published["secret"], true);
    assert_eq!(published["audit"]["author"], "ops");
    let (status, _, _) = viewer.send("GET", path, None).await;
    assert_eq!(status, 403, "a read-only token cannot read a secret");
    let (status, _, _) = viewer
        .send("GET", &format!("{path}/versions/1"), None)
        .await;
    assert_eq!(status, 403);
    let (status, _, read) = app.send("GET", path, None).await;
    assert_eq!((status, read["content"].as_str()), (200, Some(secret)));
    let (_, _, listed) = viewer
        .send("GET", "/v1/namespaces/default/configs", None)
        .await;
    let text = listed.to_string();
    assert!(
        text.contains("creds.yaml") && !text.contains("s3cr3t"),
        "{text}"
    );
    sluice.kill();
    assert_not_in_files(&dir.path().join("d"), b"s3cr3t-Value");
    // The value survives a restart with the key in the data directory.
    let sluice = Sluice::up_with_tokens(dir.path(), TOKENS, &[]);
    let admin = Http::with_token(&sluice.url, "admin-token-0123456789");
    let (_, _, read) = admin.send("GET", path, None).await;
    assert_eq!(read["content"].as_str(), Some(secret));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_etcd_wake_each_others_watchers_and_seal_with_one_key() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = sluice_testkit::EtcdCluster::single();
    let url = etcd.url("/config-test");
    let key = dir.path().join("secrets.key");
    std::fs::write(&key, format!("{}\n", "ab".repeat(32))).unwrap();
    let args = [
        "--store",
        url.as_str(),
        "--secrets-key-file",
        key.to_str().unwrap(),
    ];
    let a = Sluice::start("server", &args, dir.path());
    let b = Sluice::start("server", &args, dir.path());
    let (on_a, on_b) = (Http::new(&a.url), Http::new(&b.url));
    publish(&on_a, ITEM, json!({"content": "pool: 1\n"})).await;
    let (_, _, seen) = on_b.send("GET", ITEM, None).await;
    assert_eq!(seen["version"], 1);
    let waiting = {
        let on_b = on_b.clone();
        tokio::spawn(async move {
            on_b.send("GET", &format!("{ITEM}?version=1&wait=30s"), None)
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    publish(&on_a, ITEM, json!({"content": "pool: 2\n"})).await;
    let (status, _, woke) = waiting.await.unwrap();
    assert_eq!((status, &woke["content"]), (200, &json!("pool: 2\n")));

    // A secret sealed on one node opens on the other, and etcd never holds it.
    let path = "/v1/namespaces/default/configs/app/creds";
    publish(
        &on_a,
        path,
        json!({"content": "token=etcd-Secret-Value", "secret": true}),
    )
    .await;
    let (_, _, read) = on_b.send("GET", path, None).await;
    assert_eq!(read["content"], "token=etcd-Secret-Value");
    let store = sluice_store::open(&url).await.unwrap();
    let (kvs, _) = sluice_store::list_all(&*store, "").await.unwrap();
    assert!(kvs.iter().any(|kv| kv.key.starts_with("cfg/data/")));
    for kv in kvs {
        assert!(
            !kv.value.windows(12).any(|w| w == b"etcd-Secret-"),
            "{} holds the secret",
            kv.key
        );
    }
}
