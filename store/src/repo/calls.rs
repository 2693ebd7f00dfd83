//! Phone calls, written by the engine and read by the API.
//!
//! Guarantees: status only moves forward by [`CallStatus::rank`] and a
//! terminal status never changes, so duplicate or out-of-order provider
//! callbacks are harmless; `finish` is idempotent (the first end wins); every
//! transition is a single conditional `UPDATE`, so concurrent writers cannot
//! move a call backwards.
//!
//! Post-call summaries (see [`CallRepo::summary`]): a stored summary
//! (`done`) is never turned into `failed` by a later failure, only annotated
//! with its error; the summary email is marked sent once and the first time
//! is kept; every write is scoped to the tenant named by the job.

use crate::Store;
use crate::error::StoreError;
use crate::scope::Scope;
use crate::sql::{Listing, RowExt, Sql, ensure_owned, opt_text, text};
use domain::{
    AgentId, Call, CallDirection, CallId, CallStatus, EndReason, NewCall, Page, PageRequest, ProviderCallId, TenantId,
    Timestamp,
};
use sqlx::any::AnyRow;
use std::str::FromStr;
use std::sync::LazyLock;

/// Longest failure reason kept in `summary_error`.
const MAX_SUMMARY_ERROR: usize = 1000;

const SUMMARY_COLUMNS: &str = "summary_status, summary, outcome, extraction, summary_error, summary_emailed_at";

const COLUMNS: &str = "id, tenant_id, agent_id, provider_call_id, direction, from_addr, to_addr, status, started_at, \
                       answered_at, ended_at, end_reason, recording_url, summary, created_at, updated_at";

/// Where a call's post-call summary stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SummaryStatus {
    /// A summary job has started on the call and not finished.
    Pending,
    /// The summary is stored.
    Done,
    /// The summary job gave up; `error` says why.
    Failed,
}

impl SummaryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SummaryStatus::Pending => "pending",
            SummaryStatus::Done => "done",
            SummaryStatus::Failed => "failed",
        }
    }
}

impl FromStr for SummaryStatus {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "pending" => Ok(SummaryStatus::Pending),
            "done" => Ok(SummaryStatus::Done),
            "failed" => Ok(SummaryStatus::Failed),
            _ => Err(()),
        }
    }
}

impl std::fmt::Display for SummaryStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A call's post-call summary as stored (read with [`CallRepo::summary`]).
#[derive(Debug, Clone, PartialEq)]
pub struct CallSummaryRow {
    /// `None` until a summary job touched the call.
    pub status: Option<SummaryStatus>,
    pub summary: Option<String>,
    /// Short outcome label, e.g. `appointment_booked`.
    pub outcome: Option<String>,
    /// The structured result (a JSON object).
    pub extraction: Option<serde_json::Value>,
    /// Why the last attempt failed (also kept next to a `done` summary whose email failed).
    pub error: Option<String>,
    /// When the summary email was accepted by the email provider.
    pub emailed_at: Option<Timestamp>,
}

impl CallSummaryRow {
    /// True when the summary is stored (status `done`).
    pub fn is_done(&self) -> bool {
        self.status == Some(SummaryStatus::Done)
    }

    /// `extraction.appointment_booked`, when it is a boolean.
    pub fn appointment_booked(&self) -> Option<bool> {
        self.extraction.as_ref()?.get("appointment_booked")?.as_bool()
    }

    /// `extraction.follow_up_needed`, when it is a boolean.
    pub fn follow_up_needed(&self) -> Option<bool> {
        self.extraction.as_ref()?.get("follow_up_needed")?.as_bool()
    }
}

fn parse_summary(row: &AnyRow) -> Result<CallSummaryRow, StoreError> {
    let extraction = row
        .opt_text("extraction")?
        .map(|text| serde_json::from_str(&text))
        .transpose()
        .map_err(|_| StoreError::corrupt("column `extraction` holds an invalid value"))?;
    Ok(CallSummaryRow {
        status: row.opt_parse("summary_status")?,
        summary: row.opt_text("summary")?,
        outcome: row.opt_text("outcome")?,
        extraction,
        error: row.opt_text("summary_error")?,
        emailed_at: row.opt_ts("summary_emailed_at")?,
    })
}

/// `reason` cut to [`MAX_SUMMARY_ERROR`] bytes on a character boundary.
fn clip(reason: &str) -> String {
    let mut end = reason.len().min(MAX_SUMMARY_ERROR);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}

/// Filters for [`CallRepo::list`]. `from`/`to` bound `started_at` to `[from, to)`.
#[derive(Debug, Clone, Default)]
pub struct CallFilter {
    pub status: Option<CallStatus>,
    pub direction: Option<CallDirection>,
    pub agent_id: Option<AgentId>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
}

pub struct CallRepo<'a> {
    store: &'a Store,
}

/// `CASE status WHEN 'queued' THEN 0 ... END`: the rank of the stored status,
/// generated from the domain so SQL and [`CallStatus::rank`] cannot disagree.
static RANK_SQL: LazyLock<String> = LazyLock::new(|| {
    let mut s = String::from("(CASE status");
    for status in CallStatus::ALL {
        s.push_str(&format!(" WHEN '{}' THEN {}", status.as_str(), status.rank()));
    }
    s.push_str(" ELSE 0 END)");
    s
});

/// The rank every terminal status has.
const TERMINAL_RANK: i64 = 4;

fn parse(row: &AnyRow) -> Result<Call, StoreError> {
    Ok(Call {
        id: row.parse("id")?,
        tenant_id: row.parse("tenant_id")?,
        agent_id: row.opt_parse("agent_id")?,
        provider_call_id: row.opt_text("provider_call_id")?.map(ProviderCallId::new),
        direction: row.parse("direction")?,
        from: row.text("from_addr")?,
        to: row.text("to_addr")?,
        status: row.parse("status")?,
        started_at: row.ts("started_at")?,
        answered_at: row.opt_ts("answered_at")?,
        ended_at: row.opt_ts("ended_at")?,
        end_reason: row.opt_parse("end_reason")?,
        recording_url: row.opt_text("recording_url")?,
        summary: row.opt_text("summary")?,
        created_at: row.ts("created_at")?,
        updated_at: row.ts("updated_at")?,
    })
}

impl<'a> CallRepo<'a> {
    pub(crate) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    pub async fn create(&self, new: NewCall) -> Result<Call, StoreError> {
        let pool = self.store.pool();
        if let Some(agent) = new.agent_id {
            ensure_owned(pool, "agents", "agent", agent, new.tenant_id).await?;
        }
        let now = domain::now();
        let call = Call {
            id: CallId::new(),
            tenant_id: new.tenant_id,
            agent_id: new.agent_id,
            provider_call_id: new.provider_call_id,
            direction: new.direction,
            from: new.from,
            to: new.to,
            status: new.status,
            started_at: now,
            answered_at: None,
            ended_at: None,
            end_reason: None,
            recording_url: None,
            summary: None,
            created_at: now,
            updated_at: now,
        };
        Sql::new(&format!(
            "INSERT INTO calls ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
        ))
        .arg(text(call.id))
        .arg(text(call.tenant_id))
        .arg(opt_text(call.agent_id))
        .arg(call.provider_call_id.as_ref().map(|p| p.as_str().to_owned()))
        .arg(call.direction.as_str())
        .arg(call.from.as_str())
        .arg(call.to.as_str())
        .arg(call.status.as_str())
        .arg(now)
        .arg(None::<Timestamp>)
        .arg(None::<Timestamp>)
        .arg(None::<String>)
        .arg(None::<String>)
        .arg(None::<String>)
        .arg(now)
        .arg(now)
        .write(pool, "a call with this provider call id already exists")
        .await?;
        Ok(call)
    }

    pub async fn get(&self, scope: Scope, id: CallId) -> Result<Call, StoreError> {
        let mut sql = Sql::new(&format!("SELECT {COLUMNS} FROM calls WHERE id = $1")).arg(text(id));
        sql.scope("tenant_id", &scope);
        let row = sql
            .fetch_optional(self.store.pool())
            .await?
            .ok_or(StoreError::not_found("call"))?;
        parse(&row)
    }

    pub async fn list(&self, scope: Scope, filter: &CallFilter, page: PageRequest) -> Result<Page<Call>, StoreError> {
        let mut f = Sql::default();
        f.scope("tenant_id", &scope);
        if let Some(status) = filter.status {
            f.push(" AND status = ").bind(status.as_str());
        }
        if let Some(direction) = filter.direction {
            f.push(" AND direction = ").bind(direction.as_str());
        }
        if let Some(agent) = filter.agent_id {
            f.push(" AND agent_id = ").bind(text(agent));
        }
        if let Some(from) = filter.from {
            f.push(" AND started_at >= ").bind(from);
        }
        if let Some(to) = filter.to {
            f.push(" AND started_at < ").bind(to);
        }
        Listing {
            table: "calls",
            columns: COLUMNS,
            order_by: "created_at",
        }
        .page(self.store.pool(), &f, page, parse)
        .await
    }

    pub async fn get_by_provider_call_id(&self, provider_id: &ProviderCallId) -> Result<Option<Call>, StoreError> {
        let row = Sql::new(&format!("SELECT {COLUMNS} FROM calls WHERE provider_call_id = $1"))
            .arg(provider_id.as_str())
            .fetch_optional(self.store.pool())
            .await?;
        row.as_ref().map(parse).transpose()
    }

    async fn unscoped(&self, id: CallId) -> Result<Call, StoreError> {
        self.get(Scope::All, id).await
    }

    /// Move the call to `status` if that is forward progress; otherwise leave
    /// it. Returns the call as stored afterwards either way.
    pub async fn set_status(&self, id: CallId, status: CallStatus) -> Result<Call, StoreError> {
        let sql = format!(
            "UPDATE calls SET status = $1, updated_at = $2 WHERE id = $3 AND {} < $4",
            RANK_SQL.as_str()
        );
        Sql::new(&sql)
            .arg(status.as_str())
            .arg(domain::now())
            .arg(text(id))
            .arg(i64::from(status.rank()))
            .execute(self.store.pool())
            .await?;
        self.unscoped(id).await
    }

    /// End the call: the first call records `ended_at`, the reason and (unless
    /// a terminal status was already stored) `status`; later calls change
    /// nothing. `status` must be terminal.
    pub async fn finish(&self, id: CallId, status: CallStatus, reason: EndReason) -> Result<Call, StoreError> {
        if !status.is_terminal() {
            return Err(StoreError::invalid("a finished call needs a terminal status"));
        }
        let now = domain::now();
        let rank = RANK_SQL.as_str();
        let sql = format!(
            "UPDATE calls SET status = CASE WHEN {rank} < {TERMINAL_RANK} THEN $1 ELSE status END, \
             end_reason = $2, ended_at = $3, updated_at = $3 WHERE id = $4 AND ended_at IS NULL"
        );
        Sql::new(&sql)
            .arg(status.as_str())
            .arg(reason.as_str())
            .arg(now)
            .arg(text(id))
            .execute(self.store.pool())
            .await?;
        self.unscoped(id).await
    }

    /// Record when the call was answered; the first answer time is kept.
    pub async fn set_answered(&self, id: CallId, at: Timestamp) -> Result<Call, StoreError> {
        Sql::new("UPDATE calls SET answered_at = $1, updated_at = $2 WHERE id = $3 AND answered_at IS NULL")
            .arg(at)
            .arg(domain::now())
            .arg(text(id))
            .execute(self.store.pool())
            .await?;
        self.unscoped(id).await
    }

    pub async fn set_recording(&self, id: CallId, url: String) -> Result<Call, StoreError> {
        self.set_text(id, "recording_url", url).await
    }

    pub async fn set_summary(&self, id: CallId, summary: String) -> Result<Call, StoreError> {
        self.set_text(id, "summary", summary).await
    }

    async fn set_text(&self, id: CallId, column: &'static str, value: String) -> Result<Call, StoreError> {
        let n = Sql::new(&format!(
            "UPDATE calls SET {column} = $1, updated_at = $2 WHERE id = $3"
        ))
        .arg(value)
        .arg(domain::now())
        .arg(text(id))
        .execute(self.store.pool())
        .await?;
        if n == 0 {
            return Err(StoreError::not_found("call"));
        }
        self.unscoped(id).await
    }

    /// The call's post-call summary; `None` when nothing is recorded yet
    /// (no status and no summary). A call outside `scope` is `NotFound`.
    pub async fn summary(&self, scope: Scope, id: CallId) -> Result<Option<CallSummaryRow>, StoreError> {
        let mut sql = Sql::new(&format!("SELECT {SUMMARY_COLUMNS} FROM calls WHERE id = $1")).arg(text(id));
        sql.scope("tenant_id", &scope);
        let row = sql
            .fetch_optional(self.store.pool())
            .await?
            .ok_or(StoreError::not_found("call"))?;
        let summary = parse_summary(&row)?;
        Ok((summary.status.is_some() || summary.summary.is_some()).then_some(summary))
    }

    /// Mark the summary as in progress, unless it is already `done` (or
    /// `pending`). Returns the summary state as stored afterwards.
    pub async fn set_summary_pending(&self, tenant: TenantId, id: CallId) -> Result<CallSummaryRow, StoreError> {
        Sql::new(
            "UPDATE calls SET summary_status = 'pending', updated_at = $1 \
             WHERE id = $2 AND tenant_id = $3 AND (summary_status IS NULL OR summary_status = 'failed')",
        )
        .arg(domain::now())
        .arg(text(id))
        .arg(text(tenant))
        .execute(self.store.pool())
        .await?;
        self.summary(Scope::Tenant(tenant), id)
            .await?
            .ok_or(StoreError::corrupt("summary status missing after update"))
    }

    /// Store a finished summary: `summary`, `outcome` and the structured
    /// `extraction` (a JSON object, by convention with the booleans
    /// `appointment_booked` and `follow_up_needed`); status becomes `done`
    /// and any earlier error is cleared. Writing again replaces the result.
    pub async fn set_summary_result(
        &self,
        tenant: TenantId,
        id: CallId,
        summary: &str,
        outcome: &str,
        extraction: &serde_json::Value,
    ) -> Result<(), StoreError> {
        if !extraction.is_object() {
            return Err(StoreError::invalid("a summary extraction must be a JSON object"));
        }
        let n = Sql::new(
            "UPDATE calls SET summary = $1, outcome = $2, extraction = $3, summary_status = 'done', \
             summary_error = NULL, updated_at = $4 WHERE id = $5 AND tenant_id = $6",
        )
        .arg(summary)
        .arg(outcome)
        .arg(crate::sql::to_json(extraction)?)
        .arg(domain::now())
        .arg(text(id))
        .arg(text(tenant))
        .execute(self.store.pool())
        .await?;
        if n == 0 {
            return Err(StoreError::not_found("call"));
        }
        Ok(())
    }

    /// Record that the summary job gave up with `reason` (kept up to 1000
    /// bytes). The status becomes `failed`, except that a `done` summary stays
    /// `done` (the reason is then about its email).
    pub async fn set_summary_failed(&self, tenant: TenantId, id: CallId, reason: &str) -> Result<(), StoreError> {
        let n = Sql::new(
            "UPDATE calls SET summary_status = CASE WHEN summary_status = 'done' THEN 'done' ELSE 'failed' END, \
             summary_error = $1, updated_at = $2 WHERE id = $3 AND tenant_id = $4",
        )
        .arg(clip(reason))
        .arg(domain::now())
        .arg(text(id))
        .arg(text(tenant))
        .execute(self.store.pool())
        .await?;
        if n == 0 {
            return Err(StoreError::not_found("call"));
        }
        Ok(())
    }

    /// Record that the summary email was accepted at `at`; the first time is kept.
    pub async fn set_summary_emailed(&self, tenant: TenantId, id: CallId, at: Timestamp) -> Result<(), StoreError> {
        let n = Sql::new(
            "UPDATE calls SET summary_emailed_at = COALESCE(summary_emailed_at, $1), updated_at = $2 \
             WHERE id = $3 AND tenant_id = $4",
        )
        .arg(at)
        .arg(domain::now())
        .arg(text(id))
        .arg(text(tenant))
        .execute(self.store.pool())
        .await?;
        if n == 0 {
            return Err(StoreError::not_found("call"));
        }
        Ok(())
    }

    /// Calls of the tenant that have not ended (for the concurrency limit).
    pub async fn count_live(&self, tenant: TenantId) -> Result<u64, StoreError> {
        let sql = format!(
            "SELECT COUNT(*) AS n FROM calls WHERE tenant_id = $1 AND ended_at IS NULL AND {} < {TERMINAL_RANK}",
            RANK_SQL.as_str()
        );
        let n = Sql::new(&sql)
            .arg(text(tenant))
            .fetch_one(self.store.pool())
            .await?
            .int("n")?;
        u64::try_from(n).map_err(|_| StoreError::corrupt("negative row count"))
    }
}
