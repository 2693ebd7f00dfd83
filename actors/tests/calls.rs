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
    let logs = LogCapture::global();
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
        .find(|l| l.contains("call actor failed") && l.contains(&doomed.call_id().to_string()))
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

mod live_session {
    use std::sync::Arc;
    use std::time::Duration;

    use futures::future::BoxFuture;
    use futures::stream::BoxStream;
    use switchboard_actors::{AgentSubject, LiveCall, NoEvents};
    use switchboard_domain::{Agent, AgentId, CallStatus, Endpointing, ProviderChoice, StreamSid, TenantId};
    use switchboard_providers::{
        AgentOutput, AgentTurn, CallProviders, ConversationAgent, PcmChunk, ProviderError, SpeechToText, StreamConfig,
        SttStream, TextToSpeech,
    };

    use super::common::{call_spec, tree};

    struct Quiet;

    impl SpeechToText for Quiet {
        fn start(&self, _: StreamConfig) -> BoxFuture<'_, Result<Box<dyn SttStream>, ProviderError>> {
            Box::pin(async {
                Err(ProviderError::new(
                    "quiet",
                    switchboard_providers::ProviderErrorKind::Closed,
                ))
            })
        }
    }

    impl TextToSpeech for Quiet {
        fn synthesize(&self, _: String, _: String) -> BoxStream<'static, Result<PcmChunk, ProviderError>> {
            Box::pin(futures::stream::empty())
        }
    }

    impl ConversationAgent for Quiet {
        fn respond(&self, _: AgentTurn) -> BoxStream<'static, Result<AgentOutput, ProviderError>> {
            Box::pin(futures::stream::empty())
        }
    }

    fn agent(tenant: TenantId) -> Agent {
        let now = switchboard_domain::now();
        Agent {
            id: AgentId::new(),
            tenant_id: tenant,
            name: "quiet".into(),
            system_prompt: String::new(),
            greeting: String::new(),
            language: "en-US".into(),
            voice: "en-us".into(),
            stt: ProviderChoice::new("local"),
            tts: ProviderChoice::new("local"),
            llm: ProviderChoice::new("rules"),
            tools: vec![],
            endpointing: Endpointing {
                vad_threshold: 0.5,
                min_speech_ms: 300,
                silence_ms: 700,
                idle_timeout_ms: 0,
            },
            settings: serde_json::json!({}),
            enabled: true,
            created_at: now,
            updated_at: now,
        }
    }

    /// A call actor that panics takes its linked agent session down without
    /// the session's `post_stop`; the session still leaves the registry.
    #[tokio::test]
    async fn a_failed_live_call_leaves_no_agent_session_behind() {
        let (tree, recorder) = tree().await;
        let tenant = TenantId::new();
        let mut spec = call_spec(tenant);
        spec.status = CallStatus::InProgress;
        let (tx, _rx) = tokio::sync::mpsc::channel(64);
        let q = Arc::new(Quiet);
        let live = LiveCall {
            stream_sid: StreamSid::new("MZpanic"),
            provider_call_id: None,
            from: None,
            to: None,
            agent: agent(tenant),
            providers: CallProviders {
                stt: q.clone(),
                tts: q.clone(),
                agent: q,
                telephony: None,
                context: Default::default(),
                backup: Default::default(),
                realtime: None,
            },
            outbound: tx,
            events: Arc::new(NoEvents),
            recording: None,
        };
        let call = tree.spawn_live_call(spec, live).await.expect("spawn");
        let subject = AgentSubject::Call(call.call_id());
        let sessions = tree.registry().agent_sessions().filter(|s| s.subject() == subject);
        assert_eq!(sessions.len(), 1, "the live call has its session");
        let session = sessions[0].clone();

        // A forward status reaches the recorder, which panics inside the call actor.
        recorder.panic_on_set_status(call.call_id());
        assert!(matches!(
            call.set_status(CallStatus::Streaming).await,
            Err(switchboard_actors::ActorsError::Gone)
        ));
        tokio::time::timeout(Duration::from_secs(5), session.stopped())
            .await
            .expect("session stopped");
        for _ in 0..100 {
            if tree.registry().agent_sessions().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            tree.registry().agent_sessions().is_empty(),
            "the session left the registry"
        );
        assert!(tree.registry().calls().is_empty());
    }
}
