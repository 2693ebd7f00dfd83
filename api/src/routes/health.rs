//! `GET /healthz` (liveness) and `GET /readyz` (readiness).
//!
//! Guarantees: `/healthz` always answers 200 without touching dependencies;
//! `/readyz` answers 200 only when both the store and the bus answer a ping,
//! and otherwise 503 `not_ready` naming what failed (details are logged, not
//! returned).

use crate::error::{ApiError, ErrorBody};
use crate::extract::Json;
use crate::state::AppState;
use axum::extract::State;
use serde::{Deserialize, Serialize};

/// Liveness answer.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
}

/// Readiness answer.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Ready {
    /// Always `ready` (failures are 503 errors).
    pub status: String,
    /// `in-process` or `redis`.
    pub bus: String,
    pub live_calls: usize,
    pub live_conversations: usize,
}

/// Liveness: the process is up.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok".into() })
}

/// Readiness: the store and the bus answer.
#[utoipa::path(
    get, path = "/readyz", tag = "health",
    responses(
        (status = 200, body = Ready),
        (status = 503, description = "`not_ready`: names the failing dependency", body = ErrorBody),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Ready>, ApiError> {
    let inner = &state.inner;
    let (store, bus) = tokio::join!(inner.store.ping(), inner.bus.ping());
    let mut failed = Vec::new();
    if let Err(err) = store {
        tracing::warn!(error = %err, "readiness: store ping failed");
        failed.push("store");
    }
    if let Err(err) = bus {
        tracing::warn!(error = %err, "readiness: bus ping failed");
        failed.push("bus");
    }
    if !failed.is_empty() {
        return Err(ApiError::NotReady(format!("unavailable: {}", failed.join(", "))));
    }
    Ok(Json(Ready {
        status: "ready".into(),
        bus: inner.bus.kind().into(),
        live_calls: inner.live.live_calls(),
        live_conversations: inner.live.live_conversations(),
    }))
}
