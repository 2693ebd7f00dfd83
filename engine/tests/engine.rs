//! End-to-end tests of the library entry point (`Engine::build` + `run_until`)
//! through the testkit, on embedded defaults and on PostgreSQL + Redis.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use switchboard_domain::{CredentialKind, NewCredential, Role, Secret};
use switchboard_engine::{Engine, EngineError};
use switchboard_testkit::{TestApp, test_settings};

async fn readyz(app: &TestApp) -> serde_json::Value {
    let response = app.client.get(app.url("/readyz")).send().await.expect("readyz request");
    assert_eq!(response.status(), 200);
    response.json().await.expect("readyz json")
}

#[tokio::test]
async fn embedded_engine_is_ready_and_stops_cleanly() {
    let app = TestApp::spawn().await.expect("spawn");
    let body = readyz(&app).await;
    assert_eq!(body["status"], "ready");
    assert_eq!(body["bus"], "in-process");
    // The generated secrets and the SQLite file live in the data dir.
    let data_dir = app.settings.storage.data_dir.clone();
    assert!(data_dir.is_absolute());
    assert!(data_dir.join("switchboard.db").is_file());
    assert!(data_dir.join("secrets/encryption.key").is_file());
    assert!(data_dir.join("secrets/jwt.secret").is_file());
    let addr = app.addr;
    app.stop().await.expect("clean stop");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
}

#[tokio::test]
async fn postgres_and_redis_engine_is_ready() {
    let app = TestApp::spawn_postgres_redis()
        .await
        .expect("spawn on PostgreSQL + Redis");
    let body = readyz(&app).await;
    assert_eq!(body["bus"], "redis");
    assert_eq!(app.store.backend(), switchboard_store::Backend::Postgres);
    let owner = app.create_user(Role::Owner, None).await.expect("owner");
    let session = app.login(&owner.email, &owner.password).await.expect("login");
    let me = app
        .client
        .get(app.url("/api/v1/auth/me"))
        .bearer_auth(&session.access_token)
        .send()
        .await
        .expect("me");
    assert_eq!(me.status(), 200);
    app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn generated_secrets_survive_a_restart() {
    let data_dir = tempfile::tempdir().expect("tempdir");
    let settings = test_settings(data_dir.path());

    let first = Engine::build(settings.clone()).await.expect("first build");
    let owner_tenant = first
        .store()
        .tenants()
        .create(switchboard_domain::NewTenant {
            name: "Restart Co".into(),
            notification_email: None,
            max_concurrent_calls: 1,
        })
        .await
        .expect("tenant");
    let credential = first
        .store()
        .credentials()
        .create(
            owner_tenant.id,
            NewCredential {
                kind: CredentialKind::Twilio,
                label: "main".into(),
                public: serde_json::json!({}),
                secrets: BTreeMap::from([("auth_token".to_owned(), Secret::new("tok-123"))]),
            },
        )
        .await
        .expect("credential");
    first.run_until(async {}).await.expect("first stop");

    // Same data dir, no configured key: the generated key must be reused, or
    // the sealed secret would no longer open.
    let second = Engine::build(settings).await.expect("second build");
    let secrets = second
        .store()
        .credentials()
        .secrets(owner_tenant.id, credential.id)
        .await
        .expect("unseal");
    assert_eq!(secrets.get("auth_token").map(Secret::expose), Some("tok-123"));
    second.run_until(async {}).await.expect("second stop");
}

#[tokio::test]
async fn a_busy_port_is_a_bind_error() {
    let holder = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("hold a port");
    let taken: SocketAddr = holder.local_addr().expect("addr");
    let data_dir = tempfile::tempdir().expect("tempdir");
    let mut settings = test_settings(data_dir.path());
    settings.http.bind = taken;
    match Engine::build(settings).await {
        Err(EngineError::Bind { addr, .. }) => assert_eq!(addr, taken),
        other => panic!("expected a bind error, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unreachable_database_fails_the_build() {
    let data_dir = tempfile::tempdir().expect("tempdir");
    let mut settings = test_settings(data_dir.path());
    // The database's parent "directory" is a regular file, so it can never be created.
    let blocker = data_dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"x").expect("write");
    settings.database.url = format!("sqlite://{}/switchboard.db?mode=rwc", blocker.display());
    assert!(matches!(Engine::build(settings).await, Err(EngineError::Store(_))));
}

#[tokio::test]
async fn bad_redis_fails_the_build() {
    let data_dir = tempfile::tempdir().expect("tempdir");
    let mut settings = test_settings(data_dir.path());
    settings.redis.url = "redis://127.0.0.1:1".into();
    assert!(matches!(Engine::build(settings).await, Err(EngineError::Bus(_))));
}
