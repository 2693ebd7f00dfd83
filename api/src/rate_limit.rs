//! Per-client-IP rate limiting with `governor` (GCRA, keyed by IP).
//!
//! Guarantees: a client over its quota gets `429 rate_limited` with a
//! `Retry-After` header (whole seconds, at least 1) and the request never
//! reaches the handler. The client IP is the TCP peer from `ConnectInfo`;
//! forwarded headers are not trusted because any client can forge them. When
//! the server was not started with connect info, all clients share one bucket
//! (fails closed rather than open).
//!
//! The engine must serve with
//! `router.into_make_service_with_connect_info::<SocketAddr>()`.

use crate::error::ApiError;
use axum::extract::{ConnectInfo, Request};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Past this many tracked IPs, idle buckets are dropped so a scan of many
/// addresses cannot grow memory without bound.
const RETAIN_THRESHOLD: usize = 10_000;

/// A keyed limiter: `n` requests per period per client IP. Cheap to clone.
#[derive(Clone)]
pub struct IpRateLimiter {
    limiter: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    clock: DefaultClock,
}

impl std::fmt::Debug for IpRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpRateLimiter")
            .field("tracked", &self.limiter.len())
            .finish()
    }
}

impl IpRateLimiter {
    /// `n` per minute per IP (a configured 0 is treated as 1: never fully closed).
    pub fn per_minute(n: u32) -> Self {
        Self::new(Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)))
    }

    /// `n` per second per IP (a configured 0 is treated as 1).
    pub fn per_second(n: u32) -> Self {
        Self::new(Quota::per_second(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)))
    }

    fn new(quota: Quota) -> Self {
        Self {
            limiter: Arc::new(RateLimiter::keyed(quota)),
            clock: DefaultClock::default(),
        }
    }

    /// Take one request from `ip`'s bucket.
    pub fn check(&self, ip: IpAddr) -> Result<(), ApiError> {
        if self.limiter.len() > RETAIN_THRESHOLD {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(&ip).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            ApiError::RateLimited {
                retry_after_secs: secs.max(1),
            }
        })
    }
}

/// The client IP of a request: the TCP peer, or a shared key when unknown.
pub fn client_ip(extensions: &http::Extensions) -> IpAddr {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// Extractor for the client IP (see [`client_ip`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut http::request::Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(&parts.extensions)))
    }
}

/// A tower layer that rate-limits every request by client IP; used in front
/// of the provider webhook routes (`limits.webhook_per_second`).
#[derive(Clone, Debug)]
pub struct RateLimitLayer {
    limiter: IpRateLimiter,
}

impl RateLimitLayer {
    pub fn new(limiter: IpRateLimiter) -> Self {
        Self { limiter }
    }

    /// `n` requests per second per IP.
    pub fn per_second(n: u32) -> Self {
        Self::new(IpRateLimiter::per_second(n))
    }
}

impl<S> tower::Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            limiter: self.limiter.clone(),
        }
    }
}

/// The service made by [`RateLimitLayer`].
#[derive(Clone, Debug)]
pub struct RateLimit<S> {
    inner: S,
    limiter: IpRateLimiter,
}

impl<S> tower::Service<Request> for RateLimit<S>
where
    S: tower::Service<Request, Response = Response> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        match self.limiter.check(client_ip(req.extensions())) {
            Ok(()) => Box::pin(self.inner.call(req)),
            Err(err) => Box::pin(async move { Ok(err.into_response()) }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::post;
    use tower::ServiceExt;

    #[test]
    fn limits_per_ip_and_reports_retry_after() {
        let limiter = IpRateLimiter::per_minute(2);
        let a = IpAddr::from([10, 0, 0, 1]);
        let b = IpAddr::from([10, 0, 0, 2]);
        assert!(limiter.check(a).is_ok());
        assert!(limiter.check(a).is_ok());
        match limiter.check(a) {
            Err(ApiError::RateLimited { retry_after_secs }) => assert!((1..=60).contains(&retry_after_secs)),
            other => panic!("expected rate limit, got {other:?}"),
        }
        assert!(limiter.check(b).is_ok(), "other IPs have their own bucket");
    }

    #[tokio::test]
    async fn layer_answers_429_once_the_bucket_is_empty() {
        let app = Router::new()
            .route("/hook", post(|| async { "ok" }))
            .layer(RateLimitLayer::per_second(1));
        let request = |ip: [u8; 4]| {
            let mut req = Request::builder()
                .method("POST")
                .uri("/hook")
                .body(Body::empty())
                .expect("req");
            req.extensions_mut().insert(ConnectInfo(SocketAddr::from((ip, 4000))));
            req
        };
        let first = app.clone().oneshot(request([1, 2, 3, 4])).await.expect("first");
        assert_eq!(first.status(), http::StatusCode::OK);
        let second = app.clone().oneshot(request([1, 2, 3, 4])).await.expect("second");
        assert_eq!(second.status(), http::StatusCode::TOO_MANY_REQUESTS);
        assert!(second.headers().contains_key(http::header::RETRY_AFTER));
        let other = app.oneshot(request([5, 6, 7, 8])).await.expect("other");
        assert_eq!(other.status(), http::StatusCode::OK);
    }
}
