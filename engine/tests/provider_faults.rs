//! The provider fault matrix, through real calls: the real engine (webhook,
//! Twilio media socket, call actor, `StandardProviders` with the tenant's
//! stored keys), the synthetic Twilio caller, and every cloud adapter pointed
//! at a protocol-faithful fake by its agent's `base_url`.
//!
//! Each cell of the matrix is one call with its own agent, number and fakes:
//! a fault (a timeout, a 5xx that outlasts the adapter's retries, a 429 whose
//! `Retry-After` is longer than a live call waits, malformed JSON, a body cut
//! mid-way, a body that stalls) of one adapter (OpenAI chat over async-openai,
//! Google STT, Google TTS, OpenAI STT, OpenAI TTS). Every cell must keep the
//! call up: the fault line (the repeat line for STT) is stored and heard,
//! the next good reply is answered, stored and heard, and the caller is the
//! one who hangs up. The cells share one engine, [`CONCURRENT_CALLS`] calls
//! at a time.
//!
//! The test proves what the caller heard by ear: every scripted TTS reply is
//! a pure tone of its own pitch (greeting, fault line, answer, a partial
//! answer, the give-up line), and the caller's recording of the bot is
//! searched for each pitch with a Goertzel filter, in order and at length.
//!
//! Plus: an agent whose LLM keeps failing gives up after `max_failures`
//! (give-up line heard in full, then the engine hangs up with
//! `provider_error`, or transfers through Twilio's REST API), and secondary
//! providers (`settings.fallback_providers`) take over from failing primaries
//! for each capability.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use serde_json::{Value, json};
use switchboard_caller::{CallOptions, CallReport, CallerEvent, Hangup, live, place_call};
use switchboard_domain::{
    CallEvent, CallEventKind, CallId, CallStatus, CredentialKind, E164, EndReason, Endpointing, NewAgent,
    NewCredential, NewPhoneNumber, NewTenant, NewUser, ProviderChoice, Role, Secret, Speaker, TenantId,
};
use switchboard_fakes::google_speech::{FakeGoogleSpeech, GoogleReply};
use switchboard_fakes::openai_chat::{ChatScript, FakeChat};
use switchboard_fakes::openai_speech::{self, FakeOpenAiSpeech, SpeechReply};
use switchboard_fakes::twilio_rest::FakeTwilioRest;
use switchboard_media::vad::synth::{silence, to_i16, voiced};
use switchboard_store::Scope;
use switchboard_testkit::TestApp;
use tokio::sync::mpsc;
use url::Url;

const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const AUTH_TOKEN: &str = "faults-auth-token-0123456789";
const OPENAI_KEY: &str = "sk-faults-test-key";
const GOOGLE_KEY: &str = "AIza-faults-test-key";
const OWNER_EMAIL: &str = "owner@faults.test";
const OWNER_PASSWORD: &str = "a-long-enough-password-1";
const CALLER: &str = "+15557770001";

const GREETING: &str = "Hello, thanks for calling.";
const CALLER_SAYS: &str = "A table for two at seven tonight, please.";
const FAULT_LINE: &str = "Sorry, one moment please.";
const REPEAT_LINE: &str = "Sorry, I missed that, could you say it again?";
const GIVE_UP_LINE: &str = "We are having technical trouble, please call back later, goodbye!";
/// The rule agent's answer (STT and TTS cells).
const RULES_ANSWER: &str = "Your table for two is booked.";
/// The model's answer (LLM cells), streamed in two deltas.
const LLM_ANSWER: [&str; 2] = ["Your table for two ", "is booked for seven tonight."];
/// The first sentence of a model reply that then breaks (cut or stalled).
const PARTIAL_SENTENCE: &str = "Let me check.";

/// The budget of a cell whose fault is silence (a timeout or a stalled
/// body). It also bounds that cell's good requests (the greeting, the
/// recovery), so it leaves seconds to spare on a starved machine; the fakes
/// stay silent for far longer ([`SILENT_FOR`]) or forever.
const SHORT_MS: u64 = 4_000;
/// The budget where the adapter's own retries must all happen first:
/// generous, so a stalled machine cannot cut off an attempt.
const LONG_MS: u64 = 12_000;
/// How long a "timeout" fake waits before its (unused) answer.
const SILENT_FOR: Duration = Duration::from_secs(120);
/// Matrix calls in progress at once: the rest wait for a free slot, so the
/// call starts (and their greetings) do not all land in the same second.
const CONCURRENT_CALLS: usize = 10;

// ------------------------------------------------------------------ tones

/// What each scripted TTS reply sounds like: a pure tone of its own pitch
/// (multiples of 50 Hz, the bin spacing of a 20 ms window at 8 kHz).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Tone {
    Greeting,
    FaultLine,
    Answer,
    /// The audio of a reply that failed after it started.
    Partial,
    GiveUp,
}

impl Tone {
    const ALL: [Tone; 5] = [
        Tone::Greeting,
        Tone::FaultLine,
        Tone::Answer,
        Tone::Partial,
        Tone::GiveUp,
    ];

    fn hz(self) -> u32 {
        match self {
            Tone::Greeting => 400,
            Tone::FaultLine => 700,
            Tone::Answer => 1000,
            Tone::Partial => 1300,
            Tone::GiveUp => 1600,
        }
    }

    fn ms(self) -> u32 {
        match self {
            Tone::Greeting => 300,
            Tone::FaultLine | Tone::Answer => 500,
            Tone::Partial => 400,
            Tone::GiveUp => 600,
        }
    }

    fn samples(self, rate: u32) -> Vec<i16> {
        let n = rate as usize * self.ms() as usize / 1000;
        let step = 2.0 * std::f64::consts::PI * f64::from(self.hz()) / f64::from(rate);
        (0..n).map(|i| (8000.0 * (step * i as f64).sin()) as i16).collect()
    }
}

/// 20 ms at 8 kHz.
const WINDOW: usize = 160;

/// Share of a window's power at `hz` (1.0 for a pure tone on a bin).
fn tone_share(window: &[i16], hz: u32, power: f64) -> f64 {
    let n = window.len() as f64;
    let k = f64::from(hz) * n / 8000.0;
    let coeff = 2.0 * (2.0 * std::f64::consts::PI * k / n).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in window {
        let s0 = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let magnitude = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    2.0 * magnitude / (n * n) / power
}

/// When each tone was first heard and for how long, from the bot audio the
/// caller recorded (8 kHz on the stream clock).
#[derive(Debug, Clone, Copy)]
struct Heard {
    first: Duration,
    ms: u32,
}

/// `a` and `b` were both heard, `a` first.
fn before(a: Option<Duration>, b: Option<Duration>) -> bool {
    matches!((a, b), (Some(a), Some(b)) if a < b)
}

fn heard_tones(bot_audio: &[i16]) -> BTreeMap<Tone, Heard> {
    let mut heard: BTreeMap<Tone, Heard> = BTreeMap::new();
    for (i, window) in bot_audio.chunks_exact(WINDOW).enumerate() {
        let power = window.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / WINDOW as f64;
        if power < 1.0e6 {
            continue;
        }
        let best = Tone::ALL
            .iter()
            .map(|&t| (t, tone_share(window, t.hz(), power)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((tone, _)) = best.filter(|(_, share)| *share > 0.6) {
            let entry = heard.entry(tone).or_insert(Heard {
                first: Duration::from_millis(i as u64 * 20),
                ms: 0,
            });
            entry.ms += 20;
        }
    }
    heard
}

#[test]
fn the_tone_detector_finds_each_tone_in_order_and_at_length() {
    let mut audio = to_i16(&silence(8000, 100));
    audio.extend(Tone::Greeting.samples(8000));
    audio.extend(to_i16(&silence(8000, 200)));
    audio.extend(Tone::Answer.samples(8000));
    audio.extend(to_i16(&voiced(8000, 500, 12000.0, 2)));
    let heard = heard_tones(&audio);
    let greeting = heard[&Tone::Greeting];
    let answer = heard[&Tone::Answer];
    assert!((260..=300).contains(&greeting.ms), "{heard:?}");
    assert!((460..=500).contains(&answer.ms), "{heard:?}");
    assert!(greeting.first < answer.first);
    assert!(!heard.contains_key(&Tone::FaultLine), "speech is no tone: {heard:?}");
    assert!(!heard.contains_key(&Tone::GiveUp), "{heard:?}");
}

// ------------------------------------------------------------------ the engine and its tenant

struct Env {
    app: TestApp,
    tenant: TenantId,
    token: String,
    twilio: FakeTwilioRest,
}

async fn env() -> Env {
    let twilio = FakeTwilioRest::start().await;
    let twilio_base = twilio.base_url();
    let app = TestApp::spawn_with(|s| {
        s.calls.twilio_api_base_url = twilio_base;
        // Recordings play no part in fault handling; many calls at once need the CPU.
        s.calls.record = false;
    })
    .await
    .expect("engine");
    let store = &app.store;
    let tenant = store
        .tenants()
        .create(NewTenant {
            name: "Fault Matrix Bistro".to_owned(),
            notification_email: None,
            max_concurrent_calls: 100,
        })
        .await
        .expect("tenant");
    let credential = |kind, public: Value, secret: (&str, &str)| NewCredential {
        kind,
        label: format!("{kind:?}"),
        public,
        secrets: [(secret.0.to_owned(), Secret::new(secret.1))].into(),
    };
    for new in [
        credential(
            CredentialKind::Twilio,
            json!({"account_sid": ACCOUNT_SID}),
            ("auth_token", AUTH_TOKEN),
        ),
        credential(CredentialKind::OpenAi, json!({}), ("api_key", OPENAI_KEY)),
        credential(CredentialKind::Google, json!({}), ("api_key", GOOGLE_KEY)),
    ] {
        store.credentials().create(tenant.id, new).await.expect("credential");
    }
    store
        .users()
        .create(NewUser {
            tenant_id: Some(tenant.id),
            email: OWNER_EMAIL.to_owned(),
            password: Secret::new(OWNER_PASSWORD),
            role: Role::Owner,
        })
        .await
        .expect("owner");
    let engine = Url::parse(&app.base_url).expect("url");
    let token = live::login(&engine, OWNER_EMAIL, OWNER_PASSWORD).await.expect("login");
    Env {
        app,
        tenant: tenant.id,
        token,
        twilio,
    }
}

impl Env {
    /// A new agent answering `number`.
    async fn agent(
        &self,
        number: &str,
        stt: ProviderChoice,
        tts: ProviderChoice,
        llm: ProviderChoice,
        settings: Value,
    ) {
        let agent = self
            .app
            .store
            .agents()
            .create(
                self.tenant,
                NewAgent {
                    name: format!("faults {number}"),
                    system_prompt: "You take table bookings.".to_owned(),
                    greeting: GREETING.to_owned(),
                    language: "en-US".to_owned(),
                    voice: "default".to_owned(),
                    stt,
                    tts,
                    llm,
                    tools: Vec::new(),
                    endpointing: Endpointing {
                        vad_threshold: 0.5,
                        min_speech_ms: 200,
                        silence_ms: 500,
                        // No reprompts: silence while a provider hangs must not add lines.
                        idle_timeout_ms: 0,
                    },
                    settings,
                    enabled: true,
                },
            )
            .await
            .expect("agent");
        self.app
            .store
            .phone_numbers()
            .create(
                self.tenant,
                NewPhoneNumber {
                    number: E164::parse(number).expect("number"),
                    agent_id: Some(agent.id),
                    label: "faults".to_owned(),
                },
            )
            .await
            .expect("number");
    }

    /// Places a call to `number` that says `caller_audio` after [`LEAD`],
    /// stays until the bot has been quiet for [`IDLE_END`] after it, and watches the
    /// call on the live socket until `call_ended`.
    fn call(&self, number: &str, caller_audio: Vec<i16>) -> tokio::task::JoinHandle<Result<Outcome, String>> {
        self.call_in(None, number, caller_audio)
    }

    /// [`Env::call`], placed once one of `slots` is free; the slot is held
    /// until the call ended.
    fn call_in(
        &self,
        slots: Option<Arc<tokio::sync::Semaphore>>,
        number: &str,
        caller_audio: Vec<i16>,
    ) -> tokio::task::JoinHandle<Result<Outcome, String>> {
        let engine = Url::parse(&self.app.base_url).expect("url");
        let mut opts = CallOptions::new(engine.clone(), ACCOUNT_SID, AUTH_TOKEN, CALLER, number);
        opts.caller_audio = Arc::from(caller_audio);
        opts.lead_silence = LEAD;
        opts.tail = Duration::from_secs(25);
        opts.idle_end = Some(IDLE_END);
        let token = self.token.clone();
        tokio::spawn(async move {
            let _slot = match slots {
                Some(slots) => Some(slots.acquire_owned().await.map_err(|e| format!("slots: {e}"))?),
                None => None,
            };
            let (tx, mut rx) = mpsc::unbounded_channel();
            let call = tokio::spawn(place_call(opts, Some(tx)));
            let mut watcher = None;
            while let Some(event) = rx.recv().await {
                if let CallerEvent::Answered { call_id: Some(id), .. } = event {
                    let mut stream = live::watch(&engine, &token, &id)
                        .await
                        .map_err(|e| format!("watch: {e}"))?;
                    watcher = Some(tokio::spawn(async move {
                        let mut seen = Vec::new();
                        while let Some(Ok(event)) = stream.next().await {
                            let done = matches!(event.kind, CallEventKind::CallEnded { .. });
                            seen.push(event);
                            if done {
                                break;
                            }
                        }
                        seen
                    }));
                    break;
                }
            }
            let report = tokio::time::timeout(Duration::from_secs(120), call)
                .await
                .map_err(|_| "the call did not end within 120 s".to_owned())?
                .map_err(|e| format!("caller task: {e}"))?
                .map_err(|e| format!("caller: {e}"))?;
            let watcher = watcher.ok_or("the engine never answered the webhook")?;
            let events = tokio::time::timeout(Duration::from_secs(30), watcher)
                .await
                .map_err(|_| "call_ended never reached the live socket".to_owned())?
                .map_err(|e| format!("watcher: {e}"))?;
            Ok(Outcome { report, events })
        })
    }

    /// The stored transcript of a finished call.
    async fn transcript(&self, call: CallId) -> Vec<(Speaker, String)> {
        self.app
            .store
            .transcripts()
            .list(call)
            .await
            .expect("transcript")
            .into_iter()
            .map(|l| (l.speaker, l.text))
            .collect()
    }

    async fn row(&self, call: CallId) -> (CallStatus, Option<EndReason>) {
        let row = self.app.store.calls().get(Scope::All, call).await.expect("call row");
        (row.status, row.end_reason)
    }
}

struct Outcome {
    report: CallReport,
    events: Vec<CallEvent>,
}

impl Outcome {
    fn call_id(&self) -> CallId {
        self.report
            .call_id
            .as_deref()
            .expect("the engine names the call")
            .parse()
            .expect("call id")
    }

    fn ended(&self) -> Option<(CallStatus, EndReason)> {
        self.events.iter().rev().find_map(|e| match e.kind {
            CallEventKind::CallEnded { status, reason } => Some((status, reason)),
            _ => None,
        })
    }

    /// Start and end of the caller's `n`-th utterance (from 0) on the stream clock.
    fn utterance(&self, n: usize) -> (Duration, Duration) {
        self.report.caller_speech_segments[n]
    }
}

/// Silence before the caller's first words: the greeting (300 ms) plays
/// meanwhile. Generous, because many calls starting together on a loaded
/// machine can delay a greeting by a second or more (its TTS request may
/// take up to [`SHORT_MS`]), and speech over it is a barge-in.
const LEAD: Duration = Duration::from_millis(4_000);
/// Between the caller's two utterances (STT cells): room for the failed
/// recognition (up to [`SHORT_MS`] after the 500 ms end-of-speech silence)
/// and the whole repeat line (500 ms), with seconds to spare on a loaded
/// machine.
const GAP_MS: u32 = 10_000;
/// The caller hangs up once the bot has been quiet this long after the
/// caller's last words (and spoke after them). It must outlast the longest
/// quiet the call has between two lines: after a partial reply, the stall
/// (up to [`SHORT_MS`]) and the fault line's synthesis.
const IDLE_END: Duration = Duration::from_secs(8);

fn utterance(seed: u64) -> Vec<i16> {
    to_i16(&voiced(8000, 900, 12000.0, seed))
}

fn one_utterance() -> Vec<i16> {
    utterance(3)
}

fn two_utterances() -> Vec<i16> {
    let mut audio = utterance(3);
    audio.extend(to_i16(&silence(8000, GAP_MS)));
    audio.extend(utterance(5));
    audio
}

fn choice(provider: &str, base_url: String) -> ProviderChoice {
    ProviderChoice {
        provider: provider.to_owned(),
        model: None,
        base_url: Some(base_url),
    }
}

fn faults_settings(extra: Value) -> Value {
    let mut settings = json!({
        "rules": [],
        "fallback": RULES_ANSWER,
        "faults": {
            "line": FAULT_LINE,
            "repeat_line": REPEAT_LINE,
            "give_up_line": GIVE_UP_LINE,
            "max_failures": 3,
        },
    });
    if let (Some(into), Some(from)) = (settings.as_object_mut(), extra.as_object()) {
        for (k, v) in from {
            into.insert(k.clone(), v.clone());
        }
    }
    settings
}

/// The chat requests a call made (the post-call summary's requests are not
/// streamed, and are not the call's).
fn streamed_requests(chat: &FakeChat) -> Vec<Value> {
    chat.requests()
        .into_iter()
        .filter(|r| r["stream"] == json!(true))
        .collect()
}

// ------------------------------------------------------------------ the matrix

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Adapter {
    /// OpenAI chat completions, streamed through async-openai.
    Llm,
    GoogleStt,
    GoogleTts,
    OpenAiStt,
    OpenAiTts,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// No answer (or an answer later than the agent's timeout).
    Timeout,
    /// 503 on every attempt the adapter makes.
    ServerError,
    /// 429 with a `Retry-After` of 30 s, longer than a live call waits.
    RateLimited,
    Malformed,
    /// The body is cut mid-way.
    Cut,
    /// The body stops arriving mid-way.
    Stall,
}

const FAULTS: [Fault; 6] = [
    Fault::Timeout,
    Fault::ServerError,
    Fault::RateLimited,
    Fault::Malformed,
    Fault::Cut,
    Fault::Stall,
];

const ADAPTERS: [Adapter; 5] = [
    Adapter::Llm,
    Adapter::GoogleStt,
    Adapter::GoogleTts,
    Adapter::OpenAiStt,
    Adapter::OpenAiTts,
];

/// Which fake speech server plays a role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Speech {
    OpenAi,
    Google,
}

/// One call of the matrix: its fakes and what it expects.
struct Cell {
    adapter: Adapter,
    fault: Fault,
    number: String,
    chat: FakeChat,
    openai: FakeOpenAiSpeech,
    google: FakeGoogleSpeech,
    stt: Speech,
    tts: Speech,
    /// Requests the failing adapter gets for the failed operation.
    fault_requests: usize,
    /// Some of the failed reply was heard: its first sentence (LLM) or the
    /// first half of its audio (OpenAI TTS).
    partial: bool,
}

impl Cell {
    fn name(&self) -> String {
        format!("{:?} x {:?}", self.adapter, self.fault)
    }

    fn push_tts(&self, tone: Tone) {
        match self.tts {
            Speech::OpenAi => self
                .openai
                .push_speech(SpeechReply::Audio(tone.samples(openai_speech::SAMPLE_RATE))),
            // The adapter asks Google for MULAW at 8 kHz.
            Speech::Google => self.google.push_synthesize(GoogleReply::audio(tone.samples(8000))),
        }
    }

    fn push_stt(&self, text: &str) {
        match self.stt {
            Speech::OpenAi => self.openai.push_transcription(SpeechReply::transcript(text)),
            Speech::Google => self.google.push_recognize(GoogleReply::transcript(text)),
        }
    }

    fn tts_texts(&self) -> Vec<String> {
        match self.tts {
            Speech::OpenAi => self
                .openai
                .speech_requests()
                .into_iter()
                .map(|r| r.input.unwrap_or_default())
                .collect(),
            Speech::Google => self
                .google
                .synthesize_requests()
                .into_iter()
                .map(|r| r.text.unwrap_or_default())
                .collect(),
        }
    }

    fn stt_requests(&self) -> usize {
        match self.stt {
            Speech::OpenAi => self.openai.transcription_requests().len(),
            Speech::Google => self.google.recognize_requests().len(),
        }
    }

    fn speech_choice(&self, speech: Speech) -> ProviderChoice {
        match speech {
            Speech::OpenAi => choice("openai", self.openai.base_url()),
            Speech::Google => choice("google", self.google.base_url()),
        }
    }

    /// Starts the fakes, scripts the whole call and returns the cell with
    /// the agent settings it needs.
    async fn script(adapter: Adapter, fault: Fault, number: String) -> (Cell, Value) {
        let (stt, tts) = match adapter {
            Adapter::Llm | Adapter::OpenAiStt => (Speech::OpenAi, Speech::Google),
            Adapter::GoogleStt => (Speech::Google, Speech::OpenAi),
            Adapter::GoogleTts => (Speech::OpenAi, Speech::Google),
            Adapter::OpenAiTts => (Speech::Google, Speech::OpenAi),
        };
        let mut cell = Cell {
            adapter,
            fault,
            number,
            chat: FakeChat::start().await,
            openai: FakeOpenAiSpeech::start().await,
            google: FakeGoogleSpeech::start().await,
            stt,
            tts,
            fault_requests: 1,
            partial: false,
        };
        // A short budget where the fault is silence, a long one where every
        // retry of the adapter must happen before it gives up.
        let budget = match fault {
            Fault::Timeout | Fault::Stall => SHORT_MS,
            _ => LONG_MS,
        };
        let timeouts = match adapter {
            Adapter::Llm => json!({"llm": {"timeout_ms": budget, "stall_timeout_ms": SHORT_MS}}),
            Adapter::GoogleStt | Adapter::OpenAiStt => json!({"stt": {"timeout_ms": budget}}),
            Adapter::GoogleTts | Adapter::OpenAiTts => json!({"tts": {"timeout_ms": budget}}),
        };
        cell.push_tts(Tone::Greeting);
        match adapter {
            Adapter::Llm => {
                cell.push_stt(CALLER_SAYS);
                let deltas = || vec![format!("{PARTIAL_SENTENCE} "), "Your ta".to_owned()];
                let faults = match fault {
                    // Waiting for the first output spends the request's
                    // whole budget, retries included: no retry.
                    Fault::Timeout => vec![ChatScript::Delay(SILENT_FOR, Box::new(ChatScript::text(["late"])))],
                    // The agent retries a 5xx twice.
                    Fault::ServerError => vec![ChatScript::Status(503); 3],
                    // Never waited out, never retried.
                    Fault::RateLimited => vec![ChatScript::StatusRetryAfter(429, 30)],
                    Fault::Malformed => vec![ChatScript::Malformed],
                    Fault::Cut => vec![ChatScript::CutAfter(deltas())],
                    Fault::Stall => vec![ChatScript::StallAfter(deltas())],
                };
                cell.fault_requests = faults.len();
                cell.partial = matches!(fault, Fault::Cut | Fault::Stall);
                for script in faults {
                    cell.chat.push(script);
                }
                if cell.partial {
                    cell.push_tts(Tone::Partial);
                }
                cell.push_tts(Tone::FaultLine);
                cell.chat.push(ChatScript::text(LLM_ANSWER));
                cell.push_tts(Tone::Answer);
            }
            Adapter::GoogleStt => {
                let faults = match fault {
                    Fault::Timeout => vec![GoogleReply::Hang],
                    Fault::ServerError => vec![GoogleReply::status(503); 3],
                    Fault::RateLimited => vec![GoogleReply::Status {
                        code: 429,
                        retry_after: Some(30),
                    }],
                    Fault::Malformed => vec![GoogleReply::Malformed(
                        r#"{"results": [{"alternatives": [{"transcript": "#.to_owned(),
                    )],
                    Fault::Stall => vec![GoogleReply::StallMidBody],
                    // Nothing is used before the whole body arrived: a cut
                    // body is retried whole.
                    Fault::Cut => vec![GoogleReply::CutMidBody; 3],
                };
                cell.fault_requests = faults.len();
                for reply in faults {
                    cell.google.push_recognize(reply);
                }
                cell.push_tts(Tone::FaultLine);
                cell.push_stt(CALLER_SAYS);
                cell.push_tts(Tone::Answer);
            }
            Adapter::OpenAiStt => {
                let heard = || SpeechReply::transcript("never finished");
                let faults = match fault {
                    Fault::Timeout => vec![SpeechReply::delay(SILENT_FOR, heard())],
                    Fault::ServerError => vec![SpeechReply::status(503); 3],
                    Fault::RateLimited => vec![SpeechReply::Status {
                        code: 429,
                        retry_after: Some(30),
                    }],
                    Fault::Malformed => vec![SpeechReply::Malformed],
                    // Transcription is idempotent: a cut body is retried whole.
                    Fault::Cut => vec![SpeechReply::cut_mid_body(heard()); 3],
                    Fault::Stall => vec![SpeechReply::stall_mid_body(heard())],
                };
                cell.fault_requests = faults.len();
                for reply in faults {
                    cell.openai.push_transcription(reply);
                }
                cell.push_tts(Tone::FaultLine);
                cell.push_stt(CALLER_SAYS);
                cell.push_tts(Tone::Answer);
            }
            Adapter::GoogleTts => {
                cell.push_stt(CALLER_SAYS);
                let faults = match fault {
                    Fault::Timeout => vec![GoogleReply::Hang],
                    Fault::ServerError => vec![GoogleReply::status(503); 3],
                    Fault::RateLimited => vec![GoogleReply::Status {
                        code: 429,
                        retry_after: Some(30),
                    }],
                    Fault::Malformed => vec![GoogleReply::Malformed(r#"{"audioContent": 12"#.to_owned())],
                    Fault::Stall => vec![GoogleReply::StallMidBody],
                    // No audio is handed out before the whole body arrived:
                    // a cut body is retried whole.
                    Fault::Cut => vec![GoogleReply::CutMidBody; 3],
                };
                cell.fault_requests = faults.len();
                for reply in faults {
                    cell.google.push_synthesize(reply);
                }
                cell.push_tts(Tone::FaultLine);
                cell.push_tts(Tone::Answer);
            }
            Adapter::OpenAiTts => {
                cell.push_stt(CALLER_SAYS);
                let partial = || SpeechReply::Audio(Tone::Partial.samples(openai_speech::SAMPLE_RATE));
                let faults = match fault {
                    Fault::Timeout => vec![SpeechReply::delay(SILENT_FOR, partial())],
                    Fault::ServerError => vec![SpeechReply::status(503); 3],
                    Fault::RateLimited => vec![SpeechReply::Status {
                        code: 429,
                        retry_after: Some(30),
                    }],
                    Fault::Malformed => vec![SpeechReply::Malformed],
                    // Audio went out before the break: never retried.
                    Fault::Cut => vec![SpeechReply::cut_mid_body(partial())],
                    Fault::Stall => vec![SpeechReply::stall_mid_body(partial())],
                };
                cell.fault_requests = faults.len();
                cell.partial = matches!(fault, Fault::Cut | Fault::Stall);
                for reply in faults {
                    cell.openai.push_speech(reply);
                }
                cell.push_tts(Tone::FaultLine);
                cell.push_tts(Tone::Answer);
            }
        }
        (cell, faults_settings(timeouts))
    }

    fn stt_choice(&self) -> ProviderChoice {
        self.speech_choice(self.stt)
    }

    fn tts_choice(&self) -> ProviderChoice {
        self.speech_choice(self.tts)
    }

    fn llm_choice(&self) -> ProviderChoice {
        match self.adapter {
            Adapter::Llm => ProviderChoice {
                provider: "openai".to_owned(),
                model: Some("gpt-4o-mini".to_owned()),
                base_url: Some(self.chat.base_url()),
            },
            _ => ProviderChoice::new("rules"),
        }
    }

    fn is_stt(&self) -> bool {
        matches!(self.adapter, Adapter::GoogleStt | Adapter::OpenAiStt)
    }

    fn caller_audio(&self) -> Vec<i16> {
        if self.is_stt() {
            two_utterances()
        } else {
            one_utterance()
        }
    }

    /// Everything this cell expects of its finished call; the problems found.
    async fn check(&self, env: &Env, outcome: Result<Outcome, String>) -> Vec<String> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, what: String| {
            if !ok {
                problems.push(what);
            }
        };
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(why) => return vec![why],
        };
        let report = &outcome.report;

        // The call stayed up until the caller hung up.
        check(
            report.hangup == Hangup::Caller,
            format!(
                "the caller should hang up, not {:?} (close {:?})",
                report.hangup, report.close
            ),
        );
        check(
            outcome.ended() == Some((CallStatus::Completed, EndReason::CallerHangup)),
            format!("call_ended {:?}", outcome.ended()),
        );
        let call_id = outcome.call_id();
        let row = env.row(call_id).await;
        check(
            row == (CallStatus::Completed, Some(EndReason::CallerHangup)),
            format!("call row {row:?}"),
        );
        check(
            report.clears.is_empty(),
            format!("no barge-in expected: clears at {:?}", report.clears),
        );

        // What was stored: the fault line (or repeat line), then the real answer.
        let answer = match self.adapter {
            Adapter::Llm => LLM_ANSWER.concat(),
            _ => RULES_ANSWER.to_owned(),
        };
        let agent = |t: &str| (Speaker::Agent, t.to_owned());
        let caller = (Speaker::Caller, CALLER_SAYS.to_owned());
        let mut expected = vec![agent(GREETING)];
        if self.is_stt() {
            expected.extend([agent(REPEAT_LINE), caller, agent(&answer)]);
        } else {
            expected.push(caller);
            if self.partial && self.adapter == Adapter::Llm {
                // What the model said before it broke was heard and is kept.
                expected.push(agent(PARTIAL_SENTENCE));
            }
            expected.extend([agent(FAULT_LINE), agent(&answer)]);
        }
        let transcript = env.transcript(call_id).await;
        check(
            transcript == expected,
            format!("transcript {transcript:#?}\nexpected {expected:#?}"),
        );

        // What was heard, in order: the greeting, (what played before the
        // break), the fault line, the answer.
        let heard = heard_tones(&report.bot_audio);
        let at_least = |tone: Tone, ms: u32| heard.get(&tone).is_some_and(|h| h.ms >= ms);
        check(at_least(Tone::Greeting, 200), format!("greeting not heard: {heard:?}"));
        check(
            at_least(Tone::FaultLine, 400),
            format!("fault line not heard in full: {heard:?}"),
        );
        check(
            at_least(Tone::Answer, 400),
            format!("answer not heard in full: {heard:?}"),
        );
        if self.partial {
            check(
                at_least(Tone::Partial, 100),
                format!("the audio before the break was not heard: {heard:?}"),
            );
        }
        let first = |tone: Tone| heard.get(&tone).map(|h| h.first);
        let (spoke, said) = outcome.utterance(0);
        check(
            before(first(Tone::Greeting), Some(spoke)),
            format!("the greeting should play before the caller speaks: {heard:?}"),
        );
        // Well within 30 s: a 30 s `Retry-After` is never waited out on a
        // live call, by any adapter (the LLM's included).
        check(
            before(Some(said), first(Tone::FaultLine))
                && before(first(Tone::FaultLine), Some(said + Duration::from_secs(15))),
            format!("the fault line should follow the failed turn within seconds (caller done at {said:?}): {heard:?}"),
        );
        check(
            before(first(Tone::FaultLine), first(Tone::Answer)),
            format!("the answer should follow the fault line: {heard:?}"),
        );
        if self.partial {
            check(
                before(first(Tone::Partial), first(Tone::FaultLine)),
                format!("the partial reply plays before the fault line: {heard:?}"),
            );
        }
        if self.is_stt() {
            let (again, _) = outcome.utterance(1);
            check(
                before(first(Tone::FaultLine), Some(again)) && before(Some(again), first(Tone::Answer)),
                format!("the repeat line comes between the two utterances (second at {again:?}): {heard:?}"),
            );
        }

        // The providers saw exactly the scripted exchange, with the tenant's keys.
        let tts_texts = self.tts_texts();
        let mut expected_tts = vec![GREETING.to_owned()];
        match self.adapter {
            Adapter::Llm => {
                if self.partial {
                    expected_tts.push(PARTIAL_SENTENCE.to_owned());
                }
                expected_tts.extend([FAULT_LINE.to_owned(), answer.clone()]);
            }
            Adapter::GoogleStt | Adapter::OpenAiStt => {
                expected_tts.extend([REPEAT_LINE.to_owned(), answer.clone()]);
            }
            Adapter::GoogleTts | Adapter::OpenAiTts => {
                expected_tts.extend(std::iter::repeat_n(answer.clone(), self.fault_requests));
                expected_tts.extend([FAULT_LINE.to_owned(), answer.clone()]);
            }
        }
        check(
            tts_texts == expected_tts,
            format!("TTS requests {tts_texts:#?}\nexpected {expected_tts:#?}"),
        );
        match self.adapter {
            Adapter::Llm => {
                let requests = streamed_requests(&self.chat);
                check(
                    requests.len() == self.fault_requests + 1,
                    format!(
                        "chat requests: {} (expected {} failing + 1)",
                        requests.len(),
                        self.fault_requests
                    ),
                );
                check(
                    self.chat
                        .authorization()
                        .first()
                        .is_some_and(|a| a.as_deref() == Some(&format!("Bearer {OPENAI_KEY}"))),
                    format!("the tenant's OpenAI key: {:?}", self.chat.authorization().first()),
                );
                // The retry answers the same words, without the fault line in the context.
                if let Some(last) = requests.last() {
                    let messages = last["messages"].to_string();
                    check(
                        messages.contains(CALLER_SAYS) && !messages.contains(FAULT_LINE),
                        format!("the retried request's messages: {messages}"),
                    );
                }
            }
            Adapter::GoogleStt | Adapter::OpenAiStt => {
                check(
                    self.stt_requests() == self.fault_requests + 1,
                    format!(
                        "STT requests: {} (expected {} failing + 1)",
                        self.stt_requests(),
                        self.fault_requests
                    ),
                );
            }
            Adapter::GoogleTts | Adapter::OpenAiTts => {}
        }
        match self.adapter {
            Adapter::GoogleStt | Adapter::GoogleTts => {
                let keys: Vec<Option<String>> = if self.adapter == Adapter::GoogleStt {
                    self.google
                        .recognize_requests()
                        .into_iter()
                        .map(|r| r.credentials.api_key)
                        .collect()
                } else {
                    self.google
                        .synthesize_requests()
                        .into_iter()
                        .map(|r| r.credentials.api_key)
                        .collect()
                };
                check(
                    keys.iter().all(|k| k.as_deref() == Some(GOOGLE_KEY)),
                    format!("the tenant's Google key: {keys:?}"),
                );
            }
            Adapter::OpenAiStt | Adapter::OpenAiTts => {
                let keys: Vec<Option<String>> = if self.adapter == Adapter::OpenAiStt {
                    self.openai
                        .transcription_requests()
                        .into_iter()
                        .map(|r| r.authorization)
                        .collect()
                } else {
                    self.openai
                        .speech_requests()
                        .into_iter()
                        .map(|r| r.authorization)
                        .collect()
                };
                let bearer = format!("Bearer {OPENAI_KEY}");
                check(
                    keys.iter().all(|k| k.as_deref() == Some(bearer.as_str())),
                    format!("the tenant's OpenAI key: {keys:?}"),
                );
            }
            Adapter::Llm => {}
        }
        problems
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_of_every_cloud_adapter_keeps_the_call_and_recovers() {
    let env = env().await;
    let mut cells = Vec::new();
    for adapter in ADAPTERS {
        for fault in FAULTS {
            let number = format!("+1555300{:04}", cells.len());
            let (cell, settings) = Cell::script(adapter, fault, number).await;
            env.agent(
                &cell.number,
                cell.stt_choice(),
                cell.tts_choice(),
                cell.llm_choice(),
                settings,
            )
            .await;
            cells.push(cell);
        }
    }
    assert_eq!(cells.len(), ADAPTERS.len() * FAULTS.len());

    let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENT_CALLS));
    let calls: Vec<_> = cells
        .iter()
        .map(|c| env.call_in(Some(slots.clone()), &c.number, c.caller_audio()))
        .collect();
    let mut failures = Vec::new();
    for (cell, call) in cells.iter().zip(calls) {
        let outcome = call.await.expect("call task");
        let problems = cell.check(&env, outcome).await;
        if !problems.is_empty() {
            failures.push(format!("{}:\n  {}", cell.name(), problems.join("\n  ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cells failed:\n{}",
        failures.len(),
        cells.len(),
        failures.join("\n")
    );
    env.app.stop().await.expect("stop");
}

// ------------------------------------------------------------------ giving up

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_llm_that_keeps_failing_ends_the_call_politely() {
    let env = env().await;

    // 1. `max_failures: 1`, `give_up: hangup`: a failure (the fault line,
    //    then the answer again), a second one, then the give-up line and the
    //    engine hangs up.
    let hangup = (FakeChat::start().await, FakeOpenAiSpeech::start().await, "+15553100001");
    let (chat, speech, number) = &hangup;
    chat.push(ChatScript::Malformed);
    chat.push(ChatScript::Malformed);
    chat.push(ChatScript::text(["never asked for"]));
    speech.push_transcription(SpeechReply::transcript(CALLER_SAYS));
    for tone in [Tone::Greeting, Tone::FaultLine, Tone::GiveUp] {
        speech.push_speech(SpeechReply::Audio(tone.samples(openai_speech::SAMPLE_RATE)));
    }
    let mut settings = faults_settings(json!({}));
    settings["faults"]["max_failures"] = json!(1);
    settings["faults"]["give_up"] = json!("hangup");
    env.agent(
        number,
        choice("openai", speech.base_url()),
        choice("openai", speech.base_url()),
        choice("openai", chat.base_url()),
        settings,
    )
    .await;

    // 2. `max_failures: 0`, `give_up: transfer`: the first failure gives up,
    //    and the caller is handed to the transfer number over Twilio's REST API.
    let transfer = (FakeChat::start().await, FakeOpenAiSpeech::start().await, "+15553100002");
    let (t_chat, t_speech, t_number) = &transfer;
    t_chat.push(ChatScript::Status(400));
    t_chat.push(ChatScript::text(["never asked for"]));
    t_speech.push_transcription(SpeechReply::transcript(CALLER_SAYS));
    for tone in [Tone::Greeting, Tone::GiveUp] {
        t_speech.push_speech(SpeechReply::Audio(tone.samples(openai_speech::SAMPLE_RATE)));
    }
    let mut settings = faults_settings(json!({}));
    settings["faults"]["max_failures"] = json!(0);
    settings["faults"]["give_up"] = json!("transfer");
    settings["faults"]["transfer_number"] = json!("+15550009999");
    env.agent(
        t_number,
        choice("openai", t_speech.base_url()),
        choice("openai", t_speech.base_url()),
        choice("openai", t_chat.base_url()),
        settings,
    )
    .await;

    let hangup_call = env.call(number, one_utterance());
    let transfer_call = env.call(t_number, one_utterance());
    let outcome = hangup_call.await.expect("task").expect("hang-up call");
    let t_outcome = transfer_call.await.expect("task").expect("transfer call");

    // Hang-up: the give-up line was heard in full, then the engine ended the call.
    let report = &outcome.report;
    assert_eq!(report.hangup, Hangup::Engine, "{:?}", report.close);
    assert_eq!(report.close, Some((1011, "call failed".to_owned())));
    assert_eq!(outcome.ended(), Some((CallStatus::Failed, EndReason::ProviderError)));
    let call_id = outcome.call_id();
    assert_eq!(
        env.row(call_id).await,
        (CallStatus::Failed, Some(EndReason::ProviderError))
    );
    let agent = |t: &str| (Speaker::Agent, t.to_owned());
    assert_eq!(
        env.transcript(call_id).await,
        vec![
            agent(GREETING),
            (Speaker::Caller, CALLER_SAYS.to_owned()),
            agent(FAULT_LINE),
            agent(GIVE_UP_LINE),
        ]
    );
    let heard = heard_tones(&report.bot_audio);
    let first = |tone: Tone| heard.get(&tone).map(|h| h.first);
    assert!(
        heard.get(&Tone::GiveUp).is_some_and(|h| h.ms >= 500),
        "the give-up line (600 ms) is heard in full before the hang-up: {heard:?}"
    );
    assert!(before(first(Tone::FaultLine), first(Tone::GiveUp)), "{heard:?}");
    assert!(!heard.contains_key(&Tone::Answer), "nothing else was said: {heard:?}");
    assert_eq!(streamed_requests(chat).len(), 2, "the answer and its one retry");

    // Transfer: the give-up line, then Twilio is told to dial the transfer number.
    let report = &t_outcome.report;
    assert_eq!(report.hangup, Hangup::Engine, "{:?}", report.close);
    assert_eq!(t_outcome.ended(), Some((CallStatus::Completed, EndReason::Transferred)));
    let t_call_id = t_outcome.call_id();
    assert_eq!(
        env.transcript(t_call_id).await,
        vec![
            agent(GREETING),
            (Speaker::Caller, CALLER_SAYS.to_owned()),
            agent(GIVE_UP_LINE),
        ]
    );
    let heard = heard_tones(&report.bot_audio);
    assert!(
        heard.get(&Tone::GiveUp).is_some_and(|h| h.ms >= 500),
        "the give-up line is heard before the transfer: {heard:?}"
    );
    assert!(
        !heard.contains_key(&Tone::FaultLine),
        "no fault line with max_failures 0: {heard:?}"
    );
    assert_eq!(streamed_requests(t_chat).len(), 1, "a 400 is not retried");
    // The REST update may land just after the stream closed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut updates = env.twilio.updates();
    while updates.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        updates = env.twilio.updates();
    }
    assert_eq!(updates.len(), 1, "{updates:?}");
    let update = &updates[0];
    assert_eq!(update.call_sid, report.call_sid);
    assert_eq!(update.account_sid, ACCOUNT_SID);
    assert_eq!(update.auth_user.as_deref(), Some(ACCOUNT_SID));
    let twiml = update.field("Twiml").unwrap_or_default();
    assert!(twiml.contains("<Dial") && twiml.contains("+15550009999"), "{twiml}");
    env.app.stop().await.expect("stop");
}

// ------------------------------------------------------------------ secondaries

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secondary_providers_take_over_from_failing_primaries() {
    let env = env().await;
    const BACKUP_ANSWER: [&str; 2] = ["The backup ", "says hello."];
    let long = faults_settings(json!({
        "llm": {"timeout_ms": LONG_MS},
        "stt": {"timeout_ms": LONG_MS},
        "tts": {"timeout_ms": LONG_MS},
    }));
    let with_backup = |capability: &str, backup: ProviderChoice| {
        let mut settings = long.clone();
        settings["fallback_providers"] = json!({ capability: backup });
        settings
    };

    // LLM: OpenAI keeps answering 500; an OpenAI-compatible server takes over.
    let primary_chat = FakeChat::start().await;
    let backup_chat = FakeChat::start().await;
    let llm_speech = FakeOpenAiSpeech::start().await;
    for _ in 0..8 {
        primary_chat.push(ChatScript::Status(500));
    }
    backup_chat.push(ChatScript::text(BACKUP_ANSWER));
    llm_speech.push_transcription(SpeechReply::transcript(CALLER_SAYS));
    for tone in [Tone::Greeting, Tone::FaultLine, Tone::Answer] {
        llm_speech.push_speech(SpeechReply::Audio(tone.samples(openai_speech::SAMPLE_RATE)));
    }
    let backup_llm = ProviderChoice {
        provider: "openai_compatible".to_owned(),
        model: Some("backup-model".to_owned()),
        base_url: Some(backup_chat.base_url()),
    };
    env.agent(
        "+15553200001",
        choice("openai", llm_speech.base_url()),
        choice("openai", llm_speech.base_url()),
        choice("openai", primary_chat.base_url()),
        with_backup("llm", backup_llm),
    )
    .await;

    // STT: Google keeps answering 503; OpenAI hears the caller's next words.
    let primary_stt = FakeGoogleSpeech::start().await;
    let backup_stt = FakeOpenAiSpeech::start().await;
    for _ in 0..6 {
        primary_stt.push_recognize(GoogleReply::status(503));
    }
    backup_stt.push_transcription(SpeechReply::transcript(CALLER_SAYS));
    for tone in [Tone::Greeting, Tone::FaultLine, Tone::Answer] {
        backup_stt.push_speech(SpeechReply::Audio(tone.samples(openai_speech::SAMPLE_RATE)));
    }
    env.agent(
        "+15553200002",
        choice("google", primary_stt.base_url()),
        choice("openai", backup_stt.base_url()),
        ProviderChoice::new("rules"),
        with_backup("stt", choice("openai", backup_stt.base_url())),
    )
    .await;

    // TTS: OpenAI speaks the greeting, then keeps answering 503; Google speaks on.
    let primary_tts = FakeOpenAiSpeech::start().await;
    let backup_tts = FakeGoogleSpeech::start().await;
    primary_tts.push_transcription(SpeechReply::transcript(CALLER_SAYS));
    primary_tts.push_speech(SpeechReply::Audio(Tone::Greeting.samples(openai_speech::SAMPLE_RATE)));
    for _ in 0..6 {
        primary_tts.push_speech(SpeechReply::status(503));
    }
    for tone in [Tone::FaultLine, Tone::Answer] {
        backup_tts.push_synthesize(GoogleReply::audio(tone.samples(8000)));
    }
    env.agent(
        "+15553200003",
        choice("openai", primary_tts.base_url()),
        choice("openai", primary_tts.base_url()),
        ProviderChoice::new("rules"),
        with_backup("tts", choice("google", backup_tts.base_url())),
    )
    .await;

    let llm_call = env.call("+15553200001", one_utterance());
    let stt_call = env.call("+15553200002", two_utterances());
    let tts_call = env.call("+15553200003", one_utterance());
    let llm = llm_call.await.expect("task").expect("llm call");
    let stt = stt_call.await.expect("task").expect("stt call");
    let tts = tts_call.await.expect("task").expect("tts call");

    let agent = |t: &str| (Speaker::Agent, t.to_owned());
    let caller = || (Speaker::Caller, CALLER_SAYS.to_owned());
    for (name, outcome) in [("llm", &llm), ("stt", &stt), ("tts", &tts)] {
        assert_eq!(
            outcome.report.hangup,
            Hangup::Caller,
            "{name}: {:?}",
            outcome.report.close
        );
        assert_eq!(
            outcome.ended(),
            Some((CallStatus::Completed, EndReason::CallerHangup)),
            "{name}"
        );
        let heard = heard_tones(&outcome.report.bot_audio);
        let first = |tone: Tone| heard.get(&tone).map(|h| h.first);
        assert!(
            heard.get(&Tone::Answer).is_some_and(|h| h.ms >= 400)
                && before(first(Tone::FaultLine), first(Tone::Answer)),
            "{name}: the fault line, then the secondary's answer: {heard:?}"
        );
    }

    // LLM: three requests to the primary (the agent's two retries), then only the secondary.
    assert_eq!(
        env.transcript(llm.call_id()).await,
        vec![
            agent(GREETING),
            caller(),
            agent(FAULT_LINE),
            agent(&BACKUP_ANSWER.concat())
        ]
    );
    assert_eq!(streamed_requests(&primary_chat).len(), 3);
    let backup_requests = streamed_requests(&backup_chat);
    assert_eq!(backup_requests.len(), 1);
    assert_eq!(backup_requests[0]["model"], "backup-model");
    assert!(
        backup_requests[0]["messages"].to_string().contains(CALLER_SAYS),
        "the secondary answers the caller's words"
    );
    assert_eq!(
        primary_chat.authorization().first().cloned().flatten(),
        Some(format!("Bearer {OPENAI_KEY}"))
    );
    assert_eq!(
        backup_chat.authorization(),
        vec![None],
        "the tenant's OpenAI key is not sent to a compatible server"
    );

    // STT: three attempts at the primary for the first utterance, the second on the secondary.
    assert_eq!(
        env.transcript(stt.call_id()).await,
        vec![agent(GREETING), agent(REPEAT_LINE), caller(), agent(RULES_ANSWER)]
    );
    assert_eq!(primary_stt.recognize_requests().len(), 3);
    let uploads = backup_stt.transcription_requests();
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0].sample_rate, 16_000);
    assert!(
        uploads[0].samples.len() >= 14_400,
        "the caller's 0.9 s utterance reached the secondary: {} samples",
        uploads[0].samples.len()
    );

    // TTS: the primary's greeting and three attempts at the answer; the rest on the secondary.
    assert_eq!(
        env.transcript(tts.call_id()).await,
        vec![agent(GREETING), caller(), agent(FAULT_LINE), agent(RULES_ANSWER)]
    );
    let primary_texts: Vec<String> = primary_tts
        .speech_requests()
        .into_iter()
        .map(|r| r.input.unwrap_or_default())
        .collect();
    assert_eq!(primary_texts, vec![GREETING, RULES_ANSWER, RULES_ANSWER, RULES_ANSWER]);
    let backup_texts: Vec<String> = backup_tts
        .synthesize_requests()
        .into_iter()
        .map(|r| r.text.unwrap_or_default())
        .collect();
    assert_eq!(backup_texts, vec![FAULT_LINE, RULES_ANSWER]);
    env.app.stop().await.expect("stop");
}
