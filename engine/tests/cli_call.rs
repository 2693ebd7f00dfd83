//! `switchboard admin demo` and `switchboard call`.
//!
//! The seeding runs on SQLite and on PostgreSQL (which must be running: the
//! test fails, never skips, without it). The `call` command is run as the real
//! binary against a fake engine that speaks the real protocols (signed voice
//! webhook, Media Streams, login, live events).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use switchboard_domain::{
    CallEvent, CallEventKind, CallId, CallStatus, CredentialKind, E164, EndReason, Speaker, TenantId, UserUpdate,
};
use switchboard_engine::admin::{self, DemoFile};
use switchboard_providers::capability::{AgentAction, AgentOutput, TurnInput};
use switchboard_providers::rules::RuleAgent;
use switchboard_providers::twilio::{signature, twiml};
use switchboard_store::{Scope, Store};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

fn switchboard(data_dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    for (name, _) in std::env::vars() {
        if name.starts_with("SWITCHBOARD") || name == "RUST_LOG" {
            cmd.env_remove(name);
        }
    }
    cmd.current_dir(data_dir).arg("--data-dir").arg(data_dir);
    cmd
}

fn reply(agent: &RuleAgent, said: &str) -> (String, Option<AgentAction>) {
    let mut text = String::new();
    let mut action = None;
    for out in agent.reply(&TurnInput::UserText(said.to_owned())) {
        match out {
            AgentOutput::Text(t) => text.push_str(&t),
            AgentOutput::Action(a) => action = Some(a),
            AgentOutput::ToolCall { name, .. } => panic!("the rule agent has no tools, yet called {name}"),
        }
    }
    (text, action)
}

async fn seeding_is_idempotent_and_rotates_when_the_file_is_gone(store: &Store, data_dir: &Path) {
    let base = "http://127.0.0.1:8080/";
    let first = admin::seed_demo(store, data_dir, base).await.unwrap();
    assert_eq!(first.created, vec!["tenant", "owner", "credential", "agent", "number"]);
    assert!(first.rotated);
    let f = first.file.clone();
    assert_eq!(f.engine_url, "http://127.0.0.1:8080");
    assert_eq!(f.number, admin::DEMO_NUMBER);
    assert!(f.account_sid.len() == 34 && f.account_sid.starts_with("AC"));
    assert_eq!(f.auth_token.len(), 32);
    assert_eq!(DemoFile::load(&first.path).unwrap().as_ref(), Some(&f));

    // Everything in the store matches the file.
    assert!(
        store
            .users()
            .verify_login(&f.email, &f.password)
            .await
            .unwrap()
            .is_some()
    );
    let (cred, secrets) = store
        .credentials()
        .find_by_kind(first.tenant_id, CredentialKind::Twilio)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cred.public["account_sid"], f.account_sid.as_str());
    assert_eq!(secrets["auth_token"].expose(), f.auth_token);
    let number = store
        .phone_numbers()
        .find_by_number(&E164::parse(admin::DEMO_NUMBER).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(number.agent_id, Some(first.agent_id));
    let agent = store
        .agents()
        .get(Scope::Tenant(first.tenant_id), first.agent_id)
        .await
        .unwrap();
    assert_eq!(
        (agent.stt.provider.as_str(), agent.tts.provider.as_str()),
        ("local", "local")
    );
    assert_eq!(agent.llm.provider, "rules");
    assert_eq!(agent.voice, "en-us");
    assert!(agent.greeting.starts_with("Hello! Thanks for calling Switchboard."));
    // The rules are valid for the rule-based agent and hold the scripted conversation.
    let rules = RuleAgent::from_settings(&agent.settings).unwrap();
    assert_eq!(
        reply(&rules, "I'd like to book an appointment").0,
        "Sure, I can book that for you. What day works for you?"
    );
    assert_eq!(
        reply(&rules, "Tomorrow at three o'clock").0,
        "Great, you are booked for tomorrow at three. Anything else?"
    );
    assert_eq!(
        reply(&rules, "No thanks, bye"),
        ("Thanks for calling, goodbye!".to_owned(), Some(AgentAction::Hangup))
    );
    assert_eq!(reply(&rules, "banana").0, "Sorry, could you say that again?");

    // Again: nothing new, same secrets.
    let second = admin::seed_demo(store, data_dir, base).await.unwrap();
    assert!(second.created.is_empty() && !second.rotated);
    assert_eq!(second.file, f);
    assert_eq!((second.tenant_id, second.agent_id), (first.tenant_id, first.agent_id));

    // Someone changed the password: the file's password is set back.
    let user = store
        .users()
        .verify_login(&f.email, &f.password)
        .await
        .unwrap()
        .unwrap();
    let update = UserUpdate {
        password: Some(switchboard_domain::Secret::new("changed-by-someone")),
        ..UserUpdate::default()
    };
    store
        .users()
        .update(Scope::Tenant(first.tenant_id), user.id, update)
        .await
        .unwrap();
    admin::seed_demo(store, data_dir, base).await.unwrap();
    assert!(
        store
            .users()
            .verify_login(&f.email, &f.password)
            .await
            .unwrap()
            .is_some()
    );

    // The file is gone: new password and token, same account, nothing duplicated.
    std::fs::remove_file(&first.path).unwrap();
    let third = admin::seed_demo(store, data_dir, base).await.unwrap();
    assert!(third.created.is_empty() && third.rotated);
    assert_eq!(third.file.account_sid, f.account_sid);
    assert_ne!(third.file.password, f.password);
    assert_ne!(third.file.auth_token, f.auth_token);
    assert!(
        store
            .users()
            .verify_login(&f.email, &f.password)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .users()
            .verify_login(&f.email, &third.file.password)
            .await
            .unwrap()
            .is_some()
    );
    let (_, secrets) = store
        .credentials()
        .find_by_kind(first.tenant_id, CredentialKind::Twilio)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(secrets["auth_token"].expose(), third.file.auth_token);
    assert_eq!(DemoFile::load(&third.path).unwrap(), Some(third.file.clone()));
}

#[tokio::test]
async fn demo_seeding_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("sb.db").display());
    let store = Store::connect(&url, 2, [7; 32]).await.unwrap();
    store.migrate().await.unwrap();
    seeding_is_idempotent_and_rotates_when_the_file_is_gone(&store, dir.path()).await;
    store.close().await;
}

#[tokio::test]
async fn demo_seeding_on_postgres() {
    let db = switchboard_testkit::postgres_url_for_test().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&db.url, 2, [7; 32]).await.unwrap();
    store.migrate().await.unwrap();
    seeding_is_idempotent_and_rotates_when_the_file_is_gone(&store, dir.path()).await;
    store.close().await;
}

#[test]
fn admin_demo_keeps_secrets_off_the_terminal_unless_asked() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let out = switchboard(dir.path()).args(["admin", "demo"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let file = DemoFile::load(&dir.path().join("demo.json")).unwrap().unwrap();
    assert!(
        stdout.contains("Demo tenant ready") && stdout.contains(admin::DEMO_NUMBER),
        "{stdout}"
    );
    assert!(
        !stdout.contains(&file.password) && !stdout.contains(&file.auth_token),
        "{stdout}"
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains(&file.password));
    let mode = std::fs::metadata(dir.path().join("demo.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let out = switchboard(dir.path())
        .args(["admin", "demo", "--show-secrets"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success());
    assert!(stdout.contains("reused"), "{stdout}");
    assert!(
        stdout.contains(&file.password) && stdout.contains(&file.auth_token),
        "{stdout}"
    );
}

#[test]
fn call_fails_clearly_without_demo_json_a_wav_or_an_engine() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("hello.wav");
    write_wav(&wav, &vec![0i16; 800]);
    let out = switchboard(dir.path())
        .args(["call", "--wav"])
        .arg(&wav)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("switchboard admin demo"));

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    write_demo(dir.path(), &format!("http://{addr}"));
    let out = switchboard(dir.path())
        .args(["call", "--wav"])
        .arg(&wav)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("engine not reachable at http://{addr}/")),
        "{stderr}"
    );
    assert!(stderr.contains("scripts/run"), "{stderr}");

    let out = switchboard(dir.path())
        .args(["call", "--wav", "missing.wav"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.wav"));
}

// ------------------------------------------------------------------ the CLI against a fake engine

const TOKEN: &str = "00112233445566778899aabbccddeeff";
const JWT: &str = "h.p.s";

fn write_wav(path: &Path, samples: &[i16]) {
    switchboard_caller::audio::save_wav_8k(path, samples).unwrap();
}

fn write_demo(dir: &Path, engine_url: &str) {
    DemoFile {
        engine_url: engine_url.to_owned(),
        number: admin::DEMO_NUMBER.to_owned(),
        account_sid: "AC00112233445566778899aabbccddeeff".to_owned(),
        auth_token: TOKEN.to_owned(),
        email: admin::DEMO_EMAIL.to_owned(),
        password: "demo-password".to_owned(),
        tenant_id: None,
        agent_id: None,
    }
    .write(&DemoFile::path(dir))
    .unwrap();
}

#[derive(Clone)]
struct Fake {
    base: String,
    call_id: CallId,
    tenant_id: TenantId,
}

async fn voice(axum::extract::State(fake): axum::extract::State<Fake>, headers: HeaderMap, body: String) -> Response {
    let params: Vec<(String, String)> = serde_urlencoded_pairs(&body);
    let sig = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !signature::validate(TOKEN, &format!("{}/twilio/voice", fake.base), &params, sig) {
        return (StatusCode::FORBIDDEN, "bad signature").into_response();
    }
    let ws = fake.base.replacen("http://", "ws://", 1);
    let doc = twiml::connect_stream(
        &format!("{ws}/twilio/media"),
        &[("call_id", &fake.call_id.to_string()), ("token", "t")],
    );
    ([("content-type", "text/xml")], doc.into_string()).into_response()
}

fn serde_urlencoded_pairs(body: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body.as_bytes()).into_owned().collect()
}

fn bot_frame(i: usize) -> Vec<u8> {
    (0..160).map(|j| (0x20 + (i + j) % 0x40) as u8).collect()
}

async fn media(ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(|mut socket: WebSocket| async move {
        let mut sid = String::new();
        let mut media = 0;
        while let Some(Ok(msg)) = socket.recv().await {
            let Message::Text(text) = msg else { continue };
            let v: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
            match v["event"].as_str().unwrap_or("") {
                "start" => sid = v["streamSid"].as_str().unwrap().to_owned(),
                "media" => {
                    media += 1;
                    if media == 3 {
                        for i in 0..25 {
                            let payload = base64::engine::general_purpose::STANDARD.encode(bot_frame(i));
                            let m = serde_json::json!({"event":"media","streamSid":sid,"media":{"payload":payload}});
                            let _ = socket.send(Message::Text(m.to_string().into())).await;
                        }
                        let mark = serde_json::json!({"event":"mark","streamSid":sid,"mark":{"name":"greeting"}});
                        let _ = socket.send(Message::Text(mark.to_string().into())).await;
                    }
                }
                "mark" => {
                    // The greeting has played: hang up like the agent's "goodbye" would.
                    let _ = socket
                        .send(Message::Close(Some(CloseFrame {
                            code: 1000,
                            reason: "hangup".into(),
                        })))
                        .await;
                    // Read until the caller's Close: dropping a socket with
                    // unread frames makes the kernel reset it, which can lose
                    // the close frame.
                    while let Some(Ok(m)) = socket.recv().await {
                        if matches!(m, Message::Close(_)) {
                            break;
                        }
                    }
                    break;
                }
                _ => {}
            }
        }
    })
}

async fn login(body: String) -> Response {
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    if v["password"] != "demo-password" {
        return (StatusCode::UNAUTHORIZED, "{\"code\":\"invalid_credentials\"}").into_response();
    }
    axum::Json(serde_json::json!({"access_token": JWT, "token_type": "Bearer", "expires_in": 900, "csrf_token": "c"}))
        .into_response()
}

async fn live(
    axum::extract::State(fake): axum::extract::State<Fake>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {JWT}")) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    ws.on_upgrade(move |mut socket| async move {
        let greeting = CallEvent::new(
            fake.call_id,
            fake.tenant_id,
            CallEventKind::TranscriptFinal {
                speaker: Speaker::Agent,
                text: "Hello! Thanks for calling.".into(),
                turn_id: 0,
                start_ms: 60,
                end_ms: 560,
                interrupted: false,
            },
        );
        let ended = CallEvent::new(
            fake.call_id,
            fake.tenant_id,
            CallEventKind::CallEnded {
                status: CallStatus::Completed,
                reason: EndReason::AgentHangup,
            },
        );
        for text in [
            serde_json::json!({"type":"hello","live_calls":[]}).to_string(),
            serde_json::to_string(&greeting).unwrap(),
            serde_json::to_string(&ended).unwrap(),
        ] {
            let _ = socket.send(Message::Text(text.into())).await;
        }
        // Stay open like the real socket: the CLI must stop following on its own.
        while let Some(Ok(_)) = socket.recv().await {}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_prints_the_transcript_and_saves_the_bot_audio() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let fake = Fake {
        base: format!("http://{addr}"),
        call_id: CallId::new(),
        tenant_id: TenantId::new(),
    };
    let call_id = fake.call_id;
    let app = Router::new()
        .route("/twilio/voice", post(voice))
        .route("/twilio/media", get(media))
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/live", get(live))
        .with_state(fake);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    write_demo(dir.path(), &format!("http://{addr}"));
    let wav = dir.path().join("hello.wav");
    write_wav(&wav, &vec![0i16; 1600]);
    let out_wav = dir.path().join("reply.wav");
    let mut cmd = switchboard(dir.path());
    cmd.args(["call", "--lead", "0.2", "--tail", "20", "--wav"])
        .arg(&wav)
        .arg("--out")
        .arg(&out_wav);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    for expected in [
        format!("answered: call {call_id}"),
        "connected (stream MZ".to_owned(),
        "bot speaking".to_owned(),
        "agent: Hello! Thanks for calling.".to_owned(),
        "(call ended: completed, agent_hangup)".to_owned(),
        "the engine hung up (1000 hangup)".to_owned(),
        "marks: 1 received, 1 echoed".to_owned(),
        format!("saved the bot's audio to {}", out_wav.display()),
    ] {
        assert!(stdout.contains(&expected), "missing {expected:?} in:\n{stdout}");
    }
    assert!(!stdout.contains(TOKEN) && !stdout.contains("demo-password"));

    // The saved WAV holds the 25 bot frames, decoded, in order.
    let saved = switchboard_caller::audio::load_wav_8k(&out_wav).unwrap();
    let first = saved.iter().position(|&s| s != 0).unwrap();
    assert_eq!(first % 160, 0, "playback starts on a frame boundary");
    for i in 0..25 {
        let expected: Vec<i16> = bot_frame(i)
            .iter()
            .map(|&b| switchboard_media::ulaw::decode(b))
            .collect();
        assert_eq!(
            &saved[first + i * 160..first + (i + 1) * 160],
            &expected[..],
            "frame {i}"
        );
    }
}
