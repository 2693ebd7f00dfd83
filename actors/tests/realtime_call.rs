//! A call in OpenAI Realtime mode, end to end through the call actor: the
//! media socket is played by the test (μ-law frames in, `MediaOut` frames,
//! marks and clears out, marks echoed back), the model by the scripted
//! `FakeRealtime` WebSocket server, the recorder by a real SQLite store.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use serde_json::{Value, json};
use switchboard_actors::{AudioIn, CallHandle, CallSpec, EventSink, FRAME_BYTES, LiveCall, MediaOut, Tree, TreeConfig};
use switchboard_domain::{
    CallDirection, CallEvent, CallEventKind, CallStatus, EndReason, Endpointing, NewAgent, NewCall, NewTenant,
    ProviderChoice, Speaker, StreamSid,
};
use switchboard_fakes::openai_realtime::{FakeRealtime, Interface, RealtimeScript};
use switchboard_media::ulaw;
use switchboard_providers::realtime::RealtimeInterface;
use switchboard_providers::{
    AgentAction, CallProviders, PcmChunk, ProviderError, ProviderErrorKind, RealtimeConfig, RuleAgent, SecretString,
    SpeechToText, StreamConfig, SttStream, TextToSpeech, ToolHost, ToolResult, ToolSpec, TurnContext,
};
use switchboard_store::{Scope, Store};
use tokio::sync::mpsc;

/// Bounds every wait of a test, so a broken loop fails instead of hanging.
const LIMIT: Duration = Duration::from_secs(20);

/// The chained providers a realtime call must never use.
struct Unused;

impl SpeechToText for Unused {
    fn start(&self, _config: StreamConfig) -> BoxFuture<'_, Result<Box<dyn SttStream>, ProviderError>> {
        Box::pin(async {
            Err(ProviderError::new(
                "unused",
                ProviderErrorKind::Config("realtime call".into()),
            ))
        })
    }
}

impl TextToSpeech for Unused {
    fn synthesize(&self, _text: String, _voice: String) -> BoxStream<'static, Result<PcmChunk, ProviderError>> {
        Box::pin(futures::stream::iter([Err(ProviderError::new(
            "unused",
            ProviderErrorKind::Config("realtime call".into()),
        ))]))
    }
}

/// Tools of the test agent: `lookup_order` answers, `end_call` hangs up.
#[derive(Default)]
struct TestTools {
    calls: Mutex<Vec<(String, String)>>,
}

impl ToolHost for TestTools {
    fn specs(&self) -> Vec<ToolSpec> {
        vec![
            ToolSpec {
                name: "lookup_order".into(),
                description: "Looks an order up.".into(),
                parameters: json!({"type": "object", "properties": {"order": {"type": "string"}}}),
            },
            ToolSpec {
                name: "end_call".into(),
                description: "Hangs up.".into(),
                parameters: json!({"type": "object", "properties": {}}),
            },
        ]
    }

    fn call(&self, name: String, arguments: String) -> BoxFuture<'static, ToolResult> {
        self.calls.lock().expect("lock").push((name.clone(), arguments));
        Box::pin(async move {
            match name.as_str() {
                "lookup_order" => ToolResult::ok(json!({"status": "shipped"})),
                "end_call" => ToolResult {
                    content: json!({"ok": true}),
                    action: Some(AgentAction::Hangup),
                },
                _ => ToolResult::error("unknown_tool", "not here"),
            }
        })
    }
}

#[derive(Default)]
struct Events(Mutex<Vec<CallEvent>>);

impl EventSink for Events {
    fn publish<'a>(&'a self, event: &'a CallEvent) -> BoxFuture<'a, Result<(), String>> {
        self.0.lock().expect("lock").push(event.clone());
        Box::pin(async { Ok(()) })
    }
}

impl Events {
    fn kinds(&self) -> Vec<CallEventKind> {
        self.0.lock().expect("lock").iter().map(|e| e.kind.clone()).collect()
    }
}

struct Harness {
    store: Store,
    tree: Tree,
    dir: tempfile::TempDir,
}

struct Call {
    handle: CallHandle,
    out: mpsc::Receiver<MediaOut>,
    events: Arc<Events>,
    recording: std::path::PathBuf,
    /// Stream clock of the next caller frame.
    ts: u64,
    /// Every caller byte sent, in order.
    sent: Vec<u8>,
    /// Echo marks back (like Twilio once the audio played) until this many
    /// were echoed in all; later ones are held (the playback stalled).
    echo_limit: usize,
}

/// What the socket task saw.
#[derive(Debug, Default)]
struct Seen {
    frames: usize,
    marks: Vec<String>,
    echoed: Vec<String>,
    clears: usize,
    closed: Option<EndReason>,
}

impl Harness {
    async fn new() -> Self {
        let store = Store::connect("sqlite::memory:", 1, [7; 32]).await.expect("connect");
        store.migrate().await.expect("migrate");
        let tree = Tree::start(TreeConfig::default(), Arc::new(store.clone()))
            .await
            .expect("tree");
        Self {
            store,
            tree,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    async fn call(&self, greeting: &str, providers: CallProviders) -> Call {
        let tenant = self
            .store
            .tenants()
            .create(NewTenant {
                name: format!("T{}", next_id()),
                notification_email: None,
                max_concurrent_calls: 5,
            })
            .await
            .expect("tenant");
        let agent = self
            .store
            .agents()
            .create(
                tenant.id,
                NewAgent {
                    name: "A".into(),
                    system_prompt: "Be brief.".into(),
                    greeting: greeting.into(),
                    language: "en-US".into(),
                    voice: "alloy".into(),
                    stt: ProviderChoice::new("local"),
                    tts: ProviderChoice::new("local"),
                    llm: ProviderChoice::new("openai_realtime"),
                    tools: vec![],
                    endpointing: Endpointing {
                        vad_threshold: 0.5,
                        min_speech_ms: 300,
                        silence_ms: 500,
                        idle_timeout_ms: 0,
                    },
                    settings: json!({}),
                    enabled: true,
                },
            )
            .await
            .expect("agent");
        let row = self
            .store
            .calls()
            .create(NewCall {
                tenant_id: tenant.id,
                agent_id: Some(agent.id),
                provider_call_id: None,
                direction: CallDirection::Inbound,
                from: "+15550001111".into(),
                to: "+15550002222".into(),
                status: CallStatus::InProgress,
            })
            .await
            .expect("call");
        let (tx, out) = mpsc::channel(4096);
        let events = Arc::new(Events::default());
        let recording = self.dir.path().join(format!("{}.wav", row.id));
        let handle = self
            .tree
            .spawn_live_call(
                CallSpec {
                    call_id: row.id,
                    tenant_id: tenant.id,
                    agent_id: Some(agent.id),
                    direction: CallDirection::Inbound,
                    status: CallStatus::Streaming,
                },
                LiveCall {
                    stream_sid: StreamSid::new("MZ1"),
                    provider_call_id: None,
                    from: Some("+15550001111".into()),
                    to: Some("+15550002222".into()),
                    agent,
                    providers,
                    outbound: tx,
                    events: Arc::clone(&events) as Arc<dyn EventSink>,
                    recording: Some(recording.clone()),
                },
            )
            .await
            .expect("spawn");
        Call {
            handle,
            out,
            events,
            recording,
            ts: 0,
            sent: Vec::new(),
            echo_limit: usize::MAX,
        }
    }

    async fn transcript(&self, call: &Call) -> Vec<(Speaker, String)> {
        self.store
            .transcripts()
            .list(call.handle.call_id())
            .await
            .expect("transcript")
            .into_iter()
            .map(|s| (s.speaker, s.text))
            .collect()
    }
}

fn next_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn providers(fake: &FakeRealtime, interface: Interface, tools: Option<Arc<dyn ToolHost>>) -> CallProviders {
    providers_at(fake.url(), interface, tools)
}

fn providers_at(url: String, interface: Interface, tools: Option<Arc<dyn ToolHost>>) -> CallProviders {
    let mut config = RealtimeConfig::openai("gpt-realtime", SecretString::from(FakeRealtime::API_KEY.to_owned()));
    config.url = url;
    config.interface = match interface {
        Interface::Beta => RealtimeInterface::Beta,
        Interface::Ga => RealtimeInterface::Ga,
    };
    config.instructions = "Be brief.".into();
    config.connect_retries = 0;
    // Generous for a loaded host; a refused connection still fails at once.
    config.connect_timeout = Duration::from_secs(10);
    let agent = RuleAgent::from_settings(&json!({"rules": [], "fallback": "?"})).expect("rules");
    CallProviders {
        stt: Arc::new(Unused),
        tts: Arc::new(Unused),
        agent: Arc::new(agent),
        telephony: None,
        context: TurnContext { tools, facts: vec![] },
        backup: Default::default(),
        realtime: Some(config),
    }
}

/// `ms` of a loud 8 kHz tone as μ-law (the agent's voice).
fn tone(ms: usize) -> Vec<u8> {
    (0..ms * 8)
        .map(|i| ulaw::encode(((i as f32 * 0.3).sin() * 8000.0) as i16))
        .collect()
}

fn respond(response_id: &str, item_id: &str, ms: usize, chunks: usize, transcript: &str) -> RealtimeScript {
    RealtimeScript::Respond {
        response_id: response_id.into(),
        item_id: item_id.into(),
        ulaw: tone(ms),
        chunks,
        transcript: transcript.into(),
    }
}

fn wait(kind: &str) -> RealtimeScript {
    RealtimeScript::WaitFor(kind.into())
}

impl Call {
    /// Sends `ms` of caller audio as 20 ms frames in real time, a distinct
    /// byte pattern per frame so the fake's copy can be compared exactly.
    async fn talk(&mut self, ms: u64, seen: &mut Seen) {
        for _ in 0..ms / 20 {
            let mut frame = AudioIn {
                ulaw: [0; FRAME_BYTES],
                len: FRAME_BYTES as u8,
                timestamp_ms: self.ts,
            };
            for (i, b) in frame.ulaw.iter_mut().enumerate() {
                *b = ((self.ts / 20) as u8).wrapping_mul(31).wrapping_add(i as u8);
            }
            if self.handle.audio(frame).is_err() {
                return;
            }
            self.sent.extend_from_slice(&frame.ulaw);
            self.ts += 20;
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.drain(seen);
        }
    }

    /// Reads what the actor sent; echoes marks up to `echo_limit`.
    fn drain(&mut self, seen: &mut Seen) {
        while let Ok(out) = self.out.try_recv() {
            match out {
                MediaOut::Media(_) => seen.frames += 1,
                MediaOut::Mark(name) => {
                    seen.marks.push(name.to_string());
                    if seen.echoed.len() < self.echo_limit {
                        seen.echoed.push(name.to_string());
                        let _ = self.handle.mark(name.to_string());
                    }
                }
                MediaOut::Clear => seen.clears += 1,
                MediaOut::Close(reason) => seen.closed = Some(reason),
            }
        }
    }

    /// Talks until `done` holds (bounded by [`LIMIT`]).
    async fn talk_until(&mut self, seen: &mut Seen, done: impl Fn(&Seen) -> bool) {
        let deadline = tokio::time::Instant::now() + LIMIT;
        while !done(seen) {
            assert!(tokio::time::Instant::now() < deadline, "timed out; saw {seen:?}");
            self.talk(20, seen).await;
        }
    }

    async fn stopped(&self) {
        tokio::time::timeout(LIMIT, self.handle.stopped())
            .await
            .expect("the call did not end");
    }
}

fn caller_transcript(item_id: &str, text: &str) -> RealtimeScript {
    RealtimeScript::Send(json!({
        "type": "conversation.item.input_audio_transcription.completed",
        "item_id": item_id, "content_index": 0, "transcript": text,
    }))
}

async fn a_realtime_call_greets_hears_answers_and_stores_everything(interface: Interface) {
    let h = Harness::new().await;
    let fake = FakeRealtime::start(interface).await;
    let tools: Arc<dyn ToolHost> = Arc::new(TestTools::default());
    fake.push([
        wait("session.update"),
        wait("response.create"),
        // The greeting: 600 ms in 3 deltas of 200 ms.
        respond("resp_g", "item_g", 600, 3, "Hello, this is Acme."),
        wait("input_audio_buffer.append"),
    ]);
    let mut call = h
        .call("Hello, this is Acme.", providers(&fake, interface, Some(tools)))
        .await;
    let mut seen = Seen::default();

    // The greeting plays first, paced, each delta followed by a mark.
    call.talk_until(&mut seen, |s| s.echoed.len() >= 3).await;
    assert_eq!(seen.frames, 30, "600 ms of greeting = 30 frames");
    assert!(seen.marks.iter().all(|m| m.starts_with("rt0:")), "{:?}", seen.marks);

    // The session asked for g711 both ways and offered the call's tools.
    let update = &fake.events_of_type("session.update")[0]["session"];
    match interface {
        Interface::Beta => {
            assert_eq!(update["input_audio_format"], "g711_ulaw");
            assert_eq!(update["output_audio_format"], "g711_ulaw");
        }
        Interface::Ga => {
            assert_eq!(update["audio"]["input"]["format"]["type"], "audio/pcmu");
            assert_eq!(update["audio"]["output"]["format"]["type"], "audio/pcmu");
        }
    }
    let tool_names: Vec<&str> = update["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(tool_names, ["lookup_order", "end_call"]);
    assert!(
        update["instructions"]
            .as_str()
            .is_some_and(|i| i.starts_with("Be brief.") && i.contains("\"Hello, this is Acme.\"")),
        "{update}"
    );

    // The caller's turn: server VAD, the caller's transcript, the answer.
    fake.push([
        RealtimeScript::SpeechStarted {
            item_id: "item_c1".into(),
            audio_start_ms: 700,
        },
        RealtimeScript::SpeechStopped {
            item_id: "item_c1".into(),
            audio_end_ms: 1500,
        },
        caller_transcript("item_c1", "I would like to book an appointment"),
        respond("resp_1", "item_1", 400, 2, "Sure. What day works for you?"),
    ]);
    call.talk_until(&mut seen, |s| s.echoed.len() >= 5).await;
    assert_eq!(seen.frames, 30 + 20, "400 ms of answer = 20 more frames");
    assert_eq!(seen.clears, 0, "nothing was playing when the caller spoke");

    // Every caller byte reached the model, in order and unchanged.
    let frames = call.sent.len() / FRAME_BYTES;
    tokio::time::timeout(LIMIT, fake.wait_for("input_audio_buffer.append", frames))
        .await
        .expect("appends");
    assert_eq!(fake.appended_audio(), call.sent);

    call.handle.stream_stopped().expect("stop");
    call.stopped().await;
    call.drain(&mut seen);
    assert_eq!(seen.closed, Some(EndReason::CallerHangup));

    let row = h
        .store
        .calls()
        .get(Scope::All, call.handle.call_id())
        .await
        .expect("row");
    assert_eq!(row.status, CallStatus::Completed);
    assert_eq!(row.end_reason, Some(EndReason::CallerHangup));
    assert!(h.tree.registry().calls().is_empty());
    assert_eq!(
        h.transcript(&call).await,
        vec![
            (Speaker::Agent, "Hello, this is Acme.".to_owned()),
            (Speaker::Caller, "I would like to book an appointment".to_owned()),
            (Speaker::Agent, "Sure. What day works for you?".to_owned()),
        ]
    );
    let turns = h.store.turns().list(call.handle.call_id()).await.expect("turns");
    assert_eq!(turns.iter().map(|t| t.turn_id).collect::<Vec<_>>(), vec![0, 1]);
    let answer = turns[1];
    let stages = [
        answer.stt_final_ms,
        answer.agent_first_token_ms,
        answer.tts_first_audio_ms,
        answer.first_frame_ms,
        answer.mark_confirmed_ms,
    ];
    assert!(stages.iter().all(Option::is_some), "{answer:?}");
    let stages: Vec<u32> = stages.into_iter().flatten().collect();
    assert!(stages.windows(2).all(|w| w[0] <= w[1]), "{stages:?}");

    let kinds = call.events.kinds();
    assert!(matches!(kinds.first(), Some(CallEventKind::CallStarted { .. })));
    assert!(matches!(
        kinds.last(),
        Some(CallEventKind::CallEnded {
            status: CallStatus::Completed,
            reason: EndReason::CallerHangup
        })
    ));
    assert_eq!(
        kinds
            .iter()
            .filter(|k| matches!(k, CallEventKind::TurnLatency(_)))
            .count(),
        2
    );

    // The recording has the agent's voice on the right channel.
    let wav = std::fs::read(&call.recording).expect("recording");
    assert_eq!(u16::from_le_bytes([wav[22], wav[23]]), 2, "stereo");
    let right_loud = wav[44..]
        .chunks_exact(4)
        .any(|c| i16::from_le_bytes([c[2], c[3]]).abs() > 3000);
    assert!(right_loud, "agent side has audio");
    assert_eq!(
        row.recording_url.as_deref(),
        Some(call.recording.display().to_string().as_str())
    );
}

#[tokio::test]
async fn realtime_call_end_to_end_beta() {
    a_realtime_call_greets_hears_answers_and_stores_everything(Interface::Beta).await;
}

#[tokio::test]
async fn realtime_call_end_to_end_ga() {
    a_realtime_call_greets_hears_answers_and_stores_everything(Interface::Ga).await;
}

#[tokio::test]
async fn caller_speech_over_the_agent_clears_truncates_and_cuts_the_line() {
    let h = Harness::new().await;
    let fake = FakeRealtime::start(Interface::Ga).await;
    let greeting = "Welcome to Acme, where we have a long list of options for you today, so please listen closely.";
    // 3 s of greeting in 30 deltas of 100 ms: one mark per 100 ms.
    fake.push([
        wait("session.update"),
        wait("response.create"),
        respond("resp_g", "item_g", 3000, 30, greeting),
    ]);
    let mut call = h.call(greeting, providers(&fake, Interface::Ga, None)).await;
    let mut seen = Seen::default();

    // Twilio confirms exactly 1 s of the greeting, then its echoes stop
    // (marks drained together past the tenth are held too).
    call.echo_limit = 10;
    call.talk_until(&mut seen, |s| s.echoed.len() >= 10).await;
    assert_eq!(seen.echoed.len(), 10);
    let played_ms = 100 * seen.echoed.len() as u64;
    // More plays, unconfirmed: only what the marks confirm counts as heard.
    call.talk_until(&mut seen, |s| s.marks.len() > s.echoed.len()).await;

    fake.push([RealtimeScript::SpeechStarted {
        item_id: "item_c1".into(),
        audio_start_ms: 1100,
    }]);
    let truncate = tokio::time::timeout(LIMIT, fake.wait_for("conversation.item.truncate", 1))
        .await
        .expect("truncate")
        .remove(0);
    call.talk(100, &mut seen).await;
    assert_eq!(seen.clears, 1, "Twilio's buffer was cleared");
    assert_eq!(truncate["item_id"], "item_g");
    assert_eq!(truncate["content_index"], 0);
    assert_eq!(
        truncate["audio_end_ms"].as_u64(),
        Some(played_ms),
        "what the echoed marks confirm"
    );
    let frames_at_clear = seen.frames;
    call.talk(300, &mut seen).await;
    assert_eq!(seen.frames, frames_at_clear, "no more greeting after the clear");
    assert!(
        fake.events_of_type("response.cancel").is_empty(),
        "server VAD cancels its own response"
    );

    call.handle.hangup(EndReason::CallerHangup).expect("hangup");
    call.stopped().await;
    let barge = call
        .events
        .kinds()
        .into_iter()
        .find_map(|k| match k {
            CallEventKind::BargeIn {
                heard_ms, heard_text, ..
            } => Some((heard_ms, heard_text)),
            _ => None,
        })
        .expect("barge-in event");
    assert_eq!(barge.0, played_ms);
    let lines = h.transcript(&call).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    let heard = &lines[0].1;
    assert_eq!(*heard, barge.1);
    assert!(!heard.is_empty() && heard.len() < greeting.len(), "heard: {heard:?}");
    assert!(greeting.starts_with(heard.as_str()), "heard: {heard:?}");
    assert!(greeting[heard.len()..].starts_with(' '), "cut at a word: {heard:?}");
    // The share of the words that the confirmed share of the audio carries,
    // cut to whole words: no further than that share, and the next word
    // would have gone past it.
    let share = greeting.len() * played_ms as usize / 3000;
    let next_cut = greeting[heard.len() + 1..]
        .find(' ')
        .map_or(greeting.len(), |p| heard.len() + 1 + p);
    assert!(
        heard.len() <= share && next_cut > share,
        "heard {heard:?} for {played_ms} of 3000 ms"
    );
}

#[tokio::test]
async fn function_calls_run_the_tool_and_answer_the_model() {
    let h = Harness::new().await;
    let fake = FakeRealtime::start(Interface::Beta).await;
    let tools = Arc::new(TestTools::default());
    fake.push([
        wait("session.update"),
        RealtimeScript::FunctionCall {
            call_id: "call_1".into(),
            name: "lookup_order".into(),
            arguments: r#"{"order":"42"}"#.into(),
        },
        wait("response.create"),
        respond("resp_1", "item_1", 200, 1, "It has shipped."),
        RealtimeScript::FunctionCall {
            call_id: "call_2".into(),
            name: "launch_rocket".into(),
            arguments: "{}".into(),
        },
        wait("response.create"),
        RealtimeScript::FunctionCall {
            call_id: "call_3".into(),
            name: "end_call".into(),
            arguments: "{}".into(),
        },
        wait("response.create"),
        respond("resp_3", "item_3", 200, 1, "Goodbye!"),
    ]);
    let host: Arc<dyn ToolHost> = tools.clone();
    let mut call = h.call("", providers(&fake, Interface::Beta, Some(host))).await;
    let mut seen = Seen::default();

    // The hang-up tool ends the call once its reply has played.
    let deadline = tokio::time::Instant::now() + LIMIT;
    while call.handle.info().await.is_ok_and(|i| i.ending.is_none()) {
        assert!(tokio::time::Instant::now() < deadline, "call did not end: {seen:?}");
        call.talk(20, &mut seen).await;
    }
    call.stopped().await;

    assert_eq!(
        *tools.calls.lock().expect("lock"),
        vec![
            ("lookup_order".to_owned(), r#"{"order":"42"}"#.to_owned()),
            ("end_call".to_owned(), "{}".to_owned()),
        ],
        "the unknown tool never reached the host"
    );
    let outputs: Vec<(String, Value)> = fake
        .events_of_type("conversation.item.create")
        .into_iter()
        .map(|e| {
            assert_eq!(e["item"]["type"], "function_call_output");
            let output = serde_json::from_str(e["item"]["output"].as_str().expect("output text")).expect("json");
            (e["item"]["call_id"].as_str().unwrap_or_default().to_owned(), output)
        })
        .collect();
    assert_eq!(outputs.len(), 3, "{outputs:?}");
    assert_eq!(outputs[0], ("call_1".to_owned(), json!({"status": "shipped"})));
    assert_eq!(outputs[1].0, "call_2");
    assert_eq!(outputs[1].1["error"]["code"], "unknown_tool");
    assert_eq!(outputs[2], ("call_3".to_owned(), json!({"ok": true})));
    // Each output was followed by a request to answer.
    let kinds: Vec<String> = fake
        .events()
        .iter()
        .filter_map(|e| e["type"].as_str().map(str::to_owned))
        .filter(|t| t == "conversation.item.create" || t == "response.create")
        .collect();
    assert_eq!(kinds.len(), 6);
    assert!(
        kinds
            .chunks(2)
            .all(|p| p == ["conversation.item.create", "response.create"]),
        "{kinds:?}"
    );

    let row = h
        .store
        .calls()
        .get(Scope::All, call.handle.call_id())
        .await
        .expect("row");
    assert_eq!(row.end_reason, Some(EndReason::AgentHangup));
    let agent_lines: Vec<String> = h
        .transcript(&call)
        .await
        .into_iter()
        .filter(|(s, _)| *s == Speaker::Agent)
        .map(|(_, t)| t)
        .collect();
    assert_eq!(
        agent_lines,
        ["It has shipped.", "Goodbye!"],
        "the goodbye was heard in full"
    );
}

#[tokio::test]
async fn a_lost_session_is_reconnected_and_the_call_goes_on() {
    let h = Harness::new().await;
    let fake = FakeRealtime::start(Interface::Ga).await;
    fake.push([
        wait("session.update"),
        wait("response.create"),
        respond("resp_g", "item_g", 200, 1, "Hi."),
        wait("input_audio_buffer.append"),
        RealtimeScript::Close(1011, "internal error".into()),
        // The second connection: the model apologises.
        wait("session.update"),
        wait("response.create"),
        respond("resp_a", "item_a", 200, 1, "Sorry, could you repeat that?"),
    ]);
    let mut call = h.call("Hi.", providers(&fake, Interface::Ga, None)).await;
    let mut seen = Seen::default();
    call.talk_until(&mut seen, |s| s.echoed.len() >= 2).await;
    assert_eq!(fake.connections().len(), 2);
    let updates = fake.events_of_type("session.update");
    assert!(
        updates[1]["session"]["instructions"]
            .as_str()
            .is_some_and(|i| i.contains("interrupted")),
        "{updates:?}"
    );
    assert!(call.handle.info().await.expect("alive").ending.is_none());
    call.handle.stream_stopped().expect("stop");
    call.stopped().await;
    let lines: Vec<String> = h.transcript(&call).await.into_iter().map(|(_, t)| t).collect();
    assert_eq!(lines, ["Hi.", "Sorry, could you repeat that?"]);
}

#[tokio::test]
async fn a_session_that_cannot_be_reconnected_ends_the_call_and_only_that_call() {
    let h = Harness::new().await;
    let healthy = FakeRealtime::start(Interface::Ga).await;
    healthy.push([wait("session.update")]);
    let other = h.call("", providers(&healthy, Interface::Ga, None)).await;

    let fake = FakeRealtime::start(Interface::Beta).await;
    // Every session is closed by the server as soon as it is set up: the
    // first one and each reconnect (MAX_RECONNECTS = 2).
    let close = || {
        [
            wait("session.update"),
            RealtimeScript::Close(1011, "internal error".into()),
        ]
    };
    fake.push(close().into_iter().chain(close()).chain(close()));
    let mut call = h.call("", providers(&fake, Interface::Beta, None)).await;
    let mut seen = Seen::default();
    let deadline = tokio::time::Instant::now() + LIMIT;
    while call.handle.info().await.is_ok_and(|i| i.ending.is_none()) {
        assert!(tokio::time::Instant::now() < deadline, "call did not end");
        call.talk(20, &mut seen).await;
    }
    call.stopped().await;
    call.drain(&mut seen);
    assert_eq!(seen.closed, Some(EndReason::ProviderError));
    assert_eq!(fake.connections().len(), 3, "the first session and two reconnects");
    let row = h
        .store
        .calls()
        .get(Scope::All, call.handle.call_id())
        .await
        .expect("row");
    assert_eq!(row.status, CallStatus::Failed);
    assert_eq!(row.end_reason, Some(EndReason::ProviderError));

    // The other call is alive and well, and ends normally.
    let info = other.handle.info().await.expect("other call alive");
    assert!(info.ending.is_none());
    assert_eq!(h.tree.registry().calls().len(), 1);
    other.handle.stream_stopped().expect("stop");
    other.stopped().await;
    let row = h
        .store
        .calls()
        .get(Scope::All, other.handle.call_id())
        .await
        .expect("row");
    assert_eq!(row.status, CallStatus::Completed);
    assert!(h.tree.registry().calls().is_empty());
}

#[tokio::test]
async fn a_session_that_never_connects_ends_the_call() {
    let h = Harness::new().await;
    // Nothing listens on port 1: every connect is refused at once (a freed
    // port of a dropped fake could be rebound by a test running alongside).
    let providers = providers_at("ws://127.0.0.1:1/v1/realtime".to_owned(), Interface::Ga, None);
    let mut call = h.call("Hello.", providers).await;
    let mut seen = Seen::default();
    let deadline = tokio::time::Instant::now() + LIMIT;
    while call.handle.info().await.is_ok_and(|i| i.ending.is_none()) {
        assert!(tokio::time::Instant::now() < deadline, "call did not end");
        call.talk(20, &mut seen).await;
    }
    call.stopped().await;
    call.drain(&mut seen);
    assert_eq!(seen.closed, Some(EndReason::ProviderError));
    assert_eq!(seen.frames, 0);
    let row = h
        .store
        .calls()
        .get(Scope::All, call.handle.call_id())
        .await
        .expect("row");
    assert_eq!(row.end_reason, Some(EndReason::ProviderError));
    assert!(h.tree.registry().calls().is_empty());
}
