//! Criterion benches for the actor layer.
//!
//! - `actor_hop`: one caller frame from the socket task's `CallHandle::audio`
//!   into the call actor's mailbox and through its handler (no media loop, so
//!   this is the cost of the hop itself: mailbox accounting, ractor's boxed
//!   message, the task wake-up).
//! - `call_spawn`: spawning a call's actor tree with a live media loop (the
//!   call actor under the calls supervisor, its agent session actor and the
//!   session's three provider-client actors, their registry entries, the
//!   player, VAD and resamplers, the ticker and writer tasks), until the
//!   handle is back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use switchboard_actors::{
    AudioIn, CallRecorder, CallSpec, FRAME_BYTES, LiveCall, NoEvents, RecorderError, Tree, TreeConfig,
};
use switchboard_domain::{
    Agent, AgentId, CallDirection, CallId, CallStatus, EndReason, Endpointing, ProviderChoice, StreamSid, TenantId,
};
use switchboard_providers::{
    AgentOutput, AgentTurn, CallProviders, ConversationAgent, PcmChunk, ProviderError, SpeechToText, StreamConfig,
    SttStream, TextToSpeech,
};

struct NullRecorder;

impl CallRecorder for NullRecorder {
    fn set_status(&self, _: CallId, _: CallStatus) -> BoxFuture<'_, Result<(), RecorderError>> {
        Box::pin(async { Ok(()) })
    }
    fn finish(&self, _: CallId, _: CallStatus, _: EndReason) -> BoxFuture<'_, Result<(), RecorderError>> {
        Box::pin(async { Ok(()) })
    }
}

struct Silent;

impl SpeechToText for Silent {
    fn start(&self, _: StreamConfig) -> BoxFuture<'_, Result<Box<dyn SttStream>, ProviderError>> {
        Box::pin(async {
            Err(ProviderError::new(
                "bench",
                switchboard_providers::ProviderErrorKind::Closed,
            ))
        })
    }
}

impl TextToSpeech for Silent {
    fn synthesize(&self, _: String, _: String) -> BoxStream<'static, Result<PcmChunk, ProviderError>> {
        Box::pin(futures::stream::empty())
    }
}

impl ConversationAgent for Silent {
    fn respond(&self, _: AgentTurn) -> BoxStream<'static, Result<AgentOutput, ProviderError>> {
        Box::pin(futures::stream::empty())
    }
}

fn agent(tenant: TenantId) -> Agent {
    let now = switchboard_domain::now();
    Agent {
        id: AgentId::new(),
        tenant_id: tenant,
        name: "bench".into(),
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

fn spec(tenant: TenantId) -> CallSpec {
    CallSpec {
        call_id: CallId::new(),
        tenant_id: tenant,
        agent_id: None,
        direction: CallDirection::Inbound,
        status: CallStatus::Streaming,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn actor_hop(c: &mut Criterion) {
    let rt = runtime();
    let config = TreeConfig {
        call_mailbox: 1 << 20,
        ..TreeConfig::default()
    };
    let tree = rt.block_on(Tree::start(config, Arc::new(NullRecorder))).expect("tree");
    let tenant = TenantId::new();
    let handle = rt.block_on(tree.spawn_call(spec(tenant))).expect("call");
    let frame = AudioIn {
        ulaw: [0xFF; FRAME_BYTES],
        len: FRAME_BYTES as u8,
        timestamp_ms: 0,
    };
    c.bench_function("actor_hop", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    handle.audio(frame).expect("mailbox has room");
                }
                // The reply to this ask comes after every frame was handled.
                handle.info().await.expect("info");
                start.elapsed()
            })
        });
    });
    let _ = handle.hangup(EndReason::Completed);
    rt.block_on(tree.shutdown(Duration::from_secs(1))).expect("shutdown");
}

fn call_spawn(c: &mut Criterion) {
    let rt = runtime();
    let tree = rt
        .block_on(Tree::start(TreeConfig::default(), Arc::new(NullRecorder)))
        .expect("tree");
    let tenant = TenantId::new();
    let agent = agent(tenant);
    let providers = CallProviders {
        stt: Arc::new(Silent),
        tts: Arc::new(Silent),
        agent: Arc::new(Silent),
        telephony: None,
        context: Default::default(),
        backup: Default::default(),
        realtime: None,
    };
    c.bench_function("call_spawn", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (tx, rx) = tokio::sync::mpsc::channel(128);
                    let live = LiveCall {
                        stream_sid: StreamSid::new("MZbench"),
                        provider_call_id: None,
                        from: None,
                        to: None,
                        agent: agent.clone(),
                        providers: providers.clone(),
                        outbound: tx,
                        events: Arc::new(NoEvents),
                        recording: None,
                    };
                    let spec = spec(tenant);
                    let start = Instant::now();
                    let handle = tree.spawn_live_call(spec, live).await.expect("spawn");
                    total += start.elapsed();
                    handle.hangup(EndReason::Completed).expect("hangup");
                    handle.stopped().await;
                    drop(rx);
                }
                total
            })
        });
    });
    rt.block_on(tree.shutdown(Duration::from_secs(1))).expect("shutdown");
}

criterion_group!(benches, actor_hop, call_spawn);
criterion_main!(benches);
