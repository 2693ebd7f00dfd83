//! `AgentSessionActor`: one per live AI agent session, attached to a call or a
//! conversation, and its typed [`AgentSessionHandle`].
//!
//! ```text
//! CallActor ──(linked)──► AgentSessionActor ──(linked)──► ProviderClient ×3 (stt, agent, tts)
//!                          owns: history, tools + contact facts, fallbacks
//! ```
//!
//! The session owns the conversation context: the history (caller lines,
//! the agent's lines cut to what the caller heard, tool calls and results),
//! the call's tools and the contact's known facts. Each agent turn is built
//! here from that context and handed to the agent client; the session keeps
//! it whatever happens to the clients.
//!
//! The session supervises one [`ProviderClient`] per capability. A client
//! that crashes (a panic in an adapter) fails only its request, which the
//! call's fault policy retries; the session starts a fresh client with the
//! same adapter (at most [`MAX_CLIENT_RESTARTS`] times per capability) and
//! switches a capability to its secondary adapter when the call asks.
//!
//! A call's session is spawned by the call actor and linked to it; sessions
//! of conversations come from the agent-sessions supervisor. Either way it
//! ends when asked or when its subject stops, and removes itself from the
//! [`Registry`] on stop.

use std::sync::Arc;

use crate::clients::{Adapter, Capability, ClientMsg, ClientOut, ProviderClient, SttAudio};
use crate::mailbox::{self, Mailbox};
use crate::registry::LiveHandle;
use crate::{ActorsError, Registry};
use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use switchboard_domain::{AgentId, AgentSessionId, CallId, ConversationId, EndReason, TenantId, Timestamp};
use switchboard_providers::capability::Speaker as HistorySpeaker;
use switchboard_providers::{
    AgentOutput, AgentTurn, BackupProviders, CallProviders, HistoryEntry, PcmChunk, StreamConfig, SttEvent,
    TurnContext, TurnInput,
};
use tokio::sync::mpsc;
use tracing::Instrument;

/// Restarts of one capability's client a session allows; past it, requests
/// for that capability fail at once (and the call's fault policy gives up).
pub const MAX_CLIENT_RESTARTS: u32 = 5;
/// Caller inputs remembered for retries (turn id → position in the history).
const INPUT_MEMORY: usize = 8;

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
    /// Entries in the conversation context.
    pub context_len: usize,
    /// Provider clients restarted after a crash, over the session's life.
    pub client_restarts: u32,
    /// Capabilities switched to their secondary adapter.
    pub on_backup: Vec<Capability>,
}

/// The providers a session drives through its clients.
#[derive(Clone)]
pub struct SessionProviders {
    pub stt: Arc<dyn switchboard_providers::SpeechToText>,
    pub tts: Arc<dyn switchboard_providers::TextToSpeech>,
    pub agent: Arc<dyn switchboard_providers::ConversationAgent>,
    pub backup: BackupProviders,
    /// Tools and contact facts handed to the agent each turn.
    pub context: TurnContext,
}

impl SessionProviders {
    /// The session's share of a call's providers.
    pub fn of_call(p: &CallProviders) -> Self {
        Self {
            stt: Arc::clone(&p.stt),
            tts: Arc::clone(&p.tts),
            agent: Arc::clone(&p.agent),
            backup: p.backup.clone(),
            context: p.context.clone(),
        }
    }
}

/// The agent session's protocol.
#[derive(Debug)]
pub enum AgentSessionMsg {
    /// The agent finished a turn; replies with the turn count so far.
    TurnCompleted(RpcReplyPort<u64>),
    /// Ask for a snapshot.
    GetInfo(RpcReplyPort<AgentSessionInfo>),
    /// Ask for the conversation context as the next turn would see it.
    Context(RpcReplyPort<Vec<HistoryEntry>>),
    /// End the session.
    End(EndReason),
    /// Requests of the session's call; opaque outside the crate.
    Internal(SessionRequest),
}

/// A request of the session's own call.
#[derive(Debug)]
pub struct SessionRequest(pub(crate) Request);

#[derive(Debug)]
pub(crate) enum Request {
    /// Hand a request to the capability's client.
    Client(ClientMsg),
    /// Answer `input`. A fresh answer snapshots the context and then adds the
    /// caller's line to it; a retry of turn `retry_of` answers with the
    /// context minus that turn's caller line (it is the input).
    Respond {
        turn: u32,
        input: TurnInput,
        caller_line: Option<String>,
        retry_of: Option<u32>,
        out: mpsc::Sender<ClientOut<AgentOutput>>,
    },
    /// Add a line to the context (what the agent was heard saying, a tool call).
    Record(HistoryEntry),
    /// Switch a capability to its secondary adapter, if it has one.
    UseBackup(Capability),
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

    /// The conversation context as the next agent turn would see it.
    pub async fn context(&self) -> Result<Vec<HistoryEntry>, ActorsError> {
        mailbox::ask(&self.actor, &self.mailbox, AgentSessionMsg::Context, false).await
    }

    fn request(&self, request: Request, control: bool) -> Result<(), ActorsError> {
        mailbox::send(
            &self.actor,
            &self.mailbox,
            AgentSessionMsg::Internal(SessionRequest(request)),
            control,
        )
    }

    /// Transcribes one utterance: `audio` until it closes, results into `out`.
    pub(crate) fn transcribe(
        &self,
        config: StreamConfig,
        audio: mpsc::Receiver<SttAudio>,
        out: mpsc::Sender<ClientOut<SttEvent>>,
    ) -> Result<(), ActorsError> {
        self.request(Request::Client(ClientMsg::Transcribe { config, audio, out }), false)
    }

    /// Synthesizes one sentence into `out`.
    pub(crate) fn synthesize(
        &self,
        text: String,
        voice: String,
        out: mpsc::Sender<ClientOut<PcmChunk>>,
    ) -> Result<(), ActorsError> {
        self.request(Request::Client(ClientMsg::Synthesize { text, voice, out }), false)
    }

    /// Answers `input` (see [`Request::Respond`]).
    pub(crate) fn respond(
        &self,
        turn: u32,
        input: TurnInput,
        caller_line: Option<String>,
        retry_of: Option<u32>,
        out: mpsc::Sender<ClientOut<AgentOutput>>,
    ) -> Result<(), ActorsError> {
        self.request(
            Request::Respond {
                turn,
                input,
                caller_line,
                retry_of,
                out,
            },
            false,
        )
    }

    /// Adds a line to the context (never refused for a full mailbox: the
    /// context must not lose lines).
    pub(crate) fn record(&self, speaker: HistorySpeaker, text: String) {
        if self
            .request(Request::Record(HistoryEntry { speaker, text }), true)
            .is_err()
        {
            tracing::debug!("agent session gone; context line dropped");
        }
    }

    /// Switches `capability` to its secondary adapter, if it has one.
    pub(crate) fn use_backup(&self, capability: Capability) {
        let _ = self.request(Request::UseBackup(capability), true);
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

/// Spawns the agent session of a call, linked to the call actor (`parent`),
/// and registers it.
pub(crate) async fn spawn_for_call(
    spec: AgentSessionSpec,
    providers: Option<SessionProviders>,
    mailbox_bound: usize,
    registry: &Registry,
    parent: ActorCell,
) -> Result<AgentSessionHandle, ActorsError> {
    let mailbox = Mailbox::new(mailbox_bound);
    let args = AgentSessionArgs {
        spec: spec.clone(),
        mailbox: mailbox.clone(),
        registry: registry.clone(),
        providers,
    };
    let (actor, _) = Actor::spawn_linked(None, AgentSessionActor, args, parent)
        .await
        .map_err(|e| ActorsError::Spawn {
            kind: "agent_session",
            reason: e.to_string(),
        })?;
    let handle = make_handle(actor, mailbox, &spec);
    registry.agent_sessions().insert_new(spec.session_id, handle.clone());
    Ok(handle)
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
    /// `None` for a session without provider clients (conversations for now).
    pub(crate) providers: Option<SessionProviders>,
}

/// One capability's client and the adapters it may run.
struct ClientSlot {
    adapter: Adapter,
    backup: Option<Adapter>,
    on_backup: bool,
    actor: Option<ActorRef<ClientMsg>>,
    restarts: u32,
}

/// The conversation context.
struct Context {
    history: Vec<HistoryEntry>,
    turn: TurnContext,
    /// Recent caller inputs: (turn id, index of the caller's line in `history`).
    inputs: std::collections::VecDeque<(u32, usize)>,
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
    context: Context,
    clients: Vec<ClientSlot>,
    client_restarts: u32,
    /// This actor, for unregistering.
    actor_id: ActorId,
}

impl Drop for AgentSessionState {
    /// A session killed with its call (a failed call actor takes its linked
    /// children down without their `post_stop`) still leaves the registry.
    fn drop(&mut self) {
        self.registry
            .agent_sessions()
            .remove_if_actor(&self.spec.session_id, self.actor_id);
    }
}

impl AgentSessionState {
    fn slot(&mut self, capability: Capability) -> Option<&mut ClientSlot> {
        self.clients.iter_mut().find(|s| s.adapter.capability() == capability)
    }

    fn info(&self) -> AgentSessionInfo {
        AgentSessionInfo {
            session_id: self.spec.session_id,
            tenant_id: self.spec.tenant_id,
            agent_id: self.spec.agent_id,
            subject: self.spec.subject,
            started_at: self.started_at,
            turns: self.turns,
            context_len: self.context.history.len(),
            client_restarts: self.client_restarts,
            on_backup: self
                .clients
                .iter()
                .filter(|s| s.on_backup)
                .map(|s| s.adapter.capability())
                .collect(),
        }
    }

    /// Hands `msg` to the client of `capability`, or fails it at once when
    /// there is none (no providers, or restarted too often).
    fn forward(&mut self, capability: Capability, msg: ClientMsg) {
        let Some(slot) = self.slot(capability) else {
            msg.refuse("this agent session has no provider clients");
            return;
        };
        match &slot.actor {
            Some(actor) => {
                if let Err(ractor::MessagingErr::SendErr(msg)) = actor.send_message(msg) {
                    // Crashed, and the supervision event is still on its way.
                    msg.refuse(&format!("the {} client is restarting", capability.as_str()));
                }
            }
            None => msg.refuse(&format!(
                "the {} client crashed too often and was not restarted",
                capability.as_str()
            )),
        }
    }

    fn respond(
        &mut self,
        turn: u32,
        input: TurnInput,
        caller_line: Option<String>,
        retry_of: Option<u32>,
        out: mpsc::Sender<ClientOut<AgentOutput>>,
    ) {
        let ctx = &mut self.context;
        let history = match retry_of {
            None => {
                let snapshot = ctx.history.clone();
                if let Some(line) = caller_line {
                    if ctx.inputs.len() == INPUT_MEMORY {
                        ctx.inputs.pop_front();
                    }
                    ctx.inputs.push_back((turn, ctx.history.len()));
                    ctx.history.push(HistoryEntry {
                        speaker: HistorySpeaker::Caller,
                        text: line,
                    });
                }
                snapshot
            }
            Some(original) => {
                let mut history = ctx.history.clone();
                let at = ctx.inputs.iter().find(|(t, _)| *t == original).map(|(_, at)| *at);
                if let Some(at) = at
                    && history.get(at).is_some_and(|e| e.speaker == HistorySpeaker::Caller)
                {
                    history.remove(at);
                }
                history
            }
        };
        let agent_turn = AgentTurn {
            input,
            history,
            context: ctx.turn.clone(),
        };
        self.forward(
            Capability::Agent,
            ClientMsg::Respond {
                turn: Box::new(agent_turn),
                out,
            },
        );
    }

    async fn start_client(&mut self, myself: &ActorRef<AgentSessionMsg>, capability: Capability) {
        let parent = myself.get_cell();
        let Some(slot) = self.slot(capability) else {
            return;
        };
        let adapter = slot.adapter.clone();
        match Actor::spawn_linked(None, ProviderClient, adapter, parent).await {
            Ok((actor, _)) => {
                if let Some(slot) = self.slot(capability) {
                    slot.actor = Some(actor);
                }
            }
            Err(err) => {
                tracing::error!(client = capability.as_str(), error = %err, "provider client did not start");
                if let Some(slot) = self.slot(capability) {
                    slot.actor = None;
                }
            }
        }
    }

    /// A client stopped on its own: restart it unless it did so too often.
    async fn client_down(&mut self, myself: &ActorRef<AgentSessionMsg>, who: ActorId, why: &str) {
        let Some(capability) = self
            .clients
            .iter()
            .find(|s| s.actor.as_ref().is_some_and(|a| a.get_id() == who))
            .map(|s| s.adapter.capability())
        else {
            // A client replaced on purpose (a switch to the backup).
            return;
        };
        if self.ended.is_some() {
            return;
        }
        let Some(slot) = self.slot(capability) else {
            return;
        };
        slot.actor = None;
        slot.restarts += 1;
        let restarts = slot.restarts;
        if restarts > MAX_CLIENT_RESTARTS {
            tracing::error!(client = capability.as_str(), restarts, error = %why, "provider client keeps crashing; not restarted");
            return;
        }
        self.client_restarts += 1;
        crate::metrics::media()
            .client_restarts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(client = capability.as_str(), restarts, error = %why, "provider client crashed; restarting it");
        self.start_client(myself, capability).await;
    }

    async fn use_backup(&mut self, myself: &ActorRef<AgentSessionMsg>, capability: Capability) {
        let Some(slot) = self.slot(capability) else {
            return;
        };
        let Some(backup) = slot.backup.take() else {
            return;
        };
        tracing::warn!(client = capability.as_str(), "switching to the secondary provider");
        slot.adapter = backup;
        slot.on_backup = true;
        if let Some(old) = slot.actor.take() {
            old.stop(Some("switched to the secondary provider".into()));
        }
        self.start_client(myself, capability).await;
    }
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
        myself: ActorRef<AgentSessionMsg>,
        args: AgentSessionArgs,
    ) -> Result<AgentSessionState, ActorProcessingErr> {
        let (clients, turn_context) = match args.providers {
            Some(p) => {
                let slot = |adapter, backup| ClientSlot {
                    adapter,
                    backup,
                    on_backup: false,
                    actor: None,
                    restarts: 0,
                };
                let b = p.backup;
                let clients = vec![
                    slot(Adapter::Stt(p.stt), b.stt.map(Adapter::Stt)),
                    slot(Adapter::Agent(p.agent), b.agent.map(Adapter::Agent)),
                    slot(Adapter::Tts(p.tts), b.tts.map(Adapter::Tts)),
                ];
                (clients, p.context)
            }
            None => (Vec::new(), TurnContext::default()),
        };
        let state = AgentSessionState {
            span: subject_span(&args.spec),
            spec: args.spec,
            started_at: switchboard_domain::now(),
            turns: 0,
            ended: None,
            mailbox: args.mailbox,
            registry: args.registry,
            context: Context {
                history: Vec::new(),
                turn: turn_context,
                inputs: std::collections::VecDeque::with_capacity(INPUT_MEMORY),
            },
            clients,
            client_restarts: 0,
            actor_id: myself.get_id(),
        };
        Ok(state)
    }

    /// The clients start after the session is up, off the spawning call's
    /// path; requests that arrive meanwhile wait in the mailbox.
    async fn post_start(
        &self,
        myself: ActorRef<AgentSessionMsg>,
        state: &mut AgentSessionState,
    ) -> Result<(), ActorProcessingErr> {
        for capability in Capability::ALL {
            state.start_client(&myself, capability).await;
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<AgentSessionMsg>,
        msg: AgentSessionMsg,
        state: &mut AgentSessionState,
    ) -> Result<(), ActorProcessingErr> {
        state.mailbox.release();
        let span = state.span.clone();
        self.handle_msg(myself, msg, state).instrument(span).await;
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<AgentSessionMsg>,
        event: SupervisionEvent,
        state: &mut AgentSessionState,
    ) -> Result<(), ActorProcessingErr> {
        let span = state.span.clone();
        async {
            match event {
                SupervisionEvent::ActorFailed(cell, err) => {
                    state.client_down(&myself, cell.get_id(), &err.to_string()).await;
                }
                SupervisionEvent::ActorTerminated(cell, _, reason) => {
                    let why = reason.unwrap_or_else(|| "stopped".to_owned());
                    state.client_down(&myself, cell.get_id(), &why).await;
                }
                SupervisionEvent::ActorStarted(_) | SupervisionEvent::ProcessGroupChanged(_) => {}
            }
        }
        .instrument(span)
        .await;
        Ok(())
    }

    async fn post_stop(
        &self,
        myself: ActorRef<AgentSessionMsg>,
        state: &mut AgentSessionState,
    ) -> Result<(), ActorProcessingErr> {
        let span = state.span.clone();
        // Clients go with their session (their requests were abandoned by now).
        state.ended.get_or_insert(EndReason::Shutdown);
        myself.stop_children(None);
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

impl AgentSessionActor {
    async fn handle_msg(&self, myself: ActorRef<AgentSessionMsg>, msg: AgentSessionMsg, state: &mut AgentSessionState) {
        match msg {
            AgentSessionMsg::TurnCompleted(reply) => {
                state.turns += 1;
                let _ = reply.send(state.turns);
            }
            AgentSessionMsg::GetInfo(reply) => {
                let _ = reply.send(state.info());
            }
            AgentSessionMsg::Context(reply) => {
                let _ = reply.send(state.context.history.clone());
            }
            AgentSessionMsg::End(reason) => {
                if state.ended.is_none() {
                    state.ended = Some(reason);
                    myself.stop(Some(reason.to_string()));
                }
            }
            AgentSessionMsg::Internal(SessionRequest(request)) => match request {
                Request::Client(msg) => {
                    let capability = match &msg {
                        ClientMsg::Transcribe { .. } => Capability::Stt,
                        ClientMsg::Respond { .. } => Capability::Agent,
                        ClientMsg::Synthesize { .. } => Capability::Tts,
                    };
                    state.forward(capability, msg);
                }
                Request::Respond {
                    turn,
                    input,
                    caller_line,
                    retry_of,
                    out,
                } => state.respond(turn, input, caller_line, retry_of, out),
                Request::Record(entry) => {
                    if entry.speaker == HistorySpeaker::Agent {
                        state.turns += 1;
                    }
                    state.context.history.push(entry);
                }
                Request::UseBackup(capability) => state.use_backup(&myself, capability).await,
            },
        }
    }
}
