//! A fake OpenAI Realtime server: the WebSocket at `/v1/realtime`, speaking
//! either the beta or the GA event names (protocols.md §6).
//!
//! What it does on its own, like the real server:
//! - refuses the upgrade with 401 unless `Authorization: Bearer`
//!   [`FakeRealtime::API_KEY`]; with 400 when the `OpenAI-Beta: realtime=v1`
//!   header does not match its interface (present for beta, absent for GA);
//! - sends `session.created` first and answers each valid `session.update`
//!   with `session.updated` (GA requires `session.type == "realtime"`, beta
//!   refuses the GA `audio`/`type` fields, each with an `error` event);
//! - answers `conversation.item.truncate` with `conversation.item.truncated`,
//!   or with an `error` when `audio_end_ms` exceeds the audio it produced for
//!   that item; answers client text that is not JSON, and appended audio that
//!   is not base64, with an `error` event.
//!
//! Everything else is scripted per test with [`FakeRealtime::push`]: wait for
//! a client event, send events (audio deltas and transcripts under the
//! interface's names, function calls, speech started), send raw text, close,
//! or stall. Steps run in order on the current connection; pushing more
//! steps later resumes the script. Every client event is recorded
//! ([`FakeRealtime::events`]) as JSON.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, watch};

/// Which event names and session shape the fake speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interface {
    /// `OpenAI-Beta: realtime=v1`: `response.audio.delta`, flat session fields.
    Beta,
    /// No beta header: `response.output_audio.delta`, nested `audio` session.
    Ga,
}

impl Interface {
    fn audio_delta(self) -> &'static str {
        match self {
            Self::Beta => "response.audio.delta",
            Self::Ga => "response.output_audio.delta",
        }
    }

    fn audio_done(self) -> &'static str {
        match self {
            Self::Beta => "response.audio.done",
            Self::Ga => "response.output_audio.done",
        }
    }

    fn transcript_delta(self) -> &'static str {
        match self {
            Self::Beta => "response.audio_transcript.delta",
            Self::Ga => "response.output_audio_transcript.delta",
        }
    }

    fn transcript_done(self) -> &'static str {
        match self {
            Self::Beta => "response.audio_transcript.done",
            Self::Ga => "response.output_audio_transcript.done",
        }
    }
}

/// One step of the server's script.
#[derive(Debug, Clone)]
pub enum RealtimeScript {
    /// Wait until the client sends an event of this `type` (counting from
    /// after the event the previous `WaitFor` matched).
    WaitFor(String),
    /// Send this event; an `event_id` is added when missing.
    Send(Value),
    /// Send this exact text frame (malformed JSON, oversized frames, ...).
    SendRaw(String),
    /// Send `ulaw` base64-encoded in `chunks` audio delta events of near-equal
    /// size, under the interface's delta name, then the audio done event.
    SendAudio {
        item_id: String,
        response_id: String,
        ulaw: Vec<u8>,
        chunks: usize,
    },
    /// `input_audio_buffer.speech_started`.
    SpeechStarted { item_id: String, audio_start_ms: u64 },
    /// `input_audio_buffer.speech_stopped`.
    SpeechStopped { item_id: String, audio_end_ms: u64 },
    /// A whole spoken response: `response.created`, the item, audio deltas,
    /// audio done, transcript delta and done, item done, `response.done`
    /// (`completed`).
    Respond {
        response_id: String,
        item_id: String,
        ulaw: Vec<u8>,
        chunks: usize,
        transcript: String,
    },
    /// A whole function-call response as the server streams it:
    /// `response.created`, `response.output_item.added`, arguments delta and
    /// done, `response.output_item.done` (function_call item), `response.done`.
    FunctionCall {
        call_id: String,
        name: String,
        arguments: String,
    },
    /// Wait this long (pacing a scripted conversation).
    Pause(Duration),
    /// Send a close frame and stop.
    Close(u16, String),
    /// Send nothing more, not even automatic answers; keep the socket open
    /// and keep recording.
    Stall,
}

/// One accepted WebSocket upgrade as the fake saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenConnection {
    pub authorization: Option<String>,
    pub openai_beta: Option<String>,
    /// The `model` query parameter.
    pub model: Option<String>,
}

/// A running fake Realtime server; it stops when dropped.
pub struct FakeRealtime {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

struct Shared {
    interface: Interface,
    state: Mutex<FakeState>,
    /// Bumped on every recorded event (and when a connection ends).
    recorded: watch::Sender<u64>,
    /// Signalled when steps are pushed.
    script_added: Notify,
}

#[derive(Default)]
struct FakeState {
    events: Vec<Value>,
    script: VecDeque<RealtimeScript>,
    connections: Vec<SeenConnection>,
    /// Milliseconds of audio produced per assistant item, for truncate checks.
    produced_ms: HashMap<String, u64>,
    next_id: u64,
}

/// How long [`FakeRealtime::wait_for`] waits before failing the test.
const WAIT_LIMIT: Duration = Duration::from_secs(10);

impl FakeRealtime {
    /// The key clients must send as `Authorization: Bearer`.
    pub const API_KEY: &'static str = "sk-fake-realtime";

    /// Binds `127.0.0.1:0` and serves `/v1/realtime`.
    pub async fn start(interface: Interface) -> Self {
        let shared = Arc::new(Shared {
            interface,
            state: Mutex::new(FakeState::default()),
            recorded: watch::channel(0).0,
            script_added: Notify::new(),
        });
        let app = Router::new()
            .route("/v1/realtime", get(upgrade))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared, server }
    }

    /// `ws://127.0.0.1:PORT/v1/realtime`, for the client's `url`.
    pub fn url(&self) -> String {
        format!("ws://{}/v1/realtime", self.addr)
    }

    /// Appends steps to the script.
    pub fn push(&self, steps: impl IntoIterator<Item = RealtimeScript>) {
        self.shared.lock().script.extend(steps);
        self.shared.script_added.notify_one();
    }

    /// Every client event received so far, in order (all connections).
    pub fn events(&self) -> Vec<Value> {
        self.shared.lock().events.clone()
    }

    /// The client events of this `type`, in order.
    pub fn events_of_type(&self, kind: &str) -> Vec<Value> {
        self.shared
            .lock()
            .events
            .iter()
            .filter(|e| e["type"] == kind)
            .cloned()
            .collect()
    }

    /// All audio the client appended, base64-decoded and concatenated.
    /// Appends that are not base64 are skipped (the client got an `error`).
    pub fn appended_audio(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for e in self.events_of_type("input_audio_buffer.append") {
            if let Some(Ok(bytes)) = e["audio"].as_str().map(|a| B64.decode(a)) {
                out.extend(bytes);
            }
        }
        out
    }

    /// The upgrades accepted so far.
    pub fn connections(&self) -> Vec<SeenConnection> {
        self.shared.lock().connections.clone()
    }

    /// Waits until at least `count` client events of this `type` were
    /// received, and returns them. Panics after 10 s (a hung test).
    pub async fn wait_for(&self, kind: &str, count: usize) -> Vec<Value> {
        let mut rx = self.shared.recorded.subscribe();
        let waiting = async {
            loop {
                rx.borrow_and_update();
                let seen = self.events_of_type(kind);
                if seen.len() >= count {
                    return seen;
                }
                if rx.changed().await.is_err() {
                    return seen;
                }
            }
        };
        match tokio::time::timeout(WAIT_LIMIT, waiting).await {
            Ok(seen) => seen,
            Err(_) => panic!("fake realtime: no {count} `{kind}` events; got {:?}", self.events()),
        }
    }
}

impl Drop for FakeRealtime {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, FakeState> {
        // A panicking test thread must not hide the recorded events.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn next_id(&self, prefix: &str) -> String {
        let mut state = self.lock();
        state.next_id += 1;
        format!("{prefix}_{}", state.next_id)
    }
}

#[derive(serde::Deserialize)]
struct UpgradeQuery {
    model: Option<String>,
}

async fn upgrade(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<UpgradeQuery>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let seen = SeenConnection {
        authorization: header("authorization"),
        openai_beta: header("openai-beta"),
        model: query.model,
    };
    if seen.authorization.as_deref() != Some(&format!("Bearer {}", FakeRealtime::API_KEY)) {
        return http_error(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "Incorrect API key provided.",
        );
    }
    let beta_header = seen.openai_beta.as_deref() == Some("realtime=v1");
    match (shared.interface, beta_header) {
        (Interface::Beta, false) => {
            return http_error(
                StatusCode::BAD_REQUEST,
                "beta_required",
                "this fake speaks the beta interface",
            );
        }
        (Interface::Ga, true) => {
            return http_error(
                StatusCode::BAD_REQUEST,
                "ga_required",
                "this fake speaks the GA interface",
            );
        }
        _ => {}
    }
    shared.lock().connections.push(seen);
    ws.on_upgrade(move |socket| serve(shared, socket))
}

fn http_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"error": {"type": "invalid_request_error", "code": code, "message": message}});
    (status, axum::Json(body)).into_response()
}

/// What the writer task sends.
enum Out {
    Event(Value),
    Raw(String),
    Close(u16, String),
    /// Drop everything queued after this.
    Stall,
}

async fn serve(shared: Arc<Shared>, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Out>();
    let writer = tokio::spawn(async move {
        let mut stalled = false;
        while let Some(out) = out_rx.recv().await {
            if stalled {
                continue;
            }
            let msg = match out {
                Out::Event(v) => Message::Text(v.to_string().into()),
                Out::Raw(s) => Message::Text(s.into()),
                Out::Close(code, reason) => {
                    let _ = sink
                        .send(Message::Close(Some(CloseFrame {
                            code,
                            reason: reason.into(),
                        })))
                        .await;
                    return;
                }
                Out::Stall => {
                    stalled = true;
                    continue;
                }
            };
            if sink.send(msg).await.is_err() {
                return;
            }
        }
    });

    let send = {
        let shared = shared.clone();
        let out_tx = out_tx.clone();
        move |mut event: Value| {
            if event.get("event_id").is_none()
                && let Some(obj) = event.as_object_mut()
            {
                obj.insert("event_id".into(), Value::String(shared.next_id("event")));
            }
            let _ = out_tx.send(Out::Event(event));
        }
    };

    send(json!({"type": "session.created", "session": {"id": shared.next_id("sess"), "object": "realtime.session"}}));

    let start_cursor = shared.lock().events.len();
    let runner = tokio::spawn(run_script(shared.clone(), out_tx.clone(), start_cursor));

    while let Some(Ok(msg)) = stream.next().await {
        let text = match msg {
            Message::Text(t) => t.to_string(),
            Message::Close(_) => break,
            _ => continue,
        };
        let event: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                send(error_event(
                    "invalid_json",
                    &format!("could not parse client event: {e}"),
                ));
                continue;
            }
        };
        if let Some(reply) = auto_reply(&shared, &event) {
            send(reply);
        }
        shared.lock().events.push(event);
        shared.recorded.send_modify(|n| *n += 1);
    }
    // Wake a `WaitFor` that can no longer be satisfied.
    shared.recorded.send_modify(|n| *n += 1);
    runner.abort();
    writer.abort();
}

fn error_event(code: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": "invalid_request_error", "code": code, "message": message}})
}

/// The server's own answer to a client event, if any.
fn auto_reply(shared: &Shared, event: &Value) -> Option<Value> {
    match event["type"].as_str().unwrap_or_default() {
        "session.update" => {
            let session = &event["session"];
            let problem = match shared.interface {
                Interface::Ga if session["type"] != "realtime" => Some("missing_required_parameter"),
                Interface::Beta if session.get("audio").is_some() || session.get("type").is_some() => {
                    Some("unknown_parameter")
                }
                _ => None,
            };
            Some(match problem {
                Some(code) => error_event(code, "session.update does not match the interface"),
                None => json!({"type": "session.updated", "session": session}),
            })
        }
        "input_audio_buffer.append" => {
            let ok = event["audio"].as_str().is_some_and(|a| B64.decode(a).is_ok());
            (!ok).then(|| error_event("invalid_value", "audio is not valid base64"))
        }
        "conversation.item.truncate" => {
            let item_id = event["item_id"].as_str().unwrap_or_default();
            let end = event["audio_end_ms"].as_u64();
            let produced = shared.lock().produced_ms.get(item_id).copied();
            match (end, produced) {
                (None, _) => Some(error_event("missing_required_parameter", "audio_end_ms is required")),
                (Some(end), Some(produced)) if end > produced => Some(error_event(
                    "invalid_value",
                    &format!("audio_end_ms {end} is longer than the item's {produced} ms of audio"),
                )),
                (Some(end), _) => Some(json!({
                    "type": "conversation.item.truncated",
                    "item_id": item_id,
                    "content_index": event["content_index"],
                    "audio_end_ms": end,
                })),
            }
        }
        _ => None,
    }
}

async fn run_script(shared: Arc<Shared>, out: mpsc::UnboundedSender<Out>, mut cursor: usize) {
    let send = |mut event: Value| {
        if event.get("event_id").is_none()
            && let Some(obj) = event.as_object_mut()
        {
            obj.insert("event_id".into(), Value::String(shared.next_id("event")));
        }
        let _ = out.send(Out::Event(event));
    };
    let i = shared.interface;
    loop {
        let step = shared.lock().script.pop_front();
        let Some(step) = step else {
            shared.script_added.notified().await;
            continue;
        };
        match step {
            RealtimeScript::WaitFor(kind) => {
                let mut rx = shared.recorded.subscribe();
                loop {
                    rx.borrow_and_update();
                    let found = {
                        let state = shared.lock();
                        state.events[cursor.min(state.events.len())..]
                            .iter()
                            .position(|e| e["type"] == kind.as_str())
                            .map(|p| cursor + p + 1)
                    };
                    if let Some(next) = found {
                        cursor = next;
                        break;
                    }
                    if rx.changed().await.is_err() {
                        return;
                    }
                }
            }
            RealtimeScript::Send(event) => send(event),
            RealtimeScript::SendRaw(text) => {
                let _ = out.send(Out::Raw(text));
            }
            RealtimeScript::SendAudio {
                item_id,
                response_id,
                ulaw,
                chunks,
            } => {
                send_audio(&shared, &send, &response_id, &item_id, &ulaw, chunks);
                send(
                    json!({"type": i.audio_done(), "response_id": response_id, "item_id": item_id,
                            "output_index": 0, "content_index": 0}),
                );
            }
            RealtimeScript::SpeechStarted {
                item_id,
                audio_start_ms,
            } => send(json!({
                "type": "input_audio_buffer.speech_started", "audio_start_ms": audio_start_ms, "item_id": item_id,
            })),
            RealtimeScript::SpeechStopped { item_id, audio_end_ms } => send(json!({
                "type": "input_audio_buffer.speech_stopped", "audio_end_ms": audio_end_ms, "item_id": item_id,
            })),
            RealtimeScript::Respond {
                response_id,
                item_id,
                ulaw,
                chunks,
                transcript,
            } => {
                let ids = (&response_id, &item_id);
                send(json!({"type": "response.created",
                            "response": {"id": ids.0, "object": "realtime.response", "status": "in_progress", "output": []}}));
                let item = json!({"id": ids.1, "type": "message", "role": "assistant", "status": "in_progress", "content": []});
                send(
                    json!({"type": "response.output_item.added", "response_id": ids.0, "output_index": 0, "item": item}),
                );
                send_audio(&shared, &send, ids.0, ids.1, &ulaw, chunks);
                send(json!({"type": i.audio_done(), "response_id": ids.0, "item_id": ids.1,
                            "output_index": 0, "content_index": 0}));
                send(
                    json!({"type": i.transcript_delta(), "response_id": ids.0, "item_id": ids.1,
                            "output_index": 0, "content_index": 0, "delta": transcript}),
                );
                send(
                    json!({"type": i.transcript_done(), "response_id": ids.0, "item_id": ids.1,
                            "output_index": 0, "content_index": 0, "transcript": transcript}),
                );
                let item = json!({"id": ids.1, "type": "message", "role": "assistant", "status": "completed",
                                  "content": [{"type": "audio", "transcript": transcript}]});
                send(
                    json!({"type": "response.output_item.done", "response_id": ids.0, "output_index": 0, "item": item}),
                );
                send(json!({"type": "response.done",
                            "response": {"id": ids.0, "object": "realtime.response", "status": "completed",
                                         "status_details": null, "output": [item]}}));
            }
            RealtimeScript::FunctionCall {
                call_id,
                name,
                arguments,
            } => {
                let response_id = shared.next_id("resp");
                let item_id = shared.next_id("item");
                send(json!({"type": "response.created",
                            "response": {"id": response_id, "object": "realtime.response", "status": "in_progress", "output": []}}));
                let added = json!({"id": item_id, "type": "function_call", "status": "in_progress",
                                   "call_id": call_id, "name": name, "arguments": ""});
                send(
                    json!({"type": "response.output_item.added", "response_id": response_id, "output_index": 0, "item": added}),
                );
                send(
                    json!({"type": "response.function_call_arguments.delta", "response_id": response_id,
                            "item_id": item_id, "output_index": 0, "call_id": call_id, "delta": arguments}),
                );
                send(
                    json!({"type": "response.function_call_arguments.done", "response_id": response_id,
                            "item_id": item_id, "output_index": 0, "call_id": call_id, "name": name,
                            "arguments": arguments}),
                );
                let item = json!({"id": item_id, "type": "function_call", "status": "completed",
                                  "call_id": call_id, "name": name, "arguments": arguments});
                send(
                    json!({"type": "response.output_item.done", "response_id": response_id, "output_index": 0, "item": item}),
                );
                send(json!({"type": "response.done",
                            "response": {"id": response_id, "object": "realtime.response", "status": "completed",
                                         "status_details": null, "output": [item]}}));
            }
            RealtimeScript::Pause(d) => tokio::time::sleep(d).await,
            RealtimeScript::Close(code, reason) => {
                let _ = out.send(Out::Close(code, reason));
                return;
            }
            RealtimeScript::Stall => {
                let _ = out.send(Out::Stall);
                return;
            }
        }
    }
}

/// Audio deltas under the interface's name; records the item's length.
fn send_audio(shared: &Shared, send: &impl Fn(Value), response_id: &str, item_id: &str, ulaw: &[u8], chunks: usize) {
    let chunks = chunks.max(1);
    let size = ulaw.len().div_ceil(chunks).max(1);
    for piece in ulaw.chunks(size) {
        send(
            json!({"type": shared.interface.audio_delta(), "response_id": response_id, "item_id": item_id,
                    "output_index": 0, "content_index": 0, "delta": B64.encode(piece)}),
        );
    }
    // μ-law at 8 kHz: 8 bytes per millisecond.
    *shared.lock().produced_ms.entry(item_id.to_owned()).or_default() += ulaw.len() as u64 / 8;
}
