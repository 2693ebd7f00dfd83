//! Messages within conversations.
//!
//! Guarantees: a provider message ID is stored at most once, so a redelivered
//! inbound webhook gets `Conflict` and can be acknowledged without a second
//! row; creating a message bumps its conversation's `last_message_at` in the
//! same transaction; the conversation must belong to the message's tenant.

use crate::Store;
use crate::error::StoreError;
use crate::scope::Scope;
use crate::sql::{Listing, RowExt, Sql, text};
use domain::{
    ConversationId, Message, MessageDirection, MessageId, MessageStatus, NewMessage, Page, PageRequest,
    ProviderMessageId,
};
use sqlx::any::AnyRow;

const COLUMNS: &str =
    "id, tenant_id, conversation_id, direction, provider_message_id, status, body, created_at, updated_at";

/// Filters for [`MessageRepo::list`].
#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    pub conversation_id: Option<ConversationId>,
    pub direction: Option<MessageDirection>,
}

pub struct MessageRepo<'a> {
    store: &'a Store,
}

fn parse(row: &AnyRow) -> Result<Message, StoreError> {
    Ok(Message {
        id: row.parse("id")?,
        tenant_id: row.parse("tenant_id")?,
        conversation_id: row.parse("conversation_id")?,
        direction: row.parse("direction")?,
        provider_message_id: row.opt_text("provider_message_id")?.map(ProviderMessageId::new),
        status: row.parse("status")?,
        body: row.text("body")?,
        created_at: row.ts("created_at")?,
        updated_at: row.ts("updated_at")?,
    })
}

impl<'a> MessageRepo<'a> {
    pub(crate) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    pub async fn create(&self, new: NewMessage) -> Result<Message, StoreError> {
        let now = domain::now();
        let m = Message {
            id: MessageId::new(),
            tenant_id: new.tenant_id,
            conversation_id: new.conversation_id,
            direction: new.direction,
            provider_message_id: new.provider_message_id,
            status: new.status,
            body: new.body,
            created_at: now,
            updated_at: now,
        };
        let mut tx = self.store.pool().begin().await?;
        // Bump first: it takes the write lock up front (SQLite) and proves the
        // conversation belongs to the tenant in the same statement.
        let bumped =
            Sql::new("UPDATE conversations SET last_message_at = $1, updated_at = $1 WHERE id = $2 AND tenant_id = $3")
                .arg(now)
                .arg(text(m.conversation_id))
                .arg(text(m.tenant_id))
                .execute(&mut *tx)
                .await?;
        if bumped == 0 {
            return Err(StoreError::invalid("conversation does not exist in this tenant"));
        }
        Sql::new(&format!(
            "INSERT INTO messages ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .arg(text(m.id))
        .arg(text(m.tenant_id))
        .arg(text(m.conversation_id))
        .arg(m.direction.as_str())
        .arg(m.provider_message_id.as_ref().map(|p| p.as_str().to_owned()))
        .arg(m.status.as_str())
        .arg(m.body.as_str())
        .arg(now)
        .arg(now)
        .write(&mut *tx, "a message with this provider message id already exists")
        .await?;
        tx.commit().await?;
        Ok(m)
    }

    pub async fn get(&self, scope: Scope, id: MessageId) -> Result<Message, StoreError> {
        let mut sql = Sql::new(&format!("SELECT {COLUMNS} FROM messages WHERE id = $1")).arg(text(id));
        sql.scope("tenant_id", &scope);
        let row = sql
            .fetch_optional(self.store.pool())
            .await?
            .ok_or(StoreError::not_found("message"))?;
        parse(&row)
    }

    pub async fn list(
        &self,
        scope: Scope,
        filter: &MessageFilter,
        page: PageRequest,
    ) -> Result<Page<Message>, StoreError> {
        let mut f = Sql::default();
        f.scope("tenant_id", &scope);
        if let Some(conversation) = filter.conversation_id {
            f.push(" AND conversation_id = ").bind(text(conversation));
        }
        if let Some(direction) = filter.direction {
            f.push(" AND direction = ").bind(direction.as_str());
        }
        Listing {
            table: "messages",
            columns: COLUMNS,
            order_by: "created_at",
        }
        .page(self.store.pool(), &f, page, parse)
        .await
    }

    /// Record a delivery status callback; `None` when no message has that ID.
    pub async fn set_status_by_provider_id(
        &self,
        provider_id: &ProviderMessageId,
        status: MessageStatus,
    ) -> Result<Option<Message>, StoreError> {
        let n = Sql::new("UPDATE messages SET status = $1, updated_at = $2 WHERE provider_message_id = $3")
            .arg(status.as_str())
            .arg(domain::now())
            .arg(provider_id.as_str())
            .execute(self.store.pool())
            .await?;
        if n == 0 {
            return Ok(None);
        }
        let row = Sql::new(&format!(
            "SELECT {COLUMNS} FROM messages WHERE provider_message_id = $1"
        ))
        .arg(provider_id.as_str())
        .fetch_optional(self.store.pool())
        .await?;
        row.as_ref().map(parse).transpose()
    }
}
