//! Traffic-protection resources besides `RateLimit`: `ConnLimit` (nginx
//! `limit_conn`), `Acl` (CIDR allow / deny lists), `Ban` (an IP or key refused
//! until a time), `Concurrency` (adaptive concurrency limits) and `Breaker`
//! (circuit breakers). Each validates itself; errors name the field as
//! `spec.FIELD`. CIDR syntax is checked where the parser lives (`sluice-guard`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::instance::{duration_text, InvalidField};
use crate::validate_name;

/// Checks a limit key: `client_ip`, `route`, `service`, `header:NAME`, or several
/// joined by `+`.
pub fn validate_limit_key(field: &str, key: &str) -> Result<(), InvalidField> {
    for part in key.split('+') {
        let ok = match part.strip_prefix("header:") {
            Some(name) => {
                !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
            }
            None => matches!(part, "client_ip" | "route" | "service"),
        };
        if !ok {
            return Err(InvalidField::new(
                field,
                format!("{part:?} is not client_ip, route, service or header:NAME"),
            ));
        }
    }
    Ok(())
}

fn validate_status(
    field: &str,
    status: u16,
    range: std::ops::RangeInclusive<u16>,
) -> Result<(), InvalidField> {
    if range.contains(&status) {
        Ok(())
    } else {
        Err(InvalidField::new(
            field,
            format!("{status} is outside {}..={}", range.start(), range.end()),
        ))
    }
}

fn validate_ref(field: &'static str, name: &str) -> Result<(), InvalidField> {
    validate_name(field, name).map_err(|e| InvalidField::new(field, e.to_string()))
}

fn within(
    field: &str,
    value: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<(), InvalidField> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(InvalidField::new(
            field,
            format!("{value} is outside {}..={}", range.start(), range.end()),
        ))
    }
}

fn duration_within(
    field: &str,
    value: Duration,
    min: Duration,
    max: Duration,
) -> Result<(), InvalidField> {
    if value < min || value > max {
        return Err(InvalidField::new(
            field,
            format!(
                "{} is outside {}..={}",
                duration_text::format(value),
                duration_text::format(min),
                duration_text::format(max)
            ),
        ));
    }
    Ok(())
}

fn default_key() -> String {
    "client_ip".to_owned()
}
fn default_503() -> u16 {
    503
}
fn default_403() -> u16 {
    403
}

/// The spec of a `ConnLimit` resource: at most `max` requests in flight per key on a route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnLimitSpec {
    /// The route (in the same namespace).
    #[schemars(with = "crate::schema::NameText")]
    pub route: String,
    /// Requests in flight per key.
    pub max: u32,
    /// What a key is made of (as in `RateLimit`).
    #[serde(default = "default_key")]
    pub key: String,
    /// The status of a rejection (400–599; default 503).
    #[serde(default = "default_503")]
    #[schemars(range(min = 400, max = 599))]
    pub status: u16,
}

impl ConnLimitSpec {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), InvalidField> {
        validate_ref("spec.route", &self.route)?;
        within("spec.max", u64::from(self.max), 1..=1_000_000)?;
        validate_limit_key("spec.key", &self.key)?;
        validate_status("spec.status", self.status, 400..=599)
    }
}

/// The spec of an `Acl` resource: who may use a route (or, without `route`, every
/// route of the namespace). A client in `deny` is refused; when `allow` is not
/// empty, a client must be in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("anyOf" = [{"required": ["allow"], "properties": {"allow": {"minItems": 1}}}, {"required": ["deny"], "properties": {"deny": {"minItems": 1}}}]))]
pub struct AclSpec {
    /// The route; absent: every route of the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::schema::NameText>")]
    pub route: Option<String>,
    /// CIDR blocks (or addresses) admitted.
    #[serde(default)]
    #[schemars(with = "Vec<crate::schema::CidrText>")]
    pub allow: Vec<String>,
    /// CIDR blocks (or addresses) refused.
    #[serde(default)]
    #[schemars(with = "Vec<crate::schema::CidrText>")]
    pub deny: Vec<String>,
    /// The status of a refusal (400–599; default 403).
    #[serde(default = "default_403")]
    #[schemars(range(min = 400, max = 599))]
    pub status: u16,
}

/// Most entries in one list.
pub const MAX_ACL_ENTRIES: usize = 10_000;

impl AclSpec {
    /// Checks the fields other than the CIDR syntax.
    pub fn validate(&self) -> Result<(), InvalidField> {
        if let Some(route) = &self.route {
            validate_ref("spec.route", route)?;
        }
        if self.allow.is_empty() && self.deny.is_empty() {
            return Err(InvalidField::new(
                "spec.allow",
                "give allow or deny (or both) a CIDR block",
            ));
        }
        for (field, list) in [("spec.allow", &self.allow), ("spec.deny", &self.deny)] {
            if list.len() > MAX_ACL_ENTRIES {
                return Err(InvalidField::new(
                    field,
                    format!("{} entries; at most {MAX_ACL_ENTRIES}", list.len()),
                ));
            }
        }
        validate_status("spec.status", self.status, 400..=599)
    }
}

/// The spec of a `Ban` resource: an IP (or CIDR block) or a header value refused
/// until `expires_at`, on one route or every route of the namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [{"required": ["ip"], "properties": {"ip": {"not": {"type": "null"}}}}, {"required": ["header", "value"], "properties": {"header": {"not": {"type": "null"}}, "value": {"not": {"type": "null"}}}}]))]
pub struct BanSpec {
    /// The client address or CIDR block banned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::schema::CidrText>")]
    pub ip: Option<String>,
    /// A header whose value is banned (with `value`), such as an API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^(client_ip|route|service|header:[!#$%&'*+.^_`|~0-9A-Za-z-]+)$"
    ))]
    pub header: Option<String>,
    /// The banned value of `header`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The route; absent: every route of the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::schema::NameText>")]
    pub route: Option<String>,
    /// When the ban ends (RFC 3339); absent: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Why (shown in listings and logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl BanSpec {
    /// Checks the fields other than the CIDR syntax; returns the expiry as Unix
    /// milliseconds (`None`: never).
    pub fn validate(&self) -> Result<Option<i64>, InvalidField> {
        match (&self.ip, &self.header, &self.value) {
            (Some(_), None, None) => {}
            (None, Some(header), Some(value)) => {
                validate_limit_key("spec.header", &format!("header:{header}"))?;
                if value.is_empty() || value.len() > 1024 {
                    return Err(InvalidField::new("spec.value", "must be 1 to 1024 bytes"));
                }
            }
            _ => {
                return Err(InvalidField::new(
                    "spec.ip",
                    "give either ip, or header and value",
                ))
            }
        }
        if let Some(route) = &self.route {
            validate_ref("spec.route", route)?;
        }
        if self.reason.as_ref().is_some_and(|r| r.len() > 1024) {
            return Err(InvalidField::new("spec.reason", "at most 1024 bytes"));
        }
        self.expires_at
            .as_deref()
            .map(|text| {
                parse_time(text).map_err(|reason| InvalidField::new("spec.expires_at", reason))
            })
            .transpose()
    }
}

/// Parses an RFC 3339 time (`2026-11-22T10:00:00Z`, fractions and offsets
/// allowed) into Unix milliseconds.
pub fn parse_time(text: &str) -> Result<i64, crate::ParseError> {
    parse_time_text(text).map_err(|message| crate::ParseError::new(text, message))
}

fn parse_time_text(text: &str) -> Result<i64, String> {
    let bad = || format!("{text:?} is not an RFC 3339 time such as 2026-11-22T10:00:00Z");
    let bytes = text.as_bytes();
    if bytes.len() < 20
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || bytes[13] != b':'
        || bytes[16] != b':'
    {
        return Err(bad());
    }
    if !matches!(bytes[10], b'T' | b't' | b' ') {
        return Err(bad());
    }
    let number = |range: std::ops::Range<usize>| -> Result<i64, String> {
        let part = text.get(range).ok_or_else(bad)?;
        if !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        part.parse().map_err(|_| bad())
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(bad());
    }
    let mut rest = &text[19..];
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let first3 = format!("{:0<3}", &fraction[..digits.min(3)]);
        millis = first3.parse::<i64>().map_err(|_| bad())?;
        rest = &fraction[digits..];
    }
    let offset_minutes = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6
            && (rest.starts_with('+') || rest.starts_with('-'))
            && &rest[3..4] == ":" =>
        {
            let hours: i64 = rest[1..3].parse().map_err(|_| bad())?;
            let minutes: i64 = rest[4..6].parse().map_err(|_| bad())?;
            let total = hours * 60 + minutes;
            if rest.starts_with('-') {
                -total
            } else {
                total
            }
        }
        _ => return Err(bad()),
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset_minutes * 60;
    Ok(seconds * 1000 + millis)
}

/// Formats Unix milliseconds as RFC 3339 UTC (`2026-11-22T10:00:00.000Z`).
pub fn format_time(unix_ms: i64) -> String {
    let days = unix_ms.div_euclid(86_400_000);
    let in_day = unix_ms.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    )
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Adaptive concurrency algorithms.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ConcurrencyAlgorithm {
    /// brpc's auto concurrency limiter (the default).
    #[default]
    Auto,
    /// Envoy's gradient controller.
    Gradient,
}

/// The spec of a `Concurrency` resource: an adaptive limit on the requests in
/// flight to a route or to a service (over every route that sends to it). No
/// capacity is configured: the limiter learns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [{"required": ["route"], "properties": {"route": {"not": {"type": "null"}}}}, {"required": ["service"], "properties": {"service": {"not": {"type": "null"}}}}]))]
pub struct ConcurrencySpec {
    /// The route (in the same namespace); give this or `service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::schema::NameText>")]
    pub route: Option<String>,
    /// The service (in the same namespace); give this or `route`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::schema::NameText>")]
    pub service: Option<String>,
    /// `auto` (brpc) or `gradient` (Envoy).
    #[serde(default)]
    pub algorithm: ConcurrencyAlgorithm,
    /// The status of a rejection (400–599; default 503).
    #[serde(default = "default_503")]
    #[schemars(range(min = 400, max = 599))]
    pub status: u16,
    /// The lowest limit the limiter may learn (default: 9 for `auto`, brpc's
    /// floor; 3 for `gradient`, Envoy's): a floor for a service whose latency is so
    /// low that the learned limit leaves no room for bursts (1–100000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub min_limit: Option<u32>,
}

/// The highest `min_limit` a `Concurrency` accepts.
pub const MAX_MIN_LIMIT: u32 = 100_000;

impl ConcurrencySpec {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), InvalidField> {
        match (&self.route, &self.service) {
            (Some(route), None) => validate_ref("spec.route", route)?,
            (None, Some(service)) => validate_ref("spec.service", service)?,
            _ => {
                return Err(InvalidField::new(
                    "spec.route",
                    "give exactly one of route and service",
                ))
            }
        }
        if let Some(min) = self.min_limit {
            if !(1..=MAX_MIN_LIMIT).contains(&min) {
                return Err(InvalidField::new(
                    "spec.min_limit",
                    format!("must be within 1..={MAX_MIN_LIMIT}"),
                ));
            }
        }
        validate_status("spec.status", self.status, 400..=599)
    }
}

fn default_window() -> Duration {
    Duration::from_secs(10)
}
fn default_buckets() -> u32 {
    10
}
fn default_volume() -> u32 {
    20
}
fn default_error_percent() -> u32 {
    50
}
fn default_sleep() -> Duration {
    Duration::from_secs(5)
}
fn default_slow_percent() -> u32 {
    100
}

/// The spec of a `Breaker` resource: a circuit breaker (Hystrix semantics) on the
/// calls to a service, or on each of its instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakerSpec {
    /// The upstream service (in the same namespace).
    #[schemars(with = "crate::schema::NameText")]
    pub service: String,
    /// One breaker per instance instead of one for the service: an open instance
    /// takes no traffic while others do.
    #[serde(default)]
    pub per_instance: bool,
    /// The rolling window (default 10s).
    #[schemars(with = "crate::schema::DurationText")]
    #[serde(default = "default_window", with = "duration_text")]
    pub window: Duration,
    /// Buckets in the window (default 10).
    #[serde(default = "default_buckets")]
    pub buckets: u32,
    /// Calls the window must hold before the breaker may open (default 20).
    #[serde(default = "default_volume")]
    pub volume: u32,
    /// Error percentage that opens it (1–100; default 50). Errors: 5xx answers,
    /// failed connections and timeouts.
    #[serde(default = "default_error_percent")]
    pub error_percent: u32,
    /// How long it stays open before one trial call (default 5s).
    #[schemars(with = "crate::schema::DurationText")]
    #[serde(default = "default_sleep", with = "duration_text")]
    pub sleep: Duration,
    /// A call slower than this is slow; absent: no slow-call rule.
    #[schemars(with = "Option<crate::schema::DurationText>")]
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::instance::optional_duration_text"
    )]
    pub slow_call: Option<Duration>,
    /// Slow-call percentage that opens it (1–100; default 100).
    #[serde(default = "default_slow_percent")]
    pub slow_percent: u32,
}

impl BreakerSpec {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), InvalidField> {
        validate_ref("spec.service", &self.service)?;
        duration_within(
            "spec.window",
            self.window,
            Duration::from_millis(100),
            Duration::from_secs(3600),
        )?;
        within("spec.buckets", u64::from(self.buckets), 1..=1000)?;
        if self.window.as_millis() / u128::from(self.buckets.max(1)) < 10 {
            return Err(InvalidField::new(
                "spec.buckets",
                "each bucket must span at least 10ms of the window",
            ));
        }
        within("spec.volume", u64::from(self.volume), 1..=1_000_000)?;
        within("spec.error_percent", u64::from(self.error_percent), 1..=100)?;
        duration_within(
            "spec.sleep",
            self.sleep,
            Duration::from_millis(10),
            Duration::from_secs(3600),
        )?;
        if let Some(slow) = self.slow_call {
            duration_within(
                "spec.slow_call",
                slow,
                Duration::from_millis(1),
                Duration::from_secs(3600),
            )?;
        }
        within("spec.slow_percent", u64::from(self.slow_percent), 1..=100)
    }
}

/// Automatic bans on a `RateLimit`: a key rejected more than `after` times within
/// `within` is banned for `for`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AutoBanSpec {
    /// Rejections tolerated in the window.
    pub after: u32,
    /// The window.
    #[schemars(with = "crate::schema::DurationText")]
    #[serde(with = "duration_text")]
    pub within: Duration,
    /// How long the ban lasts.
    #[schemars(with = "crate::schema::DurationText")]
    #[serde(rename = "for", with = "duration_text")]
    pub ban_for: Duration,
}

impl AutoBanSpec {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), InvalidField> {
        within("spec.ban.after", u64::from(self.after), 1..=1_000_000)?;
        duration_within(
            "spec.ban.within",
            self.within,
            Duration::from_millis(100),
            Duration::from_secs(86_400),
        )?;
        duration_within(
            "spec.ban.for",
            self.ban_for,
            Duration::from_secs(1),
            Duration::from_secs(30 * 86_400),
        )
    }
}

/// A route's priority under a concurrency limit. Below the limit every request
/// is admitted, whatever its priority (so the limiter keeps learning the full
/// capacity). At the limit, a request is still admitted while its priority holds
/// fewer than its guaranteed share of the limit in flight: `high` 100 %, `normal`
/// 50 %, `low` none — so `low` routes are shed first, then `normal`, and `high`
/// last.
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
pub enum Priority {
    /// Shed first.
    Low,
    /// Shed before `high`.
    #[default]
    Normal,
    /// Shed last.
    High,
}

impl Priority {
    /// The share of a concurrency limit this priority may hold in flight even
    /// when the limit is reached.
    pub fn guaranteed_share(self) -> f64 {
        match self {
            Priority::Low => 0.0,
            Priority::Normal => 0.5,
            Priority::High => 1.0,
        }
    }
}

/// What a route answers instead when its upstream cannot: an open breaker, a
/// concurrency rejection, a timeout, or no healthy instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Fallback {
    /// Send the request to this service instead (same namespace). Requests with a
    /// body are sent there only when the first upstream was never called.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The static answer's status (default 200).
    #[serde(default = "default_fallback_status")]
    pub status: u16,
    /// The static answer's headers.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// The static answer's body.
    #[serde(default)]
    pub body: String,
}

fn default_fallback_status() -> u16 {
    200
}

impl Fallback {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), InvalidField> {
        if let Some(service) = &self.service {
            validate_ref("spec.fallback.service", service)?;
            if !self.body.is_empty() || !self.headers.is_empty() {
                return Err(InvalidField::new(
                    "spec.fallback.service",
                    "a fallback is either a service or a static answer, not both",
                ));
            }
        }
        validate_status("spec.fallback.status", self.status, 200..=599)?;
        if self.body.len() > 1 << 20 {
            return Err(InvalidField::new("spec.fallback.body", "at most 1 MiB"));
        }
        for name in self.headers.keys() {
            validate_limit_key("spec.fallback.headers", &format!("header:{name}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_and_format() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_time("2026-11-22T10:00:00Z"), Ok(1_795_341_600_000));
        assert_eq!(
            parse_time("2026-11-22T11:00:00.250+01:00"),
            Ok(1_795_341_600_250)
        );
        assert_eq!(format_time(1_795_341_600_250), "2026-11-22T10:00:00.250Z");
        assert_eq!(
            parse_time(&format_time(951_782_400_000)),
            Ok(951_782_400_000)
        );
        for bad in [
            "",
            "2026-11-22",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-11-22T10:00:00",
            "tomorrow",
        ] {
            assert!(
                parse_time(bad).unwrap_err().message.contains("RFC 3339"),
                "{bad}"
            );
        }
    }

    #[test]
    fn keys_are_checked() {
        assert!(validate_limit_key("k", "client_ip+header:x-api-key+service").is_ok());
        assert!(validate_limit_key("k", "cookie").is_err());
        assert!(validate_limit_key("k", "header:").is_err());
    }
}

/// What a gateway's protection holds for one service right now: its adaptive
/// concurrency limits and its circuit breakers (served by the admin API and shown
/// on the console's service page).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ProtectionStatus {
    /// Routes that send to the service.
    pub routes: Vec<String>,
    /// Adaptive concurrency limits in force on the service or its routes.
    pub limiters: Vec<LimiterStatus>,
    /// Circuit breakers of the service, or of each of its instances.
    pub breakers: Vec<BreakerStatus>,
}

/// An adaptive concurrency limit as it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LimiterStatus {
    /// `service` or `route NAME`.
    pub scope: String,
    /// Requests admitted at once now (learned, not configured).
    pub limit: i64,
    /// Requests in flight.
    pub inflight: i64,
    /// The no-load latency estimate, ms (`None` before the first measurement).
    pub min_latency_ms: Option<f64>,
}

/// A circuit breaker as it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BreakerStatus {
    /// The instance's address, or `None` for the service's breaker.
    pub instance: Option<String>,
    /// `closed`, `open` or `half_open`.
    pub state: String,
    /// Calls in the rolling window.
    pub calls: u64,
    /// Failed calls in the rolling window.
    pub errors: u64,
}
