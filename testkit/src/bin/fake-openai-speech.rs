//! `fake-openai-speech`: a protocol-faithful stand-in for OpenAI's speech API,
//! for load tests with `--providers fake-servers` (a **bench** server, not a
//! real provider). Run it as a separate process:
//!
//! ```text
//! fake-openai-speech --port 8791      # prints: listening on http://127.0.0.1:8791
//! ```
//!
//! - `POST /v1/audio/transcriptions` (multipart/form-data with a non-empty
//!   `file` part and a `model` part) → `{"text": <phrase>}`, or the bare
//!   phrase with `response_format=text`.
//! - `POST /v1/audio/speech` (JSON `{model, input, voice, response_format}`)
//!   → 16-bit little-endian mono PCM at 24 kHz (`response_format` must be
//!   `pcm`; any voice is accepted), streamed in 100 ms chunks with `Transfer-Encoding: chunked`,
//!   from a cache rendered once per distinct text (speech-like audio, 280 ms
//!   per word).
//!
//! Guarantees: malformed requests get OpenAI's error shape
//! (`{"error": {"message", "type": "invalid_request_error"}}`) with status
//! 400, never a panic; the cache holds at most 256 texts.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use clap::Parser;
use serde::Deserialize;
use switchboard_media::vad::synth;

/// The rate OpenAI's `pcm` format uses.
const RATE: u32 = 24_000;
/// Rendered speech per word.
const MS_PER_WORD: u32 = 280;
/// Bytes per streamed chunk: 100 ms of 16-bit mono at 24 kHz.
const CHUNK_BYTES: usize = (RATE as usize / 10) * 2;
/// Distinct texts cached before the cache starts over.
const CACHE_LIMIT: usize = 256;
/// Largest request body accepted (a minute of 16 kHz WAV is ~2 MB).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// A fake OpenAI speech server (bench profile: fixed transcript, cached speech).
#[derive(Debug, Parser)]
#[command(name = "fake-openai-speech", version)]
struct Cli {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 8791)]
    port: u16,
    /// Address to bind instead of 127.0.0.1.
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// What every transcription returns.
    #[arg(long, default_value = "I would like to book an appointment for tomorrow at three")]
    phrase: String,
}

#[derive(Clone)]
struct AppState {
    phrase: Arc<str>,
    cache: Arc<Mutex<HashMap<String, Bytes>>>,
}

fn router(phrase: &str) -> Router {
    let state = AppState {
        phrase: Arc::from(phrase),
        cache: Arc::new(Mutex::new(HashMap::new())),
    };
    Router::new()
        .route("/v1/audio/transcriptions", post(transcriptions))
        .route("/v1/audio/speech", post(speech))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

fn openai_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({
        "error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}
    });
    (status, axum::Json(body)).into_response()
}

/// The parts of a multipart/form-data body: (name, content).
fn multipart_parts<'a>(content_type: &str, body: &'a [u8]) -> Result<Vec<(String, &'a [u8])>, String> {
    let boundary = content_type
        .split(';')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("boundary="))
        .map(|b| b.trim_matches('"'))
        .filter(|b| !b.is_empty())
        .ok_or("multipart body without a boundary")?;
    if !content_type.trim_start().starts_with("multipart/form-data") {
        return Err(format!("expected multipart/form-data, got {content_type}"));
    }
    let delimiter = format!("--{boundary}");
    let d = delimiter.as_bytes();
    let mut parts = Vec::new();
    let mut rest = body;
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    let start = find(rest, d).ok_or("no multipart delimiter")?;
    rest = &rest[start + d.len()..];
    loop {
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        let rest_after_crlf = rest.strip_prefix(b"\r\n").ok_or("malformed part start")?;
        let head_end = find(rest_after_crlf, b"\r\n\r\n").ok_or("part without headers")?;
        let headers = String::from_utf8_lossy(&rest_after_crlf[..head_end]);
        let content_start = head_end + 4;
        let next = find(&rest_after_crlf[content_start..], d).ok_or("unterminated part")?;
        let mut content = &rest_after_crlf[content_start..content_start + next];
        content = content.strip_suffix(b"\r\n").unwrap_or(content);
        let name = headers
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))
            .and_then(|l| l.split(';').map(str::trim).find_map(|p| p.strip_prefix("name=")))
            .map(|n| n.trim_matches('"').to_owned())
            .ok_or("part without a name")?;
        parts.push((name, content));
        rest = &rest_after_crlf[content_start + next + d.len()..];
    }
}

async fn transcriptions(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let parts = match multipart_parts(content_type, &body) {
        Ok(p) => p,
        Err(e) => return openai_error(StatusCode::BAD_REQUEST, &e),
    };
    let field = |name: &str| parts.iter().find(|(n, _)| n == name).map(|(_, c)| *c);
    match field("file") {
        Some(f) if !f.is_empty() => {}
        _ => return openai_error(StatusCode::BAD_REQUEST, "missing or empty `file`"),
    }
    if field("model").is_none_or(<[u8]>::is_empty) {
        return openai_error(StatusCode::BAD_REQUEST, "you must provide a model parameter");
    }
    match field("response_format").map(String::from_utf8_lossy).as_deref() {
        Some("text") => state.phrase.to_string().into_response(),
        None | Some("json") | Some("verbose_json") => {
            axum::Json(serde_json::json!({"text": &*state.phrase})).into_response()
        }
        Some(other) => openai_error(StatusCode::BAD_REQUEST, &format!("unsupported response_format {other}")),
    }
}

#[derive(Deserialize)]
struct SpeechRequest {
    model: String,
    input: String,
    #[serde(default)]
    response_format: Option<String>,
}

/// Speech-like audio for `text`, 16-bit LE at 24 kHz, rendered once.
fn render(state: &AppState, text: &str) -> Bytes {
    let mut cache = state.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(b) = cache.get(text) {
        return b.clone();
    }
    let words = text.split_whitespace().count().max(1) as u32;
    let seed = text
        .bytes()
        .fold(1u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    let samples = synth::voiced(RATE, words.saturating_mul(MS_PER_WORD), 8000.0, seed);
    let mut bytes = Vec::with_capacity(samples.len() * 2);
    for s in samples {
        bytes.extend_from_slice(&(s.round().clamp(-32768.0, 32767.0) as i16).to_le_bytes());
    }
    let bytes = Bytes::from(bytes);
    if cache.len() >= CACHE_LIMIT {
        cache.clear();
    }
    cache.insert(text.to_owned(), bytes.clone());
    bytes
}

async fn speech(State(state): State<AppState>, body: Bytes) -> Response {
    let request: SpeechRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return openai_error(StatusCode::BAD_REQUEST, &format!("invalid JSON body: {e}")),
    };
    if request.model.trim().is_empty() || request.input.trim().is_empty() {
        return openai_error(StatusCode::BAD_REQUEST, "`model` and `input` are required");
    }
    match request.response_format.as_deref() {
        Some("pcm") => {}
        other => {
            return openai_error(
                StatusCode::BAD_REQUEST,
                &format!("this fake serves response_format pcm only, got {other:?}"),
            );
        }
    }
    let audio = render(&state, &request.input);
    let chunks: Vec<Result<Bytes, Infallible>> = (0..audio.len())
        .step_by(CHUNK_BYTES)
        .map(|start| Ok(audio.slice(start..(start + CHUNK_BYTES).min(audio.len()))))
        .collect();
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header("x-sample-rate", RATE.to_string())
        .body(Body::from_stream(futures::stream::iter(chunks)))
        .unwrap_or_else(|_| openai_error(StatusCode::INTERNAL_SERVER_ERROR, "response build failed"))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let addr = SocketAddr::new(cli.host, cli.port);
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot bind {addr}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        Ok(a) => println!("listening on http://{a}"),
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    }
    if let Err(e) = axum::serve(listener, router(&cli.phrase)).await {
        eprintln!("error: {e}");
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt as _;
    use switchboard_providers::capability::{SpeechToText as _, StreamConfig, SttEvent, TextToSpeech as _};
    use switchboard_providers::openai_speech::{OpenAiSpeechConfig, OpenAiStt, OpenAiTts, speech_http_client};

    async fn serve() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, router("hello there")).await });
        format!("http://{addr}/v1")
    }

    #[tokio::test]
    async fn the_real_openai_adapters_talk_to_it() {
        let base = serve().await;
        let client = speech_http_client(std::time::Duration::from_secs(5)).expect("client");
        let config = OpenAiSpeechConfig::openai_compatible(&base, None);
        let stt = OpenAiStt::new(config.clone(), client.clone()).expect("stt");
        let mut session = stt
            .start(StreamConfig {
                sample_rate: 16_000,
                language: "en-US".into(),
                interim_results: false,
            })
            .await
            .expect("start");
        session.push_audio(&[100i16; 3200]).await.expect("push");
        session.finish().await.expect("finish");
        match session.next_event().await.expect("event") {
            Some(SttEvent::Final { text, .. }) => assert_eq!(text, "hello there"),
            other => panic!("{other:?}"),
        }

        let tts = OpenAiTts::new(config, client).expect("tts");
        let mut stream = tts.synthesize("one two three four".into(), "alloy".into());
        let mut samples = 0;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.expect("chunk");
            assert_eq!(chunk.sample_rate, RATE);
            samples += chunk.samples.len();
        }
        // Four words at 280 ms each, 24 kHz.
        assert_eq!(samples, 4 * 280 * 24);
    }

    #[tokio::test]
    async fn bad_requests_get_openai_errors() {
        let base = serve().await;
        let http = reqwest::Client::new();
        let r = http
            .post(format!("{base}/audio/speech"))
            .json(&serde_json::json!({"model": "tts-1", "input": "hi", "voice": "alloy", "response_format": "mp3"}))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 400);
        let body: serde_json::Value = r.json().await.expect("json");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        let r = http
            .post(format!("{base}/audio/transcriptions"))
            .header("content-type", "multipart/form-data; boundary=x")
            .body("--x\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--x--\r\n")
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 400, "a transcription without a file is refused");
    }

    #[test]
    fn multipart_parts_are_split_by_name() {
        let body = b"--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--b\r\n\
Content-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\nRIFF\r\n\r\n--b--\r\n";
        let parts = multipart_parts("multipart/form-data; boundary=b", body).expect("parts");
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], ("model".to_owned(), &b"whisper-1"[..]));
        assert_eq!(parts[1], ("file".to_owned(), &b"RIFF\r\n"[..]));
        assert!(multipart_parts("application/json", body).is_err());
    }
}
