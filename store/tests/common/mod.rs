//! Test databases for the shared suite: a temp SQLite file or a fresh
//! PostgreSQL database per test, opened through the production
//! `Store::connect` + `migrate`. PostgreSQL being unreachable fails the test.

use std::panic::AssertUnwindSafe;
use switchboard_store::Store;

use futures::FutureExt;

pub const KEY: [u8; 32] = [42; 32];

pub struct TestDb {
    pub store: Store,
    pub url: String,
    admin: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

fn pg_admin_url() -> String {
    std::env::var("SWITCHBOARD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

impl TestDb {
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("nested/store.db").display());
        let store = Store::connect(&url, 5, KEY).await.expect("connect sqlite");
        store.migrate().await.expect("migrate sqlite");
        TestDb {
            store,
            url,
            admin: None,
            _dir: Some(dir),
        }
    }

    pub async fn postgres() -> TestDb {
        let admin_url = pg_admin_url();
        let admin = Store::connect(&admin_url, 1, KEY)
            .await
            .expect("PostgreSQL must be reachable at SWITCHBOARD_TEST_POSTGRES_URL");
        let name = format!("sb_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(admin.pool())
            .await
            .expect("create test database");
        admin.close().await;
        let url = replace_db(&admin_url, &name);
        let store = Store::connect(&url, 5, KEY).await.expect("connect postgres");
        store.migrate().await.expect("migrate postgres");
        TestDb {
            store,
            url,
            admin: Some((admin_url, name)),
            _dir: None,
        }
    }

    /// A second store on the same database with another key.
    pub async fn reopen(&self, key: [u8; 32]) -> Store {
        Store::connect(&self.url, 2, key).await.expect("reopen")
    }

    /// Drop the PostgreSQL database (best effort).
    pub async fn finish(self) {
        self.store.close().await;
        if let Some((admin_url, name)) = self.admin
            && let Ok(admin) = Store::connect(&admin_url, 1, KEY).await
        {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(admin.pool())
            .await;
            admin.close().await;
        }
    }
}

fn replace_db(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[scheme_end..]
        .find('/')
        .map(|i| i + scheme_end)
        .unwrap_or(base.len());
    let mut out = format!("{}/{}", &base[..host_end], name);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Run one case against a database, then clean up even when the case panics.
pub async fn run(db: TestDb, case: impl AsyncFnOnce(&TestDb)) {
    let result = AssertUnwindSafe(case(&db)).catch_unwind().await;
    db.finish().await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// Declare a case that runs on both backends: `both!(name);` for `async fn name(db: &TestDb)`.
#[macro_export]
macro_rules! both {
    ($($case:ident),+ $(,)?) => {$(
        mod $case {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                $crate::common::run($crate::common::TestDb::sqlite().await, super::$case).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                $crate::common::run($crate::common::TestDb::postgres().await, super::$case).await;
            }
        }
    )+};
}
