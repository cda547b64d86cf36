//! The config center over the in-memory store: versions, history, rollback, gray
//! candidates, promote and abort, watches, secrets and the audit trail.

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use sluice_config::{
    Action, Actor, ClientInfo, ConfigCenter, ConfigError, Format, GrayRule, Held, ItemPath,
    Publish, Sealer, WatchAnswer,
};

async fn center() -> (ConfigCenter, Arc<dyn sluice_store::Store>) {
    let store = sluice_store::open("memory://").await.unwrap();
    let sealer = Arc::new(Sealer::from_key(&[9; 32]));
    (ConfigCenter::start(Arc::clone(&store), Some(sealer)), store)
}

fn item() -> ItemPath {
    ItemPath::new("default", "app", "db.yaml").unwrap()
}

fn yaml(content: &str) -> Publish {
    Publish {
        content: content.to_owned(),
        format: Some(Format::Yaml),
        ..Publish::default()
    }
}

fn actor() -> Actor {
    Actor {
        name: "alice".into(),
        address: None,
    }
}

fn canary() -> ClientInfo {
    ClientInfo {
        labels: [("canary".to_owned(), "true".to_owned())].into(),
        client_id: Some("canary-1".into()),
        ..ClientInfo::default()
    }
}

fn plain() -> ClientInfo {
    ClientInfo {
        client_id: Some("plain-1".into()),
        ..ClientInfo::default()
    }
}

fn canary_rule() -> GrayRule {
    GrayRule {
        labels: Some([("canary".to_owned(), "true".to_owned())].into()),
        ..GrayRule::default()
    }
}

#[tokio::test]
async fn versions_history_diff_and_rollback() {
    let (center, _) = center().await;
    let first = center
        .publish(&item(), yaml("pool: 10\n"), &actor())
        .await
        .unwrap();
    assert_eq!(first.version.as_ref().unwrap().version, 1);
    center
        .publish(&item(), yaml("pool: 20\n"), &actor())
        .await
        .unwrap();
    let served = center.read(&item(), &plain()).await.unwrap();
    assert_eq!(served.meta.version, 2);
    assert_eq!(served.content.text, "pool: 20\n");
    assert_eq!(served.meta.md5, served.content.md5);
    let diff = center.diff(&item(), 1, 2).await.unwrap();
    assert!(diff.contains("-pool: 10\n+pool: 20\n"), "{diff}");
    let rolled = center.rollback(&item(), 1, "", &actor()).await.unwrap();
    let meta = rolled.version.unwrap();
    assert_eq!((meta.version, meta.rollback_of), (3, Some(1)));
    assert_eq!(
        center.read(&item(), &plain()).await.unwrap().content.text,
        "pool: 10\n"
    );
    let missing = center
        .rollback(&item(), 99, "", &actor())
        .await
        .unwrap_err();
    assert!(
        matches!(missing, ConfigError::VersionNotKept { .. }),
        "{missing}"
    );
    let audit = center.audit(&item()).await.unwrap();
    let actions: Vec<Action> = audit.iter().map(|a| a.action).collect();
    assert_eq!(
        actions,
        [Action::Publish, Action::Publish, Action::Rollback]
    );
    assert_eq!(
        (audit[2].from_version, audit[2].to_version),
        (Some(2), Some(3))
    );
    assert_eq!(audit[2].author, "alice");
}

#[tokio::test]
async fn history_is_bounded_and_bad_content_is_refused() {
    let (center, store) = center().await;
    let mut publish = yaml("n: 0\n");
    publish.history = Some(3);
    center.publish(&item(), publish, &actor()).await.unwrap();
    for n in 1..10 {
        center
            .publish(&item(), yaml(&format!("n: {n}\n")), &actor())
            .await
            .unwrap();
    }
    let (record, _) = center.record(&item()).await.unwrap().unwrap();
    let kept: Vec<u64> = record.kept.iter().map(|v| v.version).collect();
    assert_eq!(kept, [8, 9, 10]);
    let (data, _) = sluice_store::list_all(&*store, "cfg/data/").await.unwrap();
    assert_eq!(
        data.len(),
        3,
        "the contents of dropped versions are deleted"
    );
    let bad = center
        .publish(&item(), yaml("a: [1, 2\n"), &actor())
        .await
        .unwrap_err();
    assert!(bad.to_string().contains("line"), "{bad}");
    let big = center
        .publish(&item(), yaml(&"x".repeat(1024 * 1024 + 1)), &actor())
        .await
        .unwrap_err();
    assert!(matches!(big, ConfigError::TooLarge { .. }), "{big}");
    let mut stale = yaml("n: 11\n");
    stale.expect_version = Some(3);
    let conflict = center.publish(&item(), stale, &actor()).await.unwrap_err();
    assert!(
        matches!(conflict, ConfigError::Conflict { actual: 10, .. }),
        "{conflict}"
    );
}

#[tokio::test]
async fn gray_goes_to_matching_clients_and_promote_reaches_everyone() {
    let (center, _) = center().await;
    center
        .publish(&item(), yaml("pool: 10\n"), &actor())
        .await
        .unwrap();
    let none = center.promote(&item(), "", &actor()).await.unwrap_err();
    assert!(matches!(none, ConfigError::NoCandidate(_)), "{none}");
    center
        .publish_gray(&item(), yaml("pool: 50\n"), canary_rule(), &actor())
        .await
        .unwrap();
    let to_canary = center.read(&item(), &canary()).await.unwrap();
    assert!(to_canary.gray);
    assert_eq!(to_canary.content.text, "pool: 50\n");
    assert_eq!(
        center.read(&item(), &plain()).await.unwrap().content.text,
        "pool: 10\n"
    );
    center.promote(&item(), "", &actor()).await.unwrap();
    for client in [canary(), plain()] {
        let served = center.read(&item(), &client).await.unwrap();
        assert_eq!((served.meta.version, served.gray), (2, false));
    }
    center
        .publish_gray(&item(), yaml("pool: 70\n"), canary_rule(), &actor())
        .await
        .unwrap();
    center.abort(&item(), "", &actor()).await.unwrap();
    assert_eq!(
        center.read(&item(), &canary()).await.unwrap().meta.version,
        2
    );
    assert!(
        center.version(&item(), 3).await.is_ok(),
        "the aborted candidate stays in history"
    );
}

#[tokio::test]
async fn watchers_wake_on_promote_and_none_keeps_the_old_version() {
    // Nacos #5437: after beta → publish some clients kept the pre-beta content.
    let (center, _) = center().await;
    center
        .publish(&item(), yaml("round: 0\n"), &actor())
        .await
        .unwrap();
    for round in 1..=20u64 {
        let content = format!("round: {round}\n");
        let candidate = center
            .publish_gray(&item(), yaml(&content), canary_rule(), &actor())
            .await
            .unwrap()
            .version
            .unwrap()
            .version;
        // Clients on the released version wait; the promotion must wake them all.
        let mut watchers = Vec::new();
        for n in 0..8 {
            let client = ClientInfo {
                client_id: Some(format!("plain-{n}")),
                ..ClientInfo::default()
            };
            let held = center.read(&item(), &client).await.unwrap().meta.version;
            let center = center.clone();
            watchers.push(tokio::spawn(async move {
                center
                    .watch(
                        &item(),
                        &client,
                        &Held::Version(held),
                        Duration::from_secs(30),
                    )
                    .await
                    .unwrap()
            }));
        }
        let on_candidate = center.read(&item(), &canary()).await.unwrap();
        assert_eq!(
            (on_candidate.meta.version, on_candidate.gray),
            (candidate, true)
        );
        tokio::task::yield_now().await;
        center.promote(&item(), "", &actor()).await.unwrap();
        for watcher in watchers {
            match watcher.await.unwrap() {
                WatchAnswer::Changed(served) => {
                    assert_eq!(served.content.text, content);
                    assert_eq!((served.meta.version, served.gray), (candidate, false));
                }
                other => panic!("round {round}: {other:?}"),
            }
        }
        // The canary already holds the promoted version: nothing to wake for,
        // and what it holds is what everyone is served.
        let canary_watch = center
            .watch(
                &item(),
                &canary(),
                &Held::Version(candidate),
                Duration::from_millis(20),
            )
            .await
            .unwrap();
        assert!(
            matches!(canary_watch, WatchAnswer::NotModified),
            "{canary_watch:?}"
        );
        for client in [canary(), plain()] {
            let served = center.read(&item(), &client).await.unwrap();
            assert_eq!(
                (served.content.text.as_str(), served.gray),
                (content.as_str(), false)
            );
        }
    }
}

#[tokio::test]
async fn a_watch_answers_at_once_for_an_old_version_and_waits_otherwise() {
    let (center, _) = center().await;
    center
        .publish(&item(), yaml("v: 1\n"), &actor())
        .await
        .unwrap();
    for n in 2..=4 {
        center
            .publish(&item(), yaml(&format!("v: {n}\n")), &actor())
            .await
            .unwrap();
    }
    // Disconnected across three publishes: the latest, at once.
    match center
        .watch(
            &item(),
            &plain(),
            &Held::Version(1),
            Duration::from_secs(30),
        )
        .await
        .unwrap()
    {
        WatchAnswer::Changed(served) => assert_eq!(served.meta.version, 4),
        other => panic!("{other:?}"),
    }
    let quiet = center
        .watch(
            &item(),
            &plain(),
            &Held::Version(4),
            Duration::from_millis(200),
        )
        .await
        .unwrap();
    assert!(matches!(quiet, WatchAnswer::NotModified), "{quiet:?}");
    let md5 = center
        .read(&item(), &plain())
        .await
        .unwrap()
        .content
        .md5
        .clone();
    let by_md5 = center
        .watch(
            &item(),
            &plain(),
            &Held::Md5(md5),
            Duration::from_millis(100),
        )
        .await
        .unwrap();
    assert!(matches!(by_md5, WatchAnswer::NotModified), "{by_md5:?}");
    let waiting = {
        let center = center.clone();
        tokio::spawn(async move {
            center
                .watch(
                    &item(),
                    &plain(),
                    &Held::Version(4),
                    Duration::from_secs(30),
                )
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    center
        .publish(&item(), yaml("v: 5\n"), &actor())
        .await
        .unwrap();
    match waiting.await.unwrap() {
        WatchAnswer::Changed(served) => assert_eq!(served.content.text, "v: 5\n"),
        other => panic!("{other:?}"),
    }
    // Several items in one request.
    let other = ItemPath::new("default", "app", "other.json").unwrap();
    let changes = center
        .watch_many(
            &[
                (item(), Held::Version(5)),
                (other.clone(), Held::Version(0)),
            ],
            &plain(),
            Duration::from_millis(100),
        )
        .await
        .unwrap();
    assert!(changes.is_empty(), "{changes:?}");
    let many = {
        let center = center.clone();
        let other = other.clone();
        tokio::spawn(async move {
            center
                .watch_many(
                    &[(item(), Held::Version(5)), (other, Held::Version(0))],
                    &plain(),
                    Duration::from_secs(30),
                )
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let publish = Publish {
        content: "{}".into(),
        ..Publish::default()
    };
    center.publish(&other, publish, &actor()).await.unwrap();
    let changes = many.await.unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(
        (changes[0].key.as_str(), changes[0].version),
        ("other.json", 1)
    );
    center.delete(&item(), &actor()).await.unwrap();
    let gone = center
        .watch(
            &item(),
            &plain(),
            &Held::Version(5),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert!(matches!(gone, WatchAnswer::Gone), "{gone:?}");
}

#[tokio::test]
async fn secrets_are_sealed_in_the_store() {
    let (center, store) = center().await;
    let publish = Publish {
        content: "password: correct-horse-battery\n".into(),
        format: Some(Format::Yaml),
        secret: Some(true),
        ..Publish::default()
    };
    center.publish(&item(), publish, &actor()).await.unwrap();
    let served = center.read(&item(), &plain()).await.unwrap();
    assert!(served.secret);
    assert_eq!(served.content.text, "password: correct-horse-battery\n");
    let (kvs, _) = sluice_store::list_all(&*store, "").await.unwrap();
    for kv in kvs {
        assert!(
            !kv.value.windows(15).any(|w| w == b"correct-horse-b"),
            "{} holds the secret",
            kv.key
        );
    }
}
