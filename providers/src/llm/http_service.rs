//! The HTTP service under the `async-openai` client.
//!
//! `async-openai`'s default executor wraps reqwest in its own retry layer,
//! which retries 429 and 5xx up to three times and waits out any
//! `Retry-After` with no cap: a 429 asking for 30 s means 30 s of silence
//! on a live call. [`HttpService`] is plain reqwest instead, so every retry
//! decision is the agent's (see the parent module).
//!
//! Guarantees:
//! - One request per call: nothing is retried or delayed here.
//! - A non-success response becomes a [`Refusal`] (inside
//!   `OpenAIError::Boxed`) that keeps what `async-openai`'s `ApiError` drops:
//!   the `Retry-After` of a 429 or 503. Its body is read up to
//!   [`MAX_REFUSAL_BODY`] bytes for the message and for `insufficient_quota`.

use std::task::{Context, Poll};
use std::time::Duration;

use async_openai::error::OpenAIError;
use async_openai::middleware::HttpRequestFactory;
use futures::future::BoxFuture;
use serde_json::Value;

use crate::retry::retry_after;

/// Largest refusal body read; the rest is ignored.
pub const MAX_REFUSAL_BODY: usize = 64 * 1024;

/// OpenAI's `type` / `code` for an account out of credit: a 429 that no
/// wait heals.
const INSUFFICIENT_QUOTA: &str = "insufficient_quota";

/// reqwest without a retry layer; see the module docs.
#[derive(Clone, Debug)]
pub struct HttpService {
    client: reqwest013::Client,
}

impl HttpService {
    /// Sends through `client`; the agent bounds every request with its own
    /// deadlines.
    pub fn new(client: reqwest013::Client) -> Self {
        Self { client }
    }
}

/// An `async-openai` client over [`HttpService`]: every request is sent
/// once, and a refusal comes back as a [`Refusal`] inside
/// `OpenAIError::Boxed`. For users outside the agent (the post-call summary).
pub fn client_without_retries<C: async_openai::config::Config>(config: C) -> Result<async_openai::Client<C>, String> {
    let http = reqwest013::Client::builder()
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
    Ok(async_openai::Client::build(http.clone(), config).with_http_service(HttpService::new(http)))
}

impl tower::Service<HttpRequestFactory> for HttpService {
    type Response = reqwest013::Response;
    type Error = OpenAIError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: HttpRequestFactory) -> Self::Future {
        let client = self.client.clone();
        Box::pin(async move {
            let request = request.build().await?;
            let response = client.execute(request).await.map_err(OpenAIError::Reqwest)?;
            if response.status().is_success() {
                return Ok(response);
            }
            Err(OpenAIError::Boxed(Box::new(Refusal::read(response).await)))
        })
    }
}

/// A non-success HTTP answer from the model's server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("HTTP status {status}: {message}")]
pub struct Refusal {
    pub status: u16,
    /// The server's `Retry-After`, kept for 429 and 503 only.
    pub retry_after: Option<Duration>,
    /// The error's `type` or `code` is `insufficient_quota`.
    pub insufficient_quota: bool,
    /// The error's `message`, else the body as text.
    pub message: String,
}

impl Refusal {
    async fn read(mut response: reqwest013::Response) -> Self {
        let status = response.status().as_u16();
        let retry_after = match status {
            429 | 503 => retry_after(response.headers()),
            _ => None,
        };
        // The body only explains the status: a body that breaks off or is
        // too long leaves what arrived, never a different error.
        let mut body = Vec::new();
        while let Ok(Some(chunk)) = response.chunk().await {
            let room = MAX_REFUSAL_BODY - body.len();
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() == MAX_REFUSAL_BODY {
                break;
            }
        }
        Self::from_body(status, retry_after, &body)
    }

    /// Reads OpenAI's `{"error": {...}}`, or the `[{"error": {...}}]` some
    /// compatible servers (Gemini's among them) answer with.
    pub fn from_body(status: u16, retry_after: Option<Duration>, body: &[u8]) -> Self {
        let json = serde_json::from_slice::<Value>(body).unwrap_or(Value::Null);
        let error = json
            .get("error")
            .or_else(|| json.get(0).and_then(|first| first.get("error")));
        let field = |name: &str| error.and_then(|e| e.get(name)).and_then(Value::as_str);
        let insufficient_quota = [field("type"), field("code")].contains(&Some(INSUFFICIENT_QUOTA));
        let message = field("message")
            .map(str::to_owned)
            .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
        Self {
            status,
            retry_after,
            insufficient_quota,
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_bodies_are_read_in_both_shapes() {
        let quota = br#"{"error": {"message": "You exceeded your current quota", "type": "insufficient_quota", "param": null, "code": "insufficient_quota"}}"#;
        let r = Refusal::from_body(429, None, quota);
        assert!(r.insufficient_quota);
        assert_eq!(r.message, "You exceeded your current quota");

        let limited = br#"{"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}}"#;
        assert!(!Refusal::from_body(429, None, limited).insufficient_quota);

        let code_only = br#"[{"error": {"code": "insufficient_quota", "message": "no credit"}}]"#;
        let r = Refusal::from_body(429, None, code_only);
        assert!(r.insufficient_quota);
        assert_eq!(r.message, "no credit");

        let plain = Refusal::from_body(502, None, b"Bad Gateway");
        assert_eq!(
            (plain.message.as_str(), plain.insufficient_quota),
            ("Bad Gateway", false)
        );
    }
}
