//! The judge on synthetic series: every rule kind (above, below, change against
//! yesterday, absent data), the state machine with `for`, and noise control —
//! a flapping condition, grouped and throttled notifications, mutes, recovery.

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;

use parking_lot::RwLock;
use sluice_alarm::judge::{alarms, evaluate, JudgeState, Resources};
use sluice_alarm::notify::pending;
use sluice_alarm::AlarmState;
use sluice_metrics::{rrd, Agg, Db, DbConfig, SeriesKey};
use sluice_model::keys::resource_key;
use sluice_model::{AlarmRuleSpec, MuteSpec, NotifierSpec, ResourceId};
use sluice_store::{LocalStore, LocalStoreOptions, Store};

/// A whole day: evaluations run at step boundaries from here.
const T0: u64 = 1_800_000_000;

struct Bench {
    store: Arc<dyn Store>,
    db: Arc<Db>,
    resources: Arc<RwLock<Resources>>,
    state: JudgeState,
    _dir: tempfile::TempDir,
}

impl Bench {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(DbConfig {
            dir: dir.path().to_owned(),
            tiers: rrd::parse_tiers("10s:2d,1m:7d").unwrap(),
            max_series: 1000,
        })
        .unwrap();
        Bench {
            store: Arc::new(LocalStore::memory(LocalStoreOptions::default()).unwrap()),
            db: Arc::new(db),
            resources: Arc::new(RwLock::new(Resources::default())),
            state: JudgeState::default(),
            _dir: dir,
        }
    }

    /// Another control-plane node on the same store and resources, with its own
    /// (empty) metrics store and judge.
    fn another_node(&self) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(DbConfig {
            dir: dir.path().to_owned(),
            tiers: self.db.tiers().to_vec(),
            max_series: 1000,
        })
        .unwrap();
        Bench {
            store: Arc::clone(&self.store),
            db: Arc::new(db),
            resources: Arc::clone(&self.resources),
            state: JudgeState::default(),
            _dir: dir,
        }
    }

    fn rule(&self, name: &str, json: &str) {
        let spec: AlarmRuleSpec = serde_json::from_str(json).unwrap();
        spec.validate().unwrap();
        self.resources
            .write()
            .rules
            .insert(ResourceId::new("default", name), spec);
    }

    fn notifier(&self, name: &str, json: &str) {
        let spec: NotifierSpec = serde_json::from_str(json).unwrap();
        spec.validate().unwrap();
        self.resources
            .write()
            .notifiers
            .insert(ResourceId::new("default", name), spec);
    }

    /// A gauge value of `logins{namespace=default, tier=vip}` in the step at `time`.
    fn gauge(&self, metric: &str, time: u64, value: f64) {
        let key = SeriesKey::new(metric, [("namespace", "default"), ("tier", "vip")]);
        self.db
            .add(&key, time, &Agg::of_values([value], false))
            .unwrap();
    }

    async fn at(&mut self, now: u64) {
        evaluate(&self.store, &self.db, &self.resources, &mut self.state, now).await;
    }

    async fn states(&self) -> Vec<(String, AlarmState, u64)> {
        alarms(&*self.store, "default")
            .await
            .unwrap()
            .into_iter()
            .map(|a| (a.rule, a.state, a.count))
            .collect()
    }

    async fn notifications(&self) -> Vec<(u64, String, Vec<AlarmState>)> {
        let mut all: Vec<(u64, String, Vec<AlarmState>)> = pending(&*self.store, Some("default"))
            .await
            .unwrap()
            .into_iter()
            .map(|(_, n)| {
                let states = n.alarms.iter().map(|a| a.state).collect();
                (n.created_at, n.notifier, states)
            })
            .collect();
        all.sort_by_key(|n| n.0);
        all
    }
}

#[tokio::test]
async fn above_and_below_with_for() {
    let mut bench = Bench::new();
    bench.rule(
        "high",
        r#"{"metric": "queue", "match": {"tier": "vip"}, "above": 100, "for": "20s"}"#,
    );
    bench.rule("low", r#"{"metric": "queue", "below": 5}"#);
    for (i, value) in [150.0, 150.0, 150.0, 50.0, 2.0].iter().enumerate() {
        let time = T0 + i as u64 * 10;
        bench.gauge("queue", time, *value);
        // Evaluated just after the step ends.
        bench.at(time + 10).await;
        let states = bench.states().await;
        match i {
            0 | 1 => assert_eq!(
                states,
                vec![("high".into(), AlarmState::Pending, 0)],
                "step {i}"
            ),
            2 => assert_eq!(states, vec![("high".into(), AlarmState::Firing, 1)]),
            3 => assert_eq!(states, vec![("high".into(), AlarmState::Resolved, 1)]),
            _ => {
                let mut states = states;
                states.sort();
                assert_eq!(
                    states,
                    vec![
                        ("high".into(), AlarmState::Resolved, 1),
                        ("low".into(), AlarmState::Firing, 1)
                    ]
                );
            }
        }
    }
    let listed = alarms(&*bench.store, "default").await.unwrap();
    let high = listed.iter().find(|a| a.rule == "high").unwrap();
    assert_eq!(high.labels["tier"], "vip");
    assert_eq!(high.labels["severity"], "warning");
    assert_eq!((high.first_seen, high.last_seen), (T0 + 10, T0 + 30));
}

#[tokio::test]
async fn change_against_the_same_time_yesterday() {
    let mut bench = Bench::new();
    bench.rule(
        "logins-drop",
        r#"{"metric": "logins", "agg": "sum", "change": {"percent": 50, "direction": "down"}}"#,
    );
    let yesterday = T0 - 86_400;
    // Yesterday at this time: 100 logins a step; today 40 — a 60 % drop.
    bench.gauge("logins", yesterday, 100.0);
    bench.gauge("logins", T0, 40.0);
    bench.at(T0 + 10).await;
    assert_eq!(
        bench.states().await,
        vec![("logins-drop".into(), AlarmState::Firing, 1)]
    );
    let alarm = &alarms(&*bench.store, "default").await.unwrap()[0];
    assert_eq!(alarm.value, Some(40.0));
    // The next step is only 30 % down: resolved.
    bench.gauge("logins", yesterday + 10, 100.0);
    bench.gauge("logins", T0 + 10, 70.0);
    bench.at(T0 + 20).await;
    assert_eq!(
        bench.states().await,
        vec![("logins-drop".into(), AlarmState::Resolved, 1)]
    );
}

#[tokio::test]
async fn absent_data_fires_and_data_resolves_it() {
    let mut bench = Bench::new();
    bench.rule(
        "heartbeat",
        r#"{"metric": "orders", "match": {"tier": "vip"}, "absent": "30s"}"#,
    );
    bench.gauge("orders", T0, 1.0);
    bench.at(T0 + 10).await;
    assert!(bench.states().await.is_empty(), "data within the last 30 s");
    bench.at(T0 + 40).await;
    assert_eq!(
        bench.states().await,
        vec![("heartbeat".into(), AlarmState::Firing, 1)]
    );
    let alarm = &alarms(&*bench.store, "default").await.unwrap()[0];
    assert_eq!(alarm.value, None);
    assert_eq!(alarm.labels["tier"], "vip");
    bench.gauge("orders", T0 + 40, 1.0);
    bench.at(T0 + 50).await;
    assert_eq!(
        bench.states().await,
        vec![("heartbeat".into(), AlarmState::Resolved, 1)]
    );
}

#[tokio::test]
async fn a_gap_in_the_data_is_not_a_recovery_but_a_long_silence_is() {
    let mut bench = Bench::new();
    bench.rule("high", r#"{"metric": "queue", "above": 100}"#);
    bench.gauge("queue", T0, 150.0);
    bench.at(T0 + 10).await;
    assert_eq!(
        bench.states().await,
        vec![("high".into(), AlarmState::Firing, 1)]
    );
    // The pushes stop: the alarm keeps firing through the grace (5 steps of 10 s)...
    for step in 2..6 {
        bench.at(T0 + step * 10).await;
        assert_eq!(
            bench.states().await,
            vec![("high".into(), AlarmState::Firing, 1)],
            "step {step}"
        );
    }
    // ... and resolves when the silence outlasts it.
    bench.at(T0 + 60).await;
    assert_eq!(
        bench.states().await,
        vec![("high".into(), AlarmState::Resolved, 1)]
    );

    // Sluice restarts after a long time down with the alarm firing: the fresh judge
    // gives the data its grace before it calls anything resolved.
    bench.gauge("queue", T0 + 1000, 150.0);
    bench.at(T0 + 1010).await;
    assert_eq!(
        bench.states().await,
        vec![("high".into(), AlarmState::Firing, 2)]
    );
    bench.state = JudgeState::default();
    bench.at(T0 + 5000).await;
    assert_eq!(
        bench.states().await,
        vec![("high".into(), AlarmState::Firing, 2)],
        "the first evaluation after a restart"
    );
    bench.gauge("queue", T0 + 5000, 150.0);
    bench.at(T0 + 5010).await;
    assert_eq!(
        bench.states().await,
        vec![("high".into(), AlarmState::Firing, 2)],
        "data again: still the same firing alarm"
    );
}

#[tokio::test]
async fn a_flapping_condition_is_one_alarm_grouped_throttled_muted_and_recovered() {
    let mut bench = Bench::new();
    bench.notifier(
        "hook",
        r#"{"webhook": {"url": "http://127.0.0.1:9/x"}, "group_wait": "0s", "group_interval": "60s", "repeat_interval": "1h"}"#,
    );
    bench.rule(
        "flappy",
        r#"{"metric": "errors", "agg": "sum", "above": 10, "notify": ["hook"]}"#,
    );
    // 100 evaluations, 10 s apart: the condition flips every step.
    for i in 0..100u64 {
        let time = T0 + i * 10;
        let value = if i % 2 == 0 { 50.0 } else { 0.0 };
        let key = SeriesKey::new("errors", [("namespace", "default"), ("tier", "vip")]);
        bench
            .db
            .add(&key, time, &Agg::of_values([value], false))
            .unwrap();
        bench.at(time + 10).await;
    }
    let listed = alarms(&*bench.store, "default").await.unwrap();
    assert_eq!(listed.len(), 1, "one alarm");
    assert_eq!(listed[0].count, 50, "with a count");
    assert_eq!(listed[0].state, AlarmState::Resolved);
    // Notifications: the first at once, then at most one per group interval (60 s).
    let sent = bench.notifications().await;
    assert_eq!(sent[0].0, T0 + 10);
    for pair in sent.windows(2) {
        assert!(pair[1].0 - pair[0].0 >= 60, "{sent:?}");
    }
    // 1000 s of flapping: about one notification a minute, not 100.
    assert!(
        (15..=18).contains(&sent.len()),
        "{} notifications",
        sent.len()
    );

    // Muted: nothing new while it fires and resolves.
    let mute: MuteSpec =
        serde_json::from_str(r#"{"match": {"rule": "flappy"}, "ends_at": "2030-01-01T00:00:00Z"}"#)
            .unwrap();
    let (starts, ends) = mute.validate().unwrap();
    bench
        .resources
        .write()
        .mutes
        .insert(ResourceId::new("default", "m"), (mute, starts, ends));
    let before = bench.notifications().await.len();
    for i in 100..110u64 {
        let time = T0 + i * 10;
        let key = SeriesKey::new("errors", [("namespace", "default"), ("tier", "vip")]);
        let value = if i % 2 == 0 { 50.0 } else { 0.0 };
        bench
            .db
            .add(&key, time, &Agg::of_values([value], false))
            .unwrap();
        bench.at(time + 10).await;
    }
    assert_eq!(
        bench.notifications().await.len(),
        before,
        "nothing while muted"
    );

    // Unmuted, it fires and then recovers: a firing and, at the end, a recovery notice.
    bench.resources.write().mutes.clear();
    let key = SeriesKey::new("errors", [("namespace", "default"), ("tier", "vip")]);
    let t = T0 + 1200;
    bench
        .db
        .add(&key, t, &Agg::of_values([50.0], false))
        .unwrap();
    bench.at(t + 10).await;
    bench
        .db
        .add(&key, t + 100, &Agg::of_values([0.0], false))
        .unwrap();
    bench.at(t + 110).await;
    let sent = bench.notifications().await;
    let last = sent.last().unwrap();
    assert_eq!(last.2, vec![AlarmState::Resolved], "{sent:?}");
    assert_eq!(sent.len(), before + 2, "{sent:?}");
}

/// Gateway series of service `echo` for the step at `time`: `ok` 200s, `errors` 503s,
/// all taking `latency_ms`.
fn traffic(bench: &Bench, time: u64, ok: u64, errors: u64, latency_ms: f64) {
    let labels = |code: Option<&str>| {
        let mut key = SeriesKey::new(
            "requests",
            [
                ("namespace", "default"),
                ("service", "echo"),
                ("api", "GET /echo"),
                ("instance", "i1"),
            ],
        );
        if let Some(code) = code {
            key.labels.insert("code".into(), code.into());
        }
        key
    };
    for (code, n) in [("200", ok), ("503", errors)] {
        if n > 0 {
            bench
                .db
                .add(
                    &labels(Some(code)),
                    time,
                    &sluice_metrics::recorder::counter(n),
                )
                .unwrap();
        }
    }
    let mut latency = labels(None);
    latency.name = "latency_ms".into();
    let values = vec![latency_ms; (ok + errors) as usize];
    bench
        .db
        .add(&latency, time, &Agg::of_values(values, true))
        .unwrap();
}

#[tokio::test]
async fn template_rules_cover_every_service_and_can_be_turned_off() {
    let mut bench = Bench::new();
    bench.notifier(
        "oncall",
        r#"{"webhook": {"url": "http://127.0.0.1:9/x"}, "defaults": true}"#,
    );
    // 10 % errors for three minutes: above the template's 5 % for 2 minutes.
    for i in 0..18u64 {
        let time = T0 + i * 10;
        traffic(&bench, time, 90, 10, 20.0);
        bench.at(time + 10).await;
    }
    let listed = alarms(&*bench.store, "default").await.unwrap();
    let errors = listed
        .iter()
        .find(|a| a.rule == "default-error-rate")
        .unwrap();
    assert_eq!(errors.state, AlarmState::Firing);
    assert_eq!(errors.labels["service"], "echo");
    assert!(
        errors.message.contains("echo: error rate 0.1"),
        "{}",
        errors.message
    );
    assert!(
        !listed.iter().any(|a| a.rule == "default-p98"),
        "20 ms is fine"
    );
    let sent = bench.notifications().await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1, "oncall");
    // A namespace turns the template off: its alarm goes.
    bench.rule(
        "default-error-rate",
        r#"{"metric": "error_rate", "above": 0.05, "disabled": true}"#,
    );
    bench.at(T0 + 190).await;
    let listed = alarms(&*bench.store, "default").await.unwrap();
    assert!(!listed.iter().any(|a| a.rule == "default-error-rate"));
}

#[tokio::test]
async fn a_firing_service_down_inhibits_its_latency_alarms() {
    let mut bench = Bench::new();
    bench.notifier("hook", r#"{"webhook": {"url": "http://127.0.0.1:9/x"}}"#);
    bench.rule(
        "echo-down",
        r#"{"metric": "error_rate", "by": ["service"], "above": 0.9, "inhibits": ["echo-slow"], "notify": ["hook"]}"#,
    );
    bench.rule(
        "echo-slow",
        r#"{"metric": "p98_ms", "by": ["service"], "above": 100, "notify": ["hook"]}"#,
    );
    traffic(&bench, T0, 0, 100, 3000.0);
    bench.at(T0 + 10).await;
    // (The templates' alarms are pending; they are not this test's.)
    let mut states: Vec<_> = bench
        .states()
        .await
        .into_iter()
        .filter(|(rule, _, _)| rule.starts_with("echo-"))
        .collect();
    states.sort();
    assert_eq!(
        states,
        vec![
            ("echo-down".into(), AlarmState::Firing, 1),
            ("echo-slow".into(), AlarmState::Firing, 1)
        ]
    );
    let sent = bench.notifications().await;
    assert_eq!(
        sent.len(),
        1,
        "only the service-down alarm is told: {sent:?}"
    );
    // Up again but slow: now the latency alarm is told.
    traffic(&bench, T0 + 10, 100, 0, 3000.0);
    bench.at(T0 + 20).await;
    let rules: Vec<String> = pending(&*bench.store, Some("default"))
        .await
        .unwrap()
        .into_iter()
        .map(|(_, n)| n.rule)
        .collect();
    assert!(rules.contains(&"echo-slow".to_owned()), "{rules:?}");
}

#[tokio::test]
async fn a_new_error_group_fires_the_error_template() {
    let mut bench = Bench::new();
    for spec in sluice_model::template_rules()
        .into_iter()
        .chain(sluice_model::error_template_rules())
    {
        spec.1.validate().unwrap();
    }
    let events = SeriesKey::new(
        "error_events",
        [
            ("namespace", "default"),
            ("project", "42"),
            ("group", "abc"),
        ],
    );
    let new = SeriesKey::new(
        "error_new_groups",
        [("namespace", "default"), ("project", "42")],
    );
    bench
        .db
        .add(&events, T0, &sluice_metrics::recorder::counter(1))
        .unwrap();
    bench
        .db
        .add(&new, T0, &sluice_metrics::recorder::counter(1))
        .unwrap();
    bench.at(T0 + 10).await;
    let listed = alarms(&*bench.store, "default").await.unwrap();
    let alarm = listed
        .iter()
        .find(|a| a.rule == "default-new-error")
        .unwrap();
    assert_eq!(alarm.state, AlarmState::Firing);
    assert_eq!(alarm.labels["project"], "42");
    assert!(
        alarm.message.contains("a new kind of error"),
        "{}",
        alarm.message
    );
}

#[tokio::test]
async fn unreadable_or_invalid_resources_in_the_store_are_skipped_not_fatal() {
    let mut bench = Bench::new();
    let put = |key: &str, value: &str| {
        let (store, key, value) = (Arc::clone(&bench.store), key.to_owned(), value.to_owned());
        async move { store.put(&key, value.into_bytes(), None).await.unwrap() }
    };
    put(
        &resource_key("AlarmRule", "default", "garbage"),
        "not json at all",
    )
    .await;
    put(
        &resource_key("AlarmRule", "default", "invalid"),
        r#"{"kind": "AlarmRule", "metadata": {"namespace": "default", "name": "invalid"}, "spec": {"metric": "queue"}}"#,
    )
    .await;
    put(
        &resource_key("Notifier", "default", "broken"),
        r#"{"kind": "Notifier", "metadata": {"namespace": "default", "name": "broken"}, "spec": {"webhook": {"url": "ftp://x"}}}"#,
    )
    .await;
    put(
        &resource_key("AlarmRule", "default", "good"),
        r#"{"kind": "AlarmRule", "metadata": {"namespace": "default", "name": "good"}, "spec": {"metric": "queue", "above": 10, "notify": ["broken"]}}"#,
    )
    .await;
    sluice_alarm::judge::follow_resources(Arc::clone(&bench.store), Arc::clone(&bench.resources));
    for _ in 0..100 {
        if bench.resources.read().rules.len() == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let names: Vec<String> = bench
        .resources
        .read()
        .rules
        .keys()
        .map(|k| k.name.clone())
        .collect();
    assert_eq!(names, ["good"]);
    assert!(bench.resources.read().notifiers.is_empty());
    bench.gauge("queue", T0, 50.0);
    bench.at(T0 + 10).await;
    assert_eq!(
        bench.states().await,
        vec![("good".into(), AlarmState::Firing, 1)]
    );
    // The notifier it names is invalid: nothing is queued, and the judge goes on.
    assert!(bench.notifications().await.is_empty());
    bench.at(T0 + 20).await;
}

#[tokio::test]
async fn two_nodes_on_one_store_notify_an_alarm_once() {
    // Node A records the series; node B, judging the same rules over its own
    // (empty) metrics, keeps A's alarm as it is and tells nobody of it.
    let mut a = Bench::new();
    let mut b = a.another_node();
    a.notifier(
        "hook",
        r#"{"webhook": {"url": "http://127.0.0.1:9/x"}, "group_wait": "30s", "group_interval": "60s", "repeat_interval": "1h"}"#,
    );
    a.rule(
        "high",
        r#"{"metric": "queue", "above": 100, "notify": ["hook"]}"#,
    );
    for i in 0..12 {
        let time = T0 + i * 10;
        a.gauge("queue", time, 150.0);
        a.at(time + 10).await;
        b.at(time + 10).await;
    }
    assert_eq!(
        a.states().await,
        vec![("high".into(), AlarmState::Firing, 1)]
    );
    let told = a.notifications().await;
    assert_eq!(
        told,
        vec![(T0 + 40, "hook".into(), vec![AlarmState::Firing])],
        "one firing notification, after the group wait"
    );
}
