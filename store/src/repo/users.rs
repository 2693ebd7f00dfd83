//! API users and their passwords.
//!
//! Guarantees: emails are stored trimmed and lowercased and are unique across
//! the platform (`Conflict`); system admins have no tenant and every other
//! role has one (`Invalid` otherwise); password hashes never leave this module;
//! `verify_login` spends the same hashing work whether or not the email exists.

use crate::Store;
use crate::error::StoreError;
use crate::password;
use crate::scope::Scope;
use crate::sql::{Listing, RowExt, Sql, opt_text, text};
use domain::{NewUser, Page, PageRequest, Role, TenantId, User, UserId, UserUpdate};
use sqlx::any::AnyRow;

const COLUMNS: &str = "id, tenant_id, email, role, created_at, updated_at";
const TAKEN: &str = "a user with this email already exists";

/// Filters for [`UserRepo::list`].
#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    pub role: Option<Role>,
    /// Case-insensitive substring of the email.
    pub q: Option<String>,
}

pub struct UserRepo<'a> {
    store: &'a Store,
}

fn parse(row: &AnyRow) -> Result<User, StoreError> {
    Ok(User {
        id: row.parse("id")?,
        tenant_id: row.opt_parse("tenant_id")?,
        email: row.text("email")?,
        role: row.parse("role")?,
        created_at: row.ts("created_at")?,
        updated_at: row.ts("updated_at")?,
    })
}

fn normalize_email(email: &str) -> Result<String, StoreError> {
    let email = email.trim().to_lowercase();
    if email.is_empty() || !email.contains('@') {
        return Err(StoreError::invalid("email must be an address"));
    }
    Ok(email)
}

fn check_role(role: Role, tenant: Option<TenantId>) -> Result<(), StoreError> {
    match (role, tenant) {
        (Role::SystemAdmin, None) => Ok(()),
        (Role::SystemAdmin, Some(_)) => Err(StoreError::invalid("a system admin belongs to no tenant")),
        (_, None) => Err(StoreError::invalid("this role requires a tenant")),
        (_, Some(_)) => Ok(()),
    }
}

fn require_password(password: &str) -> Result<(), StoreError> {
    if password.is_empty() {
        return Err(StoreError::invalid("password must not be empty"));
    }
    Ok(())
}

impl<'a> UserRepo<'a> {
    pub(crate) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    pub async fn create(&self, new: NewUser) -> Result<User, StoreError> {
        check_role(new.role, new.tenant_id)?;
        let email = normalize_email(&new.email)?;
        require_password(new.password.expose())?;
        let secret = new.password;
        let hash = password::blocking(move || password::hash(secret.expose())).await?;
        let now = domain::now();
        let user = User {
            id: UserId::new(),
            tenant_id: new.tenant_id,
            email,
            role: new.role,
            created_at: now,
            updated_at: now,
        };
        Sql::new(
            "INSERT INTO users (id, tenant_id, email, password_hash, role, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .arg(text(user.id))
        .arg(opt_text(user.tenant_id))
        .arg(user.email.as_str())
        .arg(hash)
        .arg(user.role.as_str())
        .arg(now)
        .arg(now)
        .write(self.store.pool(), TAKEN)
        .await?;
        Ok(user)
    }

    pub async fn get(&self, scope: Scope, id: UserId) -> Result<User, StoreError> {
        let mut sql = Sql::new(&format!("SELECT {COLUMNS} FROM users WHERE id = $1"));
        sql = sql.arg(text(id));
        sql.scope("tenant_id", &scope);
        let row = sql
            .fetch_optional(self.store.pool())
            .await?
            .ok_or(StoreError::not_found("user"))?;
        parse(&row)
    }

    pub async fn list(&self, scope: Scope, filter: &UserFilter, page: PageRequest) -> Result<Page<User>, StoreError> {
        let mut f = Sql::default();
        f.scope("tenant_id", &scope);
        if let Some(role) = filter.role {
            f.push(" AND role = ").bind(role.as_str());
        }
        if let Some(q) = filter.q.as_deref().filter(|q| !q.trim().is_empty()) {
            f.contains("email", q.trim());
        }
        Listing {
            table: "users",
            columns: COLUMNS,
            order_by: "created_at",
        }
        .page(self.store.pool(), &f, page, parse)
        .await
    }

    /// Change email, role or password (re-hashed). The tenant never changes, so
    /// the role rule is checked against the user's existing tenant.
    pub async fn update(&self, scope: Scope, id: UserId, update: UserUpdate) -> Result<User, StoreError> {
        let mut user = self.get(scope, id).await?;
        if let Some(email) = update.email {
            user.email = normalize_email(&email)?;
        }
        if let Some(role) = update.role {
            check_role(role, user.tenant_id)?;
            user.role = role;
        }
        let hash = match update.password {
            Some(secret) => {
                require_password(secret.expose())?;
                Some(password::blocking(move || password::hash(secret.expose())).await?)
            }
            None => None,
        };
        user.updated_at = domain::now();
        let mut sql = Sql::new("UPDATE users SET email = ");
        sql.bind(user.email.as_str())
            .push(", role = ")
            .bind(user.role.as_str())
            .push(", updated_at = ")
            .bind(user.updated_at);
        if let Some(hash) = hash {
            sql.push(", password_hash = ").bind(hash);
        }
        sql.push(" WHERE id = ").bind(text(id));
        sql.scope("tenant_id", &scope);
        if sql.write(self.store.pool(), TAKEN).await? == 0 {
            return Err(StoreError::not_found("user"));
        }
        Ok(user)
    }

    pub async fn delete(&self, scope: Scope, id: UserId) -> Result<(), StoreError> {
        let mut sql = Sql::new("DELETE FROM users WHERE id = $1").arg(text(id));
        sql.scope("tenant_id", &scope);
        if sql.execute(self.store.pool()).await? == 0 {
            return Err(StoreError::not_found("user"));
        }
        Ok(())
    }

    /// The user whose email and password match, or `None`. A missing email
    /// costs one dummy verification so response time does not reveal it.
    pub async fn verify_login(&self, email: &str, password: &str) -> Result<Option<User>, StoreError> {
        let email = email.trim().to_lowercase();
        let row = Sql::new(&format!("SELECT {COLUMNS}, password_hash FROM users WHERE email = $1"))
            .arg(email)
            .fetch_optional(self.store.pool())
            .await?;
        let password = password.to_owned();
        let Some(row) = row else {
            password::blocking(move || {
                password::verify_dummy(&password);
                Ok(())
            })
            .await?;
            return Ok(None);
        };
        let user = parse(&row)?;
        let phc = row.text("password_hash")?;
        let ok = password::blocking(move || password::verify(&password, &phc)).await?;
        Ok(ok.then_some(user))
    }
}
