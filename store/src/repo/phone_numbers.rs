//! Phone numbers owned by tenants, each optionally routed to an agent.
//!
//! Guarantees: a number exists at most once across all tenants (`Conflict`),
//! and its agent always belongs to the same tenant (`Invalid`).

use crate::Store;
use crate::error::StoreError;
use crate::scope::Scope;
use crate::sql::{Listing, RowExt, Sql, ensure_owned, opt_text, text};
use domain::{
    AgentId, E164, NewPhoneNumber, Page, PageRequest, PhoneNumber, PhoneNumberId, PhoneNumberUpdate, TenantId,
};
use sqlx::any::AnyRow;

const COLUMNS: &str = "id, tenant_id, number, agent_id, label, created_at, updated_at";
const TAKEN: &str = "this phone number is already registered";

/// Filters for [`PhoneNumberRepo::list`].
#[derive(Debug, Clone, Default)]
pub struct PhoneNumberFilter {
    pub agent_id: Option<AgentId>,
}

pub struct PhoneNumberRepo<'a> {
    store: &'a Store,
}

fn parse(row: &AnyRow) -> Result<PhoneNumber, StoreError> {
    Ok(PhoneNumber {
        id: row.parse("id")?,
        tenant_id: row.parse("tenant_id")?,
        number: row.parse("number")?,
        agent_id: row.opt_parse("agent_id")?,
        label: row.text("label")?,
        created_at: row.ts("created_at")?,
        updated_at: row.ts("updated_at")?,
    })
}

impl<'a> PhoneNumberRepo<'a> {
    pub(crate) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    pub async fn create(&self, tenant: TenantId, new: NewPhoneNumber) -> Result<PhoneNumber, StoreError> {
        let pool = self.store.pool();
        if let Some(agent) = new.agent_id {
            ensure_owned(pool, "agents", "agent", agent, tenant).await?;
        }
        let now = domain::now();
        let number = PhoneNumber {
            id: PhoneNumberId::new(),
            tenant_id: tenant,
            number: new.number,
            agent_id: new.agent_id,
            label: new.label.trim().to_owned(),
            created_at: now,
            updated_at: now,
        };
        Sql::new(&format!(
            "INSERT INTO phone_numbers ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ))
        .arg(text(number.id))
        .arg(text(tenant))
        .arg(number.number.as_str())
        .arg(opt_text(number.agent_id))
        .arg(number.label.as_str())
        .arg(now)
        .arg(now)
        .write(pool, TAKEN)
        .await?;
        Ok(number)
    }

    pub async fn get(&self, scope: Scope, id: PhoneNumberId) -> Result<PhoneNumber, StoreError> {
        let mut sql = Sql::new(&format!("SELECT {COLUMNS} FROM phone_numbers WHERE id = $1")).arg(text(id));
        sql.scope("tenant_id", &scope);
        let row = sql
            .fetch_optional(self.store.pool())
            .await?
            .ok_or(StoreError::not_found("phone number"))?;
        parse(&row)
    }

    pub async fn list(
        &self,
        scope: Scope,
        filter: &PhoneNumberFilter,
        page: PageRequest,
    ) -> Result<Page<PhoneNumber>, StoreError> {
        let mut f = Sql::default();
        f.scope("tenant_id", &scope);
        if let Some(agent) = filter.agent_id {
            f.push(" AND agent_id = ").bind(text(agent));
        }
        Listing {
            table: "phone_numbers",
            columns: COLUMNS,
            order_by: "created_at",
        }
        .page(self.store.pool(), &f, page, parse)
        .await
    }

    pub async fn update(
        &self,
        scope: Scope,
        id: PhoneNumberId,
        update: PhoneNumberUpdate,
    ) -> Result<PhoneNumber, StoreError> {
        let pool = self.store.pool();
        let mut n = self.get(scope, id).await?;
        if let Some(agent) = update.agent_id {
            if let Some(agent) = agent {
                ensure_owned(pool, "agents", "agent", agent, n.tenant_id).await?;
            }
            n.agent_id = agent;
        }
        if let Some(label) = update.label {
            n.label = label.trim().to_owned();
        }
        n.updated_at = domain::now();
        let changed = Sql::new(
            "UPDATE phone_numbers SET agent_id = $1, label = $2, updated_at = $3 WHERE id = $4 AND tenant_id = $5",
        )
        .arg(opt_text(n.agent_id))
        .arg(n.label.as_str())
        .arg(n.updated_at)
        .arg(text(id))
        .arg(text(n.tenant_id))
        .write(pool, TAKEN)
        .await?;
        if changed == 0 {
            return Err(StoreError::not_found("phone number"));
        }
        Ok(n)
    }

    pub async fn delete(&self, scope: Scope, id: PhoneNumberId) -> Result<(), StoreError> {
        let mut sql = Sql::new("DELETE FROM phone_numbers WHERE id = $1").arg(text(id));
        sql.scope("tenant_id", &scope);
        if sql.execute(self.store.pool()).await? == 0 {
            return Err(StoreError::not_found("phone number"));
        }
        Ok(())
    }

    /// The number's row in whichever tenant owns it (webhook routing).
    pub async fn find_by_number(&self, number: &E164) -> Result<Option<PhoneNumber>, StoreError> {
        let row = Sql::new(&format!("SELECT {COLUMNS} FROM phone_numbers WHERE number = $1"))
            .arg(number.as_str())
            .fetch_optional(self.store.pool())
            .await?;
        row.as_ref().map(parse).transpose()
    }
}
