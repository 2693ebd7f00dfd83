//! Call actors through the production entry point (`Tree::start`).

mod common;

use common::{LogCapture, call_spec, tree, tree_with};
use switchboard_actors::{ActorsError, TreeConfig};
use switchboard_domain::{CallStatus, EndReason, TenantId};

#[tokio::test]
async fn spawning_registers_the_call() {
    let (tree, _) = tree().await;
    let tenant = TenantId::new();
    let spec = call_spec(tenant);
    let handle = tree.spawn_call(spec.clone()).await.expect("spawn");

    let calls = tree.registry().calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls.ids(), vec![spec.call_id]);
    assert_eq!(calls.by_tenant(tenant).len(), 1);
    assert!(calls.by_tenant(TenantId::new()).is_empty());
    let found = calls.get(&spec.call_id).expect("registered");
    let info = found.info().await.expect("info");
    assert_eq!(info.call_id, spec.call_id);
    assert_eq!(info.tenant_id, tenant);
    assert_eq!(info.status, CallStatus::Ringing);
    assert_eq!(handle.call_id(), spec.call_id);
}

#[tokio::test]
async fn hangup_unregisters_and_persists_the_end() {
    let (tree, recorder) = tree().await;
    let spec = call_spec(TenantId::new());
    let handle = tree.spawn_call(spec.clone()).await.expect("spawn");
    assert_eq!(
        handle.set_status(CallStatus::InProgress).await.expect("status"),
        CallStatus::InProgress
    );

    handle.hangup(EndReason::CallerHangup).expect("hangup queued");
    handle.stopped().await;

    assert!(tree.registry().calls().get(&spec.call_id).is_none());
    assert_eq!(
        recorder.ends_of(spec.call_id),
        vec![(CallStatus::Completed, EndReason::CallerHangup)]
    );
    assert!(matches!(handle.info().await, Err(ActorsError::Gone)));
    let stats = tree.call_stats().await.expect("stats");
    assert_eq!((stats.spawned, stats.stopped, stats.failed, stats.live), (1, 1, 0, 0));
}

#[tokio::test]
async fn status_moves_forward_only_and_terminal_statuses_are_refused() {
    let (tree, recorder) = tree().await;
    let spec = call_spec(TenantId::new());
    let handle = tree.spawn_call(spec.clone()).await.expect("spawn");

    assert_eq!(
        handle.set_status(CallStatus::Streaming).await.expect("forward"),
        CallStatus::Streaming
    );
    // An out-of-order callback is harmless.
    assert_eq!(
        handle.set_status(CallStatus::InProgress).await.expect("stale"),
        CallStatus::Streaming
    );
    assert!(matches!(
        handle.set_status(CallStatus::Completed).await,
        Err(ActorsError::TerminalStatus(CallStatus::Completed))
    ));
    assert_eq!(recorder.statuses_of(spec.call_id), vec![CallStatus::Streaming]);
    assert!(matches!(
        handle.end(CallStatus::Ringing, EndReason::Completed),
        Err(ActorsError::NotTerminal(_))
    ));
}

#[tokio::test]
async fn provider_reported_end_keeps_its_status_and_first_end_wins() {
    let (tree, recorder) = tree().await;
    let spec = call_spec(TenantId::new());
    let handle = tree.spawn_call(spec.clone()).await.expect("spawn");

    handle.end(CallStatus::Busy, EndReason::Rejected).expect("end");
    // Queued behind the first end; it must not change the outcome.
    let _ = handle.hangup(EndReason::AgentHangup);
    handle.stopped().await;

    assert_eq!(
        recorder.ends_of(spec.call_id),
        vec![(CallStatus::Busy, EndReason::Rejected)]
    );
}

#[tokio::test]
async fn duplicate_call_id_is_refused() {
    let (tree, _) = tree().await;
    let spec = call_spec(TenantId::new());
    tree.spawn_call(spec.clone()).await.expect("spawn");
    let err = tree.spawn_call(spec.clone()).await.expect_err("duplicate");
    assert!(matches!(err, ActorsError::Duplicate { kind: "call", .. }), "{err:?}");
    assert_eq!(tree.registry().calls().len(), 1);
}

#[tokio::test]
async fn terminal_spec_is_refused() {
    let (tree, _) = tree().await;
    let mut spec = call_spec(TenantId::new());
    spec.status = CallStatus::Completed;
    assert!(matches!(
        tree.spawn_call(spec).await,
        Err(ActorsError::TerminalStatus(_))
    ));
    assert!(tree.registry().calls().is_empty());
}

#[tokio::test]
async fn a_panicking_call_is_cleaned_up_and_its_siblings_keep_running() {
    let logs = LogCapture::default();
    let _guard = logs.install();
    let (tree, recorder) = tree().await;
    let tenant = TenantId::new();
    let doomed = tree.spawn_call(call_spec(tenant)).await.expect("spawn doomed");
    let sibling = tree.spawn_call(call_spec(tenant)).await.expect("spawn sibling");
    recorder.panic_on_set_status(doomed.call_id());

    // The panic drops the reply port: the caller sees the actor gone.
    assert!(matches!(
        doomed.set_status(CallStatus::InProgress).await,
        Err(ActorsError::Gone)
    ));
    assert_eq!(
        recorder.wait_finished(doomed.call_id()).await,
        (CallStatus::Failed, EndReason::ActorFailed)
    );

    assert!(tree.registry().calls().get(&doomed.call_id()).is_none());
    assert_eq!(
        sibling.info().await.expect("sibling answers").status,
        CallStatus::Ringing
    );
    let third = tree
        .spawn_call(call_spec(tenant))
        .await
        .expect("supervisor still spawns");
    assert_eq!(tree.registry().calls().len(), 2);
    assert!(third.info().await.is_ok());

    let stats = tree.call_stats().await.expect("stats");
    assert_eq!(stats.failed, 1);
    let failure = stats.last_failures.back().expect("failure recorded");
    assert_eq!(failure.id, doomed.call_id().to_string());
    assert_eq!(failure.tenant_id, tenant);
    assert!(failure.reason.contains("injected recorder panic"), "{}", failure.reason);

    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("call actor failed"))
        .expect("failure logged");
    assert!(line.contains(&format!("call_id={}", doomed.call_id())), "{line}");
    assert!(line.contains(&format!("tenant_id={tenant}")), "{line}");
}

#[tokio::test]
async fn a_full_mailbox_refuses_requests_but_not_hangup() {
    let config = TreeConfig {
        call_mailbox: 2,
        ..TreeConfig::default()
    };
    let (tree, recorder) = tree_with(config).await;
    let spec = call_spec(TenantId::new());
    let handle = tree.spawn_call(spec.clone()).await.expect("spawn");
    assert_eq!(handle.mailbox_bound(), 2);
    let gate = recorder.close_gate();

    // Hold the actor busy inside the recorder.
    let busy = tokio::spawn({
        let h = handle.clone();
        async move { h.set_status(CallStatus::InProgress).await }
    });
    recorder.entered_set_status.notified().await;

    let queued: Vec<_> = (0..2)
        .map(|_| {
            let h = handle.clone();
            tokio::spawn(async move { h.info().await })
        })
        .collect();
    while handle.mailbox_len() < 2 {
        tokio::task::yield_now().await;
    }
    assert!(matches!(handle.info().await, Err(ActorsError::Full { bound: 2 })));
    handle
        .hangup(EndReason::AgentHangup)
        .expect("hangup passes a full mailbox");

    gate.add_permits(1);
    assert_eq!(busy.await.expect("join").expect("status"), CallStatus::InProgress);
    for q in queued {
        assert!(q.await.expect("join").is_ok(), "queued requests are answered");
    }
    handle.stopped().await;
    assert_eq!(
        recorder.ends_of(spec.call_id),
        vec![(CallStatus::Completed, EndReason::AgentHangup)]
    );
}

#[tokio::test]
async fn a_recorder_that_panics_while_ending_a_call_does_not_take_the_supervisor_down() {
    let (tree, recorder) = tree().await;
    let tenant = TenantId::new();
    let call = tree.spawn_call(call_spec(tenant)).await.expect("spawn");
    // Panics in the actor's post_stop and again in the supervisor's cleanup.
    recorder.panic_on_finish(call.call_id());

    call.hangup(EndReason::CallerHangup).expect("hangup");
    call.stopped().await;

    let stats = tree.call_stats().await.expect("supervisor alive");
    assert_eq!(stats.failed, 1);
    assert!(tree.registry().calls().get(&call.call_id()).is_none());
    let next = tree.spawn_call(call_spec(tenant)).await.expect("still spawns");
    next.hangup(EndReason::CallerHangup).expect("hangup");
    assert_eq!(
        recorder.wait_finished(next.call_id()).await,
        (CallStatus::Canceled, EndReason::CallerHangup)
    );
}
