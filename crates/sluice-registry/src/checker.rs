//! Active health checks of persistent instances.
//!
//! One control-plane node at a time runs them: the node that holds the store key
//! [`CHECKER_LOCK`] on a lease. If that node dies, its lease
//! ends and another node takes over within about ten seconds. The checker keeps
//! consecutive pass/fail counts in memory and writes a health record only when an
//! instance crosses its `healthy_threshold` or `unhealthy_threshold`, so the store
//! sees state changes, not every probe.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use sluice_model::{CheckKind, HealthCheck};
use sluice_store::{Compare, StoreError, Txn, TxnOp};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::keys::{instance_key, Part, CHECKER_LOCK};
use crate::{now_ms, HealthRecord, Inner, Registry};

/// TTL of the checker lock.
const LOCK_TTL: Duration = Duration::from_secs(10);
/// How often the lock is renewed.
const LOCK_RENEW: Duration = Duration::from_secs(3);
/// How often due checks are looked for.
const TICK: Duration = Duration::from_millis(100);
/// Most checks in flight at once.
const MAX_IN_FLIGHT: usize = 256;

/// Runs for the registry's lifetime: takes the checker lock when it is free and
/// checks while holding it.
pub(crate) async fn run(registry: Weak<Inner>) {
    let node = format!("{}-{}", std::process::id(), fastrand::u64(..));
    loop {
        let Some(inner) = registry.upgrade() else {
            return;
        };
        match acquire(&inner, &node).await {
            Ok(Some(lease)) => {
                drop(inner);
                tracing::info!(node, "this node runs the active health checks");
                lead(&registry, lease).await;
            }
            Ok(None) => {}
            Err(error) => tracing::debug!(%error, "cannot take the checker lock"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn acquire(inner: &Inner, node: &str) -> Result<Option<sluice_store::LeaseId>, StoreError> {
    let store = &inner.store;
    if store.get(CHECKER_LOCK).await?.is_some() {
        return Ok(None);
    }
    let lease = store.grant_lease(LOCK_TTL).await?;
    let txn = Txn::new()
        .when(Compare::Absent(CHECKER_LOCK.to_owned()))
        .then(TxnOp::Put {
            key: CHECKER_LOCK.to_owned(),
            value: node.as_bytes().to_vec(),
            lease: Some(lease),
        });
    if store.txn(txn).await?.succeeded {
        Ok(Some(lease))
    } else {
        let _ = store.revoke_lease(lease).await;
        Ok(None)
    }
}

#[derive(Default)]
struct Counts {
    passes: u32,
    failures: u32,
    next_due: Option<Instant>,
}

type InstanceKey = (String, String, String);

async fn lead(registry: &Weak<Inner>, lease: sluice_store::LeaseId) {
    let client = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "cannot build the HTTP client for health checks");
            return;
        }
    };
    let mut counts: HashMap<InstanceKey, Counts> = HashMap::new();
    let mut in_flight: HashSet<InstanceKey> = HashSet::new();
    let (results, mut outcomes) = mpsc::channel::<(InstanceKey, Result<(), String>)>(MAX_IN_FLIGHT);
    let mut tick = tokio::time::interval(TICK);
    let mut renew_at = Instant::now() + LOCK_RENEW;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let Some(inner) = registry.upgrade() else { return };
                if Instant::now() >= renew_at {
                    if let Err(error) = inner.store.keep_alive(lease).await {
                        tracing::warn!(%error, "lost the checker lock");
                        return;
                    }
                    renew_at = Instant::now() + LOCK_RENEW;
                }
                let now = Instant::now();
                let instances = inner.checked_instances();
                let live: HashSet<InstanceKey> = instances.iter().map(|(ns, svc, id, ..)| (ns.clone(), svc.clone(), id.clone())).collect();
                counts.retain(|key, _| live.contains(key));
                for (ns, svc, id, spec, health) in instances {
                    let key = (ns, svc, id);
                    let Some(check) = spec.check.clone() else { continue };
                    if in_flight.contains(&key) || in_flight.len() >= MAX_IN_FLIGHT {
                        continue;
                    }
                    if let Some(record) = &health {
                        if !record.passing {
                            if let Some(after) = check.deregister_after {
                                if now_ms().saturating_sub(record.since_ms) >= u64::try_from(after.as_millis()).unwrap_or(u64::MAX) {
                                    tracing::info!(namespace = key.0, service = key.1, id = key.2, "deregistering after being unhealthy for deregister_after");
                                    let _ = Registry::deregister_inner(&inner, &key.0, &key.1, &key.2).await;
                                    continue;
                                }
                            }
                        }
                    }
                    let entry = counts.entry(key.clone()).or_default();
                    // First check at once, later ones every interval.
                    if entry.next_due.is_some_and(|due| due > now) {
                        continue;
                    }
                    entry.next_due = Some(now + check.interval);
                    in_flight.insert(key.clone());
                    let results = results.clone();
                    let client = client.clone();
                    let address = spec.address.clone();
                    tokio::spawn(async move {
                        let outcome = probe(&client, &address, &check).await;
                        let _ = results.send((key, outcome)).await;
                    });
                }
            }
            Some((key, outcome)) = outcomes.recv() => {
                in_flight.remove(&key);
                let Some(inner) = registry.upgrade() else { return };
                record(&inner, &mut counts, key, outcome).await;
            }
        }
    }
}

/// Counts one probe result and writes a health record when a threshold is crossed.
async fn record(
    inner: &Arc<Inner>,
    counts: &mut HashMap<InstanceKey, Counts>,
    key: InstanceKey,
    outcome: Result<(), String>,
) {
    let (ns, svc, id) = &key;
    let current = inner
        .checked_instances()
        .into_iter()
        .find(|(n, s, i, ..)| n == ns && s == svc && i == id);
    let Some((_, _, _, spec, health)) = current else {
        return;
    };
    let Some(check) = spec.check else { return };
    let passing = health.as_ref().is_none_or(|record| record.passing);
    let entry = counts.entry(key.clone()).or_default();
    let change = match &outcome {
        Ok(()) => {
            entry.passes += 1;
            entry.failures = 0;
            (!passing && entry.passes >= check.healthy_threshold)
                .then(|| (true, "check passed".to_owned()))
        }
        Err(reason) => {
            entry.failures += 1;
            entry.passes = 0;
            (passing && entry.failures >= check.unhealthy_threshold)
                .then(|| (false, reason.clone()))
        }
    };
    // Keep the output of a failing check current without rewriting on every probe.
    let Some((passing, output)) = change else {
        return;
    };
    let record = HealthRecord {
        passing,
        output,
        since_ms: now_ms(),
    };
    let Ok(value) = serde_json::to_vec(&record) else {
        return;
    };
    let txn = Txn::new()
        .when(Compare::Exists(instance_key(Part::Instance, ns, svc, id)))
        .then(TxnOp::put(instance_key(Part::Health, ns, svc, id), value));
    if let Err(error) = inner.store.txn(txn).await {
        tracing::warn!(%error, "cannot record a health change");
    }
}

/// Runs one check against `address`.
pub(crate) async fn probe(
    client: &reqwest::Client,
    address: &str,
    check: &HealthCheck,
) -> Result<(), String> {
    match check.kind {
        CheckKind::Tcp => {
            match tokio::time::timeout(check.timeout, tokio::net::TcpStream::connect(address)).await
            {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(error)) => Err(format!("tcp connect to {address} failed: {error}")),
                Err(_) => Err(format!(
                    "tcp connect to {address} timed out after {:?}",
                    check.timeout
                )),
            }
        }
        CheckKind::Http => {
            let path = check.path.as_deref().unwrap_or("/");
            let url = format!("http://{address}{path}");
            match client.get(&url).timeout(check.timeout).send().await {
                Ok(response)
                    if response.status().is_success() || response.status().is_redirection() =>
                {
                    Ok(())
                }
                Ok(response) => Err(format!("GET {url} answered {}", response.status())),
                Err(error) if error.is_timeout() => {
                    Err(format!("GET {url} timed out after {:?}", check.timeout))
                }
                Err(error) => Err(format!("GET {url} failed: {error}")),
            }
        }
    }
}
