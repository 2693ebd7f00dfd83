//! `CallActor`: one per live phone call, and its typed [`CallHandle`].
//!
//! The actor owns the call's lifecycle: forward-only status transitions, the
//! end reason, and persisting the final state through the [`CallRecorder`] in
//! `post_stop`, after which it removes itself from the [`Registry`] and ends
//! the agent sessions attached to the call. The media loop, STT/TTS and LLM
//! will hang off this actor; today it has no I/O outside the recorder, and
//! `pre_start` does none at all, so spawning a call is cheap.
//!
//! A panic or handler error skips `post_stop`; the
//! [`CallsSupervisor`](crate::CallsSupervisor) then does the same cleanup with
//! `EndReason::ActorFailed`.

use crate::agent_session::{AgentSubject, end_sessions_of};
use crate::mailbox::{self, Mailbox};
use crate::registry::LiveHandle;
use crate::{ActorsError, CallRecorder, Registry};
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::sync::Arc;
use switchboard_domain::{AgentId, CallDirection, CallId, CallStatus, EndReason, TenantId, Timestamp};
use tracing::Instrument;

/// What a new call actor needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSpec {
    pub call_id: CallId,
    pub tenant_id: TenantId,
    pub agent_id: Option<AgentId>,
    pub direction: CallDirection,
    /// The status the call row has when the actor starts (usually `ringing`
    /// or `in-progress`). Must not be terminal.
    pub status: CallStatus,
}

/// A snapshot of a live call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallInfo {
    pub call_id: CallId,
    pub tenant_id: TenantId,
    pub agent_id: Option<AgentId>,
    pub direction: CallDirection,
    pub status: CallStatus,
    /// When the actor started.
    pub started_at: Timestamp,
    /// Set once the call is ending (the actor is about to stop).
    pub ending: Option<EndReason>,
}

/// The call actor's protocol.
#[derive(Debug)]
pub enum CallMsg {
    /// Move the call forward to a non-terminal status. Replies with the status
    /// in force afterwards: a status that is not ahead of the current one is
    /// ignored (out-of-order provider callbacks are harmless).
    SetStatus(CallStatus, RpcReplyPort<Result<CallStatus, ActorsError>>),
    /// End the call; the final status follows from the reason and how far the
    /// call got (see [`final_status`]).
    Hangup(EndReason),
    /// End the call with the terminal status a provider reported (busy, no-answer...).
    End(CallStatus, EndReason),
    /// Ask for a snapshot.
    GetInfo(RpcReplyPort<CallInfo>),
}

/// The terminal status a call ends with when hung up for `reason` while in `current`.
pub fn final_status(current: CallStatus, reason: EndReason) -> CallStatus {
    match reason {
        EndReason::ActorFailed | EndReason::ProviderError => CallStatus::Failed,
        _ if current.is_terminal() => current,
        _ if current.rank() >= CallStatus::InProgress.rank() => CallStatus::Completed,
        // Never answered: nothing was completed.
        _ => CallStatus::Canceled,
    }
}

/// Typed front of a call actor. Cheap to clone.
///
/// Requests count against the call's mailbox bound and fail with
/// [`ActorsError::Full`] when it is reached; ending a call never does.
#[derive(Debug, Clone)]
pub struct CallHandle {
    actor: ActorRef<CallMsg>,
    mailbox: Mailbox,
    call_id: CallId,
    tenant_id: TenantId,
}

impl CallHandle {
    pub fn call_id(&self) -> CallId {
        self.call_id
    }

    pub fn tenant_id(&self) -> TenantId {
        self.tenant_id
    }

    /// Messages sent but not yet taken up by the actor.
    pub fn mailbox_len(&self) -> usize {
        self.mailbox.in_flight()
    }

    /// The mailbox bound beyond which requests fail with [`ActorsError::Full`].
    pub fn mailbox_bound(&self) -> usize {
        self.mailbox.bound()
    }

    /// A snapshot of the call.
    pub async fn info(&self) -> Result<CallInfo, ActorsError> {
        mailbox::ask(&self.actor, &self.mailbox, CallMsg::GetInfo, false).await
    }

    /// Moves the call forward (see [`CallMsg::SetStatus`]); persists through the recorder.
    pub async fn set_status(&self, status: CallStatus) -> Result<CallStatus, ActorsError> {
        mailbox::ask(&self.actor, &self.mailbox, |r| CallMsg::SetStatus(status, r), false).await?
    }

    /// Ends the call. Returns once the request is queued; await [`Self::stopped`]
    /// to know the end is persisted and the call unregistered.
    pub fn hangup(&self, reason: EndReason) -> Result<(), ActorsError> {
        mailbox::send(&self.actor, &self.mailbox, CallMsg::Hangup(reason), true)
    }

    /// Ends the call with a provider-reported terminal `status`.
    pub fn end(&self, status: CallStatus, reason: EndReason) -> Result<(), ActorsError> {
        if !status.is_terminal() {
            return Err(ActorsError::NotTerminal(status));
        }
        mailbox::send(&self.actor, &self.mailbox, CallMsg::End(status, reason), true)
    }

    /// Resolves when the actor has stopped (after `post_stop` or a failure).
    pub async fn stopped(&self) {
        // Without a timeout the wait cannot fail.
        let _ = self.actor.get_cell().wait(None).await;
    }
}

impl LiveHandle for CallHandle {
    fn tenant_id(&self) -> TenantId {
        self.tenant_id
    }

    fn actor_id(&self) -> ActorId {
        self.actor.get_id()
    }
}

/// The call actor.
pub struct CallActor;

/// Start-up arguments of a [`CallActor`].
pub struct CallArgs {
    pub(crate) spec: CallSpec,
    pub(crate) mailbox: Mailbox,
    pub(crate) registry: Registry,
    pub(crate) recorder: Arc<dyn CallRecorder>,
}

/// The call actor's own state.
pub struct CallState {
    spec: CallSpec,
    status: CallStatus,
    started_at: Timestamp,
    ending: Option<(CallStatus, EndReason)>,
    mailbox: Mailbox,
    registry: Registry,
    recorder: Arc<dyn CallRecorder>,
    span: tracing::Span,
}

impl CallState {
    fn info(&self) -> CallInfo {
        CallInfo {
            call_id: self.spec.call_id,
            tenant_id: self.spec.tenant_id,
            agent_id: self.spec.agent_id,
            direction: self.spec.direction,
            status: self.status,
            started_at: self.started_at,
            ending: self.ending.map(|(_, r)| r),
        }
    }

    fn begin_end(&mut self, myself: &ActorRef<CallMsg>, status: CallStatus, reason: EndReason) {
        // The first end wins, as in the store; a second hang-up changes nothing.
        if self.ending.is_none() {
            tracing::info!(%status, %reason, "call ending");
            self.ending = Some((status, reason));
            myself.stop(Some(reason.to_string()));
        }
    }
}

pub(crate) fn make_handle(actor: ActorRef<CallMsg>, mailbox: Mailbox, spec: &CallSpec) -> CallHandle {
    CallHandle {
        actor,
        mailbox,
        call_id: spec.call_id,
        tenant_id: spec.tenant_id,
    }
}

impl Actor for CallActor {
    type Msg = CallMsg;
    type State = CallState;
    type Arguments = CallArgs;

    async fn pre_start(&self, _myself: ActorRef<CallMsg>, args: CallArgs) -> Result<CallState, ActorProcessingErr> {
        let span = tracing::info_span!("call", tenant_id = %args.spec.tenant_id, call_id = %args.spec.call_id);
        Ok(CallState {
            status: args.spec.status,
            spec: args.spec,
            started_at: switchboard_domain::now(),
            ending: None,
            mailbox: args.mailbox,
            registry: args.registry,
            recorder: args.recorder,
            span,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<CallMsg>,
        msg: CallMsg,
        state: &mut CallState,
    ) -> Result<(), ActorProcessingErr> {
        state.mailbox.release();
        let span = state.span.clone();
        async {
            match msg {
                CallMsg::GetInfo(reply) => {
                    // The asker may have given up; nothing to do then.
                    let _ = reply.send(state.info());
                }
                CallMsg::SetStatus(status, reply) => {
                    let result = set_status(state, status).await;
                    let _ = reply.send(result);
                }
                CallMsg::Hangup(reason) => {
                    let status = final_status(state.status, reason);
                    state.begin_end(&myself, status, reason);
                }
                CallMsg::End(status, reason) => state.begin_end(&myself, status, reason),
            }
        }
        .instrument(span)
        .await;
        Ok(())
    }

    async fn post_stop(&self, myself: ActorRef<CallMsg>, state: &mut CallState) -> Result<(), ActorProcessingErr> {
        let span = state.span.clone();
        async {
            // Stopped without a hang-up: the tree is being torn down.
            let (status, reason) = state
                .ending
                .unwrap_or_else(|| (final_status(state.status, EndReason::Shutdown), EndReason::Shutdown));
            // Persist before unregistering: once the call is gone from the
            // registry, readers of the store must see it ended.
            if let Err(err) = state.recorder.finish(state.spec.call_id, status, reason).await {
                tracing::error!(error = %err, %status, %reason, "could not persist the call's end");
            }
            state
                .registry
                .calls()
                .remove_if_actor(&state.spec.call_id, myself.get_id());
            end_sessions_of(&state.registry, AgentSubject::Call(state.spec.call_id), reason);
            tracing::info!(%status, %reason, "call ended");
        }
        .instrument(span)
        .await;
        Ok(())
    }
}

async fn set_status(state: &mut CallState, status: CallStatus) -> Result<CallStatus, ActorsError> {
    if status.is_terminal() {
        return Err(ActorsError::TerminalStatus(status));
    }
    if status.rank() <= state.status.rank() || state.ending.is_some() {
        return Ok(state.status);
    }
    // The provider is the source of truth: the call did move on, even if the
    // write fails, so memory follows the provider and the error goes to the caller.
    state.status = status;
    tracing::debug!(%status, "call status");
    state.recorder.set_status(state.spec.call_id, status).await?;
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_status_follows_reason_and_progress() {
        assert_eq!(
            final_status(CallStatus::Streaming, EndReason::CallerHangup),
            CallStatus::Completed
        );
        assert_eq!(
            final_status(CallStatus::Ringing, EndReason::CallerHangup),
            CallStatus::Canceled
        );
        assert_eq!(
            final_status(CallStatus::Streaming, EndReason::ActorFailed),
            CallStatus::Failed
        );
        assert_eq!(
            final_status(CallStatus::Queued, EndReason::ProviderError),
            CallStatus::Failed
        );
        assert_eq!(
            final_status(CallStatus::InProgress, EndReason::Shutdown),
            CallStatus::Completed
        );
    }
}
