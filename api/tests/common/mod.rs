//! Test fixture: the production `router(state)` over a real, migrated SQLite
//! store in a temp dir, with two tenants and one user per role.

#![allow(dead_code)]

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use switchboard_api::{AppState, LiveCounts, router};
use switchboard_bus::Bus;
use switchboard_config::{SecretString, Settings};
use switchboard_domain::{NewTenant, NewUser, Role, Secret, Tenant, TenantId, User};
use switchboard_store::Store;
use tower::ServiceExt;

pub const PASSWORD: &str = "correct horse battery staple";
pub const JWT_SECRET: &str = "test-jwt-secret-that-is-at-least-32-bytes-long";

/// No actors run in API tests.
pub struct NoLive;

impl LiveCounts for NoLive {
    fn live_calls(&self) -> usize {
        0
    }
    fn live_conversations(&self) -> usize {
        0
    }
    fn is_call_live(&self, _id: switchboard_domain::CallId) -> bool {
        false
    }
}

/// A logged-in user.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    pub token: String,
    pub csrf: String,
    /// `sb_session=...; sb_csrf=...` as a browser would send it.
    pub cookie_header: String,
}

pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

pub struct TestApp {
    pub app: Router,
    pub store: Store,
    pub settings: Settings,
    pub tenant_a: Tenant,
    pub tenant_b: Tenant,
    _dir: tempfile::TempDir,
}

static COUNTER: AtomicU32 = AtomicU32::new(1);

/// A number unique within the test process.
pub fn unique() -> u32 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

pub fn test_settings() -> Settings {
    let mut settings = Settings::default();
    settings.limits.login_per_minute = 1_000;
    settings
}

impl TestApp {
    pub async fn new() -> TestApp {
        Self::with(test_settings(), Bus::in_process()).await
    }

    pub async fn with(settings: Settings, bus: Bus) -> TestApp {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("api.db").display());
        let store = Store::connect(&url, 4, [7; 32]).await.expect("connect store");
        store.migrate().await.expect("migrate");
        let state =
            AppState::new(store.clone(), bus, NoLive, &settings, &SecretString::new(JWT_SECRET)).expect("state");
        let tenant = |name: &str| NewTenant {
            name: name.to_owned(),
            notification_email: None,
            max_concurrent_calls: 5,
        };
        let tenant_a = store.tenants().create(tenant("Tenant A")).await.expect("tenant a");
        let tenant_b = store.tenants().create(tenant("Tenant B")).await.expect("tenant b");
        TestApp {
            app: router(state),
            store,
            settings,
            tenant_a,
            tenant_b,
            _dir: dir,
        }
    }

    pub async fn user(&self, tenant: Option<TenantId>, role: Role, email: &str) -> User {
        self.store
            .users()
            .create(NewUser {
                tenant_id: tenant,
                email: email.to_owned(),
                password: Secret::new(PASSWORD),
                role,
            })
            .await
            .expect("create user")
    }

    /// Create a user and log them in through the API.
    pub async fn login_as(&self, tenant: Option<TenantId>, role: Role) -> Session {
        let email = format!("{}-{}@example.com", role.as_str(), unique());
        self.user(tenant, role, &email).await;
        self.login(&email, PASSWORD).await
    }

    pub async fn login(&self, email: &str, password: &str) -> Session {
        let res = self
            .send(json_request(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(serde_json::json!({"email": email, "password": password})),
            ))
            .await;
        assert_eq!(res.status, StatusCode::OK, "login failed: {}", res.text);
        let cookies: Vec<String> = res
            .headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or_default().to_owned())
            .collect();
        Session {
            user: serde_json::from_value(res.body["user"].clone()).expect("user"),
            token: res.body["access_token"].as_str().expect("token").to_owned(),
            csrf: res.body["csrf_token"].as_str().expect("csrf").to_owned(),
            cookie_header: cookies.join("; "),
        }
    }

    pub async fn send(&self, mut req: Request<Body>) -> Response {
        if req.extensions().get::<ConnectInfo<SocketAddr>>().is_none() {
            req.extensions_mut()
                .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
        }
        let res = self.app.clone().oneshot(req).await.expect("infallible router");
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.expect("body").to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Response {
            status,
            headers,
            body,
            text,
        }
    }

    /// A bearer-authenticated JSON request.
    pub async fn call(&self, method: Method, uri: &str, who: &Session, body: Option<Value>) -> Response {
        self.send(json_request(method, uri, Some(who), body)).await
    }
}

pub fn json_request(method: Method, uri: &str, who: Option<&Session>, body: Option<Value>) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(who) = who {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {}", who.token));
    }
    match body {
        Some(body) => builder
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .expect("request"),
        None => builder.body(Body::empty()).expect("request"),
    }
}

/// A request with a raw body (for malformed input).
pub fn raw_request(method: Method, uri: &str, who: &Session, body: impl Into<Body>) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {}", who.token))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .expect("request")
}
