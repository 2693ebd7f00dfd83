//! Graceful shutdown of the whole tree, in paused time.

mod common;

use common::{call_spec, tree};
use std::time::Duration;
use switchboard_actors::{ActorsError, AgentSessionSpec, AgentSubject, ConversationSpec, ShutdownReport};
use switchboard_domain::{AgentId, AgentSessionId, CallStatus, Channel, ConversationId, EndReason, TenantId};

#[tokio::test(start_paused = true)]
async fn shutdown_drains_calls_that_end_within_grace_and_ends_the_rest() {
    let (tree, recorder) = tree().await;
    let tenant = TenantId::new();
    let quick = tree.spawn_call(call_spec(tenant)).await.expect("spawn");
    let slow = tree.spawn_call(call_spec(tenant)).await.expect("spawn");
    slow.set_status(CallStatus::Streaming).await.expect("status");
    let session = tree
        .spawn_agent_session(AgentSessionSpec {
            session_id: AgentSessionId::new(),
            tenant_id: tenant,
            agent_id: AgentId::new(),
            subject: AgentSubject::Call(slow.call_id()),
        })
        .await
        .expect("session");
    let conversation = tree
        .spawn_conversation(ConversationSpec {
            conversation_id: ConversationId::new(),
            tenant_id: tenant,
            channel: Channel::WhatsAppMeta,
            agent_id: None,
        })
        .await
        .expect("conversation");

    // The caller hangs up 5 s into a 30 s grace period.
    let ender = tokio::spawn({
        let quick = quick.clone();
        async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            quick.hangup(EndReason::CallerHangup).expect("hangup");
        }
    });

    let report = tree.shutdown(Duration::from_secs(30)).await.expect("shutdown");
    ender.await.expect("join");

    assert_eq!(report, ShutdownReport { drained: 1, ended: 1 });
    assert_eq!(
        recorder.ends_of(quick.call_id()),
        vec![(CallStatus::Canceled, EndReason::CallerHangup)]
    );
    assert_eq!(
        recorder.ends_of(slow.call_id()),
        vec![(CallStatus::Completed, EndReason::Shutdown)]
    );
    let registry = tree.registry();
    assert!(registry.calls().is_empty());
    assert!(registry.agent_sessions().is_empty());
    assert!(registry.conversations().is_empty());
    session.stopped().await;
    conversation.stopped().await;
}

#[tokio::test(start_paused = true)]
async fn spawn_after_shutdown_is_refused() {
    let (tree, _) = tree().await;
    let report = tree.shutdown(Duration::from_secs(1)).await.expect("shutdown");
    assert_eq!(report, ShutdownReport { drained: 0, ended: 0 });

    assert!(matches!(
        tree.spawn_call(call_spec(TenantId::new())).await,
        Err(ActorsError::ShuttingDown)
    ));
    let conversation = ConversationSpec {
        conversation_id: ConversationId::new(),
        tenant_id: TenantId::new(),
        channel: Channel::WhatsAppGreen,
        agent_id: None,
    };
    assert!(matches!(
        tree.spawn_conversation(conversation).await,
        Err(ActorsError::ShuttingDown)
    ));
    assert!(matches!(
        tree.shutdown(Duration::from_secs(1)).await,
        Err(ActorsError::ShuttingDown)
    ));
}

#[tokio::test(start_paused = true)]
async fn spawns_are_refused_as_soon_as_shutdown_begins() {
    let (tree, recorder) = tree().await;
    let live = tree.spawn_call(call_spec(TenantId::new())).await.expect("spawn");
    let shutdown = tokio::spawn({
        let tree = tree.clone();
        async move { tree.shutdown(Duration::from_secs(60)).await }
    });
    // Wait until shutdown is draining: the live call is still up, the tree closed.
    while !tree.is_shutting_down() {
        tokio::task::yield_now().await;
    }
    assert!(matches!(
        tree.spawn_call(call_spec(TenantId::new())).await,
        Err(ActorsError::ShuttingDown)
    ));
    assert!(tree.registry().calls().contains(&live.call_id()));

    live.hangup(EndReason::AgentHangup).expect("hangup");
    let report = shutdown.await.expect("join").expect("shutdown");
    assert_eq!(report, ShutdownReport { drained: 1, ended: 0 });
    assert_eq!(
        recorder.ends_of(live.call_id()),
        vec![(CallStatus::Canceled, EndReason::AgentHangup)]
    );
}
