//! `/api/v1/tenants`.
//!
//! Permissions: system admins have full CRUD over every tenant. Owners,
//! admins and agents may read only their own tenant (lists show just it;
//! any other ID is 404); owners may also `PATCH` their own tenant. Deleting a
//! tenant cascades to all of its rows.

use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Patch, Path, Query};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use switchboard_domain::{NewTenant, Page, PageRequest, Role, Tenant, TenantId, TenantUpdate};
use switchboard_store::TenantFilter;

/// Tenant list parameters.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TenantQuery {
    /// Rows to return, 1..=200 (default 50).
    pub limit: Option<u32>,
    /// Rows to skip (default 0).
    pub offset: Option<u32>,
    /// Case-insensitive substring of the name.
    pub q: Option<String>,
}

const READ: &str = "All roles; non-system-admins see only their own tenant.";
const WRITE_ADMIN: &str = "System admins only.";
const UPDATE: &str = "System admins, or owners for their own tenant.";

/// List tenants.
#[utoipa::path(
    get, path = "/api/v1/tenants", tag = "tenants", description = READ,
    params(TenantQuery),
    responses((status = 200, description = "One page", body = Page<Tenant>), (status = 401, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<TenantQuery>,
) -> Result<Json<Page<Tenant>>, ApiError> {
    let page = PageRequest::new(q.limit.unwrap_or(PageRequest::DEFAULT_LIMIT), q.offset.unwrap_or(0));
    let filter = TenantFilter { q: q.q };
    Ok(Json(state.store().tenants().list(caller.scope, &filter, page).await?))
}

/// Create a tenant.
#[utoipa::path(
    post, path = "/api/v1/tenants", tag = "tenants", description = WRITE_ADMIN,
    request_body = NewTenant,
    responses(
        (status = 201, description = "Created", body = Tenant),
        (status = 403, description = "`forbidden`", body = ErrorBody),
        (status = 409, description = "`conflict`: name taken", body = ErrorBody),
        (status = 422, description = "`validation_failed`", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Patch<NewTenant>, ApiError>,
) -> Result<(StatusCode, Json<Tenant>), ApiError> {
    caller.require(Role::SystemAdmin)?;
    let body = body?;
    let tenant = state.store().tenants().create(body.value).await?;
    caller
        .audit(
            &state,
            "create",
            "tenant",
            tenant.id,
            Some(tenant.id),
            serde_json::json!({ "fields": body.fields }),
        )
        .await;
    Ok((StatusCode::CREATED, Json(tenant)))
}

/// Get a tenant.
#[utoipa::path(
    get, path = "/api/v1/tenants/{id}", tag = "tenants", description = READ,
    params(("id" = String, Path, format = Uuid, description = "Tenant ID")),
    responses((status = 200, body = Tenant), (status = 404, description = "`not_found`", body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<TenantId>,
) -> Result<Json<Tenant>, ApiError> {
    Ok(Json(state.store().tenants().get(caller.scope, id).await?))
}

/// Change a tenant.
#[utoipa::path(
    patch, path = "/api/v1/tenants/{id}", tag = "tenants", description = UPDATE,
    params(("id" = String, Path, format = Uuid, description = "Tenant ID")),
    request_body = TenantUpdate,
    responses(
        (status = 200, body = Tenant),
        (status = 403, description = "`forbidden`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 422, description = "`validation_failed`", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<TenantId>, ApiError>,
    body: Result<Patch<TenantUpdate>, ApiError>,
) -> Result<Json<Tenant>, ApiError> {
    caller.require(Role::Owner)?;
    let Path(id) = id?;
    let body = body?;
    let tenant = state.store().tenants().update(caller.scope, id, body.value).await?;
    caller
        .audit(
            &state,
            "update",
            "tenant",
            tenant.id,
            Some(tenant.id),
            serde_json::json!({ "fields": body.fields }),
        )
        .await;
    Ok(Json(tenant))
}

/// Delete a tenant and everything in it.
#[utoipa::path(
    delete, path = "/api/v1/tenants/{id}", tag = "tenants", description = WRITE_ADMIN,
    params(("id" = String, Path, format = Uuid, description = "Tenant ID")),
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
    id: Result<Path<TenantId>, ApiError>,
) -> Result<StatusCode, ApiError> {
    caller.require(Role::SystemAdmin)?;
    let Path(id) = id?;
    state.store().tenants().delete(caller.scope, id).await?;
    // The tenant's own audit rows cascade away with it, so record this one platform-wide.
    caller
        .audit(&state, "delete", "tenant", id, None, serde_json::json!({}))
        .await;
    Ok(StatusCode::NO_CONTENT)
}

pub fn routes() -> axum::Router<AppState> {
    use axum::routing::get as get_route;
    axum::Router::new()
        .route("/tenants", get_route(list).post(create))
        .route("/tenants/{id}", get_route(get).patch(update).delete(delete))
}
