//! A client of Sluice's admin API, for everything that talks to a control plane:
//! the command line, the agent, the standalone gateway (following and pushing
//! metrics) and tests.
//!
//! A [`ControlPlane`] holds one or more control-plane URLs and an optional bearer
//! token. [`ControlPlane::request`] tries the nodes in turn, starting at the one
//! that answered last, until one answers: a node that cannot be reached or answers
//! 5xx is skipped (and the next call starts after it); a 4xx is the caller's
//! mistake and is returned at once, decoded from the API's
//! `{"error": {"code", "message"}}` as [`ClientError::Api`].
//! [`ControlPlane::request_once`] asks the current node only (for long polls that
//! retry on their own).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use sluice_client::{ClientError, ControlPlane, Method};
//!
//! // Nothing listens on the first node; the second answers like the admin API.
//! let dead = format!("http://127.0.0.1:{}", sluice_testkit::free_port());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let live = format!("http://{}", listener.local_addr()?);
//! let api = axum::Router::new()
//!     .route("/v1/ok", axum::routing::get(|| async { axum::Json(serde_json::json!({"up": true})) }))
//!     .fallback(|| async {
//!         (axum::http::StatusCode::NOT_FOUND,
//!          axum::Json(serde_json::json!({"error": {"code": "not_found", "message": "no such thing"}})))
//!     });
//! tokio::spawn(async move { axum::serve(listener, api).await });
//!
//! let control = ControlPlane::new(vec![dead, live], None, Duration::from_secs(5))?;
//! let answer = control.request(Method::GET, "/v1/ok", None).await?;
//! assert_eq!(answer.json::<serde_json::Value>()?["up"], true);
//! match control.request(Method::GET, "/v1/nothing", None).await {
//!     Err(ClientError::Api { status, code, .. }) => assert_eq!((status, code.as_str()), (404, "not_found")),
//!     other => panic!("{other:?}"),
//! }
//! # Ok(())
//! # }
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub use reqwest::Method;
use serde::de::DeserializeOwned;

/// What can go wrong talking to the control plane.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No control-plane URL was given.
    #[error("no control-plane URL given")]
    NoControl,
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Build(String),
    /// No node answered; `url` is the last one tried.
    #[error("{url}: {reason}")]
    Unreachable {
        /// The last URL tried.
        url: String,
        /// Why it did not answer.
        reason: String,
    },
    /// The node failed (5xx), with the API's error code and message; the next
    /// node is tried.
    #[error("{status}: {message}")]
    Server {
        /// The URL asked.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The API's error code (empty when the answer had none).
        code: String,
        /// The API's message (or the answer's text).
        message: String,
    },
    /// The API refused the request (4xx), with its error code and message.
    #[error("{status}: {message}")]
    Api {
        /// The URL asked.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The API's error code (`not_found`, `invalid`, ...; empty when the answer had none).
        code: String,
        /// The API's message (or the answer's text).
        message: String,
    },
    /// The answer was not the JSON expected.
    #[error("{url}: unreadable answer: {reason}")]
    Decode {
        /// The URL asked.
        url: String,
        /// What did not parse.
        reason: String,
    },
}

/// A node's answer: a success from [`ControlPlane::request`], any status from
/// [`ControlPlane::exchange`].
#[derive(Debug, Clone)]
pub struct Answer {
    /// The URL that answered.
    pub url: String,
    /// Its status (2xx from `request`).
    pub status: u16,
    /// The `X-Sluice-Index` of a blocking query, when the answer has one.
    pub index: Option<u64>,
    /// The body.
    pub body: bytes::Bytes,
}

impl Answer {
    /// The body as JSON of type `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ClientError> {
        serde_json::from_slice(&self.body).map_err(|e| ClientError::Decode {
            url: self.url.clone(),
            reason: e.to_string(),
        })
    }
}

/// One or more control-plane nodes, asked in turn.
#[derive(Debug)]
pub struct ControlPlane {
    nodes: Vec<String>,
    token: Option<String>,
    http: reqwest::Client,
    current: AtomicUsize,
}

impl ControlPlane {
    /// A client of `nodes` (base URLs such as `http://10.0.0.1:7700`), sending
    /// `token` as a bearer token when set; each request gives up after `timeout`.
    pub fn new(
        nodes: Vec<String>,
        token: Option<String>,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        if nodes.is_empty() {
            return Err(ClientError::NoControl);
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| ClientError::Build(e.to_string()))?;
        Ok(ControlPlane {
            nodes: nodes
                .into_iter()
                .map(|url| url.trim_end_matches('/').to_owned())
                .collect(),
            token,
            http,
            current: AtomicUsize::new(0),
        })
    }

    /// The nodes, as given (without trailing slashes).
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// Sends the request to each node at most once, starting at the current one,
    /// until one answers below 500. A 2xx is the answer; a 4xx is
    /// [`ClientError::Api`]; when every node failed, the last failure.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Answer, ClientError> {
        let mut last = None;
        for _ in 0..self.nodes.len() {
            match self.request_once(method.clone(), path, body).await {
                Err(error @ (ClientError::Unreachable { .. } | ClientError::Server { .. })) => {
                    tracing::warn!(%error, "control plane did not answer; trying the next node");
                    last = Some(error);
                }
                outcome => return outcome,
            }
        }
        Err(last.unwrap_or(ClientError::NoControl))
    }

    /// Sends the request to the current node only; when it cannot be reached or
    /// answers 5xx, the next call goes to the next node.
    pub async fn request_once(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Answer, ClientError> {
        let node = self.current.load(Ordering::Relaxed) % self.nodes.len();
        let url = format!("{}{path}", self.nodes[node]);
        let outcome = self.send(method, &url, body).await;
        if matches!(
            outcome,
            Err(ClientError::Unreachable { .. } | ClientError::Server { .. })
        ) {
            self.fail_over_from(node);
        }
        outcome
    }

    /// Node `node` failed: the next call goes to the one after it (unless another
    /// call moved on already).
    fn fail_over_from(&self, node: usize) {
        let _ = self.current.compare_exchange(
            node,
            (node + 1) % self.nodes.len(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// GETs `path` from the first node that answers 2xx (failing over as
    /// [`request`](Self::request) does) and hands its body over as it arrives,
    /// for answers too large to hold (a backup). Per-request timeouts still apply
    /// to the whole transfer.
    pub async fn download(
        &self,
        path: &str,
    ) -> Result<impl futures::Stream<Item = Result<bytes::Bytes, ClientError>>, ClientError> {
        let mut last = None;
        for _ in 0..self.nodes.len() {
            let node = self.current.load(Ordering::Relaxed) % self.nodes.len();
            let url = format!("{}{path}", self.nodes[node]);
            let mut request = self.http.get(&url);
            if let Some(token) = &self.token {
                request = request.bearer_auth(token);
            }
            let failure = match request.send().await {
                Ok(response) if response.status().is_success() => {
                    use futures::StreamExt;
                    return Ok(response.bytes_stream().map(move |chunk| {
                        chunk.map_err(|e| ClientError::Unreachable {
                            url: url.clone(),
                            reason: e.to_string(),
                        })
                    }));
                }
                Ok(response) => {
                    let status = response.status().as_u16();
                    let body = response.bytes().await.unwrap_or_default();
                    api_error(&url, status, &body)
                }
                Err(error) => ClientError::Unreachable {
                    url: url.clone(),
                    reason: error.to_string(),
                },
            };
            if !matches!(
                failure,
                ClientError::Unreachable { .. } | ClientError::Server { .. }
            ) {
                return Err(failure);
            }
            self.fail_over_from(node);
            last = Some(failure);
        }
        Err(last.unwrap_or(ClientError::NoControl))
    }

    /// Sends `body` (JSON text, sent as `application/json` whatever it holds)
    /// to the current node and returns the answer whatever its status: only a
    /// node that cannot be reached is an error. For tools and tests that read
    /// error answers themselves; no failover.
    pub async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<bytes::Bytes>,
    ) -> Result<Answer, ClientError> {
        let node = self.current.load(Ordering::Relaxed) % self.nodes.len();
        let url = format!("{}{path}", self.nodes[node]);
        self.exchange_at(method, &url, body).await
    }

    async fn exchange_at(
        &self,
        method: Method,
        url: &str,
        body: Option<bytes::Bytes>,
    ) -> Result<Answer, ClientError> {
        let mut request = self.http.request(method, url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let unreachable = |reason: String| ClientError::Unreachable {
            url: url.to_owned(),
            reason,
        };
        let response = request
            .send()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let status = response.status().as_u16();
        let index = response
            .headers()
            .get("x-sluice-index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let body = response
            .bytes()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(Answer {
            url: url.to_owned(),
            status,
            index,
            body,
        })
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Answer, ClientError> {
        let body = match body {
            Some(value) => Some(bytes::Bytes::from(
                serde_json::to_vec(value).map_err(|e| ClientError::Build(e.to_string()))?,
            )),
            None => None,
        };
        let answer = self.exchange_at(method, url, body).await?;
        match answer.status {
            // 304: a watch that ended with nothing new, an answer like any other.
            200..=299 | 304 => Ok(answer),
            status => Err(api_error(url, status, &answer.body)),
        }
    }
}

/// Decodes `{"error": {"code", "message"}}` (another body is the message as
/// text): [`ClientError::Server`] for a 5xx, [`ClientError::Api`] otherwise.
fn api_error(url: &str, status: u16, body: &[u8]) -> ClientError {
    let value: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| {
        value
            .as_ref()
            .and_then(|v| v.get("error")?.get(name)?.as_str())
            .map(str::to_owned)
    };
    let (url, code) = (url.to_owned(), field("code").unwrap_or_default());
    let message =
        field("message").unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned());
    if status >= 500 {
        ClientError::Server {
            url,
            status,
            code,
            message,
        }
    } else {
        ClientError::Api {
            url,
            status,
            code,
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_are_decoded_and_other_bodies_kept_as_text() {
        let decoded = api_error(
            "u",
            400,
            br#"{"error": {"code": "invalid", "message": "spec.rate: bad"}}"#,
        );
        assert!(
            matches!(&decoded, ClientError::Api { code, message, .. } if code == "invalid" && message == "spec.rate: bad"),
            "{decoded:?}"
        );
        let text = api_error("u", 404, b"nothing here\n");
        assert!(
            matches!(&text, ClientError::Api { code, message, .. } if code.is_empty() && message == "nothing here"),
            "{text:?}"
        );
    }

    #[test]
    fn no_nodes_is_an_error() {
        assert!(matches!(
            ControlPlane::new(Vec::new(), None, Duration::from_secs(1)),
            Err(ClientError::NoControl)
        ));
    }
}
