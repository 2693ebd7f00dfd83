//! The per-kind supervisors: [`CallsSupervisor`], [`ConversationsSupervisor`]
//! and [`AgentSessionsSupervisor`], one generic [`Supervisor`] over a
//! [`ChildKind`].
//!
//! A supervisor is the only spawner of its kind, so its mailbox serialises
//! spawns: the duplicate check and the registry insert cannot race. Children
//! are spawned linked. Guarantees:
//! - a child that stops, panics or fails is removed from the registry, and its
//!   kind-specific cleanup runs (a failed call is finished with
//!   `EndReason::ActorFailed`); siblings and the supervisor keep running;
//! - failures are logged with the child's IDs and kept in [`SupervisorStats`];
//! - after `Close`, spawns fail with [`ActorsError::ShuttingDown`];
//! - on stop, children are stopped gracefully (their `post_stop` runs) within
//!   the configured timeout before ractor kills what is left.

use crate::agent_session::{self, AgentSessionActor, AgentSessionArgs, AgentSubject, end_sessions_of};
use crate::call::{self, CallActor, CallArgs, CallStart};
use crate::conversation::{self, ConversationActor, ConversationArgs};
use crate::mailbox::Mailbox;
use crate::registry::{LiveHandle, LiveMap};
use crate::stats::{FailureRecord, SupervisorStats};
use crate::{
    ActorsError, AgentSessionHandle, AgentSessionSpec, CallHandle, CallRecorder, ConversationHandle, ConversationSpec,
    Registry,
};
use futures::FutureExt;
use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::hash::Hash;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use switchboard_domain::{CallStatus, EndReason, TenantId};

/// A supervisor's protocol; `S` is the child spec, `H` its handle.
#[derive(Debug)]
pub enum SupervisorMsg<S, H> {
    /// Start a child and register it.
    Spawn(S, RpcReplyPort<Result<H, ActorsError>>),
    /// Stop accepting new children (shutdown began).
    Close(RpcReplyPort<()>),
    /// Ask for the counters and recent failures.
    Stats(RpcReplyPort<SupervisorStats>),
}

/// One kind of supervised child: how to spawn it and how to clean up after it.
pub trait ChildKind: Send + Sync + 'static {
    /// Used in names, logs and errors.
    const KIND: &'static str;
    type Id: Copy + Eq + Hash + Display + Send + Sync + 'static;
    type Spec: Send + 'static;
    type Handle: LiveHandle;
    /// Shared, immutable dependencies of the children.
    type Ctx: Send + Sync + 'static;

    fn id(spec: &Self::Spec) -> Self::Id;
    fn tenant_id(spec: &Self::Spec) -> TenantId;
    fn live(registry: &Registry) -> &LiveMap<Self::Id, Self::Handle>;

    /// Starts the child linked to `supervisor`.
    fn spawn(
        spec: Self::Spec,
        ctx: &Self::Ctx,
        registry: &Registry,
        supervisor: ActorCell,
    ) -> impl Future<Output = Result<Self::Handle, ActorsError>> + Send;

    /// Logs a child's failure with the ID field name of its kind.
    fn log_failure(id: Self::Id, tenant_id: TenantId, reason: &str) {
        tracing::error!(kind = Self::KIND, id = %id, %tenant_id, error = %reason, "actor failed");
    }

    /// Cleanup for a child that stopped without its own `post_stop` (failure or
    /// kill); its registry entry is already gone.
    fn cleanup(
        id: Self::Id,
        ctx: &Self::Ctx,
        registry: &Registry,
        status: CallStatus,
        reason: EndReason,
    ) -> impl Future<Output = ()> + Send;
}

/// Calls: children are [`CallActor`]s.
pub struct Calls;
/// Conversations: children are [`ConversationActor`]s.
pub struct Conversations;
/// Agent sessions: children are [`AgentSessionActor`]s.
pub struct AgentSessions;

/// Dependencies of call actors.
pub struct CallsCtx {
    pub(crate) mailbox: usize,
    /// Mailbox bound of each call's agent session.
    pub(crate) session_mailbox: usize,
    pub(crate) recorder: Arc<dyn CallRecorder>,
}

/// Dependencies of conversation actors.
pub struct ConversationsCtx {
    pub(crate) mailbox: usize,
    pub(crate) idle_timeout: Duration,
}

fn spawn_err(kind: &'static str, err: ractor::SpawnErr) -> ActorsError {
    ActorsError::Spawn {
        kind,
        reason: err.to_string(),
    }
}

impl ChildKind for Calls {
    const KIND: &'static str = "call";
    type Id = switchboard_domain::CallId;
    type Spec = CallStart;
    type Handle = CallHandle;
    type Ctx = CallsCtx;

    fn id(start: &CallStart) -> Self::Id {
        start.spec.call_id
    }
    fn tenant_id(start: &CallStart) -> TenantId {
        start.spec.tenant_id
    }
    fn live(registry: &Registry) -> &LiveMap<Self::Id, CallHandle> {
        registry.calls()
    }

    async fn spawn(
        start: CallStart,
        ctx: &CallsCtx,
        registry: &Registry,
        supervisor: ActorCell,
    ) -> Result<CallHandle, ActorsError> {
        let CallStart { spec, live } = start;
        if spec.status.is_terminal() {
            return Err(ActorsError::TerminalStatus(spec.status));
        }
        let mailbox = Mailbox::new(ctx.mailbox);
        let args = CallArgs {
            spec: spec.clone(),
            mailbox: mailbox.clone(),
            registry: registry.clone(),
            recorder: Arc::clone(&ctx.recorder),
            session_mailbox: ctx.session_mailbox,
            live,
        };
        let (actor, _) = Actor::spawn_linked(None, CallActor, args, supervisor)
            .await
            .map_err(|e| spawn_err(Self::KIND, e))?;
        Ok(call::make_handle(actor, mailbox, &spec))
    }

    fn log_failure(call_id: Self::Id, tenant_id: TenantId, reason: &str) {
        tracing::error!(%call_id, %tenant_id, error = %reason, "call actor failed");
    }

    async fn cleanup(id: Self::Id, ctx: &CallsCtx, registry: &Registry, status: CallStatus, reason: EndReason) {
        if let Err(err) = ctx.recorder.finish(id, status, reason).await {
            tracing::error!(call_id = %id, error = %err, "could not persist the end of a failed call");
        }
        end_sessions_of(registry, AgentSubject::Call(id), reason);
    }
}

impl ChildKind for Conversations {
    const KIND: &'static str = "conversation";
    type Id = switchboard_domain::ConversationId;
    type Spec = ConversationSpec;
    type Handle = ConversationHandle;
    type Ctx = ConversationsCtx;

    fn id(spec: &ConversationSpec) -> Self::Id {
        spec.conversation_id
    }
    fn tenant_id(spec: &ConversationSpec) -> TenantId {
        spec.tenant_id
    }
    fn live(registry: &Registry) -> &LiveMap<Self::Id, ConversationHandle> {
        registry.conversations()
    }

    async fn spawn(
        spec: ConversationSpec,
        ctx: &ConversationsCtx,
        registry: &Registry,
        supervisor: ActorCell,
    ) -> Result<ConversationHandle, ActorsError> {
        let mailbox = Mailbox::new(ctx.mailbox);
        let args = ConversationArgs {
            spec: spec.clone(),
            mailbox: mailbox.clone(),
            registry: registry.clone(),
            idle_timeout: ctx.idle_timeout,
        };
        let (actor, _) = Actor::spawn_linked(None, ConversationActor, args, supervisor)
            .await
            .map_err(|e| spawn_err(Self::KIND, e))?;
        Ok(conversation::make_handle(actor, mailbox, &spec))
    }

    fn log_failure(conversation_id: Self::Id, tenant_id: TenantId, reason: &str) {
        tracing::error!(%conversation_id, %tenant_id, error = %reason, "conversation actor failed");
    }

    async fn cleanup(id: Self::Id, _: &ConversationsCtx, registry: &Registry, _: CallStatus, reason: EndReason) {
        end_sessions_of(registry, AgentSubject::Conversation(id), reason);
    }
}

impl ChildKind for AgentSessions {
    const KIND: &'static str = "agent_session";
    type Id = switchboard_domain::AgentSessionId;
    type Spec = AgentSessionSpec;
    type Handle = AgentSessionHandle;
    /// The mailbox bound.
    type Ctx = usize;

    fn id(spec: &AgentSessionSpec) -> Self::Id {
        spec.session_id
    }
    fn tenant_id(spec: &AgentSessionSpec) -> TenantId {
        spec.tenant_id
    }
    fn live(registry: &Registry) -> &LiveMap<Self::Id, AgentSessionHandle> {
        registry.agent_sessions()
    }

    async fn spawn(
        spec: AgentSessionSpec,
        bound: &usize,
        registry: &Registry,
        supervisor: ActorCell,
    ) -> Result<AgentSessionHandle, ActorsError> {
        let mailbox = Mailbox::new(*bound);
        let args = AgentSessionArgs {
            spec: spec.clone(),
            mailbox: mailbox.clone(),
            registry: registry.clone(),
            providers: None,
        };
        let (actor, _) = Actor::spawn_linked(None, AgentSessionActor, args, supervisor)
            .await
            .map_err(|e| spawn_err(Self::KIND, e))?;
        Ok(agent_session::make_handle(actor, mailbox, &spec))
    }

    fn log_failure(session_id: Self::Id, tenant_id: TenantId, reason: &str) {
        tracing::error!(%session_id, %tenant_id, error = %reason, "agent session actor failed");
    }

    async fn cleanup(_: Self::Id, _: &usize, _: &Registry, _: CallStatus, _: EndReason) {
        // A session owns nothing outside itself; its registry entry is already gone.
    }
}

/// Supervises the children of one [`ChildKind`].
pub struct Supervisor<K>(PhantomData<fn() -> K>);

impl<K> Supervisor<K> {
    pub(crate) fn new() -> Self {
        Self(PhantomData)
    }
}

/// Supervises [`CallActor`]s.
pub type CallsSupervisor = Supervisor<Calls>;
/// Supervises [`ConversationActor`]s.
pub type ConversationsSupervisor = Supervisor<Conversations>;
/// Supervises [`AgentSessionActor`]s.
pub type AgentSessionsSupervisor = Supervisor<AgentSessions>;

/// Start-up arguments of a [`Supervisor`].
pub struct SupervisorArgs<K: ChildKind> {
    pub(crate) ctx: K::Ctx,
    pub(crate) registry: Registry,
    pub(crate) stop_timeout: Duration,
}

struct Child<K: ChildKind> {
    id: K::Id,
    tenant_id: TenantId,
}

/// A supervisor's own state.
pub struct SupervisorState<K: ChildKind> {
    ctx: K::Ctx,
    registry: Registry,
    stop_timeout: Duration,
    accepting: bool,
    children: HashMap<ActorId, Child<K>>,
    stats: SupervisorStats,
}

impl<K: ChildKind> SupervisorState<K> {
    /// Removes a child that stopped without its own cleanup and runs the
    /// kind's cleanup; returns false when its entry was already gone.
    async fn clean_up_after(&mut self, actor: ActorId, id: K::Id, status: CallStatus, reason: EndReason) -> bool {
        if K::live(&self.registry).remove_if_actor(&id, actor).is_none() {
            return false;
        }
        // The cleanup calls the same dependencies that may have just brought
        // the child down; a panic there must not take the supervisor with it.
        let cleanup = K::cleanup(id, &self.ctx, &self.registry, status, reason);
        if let Err(panic) = AssertUnwindSafe(cleanup).catch_unwind().await {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("non-string panic");
            tracing::error!(kind = K::KIND, %id, error = message, "cleanup after a stopped child panicked");
        }
        true
    }
}

impl<K: ChildKind> Actor for Supervisor<K> {
    type Msg = SupervisorMsg<K::Spec, K::Handle>;
    type State = SupervisorState<K>;
    type Arguments = SupervisorArgs<K>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: SupervisorArgs<K>,
    ) -> Result<SupervisorState<K>, ActorProcessingErr> {
        Ok(SupervisorState {
            ctx: args.ctx,
            registry: args.registry,
            stop_timeout: args.stop_timeout,
            accepting: true,
            children: HashMap::new(),
            stats: SupervisorStats::default(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut SupervisorState<K>,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Spawn(spec, reply) => {
                let result = spawn_child::<K>(&myself, state, spec).await;
                let _ = reply.send(result);
            }
            SupervisorMsg::Close(reply) => {
                state.accepting = false;
                let _ = reply.send(());
            }
            SupervisorMsg::Stats(reply) => {
                let mut stats = state.stats.clone();
                stats.live = state.children.len();
                let _ = reply.send(stats);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut SupervisorState<K>,
    ) -> Result<(), ActorProcessingErr> {
        // Never stop on a child's exit (ractor's default): siblings must keep running.
        match event {
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                let Some(child) = state.children.remove(&cell.get_id()) else {
                    return Ok(());
                };
                state.stats.stopped += 1;
                // Still registered means post_stop did not run: the child was killed.
                if state
                    .clean_up_after(cell.get_id(), child.id, CallStatus::Failed, EndReason::ActorFailed)
                    .await
                {
                    tracing::warn!(
                        kind = K::KIND, id = %child.id, tenant_id = %child.tenant_id, reason = ?reason,
                        "child stopped without its own cleanup"
                    );
                }
            }
            SupervisionEvent::ActorFailed(cell, err) => {
                let Some(child) = state.children.remove(&cell.get_id()) else {
                    return Ok(());
                };
                let reason = err.to_string();
                K::log_failure(child.id, child.tenant_id, &reason);
                state.stats.record_failure(FailureRecord {
                    id: child.id.to_string(),
                    tenant_id: child.tenant_id,
                    reason,
                });
                state
                    .clean_up_after(cell.get_id(), child.id, CallStatus::Failed, EndReason::ActorFailed)
                    .await;
            }
            SupervisionEvent::ActorStarted(_) | SupervisionEvent::ProcessGroupChanged(_) => {}
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut SupervisorState<K>,
    ) -> Result<(), ActorProcessingErr> {
        // Stop children gracefully first: when a supervisor terminates, ractor
        // kills whatever is still linked, skipping their post_stop.
        myself
            .stop_children_and_wait(Some(EndReason::Shutdown.to_string()), Some(state.stop_timeout))
            .await;
        for (actor, child) in std::mem::take(&mut state.children) {
            if state
                .clean_up_after(actor, child.id, CallStatus::Failed, EndReason::Shutdown)
                .await
            {
                tracing::error!(kind = K::KIND, id = %child.id, tenant_id = %child.tenant_id, "child did not stop in time");
            }
        }
        Ok(())
    }
}

async fn spawn_child<K: ChildKind>(
    myself: &ActorRef<SupervisorMsg<K::Spec, K::Handle>>,
    state: &mut SupervisorState<K>,
    spec: K::Spec,
) -> Result<K::Handle, ActorsError> {
    if !state.accepting {
        return Err(ActorsError::ShuttingDown);
    }
    let (id, tenant_id) = (K::id(&spec), K::tenant_id(&spec));
    let live = K::live(&state.registry);
    if live.contains(&id) {
        return Err(ActorsError::Duplicate {
            kind: K::KIND,
            id: id.to_string(),
        });
    }
    let handle = K::spawn(spec, &state.ctx, &state.registry, myself.get_cell()).await?;
    // Spawns are serialised by this mailbox, so the insert cannot find the ID taken.
    live.insert_new(id, handle.clone());
    state.children.insert(handle.actor_id(), Child { id, tenant_id });
    state.stats.spawned += 1;
    Ok(handle)
}
