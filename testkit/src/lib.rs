//! Dev-only helpers that run the real engine for integration tests.
//!
//! [`TestApp::spawn`] builds the production [`Engine`] (same `Engine::build`
//! and `run_until` as `switchboard serve`) on `127.0.0.1:0` with a temporary
//! data directory, and gives tests a base URL, an HTTP client with a cookie
//! jar, the engine's store for seeding, and helpers to create users and log
//! in over HTTP. Backing services get isolated namespaces:
//! [`postgres_url_for_test`] creates a fresh database per call, and
//! [`redis_prefix_for_test`] a random key prefix.
//!
//! Tests that need PostgreSQL or Redis read `SWITCHBOARD_TEST_POSTGRES_URL` /
//! `SWITCHBOARD_TEST_REDIS_URL` and fail (never skip) when the service is down.
//!
//! # Layout
//! - [`TestApp`]: the spawned engine and its helpers.
//! - [`TestDatabase`]: a throwaway PostgreSQL database, dropped best-effort.
//! - [`postgres_admin_url`], [`redis_url`], [`redis_prefix_for_test`]: service locations.

use anyhow::{Context as _, bail};
use serde::Deserialize;
use sqlx::Connection as _;
use std::net::SocketAddr;
use std::time::Duration;
use switchboard_config::Settings;
use switchboard_domain::{NewTenant, NewUser, Role, Secret, Tenant, TenantId, User};
use switchboard_engine::{Engine, EngineError};
use switchboard_store::Store;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Default admin URL of the test PostgreSQL server.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Default URL of the test Redis server.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// The PostgreSQL server tests use (`SWITCHBOARD_TEST_POSTGRES_URL`).
pub fn postgres_admin_url() -> String {
    env_or("SWITCHBOARD_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
}

/// The Redis server tests use (`SWITCHBOARD_TEST_REDIS_URL`).
pub fn redis_url() -> String {
    env_or("SWITCHBOARD_TEST_REDIS_URL", DEFAULT_REDIS_URL)
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// A random Redis key prefix, so concurrent tests never see each other's keys.
pub fn redis_prefix_for_test() -> String {
    format!("sbtest-{}", uuid::Uuid::new_v4().simple())
}

/// A fresh PostgreSQL database on the test server. It is dropped (forcibly,
/// best-effort) when this value is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    /// Connection URL of the new database.
    pub url: String,
    name: String,
    admin_url: String,
}

/// Create `sb_test_<random>` on the server at [`postgres_admin_url`]. Fails when
/// the server is unreachable: tests that need it must not silently pass.
pub async fn postgres_url_for_test() -> anyhow::Result<TestDatabase> {
    let admin_url = postgres_admin_url();
    let name = format!("sb_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin_url)
        .await
        .with_context(|| format!("PostgreSQL at SWITCHBOARD_TEST_POSTGRES_URL ({admin_url}) is unreachable"))?;
    // The name is generated above from hex digits, so interpolating it is safe.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .context("CREATE DATABASE")?;
    conn.close().await.ok();
    let url = replace_db_name(&admin_url, &name)?;
    Ok(TestDatabase { url, name, admin_url })
}

fn replace_db_name(url: &str, name: &str) -> anyhow::Result<String> {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let Some(scheme_end) = base.find("://") else {
        bail!("not a URL: {url}")
    };
    let after = scheme_end + 3;
    let prefix = match base[after..].find('/') {
        Some(slash) => &base[..after + slash],
        None => base,
    };
    Ok(match query {
        Some(q) => format!("{prefix}/{name}?{q}"),
        None => format!("{prefix}/{name}"),
    })
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot be blocked on; a
        // separate thread with its own small runtime can.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&admin_url).await.ok()?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await
                .ok()?;
                conn.close().await.ok()
            })
        });
        let _ = dropped.join();
    }
}

/// Settings for a test engine: temp data dir, port 0, plain-HTTP cookies, and
/// limits loose enough that tests are not rate limited.
pub fn test_settings(data_dir: &std::path::Path) -> Settings {
    let mut settings = Settings::default();
    settings.storage.data_dir = data_dir.to_path_buf();
    settings.http.bind = SocketAddr::from(([127, 0, 0, 1], 0));
    settings.security.cookie_secure = false;
    settings.limits.login_per_minute = 10_000;
    settings.limits.webhook_per_second = 10_000;
    settings.shutdown.grace_period = Duration::from_secs(5);
    settings.database.max_connections = 5;
    // One speech server per test that needs it (see `speech_command`), not one per engine.
    settings.speech.autostart = false;
    settings
}

/// The repository's root directory (for fixtures and the bundled speech server).
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default()
}

/// The command line that starts the bundled local speech server, with
/// absolute paths (tests do not run from the repository root). Fails with a
/// clear message when it is not installed.
pub fn speech_command() -> anyhow::Result<String> {
    let root = repo_root();
    let python = root.join("speech/.venv/bin/python");
    anyhow::ensure!(
        python.exists(),
        "the local speech server is not installed ({} is missing): run scripts/install-speech",
        python.display()
    );
    Ok(format!(
        "{} {}",
        python.display(),
        root.join("speech/server.py").display()
    ))
}

/// A free TCP port on 127.0.0.1 (bound and released; another process could take it first).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).context("bind a free port")?;
    Ok(listener.local_addr().context("local addr")?.port())
}

/// A user created by [`TestApp::create_user`], with the password to log in.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub user: User,
    pub email: String,
    pub password: String,
}

/// The body of a successful `POST /api/v1/auth/login`.
#[derive(Debug, Clone, Deserialize)]
pub struct LoginSession {
    pub access_token: String,
    pub csrf_token: String,
    pub user: User,
}

/// A running engine for one test.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub base_url: String,
    pub addr: SocketAddr,
    /// Keeps cookies, so a login through it authenticates later requests.
    pub client: reqwest::Client,
    /// The engine's own store, for seeding and inspecting rows.
    pub store: Store,
    /// The effective settings (data dir absolute).
    pub settings: Settings,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), EngineError>>>,
    database: Option<TestDatabase>,
    // Dropped last: the engine must be gone before its files are.
    _data_dir: tempfile::TempDir,
}

impl std::fmt::Debug for TestApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestApp")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl TestApp {
    /// The engine on embedded defaults: SQLite in a temp dir, in-process bus.
    pub async fn spawn() -> anyhow::Result<TestApp> {
        Self::spawn_with(|_| {}).await
    }

    /// Like [`TestApp::spawn`], after `configure` adjusts the test settings.
    pub async fn spawn_with(configure: impl FnOnce(&mut Settings)) -> anyhow::Result<TestApp> {
        let data_dir = tempfile::tempdir().context("temp data dir")?;
        let mut settings = test_settings(data_dir.path());
        configure(&mut settings);
        Self::start(settings, data_dir, None).await
    }

    /// The engine on a fresh PostgreSQL database and Redis with a random prefix.
    pub async fn spawn_postgres_redis() -> anyhow::Result<TestApp> {
        let database = postgres_url_for_test().await?;
        let data_dir = tempfile::tempdir().context("temp data dir")?;
        let mut settings = test_settings(data_dir.path());
        settings.database.url = database.url.clone();
        settings.redis.url = redis_url();
        settings.redis.key_prefix = redis_prefix_for_test();
        Self::start(settings, data_dir, Some(database)).await
    }

    async fn start(
        mut settings: Settings,
        data_dir: tempfile::TempDir,
        database: Option<TestDatabase>,
    ) -> anyhow::Result<TestApp> {
        // Webhook signatures and stream URLs use the public base URL: make it
        // the address the test engine really listens on.
        let pick_port =
            settings.http.bind.port() == 0 && settings.http.public_base_url == Settings::default().http.public_base_url;
        let mut attempts = 0;
        let engine = loop {
            if pick_port {
                let port = free_port()?;
                settings.http.bind = SocketAddr::from(([127, 0, 0, 1], port));
                settings.http.public_base_url = format!("http://127.0.0.1:{port}");
            }
            attempts += 1;
            match Engine::build(settings.clone()).await {
                Ok(engine) => break engine,
                // The port was free a moment ago; a parallel test may have
                // taken it since. Pick another.
                Err(EngineError::Bind { source, .. })
                    if pick_port && attempts < 5 && source.kind() == std::io::ErrorKind::AddrInUse => {}
                Err(err) => return Err(err).context("Engine::build"),
            }
        };
        let addr = engine.local_addr();
        let store = engine.store().clone();
        let settings = engine.settings().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(engine.run_until(async move {
            // A dropped sender (TestApp dropped without stop) also stops the engine.
            let _ = stopped.await;
        }));
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .context("http client")?;
        Ok(TestApp {
            base_url: format!("http://{addr}"),
            addr,
            client,
            store,
            settings,
            stop: Some(stop),
            task: Some(task),
            database,
            _data_dir: data_dir,
        })
    }

    /// `base_url` + `path` (`path` starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Shut the engine down gracefully and return how `run_until` ended.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .context("engine task panicked")?
                .context("engine stopped with an error")?;
        }
        // Keep the database until the engine has closed its pool.
        drop(self.database.take());
        Ok(())
    }

    /// A tenant with a unique name.
    pub async fn create_tenant(&self) -> anyhow::Result<Tenant> {
        let name = format!("Tenant {}", uuid::Uuid::new_v4().simple());
        Ok(self
            .store
            .tenants()
            .create(NewTenant {
                name,
                notification_email: None,
                max_concurrent_calls: 10,
            })
            .await?)
    }

    /// A user with a random email and password through the real store. A
    /// system admin gets no tenant; other roles use `tenant` or a new tenant.
    pub async fn create_user(&self, role: Role, tenant: Option<TenantId>) -> anyhow::Result<TestUser> {
        let tenant_id = match (role, tenant) {
            (Role::SystemAdmin, _) => None,
            (_, Some(id)) => Some(id),
            (_, None) => Some(self.create_tenant().await?.id),
        };
        let email = format!(
            "{}-{}@test.example",
            role.as_str().replace('_', "-"),
            uuid::Uuid::new_v4().simple()
        );
        let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
        let user = self
            .store
            .users()
            .create(NewUser {
                tenant_id,
                email: email.clone(),
                password: Secret::new(password.clone()),
                role,
            })
            .await?;
        Ok(TestUser { user, email, password })
    }

    /// Log in over HTTP with the shared client (its cookie jar keeps the session).
    pub async fn login(&self, email: &str, password: &str) -> anyhow::Result<LoginSession> {
        let response = self
            .client
            .post(self.url("/api/v1/auth/login"))
            .json(&serde_json::json!({ "email": email, "password": password }))
            .send()
            .await?;
        let status = response.status();
        if !status.is_success() {
            bail!(
                "login failed with {status}: {}",
                response.text().await.unwrap_or_default()
            );
        }
        Ok(response.json().await?)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_name_is_replaced_keeping_credentials_and_query() {
        assert_eq!(
            replace_db_name("postgres://postgres:pw@127.0.0.1:5432/postgres?sslmode=disable", "sb_x").expect("url"),
            "postgres://postgres:pw@127.0.0.1:5432/sb_x?sslmode=disable"
        );
        assert_eq!(
            replace_db_name("postgres://h", "sb_y").expect("url"),
            "postgres://h/sb_y"
        );
        assert!(replace_db_name("nonsense", "x").is_err());
    }

    #[test]
    fn redis_prefixes_are_unique_and_valid_bus_names() {
        let (a, b) = (redis_prefix_for_test(), redis_prefix_for_test());
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'), "{a}");
    }

    #[tokio::test]
    async fn spawned_app_serves_and_stops() {
        let app = TestApp::spawn().await.expect("spawn");
        let response = app.client.get(app.url("/healthz")).send().await.expect("healthz");
        assert_eq!(response.status(), 200);
        let admin = app.create_user(Role::SystemAdmin, None).await.expect("user");
        assert!(admin.user.tenant_id.is_none());
        let owner = app.create_user(Role::Owner, None).await.expect("owner");
        assert!(owner.user.tenant_id.is_some());
        let session = app.login(&owner.email, &owner.password).await.expect("login");
        assert_eq!(session.user.id, owner.user.id);
        assert!(app.login(&owner.email, "wrong-password").await.is_err());
        let addr = app.addr;
        app.stop().await.expect("clean stop");
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "still listening after stop"
        );
    }
}
