//! OpenAI Realtime mode end to end, through the engine's production
//! composition: the real engine (`TestApp`), the standard provider factory
//! building the Realtime session from the agent row and the tenant's stored
//! OpenAI credential, the Twilio webhook and media socket played by the
//! synthetic caller, and the scripted `FakeRealtime` server in place of
//! OpenAI, reached only through the agent's `llm.base_url`.
//!
//! Each test seeds the demo tenant (owner, Twilio credential, number), turns
//! its agent into an `openai_realtime` agent pointing at the fake, adds an
//! OpenAI credential holding the fake's key, and places a call. Waits are on
//! events: the caller's progress events, the live supervisor socket and the
//! client events the fake records, each bounded by [`LIMIT`].
//!
//! Agent audio is pseudo-random μ-law with no code for zero, so the played
//! bot audio (the caller's recording, silence where nothing played) can be
//! compared byte for byte with what the fake sent.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use serde_json::{Value, json};
use switchboard_caller::schedule::Schedule;
use switchboard_caller::{CallOptions, CallReport, CallerError, CallerEvent, Hangup, live, place_call};
use switchboard_domain::{
    AgentUpdate, CallEvent, CallEventKind, CallId, CallStatus, CredentialKind, E164, EndReason, NewCredential,
    PageRequest, ProviderChoice, Secret, Speaker,
};
use switchboard_engine::admin::{DemoOutcome, seed_demo};
use switchboard_fakes::openai_realtime::{FakeRealtime, Interface, RealtimeScript};
use switchboard_media::ulaw;
use switchboard_store::{AppointmentFilter, Scope};
use switchboard_testkit::TestApp;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use url::Url;

/// Bounds every wait, so a broken path fails instead of hanging.
const LIMIT: Duration = Duration::from_secs(20);
/// The caller's number (becomes the contact the booking is for).
const CALLER: &str = "+15551230001";
/// The agent's model, sent by the client as `?model=`.
const MODEL: &str = "gpt-realtime-test";
const PROMPT: &str = "You are the receptionist of Acme. Be brief.";
/// Caller frame size: 20 ms of 8 kHz μ-law.
const FRAME: usize = 160;

// ------------------------------------------------------------------ audio

/// `ms` of agent "speech" as 8 kHz μ-law: pseudo-random codes from `seed`,
/// none of which decodes to zero (0x7F, 0xFF), so in the caller's recording
/// every non-zero sample is played agent audio and zero is silence. μ-law
/// decoding is one-to-one apart from those two codes, so equal samples mean
/// equal bytes.
fn agent_audio(ms: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(12_345);
    let mut out = Vec::with_capacity(ms * 8);
    while out.len() < ms * 8 {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let code = (x >> 24) as u8;
        if ulaw::decode(code) != 0 {
            out.push(code);
        }
    }
    out
}

/// `ms` of loud pseudo-random caller audio (8 kHz PCM): every 20 ms frame is
/// distinct, so where it lands in the fake's copy is unambiguous.
fn caller_speech(ms: usize) -> Vec<i16> {
    let mut x: u32 = 0x9E37_79B9;
    (0..ms * 8)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            ((x >> 16) as u16 as i16) / 4
        })
        .collect()
}

/// The bot audio the caller heard, in order: the recording's non-silent
/// samples (gaps from playout underruns and utterance padding removed),
/// compared with [`decoded`] model audio.
fn heard_samples(report: &CallReport) -> Vec<i16> {
    report.bot_audio.iter().copied().filter(|&s| s != 0).collect()
}

fn decoded(codes: &[u8]) -> Vec<i16> {
    codes.iter().map(|&c| ulaw::decode(c)).collect()
}

/// What the caller sent on the media socket, byte for byte: the caller's own
/// schedule, encoded frame by frame for the `frames` it sent.
fn caller_bytes(audio: &[i16], lead: Duration, frames: u64) -> (Vec<u8>, Schedule) {
    let schedule = Schedule::new(Arc::from(audio.to_vec()), lead);
    let mut sent = Vec::with_capacity(frames as usize * FRAME);
    let mut frame = [0u8; FRAME];
    for k in 0..frames {
        schedule.encode_frame(k, &mut frame);
        sent.extend_from_slice(&frame);
    }
    (sent, schedule)
}

// ------------------------------------------------------------------ script

fn wait(kind: &str) -> RealtimeScript {
    RealtimeScript::WaitFor(kind.into())
}

fn respond(response_id: &str, item_id: &str, ulaw: &[u8], chunks: usize, transcript: &str) -> RealtimeScript {
    RealtimeScript::Respond {
        response_id: response_id.into(),
        item_id: item_id.into(),
        ulaw: ulaw.to_vec(),
        chunks,
        transcript: transcript.into(),
    }
}

fn caller_transcript(item_id: &str, text: &str) -> RealtimeScript {
    RealtimeScript::Send(json!({
        "type": "conversation.item.input_audio_transcription.completed",
        "item_id": item_id, "content_index": 0, "transcript": text,
    }))
}

// ------------------------------------------------------------------ engine

/// A running engine whose demo agent talks to a fake Realtime server.
struct Rig {
    app: TestApp,
    demo: DemoOutcome,
    fake: FakeRealtime,
    engine: Url,
    /// Bearer token of the demo owner, for the live socket.
    token: String,
}

impl Rig {
    /// The engine, the demo tenant, an OpenAI credential with the fake's key,
    /// and the demo agent switched to `openai_realtime` at the fake.
    async fn start(interface: Interface, greeting: &str, tools: &[&str], mut settings: Value) -> Rig {
        let fake = FakeRealtime::start(interface).await;
        let app = TestApp::spawn().await.expect("engine");
        let demo = seed_demo(
            &app.store,
            &app.settings.storage.data_dir,
            &app.settings.http.public_base_url,
        )
        .await
        .expect("demo");
        app.store
            .credentials()
            .create(
                demo.tenant_id,
                NewCredential {
                    kind: CredentialKind::OpenAi,
                    label: "OpenAI (fake)".to_owned(),
                    public: json!({}),
                    secrets: [("api_key".to_owned(), Secret::new(FakeRealtime::API_KEY))].into(),
                },
            )
            .await
            .expect("openai credential");
        settings["realtime"] = json!({"interface": match interface {
            Interface::Beta => "beta",
            Interface::Ga => "ga",
        }});
        app.store
            .agents()
            .update(
                Scope::Tenant(demo.tenant_id),
                demo.agent_id,
                AgentUpdate {
                    greeting: Some(greeting.to_owned()),
                    system_prompt: Some(PROMPT.to_owned()),
                    voice: Some("alloy".to_owned()),
                    llm: Some(ProviderChoice {
                        provider: "openai_realtime".to_owned(),
                        model: Some(MODEL.to_owned()),
                        base_url: Some(fake.url()),
                    }),
                    tools: Some(tools.iter().map(|t| (*t).to_owned()).collect()),
                    settings: Some(settings),
                    ..AgentUpdate::default()
                },
            )
            .await
            .expect("agent update");
        let engine = Url::parse(&app.base_url).expect("url");
        let token = live::login(&engine, &demo.file.email, &demo.file.password)
            .await
            .expect("login");
        Rig {
            app,
            demo,
            fake,
            engine,
            token,
        }
    }

    /// A call from [`CALLER`] to the demo number: `audio` after `lead`
    /// silence, hanging up once the bot has spoken after it and then been
    /// quiet for 5 s (at most 15 s after the audio). 5 s, not less: a
    /// greeting that starts late still plays after the audio, and the answer
    /// must not be hung up on while it comes.
    fn options(&self, audio: &[i16], lead: Duration) -> CallOptions {
        let mut opts = CallOptions::new(
            self.engine.clone(),
            &self.demo.file.account_sid,
            &self.demo.file.auth_token,
            CALLER,
            &self.demo.file.number,
        );
        opts.caller_audio = Arc::from(audio.to_vec());
        opts.lead_silence = lead;
        opts.tail = Duration::from_secs(15);
        opts.idle_end = Some(Duration::from_secs(5));
        opts
    }

    /// Places the call and, once the webhook answered, subscribes to its live
    /// events. The live socket subscribes before its upgrade completes, so
    /// nothing published after this returns is missed.
    async fn place(&self, opts: CallOptions) -> Call {
        let (tx, mut caller) = mpsc::unbounded_channel();
        let mut task = tokio::spawn(place_call(opts, Some(tx)));
        let mut caller_seen = Vec::new();
        let id = loop {
            let event = tokio::time::timeout(LIMIT, caller.recv()).await.expect("no answer");
            let Some(event) = event else {
                let outcome = (&mut task).await.expect("join");
                panic!("the call ended before it was answered: {outcome:?}");
            };
            caller_seen.push(event.clone());
            if let CallerEvent::Answered { call_id: Some(id), .. } = event {
                break id;
            }
        };
        let mut stream = live::watch(&self.engine, &self.token, &id).await.expect("live socket");
        let (live_tx, live) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(Ok(event)) = stream.next().await {
                let last = matches!(event.kind, CallEventKind::CallEnded { .. });
                if live_tx.send(event).is_err() || last {
                    break;
                }
            }
        });
        Call {
            id: id.parse().expect("call id"),
            task,
            caller,
            caller_seen,
            live,
            live_seen: Vec::new(),
        }
    }

    async fn transcript(&self, call_id: CallId) -> Vec<(Speaker, String)> {
        self.app
            .store
            .transcripts()
            .list(call_id)
            .await
            .expect("transcript")
            .into_iter()
            .map(|s| (s.speaker, s.text))
            .collect()
    }

    async fn stop(self) {
        self.app.stop().await.expect("engine stop");
    }
}

/// A call in progress: the caller task and both event streams.
struct Call {
    id: CallId,
    task: JoinHandle<Result<CallReport, CallerError>>,
    caller: mpsc::UnboundedReceiver<CallerEvent>,
    caller_seen: Vec<CallerEvent>,
    live: mpsc::UnboundedReceiver<CallEvent>,
    live_seen: Vec<CallEvent>,
}

/// A finished call as the caller and the supervisor saw it.
struct Ended {
    id: CallId,
    report: CallReport,
    caller: Vec<CallerEvent>,
    live: Vec<CallEvent>,
}

impl Call {
    /// Waits until the caller's events so far satisfy `done`.
    async fn caller_until(&mut self, what: &str, done: impl Fn(&[CallerEvent]) -> bool) {
        let waiting = async {
            while !done(&self.caller_seen) {
                match self.caller.recv().await {
                    Some(event) => self.caller_seen.push(event),
                    None => panic!("the call ended before {what}: {:?}", self.caller_seen),
                }
            }
        };
        if tokio::time::timeout(LIMIT, waiting).await.is_err() {
            panic!("timed out waiting for {what}; the caller saw {:?}", self.caller_seen);
        }
    }

    /// Waits until a live event of the call satisfies `matches`.
    async fn live_until(&mut self, what: &str, matches: impl Fn(&CallEventKind) -> bool) {
        let waiting = async {
            while !self.live_seen.iter().any(|e| matches(&e.kind)) {
                match self.live.recv().await {
                    Some(event) => self.live_seen.push(event),
                    None => panic!("the live socket ended before {what}: {:?}", self.live_seen),
                }
            }
        };
        if tokio::time::timeout(LIMIT, waiting).await.is_err() {
            panic!("timed out waiting for {what}; live events {:?}", self.live_seen);
        }
    }

    /// Waits for the caller to hang up and for `call_ended` on the live
    /// socket (published once the call row is final).
    async fn end(mut self) -> Ended {
        let report = tokio::time::timeout(LIMIT, &mut self.task)
            .await
            .expect("the call did not end")
            .expect("join")
            .expect("call");
        self.live_until("call_ended", |k| matches!(k, CallEventKind::CallEnded { .. }))
            .await;
        while let Ok(event) = self.caller.try_recv() {
            self.caller_seen.push(event);
        }
        Ended {
            id: self.id,
            report,
            caller: self.caller_seen,
            live: self.live_seen,
        }
    }
}

fn marks_echoed(events: &[CallerEvent]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, CallerEvent::MarkEchoed { .. }))
        .count()
}

// ------------------------------------------------------------------ 1. a whole call

const GREETING: &str = "Hello, this is Acme.";
const CALLER_SAID: &str = "I would like to book an appointment";
const ANSWER: &str = "Sure. What day works for you?";

async fn a_whole_realtime_call(interface: Interface) {
    let rig = Rig::start(interface, GREETING, &[], json!({})).await;
    rig.fake.push([wait("session.update"), wait("response.create")]);
    let speech = caller_speech(1000);
    let lead = Duration::from_secs(1);
    let mut call = rig.place(rig.options(&speech, lead)).await;

    // Subscribed to the live socket: the model may greet (600 ms in 3 deltas).
    let greeting = agent_audio(600, 1);
    rig.fake.push([respond("resp_g", "item_g", &greeting, 3, GREETING)]);
    call.live_until("the greeting heard in full", |k| {
        matches!(
            k,
            CallEventKind::TranscriptFinal {
                speaker: Speaker::Agent,
                turn_id: 0,
                ..
            }
        )
    })
    .await;
    call.caller_until("the caller's speech", |seen| {
        seen.iter().any(|e| matches!(e, CallerEvent::CallerSpeechEnded { .. }))
    })
    .await;

    // The caller's turn by server VAD, its transcript, and the answer.
    let answer = agent_audio(400, 2);
    rig.fake.push([
        RealtimeScript::SpeechStarted {
            item_id: "item_c1".into(),
            audio_start_ms: 1000,
        },
        RealtimeScript::SpeechStopped {
            item_id: "item_c1".into(),
            audio_end_ms: 2000,
        },
        caller_transcript("item_c1", CALLER_SAID),
        respond("resp_1", "item_1", &answer, 2, ANSWER),
    ]);
    let Ended {
        id: call_id,
        report,
        caller,
        live,
    } = call.end().await;

    // The session: the agent's model and key, g711 μ-law both ways, the
    // agent's prompt with the greeting to say.
    let connections = rig.fake.connections();
    assert_eq!(connections.len(), 1, "{connections:?}");
    assert_eq!(connections[0].model.as_deref(), Some(MODEL));
    assert_eq!(
        connections[0].authorization.as_deref(),
        Some(format!("Bearer {}", FakeRealtime::API_KEY).as_str())
    );
    let updates = rig.fake.events_of_type("session.update");
    let session = &updates[0]["session"];
    match interface {
        Interface::Beta => {
            assert_eq!(session["input_audio_format"], "g711_ulaw", "{session}");
            assert_eq!(session["output_audio_format"], "g711_ulaw", "{session}");
        }
        Interface::Ga => {
            assert_eq!(session["type"], "realtime", "{session}");
            assert_eq!(session["audio"]["input"]["format"]["type"], "audio/pcmu", "{session}");
            assert_eq!(session["audio"]["output"]["format"]["type"], "audio/pcmu", "{session}");
        }
    }
    let instructions = session["instructions"].as_str().unwrap_or_default();
    assert!(
        instructions.starts_with(PROMPT) && instructions.contains(&format!("\"{GREETING}\"")),
        "{session}"
    );

    // The caller heard both responses, byte for byte, and nothing else.
    assert_eq!(report.hangup, Hangup::Caller);
    assert_eq!(report.invalid_messages, 0);
    assert!(report.clears.is_empty(), "{:?}", report.clears);
    assert!(
        report.marks_received >= 5 && report.marks_echoed == report.marks_received,
        "{report:?}"
    );
    let sent_by_model = [greeting.as_slice(), answer.as_slice()].concat();
    let heard = heard_samples(&report);
    assert_eq!(heard.len(), sent_by_model.len(), "bot samples heard");
    assert!(
        heard == decoded(&sent_by_model),
        "the bot audio differs from the model's"
    );

    // The caller's μ-law reached the model unchanged, in order and in full:
    // what the fake got is exactly what the caller sent, from its first frame
    // on (the loop queues frames until the session is up) to its last (the
    // frames still queued at the hang-up go out before the session closes).
    // The fake records them as it reads its socket: wait (bounded) for it.
    let (sent, schedule) = caller_bytes(&speech, lead, report.frames_sent);
    let deadline = tokio::time::Instant::now() + LIMIT;
    while (rig.fake.events_of_type("input_audio_buffer.append").len() as u64) < report.frames_sent
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = rig.fake.appended_audio();
    assert!(
        got.len() % FRAME == 0 && got.len() <= sent.len(),
        "{} bytes appended, {} sent",
        got.len(),
        sent.len()
    );
    assert!(
        got[..] == sent[..got.len()],
        "the model got other audio than the caller sent"
    );
    let missing_tail = (sent.len() - got.len()) / FRAME;
    assert_eq!(missing_tail, 0, "frames at the end never reached the model");
    let (_, speech_end) = schedule.speech_frames()[0];
    assert!(
        got.len() >= speech_end as usize * FRAME,
        "the caller's speech was cut short"
    );

    // The store: the call completed, both speakers' lines, and per-turn latency.
    let row = rig.app.store.calls().get(Scope::All, call_id).await.expect("row");
    assert_eq!(row.status, CallStatus::Completed);
    assert_eq!(row.end_reason, Some(EndReason::CallerHangup));
    assert_eq!(
        rig.transcript(call_id).await,
        vec![
            (Speaker::Agent, GREETING.to_owned()),
            (Speaker::Caller, CALLER_SAID.to_owned()),
            (Speaker::Agent, ANSWER.to_owned()),
        ]
    );
    let turns = rig.app.store.turns().list(call_id).await.expect("turns");
    assert_eq!(
        turns.iter().map(|t| t.turn_id).collect::<Vec<_>>(),
        vec![0, 1],
        "{turns:?}"
    );
    let stages = [
        turns[1].stt_final_ms,
        turns[1].agent_first_token_ms,
        turns[1].tts_first_audio_ms,
        turns[1].first_frame_ms,
        turns[1].mark_confirmed_ms,
    ];
    assert!(stages.iter().all(Option::is_some), "{:?}", turns[1]);
    let stages: Vec<u32> = stages.into_iter().flatten().collect();
    assert!(stages.windows(2).all(|w| w[0] <= w[1]), "{stages:?}");
    assert!(turns[0].first_frame_ms.is_some() && turns[0].mark_confirmed_ms.is_some());

    // The live socket saw the conversation as in the chained mode.
    let finals: Vec<(Speaker, u32, bool)> = live
        .iter()
        .filter_map(|e| match &e.kind {
            CallEventKind::TranscriptFinal {
                speaker,
                turn_id,
                interrupted,
                ..
            } => Some((*speaker, *turn_id, *interrupted)),
            _ => None,
        })
        .collect();
    assert_eq!(
        finals,
        [
            (Speaker::Agent, 0, false),
            (Speaker::Caller, 1, false),
            (Speaker::Agent, 1, false)
        ],
        "{live:?}"
    );
    let latencies = live
        .iter()
        .filter(|e| matches!(e.kind, CallEventKind::TurnLatency(_)))
        .count();
    assert_eq!(latencies, 2, "{live:?}");
    assert!(!live.iter().any(|e| matches!(e.kind, CallEventKind::BargeIn { .. })));
    assert!(matches!(
        live.last().map(|e| &e.kind),
        Some(CallEventKind::CallEnded {
            status: CallStatus::Completed,
            reason: EndReason::CallerHangup
        })
    ));
    assert!(caller.iter().any(|e| matches!(e, CallerEvent::Closed { .. })));
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_realtime_call_end_to_end_beta() {
    a_whole_realtime_call(Interface::Beta).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_realtime_call_end_to_end_ga() {
    a_whole_realtime_call(Interface::Ga).await;
}

// ------------------------------------------------------------------ 2. barge-in

const LONG_GREETING: &str =
    "Welcome to Acme, where we have a long list of options for you today, so please listen closely.";
/// Length of the long greeting's audio: long enough that the caller's
/// speech, sent after [`CONFIRMED_MARKS`] echoes, lands while it still plays
/// on a loaded host.
const LONG_MS: u64 = 6000;
/// Marks (100 ms each) the caller echoes before talking over the greeting:
/// enough that the engine has processed several by then even if its socket
/// reader lags behind, so something was heard.
const CONFIRMED_MARKS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_speech_over_a_realtime_reply_clears_twilio_and_truncates_at_the_heard_position() {
    let rig = Rig::start(Interface::Ga, LONG_GREETING, &[], json!({})).await;
    rig.fake.push([wait("session.update"), wait("response.create")]);
    let mut call = rig.place(rig.options(&[], Duration::ZERO)).await;

    // 6 s of greeting in 60 deltas: one mark per 100 ms of audio.
    let long = agent_audio(LONG_MS as usize, 3);
    rig.fake.push([respond(
        "resp_g",
        "item_g",
        &long,
        LONG_MS as usize / 100,
        LONG_GREETING,
    )]);
    // Twilio confirms some of it, then the caller talks over the rest.
    call.caller_until("marks echoed", |seen| marks_echoed(seen) >= CONFIRMED_MARKS)
        .await;
    rig.fake.push([RealtimeScript::SpeechStarted {
        item_id: "item_c1".into(),
        audio_start_ms: 900,
    }]);
    let truncate = rig.fake.wait_for("conversation.item.truncate", 1).await.remove(0);
    let Ended {
        id: call_id,
        report,
        caller,
        live,
    } = call.end().await;

    // Twilio's buffer was cleared, once.
    assert_eq!(report.clears.len(), 1, "{:?}", report.clears);
    // Marks echoed before the clear are all the engine can know was played;
    // the ones released by the clear were never heard.
    let clear_at = caller
        .iter()
        .position(|e| matches!(e, CallerEvent::Clear { .. }))
        .expect("clear event");
    let confirmed = marks_echoed(&caller[..clear_at]) as u64;

    // The item was truncated at the confirmed position: more than nothing,
    // no more than the marks proved, less than the audio the model sent.
    assert_eq!(truncate["item_id"], "item_g", "{truncate}");
    assert_eq!(truncate["content_index"], 0, "{truncate}");
    let end_ms = truncate["audio_end_ms"].as_u64().expect("audio_end_ms");
    assert!(end_ms > 0, "{truncate}");
    assert!(
        end_ms <= 100 * confirmed,
        "truncated at {end_ms} ms but only {confirmed} marks (100 ms each) were echoed"
    );
    assert!(end_ms < LONG_MS, "{truncate}");
    assert_eq!(end_ms % 100, 0, "a mark boundary: {truncate}");
    assert!(
        rig.fake.events_of_type("conversation.item.truncate").len() == 1,
        "{:?}",
        rig.fake.events()
    );

    // The caller heard a prefix of the greeting, at least up to the
    // truncation point, and nothing of it after the clear.
    let heard = heard_samples(&report);
    let expected = decoded(&long);
    assert!(
        heard.len() >= end_ms as usize * 8 && heard.len() < expected.len(),
        "heard {} of {} samples, truncated at {end_ms} ms",
        heard.len(),
        expected.len()
    );
    assert!(
        heard[..] == expected[..heard.len()],
        "the bot audio differs from the model's"
    );

    // The engine stored and published the greeting cut to what was heard.
    let barge = live
        .iter()
        .find_map(|e| match &e.kind {
            CallEventKind::BargeIn {
                heard_ms, heard_text, ..
            } => Some((*heard_ms, heard_text.clone())),
            _ => None,
        })
        .expect("barge_in event");
    assert_eq!(barge.0, end_ms);
    assert!(
        !barge.1.is_empty() && barge.1.len() < LONG_GREETING.len() && LONG_GREETING.starts_with(&barge.1),
        "{barge:?}"
    );
    // Cut to the share of the words that the heard share of the audio
    // carries, at a word: no further, and one more word would go past it.
    let share = LONG_GREETING.len() * end_ms as usize / LONG_MS as usize;
    let next_cut = LONG_GREETING[barge.1.len() + 1..]
        .find(' ')
        .map_or(LONG_GREETING.len(), |p| barge.1.len() + 1 + p);
    assert!(
        LONG_GREETING[barge.1.len()..].starts_with(' ') && barge.1.len() <= share && next_cut > share,
        "{barge:?} for {end_ms} of {LONG_MS} ms"
    );
    assert_eq!(rig.transcript(call_id).await, vec![(Speaker::Agent, barge.1.clone())]);
    assert!(live.iter().any(|e| matches!(
        &e.kind,
        CallEventKind::TranscriptFinal {
            speaker: Speaker::Agent,
            interrupted: true,
            ..
        }
    )));
    let row = rig.app.store.calls().get(Scope::All, call_id).await.expect("row");
    assert_eq!(row.status, CallStatus::Completed);
    assert_eq!(row.end_reason, Some(EndReason::CallerHangup));
    rig.stop().await;
}

// ------------------------------------------------------------------ 3. tools

const BOOKED: &str = "You're booked for Tuesday, May 7 at 3 PM.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_realtime_function_call_books_the_appointment_and_answers_the_model() {
    let rig = Rig::start(
        Interface::Beta,
        "",
        &["book_appointment"],
        json!({"tools": {"timezone": "+00:00"}}),
    )
    .await;
    rig.fake.push([wait("session.update")]);
    let mut call = rig.place(rig.options(&[], Duration::ZERO)).await;
    let confirmation = agent_audio(400, 4);
    rig.fake.push([
        RealtimeScript::FunctionCall {
            call_id: "call_book".into(),
            name: "book_appointment".into(),
            arguments: r#"{"start": "2030-05-07T15:00:00Z", "title": "Consultation"}"#.into(),
        },
        wait("conversation.item.create"),
        wait("response.create"),
        respond("resp_1", "item_1", &confirmation, 2, BOOKED),
    ]);
    call.live_until("the confirmation heard", |k| {
        matches!(
            k,
            CallEventKind::TranscriptFinal {
                speaker: Speaker::Agent,
                ..
            }
        )
    })
    .await;
    let Ended {
        id: call_id, report, ..
    } = call.end().await;

    // The session offered the agent's enabled tool.
    let session = &rig.fake.events_of_type("session.update")[0]["session"];
    let offered: Vec<&str> = session["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(offered, ["book_appointment"], "{session}");

    // The appointment row, for this call and the caller's contact.
    let tenant = rig.demo.tenant_id;
    let appointments = rig
        .app
        .store
        .appointments()
        .list(
            Scope::Tenant(tenant),
            &AppointmentFilter::default(),
            PageRequest { limit: 10, offset: 0 },
        )
        .await
        .expect("appointments")
        .items;
    assert_eq!(appointments.len(), 1, "{appointments:?}");
    let booked = &appointments[0];
    assert_eq!(booked.starts_at.to_rfc3339(), "2030-05-07T15:00:00+00:00");
    assert_eq!(booked.title, "Consultation");
    assert_eq!(booked.call_id, Some(call_id));
    let contact = rig
        .app
        .store
        .contacts()
        .find_by_phone(tenant, &E164::parse(CALLER).expect("caller"))
        .await
        .expect("contact read")
        .expect("the caller became a contact");
    assert_eq!(booked.contact_id, Some(contact.id));

    // The model got the tool's output for its call, then was asked to answer.
    let events = rig.fake.events();
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    let outputs: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "conversation.item.create")
        .collect();
    assert_eq!(outputs.len(), 1, "{types:?}");
    let item = &outputs[0]["item"];
    assert_eq!(item["type"], "function_call_output", "{item}");
    assert_eq!(item["call_id"], "call_book", "{item}");
    let output: Value = serde_json::from_str(item["output"].as_str().expect("output text")).expect("output json");
    assert_eq!(output["appointment_id"], booked.id.to_string(), "{output}");
    let created = types
        .iter()
        .position(|t| *t == "conversation.item.create")
        .expect("item");
    let answered = types
        .iter()
        .rposition(|t| *t == "response.create")
        .expect("response.create");
    assert!(created < answered, "{types:?}");
    assert_eq!(
        types.iter().filter(|t| **t == "response.create").count(),
        1,
        "no greeting: the only response asked for answers the tool: {types:?}"
    );

    // The confirmation was played to the caller and stored.
    assert!(
        heard_samples(&report) == decoded(&confirmation),
        "the bot audio differs"
    );
    assert_eq!(rig.transcript(call_id).await, vec![(Speaker::Agent, BOOKED.to_owned())]);
    let row = rig.app.store.calls().get(Scope::All, call_id).await.expect("row");
    assert_eq!(row.status, CallStatus::Completed);
    assert_eq!(row.end_reason, Some(EndReason::CallerHangup));
    rig.stop().await;
}
