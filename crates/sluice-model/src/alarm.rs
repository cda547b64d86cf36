//! Alarm resources: `AlarmRule` (a condition over a series, held for a while),
//! `Notifier` (where notifications go, and how often) and `Mute` (label matchers that
//! silence notifications until a time). Each validates itself; errors name the
//! field as `spec.FIELD`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::instance::{duration_text, optional_duration_text, InvalidField};
use crate::validate_name;

/// Whether `name` is a metric or label name of at most `max` bytes: a letter or
/// `_`, then letters, digits and `_` (as Prometheus allows, without `:`).
pub fn valid_metric_name(name: &str, max: usize) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= max
}

fn check_labels(field: &str, labels: &BTreeMap<String, String>) -> Result<(), InvalidField> {
    if labels.len() > 16 {
        return Err(InvalidField::new(field, "at most 16 labels"));
    }
    for (name, value) in labels {
        if !valid_metric_name(name, 64) {
            return Err(InvalidField::new(
                format!("{field}.{name}"),
                format!("{name:?} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)"),
            ));
        }
        if value.len() > 256 {
            return Err(InvalidField::new(
                format!("{field}.{name}"),
                "a label value is at most 256 bytes",
            ));
        }
    }
    Ok(())
}

/// Placeholders a message template may use.
pub const TEMPLATE_FIELDS: [&str; 5] = ["rule", "state", "value", "severity", "threshold"];

/// Checks a message template: `{{rule}}`, `{{state}}`, `{{value}}`, `{{severity}}`,
/// `{{threshold}}` and `{{labels.NAME}}`, balanced.
pub fn validate_template(field: &str, template: &str) -> Result<(), InvalidField> {
    if template.len() > 2048 {
        return Err(InvalidField::new(field, "at most 2048 bytes"));
    }
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| {
            InvalidField::new(
                field,
                format!("an opened {{{{ is never closed at {:?}", &rest[start..]),
            )
        })?;
        let name = after[..end].trim();
        let known = TEMPLATE_FIELDS.contains(&name)
            || name
                .strip_prefix("labels.")
                .is_some_and(|label| valid_metric_name(label, 64));
        if !known {
            return Err(InvalidField::new(
                field,
                format!(
                    "{{{{{name}}}}} is not one of {}, labels.NAME",
                    TEMPLATE_FIELDS.join(", ")
                ),
            ));
        }
        rest = &after[end + 2..];
    }
    if rest.contains("}}") {
        return Err(InvalidField::new(field, "a }} closes nothing"));
    }
    Ok(())
}

/// Which way a change must go to count.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Either way.
    #[default]
    Any,
    /// Up only.
    Up,
    /// Down only.
    Down,
}

/// A change against the same time a while ago (msec's DIFF / DIFF_PERCENT).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeRule {
    /// Fires when the value moved by more than this share (percent of the earlier value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    /// Fires when the value moved by more than this amount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub absolute: Option<f64>,
    /// Which way.
    #[serde(default)]
    pub direction: Direction,
    /// Compared with the value this long ago (default 1d: the same time yesterday).
    #[schemars(with = "crate::schema::DurationText")]
    #[serde(default = "one_day", with = "duration_text")]
    pub compared_to: Duration,
}

fn one_day() -> Duration {
    Duration::from_secs(86_400)
}

/// Alarm severities.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// For the record.
    Info,
    /// Look soon.
    #[default]
    Warning,
    /// Look now.
    Critical,
}

impl Severity {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

fn default_agg() -> String {
    "avg".to_owned()
}

/// The spec of an `AlarmRule`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("anyOf" = [{"required": ["above"], "properties": {"above": {"not": {"type": "null"}}}}, {"required": ["below"], "properties": {"below": {"not": {"type": "null"}}}}, {"required": ["change"], "properties": {"change": {"not": {"type": "null"}}}}, {"required": ["absent"], "properties": {"absent": {"not": {"type": "null"}}}}]))]
pub struct AlarmRuleSpec {
    /// A series: `qps`, `error_rate`, `p50_ms`, `p98_ms`, `p99_ms`, or a stored metric
    /// (business metrics, `host_*`, `requests`, `latency_ms`).
    #[schemars(with = "crate::schema::MetricName")]
    pub metric: String,
    /// Labels the series must have (the namespace is the rule's own).
    #[serde(default, rename = "match")]
    #[schemars(extend("propertyNames" = {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}))]
    pub matching: BTreeMap<String, String>,
    /// One alarm per value of these labels (default: the labels in `match`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<Vec<String>>,
    /// How a stored metric reads (`avg`, `sum`, `count`, `min`, `max`, `rate`, `p50`, `p98`, `p99`).
    #[serde(default = "default_agg")]
    pub agg: String,
    /// Fires above this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<f64>,
    /// Fires below this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below: Option<f64>,
    /// Fires on a change against an earlier time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<ChangeRule>,
    /// Fires when the series has had no data this long.
    #[schemars(with = "Option<crate::schema::DurationText>")]
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "optional_duration_text"
    )]
    pub absent: Option<Duration>,
    /// How long the condition must hold before the alarm fires (default 0s).
    #[schemars(with = "crate::schema::DurationText")]
    #[serde(default, rename = "for", with = "duration_text")]
    pub for_duration: Duration,
    /// The span each evaluation reads (default: one step).
    #[schemars(with = "Option<crate::schema::DurationText>")]
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "optional_duration_text"
    )]
    pub window: Option<Duration>,
    /// `info`, `warning` (default) or `critical`.
    #[serde(default)]
    pub severity: Severity,
    /// Labels added to the alarm (for mutes and routing).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The notification's text, with `{{value}}`, `{{labels.service}}`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Notifiers (in the same namespace) told about it.
    #[serde(default)]
    pub notify: Vec<String>,
    /// Off: not evaluated (a namespace turning a template rule off).
    #[serde(default)]
    pub disabled: bool,
    /// Rules whose alarms are not notified while this one fires for the same group
    /// labels (a firing "service down" silences that service's latency alarms).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inhibits: Vec<String>,
}

/// The error-report templates applied to every namespace with error reports: a new
/// error group, and a spike (events of a group in 5 minutes over 3× the same 5
/// minutes an hour before).
pub fn error_template_rules() -> Vec<(&'static str, AlarmRuleSpec)> {
    let base = AlarmRuleSpec {
        metric: "error_new_groups".to_owned(),
        matching: BTreeMap::new(),
        by: Some(vec!["project".to_owned()]),
        agg: "sum".to_owned(),
        above: Some(0.0),
        below: None,
        change: None,
        absent: None,
        for_duration: Duration::ZERO,
        window: None,
        severity: Severity::Warning,
        labels: BTreeMap::new(),
        message: Some("{{labels.project}}: a new kind of error was reported".to_owned()),
        notify: Vec::new(),
        disabled: false,
        inhibits: Vec::new(),
    };
    let spike = AlarmRuleSpec {
        metric: "error_events".to_owned(),
        by: Some(vec!["project".to_owned(), "group".to_owned()]),
        above: None,
        change: Some(ChangeRule {
            percent: Some(200.0),
            absolute: None,
            direction: Direction::Up,
            compared_to: Duration::from_secs(3600),
        }),
        window: Some(Duration::from_secs(300)),
        message: Some(
            "{{labels.project}}: error group {{labels.group}} spiked to {{value}} in 5 minutes"
                .to_owned(),
        ),
        ..base.clone()
    };
    vec![("default-new-error", base), ("default-error-spike", spike)]
}

/// The rule templates applied to every namespace with gateway traffic, by service;
/// an `AlarmRule` of the same name in a namespace overrides one (`disabled: true`
/// turns it off). They notify the namespace's notifiers marked `defaults: true`.
pub fn template_rules() -> Vec<(&'static str, AlarmRuleSpec)> {
    let template = |metric: &str, above: f64, for_s: u64, message: &str| AlarmRuleSpec {
        metric: metric.to_owned(),
        matching: BTreeMap::new(),
        by: Some(vec!["service".to_owned()]),
        agg: default_agg(),
        above: Some(above),
        below: None,
        change: None,
        absent: None,
        for_duration: Duration::from_secs(for_s),
        window: Some(Duration::from_secs(60)),
        severity: Severity::Warning,
        labels: BTreeMap::new(),
        message: Some(message.to_owned()),
        notify: Vec::new(),
        disabled: false,
        inhibits: Vec::new(),
    };
    vec![
        (
            "default-error-rate",
            template(
                "error_rate",
                0.05,
                120,
                "{{labels.service}}: error rate {{value}} above {{threshold}} for 2 minutes",
            ),
        ),
        (
            "default-p98",
            template(
                "p98_ms",
                1000.0,
                300,
                "{{labels.service}}: p98 latency {{value}} ms above {{threshold}} ms for 5 minutes",
            ),
        ),
    ]
}

impl AlarmRuleSpec {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), InvalidField> {
        if !valid_metric_name(&self.metric, 128) {
            return Err(InvalidField::new(
                "spec.metric",
                format!("{:?} is not a metric name", self.metric),
            ));
        }
        check_labels("spec.match", &self.matching)?;
        check_labels("spec.labels", &self.labels)?;
        if let Some(by) = &self.by {
            if let Some(bad) = by.iter().find(|l| !valid_metric_name(l, 64)) {
                return Err(InvalidField::new(
                    "spec.by",
                    format!("{bad:?} is not a label name"),
                ));
            }
        }
        const AGGS: [&str; 9] = [
            "avg", "sum", "count", "min", "max", "rate", "p50", "p98", "p99",
        ];
        if !AGGS.contains(&self.agg.as_str()) {
            return Err(InvalidField::new(
                "spec.agg",
                format!("{:?} is not one of {}", self.agg, AGGS.join(", ")),
            ));
        }
        for (field, value) in [("spec.above", self.above), ("spec.below", self.below)] {
            if value.is_some_and(|v| !v.is_finite()) {
                return Err(InvalidField::new(field, "must be a finite number"));
            }
        }
        if let Some(change) = &self.change {
            if change.percent.is_none() && change.absolute.is_none() {
                return Err(InvalidField::new(
                    "spec.change",
                    "give percent or absolute (or both)",
                ));
            }
            for (field, value) in [
                ("spec.change.percent", change.percent),
                ("spec.change.absolute", change.absolute),
            ] {
                if value.is_some_and(|v| !v.is_finite() || v < 0.0) {
                    return Err(InvalidField::new(
                        field,
                        "must be a finite number, not negative",
                    ));
                }
            }
            if change.compared_to < Duration::from_secs(60)
                || change.compared_to > Duration::from_secs(90 * 86_400)
            {
                return Err(InvalidField::new(
                    "spec.change.compared_to",
                    "must be within 1m..=90d",
                ));
            }
        }
        if self.above.is_none()
            && self.below.is_none()
            && self.change.is_none()
            && self.absent.is_none()
        {
            return Err(InvalidField::new(
                "spec.above",
                "give a condition: above, below, change or absent",
            ));
        }
        if self.for_duration > Duration::from_secs(7 * 86_400) {
            return Err(InvalidField::new("spec.for", "at most 7d"));
        }
        if let Some(window) = self.window {
            if window < Duration::from_secs(1) || window > Duration::from_secs(7 * 86_400) {
                return Err(InvalidField::new("spec.window", "must be within 1s..=7d"));
            }
        }
        if let Some(absent) = self.absent {
            if absent < Duration::from_secs(1) || absent > Duration::from_secs(7 * 86_400) {
                return Err(InvalidField::new("spec.absent", "must be within 1s..=7d"));
            }
        }
        if let Some(message) = &self.message {
            validate_template("spec.message", message)?;
        }
        for (i, notifier) in self.notify.iter().enumerate() {
            validate_name("notifier", notifier)
                .map_err(|e| InvalidField::new(format!("spec.notify[{i}]"), e.to_string()))?;
        }
        for (i, rule) in self.inhibits.iter().enumerate() {
            validate_name("rule", rule)
                .map_err(|e| InvalidField::new(format!("spec.inhibits[{i}]"), e.to_string()))?;
        }
        Ok(())
    }
}

/// Text formats of a webhook.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// Sluice's JSON (rule, state, labels, value, ... per alarm).
    #[default]
    Json,
    /// Slack incoming webhook: `{"text": ...}`.
    Slack,
    /// Feishu / Lark bot: `{"msg_type": "text", "content": {"text": ...}}`.
    Feishu,
    /// DingTalk robot: `{"msgtype": "text", "text": {"content": ...}}`.
    Dingtalk,
    /// WeCom (WeChat Work) robot: `{"msgtype": "text", "text": {"content": ...}}`.
    Wecom,
}

/// A webhook notifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookSpec {
    /// `http://` or `https://` URL.
    #[schemars(regex(pattern = r"^https?://[^\s/?#]+([/?#]\S*)?$"))]
    pub url: String,
    /// The body's format.
    #[serde(default)]
    pub format: WebhookFormat,
    /// Extra headers (such as an authorization).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// How an e-mail notifier talks to its SMTP server.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SmtpSecurity {
    /// STARTTLS after connecting (port 587; the default).
    #[default]
    Starttls,
    /// TLS from the start (port 465).
    Tls,
    /// No encryption: for a relay on the same host or network only.
    Plain,
}

/// An e-mail notifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailSpec {
    /// The SMTP server, `host:port`.
    #[schemars(with = "crate::schema::AddressText")]
    pub smtp: String,
    /// How to secure the connection.
    #[serde(default)]
    pub security: SmtpSecurity,
    /// The sender address.
    pub from: String,
    /// The recipients.
    pub to: Vec<String>,
    /// SMTP user name, when the server wants one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// SMTP password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Extra root certificates (PEM) trusted for the server's certificate, beside the
    /// public ones: for a relay whose certificate an internal CA signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
}

/// Checks that `pem` holds one or more PEM certificates (`BEGIN CERTIFICATE` blocks
/// with a base64 body), at most 64 KiB of them.
fn check_certificates_pem(field: &str, pem: &str) -> Result<(), InvalidField> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let invalid = |why: &str| Err(InvalidField::new(field, why.to_owned()));
    if pem.len() > 64 * 1024 {
        return invalid("is longer than 64 KiB");
    }
    let mut rest = pem.trim();
    if rest.is_empty() {
        return invalid(
            "holds no certificate: give PEM text starting with -----BEGIN CERTIFICATE-----",
        );
    }
    while !rest.is_empty() {
        let Some(body) = rest.strip_prefix(BEGIN) else {
            return invalid("is not PEM: each certificate starts with -----BEGIN CERTIFICATE-----");
        };
        let Some((body, after)) = body.split_once(END) else {
            return invalid("has a certificate without -----END CERTIFICATE-----");
        };
        let base64: Vec<u8> = body.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        let alphabet = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=');
        if base64.is_empty() || !base64.len().is_multiple_of(4) || !base64.iter().all(alphabet) {
            return invalid("has a certificate whose body is not base64");
        }
        rest = after.trim_start();
    }
    Ok(())
}

fn check_address(field: &str, address: &str) -> Result<(), InvalidField> {
    let ok = address.len() <= 254
        && address.split_once('@').is_some_and(|(user, host)| {
            !user.is_empty() && host.contains('.') || host == "localhost"
        })
        && !address
            .chars()
            .any(|c| c.is_whitespace() || c == '<' || c == '>');
    if ok {
        Ok(())
    } else {
        Err(InvalidField::new(
            field,
            format!("{address:?} is not an e-mail address"),
        ))
    }
}

impl EmailSpec {
    fn validate(&self) -> Result<(), InvalidField> {
        let (host, port) = self.smtp.rsplit_once(':').ok_or_else(|| {
            InvalidField::new(
                "spec.email.smtp",
                format!("{:?} is not host:port", self.smtp),
            )
        })?;
        if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(InvalidField::new(
                "spec.email.smtp",
                format!("{:?} is not host:port", self.smtp),
            ));
        }
        check_address("spec.email.from", &self.from)?;
        if self.to.is_empty() || self.to.len() > 100 {
            return Err(InvalidField::new(
                "spec.email.to",
                "give 1 to 100 recipients",
            ));
        }
        for (i, to) in self.to.iter().enumerate() {
            check_address(&format!("spec.email.to[{i}]"), to)?;
        }
        if self.username.is_some() != self.password.is_some() {
            return Err(InvalidField::new(
                "spec.email.username",
                "give both username and password, or neither",
            ));
        }
        if let Some(ca) = &self.ca {
            if self.security == SmtpSecurity::Plain {
                return Err(InvalidField::new(
                    "spec.email.ca",
                    "is for security \"starttls\" or \"tls\"; a plain connection checks no certificate",
                ));
            }
            check_certificates_pem("spec.email.ca", ca)?;
        }
        Ok(())
    }
}

/// Forwarding to Alertmanager's v2 API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerSpec {
    /// Alertmanager's base URL (`http://host:9093`).
    #[schemars(regex(pattern = r"^https?://[^\s/?#]+([/?#]\S*)?$"))]
    pub url: String,
}

fn default_group_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_repeat_interval() -> Duration {
    Duration::from_secs(4 * 3600)
}

/// The spec of a `Notifier`: one way of delivery, and how notifications to it are
/// grouped and throttled (Alertmanager's semantics, per rule).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [{"required": ["webhook"], "properties": {"webhook": {"not": {"type": "null"}}}}, {"required": ["alertmanager"], "properties": {"alertmanager": {"not": {"type": "null"}}}}, {"required": ["email"], "properties": {"email": {"not": {"type": "null"}}}}]))]
pub struct NotifierSpec {
    /// A webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookSpec>,
    /// Alertmanager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alertmanager: Option<AlertmanagerSpec>,
    /// E-mail over SMTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailSpec>,
    /// How long a new group waits for more alarms before its first notification (default 0s).
    #[schemars(with = "crate::schema::DurationText")]
    #[serde(default, with = "duration_text")]
    pub group_wait: Duration,
    /// Least time between notifications of one group (default 1m).
    #[schemars(with = "crate::schema::DurationText")]
    #[serde(default = "default_group_interval", with = "duration_text")]
    pub group_interval: Duration,
    /// A still-firing alarm is notified again after this long (default 4h).
    #[schemars(with = "crate::schema::DurationText")]
    #[serde(default = "default_repeat_interval", with = "duration_text")]
    pub repeat_interval: Duration,
    /// Receives the notifications of the built-in template rules.
    #[serde(default)]
    pub defaults: bool,
}

fn check_url(field: &str, url: &str) -> Result<(), InvalidField> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| {
            InvalidField::new(
                field,
                format!("{url:?} must start with http:// or https://"),
            )
        })?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || url.len() > 2048 || url.chars().any(char::is_whitespace) {
        return Err(InvalidField::new(
            field,
            format!("{url:?} is not a URL with a host"),
        ));
    }
    Ok(())
}

impl NotifierSpec {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), InvalidField> {
        match (&self.webhook, &self.alertmanager, &self.email) {
            (None, None, Some(email)) => email.validate()?,
            (Some(webhook), None, None) => {
                check_url("spec.webhook.url", &webhook.url)?;
                for name in webhook.headers.keys() {
                    let ok = !name.is_empty()
                        && name
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                    if !ok {
                        return Err(InvalidField::new(
                            "spec.webhook.headers",
                            format!("{name:?} is not a header name"),
                        ));
                    }
                }
            }
            (None, Some(alertmanager), None) => {
                check_url("spec.alertmanager.url", &alertmanager.url)?
            }
            _ => {
                return Err(InvalidField::new(
                    "spec.webhook",
                    "give exactly one of webhook, alertmanager and email",
                ))
            }
        }
        if self.group_wait > Duration::from_secs(3600) {
            return Err(InvalidField::new("spec.group_wait", "at most 1h"));
        }
        if self.group_interval < Duration::from_secs(1)
            || self.group_interval > Duration::from_secs(86_400)
        {
            return Err(InvalidField::new(
                "spec.group_interval",
                "must be within 1s..=1d",
            ));
        }
        if self.repeat_interval < Duration::from_secs(1)
            || self.repeat_interval > Duration::from_secs(30 * 86_400)
        {
            return Err(InvalidField::new(
                "spec.repeat_interval",
                "must be within 1s..=30d",
            ));
        }
        Ok(())
    }
}

/// The spec of a `Mute`: alarms whose labels (and `rule`) match every matcher are not
/// notified between `starts_at` and `ends_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MuteSpec {
    /// Label matchers: exact values (`rule` matches the rule's name).
    #[serde(rename = "match")]
    #[schemars(extend("minProperties" = 1, "propertyNames" = {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}))]
    pub matching: BTreeMap<String, String>,
    /// When it starts (RFC 3339; default: at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<String>,
    /// When it ends (RFC 3339).
    #[schemars(extend("format" = "date-time"))]
    pub ends_at: String,
    /// Who muted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl MuteSpec {
    /// Checks every field; returns (starts, ends) as Unix milliseconds.
    pub fn validate(&self) -> Result<(Option<i64>, i64), InvalidField> {
        if self.matching.is_empty() {
            return Err(InvalidField::new(
                "spec.match",
                "give at least one matcher (a mute of everything is a mistake)",
            ));
        }
        check_labels("spec.match", &self.matching)?;
        let ends =
            crate::parse_time(&self.ends_at).map_err(|e| InvalidField::new("spec.ends_at", e))?;
        let starts = self
            .starts_at
            .as_deref()
            .map(|t| crate::parse_time(t).map_err(|e| InvalidField::new("spec.starts_at", e)))
            .transpose()?;
        if starts.is_some_and(|s| s >= ends) {
            return Err(InvalidField::new("spec.ends_at", "must be after starts_at"));
        }
        for (field, text) in [
            ("spec.created_by", &self.created_by),
            ("spec.reason", &self.reason),
        ] {
            if text.as_ref().is_some_and(|t| t.len() > 1024) {
                return Err(InvalidField::new(field, "at most 1024 bytes"));
            }
        }
        Ok((starts, ends))
    }
}

/// The spec of an `ErrorProject`: where an application's Sentry SDK reports. Its
/// DSN is `http://KEY@SLUICE_ADMIN/ID`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorProjectSpec {
    /// The numeric project ID in the DSN (unique across namespaces).
    #[schemars(range(min = 1, max = 1_000_000_000))]
    pub id: u64,
    /// The DSN's public key: 16 to 64 letters and digits.
    #[schemars(regex(pattern = r"^[A-Za-z0-9]{16,64}$"))]
    pub key: String,
}

impl ErrorProjectSpec {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), InvalidField> {
        if self.id == 0 || self.id > 1_000_000_000 {
            return Err(InvalidField::new(
                "spec.id",
                "must be within 1..=1000000000",
            ));
        }
        if !(16..=64).contains(&self.key.len())
            || !self.key.chars().all(|c| c.is_ascii_alphanumeric())
        {
            return Err(InvalidField::new(
                "spec.key",
                "16 to 64 letters and digits (such as a random hex string)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(json: &str) -> Result<(), String> {
        let spec: AlarmRuleSpec = serde_json::from_str(json).map_err(|e| e.to_string())?;
        spec.validate().map_err(|e| e.to_string())
    }

    #[test]
    fn certificate_pem_is_checked_for_shape() {
        let block = "-----BEGIN CERTIFICATE-----\nMIIB\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(check_certificates_pem("ca", block).is_ok());
        assert!(check_certificates_pem("ca", &format!("{block}\n{block}")).is_ok());
        for bad in [
            "",
            "MIIB",
            "-----BEGIN CERTIFICATE-----\nMIIB\n",
            "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----",
            "-----BEGIN CERTIFICATE-----\nMI*B\n-----END CERTIFICATE-----",
            "-----BEGIN CERTIFICATE-----\nMIB\n-----END CERTIFICATE-----",
            &format!("{block}trailing"),
        ] {
            let error = check_certificates_pem("spec.email.ca", bad).unwrap_err();
            assert_eq!(error.field, "spec.email.ca", "{bad:?}");
        }
    }

    #[test]
    fn the_contract_rule_is_valid_and_bad_ones_name_the_field() {
        rule(r#"{"metric": "error_rate", "match": {"service": "echo"}, "above": 0.5, "for": "0s", "notify": ["hook"]}"#).unwrap();
        for (json, field) in [
            (r#"{"metric": "error-rate", "above": 1}"#, "spec.metric"),
            (r#"{"metric": "qps"}"#, "spec.above"),
            (
                r#"{"metric": "qps", "below": 1, "agg": "median"}"#,
                "spec.agg",
            ),
            (r#"{"metric": "qps", "change": {}}"#, "spec.change"),
            (
                r#"{"metric": "qps", "change": {"percent": -5}}"#,
                "spec.change.percent",
            ),
            (
                r#"{"metric": "qps", "above": 1, "message": "{{bogus}}"}"#,
                "spec.message",
            ),
            (
                r#"{"metric": "qps", "above": 1, "message": "{{value"}"#,
                "spec.message",
            ),
            (
                r#"{"metric": "qps", "above": 1, "notify": ["Bad Name"]}"#,
                "spec.notify[0]",
            ),
            (
                r#"{"metric": "qps", "above": 1, "match": {"a-b": "x"}}"#,
                "spec.match.a-b",
            ),
            (r#"{"metric": "qps", "absent": "0s"}"#, "spec.absent"),
        ] {
            let error = rule(json).unwrap_err();
            assert!(error.starts_with(field), "{json}: {error}");
        }
        validate_template(
            "m",
            "{{rule}} on {{labels.service}} is {{state}}: {{value}}",
        )
        .unwrap();
    }

    #[test]
    fn notifiers_and_mutes_are_checked() {
        let notifier = |json: &str| {
            serde_json::from_str::<NotifierSpec>(json)
                .map_err(|e| e.to_string())
                .and_then(|n| n.validate().map_err(|e| e.to_string()))
        };
        notifier(r#"{"webhook": {"url": "http://127.0.0.1:9/x"}}"#).unwrap();
        notifier(r#"{"webhook": {"url": "https://hooks.slack.com/x", "format": "slack"}}"#)
            .unwrap();
        assert!(notifier(r#"{"webhook": {"url": "ftp://x"}}"#)
            .unwrap_err()
            .contains("spec.webhook.url"));
        assert!(notifier(r#"{"webhook": {"url": "http://"}}"#)
            .unwrap_err()
            .contains("spec.webhook.url"));
        assert!(notifier(r#"{}"#).unwrap_err().contains("spec.webhook"));
        assert!(
            notifier(r#"{"webhook": {"url": "http://a"}, "group_interval": "0s"}"#)
                .unwrap_err()
                .contains("spec.group_interval")
        );
        let mute: MuteSpec = serde_json::from_str(
            r#"{"match": {"service": "echo"}, "ends_at": "2026-11-22T10:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(mute.validate().unwrap().1, 1_795_341_600_000);
        let empty: MuteSpec =
            serde_json::from_str(r#"{"match": {}, "ends_at": "2026-11-22T10:00:00Z"}"#).unwrap();
        assert!(empty
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("spec.match"));
    }
}
