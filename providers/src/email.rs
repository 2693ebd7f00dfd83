//! Email delivery: the [`EmailSender`] capability and [`SendGrid`], its
//! SendGrid v3 Mail Send adapter (`POST {base}/v3/mail/send`).
//!
//! Guarantees:
//! - **Input is checked before anything is sent.** The key must be printable
//!   ASCII (it goes into a header) or the adapter is not built. Addresses must look like
//!   `local@domain` (no whitespace or control characters, at most 254 bytes),
//!   the subject must be one non-empty line and the text body non-empty;
//!   anything else is a `Config` error and no request is made.
//! - **Success means accepted.** Any 2xx (SendGrid answers `202 Accepted`) is
//!   success; the body is ignored.
//! - **Errors are typed.** `429` is `RateLimited`; `5xx` and `408` are
//!   `Status(code)` (both retryable: the caller's job queue tries again);
//!   any other status is a `Config` error whose text carries the status and
//!   SendGrid's `errors[].field`/`errors[].message` (bad key, unverified
//!   sender, invalid recipient: retrying cannot fix them). Network failures
//!   are `Transport`, a request that outlives `timeout` is `Timeout`.
//! - **Retries never duplicate mail.** Only answers that prove the message was
//!   not accepted are retried here: `429` and connection failures, at most
//!   `max_retries` times with doubling backoff. A timeout or `5xx` may follow
//!   an accepted message, so they are returned, not retried.
//! - **Time and memory are bounded.** Each attempt (head and error body) is
//!   bounded by `timeout`; at most 16 KiB of an error body is read.
//! - **The key never leaks.** It is a [`SecretString`] sent only as
//!   `Authorization: Bearer`, never logged and never printed by `Debug`.
//!   [`Email`]'s `Debug` leaves the bodies out (summaries are personal data).

use std::time::Duration;

use futures::future::BoxFuture;
use reqwest::{StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use tracing::warn;

use crate::error::{ProviderError, ProviderErrorKind};

/// SendGrid's global API root (EU subusers use `https://api.eu.sendgrid.com`).
pub const SENDGRID_API_BASE: &str = "https://api.sendgrid.com";

const PROVIDER: &str = "sendgrid";
/// Largest error body read from a refused request.
const MAX_ERROR_BODY: usize = 16 * 1024;
/// Longest SendGrid error text carried in a `Config` error.
const MAX_ERROR_TEXT: usize = 512;
/// Upper bound of one retry's backoff, whatever `max_retries` is.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// RFC 5321 limit of a forward path.
const MAX_ADDRESS_LEN: usize = 254;

/// Sends one email. Object-safe, so the engine can pick an adapter at runtime.
pub trait EmailSender: Send + Sync + 'static {
    /// Hands the email to the provider; `Ok` means the provider accepted it.
    fn send(&self, email: Email) -> BoxFuture<'_, Result<(), ProviderError>>;
}

/// One plain-text email to one recipient, with an optional HTML alternative.
#[derive(Clone, PartialEq, Eq)]
pub struct Email {
    pub to: String,
    /// Must be a sender identity verified with the provider.
    pub from: String,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

impl std::fmt::Debug for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Email")
            .field("to", &self.to)
            .field("from", &self.from)
            .field("subject", &self.subject)
            .field("text_len", &self.text.len())
            .field("html", &self.html.is_some())
            .finish()
    }
}

impl Email {
    /// Checks the fields the way [`SendGrid`] needs them; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        check_address("to", &self.to)?;
        check_address("from", &self.from)?;
        if self.subject.trim().is_empty() {
            return Err("subject must not be empty".into());
        }
        if self.subject.chars().any(char::is_control) {
            return Err("subject must be a single line".into());
        }
        if self.text.trim().is_empty() {
            return Err("text body must not be empty".into());
        }
        Ok(())
    }
}

fn check_address(field: &str, address: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("{field} address {why}"));
    if address.is_empty() || address.len() > MAX_ADDRESS_LEN {
        return bad("must have 1 to 254 bytes");
    }
    if address.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("must not contain whitespace");
    }
    match address.split_once('@') {
        Some((local, domain)) if !local.is_empty() && !domain.is_empty() && !domain.contains('@') => Ok(()),
        _ => bad("must look like name@domain"),
    }
}

/// Where and how to reach SendGrid.
#[derive(Clone)]
pub struct SendGridConfig {
    /// API root without the path, e.g. [`SENDGRID_API_BASE`] or a test fake's URL.
    pub base_url: String,
    pub api_key: SecretString,
    /// Bound of one attempt: until the response head, and reading an error body.
    pub timeout: Duration,
    /// Extra attempts after a `429` or a connection failure.
    pub max_retries: u32,
    /// Delay before the first retry; doubles on each further one (capped at 10 s).
    pub retry_backoff: Duration,
}

impl SendGridConfig {
    /// SendGrid's global endpoint with production timeouts and retries.
    pub fn new(api_key: SecretString) -> Self {
        Self {
            base_url: SENDGRID_API_BASE.to_owned(),
            api_key,
            timeout: Duration::from_secs(15),
            max_retries: 2,
            retry_backoff: Duration::from_millis(500),
        }
    }

    /// The same with another API root (EU region, test fakes).
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into();
        self
    }
}

impl std::fmt::Debug for SendGridConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendGridConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &"[REDACTED]")
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("retry_backoff", &self.retry_backoff)
            .finish()
    }
}

/// The SendGrid v3 Mail Send adapter.
pub struct SendGrid {
    config: SendGridConfig,
    client: reqwest::Client,
    endpoint: Url,
}

impl std::fmt::Debug for SendGrid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendGrid")
            .field("endpoint", &self.endpoint.as_str())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What one attempt ended with.
enum Attempt {
    Sent,
    /// The provider certainly did not accept the message: safe to send again.
    NotAccepted(ProviderError),
    /// Retrying here could send the message twice, or cannot help.
    Failed(ProviderError),
}

impl SendGrid {
    /// An adapter with its own HTTP client (5 s connect timeout).
    pub fn new(config: SendGridConfig) -> Result<Self, ProviderError> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| config_error(format!("cannot build HTTP client: {e}")))?;
        Self::with_client(config, client)
    }

    /// An adapter on a shared HTTP client. Fails when `base_url` is not an http(s) URL.
    pub fn with_client(config: SendGridConfig, client: reqwest::Client) -> Result<Self, ProviderError> {
        let key = config.api_key.expose_secret();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(config_error("api_key must be non-empty printable ASCII"));
        }
        let base = config.base_url.trim_end_matches('/');
        let endpoint =
            Url::parse(&format!("{base}/v3/mail/send")).map_err(|e| config_error(format!("base_url {base:?}: {e}")))?;
        if !matches!(endpoint.scheme(), "http" | "https") {
            return Err(config_error(format!(
                "base_url scheme must be http or https, not {}",
                endpoint.scheme()
            )));
        }
        Ok(Self {
            config,
            client,
            endpoint,
        })
    }

    fn backoff(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(16)).unwrap_or(u32::MAX);
        self.config.retry_backoff.saturating_mul(factor).min(MAX_BACKOFF)
    }

    async fn deliver(&self, email: Email) -> Result<(), ProviderError> {
        email.validate().map_err(config_error)?;
        let body = request_body(&email);
        let mut retry = 0;
        loop {
            let error = match self.attempt(&body).await {
                Attempt::Sent => return Ok(()),
                Attempt::Failed(error) => return Err(error),
                Attempt::NotAccepted(error) if retry >= self.config.max_retries => return Err(error),
                Attempt::NotAccepted(error) => error,
            };
            let wait = self.backoff(retry);
            retry += 1;
            warn!(provider = PROVIDER, %error, retry, ?wait, "email not accepted; retrying");
            tokio::time::sleep(wait).await;
        }
    }

    async fn attempt(&self, body: &serde_json::Value) -> Attempt {
        let request = self
            .client
            .post(self.endpoint.clone())
            .bearer_auth(self.config.api_key.expose_secret())
            .json(body)
            .send();
        let response = match tokio::time::timeout(self.config.timeout, request).await {
            Err(_) => return Attempt::Failed(err(ProviderErrorKind::Timeout)),
            Ok(Err(e)) if e.is_timeout() => return Attempt::Failed(err(ProviderErrorKind::Timeout)),
            // Refused or unreachable before the request was sent: nothing was accepted.
            Ok(Err(e)) if e.is_connect() => return Attempt::NotAccepted(transport(&e)),
            Ok(Err(e)) => return Attempt::Failed(transport(&e)),
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        if status.is_success() {
            return Attempt::Sent;
        }
        let body = read_limited(response, MAX_ERROR_BODY, self.config.timeout).await;
        let message = error_text(&body);
        warn!(provider = PROVIDER, status = status.as_u16(), message = %message, "email refused");
        match status {
            StatusCode::TOO_MANY_REQUESTS => Attempt::NotAccepted(err(ProviderErrorKind::RateLimited)),
            s if s.is_server_error() || s == StatusCode::REQUEST_TIMEOUT => {
                Attempt::Failed(err(ProviderErrorKind::Status(s.as_u16())))
            }
            s => Attempt::Failed(config_error(format!("refused with HTTP {}: {message}", s.as_u16()))),
        }
    }
}

impl EmailSender for SendGrid {
    fn send(&self, email: Email) -> BoxFuture<'_, Result<(), ProviderError>> {
        Box::pin(self.deliver(email))
    }
}

/// The Mail Send body: one personalization, `text/plain` before `text/html`.
fn request_body(email: &Email) -> serde_json::Value {
    let mut content = vec![json!({"type": "text/plain", "value": email.text})];
    if let Some(html) = &email.html {
        content.push(json!({"type": "text/html", "value": html}));
    }
    json!({
        "personalizations": [{"to": [{"email": email.to}]}],
        "from": {"email": email.from},
        "subject": email.subject,
        "content": content,
    })
}

fn err(kind: ProviderErrorKind) -> ProviderError {
    ProviderError::new(PROVIDER, kind)
}

fn config_error(why: impl Into<String>) -> ProviderError {
    err(ProviderErrorKind::Config(why.into()))
}

fn transport(e: &reqwest::Error) -> ProviderError {
    // reqwest's top-level text ("error sending request") hides the cause: walk the chain.
    let mut why = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        why.push_str(": ");
        why.push_str(&s.to_string());
        source = s.source();
    }
    err(ProviderErrorKind::Transport(why))
}

/// Reads at most `limit` bytes of a body, all within `deadline`; what arrived in time is kept.
async fn read_limited(mut response: reqwest::Response, limit: usize, deadline: Duration) -> Vec<u8> {
    let mut body = Vec::new();
    let read = async {
        while let Ok(Some(chunk)) = response.chunk().await {
            let room = limit.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() >= limit {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(deadline, read).await;
    body
}

/// SendGrid's `errors[]` as `field: message; ...`, else the body as text; capped.
fn error_text(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Envelope {
        errors: Vec<ErrorItem>,
    }
    #[derive(Deserialize)]
    struct ErrorItem {
        message: Option<String>,
        field: Option<String>,
    }
    let text = match serde_json::from_slice::<Envelope>(body) {
        Ok(envelope) if !envelope.errors.is_empty() => envelope
            .errors
            .iter()
            .map(|e| {
                let message = e.message.as_deref().unwrap_or("(no message)");
                match e.field.as_deref() {
                    Some(field) if !field.is_empty() => format!("{field}: {message}"),
                    _ => message.to_owned(),
                }
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ if body.is_empty() => "(empty body)".to_owned(),
        _ => String::from_utf8_lossy(body).into_owned(),
    };
    let mut text: String = text.chars().filter(|c| !c.is_control()).collect();
    if text.len() > MAX_ERROR_TEXT {
        let mut end = MAX_ERROR_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email() -> Email {
        Email {
            to: "owner@example.com".into(),
            from: "calls@example.net".into(),
            subject: "Call summary".into(),
            text: "Booked a table.".into(),
            html: None,
        }
    }

    #[test]
    fn validation_names_the_bad_field() {
        assert_eq!(email().validate(), Ok(()));
        let bad = |f: fn(&mut Email)| {
            let mut e = email();
            f(&mut e);
            e.validate().expect_err("invalid")
        };
        assert!(bad(|e| e.to = "nobody".into()).starts_with("to address"));
        assert!(bad(|e| e.to = "a b@example.com".into()).starts_with("to address"));
        assert!(bad(|e| e.from = "@example.com".into()).starts_with("from address"));
        assert!(bad(|e| e.from = "a@b@c".into()).starts_with("from address"));
        assert!(bad(|e| e.subject = "two\nlines".into()).starts_with("subject"));
        assert!(bad(|e| e.subject = " ".into()).starts_with("subject"));
        assert!(bad(|e| e.text = String::new()).starts_with("text"));
    }

    #[test]
    fn body_puts_plain_text_before_html() {
        let mut e = email();
        e.html = Some("<p>Booked</p>".into());
        let body = request_body(&e);
        assert_eq!(body["personalizations"][0]["to"][0]["email"], "owner@example.com");
        assert_eq!(body["from"]["email"], "calls@example.net");
        assert_eq!(body["content"][0]["type"], "text/plain");
        assert_eq!(body["content"][1]["type"], "text/html");
        assert_eq!(request_body(&email())["content"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn error_text_reads_sendgrid_errors_and_caps_length() {
        let body = br#"{"errors":[{"message":"does not match a verified Sender Identity","field":"from","help":null},{"message":"bad","field":null}]}"#;
        assert_eq!(error_text(body), "from: does not match a verified Sender Identity; bad");
        assert_eq!(error_text(b"oops"), "oops");
        assert_eq!(error_text(b""), "(empty body)");
        let long = "é".repeat(1000);
        let capped = error_text(long.as_bytes());
        assert!(capped.len() <= MAX_ERROR_TEXT + '…'.len_utf8());
    }

    #[test]
    fn debug_never_prints_the_key_or_bodies() {
        let config = SendGridConfig::new(SecretString::from("SG.very-secret".to_owned()));
        assert!(!format!("{config:?}").contains("very-secret"));
        let sendgrid = SendGrid::new(config).expect("adapter");
        assert!(!format!("{sendgrid:?}").contains("very-secret"));
        assert!(!format!("{:?}", email()).contains("Booked"));
    }

    #[test]
    fn bad_base_urls_are_config_errors() {
        let config = |base: &str| SendGridConfig::new(SecretString::from("k".to_owned())).with_base_url(base);
        for base in ["not a url", "ftp://example.com"] {
            let e = SendGrid::new(config(base)).expect_err(base);
            assert!(matches!(e.kind, ProviderErrorKind::Config(_)), "{base}: {e}");
        }
        let ok = SendGrid::new(config("http://127.0.0.1:9/")).expect("ok");
        assert_eq!(ok.endpoint.as_str(), "http://127.0.0.1:9/v3/mail/send");
    }
}
