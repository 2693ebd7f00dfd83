//! The call actor's speech loop, driven like the media socket drives it:
//! μ-law frames in, `MediaOut` frames/marks/clears out, marks echoed back.
//! Providers are scripted in-process; the recorder is a real SQLite store.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use switchboard_actors::{
    AgentSessionHandle, AgentSubject, AudioIn, CallHandle, CallSpec, EventSink, FRAME_BYTES, LiveCall, MediaOut, Tree,
    TreeConfig,
};
use switchboard_domain::{
    Agent, CallDirection, CallEvent, CallEventKind, CallStatus, EndReason, Endpointing, NewAgent, NewCall, NewTenant,
    ProviderChoice, Speaker, StreamSid,
};
use switchboard_media::ulaw;
use switchboard_media::vad::synth::{silence, to_i16, voiced};
use switchboard_providers::capability::Speaker as HistorySpeaker;
use switchboard_providers::{
    AgentOutput, AgentTurn, CallProviders, ConversationAgent, PcmChunk, ProviderError, RuleAgent, SpeechToText,
    StreamConfig, SttEvent, SttStream, TextToSpeech, TurnInput,
};
use switchboard_store::{Scope, Store};
use tokio::sync::mpsc;

/// STT that "hears" a fixed sentence for every utterance with at least `min_samples` of audio.
struct ScriptedStt {
    text: &'static str,
    heard: Arc<Mutex<Vec<usize>>>,
}

struct ScriptedSttStream {
    text: &'static str,
    samples: usize,
    finished: bool,
    done: bool,
    heard: Arc<Mutex<Vec<usize>>>,
}

impl SpeechToText for ScriptedStt {
    fn start(&self, config: StreamConfig) -> BoxFuture<'_, Result<Box<dyn SttStream>, ProviderError>> {
        assert_eq!(config.sample_rate, 16_000);
        let stream = ScriptedSttStream {
            text: self.text,
            samples: 0,
            finished: false,
            done: false,
            heard: Arc::clone(&self.heard),
        };
        Box::pin(async move { Ok(Box::new(stream) as Box<dyn SttStream>) })
    }
}

impl SttStream for ScriptedSttStream {
    fn push_audio<'a>(&'a mut self, samples: &'a [i16]) -> BoxFuture<'a, Result<(), ProviderError>> {
        self.samples += samples.len();
        Box::pin(async { Ok(()) })
    }
    fn finish(&mut self) -> BoxFuture<'_, Result<(), ProviderError>> {
        self.finished = true;
        self.heard.lock().expect("lock").push(self.samples);
        Box::pin(async { Ok(()) })
    }
    fn next_event(&mut self) -> BoxFuture<'_, Result<Option<SttEvent>, ProviderError>> {
        let event = (self.finished && !self.done).then(|| {
            self.done = true;
            SttEvent::Final {
                text: self.text.to_owned(),
                start_ms: 0,
                end_ms: (self.samples / 16) as u64,
            }
        });
        Box::pin(async move { Ok(event) })
    }
}

/// TTS that speaks 120 ms of a 24 kHz tone per word, in one chunk per word.
struct ToneTts;

impl TextToSpeech for ToneTts {
    fn synthesize(&self, text: String, _voice: String) -> BoxStream<'static, Result<PcmChunk, ProviderError>> {
        let words = text.split_whitespace().count().max(1);
        let chunks: Vec<Result<PcmChunk, ProviderError>> = (0..words)
            .map(|_| {
                Ok(PcmChunk {
                    sample_rate: 24_000,
                    samples: (0..2880).map(|i| ((i as f32 * 0.2).sin() * 6000.0) as i16).collect(),
                })
            })
            .collect();
        Box::pin(futures::stream::iter(chunks))
    }
}

/// An agent that records its inputs and answers with a fixed reply.
struct EchoAgent {
    inputs: Arc<Mutex<Vec<AgentTurn>>>,
    reply: &'static str,
}

impl ConversationAgent for EchoAgent {
    fn respond(&self, turn: AgentTurn) -> BoxStream<'static, Result<AgentOutput, ProviderError>> {
        let reply = match &turn.input {
            TurnInput::Dtmf(d) => format!("You pressed {d}."),
            TurnInput::UserText(_) => self.reply.to_owned(),
        };
        self.inputs.lock().expect("lock").push(turn);
        Box::pin(futures::stream::iter([Ok(AgentOutput::Text(reply))]))
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
    _dir: tempfile::TempDir,
}

struct Call {
    handle: CallHandle,
    out: mpsc::Receiver<MediaOut>,
    events: Arc<Events>,
    agent: Agent,
    recording: std::path::PathBuf,
    /// Stream clock of the next caller frame.
    ts: u64,
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
            _dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    async fn call(
        &self,
        greeting: &str,
        endpointing: Endpointing,
        settings: serde_json::Value,
        providers: CallProviders,
    ) -> Call {
        let tenant = self
            .store
            .tenants()
            .create(NewTenant {
                name: format!("T{}", uuid_like()),
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
                    system_prompt: String::new(),
                    greeting: greeting.into(),
                    language: "en-US".into(),
                    voice: "en-us".into(),
                    stt: ProviderChoice::new("local"),
                    tts: ProviderChoice::new("local"),
                    llm: ProviderChoice::new("rules"),
                    tools: vec![],
                    endpointing,
                    settings,
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
        let recording = self._dir.path().join(format!("{}.wav", row.id));
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
                    agent: agent.clone(),
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
            agent,
            recording,
            ts: 0,
        }
    }
}

fn uuid_like() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn providers(agent: Arc<dyn ConversationAgent>) -> (CallProviders, Arc<Mutex<Vec<usize>>>) {
    let heard = Arc::new(Mutex::new(Vec::new()));
    (
        CallProviders {
            stt: Arc::new(ScriptedStt {
                text: "I would like to book an appointment",
                heard: Arc::clone(&heard),
            }),
            tts: Arc::new(ToneTts),
            agent,
            telephony: None,
            context: Default::default(),
            backup: Default::default(),
            realtime: None,
        },
        heard,
    )
}

fn rules() -> serde_json::Value {
    serde_json::json!({
        "rules": [
            {"pattern": "appointment", "reply": "Sure. What day works for you?"},
            {"pattern": "bye", "reply": "Goodbye!", "action": "hangup"}
        ],
        "fallback": "Sorry?"
    })
}

/// What the socket task saw, as counts.
#[derive(Debug, Default)]
struct Seen {
    frames: usize,
    marks: Vec<String>,
    clears: usize,
    closed: Option<EndReason>,
}

impl Call {
    /// Sends `pcm` (8 kHz) as 20 ms frames at real-time pace (the tests run
    /// on the real clock, which also paces the bot's playback and idle timers),
    /// echoing marks like Twilio after the audio before them has played.
    async fn speak(&mut self, pcm: &[i16], seen: &mut Seen) {
        for chunk in pcm.chunks(FRAME_BYTES) {
            let mut frame = AudioIn {
                ulaw: [ulaw::SILENCE; FRAME_BYTES],
                len: FRAME_BYTES as u8,
                timestamp_ms: self.ts,
            };
            ulaw::encode_into(chunk, &mut frame.ulaw);
            if self.handle.audio(frame).is_err() {
                // The call ended (the tests that end it check why).
                return;
            }
            self.ts += 20;
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.drain(seen);
        }
    }

    async fn silence(&mut self, ms: u32, seen: &mut Seen) {
        self.speak(&to_i16(&silence(8000, ms)), seen).await;
    }

    /// Feeds silence (echoing marks) until `done` holds, the call ends, or
    /// [`PATIENCE`] has passed; the exact checks that follow then say what is
    /// wrong. The tests' agents have no idle timeout, so the extra silence
    /// makes the bot say nothing more: only slow machines wait longer.
    async fn silence_until(&mut self, seen: &mut Seen, mut done: impl FnMut(&Call, &Seen) -> bool) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !done(self, seen) && tokio::time::Instant::now() < deadline {
            if self.handle.info().await.is_err() {
                // The call ended: nothing more will change.
                self.drain(seen);
                return;
            }
            self.silence(20, seen).await;
        }
    }

    /// The agent lines settled so far (each is stored before its
    /// `TranscriptFinal` is published), including cut ones.
    fn agent_finals(&self) -> Vec<String> {
        self.events
            .0
            .lock()
            .expect("lock")
            .iter()
            .filter_map(|e| match &e.kind {
                CallEventKind::TranscriptFinal {
                    speaker: Speaker::Agent,
                    text,
                    ..
                } => Some(text.clone()),
                _ => None,
            })
            .collect()
    }

    /// Feeds silence until the agent has fully said `line` (its last mark
    /// was echoed and the line stored), bounded by [`PATIENCE`].
    async fn until_said(&mut self, line: &str, seen: &mut Seen) {
        self.silence_until(seen, |call, _| call.agent_finals().iter().any(|l| l == line))
            .await;
    }

    /// Reads what the actor sent; echoes every mark at once (the audio before
    /// a mark has been handed over at real-time pace by then).
    fn drain(&mut self, seen: &mut Seen) {
        while let Ok(out) = self.out.try_recv() {
            match out {
                MediaOut::Media(_) => seen.frames += 1,
                MediaOut::Mark(name) => {
                    seen.marks.push(name.to_string());
                    let _ = self.handle.mark(name.to_string());
                }
                MediaOut::Clear => seen.clears += 1,
                MediaOut::Close(reason) => seen.closed = Some(reason),
            }
        }
    }
}

/// Bound on every condition-based wait: generous, since CI machines are loaded.
const PATIENCE: Duration = Duration::from_secs(20);

fn endpointing() -> Endpointing {
    Endpointing {
        vad_threshold: 0.5,
        min_speech_ms: 300,
        silence_ms: 500,
        idle_timeout_ms: 0,
    }
}

fn speech(ms: u32) -> Vec<i16> {
    to_i16(&voiced(8000, ms, 12000.0, 7))
}

#[tokio::test]
async fn greets_hears_answers_and_stores_the_transcript() {
    let h = Harness::new().await;
    let agent = Arc::new(RuleAgent::from_settings(&rules()).expect("rules"));
    let (p, heard) = providers(agent);
    let mut call = h.call("Hello, this is Acme.", endpointing(), rules(), p).await;
    let mut seen = Seen::default();

    // The greeting plays first: 4 words x 120 ms of tone = 24 frames, one mark per chunk
    // plus one per sentence end. (Waiting until it was heard also keeps the caller
    // from talking over it.)
    call.until_said("Hello, this is Acme.", &mut seen).await;
    assert_eq!(seen.frames, 24, "greeting frames");
    assert!(seen.marks.iter().all(|m| m.starts_with("t0:")), "{:?}", seen.marks);

    // The caller speaks; the scripted STT hears the booking request; the rule agent answers.
    call.speak(&speech(1200), &mut seen).await;
    call.until_said("Sure. What day works for you?", &mut seen).await;
    let heard = heard.lock().expect("lock").clone();
    assert_eq!(heard.len(), 1, "one utterance went to STT");
    assert!(
        heard[0] >= 16 * 1200,
        "STT got the whole utterance plus preroll: {heard:?}"
    );
    // "Sure. What day works for you?" = 1 + 5 words of tone.
    assert_eq!(seen.frames, 24 + 36, "reply frames");
    assert_eq!(seen.clears, 0);

    call.handle.stream_stopped().expect("stop");
    call.handle.stopped().await;
    call.drain(&mut seen);
    assert_eq!(seen.closed, Some(EndReason::CallerHangup));

    let row = h
        .store
        .calls()
        .get(Scope::All, call.handle.call_id())
        .await
        .expect("row");
    assert_eq!(row.status, CallStatus::Completed);
    let lines: Vec<(Speaker, String)> = h
        .store
        .transcripts()
        .list(call.handle.call_id())
        .await
        .expect("transcript")
        .into_iter()
        .map(|s| (s.speaker, s.text))
        .collect();
    assert_eq!(
        lines,
        vec![
            (Speaker::Agent, "Hello, this is Acme.".to_owned()),
            (Speaker::Caller, "I would like to book an appointment".to_owned()),
            (Speaker::Agent, "Sure. What day works for you?".to_owned()),
        ]
    );
    let turns = h.store.turns().list(call.handle.call_id()).await.expect("turns");
    assert_eq!(turns.iter().map(|t| t.turn_id).collect::<Vec<_>>(), vec![0, 1]);
    let answer = turns[1];
    // Every stage was reached, in order, after the caller stopped speaking.
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
    assert!(
        stages[0] >= 500,
        "the endpointing silence is part of the STT stage: {stages:?}"
    );

    // Events: started, transcripts in order, latencies, and the end after the row was final.
    let kinds = call.events.kinds();
    assert!(matches!(kinds.first(), Some(CallEventKind::CallStarted { .. })));
    assert!(matches!(
        kinds.last(),
        Some(CallEventKind::CallEnded {
            status: CallStatus::Completed,
            reason: EndReason::CallerHangup
        })
    ));
    let finals: Vec<&str> = kinds
        .iter()
        .filter_map(|k| match k {
            CallEventKind::TranscriptFinal { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(finals.len(), 3);
    assert_eq!(
        kinds
            .iter()
            .filter(|k| matches!(k, CallEventKind::TurnLatency(_)))
            .count(),
        2
    );

    // The recording has both sides: the caller's speech left, the bot's tones right.
    let wav = std::fs::read(&call.recording).expect("recording");
    assert_eq!(u16::from_le_bytes([wav[22], wav[23]]), 2, "stereo");
    let samples: Vec<(i16, i16)> = wav[44..]
        .chunks_exact(4)
        .map(|c| (i16::from_le_bytes([c[0], c[1]]), i16::from_le_bytes([c[2], c[3]])))
        .collect();
    assert!(samples.iter().any(|(l, _)| l.abs() > 3000), "caller side has speech");
    assert!(samples.iter().any(|(_, r)| r.abs() > 3000), "bot side has audio");
    assert_eq!(
        row.recording_url.as_deref(),
        Some(call.recording.display().to_string().as_str())
    );
    assert!(h.tree.registry().calls().is_empty());
    let _ = &call.agent;
}

#[tokio::test]
async fn caller_speech_over_the_bot_clears_playback_and_cuts_the_context() {
    let h = Harness::new().await;
    let inputs = Arc::new(Mutex::new(Vec::new()));
    let agent = Arc::new(EchoAgent {
        inputs: Arc::clone(&inputs),
        reply: "Okay.",
    });
    let (p, _) = providers(agent);
    let greeting = "Welcome to the long greeting that keeps on going with many words so that the caller can interrupt it halfway through.";
    let mut call = h.call(greeting, endpointing(), serde_json::json!({}), p).await;
    let mut seen = Seen::default();

    // 300 ms into the greeting, a 150 ms "uh-huh" does not interrupt.
    call.silence_until(&mut seen, |_, seen| seen.frames > 0).await;
    assert!(seen.frames > 0, "the greeting started");
    call.silence(300, &mut seen).await;
    call.speak(&speech(150), &mut seen).await;
    call.silence(600, &mut seen).await;
    assert_eq!(seen.clears, 0, "a backchannel below min_speech_ms is not a barge-in");

    // Real speech does, within min_speech_ms (+ one frame) of its start.
    let frames_before = seen.frames;
    let pcm = speech(1000);
    let mut cleared_after_ms = None;
    for (k, chunk) in pcm.chunks(8 * 20).enumerate() {
        call.speak(chunk, &mut seen).await;
        // A round trip through the actor's mailbox: the frame was handled, so a
        // clear it caused is queued; the delay is counted in stream time only.
        call.handle.info().await.expect("call info");
        call.drain(&mut seen);
        if seen.clears > 0 && cleared_after_ms.is_none() {
            cleared_after_ms = Some((k as u64 + 1) * 20);
        }
    }
    let cleared_after_ms = cleared_after_ms.expect("clear sent");
    assert!(
        cleared_after_ms <= 300 + 100,
        "clear after {cleared_after_ms} ms of speech"
    );
    assert!(seen.frames > frames_before, "the greeting was still playing");
    call.silence_until(&mut seen, |call, _| {
        !inputs.lock().expect("lock").is_empty()
            && call
                .events
                .kinds()
                .iter()
                .any(|k| matches!(k, CallEventKind::BargeIn { .. }))
    })
    .await;

    // The agent saw the greeting cut to what was heard, at a word boundary.
    let inputs = inputs.lock().expect("lock").clone();
    assert_eq!(inputs.len(), 1);
    let history = &inputs[0].history;
    assert_eq!(history.len(), 1, "{history:?}");
    let heard = &history[0].text;
    assert!(!heard.is_empty() && heard.len() < greeting.len(), "heard: {heard:?}");
    assert!(greeting.starts_with(heard.as_str()), "heard: {heard:?}");
    assert!(
        greeting[heard.len()..].starts_with(' '),
        "cut at a word boundary: {heard:?}"
    );
    let kinds = call.events.kinds();
    let barge = kinds
        .iter()
        .find_map(|k| match k {
            CallEventKind::BargeIn {
                heard_text, turn_id, ..
            } => Some((heard_text.clone(), *turn_id)),
            _ => None,
        })
        .expect("barge-in event");
    assert_eq!(&barge.0, heard);
    assert_eq!(barge.1, 0);
    call.handle.hangup(EndReason::CallerHangup).expect("hangup");
    call.handle.stopped().await;
    let lines = h
        .store
        .transcripts()
        .list(call.handle.call_id())
        .await
        .expect("transcript");
    assert_eq!(lines[0].text, *heard, "the stored agent line is what was heard");
}

#[tokio::test]
async fn dtmf_reaches_the_agent_and_silence_reprompts_then_hangs_up() {
    let h = Harness::new().await;
    let inputs = Arc::new(Mutex::new(Vec::new()));
    let agent = Arc::new(EchoAgent {
        inputs: Arc::clone(&inputs),
        reply: "Okay.",
    });
    let (p, _) = providers(agent);
    let mut ep = endpointing();
    ep.idle_timeout_ms = 2000;
    let settings = serde_json::json!({"reprompt": "Hello? Anyone?", "goodbye": "Bye now."});
    let mut call = h.call("", ep, settings, p).await;
    let mut seen = Seen::default();

    call.handle.dtmf("5".into()).expect("dtmf");
    call.silence_until(&mut seen, |_, _| !inputs.lock().expect("lock").is_empty())
        .await;
    assert_eq!(inputs.lock().expect("lock")[0].input, TurnInput::Dtmf("5".into()));
    // Then nothing: reprompt after 2 s, goodbye after 2 more, then the call ends.
    until_stopped(&mut call, &mut seen).await;
    let row = h
        .store
        .calls()
        .get(Scope::All, call.handle.call_id())
        .await
        .expect("row");
    assert_eq!(row.end_reason, Some(EndReason::SilenceTimeout));
    let agent_lines: Vec<String> = h
        .store
        .transcripts()
        .list(call.handle.call_id())
        .await
        .expect("transcript")
        .into_iter()
        .filter(|s| s.speaker == Speaker::Agent)
        .map(|s| s.text)
        .collect();
    assert_eq!(agent_lines, vec!["You pressed 5.", "Hello? Anyone?", "Bye now."]);
    assert!(
        call.events
            .kinds()
            .contains(&CallEventKind::Dtmf { digits: "5".into() })
    );
}

/// An agent that fails its first `fail` turns (a 500, or a panic when
/// `panic` is set) and then answers; it records every turn it was given.
struct FlakyAgent {
    fail: std::sync::atomic::AtomicU32,
    panic: bool,
    turns: Arc<Mutex<Vec<AgentTurn>>>,
}

impl FlakyAgent {
    fn new(fail: u32, panic: bool) -> (Arc<Self>, Arc<Mutex<Vec<AgentTurn>>>) {
        let turns = Arc::new(Mutex::new(Vec::new()));
        let agent = Arc::new(Self {
            fail: std::sync::atomic::AtomicU32::new(fail),
            panic,
            turns: Arc::clone(&turns),
        });
        (agent, turns)
    }
}

impl ConversationAgent for FlakyAgent {
    fn respond(&self, turn: AgentTurn) -> BoxStream<'static, Result<AgentOutput, ProviderError>> {
        self.turns.lock().expect("lock").push(turn);
        let failing = self
            .fail
            .fetch_update(
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
                |n| n.checked_sub(1),
            )
            .is_ok();
        match (failing, self.panic) {
            (true, true) => Box::pin(futures::stream::once(async { panic!("agent blew up") })),
            (true, false) => Box::pin(futures::stream::iter([Err(ProviderError::new(
                "flaky",
                switchboard_providers::ProviderErrorKind::Status(500),
            ))])),
            (false, _) => Box::pin(futures::stream::iter([Ok(AgentOutput::Text(
                "Sure, it is booked.".into(),
            ))])),
        }
    }
}

/// STT whose every session fails to open.
struct DownStt;

impl SpeechToText for DownStt {
    fn start(&self, _config: StreamConfig) -> BoxFuture<'_, Result<Box<dyn SttStream>, ProviderError>> {
        Box::pin(async {
            Err(ProviderError::new(
                "down_stt",
                switchboard_providers::ProviderErrorKind::Status(503),
            ))
        })
    }
}

/// TTS that always fails.
struct DownTts;

impl TextToSpeech for DownTts {
    fn synthesize(&self, _text: String, _voice: String) -> BoxStream<'static, Result<PcmChunk, ProviderError>> {
        Box::pin(futures::stream::iter([Err(ProviderError::new(
            "down_tts",
            switchboard_providers::ProviderErrorKind::Timeout,
        ))]))
    }
}

fn faults(max_failures: u32) -> serde_json::Value {
    serde_json::json!({
        "faults": {
            "line": "One moment please.",
            "repeat_line": "Sorry, say that again?",
            "max_failures": max_failures,
            "give_up_line": "We have a problem. Goodbye."
        }
    })
}

async fn agent_lines(h: &Harness, call: &Call) -> Vec<String> {
    h.store
        .transcripts()
        .list(call.handle.call_id())
        .await
        .expect("transcript")
        .into_iter()
        .filter(|s| s.speaker == Speaker::Agent)
        .map(|s| s.text)
        .collect()
}

/// Feeds silence (echoing marks) until the call ends, bounded by [`PATIENCE`];
/// fails if it does not.
async fn until_stopped(call: &mut Call, seen: &mut Seen) {
    call.silence_until(seen, |_, _| false).await;
    tokio::time::timeout(PATIENCE, call.handle.stopped())
        .await
        .expect("the call ended");
}

#[tokio::test]
async fn a_failed_answer_says_the_fault_line_and_is_retried_with_its_context() {
    for panic in [false, true] {
        let h = Harness::new().await;
        let (agent, turns) = FlakyAgent::new(1, panic);
        let (p, _) = providers(agent);
        let mut call = h.call("Hi there.", endpointing(), faults(2), p).await;
        let mut seen = Seen::default();
        call.until_said("Hi there.", &mut seen).await;
        call.speak(&speech(1000), &mut seen).await;
        call.until_said("Sure, it is booked.", &mut seen).await;

        // The call survived, said the fault line, then the retried answer.
        assert!(call.handle.info().await.is_ok(), "panic={panic}: the call goes on");
        let turns = turns.lock().expect("lock").clone();
        assert_eq!(turns.len(), 2, "panic={panic}: one failure, one retry");
        assert_eq!(turns[0].input, turns[1].input, "the same input is answered again");
        // The restarted agent keeps the context: the greeting, and the
        // caller's line only once (as the input, not also in the history).
        assert_eq!(turns[1].history, turns[0].history, "panic={panic}");
        assert_eq!(turns[1].history.len(), 1);
        assert_eq!(turns[1].history[0].text, "Hi there.");
        // A panic crashed the agent's client actor, which its session restarted.
        let session = session_of(&h, &call);
        let info = session.info().await.expect("session info");
        assert_eq!(info.client_restarts, u32::from(panic), "panic={panic}");
        call.handle.stream_stopped().expect("stop");
        call.handle.stopped().await;
        assert_eq!(
            agent_lines(&h, &call).await,
            vec!["Hi there.", "One moment please.", "Sure, it is booked."],
            "panic={panic}"
        );
        let row = h
            .store
            .calls()
            .get(Scope::All, call.handle.call_id())
            .await
            .expect("row");
        assert_eq!(row.end_reason, Some(EndReason::CallerHangup));
    }
}

#[tokio::test]
async fn an_agent_that_keeps_failing_gives_up_politely_and_ends_its_call_only() {
    let h = Harness::new().await;
    let (bad_agent, bad_turns) = FlakyAgent::new(u32::MAX, true);
    let (bad, _) = providers(bad_agent);
    let mut broken = h.call("", endpointing(), faults(1), bad).await;
    let good_agent = Arc::new(RuleAgent::from_settings(&rules()).expect("rules"));
    let (good, _) = providers(good_agent);
    let mut healthy = h.call("Hi there.", endpointing(), rules(), good).await;
    let mut seen_broken = Seen::default();
    let mut seen_healthy = Seen::default();

    broken.speak(&speech(800), &mut seen_broken).await;
    until_stopped(&mut broken, &mut seen_broken).await;
    broken.drain(&mut seen_broken);
    assert_eq!(
        seen_broken.closed,
        Some(EndReason::ProviderError),
        "the socket is told why"
    );
    // One failure tolerated (fault line, retry), the second gives up.
    assert_eq!(bad_turns.lock().expect("lock").len(), 2);
    assert_eq!(
        agent_lines(&h, &broken).await,
        vec!["One moment please.", "We have a problem. Goodbye."]
    );
    let row = h
        .store
        .calls()
        .get(Scope::All, broken.handle.call_id())
        .await
        .expect("row");
    assert_eq!(row.end_reason, Some(EndReason::ProviderError));
    assert_eq!(row.status, CallStatus::Failed);

    // The other call is still live and still answers.
    healthy.until_said("Hi there.", &mut seen_healthy).await;
    healthy.speak(&speech(1000), &mut seen_healthy).await;
    healthy
        .silence_until(&mut seen_healthy, |_, seen| seen.frames >= 12 + 36)
        .await;
    assert!(healthy.handle.info().await.is_ok());
    assert!(seen_healthy.frames >= 12 + 36, "frames: {}", seen_healthy.frames);
    assert_eq!(h.tree.registry().calls().len(), 1);
}

#[tokio::test]
async fn failing_speech_providers_switch_to_the_secondaries() {
    let h = Harness::new().await;
    let agent = Arc::new(RuleAgent::from_settings(&rules()).expect("rules"));
    let (mut p, heard) = providers(agent);
    // The primaries are down; the secondaries are the working scripted ones.
    p.backup.stt = Some(Arc::clone(&p.stt));
    p.backup.tts = Some(Arc::clone(&p.tts));
    p.stt = Arc::new(DownStt);
    p.tts = Arc::new(DownTts);
    let mut settings = rules();
    settings["faults"] = faults(3)["faults"].clone();
    let mut call = h.call("Hello, this is Acme.", endpointing(), settings, p).await;
    let mut seen = Seen::default();

    // The greeting fails on the primary TTS and is said again on the secondary.
    call.until_said("Hello, this is Acme.", &mut seen).await;
    assert!(seen.frames >= 24, "the greeting played: {} frames", seen.frames);
    let greeting_frames = seen.frames;
    // The first utterance is lost to the broken STT: the caller is asked to repeat.
    call.speak(&speech(1000), &mut seen).await;
    call.until_said("Sorry, say that again?", &mut seen).await;
    assert!(heard.lock().expect("lock").is_empty(), "the primary STT heard it");
    // Said again, it reaches the secondary STT and is answered.
    call.speak(&speech(1000), &mut seen).await;
    call.until_said("Sure. What day works for you?", &mut seen).await;
    assert_eq!(
        heard.lock().expect("lock").len(),
        1,
        "the secondary STT heard the repeat"
    );
    assert!(seen.frames > greeting_frames + 36, "frames: {}", seen.frames);
    call.handle.stream_stopped().expect("stop");
    call.handle.stopped().await;
    assert_eq!(
        agent_lines(&h, &call).await,
        vec![
            "Hello, this is Acme.",
            "Sorry, say that again?",
            "Sure. What day works for you?"
        ]
    );
}

/// The live agent session of `call`.
fn session_of(h: &Harness, call: &Call) -> AgentSessionHandle {
    let subject = AgentSubject::Call(call.handle.call_id());
    let mut sessions = h.tree.registry().agent_sessions().filter(|s| s.subject() == subject);
    assert_eq!(sessions.len(), 1, "one agent session per call");
    sessions.remove(0)
}

/// STT that panics when its `panic_on`-th session (1-based) opens.
struct PanickyStt {
    inner: ScriptedStt,
    starts: std::sync::atomic::AtomicU32,
    panic_on: u32,
}

impl SpeechToText for PanickyStt {
    fn start(&self, config: StreamConfig) -> BoxFuture<'_, Result<Box<dyn SttStream>, ProviderError>> {
        let n = self.starts.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        assert!(n != self.panic_on, "STT adapter blew up");
        self.inner.start(config)
    }
}

/// TTS whose first synthesis panics mid-stream.
struct PanickyTts {
    armed: std::sync::atomic::AtomicBool,
}

impl TextToSpeech for PanickyTts {
    fn synthesize(&self, text: String, voice: String) -> BoxStream<'static, Result<PcmChunk, ProviderError>> {
        if self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            return Box::pin(futures::stream::once(async { panic!("TTS adapter blew up") }));
        }
        ToneTts.synthesize(text, voice)
    }
}

/// An agent that answers from a script, panicking where the script says so.
struct ScriptedAgent {
    answers: Mutex<std::collections::VecDeque<Option<&'static str>>>,
    turns: Arc<Mutex<Vec<AgentTurn>>>,
}

impl ConversationAgent for ScriptedAgent {
    fn respond(&self, turn: AgentTurn) -> BoxStream<'static, Result<AgentOutput, ProviderError>> {
        self.turns.lock().expect("lock").push(turn);
        let next = self.answers.lock().expect("lock").pop_front();
        match next {
            Some(Some(text)) => Box::pin(futures::stream::iter([Ok(AgentOutput::Text(text.to_owned()))])),
            Some(None) => panic!("agent adapter blew up"),
            None => Box::pin(futures::stream::iter([Ok(AgentOutput::Text(
                "Out of script.".to_owned(),
            ))])),
        }
    }
}

#[tokio::test]
async fn crashed_provider_clients_are_restarted_and_the_session_keeps_its_context() {
    let h = Harness::new().await;
    let turns = Arc::new(Mutex::new(Vec::new()));
    let agent = Arc::new(ScriptedAgent {
        answers: Mutex::new(
            [
                Some("First answer."),
                None,
                Some("Second answer."),
                Some("Third answer."),
            ]
            .into(),
        ),
        turns: Arc::clone(&turns),
    });
    let (mut p, heard) = providers(agent);
    p.stt = Arc::new(PanickyStt {
        inner: ScriptedStt {
            text: "I would like to book an appointment",
            heard: Arc::clone(&heard),
        },
        starts: Default::default(),
        panic_on: 3,
    });
    p.tts = Arc::new(PanickyTts {
        armed: std::sync::atomic::AtomicBool::new(true),
    });
    let mut call = h.call("Hi there.", endpointing(), faults(3), p).await;
    let session = session_of(&h, &call);
    let mut seen = Seen::default();

    // The TTS client crashes on the greeting: restarted, the greeting is said again.
    call.until_said("Hi there.", &mut seen).await;
    // First utterance: answered.
    call.speak(&speech(1000), &mut seen).await;
    call.until_said("First answer.", &mut seen).await;
    // Second: the agent client crashes; fault line, then the retry is answered.
    call.speak(&speech(1000), &mut seen).await;
    call.until_said("Second answer.", &mut seen).await;
    // Third: the STT client crashes; the caller is asked to say it again.
    call.speak(&speech(1000), &mut seen).await;
    call.until_said("Sorry, say that again?", &mut seen).await;
    // Fourth: answered, with the whole conversation as context.
    call.speak(&speech(1000), &mut seen).await;
    call.until_said("Third answer.", &mut seen).await;

    assert!(call.handle.info().await.is_ok(), "the call survived three crashes");
    let info = session.info().await.expect("session");
    assert_eq!(info.client_restarts, 3, "{info:?}");
    let caller = "I would like to book an appointment";
    let context: Vec<(HistorySpeaker, String)> = session
        .context()
        .await
        .expect("context")
        .into_iter()
        .map(|e| (e.speaker, e.text))
        .collect();
    let expected: Vec<(HistorySpeaker, String)> = [
        (HistorySpeaker::Agent, "Hi there."),
        (HistorySpeaker::Caller, caller),
        (HistorySpeaker::Agent, "First answer."),
        (HistorySpeaker::Caller, caller),
        (HistorySpeaker::Agent, "Second answer."),
        (HistorySpeaker::Caller, caller),
        (HistorySpeaker::Agent, "Third answer."),
    ]
    .into_iter()
    .map(|(s, t)| (s, t.to_owned()))
    .collect();
    assert_eq!(context, expected, "fault lines stay out; nothing is lost");
    let turns = turns.lock().expect("lock").clone();
    assert_eq!(turns.len(), 4, "answer, crash, retry, answer");
    assert_eq!(
        turns[2].history, turns[1].history,
        "the retry sees the context the crash saw"
    );
    assert_eq!(
        turns[2].history.iter().map(|e| e.text.as_str()).collect::<Vec<_>>(),
        vec!["Hi there.", caller, "First answer."]
    );
    assert_eq!(turns[3].history.len(), 5);

    call.handle.stream_stopped().expect("stop");
    call.handle.stopped().await;
    assert_eq!(
        agent_lines(&h, &call).await,
        vec![
            "Hi there.",
            "First answer.",
            "One moment please.",
            "Second answer.",
            "Sorry, say that again?",
            "Third answer."
        ]
    );
    // The session (and its clients) ended with the call.
    tokio::time::timeout(PATIENCE, session.stopped())
        .await
        .expect("session stopped");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !h.tree.registry().agent_sessions().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(h.tree.registry().agent_sessions().is_empty(), "unregistered");
}
