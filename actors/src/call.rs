//! `CallActor`: one per live phone call, and its typed [`CallHandle`].
//!
//! The actor owns the call's lifecycle: forward-only status transitions, the
//! end reason, and persisting the final state through the [`CallRecorder`] in
//! `post_stop`, after which it removes itself from the [`Registry`] and ends
//! the agent sessions attached to the call. A call with a live media stream
//! also owns its media loop: the chained speech loop (STT → agent → TTS,
//! `speech`) or, when the call's providers carry a Realtime configuration,
//! the OpenAI Realtime loop (`realtime_loop`). Both report back through the
//! mailbox, so the actor never awaits a provider. A call with a live stream
//! also spawns its [`AgentSessionActor`](crate::AgentSessionActor), linked
//! to the call, which owns the conversation context and supervises the
//! provider clients; `pre_start` does no other I/O, so spawning a call is cheap.
//!
//! A panic or handler error skips `post_stop`; the
//! [`CallsSupervisor`](crate::CallsSupervisor) then does the same cleanup with
//! `EndReason::ActorFailed`.

use crate::agent_session::{
    self, AgentSessionHandle, AgentSessionSpec, AgentSubject, SessionProviders, end_sessions_of,
};
use crate::mailbox::{self, Mailbox};
use crate::media::{AudioIn, LiveCall};
use crate::realtime_loop::RealtimeLoop;
use crate::registry::LiveHandle;
use crate::speech::{Event, Prepared, SpeechLoop, Step};
use crate::{ActorsError, CallRecorder, Registry};
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use std::sync::Arc;
use switchboard_domain::{
    AgentId, AgentSessionId, CallDirection, CallEvent, CallEventKind, CallId, CallStatus, EndReason, TenantId,
    Timestamp,
};
use tracing::Instrument;

/// How long a call waits for its agent session to stop when it ends.
const SESSION_STOP: std::time::Duration = std::time::Duration::from_secs(2);

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
    /// Caller audio from the media stream.
    Audio(AudioIn),
    /// Twilio echoed a mark: the audio queued before it has played.
    Mark(String),
    /// The caller pressed keys.
    Dtmf(String),
    /// Twilio sent `stop`: the stream (and the call) ended.
    StreamStopped,
    /// The media socket closed without a `stop`.
    StreamClosed,
    /// The actor's own timers and provider results; opaque outside the crate.
    Internal(Internal),
}

/// A message the call actor sends itself (timers, provider results).
#[derive(Debug)]
pub struct Internal(pub(crate) Event);

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

    /// Hands caller audio to the actor. Fails with `Full` when the call is
    /// behind: the frame is dropped (counted by the caller), never queued
    /// without bound.
    pub fn audio(&self, frame: AudioIn) -> Result<(), ActorsError> {
        mailbox::send(&self.actor, &self.mailbox, CallMsg::Audio(frame), false)
    }

    /// Reports a mark echoed by Twilio.
    pub fn mark(&self, name: String) -> Result<(), ActorsError> {
        mailbox::send(&self.actor, &self.mailbox, CallMsg::Mark(name), true)
    }

    /// Reports keypad digits.
    pub fn dtmf(&self, digits: String) -> Result<(), ActorsError> {
        mailbox::send(&self.actor, &self.mailbox, CallMsg::Dtmf(digits), true)
    }

    /// Twilio sent `stop`; the call ends.
    pub fn stream_stopped(&self) -> Result<(), ActorsError> {
        mailbox::send(&self.actor, &self.mailbox, CallMsg::StreamStopped, true)
    }

    /// The media socket closed; the call ends.
    pub fn stream_closed(&self) -> Result<(), ActorsError> {
        mailbox::send(&self.actor, &self.mailbox, CallMsg::StreamClosed, true)
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

/// What the calls supervisor is asked to start: a call, with its media
/// stream when it has one.
#[derive(Debug)]
pub struct CallStart {
    pub spec: CallSpec,
    pub live: Option<LiveCall>,
}

/// The call actor.
pub struct CallActor;

/// Start-up arguments of a [`CallActor`].
pub struct CallArgs {
    pub(crate) spec: CallSpec,
    pub(crate) mailbox: Mailbox,
    pub(crate) registry: Registry,
    pub(crate) recorder: Arc<dyn CallRecorder>,
    pub(crate) session_mailbox: usize,
    pub(crate) live: Option<LiveCall>,
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
    /// The media loop, for calls with a live stream.
    speech: Option<MediaLoop>,
    /// The call's agent session (linked to this actor), for calls with a live stream.
    session: Option<AgentSessionHandle>,
}

/// The media loop of a call with a live stream: the chained
/// STT → agent → TTS loop, or an OpenAI Realtime session when the call's
/// providers carry a [`RealtimeConfig`](switchboard_providers::RealtimeConfig).
///
/// Both are boxed: they are kilobytes (playback buffers), and the call state
/// is moved around while the actor starts.
enum MediaLoop {
    Chained(Box<SpeechLoop>),
    Realtime(Box<RealtimeLoop>),
}

impl MediaLoop {
    fn start(
        call_id: switchboard_domain::CallId,
        tenant_id: TenantId,
        live: LiveCall,
        recorder: Arc<dyn CallRecorder>,
        myself: ActorRef<CallMsg>,
        session: AgentSessionHandle,
        prepared: Option<Prepared>,
    ) -> Result<Self, String> {
        match prepared {
            None => RealtimeLoop::start(call_id, tenant_id, live, recorder, myself, session)
                .map(|l| Self::Realtime(Box::new(l))),
            Some(media) => SpeechLoop::start(call_id, tenant_id, live, recorder, myself, session, media)
                .map(|l| Self::Chained(Box::new(l))),
        }
    }

    fn on_audio(&mut self, ulaw: &[u8], timestamp_ms: u64) -> Step {
        match self {
            Self::Chained(l) => l.on_audio(ulaw, timestamp_ms),
            Self::Realtime(l) => l.on_audio(ulaw, timestamp_ms),
        }
    }

    fn on_mark(&mut self, name: &str) -> Step {
        match self {
            Self::Chained(l) => l.on_mark(name),
            Self::Realtime(l) => l.on_mark(name),
        }
    }

    fn on_dtmf(&mut self, digits: String) -> Step {
        match self {
            Self::Chained(l) => l.on_dtmf(digits),
            Self::Realtime(l) => l.on_dtmf(digits),
        }
    }

    fn on_event(&mut self, event: Event) -> Step {
        match (self, event) {
            (Self::Chained(l), Event::Tick) => l.on_tick(),
            (Self::Realtime(l), Event::Tick) => l.on_tick(),
            (Self::Chained(l), Event::Stt { turn, item }) => l.on_stt(turn, item),
            (Self::Chained(l), Event::Reply { turn, item }) => l.on_reply(turn, item),
            (Self::Realtime(l), Event::Realtime(item)) => l.on_realtime(item),
            // A result meant for the other kind of loop cannot arrive: each
            // loop only spawns its own tasks.
            (Self::Chained(_), Event::Realtime(_)) | (Self::Realtime(_), Event::Stt { .. } | Event::Reply { .. }) => {
                Step::Continue
            }
        }
    }

    fn status_changed(&self, status: CallStatus) {
        match self {
            Self::Chained(l) => l.status_changed(status),
            Self::Realtime(l) => l.status_changed(status),
        }
    }

    async fn finish(self, reason: EndReason, recorder: &dyn CallRecorder) -> Arc<dyn crate::media::EventSink> {
        match self {
            Self::Chained(l) => (*l).finish(reason, recorder).await,
            Self::Realtime(l) => (*l).finish(reason, recorder).await,
        }
    }
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

    async fn pre_start(&self, myself: ActorRef<CallMsg>, args: CallArgs) -> Result<CallState, ActorProcessingErr> {
        let span = tracing::info_span!("call", tenant_id = %args.spec.tenant_id, call_id = %args.spec.call_id);
        let (speech, session) = match args.live {
            Some(live) => {
                // The agent session first: the media loop talks to the agent
                // and the speech providers through it. (Realtime calls talk
                // to their speech-to-speech session directly; theirs has no
                // provider clients.)
                let spec = AgentSessionSpec {
                    session_id: AgentSessionId::new(),
                    tenant_id: args.spec.tenant_id,
                    agent_id: live.agent.id,
                    subject: AgentSubject::Call(args.spec.call_id),
                };
                let providers = live
                    .providers
                    .realtime
                    .is_none()
                    .then(|| SessionProviders::of_call(&live.providers));
                // The media state first (a bad endpointing config fails
                // here, before anything is spawned), then the session.
                let prepared = if live.providers.realtime.is_some() {
                    None
                } else {
                    match Prepared::new(&live.agent) {
                        Ok(prepared) => Some(prepared),
                        Err(reason) => {
                            let _guard = span.enter();
                            tracing::error!(%reason, "the call's media loop could not start");
                            return Err(reason.into());
                        }
                    }
                };
                let session = agent_session::spawn_for_call(
                    spec,
                    providers,
                    args.session_mailbox,
                    &args.registry,
                    myself.get_cell(),
                )
                .instrument(span.clone())
                .await
                .map_err(|err| {
                    let _guard = span.enter();
                    tracing::error!(error = %err, "the call's agent session could not start");
                    err
                })?;
                let _guard = span.enter();
                let started = MediaLoop::start(
                    args.spec.call_id,
                    args.spec.tenant_id,
                    live,
                    Arc::clone(&args.recorder),
                    myself,
                    session.clone(),
                    prepared,
                );
                match started {
                    Ok(speech) => (Some(speech), Some(session)),
                    Err(reason) => {
                        tracing::error!(%reason, "the call's media loop could not start");
                        let _ = session.end(EndReason::ActorFailed);
                        return Err(reason.into());
                    }
                }
            }
            None => (None, None),
        };
        Ok(CallState {
            speech,
            session,
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
        if !matches!(msg, CallMsg::Internal(_)) {
            state.mailbox.release();
        }
        let span = state.span.clone();
        async {
            let step = match msg {
                CallMsg::GetInfo(reply) => {
                    // The asker may have given up; nothing to do then.
                    let _ = reply.send(state.info());
                    Step::Continue
                }
                CallMsg::SetStatus(status, reply) => {
                    let before = state.status;
                    let result = set_status(state, status).await;
                    if let Some(speech) = &state.speech
                        && state.status != before
                    {
                        speech.status_changed(state.status);
                    }
                    let _ = reply.send(result);
                    Step::Continue
                }
                CallMsg::Hangup(reason) => Step::End(reason),
                CallMsg::End(status, reason) => {
                    state.begin_end(&myself, status, reason);
                    Step::Continue
                }
                CallMsg::StreamStopped => Step::End(EndReason::CallerHangup),
                CallMsg::StreamClosed => {
                    tracing::info!("media socket closed without a stop");
                    Step::End(EndReason::CallerHangup)
                }
                _ if state.ending.is_some() => Step::Continue,
                CallMsg::Audio(frame) => match &mut state.speech {
                    Some(speech) => speech.on_audio(frame.bytes(), frame.timestamp_ms),
                    None => Step::Continue,
                },
                CallMsg::Mark(name) => match &mut state.speech {
                    Some(speech) => speech.on_mark(&name),
                    None => Step::Continue,
                },
                CallMsg::Dtmf(digits) => match &mut state.speech {
                    Some(speech) => speech.on_dtmf(digits),
                    None => Step::Continue,
                },
                CallMsg::Internal(Internal(event)) => match &mut state.speech {
                    Some(speech) => speech.on_event(event),
                    None => Step::Continue,
                },
            };
            if let Step::End(reason) = step {
                let status = final_status(state.status, reason);
                state.begin_end(&myself, status, reason);
            }
        }
        .instrument(span)
        .await;
        Ok(())
    }

    /// The call supervises its agent session. The session keeps the
    /// conversation and restarts its own provider clients; if the session
    /// itself fails (or is ended from outside), the call cannot go on and
    /// ends, recording why.
    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<CallMsg>,
        event: SupervisionEvent,
        state: &mut CallState,
    ) -> Result<(), ActorProcessingErr> {
        let span = state.span.clone();
        let _guard = span.enter();
        let ours = |id| state.session.as_ref().is_some_and(|s| s.actor_id() == id);
        match event {
            SupervisionEvent::ActorFailed(cell, err) if ours(cell.get_id()) => {
                tracing::error!(error = %err, "the call's agent session failed");
                let status = final_status(state.status, EndReason::ActorFailed);
                state.begin_end(&myself, status, EndReason::ActorFailed);
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) if ours(cell.get_id()) && state.ending.is_none() => {
                tracing::warn!(reason = ?reason, "the call's agent session ended before the call");
                let status = final_status(state.status, EndReason::AgentHangup);
                state.begin_end(&myself, status, EndReason::AgentHangup);
            }
            _ => {}
        }
        Ok(())
    }

    async fn post_stop(&self, myself: ActorRef<CallMsg>, state: &mut CallState) -> Result<(), ActorProcessingErr> {
        let span = state.span.clone();
        async {
            // Stopped without a hang-up: the tree is being torn down.
            let (status, reason) = state
                .ending
                .unwrap_or_else(|| (final_status(state.status, EndReason::Shutdown), EndReason::Shutdown));
            // Settle the media loop first: the transcript and recording are
            // stored before the call row says the call ended.
            let events = match state.speech.take() {
                Some(speech) => Some(speech.finish(reason, state.recorder.as_ref()).await),
                None => None,
            };
            // Persist before unregistering: once the call is gone from the
            // registry, readers of the store must see it ended.
            if let Err(err) = state.recorder.finish(state.spec.call_id, status, reason).await {
                tracing::error!(error = %err, %status, %reason, "could not persist the call's end");
            }
            state
                .registry
                .calls()
                .remove_if_actor(&state.spec.call_id, myself.get_id());
            // The call's own session is linked to this actor, which kills it
            // on exit: end it first so it stops (and unregisters) cleanly.
            if let Some(session) = state.session.take() {
                let _ = session.end(reason);
                if tokio::time::timeout(SESSION_STOP, session.stopped()).await.is_err() {
                    tracing::warn!("agent session did not stop in time");
                }
                state
                    .registry
                    .agent_sessions()
                    .remove_if_actor(&session.session_id(), session.actor_id());
            }
            end_sessions_of(&state.registry, AgentSubject::Call(state.spec.call_id), reason);
            if let Some(events) = events {
                let event = CallEvent::new(
                    state.spec.call_id,
                    state.spec.tenant_id,
                    CallEventKind::CallEnded { status, reason },
                );
                if let Err(err) = events.publish(&event).await {
                    tracing::warn!(error = %err, "call_ended not published");
                }
            }
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
