//! Media-stream tokens: proof that a `/twilio/media` socket was sent by the
//! TwiML we answered for that call.
//!
//! A token is `<expiry_unix>.<base64url(HMAC-SHA256(key, "<call_id>.<expiry_unix>"))>`.
//! Guarantees: a token verifies only for the call ID it was issued for and
//! only until its expiry (whole seconds, inclusive); the MAC is compared in
//! constant time; the key is derived from the JWT secret under its own label
//! (see [`crate::state`]) and never printed.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::Duration;
use switchboard_domain::CallId;

/// Why a stream token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed stream token")]
    Malformed,
    #[error("stream token expired")]
    Expired,
    #[error("stream token does not match the call")]
    BadSignature,
}

/// Issues and checks stream tokens. Cheap to clone.
#[derive(Clone)]
pub struct StreamTokens {
    mac: Hmac<Sha256>,
    ttl: Duration,
}

impl std::fmt::Debug for StreamTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamTokens")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl StreamTokens {
    /// `key` is the derived token key; `ttl` the lifetime of issued tokens.
    /// (HMAC accepts keys of any length; the error exists only in the type.)
    pub fn new(key: &[u8], ttl: Duration) -> Result<Self, hmac::digest::InvalidLength> {
        Ok(Self {
            mac: Hmac::<Sha256>::new_from_slice(key)?,
            ttl,
        })
    }

    /// A token for `call` valid for the configured TTL from `now_unix`.
    pub fn issue(&self, call: CallId, now_unix: i64) -> String {
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        let expiry = now_unix.saturating_add(ttl);
        let sig = self.sign(call, expiry);
        format!("{expiry}.{}", B64URL.encode(sig))
    }

    /// Checks `token` for `call` at `now_unix`.
    pub fn verify(&self, call: CallId, token: &str, now_unix: i64) -> Result<(), TokenError> {
        let (expiry, sig) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let expiry: i64 = expiry.parse().map_err(|_| TokenError::Malformed)?;
        let sig = B64URL.decode(sig).map_err(|_| TokenError::Malformed)?;
        let mut mac = self.mac.clone();
        mac.update(message(call, expiry).as_bytes());
        // Check the MAC before the expiry so a forged token never learns more than "bad".
        mac.verify_slice(&sig).map_err(|_| TokenError::BadSignature)?;
        if now_unix > expiry {
            return Err(TokenError::Expired);
        }
        Ok(())
    }

    fn sign(&self, call: CallId, expiry: i64) -> Vec<u8> {
        let mut mac = self.mac.clone();
        mac.update(message(call, expiry).as_bytes());
        mac.finalize().into_bytes().to_vec()
    }
}

fn message(call: CallId, expiry: i64) -> String {
    format!("{call}.{expiry}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> StreamTokens {
        StreamTokens::new(b"test key", Duration::from_secs(60)).expect("key")
    }

    #[test]
    fn verifies_for_its_call_until_expiry() {
        let t = tokens();
        let call = CallId::new();
        let token = t.issue(call, 1_000);
        assert_eq!(t.verify(call, &token, 1_000), Ok(()));
        assert_eq!(t.verify(call, &token, 1_060), Ok(()));
        assert_eq!(t.verify(call, &token, 1_061), Err(TokenError::Expired));
        assert_eq!(t.verify(CallId::new(), &token, 1_000), Err(TokenError::BadSignature));
    }

    #[test]
    fn rejects_tampering_and_other_keys() {
        let t = tokens();
        let call = CallId::new();
        let token = t.issue(call, 1_000);
        let (_, sig) = token.split_once('.').expect("dot");
        // Extending the expiry invalidates the MAC.
        assert_eq!(
            t.verify(call, &format!("99999.{sig}"), 1_000),
            Err(TokenError::BadSignature)
        );
        let other = StreamTokens::new(b"other key", Duration::from_secs(60)).expect("key");
        assert_eq!(other.verify(call, &token, 1_000), Err(TokenError::BadSignature));
        assert_eq!(t.verify(call, "garbage", 1_000), Err(TokenError::Malformed));
        assert_eq!(t.verify(call, "12.%%%", 1_000), Err(TokenError::Malformed));
        assert_eq!(t.verify(call, "", 1_000), Err(TokenError::Malformed));
    }
}
