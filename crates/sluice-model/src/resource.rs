//! The envelope every configured resource shares: `{ kind, metadata, spec }`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Which resource of a kind: its namespace and name. Ordered by namespace, then
/// name; shown as `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ResourceId {
    /// The tenant namespace.
    pub namespace: String,
    /// The name, unique within its kind and namespace.
    pub name: String,
}

impl ResourceId {
    /// The resource `name` in `namespace`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ResourceId {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for ResourceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Where a resource lives and which version of it this is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceMetadata {
    /// The tenant namespace (`default` unless said).
    pub namespace: String,
    /// The resource's name, unique within its kind and namespace.
    pub name: String,
    /// Free-form labels for selection.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The store revision that last changed this resource (0 before it is stored).
    #[serde(default)]
    pub revision: u64,
}

/// A configured object: a route, a rate limit, an alarm rule, ...
///
/// `spec` is kept as JSON here; each kind validates and types its own spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Resource {
    /// The resource kind, such as `Route` or `AlarmRule`.
    pub kind: String,
    /// Namespace, name, labels and revision.
    pub metadata: ResourceMetadata,
    /// The kind-specific body.
    pub spec: serde_json::Value,
}

impl ResourceMetadata {
    /// The resource's namespace and name.
    pub fn id(&self) -> ResourceId {
        ResourceId::new(&self.namespace, &self.name)
    }
}
