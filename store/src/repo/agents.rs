//! AI agent definitions.
//!
//! Guarantees: names are non-empty; nested settings (provider choices, tools,
//! endpointing, free-form settings) round-trip exactly through JSON TEXT columns.

use super::require_name;
use crate::Store;
use crate::error::StoreError;
use crate::scope::Scope;
use crate::sql::{Listing, RowExt, Sql, text, to_json};
use domain::{Agent, AgentId, AgentUpdate, NewAgent, Page, PageRequest, TenantId};
use sqlx::any::AnyRow;

const COLUMNS: &str = "id, tenant_id, name, system_prompt, greeting, language, voice, stt, tts, llm, tools, \
                       endpointing, settings, enabled, created_at, updated_at";

/// Filters for [`AgentRepo::list`].
#[derive(Debug, Clone, Default)]
pub struct AgentFilter {
    pub enabled: Option<bool>,
    /// Case-insensitive substring of the name.
    pub q: Option<String>,
}

pub struct AgentRepo<'a> {
    store: &'a Store,
}

fn parse(row: &AnyRow) -> Result<Agent, StoreError> {
    Ok(Agent {
        id: row.parse("id")?,
        tenant_id: row.parse("tenant_id")?,
        name: row.text("name")?,
        system_prompt: row.text("system_prompt")?,
        greeting: row.text("greeting")?,
        language: row.text("language")?,
        voice: row.text("voice")?,
        stt: row.json("stt")?,
        tts: row.json("tts")?,
        llm: row.json("llm")?,
        tools: row.json("tools")?,
        endpointing: row.json("endpointing")?,
        settings: row.json("settings")?,
        enabled: row.flag("enabled")?,
        created_at: row.ts("created_at")?,
        updated_at: row.ts("updated_at")?,
    })
}

/// Bind every column but `id`, `tenant_id` and `created_at`, in the order the
/// INSERT and UPDATE statements below expect.
fn bind_body(sql: Sql, a: &Agent) -> Result<Sql, StoreError> {
    Ok(sql
        .arg(a.name.as_str())
        .arg(a.system_prompt.as_str())
        .arg(a.greeting.as_str())
        .arg(a.language.as_str())
        .arg(a.voice.as_str())
        .arg(to_json(&a.stt)?)
        .arg(to_json(&a.tts)?)
        .arg(to_json(&a.llm)?)
        .arg(to_json(&a.tools)?)
        .arg(to_json(&a.endpointing)?)
        .arg(to_json(&a.settings)?)
        .arg(a.enabled)
        .arg(a.updated_at))
}

impl<'a> AgentRepo<'a> {
    pub(crate) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    pub async fn create(&self, tenant: TenantId, new: NewAgent) -> Result<Agent, StoreError> {
        let now = domain::now();
        let agent = Agent {
            id: AgentId::new(),
            tenant_id: tenant,
            name: require_name("agent name", &new.name)?,
            system_prompt: new.system_prompt,
            greeting: new.greeting,
            language: new.language,
            voice: new.voice,
            stt: new.stt,
            tts: new.tts,
            llm: new.llm,
            tools: new.tools,
            endpointing: new.endpointing,
            settings: new.settings,
            enabled: new.enabled,
            created_at: now,
            updated_at: now,
        };
        let sql = Sql::new(
            "INSERT INTO agents (name, system_prompt, greeting, language, voice, stt, tts, llm, tools, endpointing, \
             settings, enabled, updated_at, id, tenant_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
        );
        bind_body(sql, &agent)?
            .arg(text(agent.id))
            .arg(text(tenant))
            .arg(now)
            .write(self.store.pool(), "agent already exists")
            .await?;
        Ok(agent)
    }

    pub async fn get(&self, scope: Scope, id: AgentId) -> Result<Agent, StoreError> {
        let mut sql = Sql::new(&format!("SELECT {COLUMNS} FROM agents WHERE id = $1")).arg(text(id));
        sql.scope("tenant_id", &scope);
        let row = sql
            .fetch_optional(self.store.pool())
            .await?
            .ok_or(StoreError::not_found("agent"))?;
        parse(&row)
    }

    pub async fn list(&self, scope: Scope, filter: &AgentFilter, page: PageRequest) -> Result<Page<Agent>, StoreError> {
        let mut f = Sql::default();
        f.scope("tenant_id", &scope);
        if let Some(enabled) = filter.enabled {
            f.push(" AND enabled = ").bind(enabled);
        }
        if let Some(q) = filter.q.as_deref().filter(|q| !q.trim().is_empty()) {
            f.contains("LOWER(name)", q.trim());
        }
        Listing {
            table: "agents",
            columns: COLUMNS,
            order_by: "created_at",
        }
        .page(self.store.pool(), &f, page, parse)
        .await
    }

    pub async fn update(&self, scope: Scope, id: AgentId, update: AgentUpdate) -> Result<Agent, StoreError> {
        let mut a = self.get(scope, id).await?;
        if let Some(name) = update.name {
            a.name = require_name("agent name", &name)?;
        }
        if let Some(v) = update.system_prompt {
            a.system_prompt = v;
        }
        if let Some(v) = update.greeting {
            a.greeting = v;
        }
        if let Some(v) = update.language {
            a.language = v;
        }
        if let Some(v) = update.voice {
            a.voice = v;
        }
        if let Some(v) = update.stt {
            a.stt = v;
        }
        if let Some(v) = update.tts {
            a.tts = v;
        }
        if let Some(v) = update.llm {
            a.llm = v;
        }
        if let Some(v) = update.tools {
            a.tools = v;
        }
        if let Some(v) = update.endpointing {
            a.endpointing = v;
        }
        if let Some(v) = update.settings {
            a.settings = v;
        }
        if let Some(v) = update.enabled {
            a.enabled = v;
        }
        a.updated_at = domain::now();
        let sql = Sql::new(
            "UPDATE agents SET name = $1, system_prompt = $2, greeting = $3, language = $4, voice = $5, stt = $6, \
             tts = $7, llm = $8, tools = $9, endpointing = $10, settings = $11, enabled = $12, updated_at = $13 \
             WHERE id = $14 AND tenant_id = $15",
        );
        let n = bind_body(sql, &a)?
            .arg(text(id))
            .arg(text(a.tenant_id))
            .write(self.store.pool(), "agent already exists")
            .await?;
        if n == 0 {
            return Err(StoreError::not_found("agent"));
        }
        Ok(a)
    }

    pub async fn delete(&self, scope: Scope, id: AgentId) -> Result<(), StoreError> {
        let mut sql = Sql::new("DELETE FROM agents WHERE id = $1").arg(text(id));
        sql.scope("tenant_id", &scope);
        if sql.execute(self.store.pool()).await? == 0 {
            return Err(StoreError::not_found("agent"));
        }
        Ok(())
    }
}
