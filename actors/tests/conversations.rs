//! Conversation, agent session and job actors through `Tree`.

mod common;

use common::{call_spec, tree, tree_with};
use futures::FutureExt;
use std::time::Duration;
use switchboard_actors::{ActorsError, AgentSessionSpec, AgentSubject, ConversationSpec, JobSpec, TreeConfig};
use switchboard_domain::{AgentId, AgentSessionId, Channel, ConversationId, EndReason, JobId, MessageId, TenantId};

fn conversation_spec(tenant_id: TenantId) -> ConversationSpec {
    ConversationSpec {
        conversation_id: ConversationId::new(),
        tenant_id,
        channel: Channel::WhatsAppMeta,
        agent_id: Some(AgentId::new()),
    }
}

fn session_spec(tenant_id: TenantId, subject: AgentSubject) -> AgentSessionSpec {
    AgentSessionSpec {
        session_id: AgentSessionId::new(),
        tenant_id,
        agent_id: AgentId::new(),
        subject,
    }
}

#[tokio::test]
async fn conversation_spawns_registers_tracks_activity_and_stops() {
    let (tree, _) = tree().await;
    let tenant = TenantId::new();
    let spec = conversation_spec(tenant);
    let handle = tree.spawn_conversation(spec.clone()).await.expect("spawn");
    assert!(tree.registry().conversations().contains(&spec.conversation_id));
    assert_eq!(tree.registry().conversations().count_by_tenant(tenant), 1);
    assert!(matches!(
        tree.spawn_conversation(spec.clone()).await,
        Err(ActorsError::Duplicate {
            kind: "conversation",
            ..
        })
    ));

    let last = MessageId::new();
    handle.inbound(MessageId::new()).expect("inbound");
    handle.outbound(last).expect("outbound");
    let info = handle.info().await.expect("info");
    assert_eq!((info.inbound, info.outbound, info.last_message_id), (1, 1, Some(last)));

    handle.close(EndReason::Completed).expect("close");
    handle.stopped().await;
    assert!(tree.registry().conversations().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_idle_conversation_closes_itself_and_activity_postpones_it() {
    let config = TreeConfig {
        conversation_idle: Duration::from_secs(60),
        ..TreeConfig::default()
    };
    let (tree, _) = tree_with(config).await;
    let handle = tree
        .spawn_conversation(conversation_spec(TenantId::new()))
        .await
        .expect("spawn");
    let session = tree
        .spawn_agent_session(session_spec(
            handle.tenant_id(),
            AgentSubject::Conversation(handle.conversation_id()),
        ))
        .await
        .expect("session");

    tokio::time::sleep(Duration::from_secs(45)).await;
    handle.inbound(MessageId::new()).expect("activity");
    tokio::time::sleep(Duration::from_secs(45)).await;
    // 90 s after start but only 45 s after the last message: still live.
    assert!(handle.info().await.is_ok());

    handle.stopped().await;
    assert!(tree.registry().conversations().is_empty());
    // Its agent session ended with it.
    session.stopped().await;
    assert!(tree.registry().agent_sessions().is_empty());
}

#[tokio::test]
async fn agent_session_spawns_registers_counts_turns_and_ends() {
    let (tree, _) = tree().await;
    let tenant = TenantId::new();
    let spec = session_spec(tenant, AgentSubject::Conversation(ConversationId::new()));
    let handle = tree.spawn_agent_session(spec.clone()).await.expect("spawn");
    assert!(tree.registry().agent_sessions().contains(&spec.session_id));
    assert!(matches!(
        tree.spawn_agent_session(spec.clone()).await,
        Err(ActorsError::Duplicate {
            kind: "agent_session",
            ..
        })
    ));

    assert_eq!(handle.turn_completed().await.expect("turn"), 1);
    assert_eq!(handle.turn_completed().await.expect("turn"), 2);
    let info = handle.info().await.expect("info");
    assert_eq!((info.turns, info.subject, info.tenant_id), (2, spec.subject, tenant));

    handle.end(EndReason::Completed).expect("end");
    handle.stopped().await;
    assert!(tree.registry().agent_sessions().is_empty());
    let stats = tree.agent_session_stats().await.expect("stats");
    assert_eq!((stats.spawned, stats.stopped, stats.live), (1, 1, 0));
}

#[tokio::test]
async fn ending_a_call_ends_its_agent_sessions_only() {
    let (tree, _) = tree().await;
    let tenant = TenantId::new();
    let call = tree.spawn_call(call_spec(tenant)).await.expect("call");
    let other = tree.spawn_call(call_spec(tenant)).await.expect("other call");
    let session = tree
        .spawn_agent_session(session_spec(tenant, AgentSubject::Call(call.call_id())))
        .await
        .expect("s");
    let kept = tree
        .spawn_agent_session(session_spec(tenant, AgentSubject::Call(other.call_id())))
        .await
        .expect("kept");

    call.hangup(EndReason::CallerHangup).expect("hangup");
    session.stopped().await;
    assert!(tree.registry().agent_sessions().get(&session.session_id()).is_none());
    assert!(kept.info().await.is_ok());
}

#[tokio::test]
async fn a_failing_job_is_recorded_and_others_run() {
    let (tree, _) = tree().await;
    let tenant = TenantId::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let failing = JobId::new();
    tree.run_job(JobSpec {
        job_id: failing,
        tenant_id: tenant,
        kind: "test_failure",
        work: async { Err("provider said no".to_string()) }.boxed(),
    })
    .await
    .expect("run failing job");
    tree.run_job(JobSpec {
        job_id: JobId::new(),
        tenant_id: tenant,
        kind: "test_success",
        work: async move {
            let _ = tx.send(());
            Ok(())
        }
        .boxed(),
    })
    .await
    .expect("run job");
    rx.await.expect("second job ran");

    // Stats are answered after the supervision events queued before the request.
    let mut stats = tree.job_stats().await.expect("stats");
    while stats.failed + stats.stopped < 2 {
        tokio::task::yield_now().await;
        stats = tree.job_stats().await.expect("stats");
    }
    assert_eq!((stats.spawned, stats.failed, stats.stopped), (2, 1, 1));
    let failure = stats.last_failures.back().expect("failure");
    assert_eq!(failure.id, failing.to_string());
    assert!(failure.reason.contains("provider said no"));
}
