//! `/twilio/*`: the voice, status and recording webhooks and the Media
//! Streams socket.
//!
//! Guarantees:
//! - Every route shares one per-IP bucket (`limits.webhook_per_second`,
//!   `429 rate_limited`) and answers `503 not_ready` JSON when this node runs
//!   without call services ([`AppState::with_calls`]).
//! - A webhook is acted on only after its `X-Twilio-Signature` validates
//!   against the owning tenant's Twilio auth token, over
//!   `http.public_base_url` + path (+ `?query`): form bodies and JSON bodies
//!   signed with `bodySHA256` are both accepted. A bad or missing signature is
//!   `403 forbidden` and stores nothing.
//! - A media socket starts a call actor only for a `start` whose
//!   `customParameters` carry a valid, unexpired [`token`] for that call.
//!
//! # Layout
//! - [`webhooks`]: `POST /twilio/voice`, `/twilio/status`, `/twilio/recording`.
//! - [`media`]: `GET /twilio/media`, the socket task that shuttles frames to
//!   the call actor and its playback back to Twilio.
//! - [`token`]: the signed, short-lived media-stream tokens.

pub mod media;
pub mod token;
pub mod webhooks;

use crate::error::ApiError;
use crate::rate_limit::client_ip;
use crate::state::{AppState, CallServices};
use axum::Router;
use axum::body::Bytes;
use axum::extract::FromRequestParts;
use axum::routing::{get, post};
use http::{HeaderMap, Uri, header};
use std::sync::Arc;
use switchboard_domain::{CredentialKind, TenantId};
use switchboard_providers::twilio::signature;

/// The Twilio routes, merged at the top level of the router.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/twilio/voice", post(webhooks::voice))
        .route("/twilio/status", post(webhooks::status))
        .route("/twilio/recording", post(webhooks::recording))
        .route("/twilio/media", get(media::media))
}

/// Extractor for every `/twilio/*` handler: takes one token from the
/// client's webhook bucket (`429` when empty), then requires call services
/// (`503` when absent). Runs before the body is read.
pub(crate) struct Telephony {
    pub state: AppState,
    pub calls: Arc<CallServices>,
}

impl FromRequestParts<AppState> for Telephony {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut http::request::Parts, state: &AppState) -> Result<Self, ApiError> {
        // The same limiter the webhook layer uses elsewhere, applied here
        // because the router merges these routes without access to the state.
        state.inner.webhook_limiter.check(client_ip(&parts.extensions))?;
        let Some(calls) = state.calls.clone() else {
            tracing::warn!(path = %parts.uri.path(), "twilio request on a node without call services");
            return Err(ApiError::NotReady("telephony is not enabled on this node".into()));
        };
        Ok(Telephony {
            state: state.clone(),
            calls,
        })
    }
}

/// A webhook request as Twilio signed it: the public URL, the form pairs
/// (also for JSON bodies, flattened, so the typed parsers apply) and the
/// raw body when it was JSON.
pub(crate) struct SignedRequest {
    url: String,
    pub pairs: Vec<(String, String)>,
    json_body: Option<Bytes>,
    signature: Option<String>,
}

impl SignedRequest {
    /// Parses the body by `Content-Type`: `application/json` (an object of
    /// scalar fields) or, otherwise, `application/x-www-form-urlencoded`.
    pub fn parse(public_base_url: &str, uri: &Uri, headers: &HeaderMap, body: Bytes) -> Result<Self, ApiError> {
        let path_and_query = uri.path_and_query().map(|pq| pq.as_str()).unwrap_or(uri.path());
        let url = format!("{public_base_url}{path_and_query}");
        let signature = headers
            .get("x-twilio-signature")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let is_json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .eq_ignore_ascii_case("application/json")
            })
            .unwrap_or(false);
        let (pairs, json_body) = if is_json {
            (json_pairs(&body)?, Some(body))
        } else {
            let pairs = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body)
                .map_err(|_| ApiError::BadRequest("the body is not a valid form".into()))?;
            (pairs, None)
        };
        Ok(Self {
            url,
            pairs,
            json_body,
            signature,
        })
    }

    /// True when `X-Twilio-Signature` is valid for `auth_token` (form: URL +
    /// sorted params; JSON: URL with a `bodySHA256` matching the body).
    pub fn is_signed_by(&self, auth_token: &str) -> bool {
        let Some(sig) = self.signature.as_deref() else {
            return false;
        };
        match &self.json_body {
            Some(body) => signature::validate_json(auth_token, &self.url, body, sig),
            None => signature::validate(auth_token, &self.url, &self.pairs, sig),
        }
    }

    /// Checks the signature against `tenant`'s Twilio credential (kind
    /// `twilio`, secret `auth_token`, optional public `account_sid` that must
    /// match the request's). Any failure is `403` and a warning.
    pub async fn authenticate(&self, state: &AppState, tenant: TenantId, account_sid: &str) -> Result<(), ApiError> {
        let found = state
            .store()
            .credentials()
            .find_by_kind(tenant, CredentialKind::Twilio)
            .await?;
        let Some((credential, secrets)) = found else {
            tracing::warn!(%tenant, url = %self.url, "twilio webhook refused: tenant has no twilio credential");
            return Err(ApiError::Forbidden);
        };
        let Some(token) = secrets.get("auth_token") else {
            tracing::warn!(%tenant, credential_id = %credential.id, "twilio webhook refused: credential has no auth_token");
            return Err(ApiError::Forbidden);
        };
        if !self.is_signed_by(token.expose()) {
            tracing::warn!(
                %tenant,
                url = %self.url,
                signature_present = self.signature.is_some(),
                "twilio webhook refused: bad or missing X-Twilio-Signature"
            );
            return Err(ApiError::Forbidden);
        }
        let expected = credential.public.get("account_sid").and_then(|v| v.as_str());
        if let Some(expected) = expected.filter(|e| *e != account_sid) {
            tracing::warn!(%tenant, %expected, got = %account_sid, "twilio webhook refused: AccountSid mismatch");
            return Err(ApiError::Forbidden);
        }
        Ok(())
    }
}

/// Flattens a JSON object of scalars into form pairs (strings as-is,
/// numbers and booleans in their JSON spelling, nulls skipped).
fn json_pairs(body: &[u8]) -> Result<Vec<(String, String)>, ApiError> {
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(body).map_err(|_| ApiError::InvalidJson("the body is not a JSON object".into()))?;
    let mut pairs = Vec::with_capacity(map.len());
    for (key, value) in map {
        match value {
            serde_json::Value::Null => {}
            serde_json::Value::String(s) => pairs.push((key, s)),
            serde_json::Value::Bool(_) | serde_json::Value::Number(_) => pairs.push((key, value.to_string())),
            serde_json::Value::Array(_) | serde_json::Value::Object(_) => {
                return Err(ApiError::Validation(format!("field `{key}` must be a scalar")));
            }
        }
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_bodies_flatten_to_form_pairs() {
        let mut pairs = json_pairs(br#"{"CallSid":"CA1","SequenceNumber":3,"Flag":true,"Gone":null}"#).expect("pairs");
        // Key order depends on serde_json's `preserve_order` feature; the signature sorts anyway.
        pairs.sort();
        assert_eq!(
            pairs,
            vec![
                ("CallSid".to_owned(), "CA1".to_owned()),
                ("Flag".to_owned(), "true".to_owned()),
                ("SequenceNumber".to_owned(), "3".to_owned()),
            ]
        );
        assert_eq!(json_pairs(b"[1]").unwrap_err().code(), "invalid_json");
        assert_eq!(json_pairs(br#"{"a":{"b":1}}"#).unwrap_err().code(), "validation_failed");
    }
}
