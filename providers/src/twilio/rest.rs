//! [`TwilioRest`]: the [`Telephony`] capability over Twilio's REST API,
//! `POST {base}/2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json`.
//!
//! Guarantees:
//! - `update_twiml` sends the form `Twiml=<document>` (the call leaves its
//!   current TwiML and runs this one); documents over Twilio's 4000-character
//!   limit are refused locally with a `Config` error, never sent.
//! - `hangup` sends `Status=completed`. A 404 means the call is already gone,
//!   which is what we wanted: it is `Ok`.
//! - Every request carries HTTP Basic auth `AccountSid:AuthToken`; the token
//!   is a [`SecretString`] and never printed by `Debug` or logged.
//! - Time is bounded: one exchange, retries and waits included, takes at most
//!   `timeout`; a timeout is final (the update may have been applied, and the
//!   budget is spent).
//! - Retries only for connection failures, 429 (honouring `Retry-After`) and
//!   5xx, per [`RetryPolicy`]; other 4xx are returned as `Status` at once.
//! - A success must be a Call resource (JSON with a `sid`); anything else is
//!   `Malformed`. Bodies are capped at 64 KiB. Twilio's error JSON
//!   (`code`, `message`) is logged at `warn` with the status.
//! - Call SIDs are checked to be letters and digits before they become part
//!   of a URL path.

use std::time::Duration;

use futures::future::BoxFuture;
use reqwest::{StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use switchboard_domain::ProviderCallId;
use tracing::{debug, warn};

use crate::capability::Telephony;
use crate::error::{ProviderError, ProviderErrorKind};
use crate::retry::{self, Failure, RetryPolicy};
use crate::twilio::twiml::Twiml;
use crate::twilio::webhook::AccountSid;

/// Twilio's API root.
pub const TWILIO_API_BASE: &str = "https://api.twilio.com";
/// Longest inline `Twiml` parameter Twilio accepts, in characters.
pub const MAX_TWIML_CHARS: usize = 4000;
/// Largest response body read.
const MAX_BODY: usize = 64 * 1024;
const PROVIDER: &str = "twilio";

/// Where and as whom to reach Twilio.
#[derive(Clone)]
pub struct TwilioRestConfig {
    /// API root, [`TWILIO_API_BASE`] unless testing.
    pub base_url: String,
    pub account_sid: AccountSid,
    pub auth_token: SecretString,
    /// Bound of one whole exchange, retries included.
    pub timeout: Duration,
    pub retry: RetryPolicy,
}

impl TwilioRestConfig {
    /// The real Twilio API, 10 s per exchange, default retries.
    pub fn new(account_sid: AccountSid, auth_token: SecretString) -> Self {
        Self {
            base_url: TWILIO_API_BASE.to_owned(),
            account_sid,
            auth_token,
            timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
        }
    }
}

impl std::fmt::Debug for TwilioRestConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioRestConfig")
            .field("base_url", &self.base_url)
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"[redacted]")
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .finish()
    }
}

/// Call control through Twilio's REST API. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TwilioRest {
    config: TwilioRestConfig,
    client: reqwest::Client,
    /// `{base}/2010-04-01/Accounts/{sid}/Calls/`, checked once.
    calls_url: Url,
}

/// The part of a Call resource we check.
#[derive(Deserialize)]
struct CallResource {
    sid: String,
    #[serde(default)]
    status: Option<String>,
}

/// Twilio's error body.
#[derive(Deserialize)]
struct TwilioErrorBody {
    code: Option<u32>,
    message: Option<String>,
}

impl TwilioRest {
    /// Checks the base URL; fails with a `Config` error naming `twilio`.
    pub fn new(config: TwilioRestConfig, client: reqwest::Client) -> Result<Self, ProviderError> {
        let bad = |why: String| ProviderError::new(PROVIDER, ProviderErrorKind::Config(why));
        let base = config.base_url.trim_end_matches('/');
        let calls_url = Url::parse(&format!(
            "{base}/2010-04-01/Accounts/{}/Calls/",
            config.account_sid.as_str()
        ))
        .map_err(|e| bad(format!("base_url {base:?}: {e}")))?;
        if !matches!(calls_url.scheme(), "http" | "https") {
            return Err(bad(format!(
                "base_url scheme must be http or https, not {}",
                calls_url.scheme()
            )));
        }
        Ok(Self {
            config,
            client,
            calls_url,
        })
    }

    fn err(kind: ProviderErrorKind) -> ProviderError {
        ProviderError::new(PROVIDER, kind)
    }

    fn call_url(&self, call: &ProviderCallId) -> Result<Url, ProviderError> {
        let sid = call.as_str();
        if sid.is_empty() || !sid.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(Self::err(ProviderErrorKind::Config(format!("not a call SID: {sid:?}"))));
        }
        self.calls_url
            .join(&format!("{sid}.json"))
            .map_err(|e| Self::err(ProviderErrorKind::Config(format!("call URL: {e}"))))
    }

    /// POSTs `form` to the call, retrying per the policy within `timeout`.
    /// `Ok(None)` when Twilio answered 404 (no such call).
    async fn update_call(
        &self,
        call: &ProviderCallId,
        form: &[(&str, &str)],
    ) -> Result<Option<CallResource>, ProviderError> {
        let url = self.call_url(call)?;
        let url = &url;
        let attempt = move |_| async move {
            let resp = self
                .client
                .post(url.clone())
                .basic_auth(
                    self.config.account_sid.as_str(),
                    Some(self.config.auth_token.expose_secret()),
                )
                .form(form)
                .send()
                .await
                .map_err(|e| retry::transport_error(PROVIDER, e))?;
            let status = resp.status();
            if status.is_success() {
                let body = retry::read_body_capped(PROVIDER, resp, MAX_BODY, self.config.timeout).await?;
                let call: CallResource = serde_json::from_slice(&body)
                    .map_err(|e| Failure::from(Self::err(ProviderErrorKind::Malformed(format!("call JSON: {e}")))))?;
                return Ok(Some(call));
            }
            let failure = retry::status_failure(PROVIDER, status, resp.headers());
            let body = retry::read_body_capped(PROVIDER, resp, MAX_BODY, self.config.timeout)
                .await
                .unwrap_or_default();
            let (code, message) = match serde_json::from_slice::<TwilioErrorBody>(&body) {
                Ok(e) => (e.code, e.message.unwrap_or_default()),
                Err(_) => (None, String::from_utf8_lossy(&body).chars().take(300).collect()),
            };
            if status == StatusCode::NOT_FOUND {
                debug!(code, message = %message, "Twilio: no such call");
                return Ok(None);
            }
            warn!(provider = PROVIDER, status = status.as_u16(), code, message = %message, "Twilio call update refused");
            Err(failure)
        };
        let exchange = retry::with_retries(self.config.retry, PROVIDER, attempt);
        tokio::time::timeout(self.config.timeout, exchange)
            .await
            .unwrap_or_else(|_| Err(Self::err(ProviderErrorKind::Timeout)))
    }
}

impl Telephony for TwilioRest {
    /// `Status=completed`; a call Twilio no longer knows (404) is already ended.
    fn hangup<'a>(&'a self, call: &'a ProviderCallId) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            match self.update_call(call, &[("Status", "completed")]).await? {
                Some(resource) => debug!(call = %resource.sid, status = ?resource.status, "hung up"),
                None => debug!(%call, "hangup: call already gone"),
            }
            Ok(())
        })
    }

    /// `Twiml=<document>`; a 404 is `Status(404)`: the call is gone and
    /// cannot run anything.
    fn update_twiml<'a>(
        &'a self,
        call: &'a ProviderCallId,
        twiml: &'a Twiml,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            let chars = twiml.as_str().chars().count();
            if chars > MAX_TWIML_CHARS {
                return Err(Self::err(ProviderErrorKind::Config(format!(
                    "TwiML of {chars} characters is over Twilio's {MAX_TWIML_CHARS}"
                ))));
            }
            match self.update_call(call, &[("Twiml", twiml.as_str())]).await? {
                Some(resource) => {
                    debug!(call = %resource.sid, status = ?resource.status, "call redirected to new TwiML");
                    Ok(())
                }
                None => Err(Self::err(ProviderErrorKind::Status(404))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rest(base: &str) -> Result<TwilioRest, ProviderError> {
        let sid = AccountSid::parse("AC0123456789abcdef0123456789abcdef").expect("sid");
        let mut config = TwilioRestConfig::new(sid, SecretString::from("token-very-secret"));
        config.base_url = base.to_owned();
        TwilioRest::new(config, reqwest::Client::new())
    }

    #[test]
    fn call_urls_are_built_and_checked() {
        let rest = rest("https://api.twilio.com/").expect("rest");
        let url = rest.call_url(&ProviderCallId::new("CAabc123")).expect("url");
        assert_eq!(
            url.as_str(),
            "https://api.twilio.com/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Calls/CAabc123.json"
        );
        for bad in ["", "../x", "CA 1", "CA%2F"] {
            let err = rest.call_url(&ProviderCallId::new(bad)).expect_err(bad);
            assert!(matches!(err.kind, ProviderErrorKind::Config(_)), "{err}");
        }
    }

    #[test]
    fn bad_base_urls_are_config_errors() {
        for base in ["not a url", "ftp://example.com"] {
            let err = rest(base).expect_err(base);
            assert!(matches!(err.kind, ProviderErrorKind::Config(_)), "{err}");
        }
    }

    #[test]
    fn debug_never_prints_the_token() {
        let printed = format!("{:?}", rest("https://api.twilio.com").expect("rest"));
        assert!(!printed.contains("very-secret"), "{printed}");
    }
}
