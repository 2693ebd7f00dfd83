//! API login sessions.
//!
//! Guarantees: session IDs are random (UUIDv4, not time-ordered, so they
//! cannot be guessed from each other); each has a 32-byte random CSRF token;
//! `get` returns nothing for expired or revoked sessions, or sessions of
//! deleted users (rows cascade).

use crate::error::StoreError;
use crate::sql::{RowExt, Sql, text};
use crate::{Store, duration_ms};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::OsRng;
use chacha20poly1305::aead::rand_core::RngCore;
use domain::{SessionId, Timestamp, UserId};
use std::time::Duration;

/// A stored login session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: SessionId,
    pub user_id: UserId,
    /// 32 random bytes, base64url without padding.
    pub csrf_token: String,
    pub expires_at: Timestamp,
}

pub struct SessionRepo<'a> {
    store: &'a Store,
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    OsRng.fill_bytes(&mut buf);
    buf
}

impl<'a> SessionRepo<'a> {
    pub(crate) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    pub async fn create(&self, user: UserId, ttl: Duration) -> Result<SessionRecord, StoreError> {
        let now = domain::now();
        let session = SessionRecord {
            id: SessionId::from_uuid(uuid::Builder::from_random_bytes(random_bytes::<16>()).into_uuid()),
            user_id: user,
            csrf_token: URL_SAFE_NO_PAD.encode(random_bytes::<32>()),
            expires_at: domain::timestamp_from_millis(now.timestamp_millis().saturating_add(duration_ms(ttl))),
        };
        Sql::new(
            "INSERT INTO sessions (id, user_id, csrf_token, expires_at, revoked_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .arg(text(session.id))
        .arg(text(user))
        .arg(session.csrf_token.as_str())
        .arg(session.expires_at)
        .arg(None::<i64>)
        .arg(now)
        .write(self.store.pool(), "session already exists")
        .await?;
        Ok(session)
    }

    /// The live session, or `None` when it is unknown, expired or revoked.
    pub async fn get(&self, id: SessionId) -> Result<Option<SessionRecord>, StoreError> {
        let row = Sql::new(
            "SELECT id, user_id, csrf_token, expires_at FROM sessions \
             WHERE id = $1 AND revoked_at IS NULL AND expires_at > $2",
        )
        .arg(text(id))
        .arg(domain::now())
        .fetch_optional(self.store.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(SessionRecord {
            id: row.parse("id")?,
            user_id: row.parse("user_id")?,
            csrf_token: row.text("csrf_token")?,
            expires_at: row.ts("expires_at")?,
        }))
    }

    /// Revoke one session; revoking an unknown or revoked session is a no-op.
    pub async fn revoke(&self, id: SessionId) -> Result<(), StoreError> {
        Sql::new("UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .arg(domain::now())
            .arg(text(id))
            .execute(self.store.pool())
            .await?;
        Ok(())
    }

    /// Revoke every session of the user (logout everywhere, password change).
    pub async fn revoke_all_for_user(&self, user: UserId) -> Result<u64, StoreError> {
        Sql::new("UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL")
            .arg(domain::now())
            .arg(text(user))
            .execute(self.store.pool())
            .await
    }
}
