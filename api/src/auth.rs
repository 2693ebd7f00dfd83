//! Authentication: login, logout, `me`, and the [`Caller`] extractor that
//! every protected handler takes.
//!
//! A request authenticates with `Authorization: Bearer <jwt>` or with the
//! `sb_session` cookie. Guarantees:
//! - Every request re-checks that the session is live, so logout (or an
//!   expired session) also kills every JWT issued for it.
//! - The user is re-read on every request: role and tenant changes apply
//!   immediately, and deleted users are locked out.
//! - Cookie-authenticated `POST`/`PUT`/`PATCH`/`DELETE` need `X-CSRF-Token`
//!   equal to the `sb_csrf` cookie *and* to the session's token (double
//!   submit, constant-time); bearer requests need no CSRF token because
//!   browsers never attach them on their own.
//! - The `sb_session` cookie holds the session ID plus an HMAC of it, so a
//!   cookie cannot be forged from a guessed ID.
//! - Login failures look identical for unknown emails and wrong passwords
//!   (the store burns a dummy hash for unknown emails), and login is rate
//!   limited per client IP (`limits.login_per_minute`).

use crate::error::{ApiError, ErrorBody};
use crate::extract::Json;
use crate::rate_limit::ClientIp;
use crate::state::AppState;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{AppendHeaders, IntoResponse, Response};
use axum_extra::extract::CookieJar;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::Mac;
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use switchboard_domain::{NewAuditEntry, Role, Secret, SessionId, TenantId, User, UserId};
use switchboard_store::{Scope, SessionRecord};

pub const SESSION_COOKIE: &str = "sb_session";
pub const CSRF_COOKIE: &str = "sb_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The JWT payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user.
    pub sub: UserId,
    /// The session the token belongs to; revoking it revokes the token.
    pub sid: SessionId,
    pub role: Role,
    pub tenant: Option<TenantId>,
    pub exp: i64,
    pub iat: i64,
}

/// How the caller authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    Bearer,
    Cookie,
}

/// The authenticated user of a request, with their scope.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: User,
    pub session: SessionRecord,
    pub scope: Scope,
    pub method: AuthMethod,
}

impl Caller {
    pub fn role(&self) -> Role {
        self.user.role
    }

    /// Fail with `forbidden` unless the caller ranks at least `min`.
    pub fn require(&self, min: Role) -> Result<(), ApiError> {
        if self.user.role.at_least(min) {
            Ok(())
        } else {
            Err(ApiError::Forbidden)
        }
    }

    /// The tenant a new row goes into. System admins must name one
    /// (`?tenant_id=`); everyone else always writes into their own tenant, and
    /// naming another one is `not_found` (it is invisible to them).
    pub fn tenant_for_create(&self, requested: Option<TenantId>) -> Result<TenantId, ApiError> {
        match (self.scope, requested) {
            (Scope::All, Some(tenant)) => Ok(tenant),
            (Scope::All, None) => Err(ApiError::Validation(
                "system admins must choose the tenant with `?tenant_id=`".into(),
            )),
            (Scope::Tenant(own), None) => Ok(own),
            (Scope::Tenant(own), Some(tenant)) if tenant == own => Ok(own),
            (Scope::Tenant(_), Some(_)) => Err(ApiError::NotFound("tenant")),
        }
    }

    /// Record who changed what. A failure is logged, not returned: the change
    /// itself has already been committed and must be reported as done.
    pub async fn audit(
        &self,
        state: &AppState,
        action: &str,
        entity: &str,
        entity_id: impl std::fmt::Display,
        tenant_id: Option<TenantId>,
        detail: serde_json::Value,
    ) {
        let entry = NewAuditEntry {
            tenant_id,
            user_id: Some(self.user.id),
            action: action.to_owned(),
            entity: entity.to_owned(),
            entity_id: entity_id.to_string(),
            detail,
        };
        if let Err(err) = state.store().audit().record(entry).await {
            tracing::error!(error = %err, action, entity, "failed to record audit entry");
        }
    }
}

fn scope_of(user: &User) -> Result<Scope, ApiError> {
    match (user.role, user.tenant_id) {
        (Role::SystemAdmin, _) => Ok(Scope::All),
        (_, Some(tenant)) => Ok(Scope::Tenant(tenant)),
        (_, None) => Err(ApiError::internal(
            "user without tenant",
            &format_args!("user {} has role {} but no tenant", user.id, user.role),
        )),
    }
}

fn is_unsafe(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE)
}

fn ct_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

impl AppState {
    fn sign_session(&self, id: SessionId) -> String {
        let mut mac = self.inner.auth.cookie_mac.clone();
        mac.update(id.to_string().as_bytes());
        format!("{id}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    }

    fn verify_session_cookie(&self, value: &str) -> Option<SessionId> {
        let (id, tag) = value.split_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        let mut mac = self.inner.auth.cookie_mac.clone();
        mac.update(id.as_bytes());
        mac.verify_slice(&tag).ok()?;
        id.parse().ok()
    }

    fn issue_token(&self, user: &User, session: &SessionRecord) -> Result<(String, u64), ApiError> {
        let now = chrono::Utc::now().timestamp();
        let ttl = i64::try_from(self.inner.auth.access_token_ttl.as_secs()).unwrap_or(i64::MAX);
        // A token never outlives its session.
        let exp = now.saturating_add(ttl).min(session.expires_at.timestamp());
        let claims = Claims {
            sub: user.id,
            sid: session.id,
            role: user.role,
            tenant: user.tenant_id,
            exp,
            iat: now,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.inner.auth.encoding)
            .map_err(|e| ApiError::internal("signing access token", &e))?;
        Ok((token, u64::try_from(exp - now).unwrap_or(0)))
    }

    fn decode_token(&self, token: &str) -> Result<Claims, ApiError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        jsonwebtoken::decode::<Claims>(token, &self.inner.auth.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|_| ApiError::Unauthorized)
    }

    fn session_cookies(&self, session: &SessionRecord) -> [(header::HeaderName, String); 2] {
        let max_age = self.inner.auth.session_ttl.as_secs();
        [
            (
                header::SET_COOKIE,
                self.cookie(SESSION_COOKIE, &self.sign_session(session.id), max_age, true),
            ),
            (
                header::SET_COOKIE,
                self.cookie(CSRF_COOKIE, &session.csrf_token, max_age, false),
            ),
        ]
    }

    fn clearing_cookies(&self) -> [(header::HeaderName, String); 2] {
        [
            (header::SET_COOKIE, self.cookie(SESSION_COOKIE, "", 0, true)),
            (header::SET_COOKIE, self.cookie(CSRF_COOKIE, "", 0, false)),
        ]
    }

    /// A `Set-Cookie` value. Values are base64url or UUIDs, which need no quoting.
    fn cookie(&self, name: &str, value: &str, max_age_secs: u64, http_only: bool) -> String {
        let mut cookie = format!("{name}={value}; Path=/; Max-Age={max_age_secs}; SameSite=Lax");
        if http_only {
            cookie.push_str("; HttpOnly");
        }
        if self.inner.auth.cookie_secure {
            cookie.push_str("; Secure");
        }
        cookie
    }
}

/// Check the double-submit CSRF token of a cookie-authenticated request.
fn check_csrf(headers: &HeaderMap, jar: &CookieJar, session: &SessionRecord) -> Result<(), ApiError> {
    let header = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or(ApiError::CsrfFailed)?;
    let cookie = jar.get(CSRF_COOKIE).ok_or(ApiError::CsrfFailed)?;
    // Evaluate both comparisons before branching so timing does not say which failed.
    let header_matches_cookie = ct_eq(header, cookie.value());
    let header_matches_session = ct_eq(header, &session.csrf_token);
    if header_matches_cookie & header_matches_session {
        Ok(())
    } else {
        Err(ApiError::CsrfFailed)
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let store = state.store();
        let (session, method, expected_user) = match parts.headers.get(header::AUTHORIZATION) {
            Some(value) => {
                let value = value.to_str().map_err(|_| ApiError::Unauthorized)?;
                let token = value
                    .strip_prefix("Bearer ")
                    .or_else(|| value.strip_prefix("bearer "))
                    .ok_or(ApiError::Unauthorized)?;
                let claims = state.decode_token(token.trim())?;
                let session = store.sessions().get(claims.sid).await?.ok_or(ApiError::Unauthorized)?;
                (session, AuthMethod::Bearer, Some(claims.sub))
            }
            None => {
                let jar = CookieJar::from_headers(&parts.headers);
                let id = jar
                    .get(SESSION_COOKIE)
                    .and_then(|c| state.verify_session_cookie(c.value()))
                    .ok_or(ApiError::Unauthorized)?;
                let session = store.sessions().get(id).await?.ok_or(ApiError::Unauthorized)?;
                if is_unsafe(&parts.method) {
                    check_csrf(&parts.headers, &jar, &session)?;
                }
                (session, AuthMethod::Cookie, None)
            }
        };
        if expected_user.is_some_and(|sub| sub != session.user_id) {
            return Err(ApiError::Unauthorized);
        }
        let user = match store.users().get(Scope::All, session.user_id).await {
            Ok(user) => user,
            Err(switchboard_store::StoreError::NotFound { .. }) => return Err(ApiError::Unauthorized),
            Err(err) => return Err(err.into()),
        };
        let scope = scope_of(&user)?;
        let span = tracing::Span::current();
        span.record("user_id", tracing::field::display(user.id));
        if let Some(tenant) = user.tenant_id {
            span.record("tenant_id", tracing::field::display(tenant));
        }
        Ok(Caller {
            user,
            session,
            scope,
            method,
        })
    }
}

/// Login credentials.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    #[schema(value_type = String, format = Password)]
    pub password: Secret,
}

/// A successful login.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LoginResponse {
    /// HS256 JWT for `Authorization: Bearer`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until `access_token` expires.
    pub expires_in: u64,
    /// Send this as `X-CSRF-Token` on unsafe cookie-authenticated requests.
    pub csrf_token: String,
    pub user: User,
}

/// Log in with email and password.
///
/// Returns a bearer token and also sets the `sb_session` (httpOnly) and
/// `sb_csrf` cookies. Rate limited per client IP.
#[utoipa::path(
    post, path = "/api/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in; cookies set", body = LoginResponse),
        (status = 401, description = "`invalid_credentials` (same for unknown email and wrong password)", body = ErrorBody),
        (status = 429, description = "`rate_limited`, see Retry-After", body = ErrorBody),
    )
)]
pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    body: Result<Json<LoginRequest>, ApiError>,
) -> Result<Response, ApiError> {
    // Count the attempt before looking at the body: malformed attempts are attempts too.
    state.inner.login_limiter.check(ip)?;
    let Json(body) = body?;
    let store = state.store();
    let user = store
        .users()
        .verify_login(&body.email, body.password.expose())
        .await?
        .ok_or(ApiError::InvalidCredentials)?;
    let session = store.sessions().create(user.id, state.inner.auth.session_ttl).await?;
    let (access_token, expires_in) = state.issue_token(&user, &session)?;
    let caller = Caller {
        scope: scope_of(&user)?,
        user: user.clone(),
        session: session.clone(),
        method: AuthMethod::Bearer,
    };
    caller
        .audit(
            &state,
            "login",
            "session",
            session.id,
            user.tenant_id,
            serde_json::json!({}),
        )
        .await;
    let body = LoginResponse {
        access_token,
        token_type: "Bearer".into(),
        expires_in,
        csrf_token: session.csrf_token.clone(),
        user,
    };
    let mut response = (AppendHeaders(state.session_cookies(&session)), Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Log out: revoke the session (and with it every token issued for it) and clear the cookies.
#[utoipa::path(
    post, path = "/api/v1/auth/logout", tag = "auth",
    responses(
        (status = 204, description = "Logged out; cookies cleared"),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`csrf_failed` (cookie auth without X-CSRF-Token)", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub async fn logout(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    state.store().sessions().revoke(caller.session.id).await?;
    caller
        .audit(
            &state,
            "logout",
            "session",
            caller.session.id,
            caller.user.tenant_id,
            serde_json::json!({}),
        )
        .await;
    Ok((StatusCode::NO_CONTENT, AppendHeaders(state.clearing_cookies())).into_response())
}

/// The logged-in user.
#[utoipa::path(
    get, path = "/api/v1/auth/me", tag = "auth",
    responses(
        (status = 200, description = "The caller", body = User),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub async fn me(caller: Caller) -> Json<User> {
    Json(caller.user)
}
