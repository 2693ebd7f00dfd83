//! The audit log: who changed what, when.
//!
//! Guarantees: entries are append-only through this API and listed newest
//! first; platform-level entries (no tenant) are visible only in `Scope::All`.

use crate::Store;
use crate::error::StoreError;
use crate::scope::Scope;
use crate::sql::{Listing, RowExt, Sql, opt_text, text, to_json};
use domain::{AuditEntry, AuditId, NewAuditEntry, Page, PageRequest};
use sqlx::any::AnyRow;

const COLUMNS: &str = "id, tenant_id, user_id, action, entity, entity_id, detail, at";

pub struct AuditRepo<'a> {
    store: &'a Store,
}

fn parse(row: &AnyRow) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        id: row.parse("id")?,
        tenant_id: row.opt_parse("tenant_id")?,
        user_id: row.opt_parse("user_id")?,
        action: row.text("action")?,
        entity: row.text("entity")?,
        entity_id: row.text("entity_id")?,
        detail: row.json("detail")?,
        at: row.ts("at")?,
    })
}

impl<'a> AuditRepo<'a> {
    pub(crate) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    pub async fn record(&self, new: NewAuditEntry) -> Result<AuditEntry, StoreError> {
        let e = AuditEntry {
            id: AuditId::new(),
            tenant_id: new.tenant_id,
            user_id: new.user_id,
            action: new.action,
            entity: new.entity,
            entity_id: new.entity_id,
            detail: new.detail,
            at: domain::now(),
        };
        Sql::new(&format!(
            "INSERT INTO audit_log ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .arg(text(e.id))
        .arg(opt_text(e.tenant_id))
        .arg(opt_text(e.user_id))
        .arg(e.action.as_str())
        .arg(e.entity.as_str())
        .arg(e.entity_id.as_str())
        .arg(to_json(&e.detail)?)
        .arg(e.at)
        .write(self.store.pool(), "audit entry already exists")
        .await?;
        Ok(e)
    }

    pub async fn list(&self, scope: Scope, page: PageRequest) -> Result<Page<AuditEntry>, StoreError> {
        let mut f = Sql::default();
        f.scope("tenant_id", &scope);
        Listing {
            table: "audit_log",
            columns: COLUMNS,
            order_by: "at",
        }
        .page(self.store.pool(), &f, page, parse)
        .await
    }
}
