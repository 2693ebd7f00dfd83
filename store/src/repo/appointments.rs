//! Appointments, with no double booking.
//!
//! Guarantees: `ends_at > starts_at`; the contact and call belong to the
//! appointment's tenant (`Invalid`); a `scheduled` appointment never overlaps
//! another `scheduled` appointment of the same tenant (`Conflict`). The
//! overlap check and the write run in one transaction holding the tenant's
//! row lock, so concurrent bookings cannot both succeed.

use crate::Store;
use crate::error::StoreError;
use crate::scope::Scope;
use crate::sql::{Listing, RowExt, Sql, ensure_owned, lock_tenant, opt_text, text};
use domain::{
    Appointment, AppointmentId, AppointmentStatus, AppointmentUpdate, ContactId, NewAppointment, Page, PageRequest,
    TenantId, Timestamp,
};
use sqlx::AnyConnection;
use sqlx::any::AnyRow;

const COLUMNS: &str =
    "id, tenant_id, contact_id, call_id, title, starts_at, ends_at, status, notes, created_at, updated_at";
const DOUBLE_BOOKED: &str = "the time slot overlaps another scheduled appointment";

/// Filters for [`AppointmentRepo::list`]. `from`/`to` select appointments
/// overlapping the window `[from, to)`.
#[derive(Debug, Clone, Default)]
pub struct AppointmentFilter {
    pub contact_id: Option<ContactId>,
    pub status: Option<AppointmentStatus>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
}

pub struct AppointmentRepo<'a> {
    store: &'a Store,
}

fn parse(row: &AnyRow) -> Result<Appointment, StoreError> {
    Ok(Appointment {
        id: row.parse("id")?,
        tenant_id: row.parse("tenant_id")?,
        contact_id: row.opt_parse("contact_id")?,
        call_id: row.opt_parse("call_id")?,
        title: row.text("title")?,
        starts_at: row.ts("starts_at")?,
        ends_at: row.ts("ends_at")?,
        status: row.parse("status")?,
        notes: row.text("notes")?,
        created_at: row.ts("created_at")?,
        updated_at: row.ts("updated_at")?,
    })
}

/// Validate `a` against its tenant's rows; runs inside the booking transaction.
async fn check(conn: &mut AnyConnection, a: &Appointment) -> Result<(), StoreError> {
    if a.ends_at <= a.starts_at {
        return Err(StoreError::invalid("ends_at must be after starts_at"));
    }
    if let Some(contact) = a.contact_id {
        ensure_owned(&mut *conn, "contacts", "contact", contact, a.tenant_id).await?;
    }
    if let Some(call) = a.call_id {
        ensure_owned(&mut *conn, "calls", "call", call, a.tenant_id).await?;
    }
    if a.status == AppointmentStatus::Scheduled {
        let clash = Sql::new(
            "SELECT id FROM appointments WHERE tenant_id = $1 AND status = $2 AND id <> $3 \
             AND starts_at < $4 AND ends_at > $5 LIMIT 1",
        )
        .arg(text(a.tenant_id))
        .arg(AppointmentStatus::Scheduled.as_str())
        .arg(text(a.id))
        .arg(a.ends_at)
        .arg(a.starts_at)
        .fetch_optional(&mut *conn)
        .await?;
        if clash.is_some() {
            return Err(StoreError::conflict(DOUBLE_BOOKED));
        }
    }
    Ok(())
}

impl<'a> AppointmentRepo<'a> {
    pub(crate) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    pub async fn create(&self, tenant: TenantId, new: NewAppointment) -> Result<Appointment, StoreError> {
        let now = domain::now();
        let a = Appointment {
            id: AppointmentId::new(),
            tenant_id: tenant,
            contact_id: new.contact_id,
            call_id: new.call_id,
            title: new.title.trim().to_owned(),
            starts_at: new.starts_at,
            ends_at: new.ends_at,
            status: AppointmentStatus::Scheduled,
            notes: new.notes,
            created_at: now,
            updated_at: now,
        };
        if a.ends_at <= a.starts_at {
            return Err(StoreError::invalid("ends_at must be after starts_at"));
        }
        let mut tx = self.store.pool().begin().await?;
        if !lock_tenant(&mut *tx, tenant).await? {
            return Err(StoreError::invalid("tenant does not exist"));
        }
        check(&mut tx, &a).await?;
        Sql::new(&format!(
            "INSERT INTO appointments ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        ))
        .arg(text(a.id))
        .arg(text(tenant))
        .arg(opt_text(a.contact_id))
        .arg(opt_text(a.call_id))
        .arg(a.title.as_str())
        .arg(a.starts_at)
        .arg(a.ends_at)
        .arg(a.status.as_str())
        .arg(a.notes.as_str())
        .arg(now)
        .arg(now)
        .write(&mut *tx, "appointment already exists")
        .await?;
        tx.commit().await?;
        Ok(a)
    }

    pub async fn get(&self, scope: Scope, id: AppointmentId) -> Result<Appointment, StoreError> {
        let mut sql = Sql::new(&format!("SELECT {COLUMNS} FROM appointments WHERE id = $1")).arg(text(id));
        sql.scope("tenant_id", &scope);
        let row = sql
            .fetch_optional(self.store.pool())
            .await?
            .ok_or(StoreError::not_found("appointment"))?;
        parse(&row)
    }

    pub async fn list(
        &self,
        scope: Scope,
        filter: &AppointmentFilter,
        page: PageRequest,
    ) -> Result<Page<Appointment>, StoreError> {
        let mut f = Sql::default();
        f.scope("tenant_id", &scope);
        if let Some(contact) = filter.contact_id {
            f.push(" AND contact_id = ").bind(text(contact));
        }
        if let Some(status) = filter.status {
            f.push(" AND status = ").bind(status.as_str());
        }
        if let Some(from) = filter.from {
            f.push(" AND ends_at > ").bind(from);
        }
        if let Some(to) = filter.to {
            f.push(" AND starts_at < ").bind(to);
        }
        Listing {
            table: "appointments",
            columns: COLUMNS,
            order_by: "created_at",
        }
        .page(self.store.pool(), &f, page, parse)
        .await
    }

    /// Apply `update` with the same checks as `create`, in one transaction.
    pub async fn update(
        &self,
        scope: Scope,
        id: AppointmentId,
        update: AppointmentUpdate,
    ) -> Result<Appointment, StoreError> {
        let current = self.get(scope, id).await?;
        let mut tx = self.store.pool().begin().await?;
        lock_tenant(&mut *tx, current.tenant_id).await?;
        // Re-read under the lock: the first read only resolved the tenant.
        let row = Sql::new(&format!(
            "SELECT {COLUMNS} FROM appointments WHERE id = $1 AND tenant_id = $2"
        ))
        .arg(text(id))
        .arg(text(current.tenant_id))
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::not_found("appointment"))?;
        let mut a = parse(&row)?;
        if let Some(contact) = update.contact_id {
            a.contact_id = contact;
        }
        if let Some(title) = update.title {
            a.title = title.trim().to_owned();
        }
        if let Some(starts_at) = update.starts_at {
            a.starts_at = starts_at;
        }
        if let Some(ends_at) = update.ends_at {
            a.ends_at = ends_at;
        }
        if let Some(status) = update.status {
            a.status = status;
        }
        if let Some(notes) = update.notes {
            a.notes = notes;
        }
        a.updated_at = domain::now();
        check(&mut tx, &a).await?;
        Sql::new(
            "UPDATE appointments SET contact_id = $1, title = $2, starts_at = $3, ends_at = $4, status = $5, \
             notes = $6, updated_at = $7 WHERE id = $8 AND tenant_id = $9",
        )
        .arg(opt_text(a.contact_id))
        .arg(a.title.as_str())
        .arg(a.starts_at)
        .arg(a.ends_at)
        .arg(a.status.as_str())
        .arg(a.notes.as_str())
        .arg(a.updated_at)
        .arg(text(id))
        .arg(text(a.tenant_id))
        .write(&mut *tx, "appointment already exists")
        .await?;
        tx.commit().await?;
        Ok(a)
    }

    pub async fn delete(&self, scope: Scope, id: AppointmentId) -> Result<(), StoreError> {
        let mut sql = Sql::new("DELETE FROM appointments WHERE id = $1").arg(text(id));
        sql.scope("tenant_id", &scope);
        if sql.execute(self.store.pool()).await? == 0 {
            return Err(StoreError::not_found("appointment"));
        }
        Ok(())
    }
}
