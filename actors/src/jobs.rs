//! [`JobsSupervisor`]: runs one-shot background jobs (post-call summaries,
//! webhooks, retries) as supervised actors.
//!
//! Each job is a future run by its own linked [`JobActor`]: a panic or an
//! `Err` is caught by ractor, logged with the job's ID and kind, and counted in
//! [`SupervisorStats`]; other jobs and the supervisor keep running. After
//! `Close` new jobs are refused; on stop, running jobs get the configured
//! timeout to finish before they are killed.

use crate::ActorsError;
use crate::stats::{FailureRecord, SupervisorStats};
use futures::future::BoxFuture;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use std::collections::HashMap;
use std::time::Duration;
use switchboard_domain::{JobId, TenantId};

/// A job: what it is, whose, and the work itself.
pub struct JobSpec {
    pub job_id: JobId,
    pub tenant_id: TenantId,
    /// Short static name for logs ("call_summary", ...).
    pub kind: &'static str,
    pub work: BoxFuture<'static, Result<(), String>>,
}

impl std::fmt::Debug for JobSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobSpec")
            .field("job_id", &self.job_id)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// The jobs supervisor's protocol.
#[derive(Debug)]
pub enum JobsMsg {
    /// Start a job; replies once it is running.
    Run(JobSpec, RpcReplyPort<Result<JobId, ActorsError>>),
    /// Stop accepting jobs (shutdown began).
    Close(RpcReplyPort<()>),
    Stats(RpcReplyPort<SupervisorStats>),
}

/// Runs one job, then stops.
pub struct JobActor;

impl Actor for JobActor {
    type Msg = ();
    type State = Option<BoxFuture<'static, Result<(), String>>>;
    type Arguments = BoxFuture<'static, Result<(), String>>;

    async fn pre_start(&self, _myself: ActorRef<()>, work: Self::Arguments) -> Result<Self::State, ActorProcessingErr> {
        Ok(Some(work))
    }

    async fn post_start(&self, myself: ActorRef<()>, work: &mut Self::State) -> Result<(), ActorProcessingErr> {
        if let Some(work) = work.take() {
            work.await?;
        }
        myself.stop(None);
        Ok(())
    }
}

/// Supervises [`JobActor`]s.
pub struct JobsSupervisor;

/// The jobs supervisor's own state.
pub struct JobsState {
    accepting: bool,
    stop_timeout: Duration,
    running: HashMap<ActorId, (JobId, TenantId, &'static str)>,
    stats: SupervisorStats,
}

impl Actor for JobsSupervisor {
    type Msg = JobsMsg;
    type State = JobsState;
    /// How long running jobs get to finish on stop.
    type Arguments = Duration;

    async fn pre_start(
        &self,
        _myself: ActorRef<JobsMsg>,
        stop_timeout: Duration,
    ) -> Result<JobsState, ActorProcessingErr> {
        Ok(JobsState {
            accepting: true,
            stop_timeout,
            running: HashMap::new(),
            stats: SupervisorStats::default(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<JobsMsg>,
        msg: JobsMsg,
        state: &mut JobsState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            JobsMsg::Run(spec, reply) => {
                let result = if state.accepting {
                    match Actor::spawn_linked(None, JobActor, spec.work, myself.get_cell()).await {
                        Ok((actor, _)) => {
                            state
                                .running
                                .insert(actor.get_id(), (spec.job_id, spec.tenant_id, spec.kind));
                            state.stats.spawned += 1;
                            Ok(spec.job_id)
                        }
                        Err(e) => Err(ActorsError::Spawn {
                            kind: "job",
                            reason: e.to_string(),
                        }),
                    }
                } else {
                    Err(ActorsError::ShuttingDown)
                };
                let _ = reply.send(result);
            }
            JobsMsg::Close(reply) => {
                state.accepting = false;
                let _ = reply.send(());
            }
            JobsMsg::Stats(reply) => {
                let mut stats = state.stats.clone();
                stats.live = state.running.len();
                let _ = reply.send(stats);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<JobsMsg>,
        event: SupervisionEvent,
        state: &mut JobsState,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                if state.running.remove(&cell.get_id()).is_some() {
                    state.stats.stopped += 1;
                }
            }
            SupervisionEvent::ActorFailed(cell, err) => {
                if let Some((job_id, tenant_id, kind)) = state.running.remove(&cell.get_id()) {
                    let reason = err.to_string();
                    tracing::error!(%job_id, %tenant_id, kind, error = %reason, "job failed");
                    state.stats.record_failure(FailureRecord {
                        id: job_id.to_string(),
                        tenant_id,
                        reason,
                    });
                }
            }
            SupervisionEvent::ActorStarted(_) | SupervisionEvent::ProcessGroupChanged(_) => {}
        }
        Ok(())
    }

    async fn post_stop(&self, myself: ActorRef<JobsMsg>, state: &mut JobsState) -> Result<(), ActorProcessingErr> {
        myself.stop_children_and_wait(None, Some(state.stop_timeout)).await;
        Ok(())
    }
}
