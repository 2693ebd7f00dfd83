//! The caller against a fake engine that speaks the real wire protocols: a
//! voice webhook that validates Twilio's signature and answers TwiML, and a
//! Media Streams socket driven step by step by each test.
//!
//! Calls run in real time (tokio's paused clock would let the caller's ticks
//! race ahead of the fake engine's reads), but every assertion is about frame
//! counts and stream times (derived from the frame count), never wall clock.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use futures::StreamExt as _;
use switchboard_caller::{CallOptions, CallReport, CallerError, CallerEvent, Hangup, live, place_call};
use switchboard_domain::{CallEvent, CallEventKind, CallId, Speaker, TenantId};
use switchboard_media::twilio::parse_inbound;
use switchboard_media::ulaw;
use switchboard_providers::twilio::signature;
use switchboard_providers::twilio::twiml::{self, SayOptions, VoiceResponse};
use switchboard_providers::twilio::webhook::VoiceWebhook;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use url::Url;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";
const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const PUBLIC: &str = "https://voice.example.com";
const STREAM_URL: &str = "wss://voice.example.com/twilio/media?token=abc&v=1";
const ODD: &str = "a&b<c>'d'";
/// Safety net against a hung test, not a performance bound.
const PATIENCE: Duration = Duration::from_secs(120);

#[derive(Clone)]
enum Answer {
    Stream,
    Raw(StatusCode, String),
}

#[derive(Clone)]
struct Fake {
    answer: Answer,
    webhooks: mpsc::UnboundedSender<Vec<(String, String)>>,
    sockets: mpsc::UnboundedSender<WebSocket>,
}

struct Engine {
    url: Url,
    webhooks: mpsc::UnboundedReceiver<Vec<(String, String)>>,
    sockets: mpsc::UnboundedReceiver<WebSocket>,
}

async fn voice(State(fake): State<Fake>, headers: HeaderMap, body: String) -> Response {
    let params: Vec<(String, String)> = serde_urlencoded::from_str(&body).expect("form body");
    let sig = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !signature::validate(TOKEN, &format!("{PUBLIC}/twilio/voice"), &params, sig) {
        return (StatusCode::FORBIDDEN, "invalid signature").into_response();
    }
    // The engine's own webhook parser must accept what the caller posts.
    VoiceWebhook::from_form(&params).expect("a valid Twilio voice webhook");
    fake.webhooks.send(params).expect("test alive");
    match fake.answer {
        Answer::Stream => {
            let doc = twiml::connect_stream(STREAM_URL, &[("call_id", "call-42"), ("odd", ODD)]);
            ([("content-type", "text/xml")], doc.into_string()).into_response()
        }
        Answer::Raw(status, body) => (status, body).into_response(),
    }
}

async fn media(
    State(fake): State<Fake>,
    Query(q): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    assert_eq!(
        q,
        vec![("token".to_owned(), "abc".to_owned()), ("v".to_owned(), "1".to_owned())]
    );
    let sig = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !signature::validate(TOKEN, STREAM_URL, &[], sig) {
        return (StatusCode::FORBIDDEN, "invalid upgrade signature").into_response();
    }
    ws.on_upgrade(move |socket| async move {
        let _ = fake.sockets.send(socket);
    })
}

async fn start_engine(answer: Answer) -> Engine {
    let (wtx, webhooks) = mpsc::unbounded_channel();
    let (stx, sockets) = mpsc::unbounded_channel();
    let fake = Fake {
        answer,
        webhooks: wtx,
        sockets: stx,
    };
    let app = Router::new()
        .route("/twilio/voice", post(voice))
        .route("/twilio/media", get(media))
        .with_state(fake);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Engine {
        url: Url::parse(&format!("http://{addr}")).unwrap(),
        webhooks,
        sockets,
    }
}

fn tone(samples: usize) -> Vec<i16> {
    (0..samples)
        .map(|i| (9000.0 * (i as f64 * 2.0 * std::f64::consts::PI * 300.0 / 8000.0).sin()) as i16)
        .collect()
}

fn options(engine: &Engine, audio: &[i16]) -> CallOptions {
    let mut o = CallOptions::new(engine.url.clone(), ACCOUNT, TOKEN, "+15551230000", "+15005550006");
    o.signing_base = Some(Url::parse(PUBLIC).unwrap());
    o.caller_audio = Arc::from(audio);
    o.lead_silence = Duration::from_millis(200);
    o.tail = Duration::from_secs(1);
    o
}

async fn text(ws: &mut WebSocket) -> Option<serde_json::Value> {
    loop {
        match ws.recv().await? {
            Ok(Message::Text(t)) => {
                // The engine's parser must read every frame Twilio (the caller) sends.
                parse_inbound(t.as_str(), 65_536).unwrap_or_else(|e| panic!("engine cannot parse {t}: {e}"));
                return Some(serde_json::from_str(t.as_str()).unwrap());
            }
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

async fn send(ws: &mut WebSocket, value: serde_json::Value) {
    ws.send(Message::Text(value.to_string().into())).await.unwrap();
}

fn bot_frame(i: usize) -> [u8; 160] {
    // Distinct, non-silent μ-law bytes per frame.
    let mut f = [0u8; 160];
    for (j, b) in f.iter_mut().enumerate() {
        *b = (0x10 + (i * 7 + j) % 0x60) as u8;
    }
    f
}

fn media_msg(sid: &str, ulaw_bytes: &[u8]) -> serde_json::Value {
    let payload = base64::engine::general_purpose::STANDARD.encode(ulaw_bytes);
    serde_json::json!({"event": "media", "streamSid": sid, "media": {"payload": payload}})
}

fn events_of(rx: &mut mpsc::UnboundedReceiver<CallerEvent>) -> Vec<CallerEvent> {
    let mut out = Vec::new();
    while let Ok(e) = rx.try_recv() {
        out.push(e);
    }
    out
}

/// What the fake engine observed on the stream.
#[derive(Debug, Default)]
struct Seen {
    media: u64,
    dtmf_after_chunk: Option<u64>,
    m1_echo_after: Option<u64>,
    m2_echo_after_clear: Option<u64>,
    stopped: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_call_speaks_twilios_protocol_and_emulates_playback() {
    let mut engine = start_engine(Answer::Stream).await;
    let audio = tone(4000); // 0.5 s: 25 frames
    let mut opts = options(&engine, &audio);
    opts.dtmf = vec![(Duration::from_millis(100), '5')];
    let (etx, mut erx) = mpsc::unbounded_channel();
    let call = tokio::spawn(place_call(opts, Some(etx)));

    let params = engine.webhooks.recv().await.unwrap();
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("AccountSid").as_deref(), Some(ACCOUNT));
    assert_eq!(get("CallStatus").as_deref(), Some("ringing"));
    assert_eq!(get("Direction").as_deref(), Some("inbound"));
    assert_eq!(get("ApiVersion").as_deref(), Some("2010-04-01"));
    assert_eq!(get("To").as_deref(), Some("+15005550006"));
    let call_sid = get("CallSid").unwrap();
    assert!(call_sid.len() == 34 && call_sid.starts_with("CA") && call_sid[2..].chars().all(|c| c.is_ascii_hexdigit()));

    let mut ws = tokio::time::timeout(PATIENCE, engine.sockets.recv())
        .await
        .unwrap()
        .unwrap();
    let connected = text(&mut ws).await.unwrap();
    assert_eq!(
        connected,
        serde_json::json!({"event":"connected","protocol":"Call","version":"1.0.0"})
    );
    let start = text(&mut ws).await.unwrap();
    assert_eq!(start["event"], "start");
    assert_eq!(start["sequenceNumber"], "1");
    let sid = start["streamSid"].as_str().unwrap().to_owned();
    assert!(sid.len() == 34 && sid.starts_with("MZ"));
    assert_eq!(start["start"]["streamSid"], sid.as_str());
    assert_eq!(start["start"]["accountSid"], ACCOUNT);
    assert_eq!(start["start"]["callSid"], call_sid.as_str());
    assert_eq!(start["start"]["tracks"], serde_json::json!(["inbound"]));
    assert_eq!(
        start["start"]["customParameters"],
        serde_json::json!({"call_id": "call-42", "odd": ODD})
    );
    assert_eq!(
        start["start"]["mediaFormat"],
        serde_json::json!({"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1})
    );

    let expected_ulaw: Vec<u8> = audio.iter().map(|&s| ulaw::encode(s)).collect();
    let mut seen = Seen::default();
    let mut last_seq = 1u64;
    let mut m1_sent_at: Option<u64> = None;
    let mut m2_sent_at: Option<u64> = None;
    let mut clear_sent_at: Option<u64> = None;
    while let Some(msg) = tokio::time::timeout(PATIENCE, text(&mut ws)).await.unwrap() {
        let seq: u64 = msg["sequenceNumber"].as_str().unwrap().parse().unwrap();
        assert_eq!(seq, last_seq + 1, "sequence numbers count every message: {msg}");
        last_seq = seq;
        assert_eq!(msg["streamSid"], sid.as_str());
        match msg["event"].as_str().unwrap() {
            "media" => {
                seen.media += 1;
                let chunk: u64 = msg["media"]["chunk"].as_str().unwrap().parse().unwrap();
                let ts: u64 = msg["media"]["timestamp"].as_str().unwrap().parse().unwrap();
                assert_eq!(msg["media"]["track"], "inbound");
                assert_eq!(chunk, seen.media);
                assert_eq!(ts, (chunk - 1) * 20);
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(msg["media"]["payload"].as_str().unwrap())
                    .unwrap();
                assert_eq!(bytes.len(), 160);
                // Frames 10..35 carry the caller audio (200 ms lead), the rest is silence.
                let k = (chunk - 1) as usize;
                if (10..35).contains(&k) {
                    assert_eq!(&bytes[..], &expected_ulaw[(k - 10) * 160..(k - 9) * 160], "frame {k}");
                } else {
                    assert!(bytes.iter().all(|&b| b == 0xFF), "frame {k} should be silence");
                }
                // Script: bot audio + mark at chunk 5; more audio + mark at 40; clear 5 frames later.
                if chunk == 5 {
                    for i in 0..10 {
                        send(&mut ws, media_msg(&sid, &bot_frame(i))).await;
                    }
                    send(
                        &mut ws,
                        serde_json::json!({"event":"mark","streamSid":sid,"mark":{"name":"m1"}}),
                    )
                    .await;
                    m1_sent_at = Some(seen.media);
                }
                if chunk == 40 {
                    for i in 10..60 {
                        send(&mut ws, media_msg(&sid, &bot_frame(i))).await;
                    }
                    send(
                        &mut ws,
                        serde_json::json!({"event":"mark","streamSid":sid,"mark":{"name":"m2"}}),
                    )
                    .await;
                    m2_sent_at = Some(seen.media);
                }
                if m2_sent_at.is_some_and(|at| seen.media == at + 5) {
                    send(&mut ws, serde_json::json!({"event":"clear","streamSid":sid})).await;
                    clear_sent_at = Some(seen.media);
                }
            }
            "dtmf" => {
                assert_eq!(msg["dtmf"], serde_json::json!({"track":"inbound_track","digit":"5"}));
                seen.dtmf_after_chunk = Some(seen.media);
            }
            "mark" => match msg["mark"]["name"].as_str().unwrap() {
                "m1" => seen.m1_echo_after = Some(seen.media - m1_sent_at.unwrap()),
                "m2" => seen.m2_echo_after_clear = Some(seen.media - clear_sent_at.expect("m2 only after the clear")),
                other => panic!("unexpected mark {other}"),
            },
            "stop" => {
                assert_eq!(
                    msg["stop"],
                    serde_json::json!({"accountSid": ACCOUNT, "callSid": call_sid})
                );
                seen.stopped = true;
            }
            other => panic!("unexpected event {other}"),
        }
    }

    drop(ws);
    let report: CallReport = call.await.unwrap().unwrap();
    let events = events_of(&mut erx);

    // Stream shape: 10 lead + 25 audio + 50 tail frames, then stop.
    assert!(seen.stopped);
    assert_eq!(seen.media, 85);
    assert_eq!(report.frames_sent, 85);
    assert_eq!(report.duration, Duration::from_millis(1700));
    assert_eq!(report.hangup, Hangup::Caller);
    // DTMF at 100 ms goes out in tick 5, right after chunk 6.
    assert_eq!(seen.dtmf_after_chunk, Some(6));
    assert_eq!(report.call_id.as_deref(), Some("call-42"));
    assert_eq!(report.call_sid, call_sid);
    assert_eq!(report.stream_sid, sid);
    assert_eq!(report.stream_url, STREAM_URL);

    // m1 waited for its 10 frames: at least 10 caller ticks passed on the wire.
    assert!(seen.m1_echo_after.unwrap() >= 10, "{seen:?}");
    // m2 sat behind 50 frames but the clear released it at once, not after the 45 left.
    assert!(seen.m2_echo_after_clear.unwrap() < 45, "{seen:?}");
    assert_eq!(report.frames_received, 60);
    assert_eq!((report.marks_received, report.marks_echoed), (2, 2));
    assert_eq!(report.clears.len(), 1);
    assert_eq!(report.invalid_messages, 0);

    // Recording: the first 10 bot frames exactly, time-aligned from the first playback tick.
    let t0 = report.first_bot_audio.unwrap();
    let first = (t0.as_millis() / 20) as usize;
    assert_eq!(report.bot_audio.len(), 85 * 160);
    assert!(report.bot_audio[..first * 160].iter().all(|&s| s == 0));
    for i in 0..10 {
        let expected: Vec<i16> = bot_frame(i).iter().map(|&b| ulaw::decode(b)).collect();
        assert_eq!(
            &report.bot_audio[(first + i) * 160..(first + i + 1) * 160],
            &expected[..],
            "bot frame {i}"
        );
    }
    // The m1 echo is stamped exactly when its 10th frame finished.
    let m1_echo = events
        .iter()
        .find_map(|e| match e {
            CallerEvent::MarkEchoed { name, at } if name == "m1" => Some(*at),
            _ => None,
        })
        .unwrap();
    assert_eq!(m1_echo, t0 + Duration::from_millis(200));
    // Nothing plays after the clear (the frame already playing finishes first).
    let clear_at = report.clears[0];
    let silent_from = ((clear_at.as_millis() / 20) as usize + 2) * 160;
    assert!(report.bot_audio[silent_from..].iter().all(|&s| s == 0));
    let second_burst_frames = report.bot_audio[(first + 10) * 160..]
        .chunks(160)
        .filter(|c| c.iter().any(|&s| s != 0))
        .count();
    assert!(second_burst_frames < 50, "{second_burst_frames}");
    assert!((1..=2).contains(&report.bot_speech_segments.len()));
    assert_eq!(report.bot_speech_segments[0], (t0, t0 + Duration::from_millis(200)));

    // Caller speech comes from the schedule: 200 ms .. 700 ms.
    assert!(events.contains(&CallerEvent::CallerSpeechStarted {
        at: Duration::from_millis(200)
    }));
    assert!(events.contains(&CallerEvent::CallerSpeechEnded {
        at: Duration::from_millis(700)
    }));
    assert!(events.contains(&CallerEvent::DtmfSent {
        digit: '5',
        at: Duration::from_millis(100)
    }));
    assert!(matches!(&events[0], CallerEvent::Answered { call_id: Some(id), .. } if id == "call-42"));
    assert!(matches!(&events[1], CallerEvent::Started { stream_sid } if *stream_sid == sid));
    assert!(matches!(events.last(), Some(CallerEvent::Closed { .. })));
    assert_eq!(
        events.iter().filter(|e| matches!(e, CallerEvent::Clear { .. })).count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marks_are_never_echoed_when_answer_marks_is_off() {
    let mut engine = start_engine(Answer::Stream).await;
    let mut opts = options(&engine, &tone(800));
    opts.answer_marks = false;
    opts.tail = Duration::from_millis(600);
    let call = tokio::spawn(place_call(opts, None));
    let mut ws = engine.sockets.recv().await.unwrap();
    text(&mut ws).await.unwrap();
    let sid = text(&mut ws).await.unwrap()["streamSid"].as_str().unwrap().to_owned();
    let mut marks = 0;
    let mut media = 0;
    while let Some(msg) = text(&mut ws).await {
        match msg["event"].as_str().unwrap() {
            "media" => {
                media += 1;
                if media == 2 {
                    send(&mut ws, media_msg(&sid, &bot_frame(0))).await;
                    send(
                        &mut ws,
                        serde_json::json!({"event":"mark","streamSid":sid,"mark":{"name":"x"}}),
                    )
                    .await;
                }
            }
            "mark" => marks += 1,
            _ => {}
        }
    }
    drop(ws); // closes our side, so the caller's wait for a close reply ends now
    let report = call.await.unwrap().unwrap();
    assert_eq!(marks, 0);
    assert_eq!((report.marks_received, report.marks_echoed), (1, 0));
    // The audio still played.
    assert_eq!(
        report
            .bot_audio
            .chunks(160)
            .filter(|c| c.iter().any(|&s| s != 0))
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_end_hangs_up_once_the_bot_has_answered_and_gone_quiet() {
    let mut engine = start_engine(Answer::Stream).await;
    let mut opts = options(&engine, &tone(800)); // caller audio ends at frame 15
    opts.tail = Duration::from_secs(30);
    opts.idle_end = Some(Duration::from_millis(400));
    let (etx, mut erx) = mpsc::unbounded_channel();
    let call = tokio::spawn(place_call(opts, Some(etx)));
    let mut ws = engine.sockets.recv().await.unwrap();
    text(&mut ws).await.unwrap();
    let sid = text(&mut ws).await.unwrap()["streamSid"].as_str().unwrap().to_owned();
    let mut media = 0;
    while let Some(msg) = text(&mut ws).await {
        if msg["event"] == "media" {
            media += 1;
            // The "reply" comes a second after the caller stopped talking.
            if media == 65 {
                for i in 0..10 {
                    send(&mut ws, media_msg(&sid, &bot_frame(i))).await;
                }
            }
        }
    }
    drop(ws); // closes our side, so the caller's wait for a close reply ends now
    let report = call.await.unwrap().unwrap();
    let events = events_of(&mut erx);
    let stopped = events
        .iter()
        .find_map(|e| match e {
            CallerEvent::BotAudioStopped { at } => Some(*at),
            _ => None,
        })
        .unwrap();
    assert_eq!(report.hangup, Hangup::Caller);
    assert_eq!(report.duration, stopped + Duration::from_millis(400));
    assert!(report.duration < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_closing_the_socket_ends_the_call_with_its_close_frame() {
    let mut engine = start_engine(Answer::Stream).await;
    let mut opts = options(&engine, &tone(800));
    opts.tail = Duration::from_secs(30);
    let (etx, mut erx) = mpsc::unbounded_channel();
    let call = tokio::spawn(place_call(opts, Some(etx)));
    let mut ws = engine.sockets.recv().await.unwrap();
    let mut media = 0;
    while let Some(msg) = text(&mut ws).await {
        if msg["event"] == "media" {
            media += 1;
            if media == 20 {
                ws.send(Message::Close(Some(CloseFrame {
                    code: 1000,
                    reason: "call ended".into(),
                })))
                .await
                .unwrap();
            }
        }
        assert_ne!(
            msg["event"], "stop",
            "Twilio does not send stop after the server closed"
        );
    }
    drop(ws); // closes our side, so the caller's wait for a close reply ends now
    let report = call.await.unwrap().unwrap();
    assert_eq!(report.hangup, Hangup::Engine);
    assert_eq!(report.close, Some((1000, "call ended".to_owned())));
    assert!(report.frames_sent >= 20 && report.frames_sent < 30 * 50);
    assert!(events_of(&mut erx).contains(&CallerEvent::Closed {
        code: Some(1000),
        reason: "call ended".into()
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn say_and_hangup_twiml_is_rejected_with_what_was_said() {
    let doc = VoiceResponse::new()
        .say("We are closed.", &SayOptions::default())
        .hangup()
        .build();
    let engine = start_engine(Answer::Raw(StatusCode::OK, doc.into_string())).await;
    let err = place_call(options(&engine, &[]), None).await.unwrap_err();
    assert!(
        matches!(err, CallerError::Rejected { ref said } if said == "We are closed."),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_2xx_webhook_answers_are_surfaced_with_status_and_body() {
    let engine = start_engine(Answer::Stream).await;
    let mut opts = options(&engine, &[]);
    opts.auth_token = "wrong-token".into();
    match place_call(opts, None).await {
        Err(CallerError::Http { status: 403, body }) => assert_eq!(body, "invalid signature"),
        other => panic!("{other:?}"),
    }
    let engine = start_engine(Answer::Raw(StatusCode::SERVICE_UNAVAILABLE, "overloaded".into())).await;
    match place_call(options(&engine, &[]), None).await {
        Err(CallerError::Http { status: 503, body }) => assert_eq!(body, "overloaded"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_closed_port_is_reported_as_unreachable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let engine = Url::parse(&format!("http://{addr}")).unwrap();
    let opts = CallOptions::new(engine, ACCOUNT, TOKEN, "+15551230000", "+15005550006");
    match place_call(opts, None).await {
        Err(CallerError::Unreachable { url, .. }) => assert_eq!(url, format!("http://{addr}/twilio/voice")),
        other => panic!("{other:?}"),
    }
}

// ------------------------------------------------------------------ live events

const JWT: &str = "header.payload.signature";

async fn login_route(body: String) -> Response {
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    if v == serde_json::json!({"email":"demo@switchboard.local","password":"pw"}) {
        let cookies = [("set-cookie", "sb_session=s; HttpOnly")];
        (
            cookies,
            axum::Json(serde_json::json!({
                "access_token": JWT, "token_type": "Bearer", "expires_in": 900, "csrf_token": "c",
                "user": {"id": "u"}
            })),
        )
            .into_response()
    } else {
        (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({"code":"invalid_credentials","message":"wrong email or password"})),
        )
            .into_response()
    }
}

async fn live_route(
    State(events): State<Arc<Vec<String>>>,
    Query(q): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {JWT}")) {
        return (StatusCode::UNAUTHORIZED, "no token").into_response();
    }
    assert_eq!(q, vec![("call_id".to_owned(), "call-42".to_owned())]);
    ws.on_upgrade(move |mut socket| async move {
        for e in events.iter() {
            let _ = socket.send(Message::Text(e.clone().into())).await;
        }
        let _ = socket.send(Message::Close(None)).await;
    })
}

#[tokio::test]
async fn login_then_watch_yields_only_call_events() {
    let call = CallId::new();
    let tenant = TenantId::new();
    let first = CallEvent::new(
        call,
        tenant,
        CallEventKind::TranscriptFinal {
            speaker: Speaker::Caller,
            text: "I'd like to book".into(),
            turn_id: 1,
            start_ms: 1000,
            end_ms: 2200,
            interrupted: false,
        },
    );
    let second = CallEvent::new(
        call,
        tenant,
        CallEventKind::BargeIn {
            turn_id: 1,
            heard_ms: 400,
            heard_text: "Sure".into(),
        },
    );
    let wire = vec![
        serde_json::json!({"type":"hello","call_id":"call-42"}).to_string(),
        serde_json::to_string(&first).unwrap(),
        serde_json::json!({"type":"lagged","skipped":3}).to_string(),
        serde_json::to_string(&second).unwrap(),
    ];
    let app = Router::new()
        .route("/api/v1/auth/login", post(login_route))
        .route("/api/v1/live", get(live_route))
        .with_state(Arc::new(wire));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let engine = Url::parse(&format!("http://{addr}")).unwrap();

    match live::login(&engine, "demo@switchboard.local", "nope").await {
        Err(CallerError::Http { status: 401, body }) => assert!(body.contains("invalid_credentials")),
        other => panic!("{other:?}"),
    }
    let token = live::login(&engine, "demo@switchboard.local", "pw").await.unwrap();
    assert_eq!(token, JWT);

    match live::watch(&engine, "bad-token", "call-42").await {
        Err(CallerError::Http { status: 401, .. }) => {}
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("a bad token must not open the socket"),
    }
    let got: Vec<CallEvent> = live::watch(&engine, &token, "call-42")
        .await
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
        .await;
    assert_eq!(got, vec![first, second]);
}
