//! Request bodies: size-limited JSON whose errors name the field at fault.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Largest request body accepted (1 MiB), unless configured otherwise.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// The configured body limit, carried as a request extension.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// A JSON body, parsed strictly: unknown fields, wrong types and oversized or
/// malformed bodies are 4xx errors whose message names the field or the problem.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let limit = request
            .extensions()
            .get::<BodyLimit>()
            .map_or(DEFAULT_BODY_LIMIT, |limit| limit.0);
        // The body is parsed as JSON whatever its Content-Type says: `curl -d` sends
        // form encoding by default, and a JSON error is clearer than a 415.
        let bytes: Bytes = axum::body::to_bytes(request.into_body(), limit)
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    format!("the request body is over the limit of {limit} bytes"),
                )
            })?;
        parse(&bytes).map(ApiJson)
    }
}

/// Parses JSON, naming the path of the field at fault.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "the request body is empty; send a JSON object",
        ));
    }
    let mut json: serde_json::Value = serde_json::from_slice(bytes).map_err(|error| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("invalid JSON body: {error}"),
        )
    })?;
    integral_floats_as_integers(&mut json);
    serde_path_to_error::deserialize(json).map_err(|error| {
        let path = error.path().to_string();
        let message = if path.is_empty() || path == "." {
            format!("invalid JSON body: {}", error.into_inner())
        } else {
            format!("{path}: {}", error.into_inner())
        };
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", message)
    })
}

/// JSON has one number type: `400.0` is the integer 400 to JSON Schema and to
/// clients that write every number as a float, so a number with no fraction is
/// read as an integer wherever one is expected (a float field takes it as well).
pub fn integral_floats_as_integers(json: &mut serde_json::Value) {
    use serde_json::Value;
    match json {
        Value::Number(number) if number.is_f64() => {
            if let Some(float) = number.as_f64() {
                // Exactly representable: within 2^53 and without a fraction.
                if float.fract() == 0.0 && float.abs() < 9_007_199_254_740_992.0 {
                    #[allow(clippy::cast_possible_truncation)]
                    let integer = float as i64;
                    *json = Value::from(integer);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats_as_integers),
        Value::Object(fields) => fields.values_mut().for_each(integral_floats_as_integers),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Weighted {
        weight: u32,
        #[serde(default)]
        ratio: f64,
    }

    #[test]
    fn a_number_without_a_fraction_is_an_integer_and_a_fraction_is_refused_naming_the_field() {
        let parsed: Weighted = parse(br#"{"weight": 400.0, "ratio": 2}"#).unwrap();
        assert_eq!(
            parsed,
            Weighted {
                weight: 400,
                ratio: 2.0
            }
        );
        let refused = parse::<Weighted>(br#"{"weight": 2.5}"#).unwrap_err();
        assert!(refused.message.contains("weight"), "{refused:?}");
        let unknown = parse::<Weighted>(br#"{"weight": 1, "extra": 1}"#).unwrap_err();
        assert!(unknown.message.contains("extra"), "{unknown:?}");
        let syntax = parse::<Weighted>(br#"{"weight": "#).unwrap_err();
        assert!(syntax.message.contains("invalid JSON body"), "{syntax:?}");
    }
}
