//! [`Tree`]: the façade over the supervision tree. It starts the root, spawns
//! children through their supervisors, and owns graceful shutdown.
//!
//! Shutdown guarantees, in order: new spawns fail with
//! [`ActorsError::ShuttingDown`]; live calls get `grace` to end on their own;
//! calls still live are ended with `EndReason::Shutdown` (their end persisted
//! by their own `post_stop`); then the tree stops, conversations, agent
//! sessions and jobs included.

use crate::call::CallStart;
use crate::jobs::{JobSpec, JobsMsg};
use crate::media::LiveCall;
use crate::root::{RootActor, RootArgs, RootMsg, Supervisors};
use crate::supervisor::{CallsCtx, ConversationsCtx, SupervisorArgs, SupervisorMsg};
use crate::{
    ActorsError, AgentSessionHandle, AgentSessionSpec, CallHandle, CallRecorder, CallSpec, ConversationHandle,
    ConversationSpec, Registry, SupervisorStats,
};
use ractor::{Actor, ActorRef, RpcReplyPort};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use switchboard_domain::{EndReason, JobId};

/// Sizes and timeouts of the tree (from `Settings.limits` in production).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeConfig {
    /// Mailbox bound of each call actor.
    pub call_mailbox: usize,
    /// Mailbox bound of each conversation actor.
    pub conversation_mailbox: usize,
    /// Mailbox bound of each agent session actor.
    pub agent_session_mailbox: usize,
    /// A conversation actor with no activity for this long stops itself.
    pub conversation_idle: Duration,
    /// How long stopping actors get to run their cleanup before being killed
    /// (after the drain grace period, during shutdown).
    pub stop_timeout: Duration,
}

impl Default for TreeConfig {
    fn default() -> Self {
        Self {
            call_mailbox: 256,
            conversation_mailbox: 64,
            agent_session_mailbox: 64,
            conversation_idle: Duration::from_secs(30 * 60),
            stop_timeout: Duration::from_secs(10),
        }
    }
}

/// What shutdown did with the calls live when it began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Calls that ended on their own within the grace period.
    pub drained: usize,
    /// Calls ended with `EndReason::Shutdown` after the grace period.
    pub ended: usize,
}

/// Handle to the running tree. Cheap to clone.
#[derive(Clone)]
pub struct Tree {
    inner: Arc<Inner>,
}

struct Inner {
    root: ActorRef<RootMsg>,
    supervisors: Supervisors,
    registry: Registry,
    shutting_down: AtomicBool,
    stop_timeout: Duration,
}

impl std::fmt::Debug for Tree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tree")
            .field("root", &self.inner.root.get_id())
            .finish_non_exhaustive()
    }
}

impl Tree {
    /// Starts the root and its four supervisors.
    pub async fn start(config: TreeConfig, recorder: Arc<dyn CallRecorder>) -> Result<Tree, ActorsError> {
        let registry = Registry::new();
        let args = RootArgs {
            calls: SupervisorArgs {
                ctx: CallsCtx {
                    mailbox: config.call_mailbox,
                    session_mailbox: config.agent_session_mailbox,
                    recorder,
                },
                registry: registry.clone(),
                stop_timeout: config.stop_timeout,
            },
            conversations: SupervisorArgs {
                ctx: ConversationsCtx {
                    mailbox: config.conversation_mailbox,
                    idle_timeout: config.conversation_idle,
                },
                registry: registry.clone(),
                stop_timeout: config.stop_timeout,
            },
            agent_sessions: SupervisorArgs {
                ctx: config.agent_session_mailbox,
                registry: registry.clone(),
                stop_timeout: config.stop_timeout,
            },
            jobs_stop_timeout: config.stop_timeout,
        };
        let (root, _) = Actor::spawn(None, RootActor, args)
            .await
            .map_err(|e| ActorsError::Spawn {
                kind: "root",
                reason: e.to_string(),
            })?;
        let supervisors = root
            .call(RootMsg::Supervisors, None)
            .await
            .ok()
            .and_then(|r| r.success_or(()).ok())
            .ok_or(ActorsError::Gone)?;
        Ok(Tree {
            inner: Arc::new(Inner {
                root,
                supervisors,
                registry,
                shutting_down: AtomicBool::new(false),
                stop_timeout: config.stop_timeout,
            }),
        })
    }

    /// The registry of live actors.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::Acquire)
    }

    /// Starts a call actor. Fails with `ShuttingDown`, `Duplicate` (the call is
    /// live) or `TerminalStatus` (the spec's status already ended the call).
    /// Per-tenant limits are the caller's: see `registry().calls().count_by_tenant`.
    pub async fn spawn_call(&self, spec: CallSpec) -> Result<CallHandle, ActorsError> {
        self.refuse_if_shutting_down()?;
        let start = CallStart { spec, live: None };
        self.ask(&self.inner.supervisors.calls, |r| SupervisorMsg::Spawn(start, r))
            .await?
    }

    /// Starts a call actor that drives a live media stream: greeting, speech
    /// loop, playback, recording and live events. Fails as [`Self::spawn_call`].
    pub async fn spawn_live_call(&self, spec: CallSpec, live: LiveCall) -> Result<CallHandle, ActorsError> {
        self.refuse_if_shutting_down()?;
        let start = CallStart { spec, live: Some(live) };
        self.ask(&self.inner.supervisors.calls, |r| SupervisorMsg::Spawn(start, r))
            .await?
    }

    /// Starts a conversation actor. Fails with `ShuttingDown` or `Duplicate`.
    pub async fn spawn_conversation(&self, spec: ConversationSpec) -> Result<ConversationHandle, ActorsError> {
        self.refuse_if_shutting_down()?;
        self.ask(&self.inner.supervisors.conversations, |r| SupervisorMsg::Spawn(spec, r))
            .await?
    }

    /// Starts an agent session actor. Fails with `ShuttingDown` or `Duplicate`.
    pub async fn spawn_agent_session(&self, spec: AgentSessionSpec) -> Result<AgentSessionHandle, ActorsError> {
        self.refuse_if_shutting_down()?;
        self.ask(&self.inner.supervisors.agent_sessions, |r| {
            SupervisorMsg::Spawn(spec, r)
        })
        .await?
    }

    /// Runs a one-shot background job under the jobs supervisor.
    pub async fn run_job(&self, job: JobSpec) -> Result<JobId, ActorsError> {
        self.refuse_if_shutting_down()?;
        self.ask(&self.inner.supervisors.jobs, |r| JobsMsg::Run(job, r)).await?
    }

    pub async fn call_stats(&self) -> Result<SupervisorStats, ActorsError> {
        self.ask(&self.inner.supervisors.calls, SupervisorMsg::Stats).await
    }

    pub async fn conversation_stats(&self) -> Result<SupervisorStats, ActorsError> {
        self.ask(&self.inner.supervisors.conversations, SupervisorMsg::Stats)
            .await
    }

    pub async fn agent_session_stats(&self) -> Result<SupervisorStats, ActorsError> {
        self.ask(&self.inner.supervisors.agent_sessions, SupervisorMsg::Stats)
            .await
    }

    pub async fn job_stats(&self) -> Result<SupervisorStats, ActorsError> {
        self.ask(&self.inner.supervisors.jobs, JobsMsg::Stats).await
    }

    /// Graceful shutdown (see the module docs). Only the first call shuts down;
    /// later calls fail with `ShuttingDown`.
    pub async fn shutdown(&self, grace: Duration) -> Result<ShutdownReport, ActorsError> {
        if self.inner.shutting_down.swap(true, Ordering::AcqRel) {
            return Err(ActorsError::ShuttingDown);
        }
        let sup = &self.inner.supervisors;
        // Close every supervisor first so nothing new starts while we drain.
        // A supervisor that is already gone accepts nothing anyway.
        let _ = sup.calls.call(SupervisorMsg::Close, None).await;
        let _ = sup.conversations.call(SupervisorMsg::Close, None).await;
        let _ = sup.agent_sessions.call(SupervisorMsg::Close, None).await;
        let _ = sup.jobs.call(JobsMsg::Close, None).await;

        let calls = self.inner.registry.calls();
        let live = calls.len();
        tracing::info!(live, grace_secs = grace.as_secs_f64(), "shutdown: draining calls");
        let _ = tokio::time::timeout(grace, calls.wait_empty()).await;

        let mut ended = 0;
        for call in calls.filter(|_| true) {
            // Gone: it ended on its own in the meantime, which counts as drained.
            if call.hangup(EndReason::Shutdown).is_ok() {
                ended += 1;
            }
        }
        if tokio::time::timeout(self.inner.stop_timeout, calls.wait_empty())
            .await
            .is_err()
        {
            tracing::error!(left = calls.len(), "shutdown: calls did not finish ending in time");
        }
        tracing::info!(
            drained = live.saturating_sub(ended),
            ended,
            "shutdown: calls done, stopping the tree"
        );
        // An error means the root already stopped, which is the goal.
        let _ = self.inner.root.stop_and_wait(Some("shutdown".into()), None).await;
        Ok(ShutdownReport {
            drained: live.saturating_sub(ended),
            ended,
        })
    }

    fn refuse_if_shutting_down(&self) -> Result<(), ActorsError> {
        // Fast path; the supervisors' own `Close` is what makes refusal airtight.
        if self.is_shutting_down() {
            Err(ActorsError::ShuttingDown)
        } else {
            Ok(())
        }
    }

    async fn ask<M: ractor::Message, R: Send + 'static>(
        &self,
        actor: &ActorRef<M>,
        build: impl FnOnce(RpcReplyPort<R>) -> M,
    ) -> Result<R, ActorsError> {
        let gone = || {
            if self.is_shutting_down() {
                ActorsError::ShuttingDown
            } else {
                ActorsError::Gone
            }
        };
        match actor.call(build, None).await {
            Ok(ractor::rpc::CallResult::Success(r)) => Ok(r),
            _ => Err(gone()),
        }
    }
}
