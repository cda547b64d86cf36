//! Where everything Sluice keeps lives in the store: every key prefix, and the
//! functions that build and split keys, in one place. Crates never spell a
//! prefix themselves; a new system adds its prefix here.
//!
//! - `res/{Kind}/{ns}/{name}` — a resource (JSON [`Resource`](crate::Resource));
//! - `hist/{Kind}/{ns}/{name}/{revision}` — an earlier version of a resource;
//! - `svc/{ns}/{service}/inst/{id}` — an instance's registration (JSON
//!   [`InstanceSpec`](crate::InstanceSpec)); an ephemeral instance's key is on its
//!   *removal* lease;
//! - `svc/{ns}/{service}/alive/{id}` — an ephemeral instance's heartbeat marker, on
//!   its *health* lease: present means healthy;
//! - `svc/{ns}/{service}/health/{id}` — a persistent instance's health as last set
//!   by a check or an operator; absent means healthy;
//! - `alarm/…` — alarm states; `notify/…` — notifications waiting to be sent;
//!   `errors/…` — error reports;
//! - `lock/health-checker` — the key that elects the node running health checks;
//! - `cfg/item/{ns}/{group}/{key}` — a config item's record (released version, gray
//!   candidate, the versions kept); `cfg/data/{ns}/{group}/{key}/{version}` — one
//!   version's content (sealed for secret items); `cfg/audit/{ns}/{group}/{key}/{seq}`
//!   — what was done to the item, by whom.

/// Prefix of every resource.
pub const RESOURCES_PREFIX: &str = "res/";
/// Prefix of the versions kept of every resource.
pub const HISTORY_PREFIX: &str = "hist/";
/// Prefix of everything the registry stores about instances.
pub const INSTANCES_PREFIX: &str = "svc/";
/// The key that elects the node running active health checks.
pub const CHECKER_LOCK: &str = "lock/health-checker";
/// Prefix of alarm states.
pub const ALARMS_PREFIX: &str = "alarm/";
/// Prefix of notifications waiting to be delivered.
pub const NOTIFY_PREFIX: &str = "notify/";
/// Prefix of error reports.
pub const ERRORS_PREFIX: &str = "errors/";

/// Prefix of config items' records.
pub const CONFIG_ITEMS_PREFIX: &str = "cfg/item/";
/// Prefix of config versions' contents.
pub const CONFIG_DATA_PREFIX: &str = "cfg/data/";
/// Prefix of config audit records.
pub const CONFIG_AUDIT_PREFIX: &str = "cfg/audit/";

/// The key of a config item's record: `cfg/item/{ns}/{group}/{key}`.
pub fn config_item_key(namespace: &str, group: &str, key: &str) -> String {
    format!("{CONFIG_ITEMS_PREFIX}{namespace}/{group}/{key}")
}

/// Splits a config item's record key into (namespace, group, key).
pub fn parse_config_item_key(key: &str) -> Option<(&str, &str, &str)> {
    let mut parts = key.strip_prefix(CONFIG_ITEMS_PREFIX)?.splitn(3, '/');
    Some((parts.next()?, parts.next()?, parts.next()?))
}

/// The key of one version's content: `cfg/data/{ns}/{group}/{key}/{version:020}`.
pub fn config_data_key(namespace: &str, group: &str, key: &str, version: u64) -> String {
    format!("{CONFIG_DATA_PREFIX}{namespace}/{group}/{key}/{version:020}")
}

/// The key of one audit record: `cfg/audit/{ns}/{group}/{key}/{seq:020}`.
pub fn config_audit_key(namespace: &str, group: &str, key: &str, seq: u64) -> String {
    format!("{CONFIG_AUDIT_PREFIX}{namespace}/{group}/{key}/{seq:020}")
}

/// The prefix of one item's audit records.
pub fn config_audit_prefix(namespace: &str, group: &str, key: &str) -> String {
    format!("{CONFIG_AUDIT_PREFIX}{namespace}/{group}/{key}/")
}

/// The prefix of every resource of one kind: `res/{kind}/`.
pub fn kind_prefix(kind: &str) -> String {
    format!("{RESOURCES_PREFIX}{kind}/")
}

/// The prefix of the resources of one kind in one namespace: `res/{kind}/{ns}/`.
pub fn namespace_prefix(kind: &str, namespace: &str) -> String {
    format!("{RESOURCES_PREFIX}{kind}/{namespace}/")
}

/// The key of one resource: `res/{kind}/{ns}/{name}`.
pub fn resource_key(kind: &str, namespace: &str, name: &str) -> String {
    format!("{RESOURCES_PREFIX}{kind}/{namespace}/{name}")
}

/// The prefix of the versions kept of one resource: `hist/{kind}/{ns}/{name}/`.
pub fn history_prefix(kind: &str, namespace: &str, name: &str) -> String {
    format!("{HISTORY_PREFIX}{kind}/{namespace}/{name}/")
}

/// Splits a resource key into (kind, namespace, name).
pub fn parse_resource_key(key: &str) -> Option<(&str, &str, &str)> {
    let mut parts = key.strip_prefix(RESOURCES_PREFIX)?.splitn(3, '/');
    let kind = parts.next()?;
    let namespace = parts.next()?;
    let name = parts.next()?;
    Some((kind, namespace, name))
}

/// Which record of an instance a key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The registration.
    Instance,
    /// The heartbeat marker.
    Alive,
    /// The health record.
    Health,
}

impl Part {
    fn segment(self) -> &'static str {
        match self {
            Part::Instance => "inst",
            Part::Alive => "alive",
            Part::Health => "health",
        }
    }
}

/// The key of one record of an instance.
pub fn instance_key(part: Part, namespace: &str, service: &str, id: &str) -> String {
    format!(
        "{INSTANCES_PREFIX}{namespace}/{service}/{}/{id}",
        part.segment()
    )
}

/// Splits an instance key into (namespace, service, part, id).
pub fn parse_instance_key(key: &str) -> Option<(&str, &str, Part, &str)> {
    let rest = key.strip_prefix(INSTANCES_PREFIX)?;
    let mut parts = rest.splitn(4, '/');
    let namespace = parts.next()?;
    let service = parts.next()?;
    let part = match parts.next()? {
        "inst" => Part::Instance,
        "alive" => Part::Alive,
        "health" => Part::Health,
        _ => return None,
    };
    let id = parts.next()?;
    Some((namespace, service, part, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_keys_round_trip() {
        let key = instance_key(Part::Alive, "default", "echo", "i-1");
        assert_eq!(key, "svc/default/echo/alive/i-1");
        assert_eq!(
            parse_instance_key(&key),
            Some(("default", "echo", Part::Alive, "i-1"))
        );
        assert_eq!(parse_instance_key("svc/default/echo/other/i-1"), None);
    }

    #[test]
    fn resource_keys_round_trip() {
        let key = resource_key("Route", "default", "echo");
        assert_eq!(key, "res/Route/default/echo");
        assert!(key.starts_with(&kind_prefix("Route")));
        assert!(key.starts_with(&namespace_prefix("Route", "default")));
        assert_eq!(parse_resource_key(&key), Some(("Route", "default", "echo")));
        assert_eq!(parse_resource_key("res/Route/default"), None);
        assert_eq!(parse_resource_key("svc/Route/default/echo"), None);
    }
}
