//! API errors: `{"error": {"code": "...", "message": "..."}}` with the right status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use sluice_model::{InvalidField, NameError};
use sluice_registry::RegistryError;
use sluice_store::StoreError;

/// An error as the API answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// A stable, machine-readable code (`invalid_field`, `not_found`, ...).
    pub code: &'static str,
    /// A sentence for people, naming what is wrong.
    pub message: String,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 with code `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 404 with code `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}

impl From<NameError> for ApiError {
    fn from(error: NameError) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_name", error.to_string())
    }
}

impl From<InvalidField> for ApiError {
    fn from(error: InvalidField) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_field", error.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match &error {
            StoreError::InvalidKey { .. }
            | StoreError::ValueTooLarge { .. }
            | StoreError::InvalidRequest(_) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                error.to_string(),
            ),
            StoreError::FutureRevision { .. } | StoreError::Compacted { .. } => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_revision",
                error.to_string(),
            ),
            StoreError::LeaseNotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", error.to_string())
            }
            _ => {
                tracing::error!(%error, "store failure");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    error.to_string(),
                )
            }
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(error: RegistryError) -> Self {
        match error {
            RegistryError::Name(error) => error.into(),
            RegistryError::Invalid(error) => error.into(),
            RegistryError::NotFound { .. } => ApiError::new(
                StatusCode::NOT_FOUND,
                "instance_not_found",
                format!("{error}; register it again"),
            ),
            RegistryError::Store(error) => error.into(),
            RegistryError::Conflict => {
                ApiError::new(StatusCode::CONFLICT, "conflict", error.to_string())
            }
            // The request is well formed; the instance's kind rules it out.
            RegistryError::NotEphemeral { .. } => {
                ApiError::new(StatusCode::CONFLICT, "not_ephemeral", error.to_string())
            }
        }
    }
}
