//! Switchboard's storage layer: sqlx repositories that run one SQL text on
//! SQLite and PostgreSQL through `AnyPool`, with provider secrets encrypted at
//! rest and passwords hashed with Argon2id.
//!
//! Guarantees:
//! - Every tenant-owned read, update and delete takes a [`Scope`]; rows of
//!   other tenants are `NotFound`, exactly like missing rows.
//! - Unique violations are [`StoreError::Conflict`], bad references
//!   [`StoreError::Invalid`], undecodable rows [`StoreError::Corrupt`]; nothing
//!   panics on database content.
//! - Lists are ordered `created_at DESC, id DESC` and `Page.total` counts the
//!   whole filtered set.
//! - Secret values and password hashes never leave the store except through
//!   the explicit `CredentialRepo::secrets`/`find_by_kind` calls.
//!
//! # Layout
//! - [`Store`]: the pool, backend kind and cipher; connect, migrate, repositories.
//! - [`scope`]: the [`Scope`] every tenant-owned call takes.
//! - [`error`]: [`StoreError`] and constraint-violation mapping.
//! - [`crypto`]: XChaCha20-Poly1305 sealing of credential secrets.
//! - [`password`]: Argon2id hashing.
//! - [`repo`]: one repository per table (tenants, users, ..., sessions), each
//!   with its filter struct.
//! - `sql`: the `$n` query builder and typed row readers shared by the repositories.

extern crate switchboard_domain as domain;

pub mod crypto;
pub mod error;
pub mod password;
pub mod repo;
pub mod scope;
mod sql;

pub use crypto::SecretCipher;
pub use error::StoreError;
pub use repo::{
    AgentFilter, AgentRepo, AppointmentFilter, AppointmentRepo, AuditRepo, CallFilter, CallRepo, CallSummaryRow,
    ContactFilter, ContactRepo, ConversationFilter, ConversationRepo, CredentialFilter, CredentialRepo, MessageFilter,
    MessageRepo, PhoneNumberFilter, PhoneNumberRepo, SessionRecord, SessionRepo, SummaryStatus, TenantFilter,
    TenantRepo, TranscriptRepo, TurnRepo, UserFilter, UserRepo,
};
pub use scope::Scope;

use futures::future::BoxFuture;
use sqlx::AnyConnection;
use sqlx::any::AnyPoolOptions;
use sqlx::pool::PoolConnectionMetadata;
use sqlx::{AnyPool, Executor};
use std::path::Path;
use std::sync::{Arc, Once};
use std::time::Duration;

/// Which database the store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend named by a connection URL's scheme.
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(StoreError::invalid(
                "database URL must start with sqlite:, postgres:// or postgresql://",
            ))
        }
    }
}

/// How long a SQLite connection waits for the write lock before failing.
const SQLITE_BUSY_TIMEOUT_MS: u32 = 5_000;

/// The storage handle: cheap to clone, shared by every task.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    cipher: Arc<SecretCipher>,
}

impl Store {
    /// Open a pool. SQLite URLs (`sqlite://path?mode=rwc`) get their parent
    /// directory created, WAL journaling, `foreign_keys=ON` and a busy timeout.
    pub async fn connect(url: &str, max_connections: u32, encryption_key: [u8; 32]) -> Result<Store, StoreError> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);

        let backend = Backend::from_url(url)?;
        let max_connections = max_connections.max(1);
        let pool = match backend {
            Backend::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(max_connections)
                    .connect(url)
                    .await?
            }
            Backend::Sqlite => {
                let in_memory = url.contains(":memory:") || url.contains("mode=memory");
                if !in_memory {
                    create_parent_dir(url)?;
                }
                // Each in-memory connection is its own database, so a pool of
                // them would see different data: keep exactly one, forever.
                let options = if in_memory {
                    AnyPoolOptions::new()
                        .max_connections(1)
                        .min_connections(1)
                        .idle_timeout(None)
                        .max_lifetime(None)
                } else {
                    AnyPoolOptions::new().max_connections(max_connections)
                };
                let pool = options.after_connect(sqlite_pragmas).connect(url).await?;
                if !in_memory {
                    // journal_mode is stored in the file, so setting it once suffices.
                    pool.execute("PRAGMA journal_mode = WAL").await?;
                }
                pool
            }
        };
        Ok(Store {
            pool,
            backend,
            cipher: Arc::new(SecretCipher::new(encryption_key)),
        })
    }

    /// Apply the embedded migrations for this backend.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self.backend {
            Backend::Sqlite => sqlx::migrate!("../migrations/sqlite").run(&self.pool).await?,
            Backend::Postgres => sqlx::migrate!("../migrations/postgres").run(&self.pool).await?,
        }
        Ok(())
    }

    /// Round-trip a trivial query (health checks).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Close the pool, waiting for checked-out connections to return.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The raw pool, for operational tooling and tests that must inspect or
    /// damage rows directly. Application code goes through the repositories.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub(crate) fn cipher(&self) -> &SecretCipher {
        &self.cipher
    }

    pub fn tenants(&self) -> TenantRepo<'_> {
        TenantRepo::new(self)
    }
    pub fn users(&self) -> UserRepo<'_> {
        UserRepo::new(self)
    }
    pub fn phone_numbers(&self) -> PhoneNumberRepo<'_> {
        PhoneNumberRepo::new(self)
    }
    pub fn agents(&self) -> AgentRepo<'_> {
        AgentRepo::new(self)
    }
    pub fn credentials(&self) -> CredentialRepo<'_> {
        CredentialRepo::new(self)
    }
    pub fn contacts(&self) -> ContactRepo<'_> {
        ContactRepo::new(self)
    }
    pub fn appointments(&self) -> AppointmentRepo<'_> {
        AppointmentRepo::new(self)
    }
    pub fn calls(&self) -> CallRepo<'_> {
        CallRepo::new(self)
    }
    pub fn transcripts(&self) -> TranscriptRepo<'_> {
        TranscriptRepo::new(self)
    }
    pub fn turns(&self) -> TurnRepo<'_> {
        TurnRepo::new(self)
    }
    pub fn conversations(&self) -> ConversationRepo<'_> {
        ConversationRepo::new(self)
    }
    pub fn messages(&self) -> MessageRepo<'_> {
        MessageRepo::new(self)
    }
    pub fn audit(&self) -> AuditRepo<'_> {
        AuditRepo::new(self)
    }
    pub fn sessions(&self) -> SessionRepo<'_> {
        SessionRepo::new(self)
    }
}

fn sqlite_pragmas(conn: &mut AnyConnection, _meta: PoolConnectionMetadata) -> BoxFuture<'_, Result<(), sqlx::Error>> {
    Box::pin(async move {
        // sqlx sets these by default today; stating them keeps the guarantee
        // if the defaults ever change.
        conn.execute("PRAGMA foreign_keys = ON").await?;
        conn.execute(sqlx::AssertSqlSafe(format!(
            "PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}"
        )))
        .await?;
        Ok(())
    })
}

/// Create the directory holding a SQLite file named by `url`.
fn create_parent_dir(url: &str) -> Result<(), StoreError> {
    let rest = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() {
        return Ok(());
    }
    if let Some(parent) = Path::new(path).parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    Ok(())
}

/// The store's idea of a TTL expressed in milliseconds, saturating.
pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_follows_the_url_scheme() {
        assert_eq!(Backend::from_url("sqlite://x.db?mode=rwc").ok(), Some(Backend::Sqlite));
        assert_eq!(Backend::from_url("postgres://u@h/db").ok(), Some(Backend::Postgres));
        assert_eq!(Backend::from_url("postgresql://u@h/db").ok(), Some(Backend::Postgres));
        assert!(matches!(
            Backend::from_url("mysql://h/db"),
            Err(StoreError::Invalid { .. })
        ));
    }

    #[test]
    fn parent_dir_is_created_for_sqlite_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("a/b/switchboard.db");
        create_parent_dir(&format!("sqlite://{}?mode=rwc", db.display())).expect("create");
        assert!(dir.path().join("a/b").is_dir());
    }
}
