//! Where the naming service keeps things in the store.
//!
//! - `svc/{ns}/{service}/inst/{id}` — the registration (JSON [`InstanceSpec`]); an
//!   ephemeral instance's key is on its *removal* lease (TTL `remove_after`);
//! - `svc/{ns}/{service}/alive/{id}` — an ephemeral instance's heartbeat marker, on its
//!   *health* lease (TTL `unhealthy_after`): present means healthy;
//! - `svc/{ns}/{service}/health/{id}` — a persistent instance's health as last set by a
//!   check or an operator (JSON [`HealthRecord`]); absent means healthy;
//! - `res/Service/{ns}/{service}` — the service's settings (a `Service` resource).
//!
//! [`InstanceSpec`]: sluice_model::InstanceSpec
//! [`HealthRecord`]: crate::HealthRecord

/// Prefix of everything the registry stores about instances.
pub const INSTANCES_PREFIX: &str = "svc/";
/// Prefix of service settings (resources of kind `Service`).
pub const SERVICE_SETTINGS_PREFIX: &str = "res/Service/";
/// The key that elects the node running active health checks.
pub const CHECKER_LOCK: &str = "lock/health-checker";

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

/// The key of a service's settings.
pub fn settings_key(namespace: &str, service: &str) -> String {
    format!("{SERVICE_SETTINGS_PREFIX}{namespace}/{service}")
}

/// Splits a settings key into (namespace, service).
pub fn parse_settings_key(key: &str) -> Option<(&str, &str)> {
    key.strip_prefix(SERVICE_SETTINGS_PREFIX)?.split_once('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let key = instance_key(Part::Alive, "default", "echo", "i-1");
        assert_eq!(key, "svc/default/echo/alive/i-1");
        assert_eq!(
            parse_instance_key(&key),
            Some(("default", "echo", Part::Alive, "i-1"))
        );
        assert_eq!(parse_instance_key("svc/default/echo/other/i-1"), None);
        assert_eq!(
            parse_settings_key(&settings_key("a", "b")),
            Some(("a", "b"))
        );
    }
}
