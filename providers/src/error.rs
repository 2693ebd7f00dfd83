//! The one error type every provider capability returns.
//!
//! Guarantees: the error names the provider that failed and classifies the
//! failure, so callers can decide on retries and fallbacks without matching on
//! provider-specific strings.

use std::fmt;

/// What went wrong talking to a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderErrorKind {
    /// No answer within the allowed time.
    Timeout,
    /// The provider answered with this non-success HTTP status.
    Status(u16),
    /// The provider refused because of a rate or concurrency limit.
    RateLimited,
    /// The provider's answer could not be understood.
    Malformed(String),
    /// The stream or session was already closed.
    Closed,
    /// Network-level failure (DNS, TLS, connection reset, ...).
    Transport(String),
    /// Our configuration for this provider is unusable (missing key, bad rule, ...).
    Config(String),
}

/// A failed provider call: which provider, and how it failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ProviderError {
    pub provider: &'static str,
    pub kind: ProviderErrorKind,
}

impl ProviderError {
    pub fn new(provider: &'static str, kind: ProviderErrorKind) -> Self {
        Self { provider, kind }
    }

    /// Whether trying the same request again later may succeed. Client errors
    /// and bad configuration never heal by themselves; server errors and
    /// throttling usually do.
    pub fn is_retryable(&self) -> bool {
        match &self.kind {
            ProviderErrorKind::Timeout | ProviderErrorKind::RateLimited | ProviderErrorKind::Transport(_) => true,
            ProviderErrorKind::Status(code) => *code >= 500 || *code == 408,
            ProviderErrorKind::Malformed(_) | ProviderErrorKind::Closed | ProviderErrorKind::Config(_) => false,
        }
    }
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.provider;
        match &self.kind {
            ProviderErrorKind::Timeout => write!(f, "{p}: timed out"),
            ProviderErrorKind::Status(code) => write!(f, "{p}: HTTP status {code}"),
            ProviderErrorKind::RateLimited => write!(f, "{p}: rate limited"),
            ProviderErrorKind::Malformed(why) => write!(f, "{p}: malformed response: {why}"),
            ProviderErrorKind::Closed => write!(f, "{p}: stream closed"),
            ProviderErrorKind::Transport(why) => write!(f, "{p}: transport error: {why}"),
            ProviderErrorKind::Config(why) => write!(f, "{p}: configuration error: {why}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_provider_and_kind() {
        let e = ProviderError::new("twilio", ProviderErrorKind::Status(404));
        assert_eq!(e.to_string(), "twilio: HTTP status 404");
        let e = ProviderError::new("rules", ProviderErrorKind::Config("rule 2: bad regex".into()));
        assert_eq!(e.to_string(), "rules: configuration error: rule 2: bad regex");
    }

    #[test]
    fn retryability_follows_the_kind() {
        let r = |k| ProviderError::new("x", k).is_retryable();
        assert!(r(ProviderErrorKind::Timeout));
        assert!(r(ProviderErrorKind::RateLimited));
        assert!(r(ProviderErrorKind::Transport("reset".into())));
        assert!(r(ProviderErrorKind::Status(503)));
        assert!(r(ProviderErrorKind::Status(408)));
        assert!(!r(ProviderErrorKind::Status(400)));
        assert!(!r(ProviderErrorKind::Status(404)));
        assert!(!r(ProviderErrorKind::Closed));
        assert!(!r(ProviderErrorKind::Malformed("x".into())));
        assert!(!r(ProviderErrorKind::Config("x".into())));
    }
}
