//! The settings of a service in the naming service (the `Service` kind).

use serde::{Deserialize, Serialize};

use crate::InvalidField;

/// Longest service description, in bytes.
pub const MAX_DESCRIPTION: usize = 1024;

/// The spec of a `Service` resource: settings of a service in the naming service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Below this healthy share (0–1), queries return the unhealthy instances too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub protect_threshold: Option<f64>,
    /// What the service is for (at most 1024 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
}

impl ServiceSpec {
    /// Checks the threshold's range and the description's length.
    pub fn validate(&self) -> Result<(), InvalidField> {
        if let Some(threshold) = self.protect_threshold {
            if !(0.0..=1.0).contains(&threshold) {
                return Err(InvalidField::new(
                    "spec.protect_threshold",
                    format!("{threshold} is outside 0..=1"),
                ));
            }
        }
        if self
            .description
            .as_ref()
            .is_some_and(|d| d.len() > MAX_DESCRIPTION)
        {
            return Err(InvalidField::new(
                "spec.description",
                format!("over {MAX_DESCRIPTION} bytes"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_outside_zero_to_one_and_long_descriptions_are_refused() {
        let ok = ServiceSpec {
            protect_threshold: Some(0.5),
            description: Some("pays".into()),
        };
        assert!(ok.validate().is_ok());
        let high = ServiceSpec {
            protect_threshold: Some(1.5),
            ..ServiceSpec::default()
        };
        assert_eq!(
            high.validate().map_err(|e| e.field),
            Err("spec.protect_threshold".to_owned())
        );
        let long = ServiceSpec {
            description: Some("x".repeat(MAX_DESCRIPTION + 1)),
            ..ServiceSpec::default()
        };
        assert_eq!(
            long.validate().map_err(|e| e.field),
            Err("spec.description".to_owned())
        );
    }
}
