//! Contacts (leads) of a tenant.
//!
//! Guarantees: names are non-empty; tags round-trip as a JSON array and the
//! tag filter matches whole tags only.

use super::require_name;
use crate::Store;
use crate::error::StoreError;
use crate::scope::Scope;
use crate::sql::{Listing, RowExt, Sql, escape_like, text, to_json};
use domain::{Contact, ContactId, ContactStatus, ContactUpdate, E164, NewContact, Page, PageRequest, TenantId};
use sqlx::any::AnyRow;

const COLUMNS: &str = "id, tenant_id, name, phone, email, status, tags, notes, created_at, updated_at";

/// Filters for [`ContactRepo::list`].
#[derive(Debug, Clone, Default)]
pub struct ContactFilter {
    pub status: Option<ContactStatus>,
    /// Exact tag.
    pub tag: Option<String>,
    /// Case-insensitive substring of name, email or phone.
    pub q: Option<String>,
}

pub struct ContactRepo<'a> {
    store: &'a Store,
}

fn parse(row: &AnyRow) -> Result<Contact, StoreError> {
    Ok(Contact {
        id: row.parse("id")?,
        tenant_id: row.parse("tenant_id")?,
        name: row.text("name")?,
        phone: row.opt_parse("phone")?,
        email: row.opt_text("email")?,
        status: row.parse("status")?,
        tags: row.json("tags")?,
        notes: row.text("notes")?,
        created_at: row.ts("created_at")?,
        updated_at: row.ts("updated_at")?,
    })
}

fn clean_tags(tags: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for tag in tags {
        let tag = tag.trim().to_owned();
        if !tag.is_empty() && !out.contains(&tag) {
            out.push(tag);
        }
    }
    out
}

impl<'a> ContactRepo<'a> {
    pub(crate) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    pub async fn create(&self, tenant: TenantId, new: NewContact) -> Result<Contact, StoreError> {
        let now = domain::now();
        let c = Contact {
            id: ContactId::new(),
            tenant_id: tenant,
            name: require_name("contact name", &new.name)?,
            phone: new.phone,
            email: new.email.map(|e| e.trim().to_owned()).filter(|e| !e.is_empty()),
            status: new.status,
            tags: clean_tags(new.tags),
            notes: new.notes,
            created_at: now,
            updated_at: now,
        };
        Sql::new(&format!(
            "INSERT INTO contacts ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .arg(text(c.id))
        .arg(text(tenant))
        .arg(c.name.as_str())
        .arg(c.phone.as_ref().map(|p| p.as_str().to_owned()))
        .arg(c.email.clone())
        .arg(c.status.as_str())
        .arg(to_json(&c.tags)?)
        .arg(c.notes.as_str())
        .arg(now)
        .arg(now)
        .write(self.store.pool(), "contact already exists")
        .await?;
        Ok(c)
    }

    pub async fn get(&self, scope: Scope, id: ContactId) -> Result<Contact, StoreError> {
        let mut sql = Sql::new(&format!("SELECT {COLUMNS} FROM contacts WHERE id = $1")).arg(text(id));
        sql.scope("tenant_id", &scope);
        let row = sql
            .fetch_optional(self.store.pool())
            .await?
            .ok_or(StoreError::not_found("contact"))?;
        parse(&row)
    }

    pub async fn list(
        &self,
        scope: Scope,
        filter: &ContactFilter,
        page: PageRequest,
    ) -> Result<Page<Contact>, StoreError> {
        let mut f = Sql::default();
        f.scope("tenant_id", &scope);
        if let Some(status) = filter.status {
            f.push(" AND status = ").bind(status.as_str());
        }
        if let Some(tag) = filter.tag.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
            // Tags are a JSON array of strings; matching the JSON-quoted tag
            // matches whole elements only ("vip" does not match "vip2").
            let quoted = to_json(&tag)?;
            f.push(" AND tags LIKE ")
                .bind(format!("%{}%", escape_like(&quoted)))
                .push(" ESCAPE '\\'");
        }
        if let Some(q) = filter.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
            let pattern = format!("%{}%", escape_like(&q.to_lowercase()));
            f.push(" AND (LOWER(name) LIKE ")
                .bind(pattern.clone())
                .push(" ESCAPE '\\' OR LOWER(COALESCE(email, '')) LIKE ")
                .bind(pattern.clone())
                .push(" ESCAPE '\\' OR COALESCE(phone, '') LIKE ")
                .bind(pattern)
                .push(" ESCAPE '\\')");
        }
        Listing {
            table: "contacts",
            columns: COLUMNS,
            order_by: "created_at",
        }
        .page(self.store.pool(), &f, page, parse)
        .await
    }

    pub async fn update(&self, scope: Scope, id: ContactId, update: ContactUpdate) -> Result<Contact, StoreError> {
        let mut c = self.get(scope, id).await?;
        if let Some(name) = update.name {
            c.name = require_name("contact name", &name)?;
        }
        if let Some(phone) = update.phone {
            c.phone = phone;
        }
        if let Some(email) = update.email {
            c.email = email.map(|e| e.trim().to_owned()).filter(|e| !e.is_empty());
        }
        if let Some(status) = update.status {
            c.status = status;
        }
        if let Some(tags) = update.tags {
            c.tags = clean_tags(tags);
        }
        if let Some(notes) = update.notes {
            c.notes = notes;
        }
        c.updated_at = domain::now();
        let n = Sql::new(
            "UPDATE contacts SET name = $1, phone = $2, email = $3, status = $4, tags = $5, notes = $6, \
             updated_at = $7 WHERE id = $8 AND tenant_id = $9",
        )
        .arg(c.name.as_str())
        .arg(c.phone.as_ref().map(|p| p.as_str().to_owned()))
        .arg(c.email.clone())
        .arg(c.status.as_str())
        .arg(to_json(&c.tags)?)
        .arg(c.notes.as_str())
        .arg(c.updated_at)
        .arg(text(id))
        .arg(text(c.tenant_id))
        .write(self.store.pool(), "contact already exists")
        .await?;
        if n == 0 {
            return Err(StoreError::not_found("contact"));
        }
        Ok(c)
    }

    pub async fn delete(&self, scope: Scope, id: ContactId) -> Result<(), StoreError> {
        let mut sql = Sql::new("DELETE FROM contacts WHERE id = $1").arg(text(id));
        sql.scope("tenant_id", &scope);
        if sql.execute(self.store.pool()).await? == 0 {
            return Err(StoreError::not_found("contact"));
        }
        Ok(())
    }

    /// The tenant's newest contact with this phone number.
    pub async fn find_by_phone(&self, tenant: TenantId, phone: &E164) -> Result<Option<Contact>, StoreError> {
        let row = Sql::new(&format!(
            "SELECT {COLUMNS} FROM contacts WHERE tenant_id = $1 AND phone = $2 ORDER BY created_at DESC, id DESC LIMIT 1"
        ))
        .arg(text(tenant))
        .arg(phone.as_str())
        .fetch_optional(self.store.pool())
        .await?;
        row.as_ref().map(parse).transpose()
    }
}
