//! Tenants: the top of every ownership chain.
//!
//! Guarantees: names are unique (`Conflict`), non-empty (`Invalid`), and
//! deleting a tenant removes every row it owns (foreign keys cascade).

use super::require_name;
use crate::Store;
use crate::error::StoreError;
use crate::scope::Scope;
use crate::sql::{Listing, RowExt, Sql, text};
use domain::{NewTenant, Page, PageRequest, Tenant, TenantId, TenantUpdate};
use sqlx::any::AnyRow;

const COLUMNS: &str = "id, name, notification_email, max_concurrent_calls, created_at, updated_at";
const TAKEN: &str = "a tenant with this name already exists";

/// Filters for [`TenantRepo::list`].
#[derive(Debug, Clone, Default)]
pub struct TenantFilter {
    /// Case-insensitive substring of the name.
    pub q: Option<String>,
}

pub struct TenantRepo<'a> {
    store: &'a Store,
}

fn parse(row: &AnyRow) -> Result<Tenant, StoreError> {
    Ok(Tenant {
        id: row.parse("id")?,
        name: row.text("name")?,
        notification_email: row.opt_text("notification_email")?,
        max_concurrent_calls: row.u32("max_concurrent_calls")?,
        created_at: row.ts("created_at")?,
        updated_at: row.ts("updated_at")?,
    })
}

impl<'a> TenantRepo<'a> {
    pub(crate) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    pub async fn create(&self, new: NewTenant) -> Result<Tenant, StoreError> {
        let now = domain::now();
        let tenant = Tenant {
            id: TenantId::new(),
            name: require_name("tenant name", &new.name)?,
            notification_email: new.notification_email,
            max_concurrent_calls: new.max_concurrent_calls,
            created_at: now,
            updated_at: now,
        };
        Sql::new(&format!(
            "INSERT INTO tenants ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
        ))
        .arg(text(tenant.id))
        .arg(tenant.name.as_str())
        .arg(tenant.notification_email.clone())
        .arg(i64::from(tenant.max_concurrent_calls))
        .arg(now)
        .arg(now)
        .write(self.store.pool(), TAKEN)
        .await?;
        Ok(tenant)
    }

    pub async fn get(&self, scope: Scope, id: TenantId) -> Result<Tenant, StoreError> {
        if !scope.allows(id) {
            return Err(StoreError::not_found("tenant"));
        }
        let row = Sql::new(&format!("SELECT {COLUMNS} FROM tenants WHERE id = $1"))
            .arg(text(id))
            .fetch_optional(self.store.pool())
            .await?
            .ok_or(StoreError::not_found("tenant"))?;
        parse(&row)
    }

    pub async fn find_by_name(&self, name: &str) -> Result<Option<Tenant>, StoreError> {
        let row = Sql::new(&format!("SELECT {COLUMNS} FROM tenants WHERE name = $1"))
            .arg(name.trim())
            .fetch_optional(self.store.pool())
            .await?;
        row.as_ref().map(parse).transpose()
    }

    pub async fn list(
        &self,
        scope: Scope,
        filter: &TenantFilter,
        page: PageRequest,
    ) -> Result<Page<Tenant>, StoreError> {
        let mut f = Sql::default();
        f.scope("id", &scope);
        if let Some(q) = filter.q.as_deref().filter(|q| !q.trim().is_empty()) {
            f.contains("LOWER(name)", q.trim());
        }
        Listing {
            table: "tenants",
            columns: COLUMNS,
            order_by: "created_at",
        }
        .page(self.store.pool(), &f, page, parse)
        .await
    }

    pub async fn update(&self, scope: Scope, id: TenantId, update: TenantUpdate) -> Result<Tenant, StoreError> {
        let mut t = self.get(scope, id).await?;
        if let Some(name) = update.name {
            t.name = require_name("tenant name", &name)?;
        }
        if let Some(email) = update.notification_email {
            t.notification_email = email;
        }
        if let Some(max) = update.max_concurrent_calls {
            t.max_concurrent_calls = max;
        }
        t.updated_at = domain::now();
        let n = Sql::new(
            "UPDATE tenants SET name = $2, notification_email = $3, max_concurrent_calls = $4, updated_at = $5 \
             WHERE id = $1",
        )
        .arg(text(id))
        .arg(t.name.as_str())
        .arg(t.notification_email.clone())
        .arg(i64::from(t.max_concurrent_calls))
        .arg(t.updated_at)
        .write(self.store.pool(), TAKEN)
        .await?;
        if n == 0 {
            return Err(StoreError::not_found("tenant"));
        }
        Ok(t)
    }

    /// Delete the tenant and, through cascading foreign keys, everything it owns.
    pub async fn delete(&self, scope: Scope, id: TenantId) -> Result<(), StoreError> {
        if !scope.allows(id) {
            return Err(StoreError::not_found("tenant"));
        }
        let n = Sql::new("DELETE FROM tenants WHERE id = $1")
            .arg(text(id))
            .execute(self.store.pool())
            .await?;
        if n == 0 {
            return Err(StoreError::not_found("tenant"));
        }
        Ok(())
    }
}
