//! JSON Schemas of the text formats the model parses by hand — durations, names,
//! service references, addresses, CIDR blocks — so the OpenAPI document (generated
//! with schemars from the spec types) says what `validate()` accepts.

use std::borrow::Cow;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};

/// A duration as text: `500ms`, `10s`, `1h30m`.
pub const DURATION_PATTERN: &str = "^([0-9]{1,9}(ms|s|m|h|d))+$";
/// A name: letters, digits, `-`, `_`, `.`, starting and ending with a letter or digit.
pub const NAME_PATTERN: &str = "^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$";

macro_rules! schema_type {
    ($(#[$doc:meta])* $name:ident, $title:literal, $schema:tt) => {
        $(#[$doc])*
        pub struct $name;

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                Cow::Borrowed($title)
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!($schema)
            }
        }
    };
}

schema_type!(
    /// The schema of a duration written as text.
    DurationText,
    "Duration",
    {"type": "string", "pattern": DURATION_PATTERN, "description": "A duration: 500ms, 10s, 5m, 1h, 1d, or a sum such as 1h30m."}
);

schema_type!(
    /// The schema of a name.
    NameText,
    "Name",
    {"type": "string", "pattern": NAME_PATTERN}
);

schema_type!(
    /// The schema of a service reference: `name` or `namespace/name`.
    ServiceRef,
    "ServiceRef",
    {"type": "string", "pattern": "^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?/)?[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$", "description": "name, or namespace/name"}
);

schema_type!(
    /// The schema of an instance address: `host:port`, `[v6]:port`.
    AddressText,
    "Address",
    {"type": "string", "pattern": "^(([0-9]{1,3}\\.){3}[0-9]{1,3}|[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\\[[0-9A-Fa-f:.]+\\]):[1-9][0-9]{0,4}$", "description": "host:port, IPv4:port or [IPv6]:port"}
);

schema_type!(
    /// The schema of an IP address or CIDR block.
    CidrText,
    "Cidr",
    {"type": "string", "pattern": "^(([0-9]{1,3}\\.){3}[0-9]{1,3}(/[0-9]{1,2})?|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*(/[0-9]{1,3})?)$", "description": "an IPv4 or IPv6 address, or a CIDR block without host bits"}
);

schema_type!(
    /// The schema of a metric name.
    MetricName,
    "MetricName",
    {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]{0,127}$"}
);

/// A label or metadata key's schema (the same rule as `validate_labels`).
fn label_key() -> serde_json::Value {
    serde_json::json!({"pattern": format!("^[A-Za-z0-9_./-]{{1,{}}}$", crate::instance::MAX_LABEL_KEY)})
}

schema_type!(
    /// The schema of labels: at most 64, keys of `a-z A-Z 0-9 _ - . /`, values up to 256 bytes.
    LabelsMap,
    "Labels",
    {"type": "object", "maxProperties": crate::MAX_LABELS,
     "propertyNames": label_key(),
     "additionalProperties": {"type": "string", "maxLength": crate::instance::MAX_LABEL_VALUE}}
);

schema_type!(
    /// The schema of an instance's metadata: as labels, with values up to 4096 bytes.
    MetadataMap,
    "Metadata",
    {"type": "object", "maxProperties": crate::MAX_LABELS,
     "propertyNames": label_key(),
     "additionalProperties": {"type": "string", "maxLength": crate::instance::MAX_METADATA_VALUE}}
);
