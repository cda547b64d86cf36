//! The alarm side of a control-plane node: the resources it follows, the judge
//! that evaluates rules every step, and the sender that delivers notifications.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use sluice_alarm::notify::DeliveryStats;
use sluice_metrics::Db;
use sluice_store::Store;

use super::metrics::Counter;

/// The running judge and sender.
pub(super) struct Alarms {
    delivery: Arc<DeliveryStats>,
    judge: tokio::task::JoinHandle<()>,
    sender: tokio::task::JoinHandle<()>,
}

impl Alarms {
    /// Follows the alarm resources and starts the judge and the sender, until `stop`.
    pub(super) fn start(
        store: &Arc<dyn Store>,
        db: &Arc<Db>,
        stop: &tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        let resources = Arc::new(parking_lot::RwLock::new(
            sluice_alarm::judge::Resources::default(),
        ));
        sluice_alarm::judge::follow_resources(Arc::clone(store), Arc::clone(&resources));
        let judge = tokio::spawn(sluice_alarm::judge::run(
            Arc::clone(store),
            Arc::clone(db),
            resources,
            stop.clone(),
        ));
        let delivery = Arc::new(DeliveryStats::default());
        let sender = tokio::spawn(sluice_alarm::notify::run_sender(
            Arc::clone(store),
            Arc::clone(&delivery),
            stop.clone(),
        ));
        Alarms {
            delivery,
            judge,
            sender,
        }
    }

    /// The delivery counters, for the exposition.
    pub(super) fn counters(&self) -> Vec<Counter> {
        let counter = |read: fn(&DeliveryStats) -> u64| {
            let delivery = Arc::clone(&self.delivery);
            Box::new(move || read(&delivery)) as sluice_metrics::prometheus::CounterValue
        };
        vec![
            (
                "sluice_notifications_delivered",
                "Alarm notifications delivered.",
                counter(|d| d.delivered.load(Ordering::Relaxed)),
            ),
            (
                "sluice_notifications_failed_attempts",
                "Alarm notification deliveries that failed (and are retried).",
                counter(|d| d.failed_attempts.load(Ordering::Relaxed)),
            ),
            (
                "sluice_notifications_given_up",
                "Alarm notifications given up after a day of failures.",
                counter(|d| d.given_up.load(Ordering::Relaxed)),
            ),
        ]
    }

    /// Waits (at most `grace` each) for the judge and the sender to stop.
    pub(super) async fn stop(self, grace: Duration) {
        for task in [self.judge, self.sender] {
            let _ = tokio::time::timeout(grace, task).await;
        }
    }
}
