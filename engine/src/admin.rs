//! Operator commands that work directly on the store, without HTTP:
//! bootstrapping the first system admin and tenant owners.
//!
//! Guarantees: a system admin never gets a tenant and every other role always
//! has one; the tenant is found by exact name or created once (a concurrent
//! creator is tolerated); the password is passed through as a [`Secret`] and
//! never logged.

use crate::EngineError;
use switchboard_domain::{NewTenant, NewUser, Role, Secret, Tenant, User};
use switchboard_store::{Store, StoreError};

/// Tenant limit given to tenants created from the command line; change it over the API.
const DEFAULT_MAX_CONCURRENT_CALLS: u32 = 10;

/// Create a user. `tenant` names the tenant (created when missing) and is
/// required for every role except `system_admin`, which must have none.
pub async fn create_user(
    store: &Store,
    email: &str,
    password: Secret,
    role: Role,
    tenant: Option<&str>,
) -> Result<User, EngineError> {
    let tenant_name = tenant.map(str::trim).filter(|t| !t.is_empty());
    let tenant_id = match (role, tenant_name) {
        (Role::SystemAdmin, None) => None,
        (Role::SystemAdmin, Some(_)) => {
            return Err(EngineError::Usage(
                "a system_admin belongs to no tenant: drop --tenant".to_owned(),
            ));
        }
        (_, None) => return Err(EngineError::Usage(format!("role {role} needs --tenant NAME"))),
        (_, Some(name)) => Some(find_or_create_tenant(store, name).await?.id),
    };
    let user = store
        .users()
        .create(NewUser {
            tenant_id,
            email: email.to_owned(),
            password,
            role,
        })
        .await?;
    tracing::info!(user_id = %user.id, role = %user.role, "user created");
    Ok(user)
}

async fn find_or_create_tenant(store: &Store, name: &str) -> Result<Tenant, EngineError> {
    if let Some(tenant) = store.tenants().find_by_name(name).await? {
        return Ok(tenant);
    }
    let new = NewTenant {
        name: name.to_owned(),
        notification_email: None,
        max_concurrent_calls: DEFAULT_MAX_CONCURRENT_CALLS,
    };
    match store.tenants().create(new).await {
        Ok(tenant) => {
            tracing::info!(tenant_id = %tenant.id, name, "tenant created");
            Ok(tenant)
        }
        // Someone created it between our lookup and insert.
        Err(StoreError::Conflict { .. }) => store
            .tenants()
            .find_by_name(name)
            .await?
            .ok_or(EngineError::Store(StoreError::NotFound { entity: "tenant" })),
        Err(e) => Err(e.into()),
    }
}
