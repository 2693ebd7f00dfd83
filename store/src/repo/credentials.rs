//! Provider credentials with secrets encrypted at rest.
//!
//! Guarantees: the secret map is serialized to JSON and sealed with
//! XChaCha20-Poly1305 under a fresh nonce on every write, bound to
//! `credential:{id}:{tenant}` so ciphertext moved to another row fails to open
//! (`Crypto`). Only the names of the secret keys are returned by the ordinary
//! reads; values come out only through [`CredentialRepo::secrets`] and
//! [`CredentialRepo::find_by_kind`], and never appear in errors or logs.

use crate::Store;
use crate::error::StoreError;
use crate::scope::Scope;
use crate::sql::{Listing, RowExt, Sql, text, to_json};
use domain::{
    Credential, CredentialId, CredentialKind, CredentialUpdate, NewCredential, Page, PageRequest, Secret, TenantId,
};
use sqlx::any::AnyRow;
use std::collections::BTreeMap;

const COLUMNS: &str = "id, tenant_id, kind, label, public_config, secret_keys, created_at, updated_at";

/// Filters for [`CredentialRepo::list`].
#[derive(Debug, Clone, Default)]
pub struct CredentialFilter {
    pub kind: Option<CredentialKind>,
}

pub struct CredentialRepo<'a> {
    store: &'a Store,
}

fn parse(row: &AnyRow) -> Result<Credential, StoreError> {
    Ok(Credential {
        id: row.parse("id")?,
        tenant_id: row.parse("tenant_id")?,
        kind: row.parse("kind")?,
        label: row.text("label")?,
        public: row.json("public_config")?,
        secret_keys: row.json("secret_keys")?,
        created_at: row.ts("created_at")?,
        updated_at: row.ts("updated_at")?,
    })
}

fn aad(id: CredentialId, tenant: TenantId) -> String {
    format!("credential:{id}:{tenant}")
}

impl<'a> CredentialRepo<'a> {
    pub(crate) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    fn seal(
        &self,
        id: CredentialId,
        tenant: TenantId,
        secrets: &BTreeMap<String, Secret>,
    ) -> Result<String, StoreError> {
        let plain: BTreeMap<&str, &str> = secrets.iter().map(|(k, v)| (k.as_str(), v.expose())).collect();
        // Serializing string pairs cannot fail; map it to Crypto anyway so no detail escapes.
        let json = serde_json::to_vec(&plain).map_err(|_| StoreError::Crypto)?;
        self.store.cipher().seal(&aad(id, tenant), &json)
    }

    fn open(&self, id: CredentialId, tenant: TenantId, sealed: &str) -> Result<BTreeMap<String, Secret>, StoreError> {
        let json = self.store.cipher().open(&aad(id, tenant), sealed)?;
        let plain: BTreeMap<String, String> = serde_json::from_slice(&json).map_err(|_| StoreError::Crypto)?;
        Ok(plain.into_iter().map(|(k, v)| (k, Secret::new(v))).collect())
    }

    pub async fn create(&self, tenant: TenantId, new: NewCredential) -> Result<Credential, StoreError> {
        let now = domain::now();
        let id = CredentialId::new();
        let sealed = self.seal(id, tenant, &new.secrets)?;
        let cred = Credential {
            id,
            tenant_id: tenant,
            kind: new.kind,
            label: new.label.trim().to_owned(),
            public: new.public,
            secret_keys: new.secrets.keys().cloned().collect(),
            created_at: now,
            updated_at: now,
        };
        Sql::new(
            "INSERT INTO credentials (id, tenant_id, kind, label, public_config, secret_keys, secrets_sealed, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .arg(text(id))
        .arg(text(tenant))
        .arg(cred.kind.as_str())
        .arg(cred.label.as_str())
        .arg(to_json(&cred.public)?)
        .arg(to_json(&cred.secret_keys)?)
        .arg(sealed)
        .arg(now)
        .arg(now)
        .write(self.store.pool(), "credential already exists")
        .await?;
        Ok(cred)
    }

    pub async fn get(&self, scope: Scope, id: CredentialId) -> Result<Credential, StoreError> {
        let mut sql = Sql::new(&format!("SELECT {COLUMNS} FROM credentials WHERE id = $1")).arg(text(id));
        sql.scope("tenant_id", &scope);
        let row = sql
            .fetch_optional(self.store.pool())
            .await?
            .ok_or(StoreError::not_found("credential"))?;
        parse(&row)
    }

    pub async fn list(
        &self,
        scope: Scope,
        filter: &CredentialFilter,
        page: PageRequest,
    ) -> Result<Page<Credential>, StoreError> {
        let mut f = Sql::default();
        f.scope("tenant_id", &scope);
        if let Some(kind) = filter.kind {
            f.push(" AND kind = ").bind(kind.as_str());
        }
        Listing {
            table: "credentials",
            columns: COLUMNS,
            order_by: "created_at",
        }
        .page(self.store.pool(), &f, page, parse)
        .await
    }

    /// Change label/public settings; `secrets`, when given, replaces all secret fields.
    pub async fn update(
        &self,
        scope: Scope,
        id: CredentialId,
        update: CredentialUpdate,
    ) -> Result<Credential, StoreError> {
        let mut c = self.get(scope, id).await?;
        if let Some(label) = update.label {
            c.label = label.trim().to_owned();
        }
        if let Some(public) = update.public {
            c.public = public;
        }
        c.updated_at = domain::now();
        let mut sql = Sql::new("UPDATE credentials SET label = ");
        sql.bind(c.label.as_str())
            .push(", public_config = ")
            .bind(to_json(&c.public)?)
            .push(", updated_at = ")
            .bind(c.updated_at);
        if let Some(secrets) = update.secrets {
            let sealed = self.seal(id, c.tenant_id, &secrets)?;
            c.secret_keys = secrets.keys().cloned().collect();
            sql.push(", secret_keys = ")
                .bind(to_json(&c.secret_keys)?)
                .push(", secrets_sealed = ")
                .bind(sealed);
        }
        sql.push(" WHERE id = ")
            .bind(text(id))
            .push(" AND tenant_id = ")
            .bind(text(c.tenant_id));
        if sql.write(self.store.pool(), "credential already exists").await? == 0 {
            return Err(StoreError::not_found("credential"));
        }
        Ok(c)
    }

    pub async fn delete(&self, scope: Scope, id: CredentialId) -> Result<(), StoreError> {
        let mut sql = Sql::new("DELETE FROM credentials WHERE id = $1").arg(text(id));
        sql.scope("tenant_id", &scope);
        if sql.execute(self.store.pool()).await? == 0 {
            return Err(StoreError::not_found("credential"));
        }
        Ok(())
    }

    /// Decrypted secret fields of one credential (internal use: provider calls).
    pub async fn secrets(&self, tenant: TenantId, id: CredentialId) -> Result<BTreeMap<String, Secret>, StoreError> {
        let row = Sql::new("SELECT secrets_sealed FROM credentials WHERE id = $1 AND tenant_id = $2")
            .arg(text(id))
            .arg(text(tenant))
            .fetch_optional(self.store.pool())
            .await?
            .ok_or(StoreError::not_found("credential"))?;
        self.open(id, tenant, &row.text("secrets_sealed")?)
    }

    /// The tenant's newest credential of `kind`, with its decrypted secrets.
    pub async fn find_by_kind(
        &self,
        tenant: TenantId,
        kind: CredentialKind,
    ) -> Result<Option<(Credential, BTreeMap<String, Secret>)>, StoreError> {
        let row = Sql::new(&format!(
            "SELECT {COLUMNS}, secrets_sealed FROM credentials WHERE tenant_id = $1 AND kind = $2 \
             ORDER BY created_at DESC, id DESC LIMIT 1"
        ))
        .arg(text(tenant))
        .arg(kind.as_str())
        .fetch_optional(self.store.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let cred = parse(&row)?;
        let secrets = self.open(cred.id, tenant, &row.text("secrets_sealed")?)?;
        Ok(Some((cred, secrets)))
    }
}
