//! Login, logout, `me`, cookie sessions with CSRF, and login rate limiting,
//! through the production router.

mod common;

use axum::body::Body;
use axum::extract::ConnectInfo;
use common::*;
use http::{Method, Request, StatusCode, header};
use serde_json::json;
use std::net::SocketAddr;
use switchboard_domain::Role;

#[tokio::test]
async fn login_me_logout_and_logout_kills_the_jwt() {
    let t = TestApp::new().await;
    let owner = t.login_as(Some(t.tenant_a.id), Role::Owner).await;
    assert_eq!(owner.user.role, Role::Owner);
    assert!(!owner.csrf.is_empty());

    let me = t.call(Method::GET, "/api/v1/auth/me", &owner, None).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["id"], json!(owner.user.id));
    assert!(me.body.get("password_hash").is_none());

    let out = t.call(Method::POST, "/api/v1/auth/logout", &owner, None).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    let cleared: Vec<_> = out
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert!(
        cleared
            .iter()
            .any(|c| c.starts_with("sb_session=;") && c.contains("Max-Age=0")),
        "{cleared:?}"
    );

    // The JWT has not expired, but its session is gone.
    let me = t.call(Method::GET, "/api/v1/auth/me", &owner, None).await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED);
    assert_eq!(me.body["code"], "unauthorized");
}

#[tokio::test]
async fn login_sets_session_and_csrf_cookies() {
    let mut settings = test_settings();
    settings.security.cookie_secure = true;
    let t = TestApp::with(settings, switchboard_bus::Bus::in_process()).await;
    t.user(Some(t.tenant_a.id), Role::Agent, "cookie@example.com").await;
    let res = t
        .send(json_request(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"email": "  COOKIE@example.com ", "password": PASSWORD})),
        ))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert_eq!(res.body["token_type"], "Bearer");
    assert_eq!(
        res.body["expires_in"],
        json!(t.settings.security.access_token_ttl.as_secs())
    );
    let cookies: Vec<_> = res
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let session = cookies
        .iter()
        .find(|c| c.starts_with("sb_session="))
        .expect("session cookie");
    let csrf = cookies.iter().find(|c| c.starts_with("sb_csrf=")).expect("csrf cookie");
    let max_age = format!("Max-Age={}", t.settings.security.session_ttl.as_secs());
    for attr in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/", max_age.as_str()] {
        assert!(session.contains(attr), "{session} lacks {attr}");
    }
    assert!(
        !csrf.contains("HttpOnly"),
        "the CSRF cookie must be readable by scripts"
    );
    assert!(csrf.contains(&format!("sb_csrf={}", res.body["csrf_token"].as_str().expect("csrf"))));
}

#[tokio::test]
async fn wrong_password_and_unknown_user_look_the_same() {
    let t = TestApp::new().await;
    t.user(Some(t.tenant_a.id), Role::Agent, "known@example.com").await;
    let attempt = |email: &str, password: &str| {
        json_request(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"email": email, "password": password})),
        )
    };
    let wrong = t.send(attempt("known@example.com", "nope")).await;
    let unknown = t.send(attempt("ghost@example.com", "nope")).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.body["code"], "invalid_credentials");
    assert_eq!(wrong.text, unknown.text);
    assert_eq!(wrong.status, unknown.status);
    assert!(wrong.headers.get(header::SET_COOKIE).is_none());
}

fn cookie_request(method: Method, uri: &str, who: &Session, csrf: Option<&str>, body: Option<&str>) -> Request<Body> {
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::COOKIE, &who.cookie_header);
    if let Some(csrf) = csrf {
        b = b.header("x-csrf-token", csrf);
    }
    match body {
        Some(body) => b
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_owned())),
        None => b.body(Body::empty()),
    }
    .expect("request")
}

#[tokio::test]
async fn cookie_auth_needs_csrf_on_unsafe_methods_and_bearer_does_not() {
    let t = TestApp::new().await;
    let agent = t.login_as(Some(t.tenant_a.id), Role::Agent).await;
    let contact = r#"{"name": "Ada"}"#;

    // Safe methods work with the cookie alone.
    let res = t
        .send(cookie_request(Method::GET, "/api/v1/auth/me", &agent, None, None))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);

    let missing = t
        .send(cookie_request(
            Method::POST,
            "/api/v1/contacts",
            &agent,
            None,
            Some(contact),
        ))
        .await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN);
    assert_eq!(missing.body["code"], "csrf_failed");
    let wrong = t
        .send(cookie_request(
            Method::POST,
            "/api/v1/contacts",
            &agent,
            Some("forged"),
            Some(contact),
        ))
        .await;
    assert_eq!(wrong.body["code"], "csrf_failed");

    // The header must match the cookie: a header equal to the session token
    // but a tampered cookie fails too.
    let mut tampered = agent.clone();
    tampered.cookie_header = tampered.cookie_header.replace(&agent.csrf, "other");
    let res = t
        .send(cookie_request(
            Method::POST,
            "/api/v1/contacts",
            &tampered,
            Some(&agent.csrf),
            Some(contact),
        ))
        .await;
    assert_eq!(res.body["code"], "csrf_failed");

    let total = t.call(Method::GET, "/api/v1/contacts", &agent, None).await.body["total"].clone();
    assert_eq!(total, json!(0), "rejected requests must not write");

    let ok = t
        .send(cookie_request(
            Method::POST,
            "/api/v1/contacts",
            &agent,
            Some(&agent.csrf),
            Some(contact),
        ))
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.text);

    let bearer = t
        .call(Method::POST, "/api/v1/contacts", &agent, Some(json!({"name": "Bob"})))
        .await;
    assert_eq!(bearer.status, StatusCode::CREATED, "{}", bearer.text);

    // A forged session cookie (right ID shape, wrong signature) is not a session.
    let mut forged = agent.clone();
    let sid = agent
        .cookie_header
        .split("sb_session=")
        .nth(1)
        .and_then(|v| v.split('.').next())
        .expect("sid");
    forged.cookie_header = format!("sb_session={sid}.AAAA; sb_csrf={}", agent.csrf);
    let res = t
        .send(cookie_request(Method::GET, "/api/v1/auth/me", &forged, None, None))
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);

    // Cookie logout (with CSRF) ends the session for the cookie and the JWT.
    let out = t
        .send(cookie_request(
            Method::POST,
            "/api/v1/auth/logout",
            &agent,
            Some(&agent.csrf),
            None,
        ))
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    let res = t
        .send(cookie_request(Method::GET, "/api/v1/auth/me", &agent, None, None))
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        t.call(Method::GET, "/api/v1/auth/me", &agent, None).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn bad_tokens_are_unauthorized() {
    let t = TestApp::new().await;
    for auth in ["Bearer not.a.jwt", "Basic abc", "Bearer "] {
        let req = Request::builder()
            .uri("/api/v1/auth/me")
            .header(header::AUTHORIZATION, auth)
            .body(Body::empty())
            .expect("request");
        let res = t.send(req).await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{auth}");
        assert_eq!(res.body["code"], "unauthorized");
    }
    let res = t.send(json_request(Method::GET, "/api/v1/contacts", None, None)).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn password_change_revokes_existing_sessions() {
    let t = TestApp::new().await;
    let owner = t.login_as(Some(t.tenant_a.id), Role::Owner).await;
    let agent = t.login_as(Some(t.tenant_a.id), Role::Agent).await;
    let res = t
        .call(
            Method::PATCH,
            &format!("/api/v1/users/{}", agent.user.id),
            &owner,
            Some(json!({"password": "a brand new passphrase"})),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert_eq!(
        t.call(Method::GET, "/api/v1/auth/me", &agent, None).await.status,
        StatusCode::UNAUTHORIZED
    );
    t.login(&agent.user.email, "a brand new passphrase").await;
}

#[tokio::test]
async fn login_is_rate_limited_per_ip() {
    let mut settings = test_settings();
    settings.limits.login_per_minute = 3;
    let t = TestApp::with(settings, switchboard_bus::Bus::in_process()).await;
    let attempt = |ip: [u8; 4]| {
        let mut req = json_request(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"email": "x@example.com", "password": "guess"})),
        );
        req.extensions_mut().insert(ConnectInfo(SocketAddr::from((ip, 5555))));
        req
    };
    for _ in 0..3 {
        assert_eq!(t.send(attempt([10, 0, 0, 1])).await.status, StatusCode::UNAUTHORIZED);
    }
    let limited = t.send(attempt([10, 0, 0, 1])).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.body["code"], "rate_limited");
    let retry: u64 = limited.headers[header::RETRY_AFTER]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(retry >= 1);
    // Other clients have their own bucket.
    assert_eq!(t.send(attempt([10, 0, 0, 2])).await.status, StatusCode::UNAUTHORIZED);
}
