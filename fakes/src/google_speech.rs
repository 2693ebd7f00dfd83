//! A fake Google Cloud speech server: Speech-to-Text v1
//! `POST /v1/speech:recognize` and Text-to-Speech v1
//! `POST /v1/text:synthesize`, with Google's JSON shapes and error envelope.
//!
//! Each endpoint has its own queue of [`GoogleReply`]s; every request takes
//! the next one (an empty queue answers 500, so an unscripted request is
//! visible in the test). Every request is recorded with its config and its
//! audio decoded from base64 ([`RecognizeRequest`], [`SynthesizeRequest`]),
//! and with the API key (`X-Goog-Api-Key` or `?key=`) or bearer token it
//! carried. Synthesized audio is encoded as the request asked
//! (`audioEncoding` `MULAW` or `LINEAR16` at `sampleRateHertz`), with a WAV
//! header as Google adds one. The μ-law encoder here is written separately
//! from `switchboard-media`'s, so the two check each other.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures::StreamExt as _;
use serde_json::{Value, json};

/// What the next request to an endpoint gets.
#[derive(Debug, Clone)]
pub enum GoogleReply {
    /// `recognize`: 200 with one result per string (an empty list is `{}`,
    /// Google's answer for no speech).
    Transcript(Vec<String>),
    /// `synthesize`: 200 with these samples encoded as the request asked.
    Audio { samples: Vec<i16>, header: AudioHeader },
    /// Google's error envelope with this HTTP status; `Retry-After` if given.
    Status { code: u16, retry_after: Option<u64> },
    /// 200 `application/json` with exactly this body.
    Malformed(String),
    /// Wait, then answer with the inner reply.
    Delay(Duration, Box<GoogleReply>),
    /// Accept the request and never answer.
    Hang,
    /// 200 head and the first half of a valid body, then nothing, ever.
    StallMidBody,
    /// 200 head and the first half of a valid body, then the connection
    /// closes without ending the body.
    CutMidBody,
}

impl GoogleReply {
    /// A transcript of one result.
    pub fn transcript(text: &str) -> Self {
        Self::Transcript(vec![text.to_owned()])
    }

    /// Audio with Google's plain 44-byte WAV header.
    pub fn audio(samples: Vec<i16>) -> Self {
        Self::Audio {
            samples,
            header: AudioHeader::Wav,
        }
    }

    /// An error status without `Retry-After`.
    pub fn status(code: u16) -> Self {
        Self::Status {
            code,
            retry_after: None,
        }
    }
}

/// How synthesized audio is framed inside `audioContent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioHeader {
    /// Raw samples, no header.
    None,
    /// `RIFF` / `fmt ` / `data`, 44 bytes (what Google sends).
    Wav,
    /// A `LIST` chunk of odd size between `fmt ` and `data`, so a reader
    /// that assumes 44 bytes fails.
    WavWithExtraChunk,
}

/// One `speech:recognize` request as the fake saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecognizeRequest {
    pub encoding: Option<String>,
    pub sample_rate_hertz: Option<u64>,
    pub language_code: Option<String>,
    pub model: Option<String>,
    /// `audio.content` decoded from base64.
    pub audio: Vec<u8>,
    pub credentials: Credentials,
    /// The whole JSON body.
    pub body: Value,
}

/// One `text:synthesize` request as the fake saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthesizeRequest {
    pub text: Option<String>,
    pub voice_name: Option<String>,
    pub language_code: Option<String>,
    pub audio_encoding: Option<String>,
    pub sample_rate_hertz: Option<u64>,
    pub credentials: Credentials,
    pub body: Value,
}

/// What a request presented to prove who it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// From `X-Goog-Api-Key` or the `key` query parameter.
    pub api_key: Option<String>,
    /// From `Authorization: Bearer`.
    pub bearer: Option<String>,
}

#[derive(Default)]
struct Shared {
    recognize_replies: Mutex<VecDeque<GoogleReply>>,
    synthesize_replies: Mutex<VecDeque<GoogleReply>>,
    recognize_log: Mutex<Vec<RecognizeRequest>>,
    synthesize_log: Mutex<Vec<SynthesizeRequest>>,
}

/// Locks, shrugging off poisoning: a panicking test thread must not hide
/// what the fake recorded.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The running fake; the server stops when this is dropped.
pub struct FakeGoogleSpeech {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGoogleSpeech {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeGoogleSpeech {
    /// Binds `127.0.0.1:0` and serves both endpoints.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/v1/speech:recognize", post(recognize))
            .route("/v1/text:synthesize", post(synthesize))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake google speech: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("fake google speech: local addr");
        let task = tokio::spawn(async move {
            // The server only ends when the fake is dropped and this task aborted.
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared, task }
    }

    /// `http://127.0.0.1:{port}`: the base URL for both adapters.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues the answer for the next unanswered `recognize`.
    pub fn push_recognize(&self, reply: GoogleReply) {
        lock(&self.shared.recognize_replies).push_back(reply);
    }

    /// Queues the answer for the next unanswered `synthesize`.
    pub fn push_synthesize(&self, reply: GoogleReply) {
        lock(&self.shared.synthesize_replies).push_back(reply);
    }

    /// Every `recognize` request so far, in arrival order.
    pub fn recognize_requests(&self) -> Vec<RecognizeRequest> {
        lock(&self.shared.recognize_log).clone()
    }

    /// Every `synthesize` request so far, in arrival order.
    pub fn synthesize_requests(&self) -> Vec<SynthesizeRequest> {
        lock(&self.shared.synthesize_log).clone()
    }
}

fn credentials(headers: &HeaderMap, query: Option<&str>) -> Credentials {
    let header_value = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let query_key = query.and_then(|q| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(q)
            .ok()?
            .into_iter()
            .find(|(k, _)| k == "key")
            .map(|(_, v)| v)
    });
    Credentials {
        api_key: header_value("x-goog-api-key").map(str::to_owned).or(query_key),
        bearer: header_value(header::AUTHORIZATION.as_str())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned),
    }
}

fn str_at(v: &Value, pointer: &str) -> Option<String> {
    v.pointer(pointer).and_then(Value::as_str).map(str::to_owned)
}

/// Google's error envelope.
fn google_error(code: u16, message: &str, retry_after: Option<u64>) -> Response {
    let status_name = match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    };
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({"error": {"code": code, "message": message, "status": status_name}});
    let mut resp = (status, axum::Json(body)).into_response();
    if let Some(seconds) = retry_after {
        resp.headers_mut().insert(header::RETRY_AFTER, seconds.into());
    }
    resp
}

/// A 200 whose body stops half-way and never ends.
fn stalled(full_body: String) -> Response {
    let body =
        futures::stream::iter([Ok::<_, std::io::Error>(first_half(full_body))]).chain(futures::stream::pending());
    json_stream(Body::from_stream(body))
}

/// A 200 whose body stops half-way, then the connection drops: hyper ends
/// it without the terminating chunk when the body stream fails.
fn cut(full_body: String) -> Response {
    let first = futures::stream::iter([Ok::<_, std::io::Error>(first_half(full_body))]);
    let reset = futures::stream::once(async {
        // Lets hyper flush the first half before the error discards its buffer.
        tokio::time::sleep(Duration::from_millis(20)).await;
        Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "scripted cut"))
    });
    json_stream(Body::from_stream(first.chain(reset)))
}

fn first_half(full_body: String) -> Bytes {
    let full = Bytes::from(full_body.into_bytes());
    full.slice(..full.len() / 2)
}

fn json_stream(body: Body) -> Response {
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Answers `reply`, calling `success` for the endpoint's own 200 bodies.
async fn answer(reply: Option<GoogleReply>, success: impl Fn(GoogleReply) -> Response) -> Response {
    let mut reply = match reply {
        Some(reply) => reply,
        None => return google_error(500, "fake: no reply scripted for this request", None),
    };
    loop {
        match reply {
            GoogleReply::Delay(wait, inner) => {
                tokio::time::sleep(wait).await;
                reply = *inner;
            }
            GoogleReply::Hang => return std::future::pending().await,
            GoogleReply::Status { code, retry_after } => {
                return google_error(code, "fake: scripted failure", retry_after);
            }
            GoogleReply::Malformed(body) => {
                return ([(header::CONTENT_TYPE, "application/json")], body).into_response();
            }
            other => return success(other),
        }
    }
}

async fn recognize(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let credentials = credentials(&headers, query.as_deref());
    let Ok(json) = serde_json::from_slice::<Value>(&body) else {
        return google_error(400, "Invalid JSON payload received.", None);
    };
    let Some(audio) = json
        .pointer("/audio/content")
        .and_then(Value::as_str)
        .and_then(|b64| BASE64.decode(b64).ok())
    else {
        return google_error(400, "audio.content must be base64.", None);
    };
    lock(&shared.recognize_log).push(RecognizeRequest {
        encoding: str_at(&json, "/config/encoding"),
        sample_rate_hertz: json.pointer("/config/sampleRateHertz").and_then(Value::as_u64),
        language_code: str_at(&json, "/config/languageCode"),
        model: str_at(&json, "/config/model"),
        audio,
        credentials,
        body: json,
    });
    let reply = lock(&shared.recognize_replies).pop_front();
    answer(reply, |reply| match reply {
        GoogleReply::Transcript(texts) if texts.is_empty() => axum::Json(json!({})).into_response(),
        GoogleReply::Transcript(texts) => {
            let results: Vec<Value> = texts
                .iter()
                .map(|t| json!({"alternatives": [{"transcript": t, "confidence": 0.92}], "languageCode": "en-us"}))
                .collect();
            axum::Json(json!({"results": results, "totalBilledTime": "2s"})).into_response()
        }
        GoogleReply::StallMidBody => {
            stalled(json!({"results": [{"alternatives": [{"transcript": "never finished"}]}]}).to_string())
        }
        GoogleReply::CutMidBody => {
            cut(json!({"results": [{"alternatives": [{"transcript": "never finished"}]}]}).to_string())
        }
        other => google_error(500, &format!("fake: {other:?} is not a recognize reply"), None),
    })
    .await
}

async fn synthesize(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let credentials = credentials(&headers, query.as_deref());
    let Ok(json) = serde_json::from_slice::<Value>(&body) else {
        return google_error(400, "Invalid JSON payload received.", None);
    };
    let request = SynthesizeRequest {
        text: str_at(&json, "/input/text"),
        voice_name: str_at(&json, "/voice/name"),
        language_code: str_at(&json, "/voice/languageCode"),
        audio_encoding: str_at(&json, "/audioConfig/audioEncoding"),
        sample_rate_hertz: json.pointer("/audioConfig/sampleRateHertz").and_then(Value::as_u64),
        credentials,
        body: json,
    };
    let encoding = request.audio_encoding.clone();
    let rate = request.sample_rate_hertz.unwrap_or(24_000) as u32;
    lock(&shared.synthesize_log).push(request);
    let reply = lock(&shared.synthesize_replies).pop_front();
    answer(reply, |reply| match reply {
        GoogleReply::Audio { samples, header } => {
            let bytes = match encoding.as_deref() {
                Some("MULAW") => encode_audio(Encoding::Mulaw, rate, &samples, header),
                Some("LINEAR16") => encode_audio(Encoding::Linear16, rate, &samples, header),
                other => return google_error(400, &format!("fake: unsupported audioEncoding {other:?}"), None),
            };
            axum::Json(json!({"audioContent": BASE64.encode(bytes)})).into_response()
        }
        GoogleReply::StallMidBody => stalled(json!({"audioContent": BASE64.encode([0u8; 4000])}).to_string()),
        GoogleReply::CutMidBody => cut(json!({"audioContent": BASE64.encode([0u8; 4000])}).to_string()),
        other => google_error(500, &format!("fake: {other:?} is not a synthesize reply"), None),
    })
    .await
}

#[derive(Clone, Copy)]
enum Encoding {
    Mulaw,
    Linear16,
}

/// The samples as Google would send them for this encoding and rate.
fn encode_audio(encoding: Encoding, rate: u32, samples: &[i16], header: AudioHeader) -> Vec<u8> {
    let (data, format_tag, bits): (Vec<u8>, u16, u16) = match encoding {
        Encoding::Mulaw => (samples.iter().map(|&s| ulaw_encode(s)).collect(), 7, 8),
        Encoding::Linear16 => (samples.iter().flat_map(|s| s.to_le_bytes()).collect(), 1, 16),
    };
    if header == AudioHeader::None {
        return data;
    }
    let extra: &[u8] = if header == AudioHeader::WavWithExtraChunk {
        b"LIST\x05\0\0\0INFOx\0"
    } else {
        b""
    };
    let block_align = bits / 8;
    let mut out = Vec::with_capacity(44 + extra.len() + data.len());
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + extra.len() as u32 + data.len() as u32).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&format_tag.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * u32::from(block_align)).to_le_bytes());
    out.extend_from_slice(&block_align.to_le_bytes());
    out.extend_from_slice(&bits.to_le_bytes());
    out.extend_from_slice(extra);
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&data);
    out
}

/// G.711 μ-law, segment-search form (BIAS 0x84, CLIP 32635).
pub fn ulaw_encode(sample: i16) -> u8 {
    const SEGMENT_ENDS: [i32; 8] = [0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF, 0x3FFF, 0x7FFF];
    let s = i32::from(sample);
    let sign = if s < 0 { 0x80 } else { 0 };
    let m = s.abs().min(32635) + 0x84;
    let exponent = SEGMENT_ENDS.iter().position(|&end| m <= end).unwrap_or(7) as i32;
    let mantissa = (m >> (exponent + 3)) & 0x0F;
    !(sign | (exponent << 4) | mantissa) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_matches_the_reference_vectors() {
        let vectors: [(i16, u8); 16] = [
            (0, 0xFF),
            (1, 0xFF),
            (-1, 0x7F),
            (8, 0xFE),
            (-8, 0x7E),
            (100, 0xF2),
            (-100, 0x72),
            (1000, 0xCE),
            (-1000, 0x4E),
            (4000, 0xAF),
            (8000, 0xA0),
            (-8000, 0x20),
            (16000, 0x90),
            (32124, 0x80),
            (32767, 0x80),
            (-32768, 0x00),
        ];
        for (sample, code) in vectors {
            assert_eq!(ulaw_encode(sample), code, "{sample}");
        }
    }

    #[test]
    fn wav_headers_describe_the_audio() {
        let wav = encode_audio(Encoding::Linear16, 16_000, &[1, -1], AudioHeader::Wav);
        assert_eq!(wav.len(), 44 + 4);
        assert_eq!(&wav[0..4], b"RIFF");
        assert_eq!(u16::from_le_bytes([wav[20], wav[21]]), 1);
        assert_eq!(u32::from_le_bytes([wav[24], wav[25], wav[26], wav[27]]), 16_000);
        assert_eq!(&wav[44..], &[1, 0, 0xFF, 0xFF]);
        let raw = encode_audio(Encoding::Mulaw, 8_000, &[0, 100], AudioHeader::None);
        assert_eq!(raw, [0xFF, 0xF2]);
    }
}
