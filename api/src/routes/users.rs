//! `/api/v1/users`.
//!
//! Permissions (see [`can_manage`]):
//! - system admins manage every user, including other system admins;
//! - owners manage users of their tenant whose role is at most `owner`;
//! - admins read the users of their tenant and manage only `agent`-role users;
//! - agents have no access (403); they see themselves via `/auth/me`.
//!
//! Nobody creates or promotes a user above their own role, and only system
//! admins create system admins. Changing a password revokes all of that
//! user's sessions.

use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Patch, Path, Query};
use crate::routes::crud::{ListQuery as _, list_query};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use switchboard_domain::{NewUser, Page, Role, User, UserId, UserUpdate};
use switchboard_store::{Scope, UserFilter};

list_query!(
    /// User list parameters.
    UserQuery => UserFilter {
        /// Only users with this role.
        role: Role,
        /// Case-insensitive substring of the email.
        q: String,
    }
);

/// May `actor` create, change or delete a user holding `target`?
pub fn can_manage(actor: Role, target: Role) -> bool {
    match actor {
        Role::SystemAdmin => true,
        Role::Owner => target <= Role::Owner,
        Role::Admin => target == Role::Agent,
        Role::Agent => false,
    }
}

const PERMS: &str = "System admins: all users. Owners: users of their tenant with role <= owner. \
                     Admins: read their tenant's users, manage agent-role users only. Agents: 403.";

/// List users.
#[utoipa::path(
    get, path = "/api/v1/users", tag = "users", description = PERMS,
    params(UserQuery),
    responses((status = 200, body = Page<User>), (status = 403, description = "`forbidden`", body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<UserQuery>, ApiError>,
) -> Result<Json<Page<User>>, ApiError> {
    caller.require(Role::Admin)?;
    let Query(query) = query?;
    let (tenant, filter, page) = query.split();
    let scope = caller.list_scope(tenant)?;
    Ok(Json(state.store().users().list(scope, &filter, page).await?))
}

/// Create a user.
#[utoipa::path(
    post, path = "/api/v1/users", tag = "users", description = PERMS,
    request_body = NewUser,
    responses(
        (status = 201, body = User),
        (status = 403, description = "`forbidden`: role above your own", body = ErrorBody),
        (status = 409, description = "`conflict`: email taken", body = ErrorBody),
        (status = 422, description = "`validation_failed`", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Patch<NewUser>, ApiError>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    caller.require(Role::Admin)?;
    let Patch { value: mut new, fields } = body?;
    if !can_manage(caller.role(), new.role) {
        return Err(ApiError::Forbidden);
    }
    if let Scope::Tenant(own) = caller.scope {
        new.tenant_id = Some(caller.tenant_for_create(new.tenant_id.or(Some(own)))?);
    }
    let user = state.store().users().create(new).await?;
    caller
        .audit(
            &state,
            "create",
            "user",
            user.id,
            user.tenant_id,
            serde_json::json!({ "fields": fields, "role": user.role }),
        )
        .await;
    Ok((StatusCode::CREATED, Json(user)))
}

/// Get a user.
#[utoipa::path(
    get, path = "/api/v1/users/{id}", tag = "users", description = PERMS,
    params(("id" = String, Path, format = Uuid, description = "User ID")),
    responses((status = 200, body = User), (status = 404, description = "`not_found`", body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<UserId>, ApiError>,
) -> Result<Json<User>, ApiError> {
    caller.require(Role::Admin)?;
    let Path(id) = id?;
    Ok(Json(state.store().users().get(caller.scope, id).await?))
}

/// Change a user (email, password, role).
#[utoipa::path(
    patch, path = "/api/v1/users/{id}", tag = "users", description = PERMS,
    params(("id" = String, Path, format = Uuid, description = "User ID")),
    request_body = UserUpdate,
    responses(
        (status = 200, body = User),
        (status = 403, description = "`forbidden`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 409, description = "`conflict`", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<UserId>, ApiError>,
    body: Result<Patch<UserUpdate>, ApiError>,
) -> Result<Json<User>, ApiError> {
    caller.require(Role::Admin)?;
    let Path(id) = id?;
    let users = state.store().users();
    let target = users.get(caller.scope, id).await?;
    if !can_manage(caller.role(), target.role) {
        return Err(ApiError::Forbidden);
    }
    let Patch { value: update, fields } = body?;
    if update.role.is_some_and(|role| !can_manage(caller.role(), role)) {
        return Err(ApiError::Forbidden);
    }
    let password_changed = update.password.is_some();
    let user = users.update(caller.scope, id, update).await?;
    if password_changed {
        // A new password must lock out whoever knew the old one.
        state.store().sessions().revoke_all_for_user(user.id).await?;
    }
    caller
        .audit(
            &state,
            "update",
            "user",
            user.id,
            user.tenant_id,
            serde_json::json!({ "fields": fields }),
        )
        .await;
    Ok(Json(user))
}

/// Delete a user.
#[utoipa::path(
    delete, path = "/api/v1/users/{id}", tag = "users", description = PERMS,
    params(("id" = String, Path, format = Uuid, description = "User ID")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "`forbidden`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<UserId>, ApiError>,
) -> Result<StatusCode, ApiError> {
    caller.require(Role::Admin)?;
    let Path(id) = id?;
    let users = state.store().users();
    let target = users.get(caller.scope, id).await?;
    if !can_manage(caller.role(), target.role) {
        return Err(ApiError::Forbidden);
    }
    users.delete(caller.scope, id).await?;
    caller
        .audit(&state, "delete", "user", id, target.tenant_id, serde_json::json!({}))
        .await;
    Ok(StatusCode::NO_CONTENT)
}

pub fn routes() -> axum::Router<AppState> {
    use axum::routing::get as get_route;
    axum::Router::new()
        .route("/users", get_route(list).post(create))
        .route("/users/{id}", get_route(get).patch(update).delete(delete))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn management_follows_the_role_ladder() {
        for target in Role::ALL {
            assert!(can_manage(Role::SystemAdmin, target));
            assert!(!can_manage(Role::Agent, target));
        }
        assert!(can_manage(Role::Owner, Role::Owner));
        assert!(!can_manage(Role::Owner, Role::SystemAdmin));
        assert!(can_manage(Role::Admin, Role::Agent));
        assert!(!can_manage(Role::Admin, Role::Admin));
    }
}
