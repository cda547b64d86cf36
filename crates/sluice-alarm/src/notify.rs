//! Notifications: kept in the store until delivered, delivered with retries and
//! backoff, in the body each target wants — Sluice's JSON, the text messages Slack,
//! Feishu, DingTalk and WeCom bots take, or Alertmanager's v2 alerts.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sluice_model::{format_time, WebhookFormat};
use sluice_store::{list_all, Revision, Store};

use crate::{Alarm, AlarmState, NOTIFY_PREFIX};

/// Where a notification goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// A webhook.
    Webhook {
        /// URL.
        url: String,
        /// Body format.
        format: WebhookFormat,
        /// Extra headers.
        headers: BTreeMap<String, String>,
    },
    /// Alertmanager's v2 API at this base URL.
    Alertmanager {
        /// Base URL.
        url: String,
    },
    /// E-mail over SMTP.
    Email(sluice_model::EmailSpec),
}

/// A notification waiting for delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// The namespace.
    pub namespace: String,
    /// The notifier's name.
    pub notifier: String,
    /// The rule.
    pub rule: String,
    /// When it was made (Unix seconds).
    pub created_at: u64,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// When the next attempt is due.
    pub next_attempt: u64,
    /// What the last attempt met.
    pub last_error: Option<String>,
    /// Where it goes.
    pub target: Target,
    /// The alarms it tells about, as they were.
    pub alarms: Vec<Alarm>,
}

/// How long an undelivered notification is tried before it is given up.
pub const GIVE_UP_AFTER_S: u64 = 24 * 3600;

fn unique() -> u64 {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    SEQUENCE.fetch_add(1, Ordering::Relaxed)
}

impl Notification {
    /// Its key in the store.
    pub fn key(&self) -> String {
        format!(
            "{NOTIFY_PREFIX}{}/{:020}-{:08}-{:016x}",
            self.namespace,
            self.created_at,
            unique(),
            fastrand::u64(..)
        )
    }

    /// The overall state: firing when any alarm fires.
    pub fn state(&self) -> AlarmState {
        if self.alarms.iter().any(|a| a.state == AlarmState::Firing) {
            AlarmState::Firing
        } else {
            AlarmState::Resolved
        }
    }

    /// The text of a bot message.
    pub fn text(&self) -> String {
        self.alarms
            .iter()
            .map(|a| format!("[{}] {}", a.state.as_str().to_uppercase(), a.message))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The subject of an e-mail.
    pub fn subject(&self) -> String {
        format!(
            "[{}] {} ({} alarm{}, {})",
            self.state().as_str().to_uppercase(),
            self.rule,
            self.alarms.len(),
            if self.alarms.len() == 1 { "" } else { "s" },
            self.namespace
        )
    }

    /// The URL, extra headers and body of a delivery (e-mail: the SMTP server and the text).
    pub fn request(&self) -> (String, BTreeMap<String, String>, Value) {
        match &self.target {
            Target::Email(email) => (email.smtp.clone(), BTreeMap::new(), json!(self.text())),
            Target::Webhook {
                url,
                format,
                headers,
            } => {
                let body = match format {
                    WebhookFormat::Json => self.json(),
                    WebhookFormat::Slack => json!({ "text": self.text() }),
                    WebhookFormat::Feishu => {
                        json!({ "msg_type": "text", "content": { "text": self.text() } })
                    }
                    WebhookFormat::Dingtalk | WebhookFormat::Wecom => {
                        json!({ "msgtype": "text", "text": { "content": self.text() } })
                    }
                };
                (url.clone(), headers.clone(), body)
            }
            Target::Alertmanager { url } => (
                format!("{}/api/v2/alerts", url.trim_end_matches('/')),
                BTreeMap::new(),
                self.alertmanager(),
            ),
        }
    }

    fn json(&self) -> Value {
        let first = self.alarms.first();
        json!({
            "namespace": self.namespace,
            "notifier": self.notifier,
            "rule": self.rule,
            "state": self.state().as_str(),
            "service": first.and_then(|a| a.labels.get("service")),
            "severity": first.and_then(|a| a.labels.get("severity")),
            "text": self.text(),
            "alarms": self.alarms.iter().map(|a| json!({
                "id": a.id,
                "rule": a.rule,
                "state": a.state.as_str(),
                "labels": a.labels,
                "value": a.value,
                "threshold": a.threshold,
                "message": a.message,
                "count": a.count,
                "first_seen": format_time(i64::try_from(a.first_seen).unwrap_or(0) * 1000),
                "last_seen": format_time(i64::try_from(a.last_seen).unwrap_or(0) * 1000),
            })).collect::<Vec<_>>(),
        })
    }

    fn alertmanager(&self) -> Value {
        let alerts: Vec<Value> = self
            .alarms
            .iter()
            .map(|a| {
                let mut labels = a.labels.clone();
                labels.insert("alertname".into(), a.rule.clone());
                labels.insert("namespace".into(), a.namespace.clone());
                let starts = a.fired_at.unwrap_or(a.first_seen);
                let mut alert = json!({
                    "labels": labels,
                    "annotations": {"summary": a.message},
                    "startsAt": format_time(i64::try_from(starts).unwrap_or(0) * 1000),
                    "generatorURL": format!("sluice://alarms/{}/{}", a.namespace, a.id),
                });
                if a.state == AlarmState::Resolved {
                    let ends = a.resolved_at.unwrap_or(a.last_seen);
                    alert["endsAt"] = json!(format_time(i64::try_from(ends).unwrap_or(0) * 1000));
                }
                alert
            })
            .collect();
        Value::Array(alerts)
    }
}

/// Delivery counts, for the metrics exposition.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    /// Delivered.
    pub delivered: AtomicU64,
    /// Attempts that failed.
    pub failed_attempts: AtomicU64,
    /// Given up after a day of failures.
    pub given_up: AtomicU64,
}

/// Stores a notification for delivery.
pub async fn enqueue(store: &dyn Store, notification: &Notification) -> sluice_store::Result<()> {
    let bytes = serde_json::to_vec(notification).unwrap_or_default();
    store
        .put(&notification.key(), bytes, None)
        .await
        .map(|_| ())
}

/// Notifications not yet delivered (of one namespace, or all with `None`).
pub async fn pending(
    store: &dyn Store,
    namespace: Option<&str>,
) -> sluice_store::Result<Vec<(String, Notification)>> {
    let prefix = match namespace {
        Some(ns) => format!("{NOTIFY_PREFIX}{ns}/"),
        None => NOTIFY_PREFIX.to_owned(),
    };
    Ok(listed(store, &prefix)
        .await?
        .into_iter()
        .map(|(key, _, notification)| (key, notification))
        .collect())
}

/// The notifications under `prefix` with their keys and revisions, in key order.
async fn listed(
    store: &dyn Store,
    prefix: &str,
) -> sluice_store::Result<Vec<(String, Revision, Notification)>> {
    let (kvs, _) = list_all(store, prefix).await?;
    Ok(kvs
        .into_iter()
        .filter_map(|kv| {
            let notification = serde_json::from_slice(&kv.value).ok()?;
            Some((kv.key, kv.mod_revision, notification))
        })
        .collect())
}

/// How long a sender holds a notification it is delivering: no other sender
/// (another control-plane node on the same store) takes it meanwhile, and if the
/// holder dies, another one delivers it after this. Longer than a delivery can
/// take (webhooks and SMTP commands time out after 10 s).
pub const CLAIM_S: u64 = 60;

/// Takes the notification at `key` for delivery, if it is still as listed at
/// `revision`: its next attempt moves `CLAIM_S` ahead, so the other senders on
/// the store pass it by. False when another sender changed or delivered it first.
async fn claim(
    store: &dyn Store,
    key: &str,
    revision: Revision,
    notification: &Notification,
    now: u64,
) -> sluice_store::Result<bool> {
    let claimed = Notification {
        next_attempt: now + CLAIM_S,
        ..notification.clone()
    };
    let value = serde_json::to_vec(&claimed).unwrap_or_default();
    store.put_if_unchanged(key, value, revision).await
}

async fn send_email(
    email: &sluice_model::EmailSpec,
    notification: &Notification,
) -> Result<(), String> {
    use lettre::message::header::ContentType;
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let (host, port) = email
        .smtp
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
        .ok_or_else(|| format!("{:?} is not host:port", email.smtp))?;
    // The server's certificate must name `host`; `ca` adds roots to the public ones.
    let tls_parameters = || -> Result<TlsParameters, String> {
        let mut parameters = TlsParameters::builder(host.to_owned());
        if let Some(ca) = &email.ca {
            let roots = Certificate::from_pem(ca.as_bytes()).map_err(|e| format!("ca: {e}"))?;
            parameters = parameters.add_root_certificate(roots);
        }
        parameters.build_rustls().map_err(|e| format!("TLS: {e}"))
    };
    let builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host);
    let builder = match email.security {
        sluice_model::SmtpSecurity::Plain => builder,
        sluice_model::SmtpSecurity::Starttls => builder.tls(Tls::Required(tls_parameters()?)),
        sluice_model::SmtpSecurity::Tls => builder.tls(Tls::Wrapper(tls_parameters()?)),
    };
    let mut builder = builder.port(port).timeout(Some(Duration::from_secs(10)));
    if let (Some(user), Some(password)) = (&email.username, &email.password) {
        builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
    }
    let transport = builder.build();
    let mut message = Message::builder()
        .from(email.from.parse().map_err(|e| format!("from: {e}"))?)
        .subject(notification.subject())
        .header(ContentType::TEXT_PLAIN);
    for to in &email.to {
        message = message.to(to.parse().map_err(|e| format!("to {to}: {e}"))?);
    }
    let message = message
        .body(notification.text())
        .map_err(|e| e.to_string())?;
    transport
        .send(message)
        .await
        .map(|_| ())
        .map_err(|e| format!("SMTP {}: {e}", email.smtp))
}

async fn deliver(http: &reqwest::Client, notification: &Notification) -> Result<(), String> {
    if let Target::Email(email) = &notification.target {
        return send_email(email, notification).await;
    }
    let (url, headers, body) = notification.request();
    let mut request = http.post(&url).json(&body);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = request.send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        let text = response.text().await.unwrap_or_default();
        Err(format!(
            "{url} answered {status}: {}",
            text.chars().take(200).collect::<String>()
        ))
    }
}

/// Delivers due notifications every second until `stop`; retries with backoff
/// (1 s doubling to 5 min), gives up after a day.
pub async fn run_sender(
    store: Arc<dyn Store>,
    stats: Arc<DeliveryStats>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let http = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(http) => http,
        Err(error) => {
            tracing::warn!(%error, "cannot build the notification client");
            return;
        }
    };
    loop {
        let now = sluice_metrics::unix_now();
        match listed(&*store, NOTIFY_PREFIX).await {
            Ok(due) => {
                // A group's notifications go out in the order they were made: one that is
                // waiting for its retry holds back the later ones of its group, so a
                // receiver never hears "resolved" before the "firing" it resolves.
                let mut held: HashSet<(String, String, String)> = HashSet::new();
                for (key, revision, mut notification) in due {
                    let group = (
                        notification.namespace.clone(),
                        notification.notifier.clone(),
                        notification.rule.clone(),
                    );
                    if held.contains(&group) {
                        continue;
                    }
                    if notification.next_attempt > now {
                        held.insert(group);
                        continue;
                    }
                    match claim(&*store, &key, revision, &notification, now).await {
                        Ok(true) => {}
                        Ok(false) => {
                            // Another node's sender has it (or has delivered it).
                            held.insert(group);
                            continue;
                        }
                        Err(error) => {
                            tracing::warn!(%error, key, "cannot claim a notification");
                            held.insert(group);
                            continue;
                        }
                    }
                    match deliver(&http, &notification).await {
                        Ok(()) => {
                            stats.delivered.fetch_add(1, Ordering::Relaxed);
                            if let Err(error) = store.delete(&key).await {
                                tracing::warn!(%error, key, "cannot remove a delivered notification");
                            }
                        }
                        Err(error) => {
                            held.insert(group);
                            stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                            notification.attempts += 1;
                            let backoff = 1u64 << notification.attempts.min(9);
                            notification.next_attempt = now + backoff.min(300);
                            tracing::warn!(
                                notifier = notification.notifier,
                                attempts = notification.attempts,
                                error,
                                "a notification was not delivered; retrying"
                            );
                            notification.last_error = Some(error);
                            let result = if now.saturating_sub(notification.created_at)
                                > GIVE_UP_AFTER_S
                            {
                                stats.given_up.fetch_add(1, Ordering::Relaxed);
                                tracing::error!(
                                    notifier = notification.notifier,
                                    "giving up a notification after a day of failures"
                                );
                                store.delete(&key).await.map(|_| ())
                            } else {
                                let bytes = serde_json::to_vec(&notification).unwrap_or_default();
                                store.put(&key, bytes, None).await.map(|_| ())
                            };
                            if let Err(error) = result {
                                tracing::warn!(%error, key, "cannot update a notification");
                            }
                        }
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "cannot list notifications"),
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notification(format: WebhookFormat) -> Notification {
        Notification {
            namespace: "default".into(),
            notifier: "hook".into(),
            rule: "echo-errors".into(),
            created_at: 1_795_341_600,
            attempts: 0,
            next_attempt: 0,
            last_error: None,
            target: Target::Webhook {
                url: "http://127.0.0.1:9/x".into(),
                format,
                headers: BTreeMap::new(),
            },
            alarms: vec![crate::tests::firing_echo_errors()],
        }
    }

    #[test]
    fn bodies_take_each_targets_format() {
        let (_, _, body) = notification(WebhookFormat::Json).request();
        assert_eq!(body["rule"], "echo-errors");
        assert_eq!(body["service"], "echo");
        assert_eq!(body["state"], "firing");
        assert_eq!(body["alarms"][0]["first_seen"], "2026-11-22T10:00:00.000Z");
        let (_, _, slack) = notification(WebhookFormat::Slack).request();
        assert_eq!(slack["text"], "[FIRING] echo errors at 0.8");
        let (_, _, feishu) = notification(WebhookFormat::Feishu).request();
        assert_eq!(feishu["msg_type"], "text");
        assert_eq!(feishu["content"]["text"], "[FIRING] echo errors at 0.8");
        let (_, _, dingtalk) = notification(WebhookFormat::Dingtalk).request();
        assert_eq!(dingtalk["msgtype"], "text");
        assert_eq!(dingtalk["text"]["content"], "[FIRING] echo errors at 0.8");
        let mut am = notification(WebhookFormat::Json);
        am.target = Target::Alertmanager {
            url: "http://127.0.0.1:9093/".into(),
        };
        let (url, _, alerts) = am.request();
        assert_eq!(url, "http://127.0.0.1:9093/api/v2/alerts");
        assert_eq!(alerts[0]["labels"]["alertname"], "echo-errors");
        assert!(alerts[0].get("endsAt").is_none());
    }
}
