//! Read-only activity: calls (with transcripts), conversations, messages and
//! the audit log. Calls, conversations and messages are written by the engine,
//! never through the REST API.
//!
//! Permissions: calls, conversations and messages are readable by every role
//! (agent and above) within its tenant; the audit log needs owner or above.

use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Path, Query};
use crate::routes::crud::{ListQuery as _, list_query};
use crate::state::AppState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::path::{Path as FsPath, PathBuf};
use switchboard_domain::{
    AgentId, AuditEntry, Call, CallDirection, CallId, CallStatus, Channel, ContactId, Conversation, ConversationId,
    Message, MessageDirection, MessageId, Page, Role, Timestamp, TranscriptSegment, TurnLatency,
};
use switchboard_store::{CallFilter, ConversationFilter, MessageFilter};

const READ: &str = "Read-only. Agent and above, own tenant only (other tenants' rows are 404).";

list_query!(
    /// Call list parameters.
    CallQuery => CallFilter {
        status: CallStatus,
        direction: CallDirection,
        agent_id: AgentId,
        /// Only calls started at or after this time (RFC 3339).
        #[param(value_type = Option<String>, format = DateTime)]
        from: Timestamp,
        /// Only calls started before this time (RFC 3339).
        #[param(value_type = Option<String>, format = DateTime)]
        to: Timestamp,
    }
);

list_query!(
    /// Conversation list parameters.
    ConversationQuery => ConversationFilter {
        channel: Channel,
        contact_id: ContactId,
    }
);

list_query!(
    /// Message list parameters.
    MessageQuery => MessageFilter {
        /// Only messages of this conversation.
        conversation_id: ConversationId,
        direction: MessageDirection,
    }
);

list_query!(
    /// Audit log parameters.
    AuditQuery => AuditFilter {}
);

/// The audit log takes no filters beyond the page.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {}

/// A call with its transcript.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CallDetail {
    pub call: Call,
    /// Segments in order (`seq` ascending).
    pub transcript: Vec<TranscriptSegment>,
    /// True while an actor is handling the call on this node.
    pub live: bool,
}

/// List calls.
#[utoipa::path(
    get, path = "/api/v1/calls", tag = "calls", description = READ,
    params(CallQuery),
    responses((status = 200, body = Page<Call>), (status = 400, description = "`bad_request`", body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub async fn list_calls(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<CallQuery>,
) -> Result<Json<Page<Call>>, ApiError> {
    caller.require(Role::Agent)?;
    let (tenant, filter, page) = query.split();
    let scope = caller.list_scope(tenant)?;
    Ok(Json(state.store().calls().list(scope, &filter, page).await?))
}

/// Get a call with its transcript.
#[utoipa::path(
    get, path = "/api/v1/calls/{id}", tag = "calls", description = READ,
    params(("id" = String, Path, format = Uuid, description = "Call ID")),
    responses((status = 200, body = CallDetail), (status = 404, description = "`not_found`", body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub async fn get_call(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<CallId>,
) -> Result<Json<CallDetail>, ApiError> {
    caller.require(Role::Agent)?;
    let call = state.store().calls().get(caller.scope, id).await?;
    let transcript = state.store().transcripts().list(id).await?;
    let live = state.inner.live.is_call_live(id);
    Ok(Json(CallDetail { call, transcript, live }))
}

/// Get a call's transcript.
#[utoipa::path(
    get, path = "/api/v1/calls/{id}/transcript", tag = "calls", description = READ,
    params(("id" = String, Path, format = Uuid, description = "Call ID")),
    responses((status = 200, body = Vec<TranscriptSegment>), (status = 404, description = "`not_found`", body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub async fn get_transcript(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<CallId>,
) -> Result<Json<Vec<TranscriptSegment>>, ApiError> {
    caller.require(Role::Agent)?;
    // Scope check through the call: transcripts carry no tenant of their own.
    state.store().calls().get(caller.scope, id).await?;
    Ok(Json(state.store().transcripts().list(id).await?))
}

/// Get a call's per-turn latencies (turn 0 is the greeting).
#[utoipa::path(
    get, path = "/api/v1/calls/{id}/turns", tag = "calls", description = READ,
    params(("id" = String, Path, format = Uuid, description = "Call ID")),
    responses((status = 200, body = Vec<TurnLatency>), (status = 404, description = "`not_found`", body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub async fn get_turns(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<CallId>,
) -> Result<Json<Vec<TurnLatency>>, ApiError> {
    caller.require(Role::Agent)?;
    // Scope check through the call: turns carry no tenant of their own.
    state.store().calls().get(caller.scope, id).await?;
    Ok(Json(state.store().turns().list(id).await?))
}

/// Download a call's recording (stereo WAV: caller left, agent right).
#[utoipa::path(
    get, path = "/api/v1/calls/{id}/recording", tag = "calls",
    description = "Agent and above, own tenant only. Only recordings the engine wrote itself (under the \
                   recordings directory) are served; a call without one, or whose recording is elsewhere \
                   (e.g. a carrier URL, see `recording_url`), is 404.",
    params(("id" = String, Path, format = Uuid, description = "Call ID")),
    responses(
        (status = 200, description = "The WAV file", content_type = "audio/wav", body = Vec<u8>),
        (status = 404, description = "`not_found`", body = ErrorBody)
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub async fn get_recording(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<CallId>,
) -> Result<Response, ApiError> {
    caller.require(Role::Agent)?;
    let call = state.store().calls().get(caller.scope, id).await?;
    let dir = state.calls.as_ref().and_then(|c| c.recordings_dir.clone());
    let (Some(url), Some(dir)) = (call.recording_url, dir) else {
        return Err(ApiError::NotFound("recording"));
    };
    let Some(path) = local_recording(&dir, &url).await else {
        tracing::debug!(call_id = %id, "recording is not a local file under the recordings directory");
        return Err(ApiError::NotFound("recording"));
    };
    match tokio::fs::read(&path).await {
        Ok(bytes) => Ok(([(http::header::CONTENT_TYPE, "audio/wav")], bytes).into_response()),
        Err(err) => {
            tracing::warn!(call_id = %id, error = %err, "recording file unreadable");
            Err(ApiError::NotFound("recording"))
        }
    }
}

/// `url` as a file under `dir`, if it is one: a plain path or a `file://`
/// URL, relative paths taken from `dir`. Both sides are canonicalized
/// (symlinks and `..` resolved) before the containment check, so no stored
/// value can reach outside the recordings directory.
async fn local_recording(dir: &FsPath, url: &str) -> Option<PathBuf> {
    let raw = url.strip_prefix("file://").unwrap_or(url);
    if raw.contains("://") {
        return None;
    }
    let candidate = dir.join(raw);
    let root = tokio::fs::canonicalize(dir).await.ok()?;
    let resolved = tokio::fs::canonicalize(&candidate).await.ok()?;
    let meta = tokio::fs::metadata(&resolved).await.ok()?;
    (resolved.starts_with(&root) && meta.is_file()).then_some(resolved)
}

/// List conversations.
#[utoipa::path(
    get, path = "/api/v1/conversations", tag = "conversations", description = READ,
    params(ConversationQuery),
    responses((status = 200, body = Page<Conversation>)),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub async fn list_conversations(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ConversationQuery>,
) -> Result<Json<Page<Conversation>>, ApiError> {
    caller.require(Role::Agent)?;
    let (tenant, filter, page) = query.split();
    let scope = caller.list_scope(tenant)?;
    Ok(Json(state.store().conversations().list(scope, &filter, page).await?))
}

/// Get a conversation.
#[utoipa::path(
    get, path = "/api/v1/conversations/{id}", tag = "conversations", description = READ,
    params(("id" = String, Path, format = Uuid, description = "Conversation ID")),
    responses((status = 200, body = Conversation), (status = 404, description = "`not_found`", body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub async fn get_conversation(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<ConversationId>,
) -> Result<Json<Conversation>, ApiError> {
    caller.require(Role::Agent)?;
    Ok(Json(state.store().conversations().get(caller.scope, id).await?))
}

/// List messages (filter by `conversation_id`).
#[utoipa::path(
    get, path = "/api/v1/messages", tag = "messages", description = READ,
    params(MessageQuery),
    responses((status = 200, body = Page<Message>)),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub async fn list_messages(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<MessageQuery>,
) -> Result<Json<Page<Message>>, ApiError> {
    caller.require(Role::Agent)?;
    let (tenant, filter, page) = query.split();
    let scope = caller.list_scope(tenant)?;
    Ok(Json(state.store().messages().list(scope, &filter, page).await?))
}

/// Get a message.
#[utoipa::path(
    get, path = "/api/v1/messages/{id}", tag = "messages", description = READ,
    params(("id" = String, Path, format = Uuid, description = "Message ID")),
    responses((status = 200, body = Message), (status = 404, description = "`not_found`", body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub async fn get_message(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<MessageId>,
) -> Result<Json<Message>, ApiError> {
    caller.require(Role::Agent)?;
    Ok(Json(state.store().messages().get(caller.scope, id).await?))
}

/// The audit log, newest first.
#[utoipa::path(
    get, path = "/api/v1/audit", tag = "audit",
    description = "Owner and above. Owners see their tenant's entries; system admins see all.",
    params(AuditQuery),
    responses((status = 200, body = Page<AuditEntry>), (status = 403, description = "`forbidden`", body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub async fn list_audit(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<AuditQuery>, ApiError>,
) -> Result<Json<Page<AuditEntry>>, ApiError> {
    caller.require(Role::Owner)?;
    let Query(query) = query?;
    let (tenant, AuditFilter {}, page) = query.split();
    let scope = caller.list_scope(tenant)?;
    Ok(Json(state.store().audit().list(scope, page).await?))
}

pub fn routes() -> axum::Router<AppState> {
    use axum::routing::get;
    axum::Router::new()
        .route("/calls", get(list_calls))
        .route("/calls/{id}", get(get_call))
        .route("/calls/{id}/transcript", get(get_transcript))
        .route("/calls/{id}/turns", get(get_turns))
        .route("/calls/{id}/recording", get(get_recording))
        .route("/conversations", get(list_conversations))
        .route("/conversations/{id}", get(get_conversation))
        .route("/messages", get(list_messages))
        .route("/messages/{id}", get(get_message))
        .route("/audit", get(list_audit))
}
