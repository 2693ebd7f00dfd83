//! Input handling, pagination and filters, secret hygiene, health, request
//! IDs and the OpenAPI spec, through the production router.

mod common;

use axum::body::Body;
use common::*;
use http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};
use switchboard_domain::Role;

#[tokio::test]
async fn bad_input_is_rejected_with_json_codes_and_changes_nothing() {
    let mut settings = test_settings();
    settings.limits.max_body_bytes = 1024;
    let t = TestApp::with(settings, switchboard_bus::Bus::in_process()).await;
    let admin = t.login_as(Some(t.tenant_a.id), Role::Admin).await;
    let created = t
        .call(Method::POST, "/api/v1/contacts", &admin, Some(json!({"name": "Ada"})))
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let id = created.body["id"].as_str().expect("id").to_owned();
    let item = format!("/api/v1/contacts/{id}");

    let cases: Vec<(Method, String, Body, StatusCode, &str)> = vec![
        (
            Method::POST,
            "/api/v1/contacts".into(),
            Body::from("{\"name\": "),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            Method::POST,
            "/api/v1/contacts".into(),
            Body::from("[1,2"),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            Method::POST,
            "/api/v1/contacts".into(),
            Body::from(r#"{"name": 42}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            Method::POST,
            "/api/v1/contacts".into(),
            Body::from(r#"{"name": "x", "admin": true}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            Method::POST,
            "/api/v1/contacts".into(),
            Body::from(r#"{"name": "x", "phone": "555-1234"}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            Method::POST,
            "/api/v1/contacts".into(),
            Body::from(r#"{"name": "  "}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            Method::POST,
            "/api/v1/contacts".into(),
            Body::from(format!(r#"{{"name": "{}"}}"#, "x".repeat(4096))),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            Method::POST,
            "/api/v1/phone-numbers".into(),
            Body::from(r#"{"number": "+0123"}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            Method::PATCH,
            item.clone(),
            Body::from(r#"{"phone": "not a number"}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            Method::PATCH,
            item.clone(),
            Body::from(r#"{"status": "vip"}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            Method::PATCH,
            item.clone(),
            Body::from(r#"{"name": ["a"]}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            Method::PATCH,
            item.clone(),
            Body::from("nope"),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            Method::PATCH,
            "/api/v1/contacts/not-a-uuid".into(),
            Body::from("{}"),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            Method::PATCH,
            format!("/api/v1/contacts/{}", uuid::Uuid::new_v4()),
            Body::from(r#"{"name": "y"}"#),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            Method::DELETE,
            format!("/api/v1/contacts/{}", uuid::Uuid::new_v4()),
            Body::empty(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            Method::GET,
            "/api/v1/contacts?limit=lots".into(),
            Body::empty(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            Method::GET,
            "/api/v1/contacts?colour=red".into(),
            Body::empty(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            Method::GET,
            "/api/v1/nothing-here".into(),
            Body::empty(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            Method::PUT,
            item.clone(),
            Body::from("{}"),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
    ];
    for (method, uri, body, status, code) in cases {
        let label = format!("{method} {uri}");
        let res = t.send(raw_request(method, &uri, &admin, body)).await;
        assert_eq!(res.status, status, "{label}: {}", res.text);
        assert_eq!(res.body["code"], code, "{label}: {}", res.text);
        assert!(res.body["message"].as_str().is_some_and(|m| !m.is_empty()), "{label}");
    }
    let res = t
        .send(raw_request(
            Method::POST,
            "/api/v1/contacts",
            &admin,
            Body::from(r#"{"name": 42}"#),
        ))
        .await;
    assert!(
        res.body["message"].as_str().expect("message").contains("invalid type"),
        "{}",
        res.text
    );

    // Missing content type is a JSON error too.
    let req = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/contacts")
        .header(header::AUTHORIZATION, format!("Bearer {}", admin.token))
        .body(Body::from(r#"{"name": "x"}"#))
        .expect("request");
    assert_eq!(t.send(req).await.body["code"], "invalid_json");

    let after = t.call(Method::GET, "/api/v1/contacts", &admin, None).await;
    assert_eq!(after.body["total"], json!(1));
    assert_eq!(after.body["items"][0], created.body, "the contact must be unchanged");
    assert_eq!(
        t.call(Method::GET, "/api/v1/phone-numbers", &admin, None).await.body["total"],
        json!(0)
    );
}

#[tokio::test]
async fn pagination_and_filters() {
    let t = TestApp::new().await;
    let agent = t.login_as(Some(t.tenant_a.id), Role::Agent).await;
    for i in 0..5 {
        let status = if i % 2 == 0 { "qualified" } else { "new" };
        let body =
            json!({"name": format!("Lead {i}"), "status": status, "tags": if i == 4 { vec!["vip"] } else { vec![] }});
        assert_eq!(
            t.call(Method::POST, "/api/v1/contacts", &agent, Some(body))
                .await
                .status,
            StatusCode::CREATED
        );
    }
    let page1 = t.call(Method::GET, "/api/v1/contacts?limit=2", &agent, None).await;
    assert_eq!(page1.body["total"], json!(5));
    assert_eq!(page1.body["limit"], json!(2));
    let names = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|c| c["name"].as_str().expect("name").to_owned())
            .collect()
    };
    assert_eq!(names(&page1.body), ["Lead 4", "Lead 3"], "newest first");
    let page3 = t
        .call(Method::GET, "/api/v1/contacts?limit=2&offset=4", &agent, None)
        .await;
    assert_eq!(names(&page3.body), ["Lead 0"]);
    let qualified = t
        .call(Method::GET, "/api/v1/contacts?status=qualified", &agent, None)
        .await;
    assert_eq!(qualified.body["total"], json!(3));
    let vip = t.call(Method::GET, "/api/v1/contacts?tag=vip", &agent, None).await;
    assert_eq!(names(&vip.body), ["Lead 4"]);
    let search = t.call(Method::GET, "/api/v1/contacts?q=lead%201", &agent, None).await;
    assert_eq!(names(&search.body), ["Lead 1"]);
    let clamped = t.call(Method::GET, "/api/v1/contacts?limit=100000", &agent, None).await;
    assert_eq!(clamped.body["limit"], json!(200));
    let bad = t.call(Method::GET, "/api/v1/contacts?status=vip", &agent, None).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    // Every create is audited (field names only).
    let owner = t.login_as(Some(t.tenant_a.id), Role::Owner).await;
    let all_audit = t.call(Method::GET, "/api/v1/audit?limit=200", &owner, None).await;
    let creates = all_audit.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|e| e["action"] == "create" && e["entity"] == "contact")
        .count();
    assert_eq!(creates, 5, "every create is audited");
}

#[tokio::test]
async fn secrets_never_appear_in_responses() {
    let t = TestApp::new().await;
    let owner = t.login_as(Some(t.tenant_a.id), Role::Owner).await;
    let secret = "sk-live-SUPER-SECRET-VALUE";
    let created = t
        .call(
            Method::POST,
            "/api/v1/credentials",
            &owner,
            Some(json!({"kind": "openai", "label": "main", "public": {"org": "acme"}, "secrets": {"api_key": secret}})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.body["secret_keys"], json!(["api_key"]));
    let id = created.body["id"].as_str().expect("id").to_owned();
    let rotated = "sk-live-ROTATED-SECRET";
    let patched = t
        .call(
            Method::PATCH,
            &format!("/api/v1/credentials/{id}"),
            &owner,
            Some(json!({"secrets": {"api_key": rotated, "extra": "x-secret"}})),
        )
        .await;
    assert_eq!(patched.body["secret_keys"], json!(["api_key", "extra"]));
    let new_password = "hunter2-very-secret";
    let user = t
        .call(
            Method::POST,
            "/api/v1/users",
            &owner,
            Some(json!({"email": "new@example.com", "password": new_password, "role": "agent"})),
        )
        .await;
    assert_eq!(user.status, StatusCode::CREATED, "{}", user.text);

    let mut bodies = vec![created.text, patched.text, user.text];
    for uri in [
        format!("/api/v1/credentials/{id}"),
        "/api/v1/credentials".to_owned(),
        "/api/v1/users".to_owned(),
        "/api/v1/audit?limit=200".to_owned(),
        "/api/v1/auth/me".to_owned(),
    ] {
        bodies.push(t.call(Method::GET, &uri, &owner, None).await.text);
    }
    // A wrong-typed secret must not echo back either.
    let bad = t
        .call(
            Method::POST,
            "/api/v1/credentials",
            &owner,
            Some(json!({"kind": "nope", "secrets": {"api_key": secret}})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    bodies.push(bad.text);
    for body in &bodies {
        for needle in [
            secret,
            rotated,
            "x-secret",
            new_password,
            PASSWORD,
            "argon2",
            "password_hash",
        ] {
            assert!(!body.contains(needle), "response leaked {needle}: {body}");
        }
    }
    // The secrets are stored, though, for the engine to use.
    let stored = t
        .store
        .credentials()
        .secrets(t.tenant_a.id, id.parse().expect("id"))
        .await
        .expect("secrets");
    assert_eq!(stored["api_key"].expose(), rotated);
}

#[tokio::test]
async fn health_readiness_and_request_ids() {
    let t = TestApp::new().await;
    let health = t.send(json_request(Method::GET, "/healthz", None, None)).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body, json!({"status": "ok"}));
    let ready = t.send(json_request(Method::GET, "/readyz", None, None)).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text);
    assert_eq!(ready.body["status"], "ready");
    assert_eq!(ready.body["bus"], "in-process");

    // Every response, errors included, gets a request ID; a caller's own ID is kept.
    for uri in ["/healthz", "/api/v1/contacts", "/no/such/route"] {
        let res = t.send(json_request(Method::GET, uri, None, None)).await;
        let id = res
            .headers
            .get("x-request-id")
            .expect("request id")
            .to_str()
            .expect("ascii");
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{uri}: {id}");
    }
    let req = Request::builder()
        .uri("/healthz")
        .header("x-request-id", "trace-123")
        .body(Body::empty())
        .expect("req");
    assert_eq!(t.send(req).await.headers["x-request-id"], "trace-123");

    let bus = switchboard_bus::Bus::in_process();
    bus.shutdown().await;
    let down = TestApp::with(test_settings(), bus).await;
    let res = down.send(json_request(Method::GET, "/readyz", None, None)).await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.body["code"], "not_ready");
    assert!(res.body["message"].as_str().expect("message").contains("bus"));
    assert!(!res.body["message"].as_str().expect("message").contains("store"));

    down.store.close().await;
    let res = down.send(json_request(Method::GET, "/readyz", None, None)).await;
    assert!(
        res.body["message"].as_str().expect("message").contains("store"),
        "{}",
        res.text
    );
}

#[tokio::test]
async fn openapi_spec_and_docs_list_every_route() {
    let t = TestApp::new().await;
    let spec = t
        .send(json_request(Method::GET, "/api/v1/openapi.json", None, None))
        .await;
    assert_eq!(spec.status, StatusCode::OK);
    assert!(spec.body["openapi"].as_str().expect("version").starts_with("3."));
    let paths = spec.body["paths"].as_object().expect("paths");
    let expected = [
        ("/api/v1/auth/login", "post"),
        ("/api/v1/auth/logout", "post"),
        ("/api/v1/auth/me", "get"),
        ("/api/v1/tenants", "post"),
        ("/api/v1/tenants/{id}", "patch"),
        ("/api/v1/users/{id}", "delete"),
        ("/api/v1/phone-numbers", "get"),
        ("/api/v1/agents/{id}", "patch"),
        ("/api/v1/credentials", "post"),
        ("/api/v1/contacts/{id}", "get"),
        ("/api/v1/appointments", "post"),
        ("/api/v1/calls/{id}", "get"),
        ("/api/v1/calls/{id}/transcript", "get"),
        ("/api/v1/conversations", "get"),
        ("/api/v1/messages/{id}", "get"),
        ("/api/v1/audit", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
    ];
    for (path, method) in expected {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "spec lacks {method} {path}"
        );
    }
    let schemas = spec.body["components"]["schemas"].as_object().expect("schemas");
    for schema in ["Contact", "NewContact", "ErrorBody", "LoginResponse", "Credential"] {
        assert!(schemas.contains_key(schema), "spec lacks schema {schema}");
    }
    let creds = &paths["/api/v1/credentials"]["get"]["description"];
    assert!(
        creds.as_str().expect("description").contains("Owner"),
        "permissions are documented"
    );

    let docs = t.send(json_request(Method::GET, "/api/v1/docs", None, None)).await;
    assert_eq!(docs.status, StatusCode::OK);
    assert!(
        docs.headers[header::CONTENT_TYPE]
            .to_str()
            .expect("ascii")
            .starts_with("text/html")
    );
    for (path, _) in expected {
        assert!(docs.text.contains(&format!("<code>{path}</code>")), "docs lack {path}");
    }
    assert!(docs.text.contains("NewContact"));
    assert!(
        !docs.text.contains("<script"),
        "the docs page must work offline, without scripts"
    );
    assert!(!docs.text.contains("https://"), "no external assets");
}

#[tokio::test]
async fn system_admin_creates_into_a_named_tenant_and_call_details_include_transcript() {
    let t = TestApp::new().await;
    let root = t.login_as(None, Role::SystemAdmin).await;
    let missing = t
        .call(Method::POST, "/api/v1/contacts", &root, Some(json!({"name": "x"})))
        .await;
    assert_eq!(missing.status, StatusCode::UNPROCESSABLE_ENTITY);
    let res = t
        .call(
            Method::POST,
            &format!("/api/v1/contacts?tenant_id={}", t.tenant_b.id),
            &root,
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED);
    assert_eq!(res.body["tenant_id"], json!(t.tenant_b.id));

    let call = t
        .store
        .calls()
        .create(switchboard_domain::NewCall {
            tenant_id: t.tenant_a.id,
            agent_id: None,
            provider_call_id: None,
            direction: switchboard_domain::CallDirection::Inbound,
            from: "+15550001111".into(),
            to: "+15550002222".into(),
            status: switchboard_domain::CallStatus::Ringing,
        })
        .await
        .expect("call");
    for (i, text) in ["hello", "hi, how can I help?"].iter().enumerate() {
        let speaker = if i == 0 {
            switchboard_domain::Speaker::Caller
        } else {
            switchboard_domain::Speaker::Agent
        };
        t.store
            .transcripts()
            .append(call.id, speaker, text, i as i64 * 1000, i as i64 * 1000 + 800)
            .await
            .expect("seg");
    }
    let agent = t.login_as(Some(t.tenant_a.id), Role::Agent).await;
    let detail = t
        .call(Method::GET, &format!("/api/v1/calls/{}", call.id), &agent, None)
        .await;
    assert_eq!(detail.status, StatusCode::OK, "{}", detail.text);
    assert_eq!(detail.body["call"]["id"], json!(call.id));
    assert_eq!(detail.body["transcript"][1]["text"], "hi, how can I help?");
    assert_eq!(detail.body["live"], json!(false));
    let transcript = t
        .call(
            Method::GET,
            &format!("/api/v1/calls/{}/transcript", call.id),
            &agent,
            None,
        )
        .await;
    assert_eq!(transcript.body.as_array().map(Vec::len), Some(2));
    let filtered = t.call(Method::GET, "/api/v1/calls?status=ringing", &agent, None).await;
    assert_eq!(filtered.body["total"], json!(1));
    let none = t
        .call(Method::GET, "/api/v1/calls?status=completed", &agent, None)
        .await;
    assert_eq!(none.body["total"], json!(0));

    let mut conversations = Vec::new();
    for external in ["+15550000001", "+15550000002"] {
        let conversation = t
            .store
            .conversations()
            .create(switchboard_domain::NewConversation {
                tenant_id: t.tenant_a.id,
                channel: switchboard_domain::Channel::WhatsAppMeta,
                contact_id: None,
                agent_id: None,
                external_id: external.into(),
            })
            .await
            .expect("conversation");
        t.store
            .messages()
            .create(switchboard_domain::NewMessage {
                tenant_id: t.tenant_a.id,
                conversation_id: conversation.id,
                direction: switchboard_domain::MessageDirection::Inbound,
                provider_message_id: None,
                status: switchboard_domain::MessageStatus::Received,
                body: format!("hello from {external}"),
            })
            .await
            .expect("message");
        conversations.push(conversation.id);
    }
    let all = t.call(Method::GET, "/api/v1/messages", &agent, None).await;
    assert_eq!(all.body["total"], json!(2));
    let one = t
        .call(
            Method::GET,
            &format!("/api/v1/messages?conversation_id={}", conversations[0]),
            &agent,
            None,
        )
        .await;
    assert_eq!(one.body["total"], json!(1));
    assert_eq!(one.body["items"][0]["body"], "hello from +15550000001");
}

#[tokio::test]
async fn short_jwt_secrets_are_refused() {
    let t = TestApp::new().await;
    let state = switchboard_api::AppState::new(
        t.store.clone(),
        switchboard_bus::Bus::in_process(),
        NoLive,
        &t.settings,
        &switchboard_config::SecretString::new("too-short"),
    );
    assert!(matches!(state, Err(switchboard_api::StateError::WeakJwtSecret)));
}
