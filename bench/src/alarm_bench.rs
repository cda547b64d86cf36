//! The judge's cycle time: N alarm rules (default 10,000), each over its own series
//! (a gauge per rule, a tenth of them above the threshold), evaluated at once.
//!
//! Usage: `alarm-bench [RULES]`. Prints a Markdown table.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use parking_lot::RwLock;
use sluice_alarm::judge::{alarms, evaluate, JudgeState, Resources};
use sluice_metrics::{rrd, Agg, Db, DbConfig, SeriesKey};
use sluice_model::AlarmRuleSpec;
use sluice_store::{LocalStore, LocalStoreOptions, Store};

fn main() {
    let rules: usize = std::env::args()
        .nth(1)
        .map_or(10_000, |a| a.parse().expect("RULES is a number"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(
            Db::open(DbConfig {
                dir: dir.path().to_owned(),
                tiers: rrd::default_tiers(),
                max_series: rules + 10,
            })
            .unwrap(),
        );
        let store: Arc<dyn Store> =
            Arc::new(LocalStore::memory(LocalStoreOptions::default()).unwrap());
        let now = sluice_metrics::unix_now();
        let step_start = now - now % 10 - 10;
        let resources = Arc::new(RwLock::new(Resources::default()));
        for i in 0..rules {
            let host = format!("h{i}");
            let key = SeriesKey::new("queue", [("namespace", "default"), ("host", host.as_str())]);
            let value = if i % 10 == 0 { 500.0 } else { 5.0 };
            db.add(&key, step_start, &Agg::of_values([value], false))
                .unwrap();
            let spec: AlarmRuleSpec = serde_json::from_str(&format!(
                r#"{{"metric": "queue", "match": {{"host": "{host}"}}, "above": 100}}"#
            ))
            .unwrap();
            resources.write().rules.insert(
                sluice_model::ResourceId::new("default", format!("r{i}")),
                spec,
            );
        }
        let mut state = JudgeState::default();
        let mut cycles = Vec::new();
        for round in 0..3 {
            let started = Instant::now();
            evaluate(&store, &db, &resources, &mut state, now + round).await;
            cycles.push(started.elapsed());
        }
        let firing = alarms(&*store, "default").await.unwrap().len();
        assert_eq!(firing, rules / 10);
        println!("| measure | value |");
        println!("|---|---:|");
        println!(
            "| judge cycle, {rules} rules (first: {} alarms fire and are stored) | {:.0} ms |",
            firing,
            cycles[0].as_secs_f64() * 1000.0
        );
        println!(
            "| judge cycle, {rules} rules (steady: alarms unchanged) | {:.0} ms |",
            cycles[2].as_secs_f64() * 1000.0
        );
    });
}
