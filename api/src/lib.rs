//! Switchboard's REST API: an axum router over the store, with login
//! sessions, role- and tenant-scoped CRUD, health checks and an OpenAPI spec.
//!
//! Guarantees:
//! - Every response, errors included, carries `x-request-id`; every error is
//!   JSON `{code, message}` ([`ApiError`]), including unknown routes, bad
//!   bodies, oversized bodies and timeouts.
//! - Every request runs in a tracing span with method, path and request ID,
//!   plus tenant and user once authenticated.
//! - Tenant isolation: another tenant's rows are `404`, never `403`.
//! - Secrets (passwords, credential values, tokens) never appear in
//!   responses or logs.
//!
//! # Layout
//! - [`state`]: [`AppState`] and the [`BusHealth`]/[`LiveCounts`] probes.
//! - [`error`]: [`ApiError`], the one error response.
//! - [`extract`]: `Json`, `Patch`, `Path`, `Query` with JSON rejections.
//! - [`auth`]: login/logout/me, JWT + cookie sessions, CSRF, the [`auth::Caller`] extractor.
//! - [`rate_limit`]: per-IP limiters (login, and the webhook layer).
//! - [`routes`]: handlers per resource, with the permission matrix.
//! - [`openapi`]: the generated spec and the offline docs page.

pub mod auth;
pub mod error;
pub mod extract;
pub mod live;
pub mod openapi;
pub mod rate_limit;
pub mod routes;
pub mod state;
pub mod twilio;

pub use error::{ApiError, ErrorBody};
pub use rate_limit::{IpRateLimiter, RateLimitLayer};
pub use state::{AppState, BusHealth, CallServices, LiveCounts, StateError};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::HeaderName;
use std::time::Duration;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole HTTP surface: `/healthz`, `/readyz` and everything under `/api/v1`.
///
/// Serve it with `into_make_service_with_connect_info::<SocketAddr>()` so
/// rate limits see client IPs.
/// A listener whose accepted sockets have `TCP_NODELAY` set.
pub type NoDelayListener = axum::serve::TapIo<tokio::net::TcpListener, fn(&mut tokio::net::TcpStream)>;

/// Wraps the HTTP listener so every accepted socket has `TCP_NODELAY`.
///
/// Media Streams send one small message every 20 ms each way. With Nagle's
/// algorithm a message waits for the peer's ACK of the previous one, which a
/// delayed ACK holds for up to 40 ms: frames bunch up and a close frame can
/// still sit unsent when the socket is dropped (the kernel then discards it).
pub fn no_delay(listener: tokio::net::TcpListener) -> NoDelayListener {
    use axum::serve::ListenerExt;
    fn set(tcp: &mut tokio::net::TcpStream) {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(error = %err, "could not set TCP_NODELAY on an accepted socket");
        }
    }
    listener.tap_io(set as fn(&mut tokio::net::TcpStream))
}

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/auth/login", axum::routing::post(auth::login))
        .route("/auth/logout", axum::routing::post(auth::logout))
        .route("/auth/me", get(auth::me))
        .route("/openapi.json", get(openapi::openapi_json))
        .route("/docs", get(openapi::docs))
        .merge(routes::tenants::routes())
        .merge(routes::users::routes())
        .merge(routes::resources::phone_numbers::routes())
        .merge(routes::resources::agents::routes())
        .merge(routes::resources::credentials::routes())
        .merge(routes::resources::contacts::routes())
        .merge(routes::resources::appointments::routes())
        .merge(routes::activity::routes())
        .merge(live::routes());

    let max_body = state.inner.max_body_bytes;
    let request_timeout = state.inner.request_timeout;
    Router::new()
        .route("/healthz", get(routes::health::healthz))
        .route("/readyz", get(routes::health::readyz))
        .route("/metrics", get(routes::metrics::metrics))
        .route("/stats", get(routes::metrics::stats))
        .nest("/api/v1", api)
        .merge(twilio::routes())
        .fallback(|| async { ApiError::NotFound("route") })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(request_timeout, timeout))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(request_span))
                .layer(PropagateRequestIdLayer::new(REQUEST_ID)),
        )
        .with_state(state)
}

fn request_span(req: &Request) -> tracing::Span {
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or_default();
    tracing::info_span!(
        "request",
        method = %req.method(),
        path = %req.uri().path(),
        request_id = %request_id,
        tenant_id = tracing::field::Empty,
        user_id = tracing::field::Empty,
    )
}

/// Whole-request timeout (`limits.request_timeout`), answered as JSON.
async fn timeout(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!("request timed out");
            ApiError::Timeout.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    #[tokio::test]
    async fn accepted_sockets_have_no_delay() {
        use axum::serve::Listener as _;
        let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = plain.local_addr().expect("addr");
        let mut listener = no_delay(plain);
        let client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (accepted, peer) = listener.accept().await;
        assert_eq!(peer, client.local_addr().expect("client addr"));
        assert!(
            accepted.nodelay().expect("nodelay"),
            "TCP_NODELAY set on the accepted socket"
        );
        // A plain accept leaves Nagle on: the wrapper is what sets it.
        let mut plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = plain.local_addr().expect("addr");
        let _client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (accepted, _) = axum::serve::Listener::accept(&mut plain).await;
        assert!(!accepted.nodelay().expect("nodelay"));
    }

    #[tokio::test(start_paused = true)]
    async fn slow_requests_time_out_with_a_json_error() {
        let app = Router::new()
            .route("/slow", get(std::future::pending::<()>))
            .route("/fast", get(|| async { "ok" }))
            .layer(middleware::from_fn_with_state(Duration::from_secs(30), timeout));
        let slow = app
            .clone()
            .oneshot(Request::builder().uri("/slow").body(Body::empty()).expect("request"))
            .await
            .expect("response");
        assert_eq!(slow.status(), http::StatusCode::REQUEST_TIMEOUT);
        let bytes = http_body_util::BodyExt::collect(slow.into_body())
            .await
            .expect("body")
            .to_bytes();
        let body: ErrorBody = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(body.code, "timeout");
        let fast = app
            .oneshot(Request::builder().uri("/fast").body(Body::empty()).expect("request"))
            .await
            .expect("response");
        assert_eq!(fast.status(), http::StatusCode::OK);
    }
}
