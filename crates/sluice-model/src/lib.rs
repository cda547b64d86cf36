//! Domain types shared by every Sluice crate, and their validation.
//!
//! This crate holds what the rest of Sluice agrees on — how names look and how a
//! configured resource is shaped — and checks it, without doing any I/O. Every
//! API validates input through these types, so a bad name is rejected with the
//! same clear message wherever it enters.

mod alarm;
pub mod api_template;
mod instance;
pub mod keys;
mod name;
mod protect;
mod resource;
mod route;
pub mod schema;
mod service;

pub use alarm::{
    error_template_rules, template_rules, valid_metric_name, validate_template, AlarmRuleSpec,
    AlertmanagerSpec, ChangeRule, Direction, EmailSpec, ErrorProjectSpec, MuteSpec, NotifierSpec,
    Severity, SmtpSecurity, WebhookFormat, WebhookSpec, TEMPLATE_FIELDS,
};
pub use instance::{
    duration_text, validate_address, validate_labels, validate_weight, CheckKind, HealthCheck,
    InstanceSpec, InvalidField, DEFAULT_WEIGHT, MAX_LABELS, MAX_WEIGHT,
};
pub use name::{validate_name, NameError, ParseError, NAME_MAX_LEN};
pub use protect::{
    format_time, parse_time, validate_limit_key, AclSpec, AutoBanSpec, BanSpec, BreakerSpec,
    BreakerStatus, ConcurrencyAlgorithm, ConcurrencySpec, ConnLimitSpec, Fallback, LimiterStatus,
    Priority, ProtectionStatus, MAX_ACL_ENTRIES,
};
pub use resource::{Resource, ResourceId, ResourceMetadata};
pub use route::{
    LoadBalancing, OutlierDetection, RateLimitSpec, Retries, RetryOn, Rewrite, RouteMatch,
    RouteSpec, Timeouts, TraceSampling, WeightedService,
};
pub use service::ServiceSpec;
