//! The naming service's keys, built from the model's [`keys`](sluice_model::keys)
//! module (which owns every prefix): instance records and a service's settings,
//! the resource `res/Service/{ns}/{service}`.

pub use sluice_model::keys::{
    instance_key, parse_instance_key, Part, CHECKER_LOCK, INSTANCES_PREFIX,
};
use sluice_model::keys::{kind_prefix, parse_resource_key, resource_key};

/// The kind of the resource that holds a service's settings.
pub const SERVICE_KIND: &str = "Service";

/// Prefix of service settings (resources of kind `Service`).
pub fn service_settings_prefix() -> String {
    kind_prefix(SERVICE_KIND)
}

/// The key of a service's settings.
pub fn settings_key(namespace: &str, service: &str) -> String {
    resource_key(SERVICE_KIND, namespace, service)
}

/// Splits a settings key into (namespace, service).
pub fn parse_settings_key(key: &str) -> Option<(&str, &str)> {
    match parse_resource_key(key)? {
        (SERVICE_KIND, namespace, service) => Some((namespace, service)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_model::keys::resource_key;

    #[test]
    fn settings_keys_round_trip() {
        assert_eq!(settings_key("a", "b"), resource_key("Service", "a", "b"));
        assert_eq!(
            parse_settings_key(&settings_key("a", "b")),
            Some(("a", "b"))
        );
        assert_eq!(parse_settings_key(&resource_key("Route", "a", "b")), None);
    }
}
