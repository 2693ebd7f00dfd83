//! Bounded retries with jittered exponential backoff, and the HTTP helpers
//! every REST adapter shares.
//!
//! Guarantees:
//! - [`with_retries`] makes at most [`RetryPolicy::max_attempts`] attempts and
//!   retries only errors whose [`ProviderError::is_retryable`] is true; any
//!   other error is returned at once. It never sleeps after the last attempt.
//! - Each wait is at least half and at most all of
//!   `min(base_delay * 2^retry, max_delay)` (equal jitter), so many calls that
//!   failed together do not retry together.
//! - A server's `Retry-After` (on 429 and 503) replaces the computed wait. A
//!   `Retry-After` longer than `max_delay` is not waited out: on a live call
//!   the error is returned instead.
//! - [`read_body_capped`] never buffers more than its cap: a larger body is
//!   [`ProviderErrorKind::Malformed`], a body that stops arriving is
//!   [`ProviderErrorKind::Timeout`].
//! - Transport errors are mapped without the request URL, so query-string
//!   credentials can never reach a log line through an error message.
//!
//! Whether an operation may be repeated at all (idempotence, audio already
//! handed out) is the caller's decision: only wrap what is safe to re-send.

use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use tracing::warn;

use crate::error::{ProviderError, ProviderErrorKind};

/// How often and how patiently to retry one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included; `0` is treated as `1`.
    pub max_attempts: u32,
    /// Wait ceiling before the first retry; doubles per retry.
    pub base_delay: Duration,
    /// Upper bound of any single wait, including a server's `Retry-After`.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// Three attempts, 200 ms doubling, at most 5 s per wait.
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// One attempt, no retries.
    pub fn no_retries() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The wait ceiling before retry number `retry` (0-based):
    /// `min(base_delay * 2^retry, max_delay)`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// The jittered wait before retry number `retry`: within
    /// `[ceiling / 2, ceiling]`, chosen by `unit` in `[0, 1]`.
    fn jittered(&self, retry: u32, unit: f64) -> Duration {
        let ceiling = self.ceiling(retry);
        let half = ceiling / 2;
        half + (ceiling - half).mul_f64(unit.clamp(0.0, 1.0))
    }
}

/// A random number in `[0, 1]`. Jitter needs no cryptographic quality, only
/// different values across calls: std's per-instance random hasher keys give
/// that without another dependency.
fn random_unit() -> f64 {
    let bits = RandomState::new().hash_one(std::time::Instant::now());
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// A failed attempt: the error, and how long the server asked us to wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub error: ProviderError,
    /// The server's `Retry-After`, if it sent one.
    pub retry_after: Option<Duration>,
}

impl From<ProviderError> for Failure {
    fn from(error: ProviderError) -> Self {
        Self {
            error,
            retry_after: None,
        }
    }
}

/// Runs `op` until it succeeds, fails with an error that is not retryable, or
/// `policy.max_attempts` attempts were made; returns the last error then.
/// `op` gets the 0-based attempt number. `provider` names the provider in logs.
///
/// Bound the whole exchange with `tokio::time::timeout` around this call:
/// waits count against it like attempts do.
pub async fn with_retries<T, F, Fut>(policy: RetryPolicy, provider: &'static str, op: F) -> Result<T, ProviderError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    retry_loop(&policy, provider, op, tokio::time::sleep).await
}

/// [`with_retries`] with the wait injected, so tests see every wait chosen
/// without a clock.
async fn retry_loop<T, F, Fut, S, SFut>(
    policy: &RetryPolicy,
    provider: &'static str,
    mut op: F,
    mut sleep: S,
) -> Result<T, ProviderError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
    S: FnMut(Duration) -> SFut,
    SFut: Future<Output = ()>,
{
    let max_attempts = policy.max_attempts.max(1);
    let mut attempt = 0;
    loop {
        let failure = match op(attempt).await {
            Ok(value) => return Ok(value),
            Err(failure) => failure,
        };
        let retry = attempt;
        attempt += 1;
        if !failure.error.is_retryable() || attempt >= max_attempts {
            return Err(failure.error);
        }
        let wait = match failure.retry_after {
            Some(asked) if asked > policy.max_delay => {
                warn!(provider, error = %failure.error, ?asked, "provider asks for a longer pause than we wait; giving up");
                return Err(failure.error);
            }
            Some(asked) => asked,
            None => policy.jittered(retry, random_unit()),
        };
        warn!(provider, error = %failure.error, attempt, max_attempts, ?wait, "provider request failed; retrying");
        sleep(wait).await;
    }
}

/// `Retry-After` as a wait: delta-seconds, or an HTTP date (a date in the past
/// is a zero wait). `None` when absent or unreadable.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// The typed failure for a non-success status: 429 is `RateLimited`, anything
/// else `Status(code)`; `Retry-After` is kept for 429 and 503.
pub fn status_failure(provider: &'static str, status: StatusCode, headers: &HeaderMap) -> Failure {
    let kind = if status == StatusCode::TOO_MANY_REQUESTS {
        ProviderErrorKind::RateLimited
    } else {
        ProviderErrorKind::Status(status.as_u16())
    };
    let retry_after = match status {
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => retry_after(headers),
        _ => None,
    };
    Failure {
        error: ProviderError::new(provider, kind),
        retry_after,
    }
}

/// A reqwest error as a [`ProviderError`]: `Timeout` for timeouts, else
/// `Transport` with the whole source chain (reqwest's own text, "error sending
/// request", does not say whether it was DNS, a refusal or a reset). The URL
/// is stripped first.
pub fn transport_error(provider: &'static str, error: reqwest::Error) -> ProviderError {
    if error.is_timeout() {
        return ProviderError::new(provider, ProviderErrorKind::Timeout);
    }
    let error = error.without_url();
    let mut why = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(s) = source {
        why.push_str(": ");
        why.push_str(&s.to_string());
        source = s.source();
    }
    ProviderError::new(provider, ProviderErrorKind::Transport(why))
}

/// Reads a whole body of at most `cap` bytes, waiting at most `idle` for each
/// piece. Larger: `Malformed`; stalled: `Timeout`; cut: `Transport`.
pub async fn read_body_capped(
    provider: &'static str,
    mut resp: reqwest::Response,
    cap: usize,
    idle: Duration,
) -> Result<Vec<u8>, ProviderError> {
    let too_large = || {
        ProviderError::new(
            provider,
            ProviderErrorKind::Malformed(format!("body larger than {cap} bytes")),
        )
    };
    // Refuse early when the server announces a body past the cap, and never
    // trust the announced length for the allocation.
    if resp.content_length().is_some_and(|len| len > cap as u64) {
        return Err(too_large());
    }
    let mut body = Vec::with_capacity(resp.content_length().unwrap_or(0) as usize);
    loop {
        match tokio::time::timeout(idle, resp.chunk()).await {
            Err(_) => return Err(ProviderError::new(provider, ProviderErrorKind::Timeout)),
            Ok(Err(e)) => return Err(transport_error(provider, e)),
            Ok(Ok(None)) => return Ok(body),
            Ok(Ok(Some(chunk))) => {
                if body.len() + chunk.len() > cap {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use reqwest::header::HeaderValue;

    use super::*;

    fn policy(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        }
    }

    fn err(kind: ProviderErrorKind) -> Failure {
        ProviderError::new("p", kind).into()
    }

    /// Runs `op` under `policy`, recording the waits instead of sleeping.
    async fn run<T, F, Fut>(policy: &RetryPolicy, op: F) -> (Result<T, ProviderError>, Vec<Duration>)
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let waits = std::sync::Mutex::new(Vec::new());
        let result = retry_loop(policy, "p", op, |wait| {
            waits.lock().expect("lock").push(wait);
            async {}
        })
        .await;
        (result, waits.into_inner().expect("lock"))
    }

    #[test]
    fn ceiling_doubles_and_is_capped() {
        let p = policy(5);
        assert_eq!(p.ceiling(0), Duration::from_millis(100));
        assert_eq!(p.ceiling(1), Duration::from_millis(200));
        assert_eq!(p.ceiling(3), Duration::from_millis(800));
        assert_eq!(p.ceiling(4), Duration::from_secs(1));
        assert_eq!(p.ceiling(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_between_half_and_the_ceiling() {
        let p = policy(5);
        assert_eq!(p.jittered(1, 0.0), Duration::from_millis(100));
        assert_eq!(p.jittered(1, 1.0), Duration::from_millis(200));
        assert_eq!(p.jittered(1, 0.5), Duration::from_millis(150));
        for _ in 0..100 {
            let unit = random_unit();
            assert!((0.0..=1.0).contains(&unit), "{unit}");
        }
    }

    #[tokio::test]
    async fn retryable_errors_are_retried_until_success_with_growing_waits() {
        let calls = AtomicU32::new(0);
        let (result, waits) = run(&policy(3), |attempt| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if attempt < 2 {
                    Err(err(ProviderErrorKind::Status(503)))
                } else {
                    Ok(attempt)
                }
            }
        })
        .await;
        assert_eq!(result, Ok(2));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(waits.len(), 2);
        assert!(
            (Duration::from_millis(50)..=Duration::from_millis(100)).contains(&waits[0]),
            "{waits:?}"
        );
        assert!(
            (Duration::from_millis(100)..=Duration::from_millis(200)).contains(&waits[1]),
            "{waits:?}"
        );
    }

    #[tokio::test]
    async fn exhausted_retries_return_the_last_error_without_a_last_wait() {
        let calls = AtomicU32::new(0);
        let (result, waits): (Result<(), _>, _) = run(&policy(3), |attempt| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move { Err(err(ProviderErrorKind::Status(500 + attempt as u16))) }
        })
        .await;
        assert_eq!(result, Err(ProviderError::new("p", ProviderErrorKind::Status(502))));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(waits.len(), 2);
    }

    #[tokio::test]
    async fn other_errors_are_not_retried() {
        for kind in [
            ProviderErrorKind::Status(400),
            ProviderErrorKind::Malformed("x".into()),
            ProviderErrorKind::Config("x".into()),
            ProviderErrorKind::Closed,
        ] {
            let calls = AtomicU32::new(0);
            let (result, waits): (Result<(), _>, _) = run(&policy(5), |_| {
                calls.fetch_add(1, Ordering::SeqCst);
                let kind = kind.clone();
                async move { Err(err(kind)) }
            })
            .await;
            assert_eq!(result, Err(ProviderError::new("p", kind)));
            assert_eq!(calls.load(Ordering::SeqCst), 1);
            assert!(waits.is_empty());
        }
    }

    #[tokio::test]
    async fn zero_attempts_still_tries_once() {
        let (result, _) = run(&policy(0), |_| async { Err::<(), _>(err(ProviderErrorKind::Timeout)) }).await;
        assert_eq!(result, Err(ProviderError::new("p", ProviderErrorKind::Timeout)));
    }

    #[tokio::test]
    async fn retry_after_replaces_the_backoff_and_too_long_a_pause_gives_up() {
        let limited = |after: Duration| Failure {
            error: ProviderError::new("p", ProviderErrorKind::RateLimited),
            retry_after: Some(after),
        };
        let (result, waits) = run(&policy(2), |attempt| async move {
            if attempt == 0 {
                Err(limited(Duration::from_millis(700)))
            } else {
                Ok(())
            }
        })
        .await;
        assert_eq!(result, Ok(()));
        assert_eq!(waits, [Duration::from_millis(700)]);

        let calls = AtomicU32::new(0);
        let (result, waits): (Result<(), _>, _) = run(&policy(5), |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move { Err(limited(Duration::from_secs(60))) }
        })
        .await;
        assert_eq!(result, Err(ProviderError::new("p", ProviderErrorKind::RateLimited)));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(waits.is_empty());
    }

    #[tokio::test]
    async fn with_retries_really_waits_and_retries() {
        let quick = RetryPolicy {
            max_attempts: 2,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(1),
        };
        let result = with_retries(quick, "p", |attempt| async move {
            if attempt == 0 {
                Err(err(ProviderErrorKind::Timeout))
            } else {
                Ok(attempt)
            }
        })
        .await;
        assert_eq!(result, Ok(1));
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"));
        assert_eq!(retry_after(&headers), Some(Duration::ZERO), "a past date is no wait");
        let future = (chrono::Utc::now() + chrono::Duration::seconds(120)).to_rfc2822();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(&future).expect("header"));
        let wait = retry_after(&headers).expect("date");
        assert!(
            wait > Duration::from_secs(100) && wait <= Duration::from_secs(120),
            "{wait:?}"
        );
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn status_failures_are_typed() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        let f = status_failure("p", StatusCode::TOO_MANY_REQUESTS, &headers);
        assert_eq!(f.error.kind, ProviderErrorKind::RateLimited);
        assert_eq!(f.retry_after, Some(Duration::from_secs(2)));
        let f = status_failure("p", StatusCode::SERVICE_UNAVAILABLE, &headers);
        assert_eq!(f.error.kind, ProviderErrorKind::Status(503));
        assert_eq!(f.retry_after, Some(Duration::from_secs(2)));
        let f = status_failure("p", StatusCode::NOT_FOUND, &headers);
        assert_eq!(f.error.kind, ProviderErrorKind::Status(404));
        assert_eq!(f.retry_after, None);
    }

    fn response(body: &'static [u8]) -> reqwest::Response {
        reqwest::Response::from(http::Response::new(body))
    }

    #[tokio::test]
    async fn bodies_are_read_up_to_the_cap() {
        let body = read_body_capped("p", response(b"0123456789"), 10, Duration::from_secs(1)).await;
        assert_eq!(body.as_deref(), Ok(&b"0123456789"[..]));
        let err = read_body_capped("p", response(b"0123456789"), 9, Duration::from_secs(1))
            .await
            .expect_err("too large");
        assert!(matches!(err.kind, ProviderErrorKind::Malformed(_)), "{err}");
    }
}
