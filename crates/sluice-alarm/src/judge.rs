//! The judge: every step, each enabled `AlarmRule` is read over its window from the
//! metrics store, its groups advance through the state machine, and due
//! notifications are grouped per (notifier, rule), throttled, checked against
//! `Mute`s and stored for delivery.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use sluice_metrics::query::{self, SeriesQuery};
use sluice_metrics::Db;
use sluice_model::{AlarmRuleSpec, MuteSpec, NotifierSpec};
use sluice_store::{follow_kind, list_all, Store};

use crate::notify::{enqueue, Notification, Target};
use crate::rules::{advance, alarm_labels, condition_holds};
use crate::{Alarm, AlarmState};
use sluice_model::keys::ALARMS_PREFIX;

type Id = sluice_model::ResourceId;

/// The alarm resources in force.
#[derive(Debug, Default)]
pub struct Resources {
    /// Rules by (namespace, name).
    pub rules: BTreeMap<Id, AlarmRuleSpec>,
    /// Notifiers by (namespace, name).
    pub notifiers: BTreeMap<Id, NotifierSpec>,
    /// Mutes by (namespace, name), with their (start, end) in Unix ms.
    pub mutes: BTreeMap<Id, (MuteSpec, Option<i64>, i64)>,
}

/// Follows the alarm kinds from the store into `resources`.
pub fn follow_resources(store: Arc<dyn Store>, resources: Arc<RwLock<Resources>>) {
    let r = Arc::clone(&resources);
    tokio::spawn(follow_kind(
        Arc::clone(&store),
        "AlarmRule",
        |spec: AlarmRuleSpec| spec.validate().is_ok().then_some(spec),
        move |apply| apply(&mut r.write().rules),
    ));
    let r = Arc::clone(&resources);
    tokio::spawn(follow_kind(
        Arc::clone(&store),
        "Notifier",
        |spec: NotifierSpec| spec.validate().is_ok().then_some(spec),
        move |apply| apply(&mut r.write().notifiers),
    ));
    let r = resources;
    tokio::spawn(follow_kind(
        store,
        "Mute",
        |spec: MuteSpec| {
            let (starts, ends) = spec.validate().ok()?;
            Some((spec, starts, ends))
        },
        move |apply| apply(&mut r.write().mutes),
    ));
}

/// Whether a mute of `namespace` silences `alarm` at `now_ms`.
pub fn muted(resources: &Resources, alarm: &Alarm, now_ms: i64) -> bool {
    resources.mutes.iter().any(|(id, (spec, starts, ends))| {
        id.namespace == alarm.namespace
            && starts.is_none_or(|s| s <= now_ms)
            && now_ms < *ends
            && spec.matching.iter().all(|(k, v)| {
                if k == "rule" {
                    alarm.rule == *v
                } else {
                    alarm.labels.get(k) == Some(v)
                }
            })
    })
}

/// One group's value at an evaluation.
struct Observation {
    labels: BTreeMap<String, String>,
    value: Option<f64>,
    active: bool,
}

fn last_value(points: &[(u64, Option<f64>)]) -> Option<f64> {
    points.iter().rev().find_map(|(_, v)| *v)
}

/// Reads a rule's groups over its window at `now`.
fn observe(db: &Db, namespace: &str, spec: &AlarmRuleSpec, now: u64) -> Vec<Observation> {
    let step = db.tiers().first().map_or(10, |t| t.step_s).max(1);
    let to = now - now % step;
    let window = spec.window.map_or(step, |w| w.as_secs()).max(step);
    let mut matching = spec.matching.clone();
    if !spec.metric.starts_with("host_") {
        matching.insert("namespace".into(), namespace.to_owned());
    }
    let by: Vec<String> = spec
        .by
        .clone()
        .unwrap_or_else(|| spec.matching.keys().cloned().collect());
    let query = |from: u64, to: u64, step: u64| SeriesQuery {
        metric: spec.metric.clone(),
        matching: matching.clone(),
        by: Some(by.clone()),
        agg: spec.agg.clone(),
        from,
        to,
        step,
    };
    let read = |q: SeriesQuery| -> BTreeMap<BTreeMap<String, String>, Option<f64>> {
        match query::series(db, &q, now) {
            Ok(answer) => answer
                .series
                .into_iter()
                .map(|s| (s.labels, last_value(&s.points)))
                .collect(),
            Err(error) => {
                tracing::warn!(%error, metric = spec.metric, "an alarm rule's query failed");
                BTreeMap::new()
            }
        }
    };
    let current = read(query(to.saturating_sub(window), to, window));
    let earlier = spec.change.as_ref().map(|change| {
        let back = change.compared_to.as_secs();
        let to = to.saturating_sub(back);
        read(query(to.saturating_sub(window), to, window))
    });
    let mut out: Vec<Observation> = current
        .iter()
        .map(|(labels, value)| {
            let before = earlier
                .as_ref()
                .and_then(|e| e.get(labels).copied().flatten());
            Observation {
                labels: labels.clone(),
                value: *value,
                active: condition_holds(spec, *value, before),
            }
        })
        .collect();
    if let Some(absent) = spec.absent {
        let span = absent.as_secs().max(step);
        let recent = read(query(to.saturating_sub(span), to, span));
        let has_data = recent.values().any(Option::is_some);
        let labels: BTreeMap<String, String> = spec
            .matching
            .iter()
            .filter(|(k, _)| by.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        match out.iter_mut().find(|o| o.labels == labels) {
            Some(observation) => observation.active |= !has_data,
            None => out.push(Observation {
                labels,
                value: None,
                active: !has_data,
            }),
        }
    }
    out
}

/// A group of notifications: one (namespace, notifier, rule).
#[derive(Debug, Default)]
struct Group {
    /// Alarms waiting to be told, by ID.
    waiting: BTreeMap<String, Alarm>,
    /// When the first of them started waiting.
    since: Option<u64>,
    /// When the group last sent.
    last_sent: Option<u64>,
}

/// The judge's memory between evaluations (groups; alarms live in the store).
#[derive(Debug, Default)]
pub struct JudgeState {
    groups: HashMap<(String, String, String), Group>,
    /// When this judge first evaluated (Unix seconds): data missing since before
    /// then is missing because Sluice was down, not because anything recovered.
    started: Option<u64>,
}

/// How many steps an alarm keeps its state while its series has no data at all:
/// a gap (a restart, a late push) is not a recovery; a longer silence is.
pub const NO_DATA_GRACE_STEPS: u64 = 5;

/// Whether an alarm whose group has no data this time keeps its state as it is.
fn held_without_data(alarm: &Alarm, started: u64, grace_s: u64, now: u64) -> bool {
    matches!(alarm.state, AlarmState::Firing | AlarmState::Pending)
        && now.saturating_sub(alarm.last_seen.max(started)) < grace_s
}

async fn load_alarms(store: &dyn Store) -> HashMap<String, (String, Alarm)> {
    match list_all(store, ALARMS_PREFIX).await {
        Ok((kvs, _)) => kvs
            .into_iter()
            .filter_map(|kv| {
                let alarm: Alarm = serde_json::from_slice(&kv.value).ok()?;
                Some((alarm.id.clone(), (kv.key, alarm)))
            })
            .collect(),
        Err(error) => {
            tracing::warn!(%error, "cannot list alarms");
            HashMap::new()
        }
    }
}

/// An alarm's key in the store.
pub fn alarm_key(alarm: &Alarm) -> String {
    format!("{ALARMS_PREFIX}{}/{}", alarm.namespace, alarm.id)
}

async fn save(store: &dyn Store, alarm: &Alarm) {
    let key = alarm_key(alarm);
    // An acknowledgement written through the API since the judge read the alarm
    // stays: the write is a compare-and-swap against the alarm as read here.
    for _ in 0..10 {
        let mut alarm = alarm.clone();
        let held = match store.get(&key).await {
            Ok(held) => held,
            Err(error) => {
                tracing::warn!(%error, alarm = alarm.id, "cannot read an alarm");
                return;
            }
        };
        let revision = held.as_ref().map_or(0, |kv| kv.mod_revision);
        if let Some(held) = held.and_then(|kv| serde_json::from_slice::<Alarm>(&kv.value).ok()) {
            if held.acknowledged && held.fired_at == alarm.fired_at {
                alarm.acknowledged = true;
            }
        }
        let value = serde_json::to_vec(&alarm).unwrap_or_default();
        match store.put_if_unchanged(&key, value, revision).await {
            Ok(true) => return,
            Ok(false) => continue,
            Err(error) => {
                tracing::warn!(%error, alarm = alarm.id, "cannot save an alarm");
                return;
            }
        }
    }
    tracing::warn!(
        alarm = alarm.id,
        "an alarm kept changing while it was saved; saved next step"
    );
}

/// The rules to evaluate: every enabled `AlarmRule`, and the templates for each
/// namespace with gateway traffic that does not override them.
fn rules_in_force(db: &Db, resources: &RwLock<Resources>) -> Vec<(Id, AlarmRuleSpec)> {
    let resources = resources.read();
    let mut rules: BTreeMap<Id, AlarmRuleSpec> = resources.rules.clone();
    let namespaces_with = |metric: &str| -> std::collections::BTreeSet<String> {
        db.find(metric, &BTreeMap::new())
            .iter()
            .map(|rrd| rrd.key().label("namespace").to_owned())
            .filter(|ns| !ns.is_empty())
            .collect()
    };
    let templates = [
        (namespaces_with("requests"), sluice_model::template_rules()),
        (
            namespaces_with("error_events"),
            sluice_model::error_template_rules(),
        ),
    ];
    for (namespaces, rules_of_kind) in templates {
        for namespace in namespaces {
            let defaults: Vec<String> = resources
                .notifiers
                .iter()
                .filter(|(id, spec)| id.namespace == namespace && spec.defaults)
                .map(|(id, _)| id.name.clone())
                .collect();
            for (name, spec) in &rules_of_kind {
                let mut spec = spec.clone();
                spec.notify = defaults.clone();
                rules
                    .entry(Id::new(namespace.clone(), *name))
                    .or_insert(spec);
            }
        }
    }
    rules.retain(|_, spec| !spec.disabled);
    rules.into_iter().collect()
}

/// Whether a firing alarm of another rule inhibits `alarm`: its rule lists
/// `alarm`'s rule in `inhibits`, and `alarm` has the same values of its group labels.
fn inhibited(alarm: &Alarm, current: &[Judged]) -> bool {
    current.iter().any(|judged| {
        let (source, spec) = (&judged.alarm, &judged.spec);
        source.state == AlarmState::Firing
            && source.namespace == alarm.namespace
            && spec.inhibits.contains(&alarm.rule)
            && source
                .labels
                .iter()
                .filter(|(k, _)| k.as_str() != "severity" && !spec.labels.contains_key(*k))
                .all(|(k, v)| alarm.labels.get(k) == Some(v))
    })
}

/// An alarm as one evaluation left it.
struct Judged {
    alarm: Alarm,
    /// The state it entered at this evaluation, if it changed.
    event: Option<AlarmState>,
    spec: AlarmRuleSpec,
    /// Kept as it was because this node has no data for it (yet): it still
    /// inhibits, but this node tells nobody about it — the node that has the data
    /// does (with several control-plane nodes on one store, each judges the series
    /// it records), so a receiver hears of an alarm once.
    held: bool,
}

/// One evaluation of every rule at `now` (Unix seconds).
pub async fn evaluate(
    store: &Arc<dyn Store>,
    db: &Arc<Db>,
    resources: &Arc<RwLock<Resources>>,
    state: &mut JudgeState,
    now: u64,
) {
    let rules = rules_in_force(db, resources);
    let started = *state.started.get_or_insert(now);
    let grace_s = db.tiers().first().map_or(10, |t| t.step_s).max(1) * NO_DATA_GRACE_STEPS;
    let mut stored = load_alarms(&**store).await;
    let mut current: Vec<Judged> = Vec::new();
    for (
        Id {
            namespace,
            name: rule,
        },
        spec,
    ) in &rules
    {
        let observations = {
            let (db, namespace, spec) = (Arc::clone(db), namespace.clone(), spec.clone());
            tokio::task::spawn_blocking(move || observe(&db, &namespace, &spec, now))
                .await
                .unwrap_or_default()
        };
        let mut seen = Vec::new();
        for observation in observations {
            let labels = alarm_labels(spec, &observation.labels);
            let id = crate::alarm_id(namespace, rule, &labels);
            seen.push(id.clone());
            let existing = stored.remove(&id).map(|(_, a)| a);
            let had = existing.is_some();
            if let Some(alarm) = existing
                .as_ref()
                .filter(|_| observation.value.is_none() && !observation.active)
                .filter(|a| held_without_data(a, started, grace_s, now))
            {
                current.push(Judged {
                    alarm: alarm.clone(),
                    event: None,
                    spec: spec.clone(),
                    held: true,
                });
                continue;
            }
            let step = advance(
                existing,
                namespace,
                rule,
                spec,
                labels,
                observation.active,
                observation.value,
                now,
            );
            match step.alarm {
                Some(alarm) => {
                    if step.changed {
                        save(&**store, &alarm).await;
                    }
                    current.push(Judged {
                        alarm,
                        event: step.event,
                        spec: spec.clone(),
                        held: false,
                    });
                }
                None if had => {
                    let key = format!("{ALARMS_PREFIX}{namespace}/{id}");
                    let _ = store.delete(&key).await;
                }
                None => {}
            }
        }
        // This rule's alarms whose groups had no data this time: the condition does not hold.
        let others: Vec<String> = stored
            .iter()
            .filter(|(id, (_, a))| {
                a.namespace == *namespace && a.rule == *rule && !seen.contains(id)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in others {
            let Some((key, alarm)) = stored.remove(&id) else {
                continue;
            };
            if held_without_data(&alarm, started, grace_s, now) {
                current.push(Judged {
                    alarm,
                    event: None,
                    spec: spec.clone(),
                    held: true,
                });
                continue;
            }
            let labels = alarm.labels.clone();
            let step = advance(Some(alarm), namespace, rule, spec, labels, false, None, now);
            match step.alarm {
                Some(alarm) => {
                    if step.changed {
                        save(&**store, &alarm).await;
                    }
                    current.push(Judged {
                        alarm,
                        event: step.event,
                        spec: spec.clone(),
                        held: false,
                    });
                }
                None => {
                    let _ = store.delete(&key).await;
                }
            }
        }
    }
    // Alarms of rules that are gone (or disabled) are forgotten.
    for (key, alarm) in stored.into_values() {
        let exists = rules
            .iter()
            .any(|(id, _)| id.namespace == alarm.namespace && id.name == alarm.rule);
        if !exists {
            let _ = store.delete(&key).await;
        }
    }
    notify(store, resources, state, current, now).await;
}

async fn notify(
    store: &Arc<dyn Store>,
    resources: &Arc<RwLock<Resources>>,
    state: &mut JudgeState,
    current: Vec<Judged>,
    now: u64,
) {
    let now_ms = i64::try_from(now).unwrap_or(i64::MAX / 1000) * 1000;
    let mut alarms: HashMap<String, Alarm> = HashMap::new();
    let silenced: std::collections::HashSet<String> = current
        .iter()
        .filter(|judged| inhibited(&judged.alarm, &current))
        .map(|judged| judged.alarm.id.clone())
        .collect();
    {
        let resources = resources.read();
        for Judged {
            alarm,
            event,
            spec,
            held,
        } in current
        {
            if held || silenced.contains(&alarm.id) {
                alarms.insert(alarm.id.clone(), alarm);
                continue;
            }
            for notifier in &spec.notify {
                let Some(settings) = resources
                    .notifiers
                    .get(&Id::new(alarm.namespace.clone(), notifier.clone()))
                else {
                    continue;
                };
                let last = alarm.notified.get(notifier);
                let repeat = alarm.state == AlarmState::Firing
                    && !alarm.acknowledged
                    && last.is_none_or(|(at, _)| {
                        now.saturating_sub(*at) >= settings.repeat_interval.as_secs()
                    });
                // A recovery is told only to notifiers that were told of the firing.
                let recovery = event == Some(AlarmState::Resolved)
                    && last.is_some_and(|(_, told)| *told == AlarmState::Firing);
                let due = event == Some(AlarmState::Firing) || repeat || recovery;
                if !due || muted(&resources, &alarm, now_ms) {
                    continue;
                }
                let group = state
                    .groups
                    .entry((
                        alarm.namespace.clone(),
                        notifier.clone(),
                        alarm.rule.clone(),
                    ))
                    .or_default();
                group.since.get_or_insert(now);
                group.waiting.insert(alarm.id.clone(), alarm.clone());
            }
            alarms.insert(alarm.id.clone(), alarm);
        }
    }
    let mut touched: BTreeMap<String, Alarm> = BTreeMap::new();
    let ready: Vec<((String, String, String), Vec<Alarm>)> = {
        let resources = resources.read();
        let mut ready = Vec::new();
        for (key, group) in &mut state.groups {
            if group.waiting.is_empty() {
                continue;
            }
            let Some(settings) = resources
                .notifiers
                .get(&Id::new(key.0.clone(), key.1.clone()))
            else {
                group.waiting.clear();
                continue;
            };
            let since = group.since.unwrap_or(now);
            let send = match group.last_sent {
                None => now.saturating_sub(since) >= settings.group_wait.as_secs(),
                Some(last) => now.saturating_sub(last) >= settings.group_interval.as_secs(),
            };
            if send {
                let waiting = std::mem::take(&mut group.waiting);
                // Send the latest version of each alarm, unless it was muted meanwhile.
                let batch: Vec<Alarm> = waiting
                    .into_values()
                    .map(|a| alarms.get(&a.id).cloned().unwrap_or(a))
                    .filter(|a| !muted(&resources, a, now_ms))
                    .collect();
                if batch.is_empty() {
                    continue;
                }
                group.last_sent = Some(now);
                group.since = None;
                ready.push((key.clone(), batch));
            }
        }
        ready
    };
    for ((namespace, notifier, rule), batch) in ready {
        let target = {
            let resources = resources.read();
            let Some(settings) = resources
                .notifiers
                .get(&Id::new(namespace.clone(), notifier.clone()))
            else {
                continue;
            };
            match (&settings.webhook, &settings.alertmanager, &settings.email) {
                (Some(webhook), _, _) => Target::Webhook {
                    url: webhook.url.clone(),
                    format: webhook.format,
                    headers: webhook.headers.clone(),
                },
                (None, Some(alertmanager), _) => Target::Alertmanager {
                    url: alertmanager.url.clone(),
                },
                (None, None, Some(email)) => Target::Email(email.clone()),
                (None, None, None) => continue,
            }
        };
        let notification = Notification {
            namespace: namespace.clone(),
            notifier: notifier.clone(),
            rule,
            created_at: now,
            attempts: 0,
            next_attempt: now,
            last_error: None,
            target,
            alarms: batch.clone(),
        };
        if let Err(error) = enqueue(&**store, &notification).await {
            tracing::warn!(%error, notifier, "cannot store a notification");
            continue;
        }
        for alarm in batch {
            let entry = touched
                .entry(alarm.id.clone())
                .or_insert_with(|| alarms.get(&alarm.id).cloned().unwrap_or(alarm.clone()));
            entry.notified.insert(notifier.clone(), (now, alarm.state));
        }
    }
    for alarm in touched.values() {
        save(&**store, alarm).await;
    }
}

/// Runs the judge every step (just after the step's flush) until `stop`.
pub async fn run(
    store: Arc<dyn Store>,
    db: Arc<Db>,
    resources: Arc<RwLock<Resources>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let step = db.tiers().first().map_or(10, |t| t.step_s).max(1);
    let mut state = JudgeState::default();
    loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let next =
            Duration::from_secs((now.as_secs() / step + 1) * step) + Duration::from_millis(300);
        let wait = next.saturating_sub(now);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        evaluate(
            &store,
            &db,
            &resources,
            &mut state,
            sluice_metrics::unix_now(),
        )
        .await;
    }
}

/// Alarms of a namespace (or all), newest last seen first.
pub async fn alarms(store: &dyn Store, namespace: &str) -> sluice_store::Result<Vec<Alarm>> {
    let (kvs, _) = list_all(store, &format!("{ALARMS_PREFIX}{namespace}/")).await?;
    let mut alarms: Vec<Alarm> = kvs
        .into_iter()
        .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
        .collect();
    alarms.sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then_with(|| a.id.cmp(&b.id)));
    Ok(alarms)
}

/// Acknowledges alarm `id` of `namespace`: no repeats while it keeps firing.
/// `Ok(None)` when there is no such alarm.
pub async fn acknowledge(
    store: &dyn Store,
    namespace: &str,
    id: &str,
) -> sluice_store::Result<Option<Alarm>> {
    let key = format!("{ALARMS_PREFIX}{namespace}/{id}");
    // A compare-and-swap, read again when the judge saved the alarm meanwhile: an
    // acknowledgement never writes back an older state of the alarm.
    loop {
        let Some(kv) = store.get(&key).await? else {
            return Ok(None);
        };
        let Ok(mut alarm) = serde_json::from_slice::<Alarm>(&kv.value) else {
            return Ok(None);
        };
        alarm.acknowledged = true;
        let value = serde_json::to_vec(&alarm).unwrap_or_default();
        if store.put_if_unchanged(&key, value, kv.mod_revision).await? {
            return Ok(Some(alarm));
        }
    }
}
