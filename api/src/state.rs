//! The shared state of every handler: the store, readiness probes, token
//! keys and limits, built once from [`Settings`].
//!
//! Guarantees: cheap to clone (one `Arc`); the JWT secret is only held as
//! derived keys (the cookie and media-stream token keys are each derived
//! under their own label, so no signature can be replayed as another kind)
//! and never printed; the bus and the live-call registry are
//! reached through two small traits ([`BusHealth`], [`LiveCounts`]) so the API
//! depends on nothing but "are you up" and "how many are live".

use crate::rate_limit::IpRateLimiter;
use crate::twilio::token::StreamTokens;
use futures::future::BoxFuture;
use hmac::{Hmac, Mac};
use jsonwebtoken::{DecodingKey, EncodingKey};
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;
use switchboard_config::{SecretString, Settings};
use switchboard_store::Store;

/// Shortest accepted JWT secret: HS256 keys shorter than the hash are weak.
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// Readiness of the event bus (`/readyz`).
pub trait BusHealth: Send + Sync + 'static {
    /// Succeeds when the bus can carry messages; the error says why not.
    fn ping(&self) -> BoxFuture<'_, Result<(), String>>;
    /// `in-process` or `redis`, for diagnostics.
    fn kind(&self) -> &'static str;
}

/// Counts of live actors, for `/readyz` and call details.
pub trait LiveCounts: Send + Sync + 'static {
    fn live_calls(&self) -> usize;
    fn live_conversations(&self) -> usize;
    fn is_call_live(&self, id: switchboard_domain::CallId) -> bool;
}

impl BusHealth for switchboard_bus::Bus {
    fn ping(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { switchboard_bus::Bus::ping(self).await.map_err(|e| e.to_string()) })
    }
    fn kind(&self) -> &'static str {
        switchboard_bus::Bus::kind(self)
    }
}

impl LiveCounts for switchboard_actors::Registry {
    fn live_calls(&self) -> usize {
        self.calls().len()
    }
    fn live_conversations(&self) -> usize {
        self.conversations().len()
    }
    fn is_call_live(&self, id: switchboard_domain::CallId) -> bool {
        self.calls().contains(&id)
    }
}

/// Why the state could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("security.jwt_secret must be at least {MIN_JWT_SECRET_BYTES} bytes")]
    WeakJwtSecret,
}

/// Token and cookie settings.
pub(crate) struct AuthKeys {
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
    /// Signs the session cookie; derived from the JWT secret with a distinct label.
    pub cookie_mac: Hmac<Sha256>,
    pub access_token_ttl: Duration,
    pub session_ttl: Duration,
    pub cookie_secure: bool,
}

pub(crate) struct Inner {
    pub store: Store,
    pub bus: Arc<dyn BusHealth>,
    pub live: Arc<dyn LiveCounts>,
    pub auth: AuthKeys,
    pub login_limiter: IpRateLimiter,
    pub webhook_per_second: u32,
    /// One per-IP bucket shared by every `/twilio/*` route (`limits.webhook_per_second`).
    pub webhook_limiter: IpRateLimiter,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    /// `http.public_base_url`, no trailing slash: the URL Twilio signs and the
    /// base of the TwiML stream URL.
    pub public_base_url: String,
    /// Signs and verifies media-stream tokens (`calls.stream_token_ttl`).
    pub stream_tokens: StreamTokens,
    /// Largest accepted WebSocket message or frame (`limits.max_ws_frame_bytes`).
    pub max_ws_frame_bytes: usize,
    /// Queue bound of each live supervisor socket (`limits.supervisor_queue`).
    pub supervisor_queue: usize,
}

/// What the telephony routes (`/twilio/*`) and the live supervisor socket
/// need beyond the REST state: the actor tree to start calls in, the bus for
/// live events, and the factory that picks each call's providers.
#[derive(Clone)]
pub struct CallServices {
    pub tree: switchboard_actors::Tree,
    pub bus: switchboard_bus::Bus,
    pub providers: Arc<dyn switchboard_providers::ProviderFactory>,
    /// Directory for call recordings; `None` disables recording.
    pub recordings_dir: Option<std::path::PathBuf>,
}

/// Everything the handlers need. Build with [`AppState::new`].
#[derive(Clone)]
pub struct AppState {
    pub(crate) inner: Arc<Inner>,
    /// Absent in REST-only deployments and tests: `/twilio/*` and
    /// `/api/v1/live` then answer 503.
    pub(crate) calls: Option<Arc<CallServices>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("backend", &self.inner.store.backend())
            .field("bus", &self.inner.bus.kind())
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Build the state. `jwt_secret` is the resolved secret (the engine
    /// generates one when the config has none); it must be at least 32 bytes.
    pub fn new(
        store: Store,
        bus: impl BusHealth,
        live: impl LiveCounts,
        settings: &Settings,
        jwt_secret: &SecretString,
    ) -> Result<AppState, StateError> {
        let secret = jwt_secret.expose().as_bytes();
        if secret.len() < MIN_JWT_SECRET_BYTES {
            return Err(StateError::WeakJwtSecret);
        }
        let mut cookie_key = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| StateError::WeakJwtSecret)?;
        // Domain separation: the cookie MAC key is HMAC(secret, label), so a
        // cookie signature can never double as a JWT signature.
        cookie_key.update(b"switchboard session cookie v1");
        let derived = cookie_key.finalize().into_bytes();
        let cookie_mac = Hmac::<Sha256>::new_from_slice(&derived).map_err(|_| StateError::WeakJwtSecret)?;
        // Same separation for media-stream tokens, under their own label.
        let mut stream_key = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| StateError::WeakJwtSecret)?;
        stream_key.update(b"switchboard twilio stream token v1");
        let stream_tokens = StreamTokens::new(&stream_key.finalize().into_bytes(), settings.calls.stream_token_ttl)
            .map_err(|_| StateError::WeakJwtSecret)?;
        let auth = AuthKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            cookie_mac,
            access_token_ttl: settings.security.access_token_ttl,
            session_ttl: settings.security.session_ttl,
            cookie_secure: settings.security.cookie_secure,
        };
        Ok(AppState {
            inner: Arc::new(Inner {
                store,
                bus: Arc::new(bus),
                live: Arc::new(live),
                auth,
                login_limiter: IpRateLimiter::per_minute(settings.limits.login_per_minute),
                webhook_per_second: settings.limits.webhook_per_second,
                webhook_limiter: IpRateLimiter::per_second(settings.limits.webhook_per_second),
                max_body_bytes: settings.limits.max_body_bytes,
                request_timeout: settings.limits.request_timeout,
                public_base_url: settings.http.public_base_url.trim_end_matches('/').to_owned(),
                stream_tokens,
                max_ws_frame_bytes: settings.limits.max_ws_frame_bytes,
                supervisor_queue: settings.limits.supervisor_queue.max(1),
            }),
            calls: None,
        })
    }

    /// Enables the telephony routes and the live supervisor socket.
    pub fn with_calls(mut self, calls: CallServices) -> Self {
        self.calls = Some(Arc::new(calls));
        self
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// A fresh per-IP limiter for provider webhooks (`limits.webhook_per_second`);
    /// wrap the webhook routes in it with `.layer(state.webhook_rate_limit())`.
    pub fn webhook_rate_limit(&self) -> crate::rate_limit::RateLimitLayer {
        crate::rate_limit::RateLimitLayer::per_second(self.inner.webhook_per_second)
    }
}
