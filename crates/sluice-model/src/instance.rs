//! Service instances: what a registration carries, and its validation.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Highest instance weight.
pub const MAX_WEIGHT: u32 = 1000;
/// Weight when none is given.
pub const DEFAULT_WEIGHT: u32 = 100;
/// Most labels (and, separately, metadata entries) on one instance.
pub const MAX_LABELS: usize = 64;
/// Longest label or metadata key.
pub const MAX_LABEL_KEY: usize = 63;
/// Longest label value.
pub const MAX_LABEL_VALUE: usize = 256;
/// Longest metadata value.
pub const MAX_METADATA_VALUE: usize = 4096;

/// A registration request: `PUT .../instances/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstanceSpec {
    /// `host:port`: an IPv4 address, a bracketed IPv6 address or a DNS name, and a port.
    #[schemars(with = "crate::schema::AddressText")]
    pub address: String,
    /// Kept alive by heartbeats (`true`) or checked by the control plane (`false`, the default).
    #[serde(default)]
    pub ephemeral: bool,
    /// 0 to 1000; 0 takes no traffic. Default 100.
    #[serde(default = "default_weight")]
    #[schemars(range(max = crate::MAX_WEIGHT))]
    pub weight: u32,
    /// Routing labels: version, zone, lane, ...
    #[serde(default)]
    #[schemars(with = "crate::schema::LabelsMap")]
    pub labels: BTreeMap<String, String>,
    /// Free-form metadata.
    #[serde(default)]
    #[schemars(with = "crate::schema::MetadataMap")]
    pub metadata: BTreeMap<String, String>,
    /// Active health check run by the control plane (persistent instances only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<HealthCheck>,
    /// Registered but taking no new traffic.
    #[serde(default)]
    pub draining: bool,
    /// For ephemeral instances: unhealthy after this long without a heartbeat, and
    /// removed after twice as long (default: the server's `unhealthy_after` and `remove_after`).
    #[schemars(with = "Option<crate::schema::DurationText>")]
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "optional_duration_text"
    )]
    pub ttl: Option<Duration>,
}

fn default_weight() -> u32 {
    DEFAULT_WEIGHT
}

/// How the control plane checks a persistent instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// `http` (GET `path`, 2xx and 3xx pass) or `tcp` (a connection opens).
    #[serde(rename = "type")]
    pub kind: CheckKind,
    /// Path for HTTP checks, starting with `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Time between checks (default 10s).
    #[schemars(with = "crate::schema::DurationText")]
    #[serde(default = "default_interval", with = "duration_text")]
    pub interval: Duration,
    /// Time one check may take (default 2s).
    #[schemars(with = "crate::schema::DurationText")]
    #[serde(default = "default_timeout", with = "duration_text")]
    pub timeout: Duration,
    /// Consecutive passes that make an unhealthy instance healthy (default 2).
    #[serde(default = "default_healthy_threshold")]
    pub healthy_threshold: u32,
    /// Consecutive failures that make a healthy instance unhealthy (default 3).
    #[serde(default = "default_unhealthy_threshold")]
    pub unhealthy_threshold: u32,
    /// Remove the instance after it has been unhealthy this long (default: never).
    #[schemars(with = "Option<crate::schema::DurationText>")]
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "optional_duration_text"
    )]
    pub deregister_after: Option<Duration>,
}

/// The kind of an active check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// An HTTP GET.
    Http,
    /// A TCP connect.
    Tcp,
}

fn default_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_healthy_threshold() -> u32 {
    2
}
fn default_unhealthy_threshold() -> u32 {
    3
}

/// Why an instance registration was rejected; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidField {
    /// The field at fault, as a JSON path (`address`, `labels.zone`, `check.interval`).
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl InvalidField {
    /// A new error for `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        InvalidField {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl InstanceSpec {
    /// Checks every field; the error names the first one at fault.
    pub fn validate(&self) -> Result<(), InvalidField> {
        validate_address(&self.address).map_err(|reason| InvalidField::new("address", reason))?;
        validate_weight(self.weight)?;
        validate_labels("labels", &self.labels, MAX_LABEL_VALUE)?;
        validate_labels("metadata", &self.metadata, MAX_METADATA_VALUE)?;
        if let Some(ttl) = self.ttl {
            if !self.ephemeral {
                return Err(InvalidField::new(
                    "ttl",
                    "only ephemeral instances have a heartbeat TTL; set \"ephemeral\": true",
                ));
            }
            if ttl < Duration::from_secs(1) || ttl > Duration::from_secs(3600) {
                return Err(InvalidField::new(
                    "ttl",
                    format!("{} is outside 1s..=1h", duration_text::format(ttl)),
                ));
            }
        }
        if let Some(check) = &self.check {
            if self.ephemeral {
                return Err(InvalidField::new(
                    "check",
                    "ephemeral instances are kept alive by heartbeats; active checks are for persistent instances",
                ));
            }
            check.validate()?;
        }
        Ok(())
    }
}

/// Checks a weight against 0..=[`MAX_WEIGHT`].
pub fn validate_weight(weight: u32) -> Result<(), InvalidField> {
    if weight > MAX_WEIGHT {
        return Err(InvalidField::new(
            "weight",
            format!("{weight} is over the maximum of {MAX_WEIGHT}"),
        ));
    }
    Ok(())
}

/// Checks a label (or metadata) map's size, keys and values.
pub fn validate_labels(
    field: &str,
    labels: &BTreeMap<String, String>,
    max_value: usize,
) -> Result<(), InvalidField> {
    if labels.len() > MAX_LABELS {
        return Err(InvalidField::new(
            field,
            format!("{} entries, over the limit of {MAX_LABELS}", labels.len()),
        ));
    }
    for (key, value) in labels {
        let ok_key = !key.is_empty()
            && key.len() <= MAX_LABEL_KEY
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'));
        if !ok_key {
            return Err(InvalidField::new(
                format!("{field}.{key}"),
                format!("keys are 1 to {MAX_LABEL_KEY} of a-z A-Z 0-9 _ - . /"),
            ));
        }
        if value.len() > max_value {
            return Err(InvalidField::new(
                format!("{field}.{key}"),
                format!(
                    "value is {} bytes, over the limit of {max_value}",
                    value.len()
                ),
            ));
        }
        if value.chars().any(char::is_control) {
            return Err(InvalidField::new(
                format!("{field}.{key}"),
                "value holds a control character",
            ));
        }
    }
    Ok(())
}

impl HealthCheck {
    /// Checks the check's fields.
    pub fn validate(&self) -> Result<(), InvalidField> {
        match (self.kind, &self.path) {
            (CheckKind::Http, None) => {
                return Err(InvalidField::new(
                    "check.path",
                    "an http check needs a path, such as /health",
                ))
            }
            (CheckKind::Http, Some(path))
                if !path.starts_with('/')
                    || path.len() > 1024
                    || path.chars().any(|c| c.is_control() || c == ' ') =>
            {
                return Err(InvalidField::new(
                    "check.path",
                    "must start with / and hold no spaces (at most 1024 bytes)",
                ))
            }
            (CheckKind::Tcp, Some(_)) => {
                return Err(InvalidField::new("check.path", "a tcp check takes no path"))
            }
            _ => {}
        }
        let range = |field: &str, value: Duration, min: Duration, max: Duration| {
            if value < min || value > max {
                Err(InvalidField::new(
                    format!("check.{field}"),
                    format!(
                        "{} is outside {}..={}",
                        duration_text::format(value),
                        duration_text::format(min),
                        duration_text::format(max)
                    ),
                ))
            } else {
                Ok(())
            }
        };
        range(
            "interval",
            self.interval,
            Duration::from_millis(100),
            Duration::from_secs(3600),
        )?;
        range(
            "timeout",
            self.timeout,
            Duration::from_millis(10),
            Duration::from_secs(60),
        )?;
        if self.timeout > self.interval {
            return Err(InvalidField::new(
                "check.timeout",
                "must not be longer than check.interval",
            ));
        }
        for (field, value) in [
            ("healthy_threshold", self.healthy_threshold),
            ("unhealthy_threshold", self.unhealthy_threshold),
        ] {
            if !(1..=100).contains(&value) {
                return Err(InvalidField::new(
                    format!("check.{field}"),
                    format!("{value} is outside 1..=100"),
                ));
            }
        }
        if let Some(after) = self.deregister_after {
            range(
                "deregister_after",
                after,
                Duration::from_secs(1),
                Duration::from_secs(30 * 24 * 3600),
            )?;
        }
        Ok(())
    }
}

/// Checks `host:port`.
pub fn validate_address(address: &str) -> Result<(), crate::ParseError> {
    check_address(address).map_err(|message| crate::ParseError::new(address, message))
}

fn check_address(address: &str) -> Result<(), String> {
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err(format!("{address:?} is not host:port"));
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => {
            return Err(format!(
                "{address:?} has an invalid port {port:?} (1-65535)"
            ))
        }
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6
            .parse::<std::net::Ipv6Addr>()
            .map(drop)
            .map_err(|_| format!("{address:?} has an invalid IPv6 address"));
    }
    if host.parse::<std::net::Ipv4Addr>().is_ok() {
        return Ok(());
    }
    let valid_dns = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
        && !host.chars().all(|c| c.is_ascii_digit() || c == '.');
    if valid_dns {
        Ok(())
    } else {
        Err(format!("{address:?} has an invalid host {host:?}"))
    }
}

/// Durations as text: `500ms`, `10s`, `5m`, `1h`, `2d` (and combinations such as `1m30s`).
pub mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Parses a duration such as `1m30s`.
    pub fn parse(text: &str) -> Result<Duration, crate::ParseError> {
        parse_text(text).map_err(|message| crate::ParseError::new(text, message))
    }

    fn parse_text(text: &str) -> Result<Duration, String> {
        let bad = || format!("{text:?} is not a duration such as 500ms, 10s, 5m, 1h");
        if text.is_empty() {
            return Err(bad());
        }
        let mut total = Duration::ZERO;
        let mut rest = text;
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
            if digits == 0 {
                return Err(bad());
            }
            let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let unit = match &rest[..unit_len] {
                "ms" => Duration::from_millis(1),
                "s" => Duration::from_secs(1),
                "m" => Duration::from_secs(60),
                "h" => Duration::from_secs(3600),
                "d" => Duration::from_secs(86400),
                _ => return Err(bad()),
            };
            rest = &rest[unit_len..];
            let part = unit
                .checked_mul(u32::try_from(number).map_err(|_| bad())?)
                .ok_or_else(bad)?;
            total = total.checked_add(part).ok_or_else(bad)?;
        }
        Ok(total)
    }

    /// Formats a duration the way [`parse`] reads it.
    pub fn format(duration: Duration) -> String {
        let ms = duration.as_millis();
        if !ms.is_multiple_of(1000) {
            format!("{ms}ms")
        } else if !ms.is_multiple_of(60_000) || ms == 0 {
            format!("{}s", ms / 1000)
        } else if !ms.is_multiple_of(3_600_000) {
            format!("{}m", ms / 60_000)
        } else {
            format!("{}h", ms / 3_600_000)
        }
    }

    /// Serde: serialize as text.
    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format(*duration))
    }

    /// Serde: deserialize from text.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse(&text).map_err(serde::de::Error::custom)
    }
}

/// `Option<Duration>` as text (`null` or absent: none).
pub(crate) mod optional_duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(
        duration: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match duration {
            Some(d) => super::duration_text::serialize(d, serializer),
            None => serializer.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        let text = Option::<String>::deserialize(deserializer)?;
        text.map(|t| super::duration_text::parse(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_registration_defaults() {
        let spec: InstanceSpec = serde_json::from_str(r#"{"address": "127.0.0.1:9001"}"#).unwrap();
        assert_eq!(spec.weight, 100);
        assert!(!spec.ephemeral && !spec.draining && spec.check.is_none());
        spec.validate().unwrap();
    }

    #[test]
    fn addresses() {
        for ok in [
            "127.0.0.1:1",
            "[::1]:8080",
            "echo.internal:80",
            "a-b.c:65535",
        ] {
            assert_eq!(validate_address(ok), Ok(()), "{ok}");
        }
        for bad in [
            "127.0.0.1",
            "127.0.0.1:0",
            "127.0.0.1:70000",
            ":80",
            "[zz]:80",
            "a b:80",
            "-a:80",
            "1.2.3:80",
            "host:x",
        ] {
            assert!(validate_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_name_the_field() {
        let spec = |json: &str| {
            serde_json::from_str::<InstanceSpec>(json)
                .unwrap()
                .validate()
                .unwrap_err()
        };
        assert_eq!(spec(r#"{"address":"h:1","weight":1001}"#).field, "weight");
        assert_eq!(
            spec(r#"{"address":"h:1","labels":{"bad key":"x"}}"#).field,
            "labels.bad key"
        );
        assert_eq!(
            spec(r#"{"address":"h:1","check":{"type":"http"}}"#).field,
            "check.path"
        );
        assert_eq!(
            spec(r#"{"address":"h:1","check":{"type":"tcp","interval":"10ms"}}"#).field,
            "check.interval"
        );
        assert_eq!(
            spec(r#"{"address":"h:1","ephemeral":true,"check":{"type":"tcp"}}"#).field,
            "check"
        );
        let unknown =
            serde_json::from_str::<InstanceSpec>(r#"{"address":"h:1","wieght":3}"#).unwrap_err();
        assert!(unknown.to_string().contains("wieght"), "{unknown}");
    }

    #[test]
    fn durations_round_trip() {
        for (text, ms) in [
            ("500ms", 500),
            ("10s", 10_000),
            ("5m", 300_000),
            ("1h", 3_600_000),
            ("1m30s", 90_000),
        ] {
            assert_eq!(
                duration_text::parse(text),
                Ok(Duration::from_millis(ms)),
                "{text}"
            );
        }
        for bad in ["", "10", "s", "10x", "-1s", "1.5s"] {
            assert!(duration_text::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(duration_text::format(Duration::from_secs(90)), "90s");
        assert_eq!(duration_text::format(Duration::from_secs(120)), "2m");
    }
}
