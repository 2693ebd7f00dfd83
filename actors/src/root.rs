//! [`RootActor`]: the top of the supervision tree. It starts the four
//! supervisors linked to itself, and on stop stops them one by one so each
//! can stop its children gracefully.
//!
//! A supervisor that fails is logged and left down; the tree then reports it
//! as gone (`ActorsError::Gone` on spawn) rather than silently restarting it
//! with an empty view of the children it lost.

use crate::jobs::{JobsMsg, JobsSupervisor};
use crate::supervisor::{
    AgentSessions, AgentSessionsSupervisor, Calls, CallsSupervisor, Conversations, ConversationsSupervisor,
    SupervisorArgs, SupervisorMsg,
};
use crate::{AgentSessionHandle, AgentSessionSpec, CallHandle, CallStart, ConversationHandle, ConversationSpec};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use std::time::Duration;

pub type CallsRef = ActorRef<SupervisorMsg<CallStart, CallHandle>>;
pub type ConversationsRef = ActorRef<SupervisorMsg<ConversationSpec, ConversationHandle>>;
pub type AgentSessionsRef = ActorRef<SupervisorMsg<AgentSessionSpec, AgentSessionHandle>>;

/// References to the four supervisors.
#[derive(Debug, Clone)]
pub struct Supervisors {
    pub calls: CallsRef,
    pub conversations: ConversationsRef,
    pub agent_sessions: AgentSessionsRef,
    pub jobs: ActorRef<JobsMsg>,
}

/// The root's protocol.
#[derive(Debug)]
pub enum RootMsg {
    Supervisors(RpcReplyPort<Supervisors>),
}

/// Start-up arguments of the [`RootActor`].
pub struct RootArgs {
    pub(crate) calls: SupervisorArgs<Calls>,
    pub(crate) conversations: SupervisorArgs<Conversations>,
    pub(crate) agent_sessions: SupervisorArgs<AgentSessions>,
    pub(crate) jobs_stop_timeout: Duration,
}

/// The root of the tree.
pub struct RootActor;

impl Actor for RootActor {
    type Msg = RootMsg;
    type State = Supervisors;
    type Arguments = RootArgs;

    async fn pre_start(&self, myself: ActorRef<RootMsg>, args: RootArgs) -> Result<Supervisors, ActorProcessingErr> {
        let cell = myself.get_cell();
        let (calls, _) = Actor::spawn_linked(None, CallsSupervisor::new(), args.calls, cell.clone()).await?;
        let (conversations, _) =
            Actor::spawn_linked(None, ConversationsSupervisor::new(), args.conversations, cell.clone()).await?;
        let (agent_sessions, _) =
            Actor::spawn_linked(None, AgentSessionsSupervisor::new(), args.agent_sessions, cell.clone()).await?;
        let (jobs, _) = Actor::spawn_linked(None, JobsSupervisor, args.jobs_stop_timeout, cell).await?;
        Ok(Supervisors {
            calls,
            conversations,
            agent_sessions,
            jobs,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<RootMsg>,
        msg: RootMsg,
        state: &mut Supervisors,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RootMsg::Supervisors(reply) => {
                let _ = reply.send(state.clone());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<RootMsg>,
        event: SupervisionEvent,
        _state: &mut Supervisors,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, err) => {
                tracing::error!(supervisor = ?cell.get_id(), error = %err, "supervisor failed");
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                tracing::info!(supervisor = ?cell.get_id(), reason = ?reason, "supervisor stopped");
            }
            SupervisionEvent::ActorStarted(_) | SupervisionEvent::ProcessGroupChanged(_) => {}
        }
        Ok(())
    }

    async fn post_stop(&self, _myself: ActorRef<RootMsg>, state: &mut Supervisors) -> Result<(), ActorProcessingErr> {
        // Calls first: ending a call ends its agent sessions, which must still
        // be able to stop cleanly. Errors mean the supervisor is already gone.
        let _ = state.calls.stop_and_wait(None, None).await;
        let _ = state.conversations.stop_and_wait(None, None).await;
        let _ = state.agent_sessions.stop_and_wait(None, None).await;
        let _ = state.jobs.stop_and_wait(None, None).await;
        Ok(())
    }
}
