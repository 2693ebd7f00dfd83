//! A fake OpenAI speech server: `POST /v1/audio/transcriptions` (multipart
//! upload of a WAV, JSON answer) and `POST /v1/audio/speech` (JSON request,
//! headerless 16-bit `pcm` streamed at 24 kHz), with OpenAI's error envelope.
//!
//! Each endpoint has its own queue of [`SpeechReply`]s; every request takes the
//! next one, in FIFO order (an empty queue answers 500, so an unscripted
//! request is visible in the test). Every request is recorded before it is
//! answered: transcriptions with their form fields and the uploaded WAV
//! decoded to samples ([`TranscriptionRequest`]), speech requests with their
//! JSON fields ([`SpeechRequest`]), both with the `Authorization` header.
//!
//! Audio is streamed the way OpenAI streams it: chunked, in pieces of at most
//! 100 ms, each its own body frame, with no sample-rate header (OpenAI's `pcm`
//! is always [`SAMPLE_RATE`]). The WAV reader here is written separately from
//! `switchboard-media`'s writer, so the two check each other. The server stops
//! when the [`FakeOpenAiSpeech`] is dropped.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::stream::{self, BoxStream, StreamExt};
use serde_json::{Value, json};

/// Rate of the `pcm` audio the speech endpoint streams (OpenAI's, fixed).
pub const SAMPLE_RATE: u32 = 24_000;
/// Samples per streamed body piece: 100 ms.
const PIECE_SAMPLES: usize = SAMPLE_RATE as usize / 10;

/// What the next request to an endpoint gets.
#[derive(Debug, Clone, PartialEq)]
pub enum SpeechReply {
    /// `transcriptions`: 200 `{"text": ...}`.
    Transcript(String),
    /// `speech`: 200 with these samples as streamed 16-bit little-endian `pcm`
    /// at [`SAMPLE_RATE`].
    Audio(Vec<i16>),
    /// OpenAI's error envelope with this HTTP status; `Retry-After` (seconds) if given.
    Status { code: u16, retry_after: Option<u64> },
    /// 200 `application/json` whose body is not valid JSON (for `speech`, a
    /// JSON content type where audio was asked for, and broken too).
    Malformed,
    /// Wait, then answer with the inner reply.
    Delay(Duration, Box<SpeechReply>),
    /// Accept the request and never answer.
    Hang,
    /// 200 and the first half of the inner reply's body (`Transcript` or
    /// `Audio`), then nothing, ever.
    StallMidBody(Box<SpeechReply>),
    /// 200 and the first half of the inner reply's body, then the connection
    /// is cut without ending the chunked body.
    CutMidBody(Box<SpeechReply>),
}

impl SpeechReply {
    /// A transcript.
    pub fn transcript(text: &str) -> Self {
        Self::Transcript(text.to_owned())
    }

    /// An error status without `Retry-After`.
    pub fn status(code: u16) -> Self {
        Self::Status {
            code,
            retry_after: None,
        }
    }

    /// `inner` after `wait`.
    pub fn delay(wait: Duration, inner: SpeechReply) -> Self {
        Self::Delay(wait, Box::new(inner))
    }

    /// Half of `inner`'s body, then a stall.
    pub fn stall_mid_body(inner: SpeechReply) -> Self {
        Self::StallMidBody(Box::new(inner))
    }

    /// Half of `inner`'s body, then a cut connection.
    pub fn cut_mid_body(inner: SpeechReply) -> Self {
        Self::CutMidBody(Box::new(inner))
    }
}

/// One `audio/transcriptions` request as the fake saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TranscriptionRequest {
    pub model: Option<String>,
    pub language: Option<String>,
    pub response_format: Option<String>,
    /// The file part's name.
    pub file_name: Option<String>,
    /// From the uploaded WAV's `fmt ` chunk; 0 when the upload was no WAV.
    pub sample_rate: u32,
    /// The uploaded WAV's mono 16-bit samples.
    pub samples: Vec<i16>,
    /// Form fields the fake does not know, by name.
    pub other_fields: Vec<String>,
    pub authorization: Option<String>,
}

/// One `audio/speech` request as the fake saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeechRequest {
    pub model: Option<String>,
    pub input: Option<String>,
    pub voice: Option<String>,
    pub response_format: Option<String>,
    pub authorization: Option<String>,
    /// The whole JSON body.
    pub body: Value,
}

#[derive(Default)]
struct Shared {
    transcription_replies: Mutex<VecDeque<SpeechReply>>,
    speech_replies: Mutex<VecDeque<SpeechReply>>,
    transcription_log: Mutex<Vec<TranscriptionRequest>>,
    speech_log: Mutex<Vec<SpeechRequest>>,
}

/// Locks, shrugging off poisoning: a panicking test thread must not hide
/// what the fake recorded.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The running fake; the server stops when this is dropped.
pub struct FakeOpenAiSpeech {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeOpenAiSpeech {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeOpenAiSpeech {
    /// Binds `127.0.0.1:0` and serves both endpoints.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/v1/audio/transcriptions", post(transcriptions))
            .route("/v1/audio/speech", post(speech))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake openai speech: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("fake openai speech: local addr");
        let task = tokio::spawn(async move {
            // The server only ends when the fake is dropped and this task aborted.
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared, task }
    }

    /// `http://127.0.0.1:{port}/v1`: the API root for both adapters.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Queues the answer for the next unanswered transcription.
    pub fn push_transcription(&self, reply: SpeechReply) {
        lock(&self.shared.transcription_replies).push_back(reply);
    }

    /// Queues the answer for the next unanswered speech request.
    pub fn push_speech(&self, reply: SpeechReply) {
        lock(&self.shared.speech_replies).push_back(reply);
    }

    /// Every transcription request so far, in arrival order.
    pub fn transcription_requests(&self) -> Vec<TranscriptionRequest> {
        lock(&self.shared.transcription_log).clone()
    }

    /// Every speech request so far, in arrival order.
    pub fn speech_requests(&self) -> Vec<SpeechRequest> {
        lock(&self.shared.speech_log).clone()
    }
}

fn authorization(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// OpenAI's error envelope.
fn openai_error(code: u16, message: &str, retry_after: Option<u64>) -> Response {
    let kind = match code {
        429 => "requests",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    };
    let error_code = if code == 429 {
        Value::from("rate_limit_exceeded")
    } else {
        Value::Null
    };
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({"error": {"message": message, "type": kind, "param": null, "code": error_code}});
    let mut resp = (status, axum::Json(body)).into_response();
    if let Some(seconds) = retry_after {
        resp.headers_mut().insert(header::RETRY_AFTER, seconds.into());
    }
    resp
}

type BodyStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// Pieces sent one by one, each its own body frame, so the client sees them
/// arrive separately.
fn pieces(pieces: Vec<Bytes>) -> BodyStream {
    stream::iter(pieces)
        .then(|piece| async move {
            tokio::task::yield_now().await;
            Ok::<_, std::io::Error>(piece)
        })
        .boxed()
}

/// A body error: hyper drops the connection without the terminating chunk.
/// The pause first lets hyper flush what was sent: an immediate error would
/// discard the buffered pieces.
fn cut() -> BodyStream {
    stream::once(async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "scripted cut"))
    })
    .boxed()
}

fn streamed(content_type: &'static str, body: BodyStream) -> Response {
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// A success body as its pieces and content type, or `None` when `reply`
/// is not a success of this endpoint.
type Success = fn(&SpeechReply) -> Option<(&'static str, Vec<Bytes>)>;

fn transcription_body(reply: &SpeechReply) -> Option<(&'static str, Vec<Bytes>)> {
    match reply {
        SpeechReply::Transcript(text) => {
            Some(("application/json", vec![Bytes::from(json!({"text": text}).to_string())]))
        }
        _ => None,
    }
}

fn speech_body(reply: &SpeechReply) -> Option<(&'static str, Vec<Bytes>)> {
    match reply {
        SpeechReply::Audio(samples) => Some((
            "application/octet-stream",
            samples
                .chunks(PIECE_SAMPLES)
                .map(|c| Bytes::from(c.iter().flat_map(|s| s.to_le_bytes()).collect::<Vec<u8>>()))
                .collect(),
        )),
        _ => None,
    }
}

/// The first half of a body given as pieces, cut at an even byte so audio
/// stays whole samples.
fn first_half(body: &[Bytes]) -> Vec<Bytes> {
    let total: usize = body.iter().map(Bytes::len).sum();
    let mut left = (total / 2) & !1;
    let mut out = Vec::new();
    for piece in body {
        if left == 0 {
            break;
        }
        let take = left.min(piece.len());
        out.push(piece.slice(..take));
        left -= take;
    }
    out
}

/// Answers `reply`, building success bodies with `success`.
async fn answer(
    reply: Option<SpeechReply>,
    endpoint: &'static str,
    success: Success,
    malformed: &'static str,
) -> Response {
    let mut reply = match reply {
        Some(reply) => reply,
        None => return openai_error(500, "fake: no reply scripted for this request", None),
    };
    loop {
        match reply {
            SpeechReply::Delay(wait, inner) => {
                tokio::time::sleep(wait).await;
                reply = *inner;
            }
            SpeechReply::Hang => return std::future::pending().await,
            SpeechReply::Status { code, retry_after } => {
                return openai_error(code, "fake: scripted failure", retry_after);
            }
            SpeechReply::Malformed => {
                return ([(header::CONTENT_TYPE, "application/json")], malformed).into_response();
            }
            SpeechReply::StallMidBody(inner) | SpeechReply::CutMidBody(inner) if success(&inner).is_none() => {
                return openai_error(500, &format!("fake: {inner:?} is not a {endpoint} reply"), None);
            }
            SpeechReply::StallMidBody(inner) => {
                let (content_type, body) = success(&inner).unwrap_or(("", Vec::new()));
                return streamed(content_type, pieces(first_half(&body)).chain(stream::pending()).boxed());
            }
            SpeechReply::CutMidBody(inner) => {
                let (content_type, body) = success(&inner).unwrap_or(("", Vec::new()));
                return streamed(content_type, pieces(first_half(&body)).chain(cut()).boxed());
            }
            other => {
                return match success(&other) {
                    Some((content_type, body)) => streamed(content_type, pieces(body)),
                    None => openai_error(500, &format!("fake: {other:?} is not a {endpoint} reply"), None),
                };
            }
        }
    }
}

async fn transcriptions(State(shared): State<Arc<Shared>>, headers: HeaderMap, mut form: Multipart) -> Response {
    let mut seen = TranscriptionRequest {
        authorization: authorization(&headers),
        ..TranscriptionRequest::default()
    };
    loop {
        let field = match form.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return openai_error(400, &format!("fake: unreadable multipart body: {e}"), None),
        };
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" {
            seen.file_name = field.file_name().map(str::to_owned);
            let Ok(bytes) = field.bytes().await else {
                return openai_error(400, "fake: unreadable file part", None);
            };
            match read_wav(&bytes) {
                Some((rate, samples)) => {
                    seen.sample_rate = rate;
                    seen.samples = samples;
                }
                None => return openai_error(400, "Invalid file format. Supported formats: ['wav', ...]", None),
            }
            continue;
        }
        let Ok(text) = field.text().await else {
            return openai_error(400, &format!("fake: unreadable form field {name}"), None);
        };
        match name.as_str() {
            "model" => seen.model = Some(text),
            "language" => seen.language = Some(text),
            "response_format" => seen.response_format = Some(text),
            _ => seen.other_fields.push(name),
        }
    }
    lock(&shared.transcription_log).push(seen);
    let reply = lock(&shared.transcription_replies).pop_front();
    answer(reply, "transcription", transcription_body, r#"{"text": 42, "usage": {"#).await
}

async fn speech(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(json) = serde_json::from_slice::<Value>(&body) else {
        return openai_error(400, "We could not parse the JSON body of your request.", None);
    };
    let field = |key: &str| json.get(key).and_then(Value::as_str).map(str::to_owned);
    let request = SpeechRequest {
        model: field("model"),
        input: field("input"),
        voice: field("voice"),
        response_format: field("response_format"),
        authorization: authorization(&headers),
        body: json.clone(),
    };
    lock(&shared.speech_log).push(request);
    let reply = lock(&shared.speech_replies).pop_front();
    answer(reply, "speech", speech_body, r#"{"object": "audio.speech", "audio": ["#).await
}

/// A mono 16-bit PCM WAV's rate and samples, reading chunk by chunk (never
/// assuming a 44-byte header); `None` for anything else.
fn read_wav(bytes: &[u8]) -> Option<(u32, Vec<i16>)> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return None;
    }
    let u16_at = |at: usize| Some(u16::from_le_bytes([*bytes.get(at)?, *bytes.get(at + 1)?]));
    let u32_at = |at: usize| {
        Some(u32::from_le_bytes([
            *bytes.get(at)?,
            *bytes.get(at + 1)?,
            *bytes.get(at + 2)?,
            *bytes.get(at + 3)?,
        ]))
    };
    let mut at = 12;
    let mut rate = None;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let size = u32_at(at + 4)? as usize;
        let body = at + 8;
        match id {
            b"fmt " => {
                let (format, channels, bits) = (u16_at(body)?, u16_at(body + 2)?, u16_at(body + 14)?);
                if format != 1 || channels != 1 || bits != 16 {
                    return None;
                }
                rate = Some(u32_at(body + 4)?);
            }
            b"data" => {
                let data = bytes.get(body..body.checked_add(size)?.min(bytes.len()))?;
                let samples = data.chunks_exact(2).map(|p| i16::from_le_bytes([p[0], p[1]])).collect();
                return Some((rate?, samples));
            }
            _ => {}
        }
        // Chunks are padded to an even size.
        at = body.checked_add(size)?.checked_add(size % 2)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(rate: u32, samples: &[i16], extra: &[u8]) -> Vec<u8> {
        let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        let mut out = Vec::new();
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&(36 + extra.len() as u32 + data.len() as u32).to_le_bytes());
        out.extend_from_slice(b"WAVEfmt ");
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&rate.to_le_bytes());
        out.extend_from_slice(&(rate * 2).to_le_bytes());
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(&16u16.to_le_bytes());
        out.extend_from_slice(extra);
        out.extend_from_slice(b"data");
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&data);
        out
    }

    #[test]
    fn wavs_are_read_chunk_by_chunk() {
        assert_eq!(
            read_wav(&wav(16_000, &[1, -2, 300], b"")),
            Some((16_000, vec![1, -2, 300]))
        );
        // An odd-sized chunk before `data` is skipped with its pad byte.
        let with_list = wav(8_000, &[7, 8], b"LIST\x03\0\0\0abc\0");
        assert_eq!(read_wav(&with_list), Some((8_000, vec![7, 8])));
        assert_eq!(read_wav(b"RIFF....WAVE"), None);
        assert_eq!(read_wav(b"not a wav at all"), None);
    }

    #[test]
    fn half_a_body_keeps_whole_samples() {
        let body = vec![
            Bytes::from_static(&[1, 2, 3, 4, 5, 6]),
            Bytes::from_static(&[7, 8, 9, 10]),
        ];
        let half = first_half(&body);
        assert_eq!(half.concat(), vec![1, 2, 3, 4]);
        let odd = vec![Bytes::from_static(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14])];
        assert_eq!(
            first_half(&odd).concat().len(),
            6,
            "7 bytes rounded down to whole samples"
        );
    }

    #[test]
    fn audio_is_streamed_in_pieces_of_at_most_100_ms() {
        let samples: Vec<i16> = (0..5_000).map(|i| i as i16).collect();
        let (content_type, body) = speech_body(&SpeechReply::Audio(samples.clone())).expect("audio");
        assert_eq!(content_type, "application/octet-stream");
        assert_eq!(body.len(), 3);
        assert!(body.iter().all(|p| p.len() <= PIECE_SAMPLES * 2));
        let bytes: Vec<u8> = body.concat();
        let back: Vec<i16> = bytes
            .chunks_exact(2)
            .map(|p| i16::from_le_bytes([p[0], p[1]]))
            .collect();
        assert_eq!(back, samples);
        assert!(speech_body(&SpeechReply::transcript("x")).is_none());
        assert!(transcription_body(&SpeechReply::Audio(vec![1])).is_none());
    }
}
