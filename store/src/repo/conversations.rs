//! Messaging conversations (one per tenant, channel and external party).
//!
//! Guarantees: `(tenant, channel, external_id)` is unique (`Conflict`), and
//! the contact and agent belong to the conversation's tenant (`Invalid`).

use crate::Store;
use crate::error::StoreError;
use crate::scope::Scope;
use crate::sql::{Listing, RowExt, Sql, ensure_owned, opt_text, text};
use domain::{Channel, ContactId, Conversation, ConversationId, NewConversation, Page, PageRequest, TenantId};
use sqlx::any::AnyRow;

pub(crate) const COLUMNS: &str =
    "id, tenant_id, channel, contact_id, agent_id, external_id, last_message_at, created_at, updated_at";

/// Filters for [`ConversationRepo::list`].
#[derive(Debug, Clone, Default)]
pub struct ConversationFilter {
    pub channel: Option<Channel>,
    pub contact_id: Option<ContactId>,
}

pub struct ConversationRepo<'a> {
    store: &'a Store,
}

fn parse(row: &AnyRow) -> Result<Conversation, StoreError> {
    Ok(Conversation {
        id: row.parse("id")?,
        tenant_id: row.parse("tenant_id")?,
        channel: row.parse("channel")?,
        contact_id: row.opt_parse("contact_id")?,
        agent_id: row.opt_parse("agent_id")?,
        external_id: row.text("external_id")?,
        last_message_at: row.opt_ts("last_message_at")?,
        created_at: row.ts("created_at")?,
        updated_at: row.ts("updated_at")?,
    })
}

impl<'a> ConversationRepo<'a> {
    pub(crate) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    pub async fn create(&self, new: NewConversation) -> Result<Conversation, StoreError> {
        let pool = self.store.pool();
        let external_id = new.external_id.trim().to_owned();
        if external_id.is_empty() {
            return Err(StoreError::invalid("external_id must not be empty"));
        }
        if let Some(contact) = new.contact_id {
            ensure_owned(pool, "contacts", "contact", contact, new.tenant_id).await?;
        }
        if let Some(agent) = new.agent_id {
            ensure_owned(pool, "agents", "agent", agent, new.tenant_id).await?;
        }
        let now = domain::now();
        let c = Conversation {
            id: ConversationId::new(),
            tenant_id: new.tenant_id,
            channel: new.channel,
            contact_id: new.contact_id,
            agent_id: new.agent_id,
            external_id,
            last_message_at: None,
            created_at: now,
            updated_at: now,
        };
        Sql::new(&format!(
            "INSERT INTO conversations ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .arg(text(c.id))
        .arg(text(c.tenant_id))
        .arg(c.channel.as_str())
        .arg(opt_text(c.contact_id))
        .arg(opt_text(c.agent_id))
        .arg(c.external_id.as_str())
        .arg(c.last_message_at)
        .arg(now)
        .arg(now)
        .write(pool, "a conversation with this party already exists on this channel")
        .await?;
        Ok(c)
    }

    pub async fn get(&self, scope: Scope, id: ConversationId) -> Result<Conversation, StoreError> {
        let mut sql = Sql::new(&format!("SELECT {COLUMNS} FROM conversations WHERE id = $1")).arg(text(id));
        sql.scope("tenant_id", &scope);
        let row = sql
            .fetch_optional(self.store.pool())
            .await?
            .ok_or(StoreError::not_found("conversation"))?;
        parse(&row)
    }

    pub async fn list(
        &self,
        scope: Scope,
        filter: &ConversationFilter,
        page: PageRequest,
    ) -> Result<Page<Conversation>, StoreError> {
        let mut f = Sql::default();
        f.scope("tenant_id", &scope);
        if let Some(channel) = filter.channel {
            f.push(" AND channel = ").bind(channel.as_str());
        }
        if let Some(contact) = filter.contact_id {
            f.push(" AND contact_id = ").bind(text(contact));
        }
        Listing {
            table: "conversations",
            columns: COLUMNS,
            order_by: "created_at",
        }
        .page(self.store.pool(), &f, page, parse)
        .await
    }

    pub async fn find_by_external(
        &self,
        tenant: TenantId,
        channel: Channel,
        external_id: &str,
    ) -> Result<Option<Conversation>, StoreError> {
        let row = Sql::new(&format!(
            "SELECT {COLUMNS} FROM conversations WHERE tenant_id = $1 AND channel = $2 AND external_id = $3"
        ))
        .arg(text(tenant))
        .arg(channel.as_str())
        .arg(external_id.trim())
        .fetch_optional(self.store.pool())
        .await?;
        row.as_ref().map(parse).transpose()
    }
}
