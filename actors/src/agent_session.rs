//! `AgentSessionActor`: one per live AI agent session, attached to a call or a
//! conversation, and its typed [`AgentSessionHandle`].
//!
//! The session owns its lifecycle and turn count; the LLM loop will live here.
//! It ends when asked, or when its subject (call or conversation) stops: the
//! subject's actor ends its sessions from `post_stop`, and the supervisors do
//! the same when a subject fails. On stop the session removes itself from the
//! [`Registry`].

use crate::mailbox::{self, Mailbox};
use crate::registry::LiveHandle;
use crate::{ActorsError, Registry};
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort};
use switchboard_domain::{AgentId, AgentSessionId, CallId, ConversationId, EndReason, TenantId, Timestamp};
use tracing::Instrument;

/// What an agent session serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AgentSubject {
    Call(CallId),
    Conversation(ConversationId),
}

/// What a new agent session needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSessionSpec {
    pub session_id: AgentSessionId,
    pub tenant_id: TenantId,
    pub agent_id: AgentId,
    pub subject: AgentSubject,
}

/// A snapshot of a live agent session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSessionInfo {
    pub session_id: AgentSessionId,
    pub tenant_id: TenantId,
    pub agent_id: AgentId,
    pub subject: AgentSubject,
    pub started_at: Timestamp,
    /// Completed agent turns (one per answer the agent produced).
    pub turns: u64,
}

/// The agent session's protocol.
#[derive(Debug)]
pub enum AgentSessionMsg {
    /// The agent finished a turn; replies with the turn count so far.
    TurnCompleted(RpcReplyPort<u64>),
    /// Ask for a snapshot.
    GetInfo(RpcReplyPort<AgentSessionInfo>),
    /// End the session.
    End(EndReason),
}

/// Typed front of an agent session actor. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AgentSessionHandle {
    actor: ActorRef<AgentSessionMsg>,
    mailbox: Mailbox,
    session_id: AgentSessionId,
    tenant_id: TenantId,
    subject: AgentSubject,
}

impl AgentSessionHandle {
    pub fn session_id(&self) -> AgentSessionId {
        self.session_id
    }

    pub fn tenant_id(&self) -> TenantId {
        self.tenant_id
    }

    pub fn subject(&self) -> AgentSubject {
        self.subject
    }

    /// Messages sent but not yet taken up by the actor.
    pub fn mailbox_len(&self) -> usize {
        self.mailbox.in_flight()
    }

    /// The mailbox bound beyond which requests fail with [`ActorsError::Full`].
    pub fn mailbox_bound(&self) -> usize {
        self.mailbox.bound()
    }

    pub async fn info(&self) -> Result<AgentSessionInfo, ActorsError> {
        mailbox::ask(&self.actor, &self.mailbox, AgentSessionMsg::GetInfo, false).await
    }

    /// Counts a completed agent turn; returns the total.
    pub async fn turn_completed(&self) -> Result<u64, ActorsError> {
        mailbox::ask(&self.actor, &self.mailbox, AgentSessionMsg::TurnCompleted, false).await
    }

    /// Ends the session (never refused for a full mailbox).
    pub fn end(&self, reason: EndReason) -> Result<(), ActorsError> {
        mailbox::send(&self.actor, &self.mailbox, AgentSessionMsg::End(reason), true)
    }

    /// Resolves when the actor has stopped.
    pub async fn stopped(&self) {
        let _ = self.actor.get_cell().wait(None).await;
    }
}

impl LiveHandle for AgentSessionHandle {
    fn tenant_id(&self) -> TenantId {
        self.tenant_id
    }

    fn actor_id(&self) -> ActorId {
        self.actor.get_id()
    }
}

/// Ends every live session attached to `subject`.
pub(crate) fn end_sessions_of(registry: &Registry, subject: AgentSubject, reason: EndReason) {
    for session in registry.agent_sessions().filter(|h| h.subject == subject) {
        // Gone means it is already stopping, which is what we want.
        let _ = session.end(reason);
    }
}

pub(crate) fn make_handle(
    actor: ActorRef<AgentSessionMsg>,
    mailbox: Mailbox,
    spec: &AgentSessionSpec,
) -> AgentSessionHandle {
    AgentSessionHandle {
        actor,
        mailbox,
        session_id: spec.session_id,
        tenant_id: spec.tenant_id,
        subject: spec.subject,
    }
}

/// The agent session actor.
pub struct AgentSessionActor;

/// Start-up arguments of an [`AgentSessionActor`].
pub struct AgentSessionArgs {
    pub(crate) spec: AgentSessionSpec,
    pub(crate) mailbox: Mailbox,
    pub(crate) registry: Registry,
}

/// The agent session's own state.
pub struct AgentSessionState {
    spec: AgentSessionSpec,
    started_at: Timestamp,
    turns: u64,
    ended: Option<EndReason>,
    mailbox: Mailbox,
    registry: Registry,
    span: tracing::Span,
}

fn subject_span(spec: &AgentSessionSpec) -> tracing::Span {
    match spec.subject {
        AgentSubject::Call(call_id) => tracing::info_span!(
            "agent_session", tenant_id = %spec.tenant_id, session_id = %spec.session_id, call_id = %call_id
        ),
        AgentSubject::Conversation(conversation_id) => tracing::info_span!(
            "agent_session", tenant_id = %spec.tenant_id, session_id = %spec.session_id,
            conversation_id = %conversation_id
        ),
    }
}

impl Actor for AgentSessionActor {
    type Msg = AgentSessionMsg;
    type State = AgentSessionState;
    type Arguments = AgentSessionArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<AgentSessionMsg>,
        args: AgentSessionArgs,
    ) -> Result<AgentSessionState, ActorProcessingErr> {
        Ok(AgentSessionState {
            span: subject_span(&args.spec),
            spec: args.spec,
            started_at: switchboard_domain::now(),
            turns: 0,
            ended: None,
            mailbox: args.mailbox,
            registry: args.registry,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<AgentSessionMsg>,
        msg: AgentSessionMsg,
        state: &mut AgentSessionState,
    ) -> Result<(), ActorProcessingErr> {
        state.mailbox.release();
        let _enter = state.span.enter();
        match msg {
            AgentSessionMsg::TurnCompleted(reply) => {
                state.turns += 1;
                let _ = reply.send(state.turns);
            }
            AgentSessionMsg::GetInfo(reply) => {
                let _ = reply.send(AgentSessionInfo {
                    session_id: state.spec.session_id,
                    tenant_id: state.spec.tenant_id,
                    agent_id: state.spec.agent_id,
                    subject: state.spec.subject,
                    started_at: state.started_at,
                    turns: state.turns,
                });
            }
            AgentSessionMsg::End(reason) => {
                if state.ended.is_none() {
                    state.ended = Some(reason);
                    myself.stop(Some(reason.to_string()));
                }
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        myself: ActorRef<AgentSessionMsg>,
        state: &mut AgentSessionState,
    ) -> Result<(), ActorProcessingErr> {
        let span = state.span.clone();
        async {
            state
                .registry
                .agent_sessions()
                .remove_if_actor(&state.spec.session_id, myself.get_id());
            let reason = state.ended.unwrap_or(EndReason::Shutdown);
            tracing::info!(%reason, turns = state.turns, "agent session ended");
        }
        .instrument(span)
        .await;
        Ok(())
    }
}
