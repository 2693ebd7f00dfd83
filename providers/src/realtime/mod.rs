//! The OpenAI Realtime speech-to-speech client (protocols.md §6): one
//! WebSocket per phone call, μ-law in and out, so Twilio's payloads pass
//! through without transcoding.
//!
//! It is sans-actor: [`RealtimeSession::connect`] returns a
//! [`RealtimeSender`] and a [`RealtimeReceiver`] that the call actor drives
//! from its own loop (typically the receiver in a child task forwarding
//! events to the actor, the sender owned by the actor).
//!
//! Guarantees:
//! - **One session shape per interface.** `connect` sends one
//!   `session.update` with `g711_ulaw` (beta) or `audio/pcmu` (GA) both ways,
//!   server VAD, voice, instructions, tools and input transcription; the beta
//!   interface adds `OpenAI-Beta: realtime=v1`.
//! - **Both event name sets.** Beta and GA server events map to one
//!   [`RealtimeEvent`] each; a function call is yielded once whether it is
//!   announced by `response.function_call_arguments.done`,
//!   `response.output_item.done`, or both. Unknown events are skipped and
//!   logged at `debug`.
//! - **Typed failures, no panics on input.** Text that is not a well-formed
//!   server event is [`ProviderErrorKind::Malformed`] (the session stays
//!   usable); a message over `max_message_bytes` is `Malformed` and ends the
//!   session; the socket closing while a response is in progress or
//!   requested, or without a close frame, is [`ProviderErrorKind::Closed`]
//!   (a close frame while idle is `Ok(None)`);
//!   no message for `stall_timeout` while a response is in progress or was
//!   requested is [`ProviderErrorKind::Timeout`].
//! - **Bounded time.** The handshake is bounded by `connect_timeout` and
//!   retried (handshake only, where nothing was sent yet) up to
//!   `connect_retries` times on network errors, 429 and 5xx; every send is
//!   bounded by `send_timeout`. Sends are never retried.
//! - **The key never leaks.** It is a [`SecretString`], sent only as
//!   `Authorization: Bearer`, never logged or printed by `Debug`.
//! - `wss://` needs the process's rustls crypto provider installed
//!   (`CryptoProvider::install_default`) when more than one is linked; if it
//!   is missing, `connect` fails with [`ProviderErrorKind::Config`] instead of
//!   taking the caller's task down.
//!
//! # Layout
//! - this module: [`RealtimeConfig`], [`RealtimeSession`], [`RealtimeSender`],
//!   [`RealtimeReceiver`], [`RealtimeEvent`], [`ulaw_ms`].
//! - `wire`: the JSON of client events and the sans-IO server event decoder.

mod wire;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::{debug, warn};

use crate::error::{ProviderError, ProviderErrorKind};
use crate::tools::ToolSpec;

/// Names this provider in errors and logs.
pub const PROVIDER: &str = "openai_realtime";
/// OpenAI's Realtime endpoint; `connect` appends `?model=`.
pub const DEFAULT_URL: &str = "wss://api.openai.com/v1/realtime";
/// Upper bound of one handshake retry's backoff.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

macro_rules! realtime_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.to_owned())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

realtime_id!(
    /// A conversation item (`item_...`): the caller's speech or an assistant reply.
    ItemId
);
realtime_id!(
    /// A model response (`resp_...`).
    ResponseId
);
realtime_id!(
    /// A function call the model made (`call_...`); its output quotes it.
    ToolCallId
);

/// Which of OpenAI's two Realtime interfaces to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RealtimeInterface {
    /// `OpenAI-Beta: realtime=v1`, flat session fields, `response.audio.*`.
    Beta,
    /// The generally available interface: nested `audio` session,
    /// `response.output_audio.*`.
    #[default]
    Ga,
}

/// Server voice activity detection (`server_vad`).
#[derive(Debug, Clone, PartialEq)]
pub struct TurnDetection {
    /// Speech probability threshold, 0..1.
    pub threshold: f32,
    /// Audio kept before detected speech.
    pub prefix_padding_ms: u32,
    /// Silence that ends the caller's turn.
    pub silence_duration_ms: u32,
    /// The server answers each turn by itself.
    pub create_response: bool,
    /// The server cancels its reply when the caller speaks over it.
    pub interrupt_response: bool,
}

impl Default for TurnDetection {
    /// OpenAI's defaults: 0.5, 300 ms, 500 ms, answering and interruptible.
    fn default() -> Self {
        Self {
            threshold: 0.5,
            prefix_padding_ms: 300,
            silence_duration_ms: 500,
            create_response: true,
            interrupt_response: true,
        }
    }
}

/// Everything one Realtime session needs. `Debug` never shows the key.
#[derive(Debug, Clone)]
pub struct RealtimeConfig {
    /// WebSocket endpoint without the model, e.g. [`DEFAULT_URL`] or a fake's URL.
    pub url: String,
    /// Sent as `?model=` (`gpt-realtime`, `gpt-4o-realtime-preview-2024-12-17`, ...).
    pub model: String,
    /// Bearer token; `None` sends no `Authorization` header.
    pub api_key: Option<SecretString>,
    pub interface: RealtimeInterface,
    /// `alloy`, `marin`, ...; fixed once the model has spoken.
    pub voice: String,
    pub instructions: String,
    pub tools: Vec<ToolSpec>,
    /// `None` disables server VAD (the caller commits turns itself).
    pub turn_detection: Option<TurnDetection>,
    /// Model transcribing the caller (`whisper-1`); `None`: no caller transcripts.
    pub input_transcription_model: Option<String>,
    /// Bounds the TCP, TLS and WebSocket handshake, per attempt.
    pub connect_timeout: Duration,
    /// Handshake retries after the first attempt (network errors, 429, 5xx).
    pub connect_retries: u32,
    /// Backoff before the first handshake retry; doubles, capped at 2 s.
    pub retry_backoff: Duration,
    /// Bounds each send (a server that stops reading).
    pub send_timeout: Duration,
    /// Longest silence from the server while a response is in progress or requested.
    pub stall_timeout: Duration,
    /// Largest incoming message accepted.
    pub max_message_bytes: usize,
}

impl RealtimeConfig {
    /// OpenAI's GA interface at [`DEFAULT_URL`] with `model`, voice `alloy`,
    /// default server VAD, `whisper-1` caller transcripts and no tools.
    pub fn openai(model: &str, api_key: SecretString) -> Self {
        Self {
            url: DEFAULT_URL.to_owned(),
            model: model.to_owned(),
            api_key: Some(api_key),
            interface: RealtimeInterface::Ga,
            voice: "alloy".to_owned(),
            instructions: String::new(),
            tools: Vec::new(),
            turn_detection: Some(TurnDetection::default()),
            input_transcription_model: Some("whisper-1".to_owned()),
            connect_timeout: Duration::from_secs(10),
            connect_retries: 2,
            retry_backoff: Duration::from_millis(250),
            send_timeout: Duration::from_secs(5),
            stall_timeout: Duration::from_secs(15),
            max_message_bytes: 4 * 1024 * 1024,
        }
    }
}

/// How a response ended (`response.done.response.status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseStatus {
    Completed,
    /// `reason` `turn_detected` (barge-in) or `client_cancelled`.
    Cancelled,
    Failed,
    /// `reason` `max_output_tokens` or `content_filter`.
    Incomplete,
    /// A status this client does not know.
    Other(String),
}

impl ResponseStatus {
    fn parse(status: &str) -> Self {
        match status {
            "completed" => Self::Completed,
            "cancelled" => Self::Cancelled,
            "failed" => Self::Failed,
            "incomplete" => Self::Incomplete,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// A server event, the same for the beta and GA interfaces.
#[derive(Debug, Clone, PartialEq)]
pub enum RealtimeEvent {
    /// `session.updated`: our `session.update` was applied.
    SessionReady,
    /// The caller started speaking (barge-in point); `audio_start_ms` is on
    /// the input audio clock.
    SpeechStarted { audio_start_ms: u64, item_id: ItemId },
    /// The caller stopped speaking.
    SpeechStopped { audio_end_ms: u64, item_id: ItemId },
    /// `response.created`.
    ResponseStarted { response_id: ResponseId },
    /// Agent audio, 8 kHz μ-law, ready for Twilio `media.payload`.
    AudioDelta {
        response_id: ResponseId,
        item_id: ItemId,
        content_index: u32,
        ulaw: Vec<u8>,
    },
    /// The item's audio is complete.
    AudioDone { response_id: ResponseId, item_id: ItemId },
    /// Part of the transcript of what the agent is saying.
    AgentTranscriptDelta { item_id: ItemId, text: String },
    /// The whole transcript of the agent's item.
    AgentTranscriptDone { item_id: ItemId, text: String },
    /// The transcript of a caller turn.
    CallerTranscript { item_id: ItemId, text: String },
    /// The model asks for a tool; answer with [`RealtimeSender::function_output`].
    FunctionCall {
        call_id: ToolCallId,
        name: String,
        arguments: String,
    },
    /// `response.done`.
    ResponseDone {
        response_id: ResponseId,
        status: ResponseStatus,
        reason: Option<String>,
    },
    /// An `error` event; the session goes on.
    Error { code: Option<String>, message: String },
}

/// Milliseconds of 8 kHz μ-law audio in `bytes` bytes (one byte per sample).
///
/// This is how the call actor computes `audio_end_ms` for
/// [`RealtimeSender::truncate`] on barge-in: it forwards each
/// [`RealtimeEvent::AudioDelta`] to Twilio as a `media` message followed by a
/// `mark`, remembering for each mark the item and the item's cumulative byte
/// count up to and including that delta. When Twilio echoes a mark, that
/// count has been played. On [`RealtimeEvent::SpeechStarted`] it sends Twilio
/// `clear`, then `truncate(item, 0, ulaw_ms(played_bytes_of_item))`. Using
/// the last echoed mark (not the bytes sent) keeps `audio_end_ms` within the
/// audio the server produced, which the server requires. With 20 ms frames
/// this equals `played_frames * 20`.
pub const fn ulaw_ms(bytes: u64) -> u64 {
    bytes / 8
}

/// Opens Realtime sessions.
pub struct RealtimeSession;

impl RealtimeSession {
    /// Opens the WebSocket (retrying the handshake only), sends the
    /// `session.update`, and returns the two halves. The first events are
    /// usually `session.created` (skipped) and [`RealtimeEvent::SessionReady`];
    /// audio may be appended right away.
    pub async fn connect(config: RealtimeConfig) -> Result<(RealtimeSender, RealtimeReceiver), ProviderError> {
        let ws = connect_with_retries(&config).await?;
        let (sink, stream) = ws.split();
        let response_pending = Arc::new(AtomicBool::new(false));
        let mut sender = RealtimeSender {
            sink,
            send_timeout: config.send_timeout,
            response_pending: response_pending.clone(),
        };
        sender.send_text(wire::session_update(&config)).await?;
        let receiver = RealtimeReceiver {
            stream,
            decoder: wire::Decoder::default(),
            response_pending,
            stall_timeout: config.stall_timeout,
            max_message_bytes: config.max_message_bytes,
            finished: false,
        };
        Ok((sender, receiver))
    }
}

fn err(kind: ProviderErrorKind) -> ProviderError {
    ProviderError::new(PROVIDER, kind)
}

async fn connect_with_retries(config: &RealtimeConfig) -> Result<Ws, ProviderError> {
    let mut backoff = config.retry_backoff;
    let mut attempt = 0;
    loop {
        let outcome = tokio::time::timeout(config.connect_timeout, connect_once(config)).await;
        let error = match outcome {
            Ok(Ok(ws)) => return Ok(ws),
            Ok(Err(e)) => e,
            Err(_) => err(ProviderErrorKind::Timeout),
        };
        // Nothing was sent yet, so retrying is safe; a timeout is not retried
        // because the caller is already waiting in silence.
        let retry = matches!(
            error.kind,
            ProviderErrorKind::Transport(_) | ProviderErrorKind::RateLimited
        ) || matches!(error.kind, ProviderErrorKind::Status(code) if code >= 500);
        if !retry || attempt >= config.connect_retries {
            return Err(error);
        }
        attempt += 1;
        warn!(error = %error, attempt, "realtime: handshake failed, retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn connect_once(config: &RealtimeConfig) -> Result<Ws, ProviderError> {
    let mut url = url::Url::parse(&config.url).map_err(|e| err(ProviderErrorKind::Config(format!("url: {e}"))))?;
    if !matches!(url.scheme(), "ws" | "wss") {
        return Err(err(ProviderErrorKind::Config(format!(
            "url scheme {} is not ws or wss",
            url.scheme()
        ))));
    }
    if !config.model.is_empty() {
        url.query_pairs_mut().append_pair("model", &config.model);
    }
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| err(ProviderErrorKind::Config(format!("url: {e}"))))?;
    if let Some(key) = &config.api_key {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", key.expose_secret()))
            .map_err(|_| err(ProviderErrorKind::Config("api key is not a valid header value".into())))?;
        value.set_sensitive(true);
        request.headers_mut().insert("authorization", value);
    }
    if config.interface == RealtimeInterface::Beta {
        request
            .headers_mut()
            .insert("openai-beta", HeaderValue::from_static("realtime=v1"));
    }
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(config.max_message_bytes))
        .max_frame_size(Some(config.max_message_bytes));
    // rustls panics when two crypto providers are linked and none is
    // installed; a task keeps that panic away from the caller's task.
    let mut handshake = AbortOnDrop(tokio::spawn(tokio_tungstenite::connect_async_with_config(
        request,
        Some(ws_config),
        true,
    )));
    match (&mut handshake.0).await {
        Ok(Ok((ws, _response))) => Ok(ws),
        Ok(Err(e)) => Err(handshake_error(e)),
        Err(join) if join.is_panic() => Err(err(ProviderErrorKind::Config(
            "TLS setup failed; install a rustls CryptoProvider at startup".into(),
        ))),
        Err(_) => Err(err(ProviderErrorKind::Transport("handshake task cancelled".into()))),
    }
}

/// Stops the handshake task when `connect_timeout` drops its future.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn handshake_error(e: WsError) -> ProviderError {
    match e {
        WsError::Http(response) => {
            let status = response.status().as_u16();
            let body = response
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            warn!(status, body = %truncate_for_log(&body), "realtime: handshake refused");
            err(if status == 429 {
                ProviderErrorKind::RateLimited
            } else {
                ProviderErrorKind::Status(status)
            })
        }
        WsError::Url(e) => err(ProviderErrorKind::Config(format!("url: {e}"))),
        other => err(ProviderErrorKind::Transport(other.to_string())),
    }
}

fn truncate_for_log(text: &str) -> &str {
    let mut end = text.len().min(512);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn ws_error(e: WsError, max_message_bytes: usize) -> ProviderError {
    match e {
        WsError::ConnectionClosed | WsError::AlreadyClosed => err(ProviderErrorKind::Closed),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => err(ProviderErrorKind::Closed),
        WsError::Capacity(CapacityError::MessageTooLong { size, .. }) => err(ProviderErrorKind::Malformed(format!(
            "message of {size} bytes exceeds the {max_message_bytes} byte cap"
        ))),
        WsError::Capacity(e) => err(ProviderErrorKind::Malformed(e.to_string())),
        WsError::Utf8(e) => err(ProviderErrorKind::Malformed(format!("text frame is not UTF-8: {e}"))),
        other => err(ProviderErrorKind::Transport(other.to_string())),
    }
}

/// The sending half: the caller's audio and the call actor's commands.
pub struct RealtimeSender {
    sink: SplitSink<Ws, Message>,
    send_timeout: Duration,
    /// Set when we ask for a response, so the receiver's stall timer runs
    /// before the server acknowledges it.
    response_pending: Arc<AtomicBool>,
}

impl fmt::Debug for RealtimeSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RealtimeSender").finish_non_exhaustive()
    }
}

impl RealtimeSender {
    /// Appends one frame of the caller's 8 kHz μ-law audio
    /// (`input_audio_buffer.append`), typically a 20 ms / 160-byte Twilio
    /// payload after base64 decoding.
    pub async fn append_audio(&mut self, ulaw: &[u8]) -> Result<(), ProviderError> {
        self.send_text(wire::append_audio(ulaw)).await
    }

    /// Cuts the assistant item `item_id` at `audio_end_ms` (what the caller
    /// actually heard; see [`ulaw_ms`]) so the model's memory matches.
    pub async fn truncate(
        &mut self,
        item_id: &ItemId,
        content_index: u32,
        audio_end_ms: u64,
    ) -> Result<(), ProviderError> {
        self.send_text(wire::truncate(item_id, content_index, audio_end_ms))
            .await
    }

    /// Answers the function call `call_id` with `output` (sent as its JSON
    /// text), then asks the model to respond (`response.create`).
    pub async fn function_output(&mut self, call_id: &ToolCallId, output: &Value) -> Result<(), ProviderError> {
        self.send_text(wire::function_output(call_id, output)).await?;
        self.create_response().await
    }

    /// Asks the model to respond now (`response.create`).
    pub async fn create_response(&mut self) -> Result<(), ProviderError> {
        self.response_pending.store(true, Ordering::Release);
        self.send_text(wire::RESPONSE_CREATE.to_owned()).await
    }

    /// Cancels the response in progress (`response.cancel`).
    pub async fn cancel_response(&mut self) -> Result<(), ProviderError> {
        self.send_text(wire::RESPONSE_CANCEL.to_owned()).await
    }

    /// Closes the session with a normal close frame.
    pub async fn close(mut self) -> Result<(), ProviderError> {
        let timeout = self.send_timeout;
        match tokio::time::timeout(timeout, self.sink.close()).await {
            Ok(Ok(())) | Ok(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => Ok(()),
            Ok(Err(e)) => Err(ws_error(e, 0)),
            Err(_) => Err(err(ProviderErrorKind::Timeout)),
        }
    }

    async fn send_text(&mut self, text: String) -> Result<(), ProviderError> {
        match tokio::time::timeout(self.send_timeout, self.sink.send(Message::Text(text.into()))).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ws_error(e, 0)),
            Err(_) => Err(err(ProviderErrorKind::Timeout)),
        }
    }
}

/// The receiving half: typed server events.
pub struct RealtimeReceiver {
    stream: SplitStream<Ws>,
    decoder: wire::Decoder,
    response_pending: Arc<AtomicBool>,
    stall_timeout: Duration,
    max_message_bytes: usize,
    /// The socket ended; later calls return `Ok(None)`.
    finished: bool,
}

impl fmt::Debug for RealtimeReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RealtimeReceiver")
            .field("response_active", &self.decoder.response_active())
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl RealtimeReceiver {
    /// The next event; `Ok(None)` once the server closed the session while no
    /// response was in progress. Cancel-safe: dropping the future loses no
    /// event (it only ever awaits the socket).
    pub async fn next(&mut self) -> Result<Option<RealtimeEvent>, ProviderError> {
        loop {
            if self.finished {
                return Ok(None);
            }
            let busy = self.decoder.response_active() || self.response_pending.load(Ordering::Acquire);
            let frame = if busy {
                tokio::time::timeout(self.stall_timeout, self.stream.next())
                    .await
                    .map_err(|_| err(ProviderErrorKind::Timeout))?
            } else {
                self.stream.next().await
            };
            let text = match frame {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Binary(_))) => {
                    return Err(err(ProviderErrorKind::Malformed(
                        "binary frame; expected JSON text".into(),
                    )));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Close(frame))) => {
                    self.finished = true;
                    let code = frame.as_ref().map(|f| f.code);
                    if busy {
                        warn!(?code, "realtime: server closed the session mid-response");
                        return Err(err(ProviderErrorKind::Closed));
                    }
                    if !matches!(code, None | Some(CloseCode::Normal | CloseCode::Away)) {
                        warn!(?code, "realtime: server closed the session");
                    }
                    return Ok(None);
                }
                Some(Err(e)) => {
                    self.finished = true;
                    return Err(ws_error(e, self.max_message_bytes));
                }
                None => {
                    // No close frame: the connection was cut.
                    self.finished = true;
                    return Err(err(ProviderErrorKind::Closed));
                }
            };
            match self.decoder.decode(text.as_str()) {
                Ok(Some(event)) => {
                    if matches!(
                        event,
                        RealtimeEvent::ResponseStarted { .. }
                            | RealtimeEvent::ResponseDone { .. }
                            | RealtimeEvent::Error { .. }
                    ) {
                        // The server acknowledged (or refused) what we asked for.
                        self.response_pending.store(false, Ordering::Release);
                    }
                    if let RealtimeEvent::Error { code, message } = &event {
                        warn!(code = code.as_deref().unwrap_or("-"), message = %message, "realtime: error event");
                    }
                    return Ok(Some(event));
                }
                Ok(None) => continue,
                Err(why) => {
                    debug!(why = %why, "realtime: malformed server event");
                    return Err(err(ProviderErrorKind::Malformed(why)));
                }
            }
        }
    }
}
