//! Twilio's HTTP webhooks: the incoming call (`/twilio/voice`), call progress
//! (`/twilio/status`) and recording status (`/twilio/recording`).
//!
//! Guarantees:
//! - `/twilio/voice` answers TwiML. An unknown number gets a polite
//!   `<Say>` + `<Hangup/>` and no row; a number without an enabled agent, or
//!   a tenant at `max_concurrent_calls`, gets the same, with the call row
//!   created and finished (`rejected` / `concurrency_limit`). Otherwise the
//!   call row is created and the answer is `<Connect><Stream>` to
//!   `/twilio/media` with `call_id` and a fresh stream token as
//!   `<Parameter>`s. A retried webhook (same `CallSid`, call still
//!   `queued`/`ringing`, no live actor) gets the same TwiML with a fresh
//!   token; once the stream started or the call ended it is `409`.
//! - Status and recording callbacks are idempotent: the call actor (when
//!   live) and the store only ever move a call forward and keep the first
//!   end, so duplicates and out-of-order deliveries change nothing.

use super::{SignedRequest, Telephony};
use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::OriginalUri;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};
use switchboard_actors::ActorsError;
use switchboard_domain::{Agent, Call, CallDirection, CallStatus, EndReason, NewCall, ProviderCallId, TenantId};
use switchboard_providers::twilio::twiml::{SayOptions, Twiml, VoiceResponse};
use switchboard_providers::twilio::webhook::{
    Party, RecordingStatus, RecordingStatusCallback, StatusCallback, VoiceWebhook, WebhookError,
};
use switchboard_store::{Scope, StoreError};

/// Spoken when the number is not routed to anything.
const UNAVAILABLE: &str = "Sorry, this number is not available right now. Goodbye.";
/// Spoken when the tenant is at its concurrent-call limit.
const BUSY: &str = "Sorry, all our lines are busy right now. Please call again later. Goodbye.";

fn twiml_response(twiml: Twiml) -> Response {
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], twiml.into_string()).into_response()
}

fn say_and_hang_up(text: &str) -> Response {
    twiml_response(VoiceResponse::new().say(text, &SayOptions::default()).hangup().build())
}

fn bad_form(err: WebhookError) -> ApiError {
    tracing::warn!(error = %err, "twilio webhook with an invalid form");
    ApiError::BadRequest(err.to_string())
}

fn party(p: &Party) -> String {
    match p {
        Party::Phone(n) => n.as_str().to_owned(),
        Party::Other(s) => s.clone(),
    }
}

fn record_tenant(tenant: TenantId) {
    tracing::Span::current().record("tenant_id", tracing::field::display(tenant));
}

/// `ws://` or `wss://` twin of the public base URL, plus `/twilio/media`.
pub(crate) fn stream_url(public_base_url: &str) -> String {
    let rest = public_base_url
        .strip_prefix("https://")
        .map(|r| format!("wss://{r}"))
        .or_else(|| public_base_url.strip_prefix("http://").map(|r| format!("ws://{r}")))
        .unwrap_or_else(|| public_base_url.to_owned());
    format!("{rest}/twilio/media")
}

/// `<Connect><Stream>` for `call` with a token issued now.
fn connect_twiml(t: &Telephony, call: &Call) -> Response {
    let inner = &t.state.inner;
    let token = inner.stream_tokens.issue(call.id, chrono::Utc::now().timestamp());
    let call_id = call.id.to_string();
    let url = stream_url(&inner.public_base_url);
    twiml_response(
        VoiceResponse::new()
            .connect_stream(&url, &[("call_id", &call_id), ("token", &token)])
            .build(),
    )
}

/// `POST /twilio/voice`: an incoming call (see the module docs).
pub(crate) async fn voice(
    t: Telephony,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req = SignedRequest::parse(&t.state.inner.public_base_url, &uri, &headers, body)?;
    let hook = VoiceWebhook::from_form(&req.pairs).map_err(bad_form)?;
    let store = t.state.store();

    let number = match hook.to.e164() {
        Some(n) => store.phone_numbers().find_by_number(n).await?,
        None => None,
    };
    let Some(number) = number else {
        tracing::warn!(to = %party(&hook.to), call_sid = %hook.call_sid, "incoming call to an unknown number");
        return Ok(say_and_hang_up(UNAVAILABLE));
    };
    let tenant = number.tenant_id;
    record_tenant(tenant);
    req.authenticate(&t.state, tenant, hook.account_sid.as_str()).await?;

    if let Some(existing) = store.calls().get_by_provider_call_id(&hook.call_sid).await? {
        return replay(&t, tenant, &existing);
    }

    let agent = match number.agent_id {
        Some(id) => match store.agents().get(Scope::Tenant(tenant), id).await {
            Ok(agent) => Some(agent),
            Err(StoreError::NotFound { .. }) => None,
            Err(err) => return Err(err.into()),
        },
        None => None,
    };
    let new_call = |agent: Option<&Agent>| NewCall {
        tenant_id: tenant,
        agent_id: agent.map(|a| a.id),
        provider_call_id: Some(hook.call_sid.clone()),
        direction: CallDirection::Inbound,
        from: party(&hook.from),
        to: party(&hook.to),
        status: if hook.call_status == CallStatus::Queued {
            CallStatus::Queued
        } else {
            CallStatus::Ringing
        },
    };

    let Some(agent) = agent.filter(|a| a.enabled) else {
        let call = create_call(&t, new_call(None), &hook.call_sid).await?;
        let call = match call {
            Created::New(call) => call,
            Created::Existing(existing) => return replay(&t, tenant, &existing),
        };
        store
            .calls()
            .finish(call.id, CallStatus::Completed, EndReason::Rejected)
            .await?;
        tracing::warn!(%tenant, call_id = %call.id, number = %number.number, "incoming call refused: no enabled agent on the number");
        return Ok(say_and_hang_up(UNAVAILABLE));
    };

    let tenant_row = store.tenants().get(Scope::All, tenant).await?;
    let live = t.calls.tree.registry().calls().count_by_tenant(tenant);
    let at_limit = live >= usize::try_from(tenant_row.max_concurrent_calls).unwrap_or(usize::MAX);

    let call = match create_call(&t, new_call(Some(&agent)), &hook.call_sid).await? {
        Created::New(call) => call,
        Created::Existing(existing) => return replay(&t, tenant, &existing),
    };
    if at_limit {
        store
            .calls()
            .finish(call.id, CallStatus::Completed, EndReason::ConcurrencyLimit)
            .await?;
        tracing::warn!(%tenant, call_id = %call.id, live, limit = tenant_row.max_concurrent_calls, "incoming call refused: tenant at its concurrent-call limit");
        return Ok(say_and_hang_up(BUSY));
    }
    tracing::info!(%tenant, call_id = %call.id, call_sid = %hook.call_sid, agent_id = %agent.id, "incoming call: connecting the media stream");
    Ok(connect_twiml(&t, &call))
}

enum Created {
    New(Call),
    /// Another delivery of the same webhook created the row first.
    Existing(Call),
}

async fn create_call(t: &Telephony, new: NewCall, call_sid: &ProviderCallId) -> Result<Created, ApiError> {
    match t.state.store().calls().create(new).await {
        Ok(call) => Ok(Created::New(call)),
        Err(StoreError::Conflict { .. }) => match t.state.store().calls().get_by_provider_call_id(call_sid).await? {
            Some(existing) => Ok(Created::Existing(existing)),
            None => Err(ApiError::Conflict("the call could not be created".into())),
        },
        Err(err) => Err(err.into()),
    }
}

/// The same `CallSid` again: Twilio retrying a webhook we answered.
fn replay(t: &Telephony, tenant: TenantId, existing: &Call) -> Result<Response, ApiError> {
    let live = t.calls.tree.registry().calls().contains(&existing.id);
    let waiting = matches!(existing.status, CallStatus::Queued | CallStatus::Ringing);
    if existing.tenant_id == tenant && waiting && existing.ended_at.is_none() && !live {
        tracing::info!(%tenant, call_id = %existing.id, "voice webhook retried: answering again with a fresh token");
        return Ok(connect_twiml(t, existing));
    }
    tracing::warn!(
        %tenant,
        call_id = %existing.id,
        status = %existing.status,
        live,
        "voice webhook replayed after the call moved on"
    );
    Err(ApiError::Conflict("this call has already been handled".into()))
}

/// Finds the call a callback is about and checks its signature.
async fn authenticated_call(
    t: &Telephony,
    req: &SignedRequest,
    call_sid: &ProviderCallId,
    account_sid: &str,
) -> Result<Call, ApiError> {
    let Some(call) = t.state.store().calls().get_by_provider_call_id(call_sid).await? else {
        tracing::warn!(%call_sid, "twilio callback for an unknown CallSid");
        return Err(ApiError::NotFound("call"));
    };
    record_tenant(call.tenant_id);
    req.authenticate(&t.state, call.tenant_id, account_sid).await?;
    Ok(call)
}

/// Why a call ended, from the terminal status the carrier reported.
pub(crate) fn end_reason_for(status: CallStatus) -> EndReason {
    match status {
        CallStatus::Failed => EndReason::ProviderError,
        CallStatus::Busy | CallStatus::NoAnswer => EndReason::Completed,
        // `completed` and `canceled`: the caller's side ended it.
        _ => EndReason::CallerHangup,
    }
}

/// `POST /twilio/status`: call progress. Answers `204`.
pub(crate) async fn status(
    t: Telephony,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req = SignedRequest::parse(&t.state.inner.public_base_url, &uri, &headers, body)?;
    let cb = StatusCallback::from_form(&req.pairs).map_err(bad_form)?;
    let call = authenticated_call(&t, &req, &cb.call_sid, cb.account_sid.as_str()).await?;
    let status = cb.call_status;
    tracing::info!(
        tenant_id = %call.tenant_id,
        call_id = %call.id,
        %status,
        sequence = ?cb.sequence_number,
        "twilio call status"
    );
    let live = t.calls.tree.registry().calls().get(&call.id);
    let calls = t.state.store().calls();
    if status.is_terminal() {
        let reason = end_reason_for(status);
        if let Some(handle) = live {
            match handle.end(status, reason) {
                // The actor persists the end in its own `post_stop`.
                Ok(()) => return Ok(StatusCode::NO_CONTENT.into_response()),
                Err(err) => tracing::debug!(call_id = %call.id, error = %err, "actor gone; ending through the store"),
            }
        }
        calls.finish(call.id, status, reason).await?;
    } else {
        if let Some(handle) = live {
            match handle.set_status(status).await {
                Ok(_) => return Ok(StatusCode::NO_CONTENT.into_response()),
                Err(ActorsError::Recorder(err)) => {
                    return Err(ApiError::internal("persisting the call status failed", &err));
                }
                // Gone or full: the store is monotonic, so writing it directly is safe.
                Err(err) => {
                    tracing::debug!(call_id = %call.id, error = %err, "actor unavailable; writing the status to the store")
                }
            }
        }
        calls.set_status(call.id, status).await?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /twilio/recording`: stores the recording URL once it is `completed`.
/// Answers `204`.
pub(crate) async fn recording(
    t: Telephony,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req = SignedRequest::parse(&t.state.inner.public_base_url, &uri, &headers, body)?;
    let cb = RecordingStatusCallback::from_form(&req.pairs).map_err(bad_form)?;
    let call = authenticated_call(&t, &req, &cb.call_sid, cb.account_sid.as_str()).await?;
    if cb.recording_status == RecordingStatus::Completed {
        t.state
            .store()
            .calls()
            .set_recording(call.id, cb.recording_url.clone())
            .await?;
        tracing::info!(tenant_id = %call.tenant_id, call_id = %call.id, recording_sid = %cb.recording_sid.as_str(), "call recording stored");
    } else {
        tracing::info!(
            tenant_id = %call.tenant_id,
            call_id = %call.id,
            status = ?cb.recording_status,
            error_code = ?cb.error_code,
            "call recording status"
        );
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_url_follows_the_public_scheme() {
        assert_eq!(
            stream_url("https://voice.example.com"),
            "wss://voice.example.com/twilio/media"
        );
        assert_eq!(stream_url("http://127.0.0.1:8080"), "ws://127.0.0.1:8080/twilio/media");
    }

    #[test]
    fn terminal_statuses_map_to_end_reasons() {
        assert_eq!(end_reason_for(CallStatus::Completed), EndReason::CallerHangup);
        assert_eq!(end_reason_for(CallStatus::Canceled), EndReason::CallerHangup);
        assert_eq!(end_reason_for(CallStatus::Busy), EndReason::Completed);
        assert_eq!(end_reason_for(CallStatus::NoAnswer), EndReason::Completed);
        assert_eq!(end_reason_for(CallStatus::Failed), EndReason::ProviderError);
    }
}
