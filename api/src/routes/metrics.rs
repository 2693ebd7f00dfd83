//! `/metrics` (Prometheus text) and `/stats` (the same figures as JSON), for
//! operators and the load tool. Unauthenticated like `/healthz`: they carry
//! counts and timings, no tenant data; keep them off the public listener in
//! production (a reverse proxy rule), as is usual for `/metrics`.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::{ApiError, AppState};

fn registry(state: &AppState) -> Result<switchboard_actors::Registry, ApiError> {
    state
        .calls
        .as_ref()
        .map(|c| c.tree.registry().clone())
        .ok_or_else(|| ApiError::NotReady("call services are not enabled on this node".into()))
}

/// The media and process figures in the Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let registry = registry(&state)?;
    let body = switchboard_actors::metrics::render_prometheus(&registry);
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        body,
    )
        .into_response())
}

/// The same figures as JSON (`switchboard_actors::metrics::Snapshot`).
pub async fn stats(State(state): State<AppState>) -> Result<Response, ApiError> {
    let registry = registry(&state)?;
    Ok(Json(switchboard_actors::metrics::snapshot(&registry)).into_response())
}
