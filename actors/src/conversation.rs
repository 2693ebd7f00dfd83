//! `ConversationActor`: one per live WhatsApp (or other messaging)
//! conversation, and its typed [`ConversationHandle`].
//!
//! The actor tracks the conversation's activity and closes itself after a
//! configured idle period, so conversations that go quiet do not hold memory
//! forever; the next inbound message simply spawns a new actor. On stop it
//! removes itself from the [`Registry`] and ends its agent sessions. The idle
//! timer is a task owned by the actor and aborted in `post_stop`.

use crate::agent_session::{AgentSubject, end_sessions_of};
use crate::mailbox::{self, Mailbox};
use crate::registry::LiveHandle;
use crate::{ActorsError, Registry};
use ractor::concurrency::JoinHandle;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, MessagingErr, RpcReplyPort};
use std::time::Duration;
use switchboard_domain::{AgentId, Channel, ConversationId, EndReason, MessageId, TenantId, Timestamp};

/// What a new conversation actor needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationSpec {
    pub conversation_id: ConversationId,
    pub tenant_id: TenantId,
    pub channel: Channel,
    pub agent_id: Option<AgentId>,
}

/// A snapshot of a live conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationInfo {
    pub conversation_id: ConversationId,
    pub tenant_id: TenantId,
    pub channel: Channel,
    pub agent_id: Option<AgentId>,
    pub started_at: Timestamp,
    pub inbound: u64,
    pub outbound: u64,
    pub last_message_id: Option<MessageId>,
}

/// The conversation actor's protocol.
#[derive(Debug)]
pub enum ConversationMsg {
    /// A message from the contact was stored; resets the idle timer.
    Inbound(MessageId),
    /// A message to the contact was stored; resets the idle timer.
    Outbound(MessageId),
    /// Ask for a snapshot.
    GetInfo(RpcReplyPort<ConversationInfo>),
    /// Close the conversation's actor.
    Close(EndReason),
    /// Internal: the idle timer of activity generation `.0` fired.
    IdleCheck(u64),
}

/// Typed front of a conversation actor. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ConversationHandle {
    actor: ActorRef<ConversationMsg>,
    mailbox: Mailbox,
    conversation_id: ConversationId,
    tenant_id: TenantId,
}

impl ConversationHandle {
    pub fn conversation_id(&self) -> ConversationId {
        self.conversation_id
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

    /// Reports an inbound message (bounded: may fail with `Full`).
    pub fn inbound(&self, message_id: MessageId) -> Result<(), ActorsError> {
        mailbox::send(&self.actor, &self.mailbox, ConversationMsg::Inbound(message_id), false)
    }

    /// Reports an outbound message (bounded: may fail with `Full`).
    pub fn outbound(&self, message_id: MessageId) -> Result<(), ActorsError> {
        mailbox::send(&self.actor, &self.mailbox, ConversationMsg::Outbound(message_id), false)
    }

    pub async fn info(&self) -> Result<ConversationInfo, ActorsError> {
        mailbox::ask(&self.actor, &self.mailbox, ConversationMsg::GetInfo, false).await
    }

    /// Closes the conversation's actor (never refused for a full mailbox).
    pub fn close(&self, reason: EndReason) -> Result<(), ActorsError> {
        mailbox::send(&self.actor, &self.mailbox, ConversationMsg::Close(reason), true)
    }

    /// Resolves when the actor has stopped.
    pub async fn stopped(&self) {
        let _ = self.actor.get_cell().wait(None).await;
    }
}

impl LiveHandle for ConversationHandle {
    fn tenant_id(&self) -> TenantId {
        self.tenant_id
    }

    fn actor_id(&self) -> ActorId {
        self.actor.get_id()
    }
}

pub(crate) fn make_handle(
    actor: ActorRef<ConversationMsg>,
    mailbox: Mailbox,
    spec: &ConversationSpec,
) -> ConversationHandle {
    ConversationHandle {
        actor,
        mailbox,
        conversation_id: spec.conversation_id,
        tenant_id: spec.tenant_id,
    }
}

/// The conversation actor.
pub struct ConversationActor;

/// Start-up arguments of a [`ConversationActor`].
pub struct ConversationArgs {
    pub(crate) spec: ConversationSpec,
    pub(crate) mailbox: Mailbox,
    pub(crate) registry: Registry,
    pub(crate) idle_timeout: Duration,
}

/// The conversation actor's own state.
pub struct ConversationState {
    spec: ConversationSpec,
    started_at: Timestamp,
    inbound: u64,
    outbound: u64,
    last_message_id: Option<MessageId>,
    closed: Option<EndReason>,
    // Bumped on every activity so a timer armed before it is recognised as stale.
    generation: u64,
    idle_timeout: Duration,
    idle_timer: Option<JoinHandle<Result<(), MessagingErr<ConversationMsg>>>>,
    mailbox: Mailbox,
    registry: Registry,
    span: tracing::Span,
}

impl ConversationState {
    fn arm_idle_timer(&mut self, myself: &ActorRef<ConversationMsg>) {
        self.generation += 1;
        let generation = self.generation;
        if let Some(old) = self.idle_timer.take() {
            old.abort();
        }
        self.idle_timer = Some(myself.send_after(self.idle_timeout, move || ConversationMsg::IdleCheck(generation)));
    }

    fn close(&mut self, myself: &ActorRef<ConversationMsg>, reason: EndReason) {
        if self.closed.is_none() {
            self.closed = Some(reason);
            myself.stop(Some(reason.to_string()));
        }
    }
}

impl Actor for ConversationActor {
    type Msg = ConversationMsg;
    type State = ConversationState;
    type Arguments = ConversationArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<ConversationMsg>,
        args: ConversationArgs,
    ) -> Result<ConversationState, ActorProcessingErr> {
        let span = tracing::info_span!(
            "conversation", tenant_id = %args.spec.tenant_id, conversation_id = %args.spec.conversation_id
        );
        Ok(ConversationState {
            spec: args.spec,
            started_at: switchboard_domain::now(),
            inbound: 0,
            outbound: 0,
            last_message_id: None,
            closed: None,
            generation: 0,
            idle_timeout: args.idle_timeout,
            idle_timer: None,
            mailbox: args.mailbox,
            registry: args.registry,
            span,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<ConversationMsg>,
        state: &mut ConversationState,
    ) -> Result<(), ActorProcessingErr> {
        state.arm_idle_timer(&myself);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<ConversationMsg>,
        msg: ConversationMsg,
        state: &mut ConversationState,
    ) -> Result<(), ActorProcessingErr> {
        // Timer messages were never counted against the mailbox.
        if !matches!(msg, ConversationMsg::IdleCheck(_)) {
            state.mailbox.release();
        }
        let span = state.span.clone();
        let _enter = span.enter();
        match msg {
            ConversationMsg::Inbound(id) => {
                state.inbound += 1;
                state.last_message_id = Some(id);
                state.arm_idle_timer(&myself);
            }
            ConversationMsg::Outbound(id) => {
                state.outbound += 1;
                state.last_message_id = Some(id);
                state.arm_idle_timer(&myself);
            }
            ConversationMsg::GetInfo(reply) => {
                let _ = reply.send(ConversationInfo {
                    conversation_id: state.spec.conversation_id,
                    tenant_id: state.spec.tenant_id,
                    channel: state.spec.channel,
                    agent_id: state.spec.agent_id,
                    started_at: state.started_at,
                    inbound: state.inbound,
                    outbound: state.outbound,
                    last_message_id: state.last_message_id,
                });
            }
            ConversationMsg::Close(reason) => state.close(&myself, reason),
            ConversationMsg::IdleCheck(generation) => {
                if generation == state.generation {
                    tracing::info!("conversation idle, closing its actor");
                    state.close(&myself, EndReason::SilenceTimeout);
                }
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        myself: ActorRef<ConversationMsg>,
        state: &mut ConversationState,
    ) -> Result<(), ActorProcessingErr> {
        let _enter = state.span.clone().entered();
        if let Some(timer) = state.idle_timer.take() {
            timer.abort();
        }
        let reason = state.closed.unwrap_or(EndReason::Shutdown);
        state
            .registry
            .conversations()
            .remove_if_actor(&state.spec.conversation_id, myself.get_id());
        end_sessions_of(
            &state.registry,
            AgentSubject::Conversation(state.spec.conversation_id),
            reason,
        );
        tracing::info!(%reason, "conversation actor stopped");
        Ok(())
    }
}
