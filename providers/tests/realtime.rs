//! The Realtime client against the fake Realtime server, for both the beta
//! and the GA interface: the session shape, audio both ways, barge-in
//! truncation, a function call round trip, and each failure's error kind.

use std::time::Duration;

use serde_json::{Value, json};
use switchboard_fakes::openai_realtime::{FakeRealtime, Interface, RealtimeScript as S};
use switchboard_providers::realtime::{
    ItemId, RealtimeConfig, RealtimeEvent, RealtimeInterface, RealtimeReceiver, RealtimeSender, RealtimeSession,
    ResponseId, ResponseStatus, ToolCallId, TurnDetection, ulaw_ms,
};
use switchboard_providers::{ProviderErrorKind, SecretString, ToolSpec};

/// Only guards against a hung test; no assertion depends on it.
const HANG_GUARD: Duration = Duration::from_secs(10);

fn config(fake: &FakeRealtime, interface: Interface) -> RealtimeConfig {
    let mut c = RealtimeConfig::openai("gpt-realtime", SecretString::from(FakeRealtime::API_KEY));
    c.url = fake.url();
    c.interface = match interface {
        Interface::Beta => RealtimeInterface::Beta,
        Interface::Ga => RealtimeInterface::Ga,
    };
    c.voice = "marin".into();
    c.instructions = "You are the front desk of Luigi's. Be brief.".into();
    c.tools = vec![ToolSpec {
        name: "book_table".into(),
        description: "Create a reservation".into(),
        parameters: json!({"type": "object", "properties": {"time": {"type": "string"}}, "required": ["time"]}),
    }];
    c.turn_detection = Some(TurnDetection {
        threshold: 0.6,
        prefix_padding_ms: 200,
        silence_duration_ms: 700,
        ..Default::default()
    });
    c.connect_retries = 0;
    c
}

async fn start(interface: Interface) -> (FakeRealtime, RealtimeSender, RealtimeReceiver) {
    let fake = FakeRealtime::start(interface).await;
    let (tx, mut rx) = RealtimeSession::connect(config(&fake, interface))
        .await
        .expect("connect");
    assert_eq!(
        next(&mut rx).await,
        Ok(Some(RealtimeEvent::SessionReady)),
        "the fake accepted our session.update"
    );
    (fake, tx, rx)
}

async fn next(rx: &mut RealtimeReceiver) -> Result<Option<RealtimeEvent>, ProviderErrorKind> {
    tokio::time::timeout(HANG_GUARD, rx.next())
        .await
        .expect("hung")
        .map_err(|e| e.kind)
}

/// Events up to and including the next `ResponseDone`.
async fn until_response_done(rx: &mut RealtimeReceiver) -> Vec<RealtimeEvent> {
    let mut events = Vec::new();
    loop {
        let event = next(rx).await.expect("event").expect("open");
        let done = matches!(event, RealtimeEvent::ResponseDone { .. });
        events.push(event);
        if done {
            return events;
        }
    }
}

fn audio_of(events: &[RealtimeEvent]) -> Vec<u8> {
    events
        .iter()
        .filter_map(|e| match e {
            RealtimeEvent::AudioDelta { ulaw, .. } => Some(ulaw.as_slice()),
            _ => None,
        })
        .flatten()
        .copied()
        .collect()
}

/// Every byte value, so a base64 or framing slip shows.
fn ulaw_pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 256) as u8).collect()
}

macro_rules! both_interfaces {
    ($($name:ident),* $(,)?) => {
        mod beta {
            $(#[tokio::test] async fn $name() { super::$name(super::Interface::Beta).await; })*
        }
        mod ga {
            $(#[tokio::test] async fn $name() { super::$name(super::Interface::Ga).await; })*
        }
    };
}

both_interfaces!(
    session_update_configures_ulaw_vad_voice_and_tools,
    appended_audio_arrives_byte_exact,
    audio_deltas_decode_to_the_bytes_sent,
    speech_started_then_truncate_at_the_played_position,
    function_call_round_trip,
    malformed_json_is_malformed_and_the_session_goes_on,
    oversized_message_is_malformed,
    close_mid_response_is_closed,
    stall_during_a_response_is_a_timeout,
    unanswered_response_create_is_a_timeout,
    idle_silence_is_not_a_stall,
    wrong_interface_header_is_refused,
);

async fn session_update_configures_ulaw_vad_voice_and_tools(interface: Interface) {
    let (fake, _tx, _rx) = start(interface).await;
    let conn = &fake.connections()[0];
    assert_eq!(
        conn.authorization.as_deref(),
        Some(&*format!("Bearer {}", FakeRealtime::API_KEY))
    );
    assert_eq!(conn.model.as_deref(), Some("gpt-realtime"));
    let s = &fake.wait_for("session.update", 1).await[0]["session"];
    let (vad, tool) = (&s["turn_detection"], &s["tools"][0]);
    match interface {
        Interface::Beta => {
            assert_eq!(conn.openai_beta.as_deref(), Some("realtime=v1"));
            assert_eq!(s["input_audio_format"], "g711_ulaw");
            assert_eq!(s["output_audio_format"], "g711_ulaw");
            assert_eq!(s["voice"], "marin");
            assert_eq!(s["input_audio_transcription"]["model"], "whisper-1");
            check_vad(vad);
        }
        Interface::Ga => {
            assert_eq!(conn.openai_beta, None);
            assert_eq!(s["type"], "realtime");
            assert_eq!(s["audio"]["input"]["format"], json!({"type": "audio/pcmu"}));
            assert_eq!(s["audio"]["output"]["format"], json!({"type": "audio/pcmu"}));
            assert_eq!(s["audio"]["output"]["voice"], "marin");
            assert_eq!(s["audio"]["input"]["transcription"]["model"], "whisper-1");
            check_vad(&s["audio"]["input"]["turn_detection"]);
        }
    }
    assert_eq!(s["instructions"], "You are the front desk of Luigi's. Be brief.");
    assert_eq!(tool["type"], "function");
    assert_eq!(tool["name"], "book_table");
    assert_eq!(tool["description"], "Create a reservation");
    assert_eq!(tool["parameters"]["required"], json!(["time"]));
}

fn check_vad(vad: &Value) {
    assert_eq!(vad["type"], "server_vad");
    assert!((vad["threshold"].as_f64().expect("threshold") - 0.6).abs() < 1e-6);
    assert_eq!(vad["prefix_padding_ms"], 200);
    assert_eq!(vad["silence_duration_ms"], 700);
}

async fn appended_audio_arrives_byte_exact(interface: Interface) {
    let (fake, mut tx, _rx) = start(interface).await;
    let audio = ulaw_pattern(160 * 3 + 1);
    for frame in audio.chunks(160) {
        tx.append_audio(frame).await.expect("append");
    }
    let appends = fake.wait_for("input_audio_buffer.append", 4).await;
    assert_eq!(appends.len(), 4);
    assert_eq!(fake.appended_audio(), audio);
}

async fn audio_deltas_decode_to_the_bytes_sent(interface: Interface) {
    let (fake, _tx, mut rx) = start(interface).await;
    let audio = ulaw_pattern(1000);
    fake.push([S::Respond {
        response_id: "resp_1".into(),
        item_id: "item_a".into(),
        ulaw: audio.clone(),
        chunks: 7,
        transcript: "Table for two?".into(),
    }]);
    let events = until_response_done(&mut rx).await;
    assert_eq!(audio_of(&events), audio);
    let deltas: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, RealtimeEvent::AudioDelta { .. }))
        .collect();
    assert_eq!(deltas.len(), 7);
    for d in deltas {
        let RealtimeEvent::AudioDelta {
            response_id,
            item_id,
            content_index,
            ..
        } = d
        else {
            unreachable!()
        };
        assert_eq!(
            (response_id.as_str(), item_id.as_str(), *content_index),
            ("resp_1", "item_a", 0)
        );
    }
    let item = ItemId::from("item_a");
    assert_eq!(
        events[0],
        RealtimeEvent::ResponseStarted {
            response_id: ResponseId::from("resp_1")
        }
    );
    assert!(events.contains(&RealtimeEvent::AudioDone {
        response_id: ResponseId::from("resp_1"),
        item_id: item.clone()
    }));
    assert!(events.contains(&RealtimeEvent::AgentTranscriptDelta {
        item_id: item.clone(),
        text: "Table for two?".into()
    }));
    assert!(events.contains(&RealtimeEvent::AgentTranscriptDone {
        item_id: item,
        text: "Table for two?".into()
    }));
    assert_eq!(
        events.last(),
        Some(&RealtimeEvent::ResponseDone {
            response_id: ResponseId::from("resp_1"),
            status: ResponseStatus::Completed,
            reason: None
        })
    );
}

async fn speech_started_then_truncate_at_the_played_position(interface: Interface) {
    let (fake, mut tx, mut rx) = start(interface).await;
    // 200 ms of agent audio; the caller talks over it after 100 ms were played.
    fake.push([
        S::Respond {
            response_id: "resp_1".into(),
            item_id: "item_agent".into(),
            ulaw: ulaw_pattern(1600),
            chunks: 10,
            transcript: "Hello there".into(),
        },
        S::WaitFor("input_audio_buffer.append".into()),
        S::SpeechStarted {
            item_id: "item_caller".into(),
            audio_start_ms: 1234,
        },
        S::WaitFor("conversation.item.truncate".into()),
        S::Close(1000, "done".into()),
    ]);
    until_response_done(&mut rx).await;
    tx.append_audio(&[0xFF; 160]).await.expect("append");
    assert_eq!(
        next(&mut rx).await,
        Ok(Some(RealtimeEvent::SpeechStarted {
            audio_start_ms: 1234,
            item_id: ItemId::from("item_caller")
        }))
    );
    let played_bytes = 800;
    tx.truncate(&ItemId::from("item_agent"), 0, ulaw_ms(played_bytes))
        .await
        .expect("truncate");
    let truncate = &fake.wait_for("conversation.item.truncate", 1).await[0];
    assert_eq!(truncate["item_id"], "item_agent");
    assert_eq!(truncate["content_index"], 0);
    assert_eq!(truncate["audio_end_ms"], 100);
    // The fake would answer an out-of-range truncate with an `error` event;
    // instead the session ends cleanly.
    assert_eq!(next(&mut rx).await, Ok(None));
}

async fn function_call_round_trip(interface: Interface) {
    let (fake, mut tx, mut rx) = start(interface).await;
    fake.push([
        S::FunctionCall {
            call_id: "call_001".into(),
            name: "book_table".into(),
            arguments: r#"{"time":"19:00"}"#.into(),
        },
        S::WaitFor("response.create".into()),
        S::Respond {
            response_id: "resp_2".into(),
            item_id: "item_b".into(),
            ulaw: ulaw_pattern(320),
            chunks: 2,
            transcript: "Booked.".into(),
        },
    ]);
    let events = until_response_done(&mut rx).await;
    let calls: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, RealtimeEvent::FunctionCall { .. }))
        .collect();
    // The fake announces the call twice (arguments.done and output_item.done).
    assert_eq!(
        calls,
        vec![&RealtimeEvent::FunctionCall {
            call_id: ToolCallId::from("call_001"),
            name: "book_table".into(),
            arguments: r#"{"time":"19:00"}"#.into(),
        }]
    );
    tx.function_output(&ToolCallId::from("call_001"), &json!({"ok": true, "table": 4}))
        .await
        .expect("output");
    let created = &fake.wait_for("conversation.item.create", 1).await[0];
    assert_eq!(created["item"]["type"], "function_call_output");
    assert_eq!(created["item"]["call_id"], "call_001");
    let output: Value =
        serde_json::from_str(created["item"]["output"].as_str().expect("output is a string")).expect("json");
    assert_eq!(output, json!({"ok": true, "table": 4}));
    fake.wait_for("response.create", 1).await;
    let kinds: Vec<Value> = fake.events().iter().map(|e| e["type"].clone()).collect();
    assert_eq!(
        kinds[kinds.len() - 2..],
        [json!("conversation.item.create"), json!("response.create")]
    );
    let spoken = until_response_done(&mut rx).await;
    assert_eq!(
        spoken[0],
        RealtimeEvent::ResponseStarted {
            response_id: ResponseId::from("resp_2")
        }
    );
    assert_eq!(audio_of(&spoken), ulaw_pattern(320));
}

async fn malformed_json_is_malformed_and_the_session_goes_on(interface: Interface) {
    let (fake, _tx, mut rx) = start(interface).await;
    fake.push([
        S::SendRaw("{\"type\": \"response.audio.delta\", ".into()),
        S::Send(
            json!({"type": "response.output_audio.delta", "response_id": "r", "item_id": "i",
                       "content_index": 0, "delta": "not base64!"}),
        ),
        S::SpeechStarted {
            item_id: "item_c".into(),
            audio_start_ms: 5,
        },
    ]);
    assert!(matches!(next(&mut rx).await, Err(ProviderErrorKind::Malformed(_))));
    assert!(matches!(next(&mut rx).await, Err(ProviderErrorKind::Malformed(_))));
    assert_eq!(
        next(&mut rx).await,
        Ok(Some(RealtimeEvent::SpeechStarted {
            audio_start_ms: 5,
            item_id: ItemId::from("item_c")
        }))
    );
}

async fn oversized_message_is_malformed(interface: Interface) {
    let fake = FakeRealtime::start(interface).await;
    let mut c = config(&fake, interface);
    c.max_message_bytes = 16 * 1024;
    let (_tx, mut rx) = RealtimeSession::connect(c).await.expect("connect");
    assert_eq!(next(&mut rx).await, Ok(Some(RealtimeEvent::SessionReady)));
    let padding = "x".repeat(64 * 1024);
    fake.push([S::Send(json!({"type": "rate_limits.updated", "padding": padding}))]);
    assert!(matches!(next(&mut rx).await, Err(ProviderErrorKind::Malformed(why)) if why.contains("16384")));
}

async fn close_mid_response_is_closed(interface: Interface) {
    let (fake, _tx, mut rx) = start(interface).await;
    fake.push([
        S::Send(json!({"type": "response.created", "response": {"id": "resp_9", "status": "in_progress"}})),
        S::SendAudio {
            item_id: "item_z".into(),
            response_id: "resp_9".into(),
            ulaw: ulaw_pattern(320),
            chunks: 2,
        },
        S::Close(1011, "internal error".into()),
    ]);
    assert_eq!(
        next(&mut rx).await,
        Ok(Some(RealtimeEvent::ResponseStarted {
            response_id: ResponseId::from("resp_9")
        }))
    );
    let mut audio = Vec::new();
    let outcome = loop {
        match next(&mut rx).await {
            Ok(Some(RealtimeEvent::AudioDelta { ulaw, .. })) => audio.extend(ulaw),
            Ok(Some(RealtimeEvent::AudioDone { .. })) => {}
            other => break other,
        }
    };
    assert_eq!(outcome, Err(ProviderErrorKind::Closed));
    assert_eq!(audio, ulaw_pattern(320));
    assert_eq!(next(&mut rx).await, Ok(None));
}

async fn stall_during_a_response_is_a_timeout(interface: Interface) {
    let fake = FakeRealtime::start(interface).await;
    let mut c = config(&fake, interface);
    // The timer only runs once `response.created` arrived, and the fake then
    // never sends again, so this cannot fire early.
    c.stall_timeout = Duration::from_millis(200);
    let (_tx, mut rx) = RealtimeSession::connect(c).await.expect("connect");
    assert_eq!(next(&mut rx).await, Ok(Some(RealtimeEvent::SessionReady)));
    fake.push([
        S::Send(json!({"type": "response.created", "response": {"id": "resp_s", "status": "in_progress"}})),
        S::Stall,
    ]);
    assert_eq!(
        next(&mut rx).await,
        Ok(Some(RealtimeEvent::ResponseStarted {
            response_id: ResponseId::from("resp_s")
        }))
    );
    assert_eq!(next(&mut rx).await, Err(ProviderErrorKind::Timeout));
}

async fn unanswered_response_create_is_a_timeout(interface: Interface) {
    let fake = FakeRealtime::start(interface).await;
    let mut c = config(&fake, interface);
    c.stall_timeout = Duration::from_millis(200);
    let (mut tx, mut rx) = RealtimeSession::connect(c).await.expect("connect");
    assert_eq!(next(&mut rx).await, Ok(Some(RealtimeEvent::SessionReady)));
    fake.push([S::WaitFor("response.create".into()), S::Stall]);
    tx.create_response().await.expect("response.create");
    assert_eq!(next(&mut rx).await, Err(ProviderErrorKind::Timeout));
}

async fn idle_silence_is_not_a_stall(interface: Interface) {
    let fake = FakeRealtime::start(interface).await;
    let mut c = config(&fake, interface);
    c.stall_timeout = Duration::from_millis(20);
    let (mut tx, mut rx) = RealtimeSession::connect(c).await.expect("connect");
    assert_eq!(next(&mut rx).await, Ok(Some(RealtimeEvent::SessionReady)));
    fake.push([
        S::WaitFor("input_audio_buffer.append".into()),
        S::SpeechStarted {
            item_id: "item_late".into(),
            audio_start_ms: 40,
        },
    ]);
    // Waiting far longer than the stall timeout while no response is active.
    let (event, sent) = tokio::join!(next(&mut rx), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        tx.append_audio(&[0x7F; 160]).await
    });
    sent.expect("append");
    assert_eq!(
        event,
        Ok(Some(RealtimeEvent::SpeechStarted {
            audio_start_ms: 40,
            item_id: ItemId::from("item_late")
        }))
    );
}

async fn wrong_interface_header_is_refused(interface: Interface) {
    let fake = FakeRealtime::start(interface).await;
    let mut c = config(&fake, interface);
    c.interface = match interface {
        Interface::Beta => RealtimeInterface::Ga,
        Interface::Ga => RealtimeInterface::Beta,
    };
    let e = RealtimeSession::connect(c).await.expect_err("refused");
    assert_eq!(e.kind, ProviderErrorKind::Status(400));
    assert!(fake.connections().is_empty());
}

#[tokio::test]
async fn wrong_key_is_status_401_and_not_retried() {
    let fake = FakeRealtime::start(Interface::Ga).await;
    let mut c = config(&fake, Interface::Ga);
    c.api_key = Some(SecretString::from("sk-wrong"));
    c.connect_retries = 3;
    let e = RealtimeSession::connect(c).await.expect_err("refused");
    assert_eq!(
        (e.provider, e.kind),
        ("openai_realtime", ProviderErrorKind::Status(401))
    );
}

#[tokio::test]
async fn unreachable_server_is_a_transport_error_after_retries() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let mut c = RealtimeConfig::openai("gpt-realtime", SecretString::from("sk-x"));
    c.url = format!("ws://{addr}/v1/realtime");
    c.connect_retries = 2;
    c.retry_backoff = Duration::from_millis(1);
    let e = RealtimeSession::connect(c).await.expect_err("refused");
    assert!(matches!(e.kind, ProviderErrorKind::Transport(_)), "{e}");
}

#[tokio::test]
async fn bad_url_is_a_config_error() {
    let mut c = RealtimeConfig::openai("gpt-realtime", SecretString::from("sk-x"));
    c.url = "https://api.openai.com/v1/realtime".into();
    let e = RealtimeSession::connect(c).await.expect_err("refused");
    assert!(matches!(e.kind, ProviderErrorKind::Config(_)), "{e}");
}

#[test]
fn debug_never_shows_the_key() {
    let c = RealtimeConfig::openai("gpt-realtime", SecretString::from("sk-very-secret"));
    assert!(!format!("{c:?}").contains("sk-very-secret"));
}

#[test]
fn played_bytes_to_milliseconds() {
    assert_eq!(ulaw_ms(160), 20);
    assert_eq!(ulaw_ms(8000), 1000);
    assert_eq!(ulaw_ms(0), 0);
}
