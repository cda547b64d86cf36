//! Bearer tokens: optional; when any is configured, nothing is served without a
//! valid one. Each token has a role — `read` (GET), `write` (also PUT, PATCH, POST,
//! DELETE) or `admin` (everything) — and the namespaces it covers (`*` for all).

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sluice_model::validate_name;

use crate::error::ApiError;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read only.
    Read,
    /// Read and change.
    Write,
    /// Everything.
    Admin,
}

/// One configured token (`[[tokens]]` in the config file).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// A name for logs (the token itself is never logged).
    #[serde(default)]
    pub name: Option<String>,
    /// The secret, at least 16 characters.
    pub token: String,
    /// What it may do.
    pub role: Role,
    /// Namespaces it covers; `["*"]` (the default) for all.
    #[serde(default = "all_namespaces")]
    pub namespaces: Vec<String>,
    /// Whether it may read secret config items in its namespaces (admin tokens always may).
    #[serde(default)]
    pub secrets: bool,
}

fn all_namespaces() -> Vec<String> {
    vec!["*".to_owned()]
}

/// A configured token that is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TokenError {
    /// The token's name, if it has one.
    pub name: Option<String>,
    /// What is wrong, naming the token.
    pub message: String,
}

impl TokenConfig {
    /// Checks the token's length and namespaces.
    pub fn validate(&self) -> Result<(), TokenError> {
        self.check().map_err(|message| TokenError {
            name: self.name.clone(),
            message,
        })
    }

    fn check(&self) -> Result<(), String> {
        let name = self.name.as_deref().unwrap_or("(unnamed)");
        if self.token.len() < 16
            || self
                .token
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(format!(
                "token {name}: a token needs at least 16 non-space characters"
            ));
        }
        if self.namespaces.is_empty() {
            return Err(format!(
                "token {name}: namespaces is empty; use [\"*\"] for all"
            ));
        }
        for namespace in &self.namespaces {
            if namespace != "*" {
                validate_name("namespace", namespace).map_err(|e| format!("token {name}: {e}"))?;
            }
        }
        Ok(())
    }

    fn covers(&self, namespace: &str) -> bool {
        self.namespaces.iter().any(|n| n == "*" || n == namespace)
    }
}

/// The tokens in force.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    tokens: Vec<TokenConfig>,
}

/// What the caller's token allows, for handlers that filter by namespace.
#[derive(Debug, Clone)]
pub struct Access {
    /// `None`: every namespace.
    pub namespaces: Option<Vec<String>>,
    /// The caller's role (`Admin` when no tokens are configured).
    pub role: Role,
    /// Whether the caller may read secret config items.
    pub secrets: bool,
    /// The token's name, for audit records (`None`: no name, or no tokens).
    pub name: Option<String>,
}

impl Access {
    /// What a caller may do when no tokens are configured.
    pub fn everything() -> Self {
        Access {
            namespaces: None,
            role: Role::Admin,
            secrets: true,
            name: None,
        }
    }

    fn of(token: &TokenConfig) -> Self {
        Access {
            namespaces: (!token.namespaces.iter().any(|n| n == "*"))
                .then(|| token.namespaces.clone()),
            role: token.role,
            secrets: token.secrets || token.role == Role::Admin,
            name: token.name.clone(),
        }
    }

    /// Whether the caller may read secret config items.
    pub fn reads_secrets(&self) -> bool {
        self.secrets
    }

    /// Whether the caller may see `namespace`.
    pub fn covers(&self, namespace: &str) -> bool {
        self.namespaces
            .as_ref()
            .is_none_or(|list| list.iter().any(|n| n == namespace))
    }
}

impl Auth {
    /// Tokens from the configuration, validated.
    pub fn new(tokens: Vec<TokenConfig>) -> Result<Self, TokenError> {
        for token in &tokens {
            token.validate()?;
        }
        Ok(Auth { tokens })
    }

    /// Whether any token is configured.
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// What a presented token may do (`None`: not a token); with no tokens
    /// configured, everything.
    pub fn access(&self, presented: Option<&str>) -> Option<Access> {
        if !self.enabled() {
            return Some(Access::everything());
        }
        let token = self.find(presented?)?;
        Some(Access::of(token))
    }

    fn find(&self, presented: &str) -> Option<&TokenConfig> {
        // Compare every token in full, so timing does not tell how much matched.
        let mut found = None;
        for token in &self.tokens {
            if constant_time_eq(token.token.as_bytes(), presented.as_bytes()) {
                found = Some(token);
            }
        }
        found
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The namespace a path addresses: `/v1/namespaces/{ns}/...`.
fn path_namespace(path: &str) -> Option<&str> {
    let mut segments = path.trim_start_matches('/').split('/');
    match (segments.next(), segments.next(), segments.next()) {
        (Some("v1"), Some("namespaces"), Some(ns)) if !ns.is_empty() => Some(ns),
        _ => None,
    }
}

/// Middleware: checks the bearer token, its role against the method, and its namespaces.
pub async fn authorize(
    State(auth): State<std::sync::Arc<Auth>>,
    mut request: Request,
    next: Next,
) -> Response {
    // Error reports authenticate with their project's DSN key, not a bearer
    // token (Zipkin's `/api/v2/` is not theirs).
    let sentry = {
        let path = request.uri().path();
        path.starts_with("/api/") && !path.starts_with("/api/v2/")
    };
    if sentry {
        request.extensions_mut().insert(Access {
            namespaces: Some(Vec::new()),
            role: Role::Read,
            secrets: false,
            name: None,
        });
        return next.run(request).await;
    }
    if !auth.enabled() {
        request.extensions_mut().insert(Access::everything());
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(presented) = presented else {
        return unauthorized("this Sluice requires a token: send Authorization: Bearer TOKEN");
    };
    let Some(token) = auth.find(presented) else {
        return unauthorized("the bearer token is not valid");
    };
    // Node administration (backups) reads every namespace: admin tokens for all
    // namespaces only.
    if request.uri().path().starts_with("/v1/admin/")
        && (token.role < Role::Admin || !token.namespaces.iter().any(|n| n == "*"))
    {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "{} is for admin tokens covering every namespace (\"*\"); this is a {:?} token for {}",
                request.uri().path(),
                token.role,
                token.namespaces.join(", ")
            )
            .to_lowercase(),
        )
        .into_response();
    }
    let needed = match *request.method() {
        Method::GET | Method::HEAD | Method::OPTIONS => Role::Read,
        _ => Role::Write,
    };
    if token.role < needed {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "a {:?} token cannot {}; it needs the write role",
                token.role,
                request.method()
            )
            .to_lowercase(),
        )
        .into_response();
    }
    if let Some(namespace) = path_namespace(request.uri().path()) {
        if !token.covers(namespace) {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("this token does not cover namespace {namespace:?}"),
            )
            .into_response();
        }
    }
    request.extensions_mut().insert(Access::of(token));
    next.run(request).await
}

fn unauthorized(message: &str) -> Response {
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_from_paths() {
        assert_eq!(
            path_namespace("/v1/namespaces/team-a/services"),
            Some("team-a")
        );
        assert_eq!(path_namespace("/v1/sd/prometheus"), None);
        assert_eq!(path_namespace("/healthz"), None);
    }

    #[test]
    fn tokens_are_validated() {
        let token = |t: &str| TokenConfig {
            name: None,
            token: t.into(),
            role: Role::Read,
            namespaces: all_namespaces(),
            secrets: false,
        };
        assert!(token("short").validate().is_err());
        assert!(token("0123456789abcdef").validate().is_ok());
        assert!(
            constant_time_eq(b"abc", b"abc")
                && !constant_time_eq(b"abc", b"abd")
                && !constant_time_eq(b"a", b"ab")
        );
    }
}
