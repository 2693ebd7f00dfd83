//! The OpenAI-compatible speech adapter and the standard factory against a
//! local fake server speaking OpenAI's wire protocol: multipart uploads parsed
//! by axum, WAV bodies parsed back, chunked `pcm` streamed in odd splits.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::StreamExt;
use futures::future::BoxFuture;
use serde_json::json;
use switchboard_domain::{Agent, AgentId, Endpointing, ProviderChoice, TenantId};
use switchboard_providers::{
    KeySource, NoKeys, OpenAiSpeechConfig, OpenAiStt, OpenAiTts, PcmChunk, ProviderError, ProviderErrorKind,
    ProviderFactory, SecretString, SpeechToText, StandardConfig, StandardProviders, StreamConfig, SttEvent,
    TextToSpeech, speech_http_client,
};
use tokio::sync::Notify;

// ------------------------------------------------------------ fake server

/// One transcription request as the fake server saw it.
#[derive(Debug, Clone, Default)]
struct SeenUpload {
    model: String,
    language: Option<String>,
    response_format: String,
    file_name: Option<String>,
    sample_rate: u32,
    samples: Vec<i16>,
    authorization: Option<String>,
}

/// What a fake endpoint answers on the n-th request (0-based).
type Script = Arc<dyn Fn(usize) -> Reply + Send + Sync>;

/// Each speech request's JSON body and `Authorization` header.
type SpeechLog = Arc<Mutex<Vec<(serde_json::Value, Option<String>)>>>;

#[derive(Clone)]
enum Reply {
    /// Success: for STT the transcript is derived from the upload.
    Ok,
    /// 200 with this exact text body and content type.
    Raw(&'static str, &'static str),
    /// An OpenAI-style error.
    Error(u16, &'static str),
    /// Never answer.
    Hang,
}

#[derive(Clone)]
struct Fake {
    script: Script,
    hits: Arc<AtomicUsize>,
    uploads: Arc<Mutex<Vec<SeenUpload>>>,
    speech_requests: SpeechLog,
    /// TTS: the PCM body to stream, how to split it, and the announced rate.
    pcm: Arc<Vec<u8>>,
    splits: Arc<Vec<usize>>,
    sample_rate_header: Option<u32>,
    /// TTS: the body waits for this before sending anything past the first chunk.
    gate: Option<Arc<Notify>>,
    /// TTS: stop (and hang) after the first chunk.
    stall_after_first: bool,
}

impl Fake {
    fn new(script: impl Fn(usize) -> Reply + Send + Sync + 'static) -> Self {
        Self {
            script: Arc::new(script),
            hits: Arc::default(),
            uploads: Arc::default(),
            speech_requests: Arc::default(),
            pcm: Arc::new(Vec::new()),
            splits: Arc::new(Vec::new()),
            sample_rate_header: None,
            gate: None,
            stall_after_first: false,
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    async fn serve(&self) -> String {
        let app = Router::new()
            .route("/v1/audio/transcriptions", post(transcriptions))
            .route("/v1/audio/speech", post(speech))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        format!("http://{addr}/v1")
    }
}

fn openai_error(status: u16, message: &str) -> Response {
    let body = json!({"error": {"message": message, "type": "invalid_request_error", "code": null}});
    (StatusCode::from_u16(status).expect("status"), axum::Json(body)).into_response()
}

fn auth(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn transcriptions(State(fake): State<Fake>, headers: HeaderMap, mut form: Multipart) -> Response {
    let n = fake.hits.fetch_add(1, Ordering::SeqCst);
    let mut seen = SeenUpload {
        authorization: auth(&headers),
        ..Default::default()
    };
    while let Some(field) = form.next_field().await.expect("multipart field") {
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            "file" => {
                seen.file_name = field.file_name().map(str::to_owned);
                let bytes = field.bytes().await.expect("file bytes");
                let wav = switchboard_media::wav::read_mono(&bytes).expect("the upload is a mono 16-bit WAV");
                seen.sample_rate = wav.sample_rate;
                seen.samples = wav.samples;
            }
            "model" => seen.model = field.text().await.expect("model"),
            "language" => seen.language = Some(field.text().await.expect("language")),
            "response_format" => seen.response_format = field.text().await.expect("format"),
            other => panic!("unexpected form field {other}"),
        }
    }
    let transcript = format!("  heard {} samples at {} Hz  ", seen.samples.len(), seen.sample_rate);
    fake.uploads.lock().expect("lock").push(seen);
    match (fake.script)(n) {
        Reply::Ok => {
            axum::Json(json!({"text": transcript, "usage": {"type": "duration", "seconds": 1}})).into_response()
        }
        Reply::Raw(body, ct) => ([(header::CONTENT_TYPE, ct)], body).into_response(),
        Reply::Error(status, message) => openai_error(status, message),
        Reply::Hang => std::future::pending().await,
    }
}

async fn speech(State(fake): State<Fake>, headers: HeaderMap, body: Bytes) -> Response {
    let n = fake.hits.fetch_add(1, Ordering::SeqCst);
    let json: serde_json::Value = serde_json::from_slice(&body).expect("speech request is JSON");
    fake.speech_requests.lock().expect("lock").push((json, auth(&headers)));
    match (fake.script)(n) {
        Reply::Ok => {}
        Reply::Raw(body, ct) => return ([(header::CONTENT_TYPE, ct)], body).into_response(),
        Reply::Error(status, message) => return openai_error(status, message),
        Reply::Hang => return std::future::pending().await,
    }
    let mut pieces = Vec::new();
    let mut at = 0;
    for &len in fake.splits.iter() {
        let end = (at + len).min(fake.pcm.len());
        pieces.push(Bytes::copy_from_slice(&fake.pcm[at..end]));
        at = end;
    }
    if at < fake.pcm.len() {
        pieces.push(Bytes::copy_from_slice(&fake.pcm[at..]));
    }
    let gate = fake.gate.clone();
    let stall = fake.stall_after_first;
    let body = futures::stream::iter(pieces.into_iter().enumerate()).then(move |(i, piece)| {
        let gate = gate.clone();
        async move {
            if i == 1 {
                if stall {
                    std::future::pending::<()>().await;
                }
                if let Some(gate) = gate {
                    gate.notified().await;
                }
            }
            // Separate writes, so the client sees separate body chunks.
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok::<_, std::io::Error>(piece)
        }
    });
    let mut resp = Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "application/octet-stream");
    if let Some(rate) = fake.sample_rate_header {
        resp = resp.header("x-sample-rate", rate.to_string());
    }
    resp.body(Body::from_stream(body)).expect("response")
}

// ------------------------------------------------------------ helpers

/// The exchange budget where the outcome is not a timeout: generous, so a
/// stalled test machine cannot turn an answer, a retried success or a typed
/// error into a `Timeout`, nor cut off an attempt.
const BUDGET: Duration = Duration::from_secs(10);
/// The budget where the test's point is a timeout: the fake then stays
/// silent forever, so the margin on its side is unbounded.
const TIMEOUT_BUDGET: Duration = Duration::from_secs(1);

fn config(base_url: &str) -> OpenAiSpeechConfig {
    let mut c = OpenAiSpeechConfig::openai(SecretString::from("sk-test-key"));
    c.base_url = base_url.to_owned();
    c.stt_model = "whisper-test".to_owned();
    c.tts_model = "tts-test".to_owned();
    c.tts_sample_rate = 24_000;
    c.timeout = BUDGET;
    c.max_retries = 2;
    c.retry_backoff = Duration::from_millis(1);
    c
}

/// [`config`] for a fault that must end in a timeout.
fn timeout_config(base_url: &str) -> OpenAiSpeechConfig {
    let mut c = config(base_url);
    c.timeout = TIMEOUT_BUDGET;
    c
}

fn client() -> reqwest::Client {
    speech_http_client(BUDGET).expect("client")
}

/// The fake's request count once it has seen the first request. A client
/// that timed out may have done so before the fake's handler ran on a
/// stalled machine; retries, if any, were all sent before it returned.
async fn seen_hits(fake: &Fake) -> usize {
    let deadline = tokio::time::Instant::now() + BUDGET;
    while fake.hits() == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    fake.hits()
}

fn stream_config(rate: u32) -> StreamConfig {
    StreamConfig {
        sample_rate: rate,
        language: "en-US".to_owned(),
        interim_results: false,
    }
}

/// A deterministic, non-trivial waveform (both signs, full range).
fn waveform(n: usize) -> Vec<i16> {
    (0..n).map(|i| ((i as i64 * 7919) % 65_536 - 32_768) as i16).collect()
}

fn pcm_bytes(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

/// Pushes `samples` in three pieces, finishes and drains the events.
async fn transcribe(stt: &OpenAiStt, rate: u32, samples: &[i16]) -> Result<Vec<SttEvent>, ProviderError> {
    let mut stream = stt.start(stream_config(rate)).await?;
    let third = samples.len() / 3;
    for piece in [&samples[..third], &samples[third..2 * third], &samples[2 * third..]] {
        stream.push_audio(piece).await?;
    }
    stream.finish().await?;
    let mut events = Vec::new();
    while let Some(event) = stream.next_event().await? {
        events.push(event);
    }
    Ok(events)
}

async fn synthesize(tts: &OpenAiTts, text: &str, voice: &str) -> (Vec<PcmChunk>, Option<ProviderError>) {
    let mut stream = tts.synthesize(text.to_owned(), voice.to_owned());
    let mut chunks = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(chunk) => chunks.push(chunk),
            Err(e) => return (chunks, Some(e)),
        }
    }
    (chunks, None)
}

// ------------------------------------------------------------ STT

#[tokio::test]
async fn stt_uploads_a_wav_and_yields_one_trimmed_final() {
    let fake = Fake::new(|_| Reply::Ok);
    let base = fake.serve().await;
    let stt = OpenAiStt::new(config(&base), client()).expect("stt");
    let samples = waveform(12_000);

    let events = transcribe(&stt, 8_000, &samples).await.expect("transcribed");

    assert_eq!(
        events,
        vec![SttEvent::Final {
            text: "heard 12000 samples at 8000 Hz".to_owned(),
            start_ms: 0,
            end_ms: 1_500,
        }]
    );
    let uploads = fake.uploads.lock().expect("lock").clone();
    assert_eq!(uploads.len(), 1);
    let up = &uploads[0];
    assert_eq!(up.samples, samples, "the WAV carries exactly the pushed audio");
    assert_eq!(up.sample_rate, 8_000);
    assert_eq!(up.model, "whisper-test");
    assert_eq!(up.response_format, "json");
    assert_eq!(up.language.as_deref(), Some("en"), "BCP-47 en-US is sent as ISO-639-1");
    assert_eq!(up.file_name.as_deref(), Some("audio.wav"));
    assert_eq!(up.authorization.as_deref(), Some("Bearer sk-test-key"));
}

#[tokio::test]
async fn stt_without_key_sends_no_authorization_and_empty_text_yields_no_final() {
    let fake = Fake::new(|_| Reply::Raw(r#"{"text":"   "}"#, "application/json"));
    let base = fake.serve().await;
    let mut c = config(&base);
    c.api_key = None;
    let stt = OpenAiStt::new(c, client()).expect("stt");

    let events = transcribe(&stt, 16_000, &waveform(1_600)).await.expect("transcribed");

    assert!(events.is_empty(), "{events:?}");
    assert_eq!(fake.hits(), 1);
    assert_eq!(fake.uploads.lock().expect("lock")[0].authorization, None);
}

#[tokio::test]
async fn stt_empty_segment_sends_nothing_and_ends() {
    let fake = Fake::new(|_| Reply::Ok);
    let base = fake.serve().await;
    let stt = OpenAiStt::new(config(&base), client()).expect("stt");
    let mut stream = stt.start(stream_config(8_000)).await.expect("start");
    stream.finish().await.expect("finish");
    assert_eq!(stream.next_event().await.expect("event"), None);
    assert_eq!(fake.hits(), 0);
}

#[tokio::test]
async fn stt_refuses_audio_after_finish_and_past_the_cap() {
    let fake = Fake::new(|_| Reply::Ok);
    let base = fake.serve().await;
    let stt = OpenAiStt::new(config(&base), client()).expect("stt");

    let mut stream = stt.start(stream_config(8_000)).await.expect("start");
    let cap = 8_000 * switchboard_providers::openai_speech::MAX_STT_SECONDS as usize;
    stream.push_audio(&vec![0; cap]).await.expect("exactly the cap fits");
    let err = stream.push_audio(&[0]).await.expect_err("one sample past the cap");
    assert!(matches!(err.kind, ProviderErrorKind::Config(_)), "{err}");

    let mut stream = stt.start(stream_config(8_000)).await.expect("start");
    stream.push_audio(&[1, 2, 3]).await.expect("push");
    stream.finish().await.expect("finish");
    let err = stream.push_audio(&[4]).await.expect_err("closed");
    assert_eq!(err.kind, ProviderErrorKind::Closed);
}

#[tokio::test]
async fn stt_client_error_is_typed_and_not_retried() {
    let fake = Fake::new(|_| Reply::Error(400, "Invalid file format."));
    let base = fake.serve().await;
    let mut c = config(&base);
    c.provider = "local";
    let stt = OpenAiStt::new(c, client()).expect("stt");

    let err = transcribe(&stt, 8_000, &waveform(800)).await.expect_err("400");

    assert_eq!(err, ProviderError::new("local", ProviderErrorKind::Status(400)));
    assert_eq!(fake.hits(), 1, "a 400 is not retried");
}

#[tokio::test]
async fn stt_retries_a_server_error_then_succeeds() {
    let fake = Fake::new(|n| if n == 0 { Reply::Error(500, "boom") } else { Reply::Ok });
    let base = fake.serve().await;
    let stt = OpenAiStt::new(config(&base), client()).expect("stt");
    let samples = waveform(4_000);

    let events = transcribe(&stt, 8_000, &samples)
        .await
        .expect("second attempt succeeds");

    assert_eq!(fake.hits(), 2);
    assert!(matches!(&events[..], [SttEvent::Final { text, .. }] if text == "heard 4000 samples at 8000 Hz"));
    let uploads = fake.uploads.lock().expect("lock");
    assert_eq!(uploads[1].samples, samples, "the retry re-sends the whole WAV");
}

#[tokio::test]
async fn stt_gives_up_after_bounded_retries() {
    let fake = Fake::new(|_| Reply::Error(503, "overloaded"));
    let base = fake.serve().await;
    let stt = OpenAiStt::new(config(&base), client()).expect("stt");

    let err = transcribe(&stt, 8_000, &waveform(800)).await.expect_err("always 503");

    assert_eq!(err, ProviderError::new("openai", ProviderErrorKind::Status(503)));
    assert_eq!(fake.hits(), 3, "one attempt plus max_retries = 2");
}

#[tokio::test]
async fn stt_rate_limit_is_typed() {
    let fake = Fake::new(|_| Reply::Error(429, "slow down"));
    let base = fake.serve().await;
    let mut c = config(&base);
    c.max_retries = 1;
    let stt = OpenAiStt::new(c, client()).expect("stt");

    let err = transcribe(&stt, 8_000, &waveform(800)).await.expect_err("429");

    assert_eq!(err.kind, ProviderErrorKind::RateLimited);
    assert_eq!(fake.hits(), 2);
}

#[tokio::test]
async fn stt_times_out_on_a_silent_server() {
    let fake = Fake::new(|_| Reply::Hang);
    let base = fake.serve().await;
    let stt = OpenAiStt::new(timeout_config(&base), client()).expect("stt");

    let err = transcribe(&stt, 8_000, &waveform(800)).await.expect_err("no answer");

    assert_eq!(err.kind, ProviderErrorKind::Timeout);
    assert_eq!(seen_hits(&fake).await, 1, "a timeout is not retried");
}

#[tokio::test]
async fn stt_bad_json_is_malformed() {
    let fake = Fake::new(|_| Reply::Raw("{\"txt\": 1", "application/json"));
    let base = fake.serve().await;
    let stt = OpenAiStt::new(config(&base), client()).expect("stt");

    let err = transcribe(&stt, 8_000, &waveform(800)).await.expect_err("bad json");

    assert!(matches!(err.kind, ProviderErrorKind::Malformed(_)), "{err}");
}

#[tokio::test]
async fn stt_connection_refused_is_a_transport_error() {
    // Bound but never listening: refused, and no other test can take the port.
    let closed = tokio::net::TcpSocket::new_v4().expect("socket");
    closed.bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    let port = closed.local_addr().expect("addr").port();
    let stt = OpenAiStt::new(config(&format!("http://127.0.0.1:{port}/v1")), client()).expect("stt");

    let err = transcribe(&stt, 8_000, &waveform(800)).await.expect_err("refused");

    assert!(matches!(err.kind, ProviderErrorKind::Transport(_)), "{err}");
    assert!(err.is_retryable());
}

// ------------------------------------------------------------ TTS

fn tts_fake(script: impl Fn(usize) -> Reply + Send + Sync + 'static, samples: &[i16], splits: Vec<usize>) -> Fake {
    let mut fake = Fake::new(script);
    fake.pcm = Arc::new(pcm_bytes(samples));
    fake.splits = Arc::new(splits);
    fake
}

#[tokio::test]
async fn tts_streams_pcm_across_odd_splits() {
    let samples = waveform(6_000);
    // Odd splits put a sample's two bytes in different network chunks.
    let fake = tts_fake(|_| Reply::Ok, &samples, vec![1, 3, 1_001, 1, 4_000]);
    let base = fake.serve().await;
    let tts = OpenAiTts::new(config(&base), client()).expect("tts");

    let (chunks, err) = synthesize(&tts, "Hello there", "nova").await;

    assert_eq!(err, None);
    let got: Vec<i16> = chunks.iter().flat_map(|c| c.samples.iter().copied()).collect();
    assert_eq!(got, samples, "every sample, in order, none misaligned");
    assert!(chunks.len() > 1, "streamed in pieces: {}", chunks.len());
    assert!(
        chunks.iter().all(|c| c.sample_rate == 24_000),
        "configured rate without a header"
    );
    assert!(
        chunks.iter().all(|c| !c.samples.is_empty() && c.samples.len() <= 2_400),
        "<= 100 ms each"
    );
    let requests = fake.speech_requests.lock().expect("lock");
    let (json, authorization) = &requests[0];
    assert_eq!(json["model"], "tts-test");
    assert_eq!(json["input"], "Hello there");
    assert_eq!(json["voice"], "nova");
    assert_eq!(json["response_format"], "pcm");
    assert_eq!(authorization.as_deref(), Some("Bearer sk-test-key"));
}

#[tokio::test]
async fn tts_yields_audio_before_the_body_ends() {
    let samples = waveform(2_000);
    let mut fake = tts_fake(|_| Reply::Ok, &samples, vec![1_000]);
    let gate = Arc::new(Notify::new());
    fake.gate = Some(gate.clone());
    let base = fake.serve().await;
    let tts = OpenAiTts::new(config(&base), client()).expect("tts");

    let mut stream = tts.synthesize("Hi".to_owned(), "alloy".to_owned());
    // The server holds the rest of the body until we have the first chunk.
    let first = stream.next().await.expect("a chunk").expect("ok");
    assert_eq!(first.samples, samples[..500]);
    gate.notify_one();
    let mut rest = Vec::new();
    while let Some(chunk) = stream.next().await {
        rest.extend(chunk.expect("ok").samples);
    }
    assert_eq!(rest, samples[500..]);
}

#[tokio::test]
async fn tts_uses_the_announced_sample_rate_and_default_voice() {
    let samples = waveform(300);
    let mut fake = tts_fake(|_| Reply::Ok, &samples, vec![]);
    fake.sample_rate_header = Some(22_050);
    let base = fake.serve().await;
    let mut c = config(&base);
    c.default_voice = "en-us".to_owned();
    let tts = OpenAiTts::new(c, client()).expect("tts");

    let (chunks, err) = synthesize(&tts, "Hi", "default").await;

    assert_eq!(err, None);
    assert!(!chunks.is_empty() && chunks.iter().all(|c| c.sample_rate == 22_050));
    assert_eq!(fake.speech_requests.lock().expect("lock")[0].0["voice"], "en-us");
}

#[tokio::test]
async fn tts_empty_text_makes_no_request() {
    let fake = tts_fake(|_| Reply::Ok, &waveform(10), vec![]);
    let base = fake.serve().await;
    let tts = OpenAiTts::new(config(&base), client()).expect("tts");
    let (chunks, err) = synthesize(&tts, "  ", "alloy").await;
    assert!(chunks.is_empty() && err.is_none());
    assert_eq!(fake.hits(), 0);
}

#[tokio::test]
async fn tts_client_error_is_typed_and_not_retried() {
    let fake = tts_fake(|_| Reply::Error(400, "voice not found"), &[], vec![]);
    let base = fake.serve().await;
    let tts = OpenAiTts::new(config(&base), client()).expect("tts");

    let (chunks, err) = synthesize(&tts, "Hi", "nobody").await;

    assert!(chunks.is_empty());
    assert_eq!(err, Some(ProviderError::new("openai", ProviderErrorKind::Status(400))));
    assert_eq!(fake.hits(), 1);
}

#[tokio::test]
async fn tts_retries_a_server_error_then_streams() {
    let samples = waveform(1_000);
    let fake = tts_fake(
        |n| {
            if n == 0 {
                Reply::Error(502, "bad gateway")
            } else {
                Reply::Ok
            }
        },
        &samples,
        vec![7],
    );
    let base = fake.serve().await;
    let tts = OpenAiTts::new(config(&base), client()).expect("tts");

    let (chunks, err) = synthesize(&tts, "Hi", "alloy").await;

    assert_eq!(err, None);
    assert_eq!(fake.hits(), 2);
    assert_eq!(
        chunks.iter().flat_map(|c| c.samples.clone()).collect::<Vec<_>>(),
        samples
    );
}

#[tokio::test]
async fn tts_gives_up_after_bounded_retries() {
    let fake = tts_fake(|_| Reply::Error(500, "down"), &[], vec![]);
    let base = fake.serve().await;
    let tts = OpenAiTts::new(config(&base), client()).expect("tts");

    let (_, err) = synthesize(&tts, "Hi", "alloy").await;

    assert_eq!(err, Some(ProviderError::new("openai", ProviderErrorKind::Status(500))));
    assert_eq!(fake.hits(), 3);
}

#[tokio::test]
async fn tts_times_out_waiting_for_the_response() {
    let fake = tts_fake(|_| Reply::Hang, &[], vec![]);
    let base = fake.serve().await;
    let tts = OpenAiTts::new(timeout_config(&base), client()).expect("tts");

    let (chunks, err) = synthesize(&tts, "Hi", "alloy").await;

    assert!(chunks.is_empty());
    assert_eq!(err.map(|e| e.kind), Some(ProviderErrorKind::Timeout));
    assert_eq!(seen_hits(&fake).await, 1);
}

#[tokio::test]
async fn tts_times_out_when_the_body_stalls() {
    let samples = waveform(1_000);
    let mut fake = tts_fake(|_| Reply::Ok, &samples, vec![400]);
    fake.stall_after_first = true;
    let base = fake.serve().await;
    let tts = OpenAiTts::new(timeout_config(&base), client()).expect("tts");

    let (chunks, err) = synthesize(&tts, "Hi", "alloy").await;

    assert_eq!(
        chunks.iter().flat_map(|c| c.samples.clone()).collect::<Vec<_>>(),
        samples[..200]
    );
    assert_eq!(err.map(|e| e.kind), Some(ProviderErrorKind::Timeout));
}

#[tokio::test]
async fn tts_json_instead_of_audio_is_malformed() {
    let fake = tts_fake(
        |_| Reply::Raw(r#"{"status":"queued"}"#, "application/json"),
        &[],
        vec![],
    );
    let base = fake.serve().await;
    let tts = OpenAiTts::new(config(&base), client()).expect("tts");

    let (chunks, err) = synthesize(&tts, "Hi", "alloy").await;

    assert!(chunks.is_empty());
    assert!(matches!(err.map(|e| e.kind), Some(ProviderErrorKind::Malformed(_))));
}

// ------------------------------------------------------------ factory

struct Keys {
    openai: Option<&'static str>,
    compatible: Option<&'static str>,
}

impl KeySource for Keys {
    fn openai_key(&self, _tenant: TenantId) -> BoxFuture<'_, Result<Option<SecretString>, ProviderError>> {
        let key = self.openai.map(SecretString::from);
        Box::pin(async move { Ok(key) })
    }

    fn compatible_key<'a>(
        &'a self,
        _tenant: TenantId,
        _base_url: &'a str,
    ) -> BoxFuture<'a, Result<Option<SecretString>, ProviderError>> {
        let key = self.compatible.map(SecretString::from);
        Box::pin(async move { Ok(key) })
    }
}

fn choice(provider: &str, base_url: Option<&str>) -> ProviderChoice {
    ProviderChoice {
        provider: provider.to_owned(),
        model: None,
        base_url: base_url.map(str::to_owned),
    }
}

fn agent(stt: ProviderChoice, tts: ProviderChoice, llm: &str, settings: serde_json::Value) -> Agent {
    Agent {
        id: AgentId::new(),
        tenant_id: TenantId::new(),
        name: "Reception".to_owned(),
        system_prompt: String::new(),
        greeting: "Hello".to_owned(),
        language: "en-US".to_owned(),
        voice: "default".to_owned(),
        stt,
        tts,
        llm: ProviderChoice::new(llm),
        tools: Vec::new(),
        endpointing: Endpointing::default(),
        settings,
        enabled: true,
        created_at: switchboard_domain::now(),
        updated_at: switchboard_domain::now(),
    }
}

fn factory(local_base: &str, keys: impl KeySource) -> StandardProviders {
    let local_server = local_base.trim_end_matches("/v1");
    let mut local = OpenAiSpeechConfig::local(local_server, 22_050);
    local.timeout = BUDGET;
    StandardProviders::new(StandardConfig {
        local,
        keys: Arc::new(keys),
        twilio_api_base: None,
    })
    .expect("factory")
}

fn config_error(result: Result<switchboard_providers::CallProviders, ProviderError>) -> ProviderError {
    let err = result.expect_err("should be refused");
    assert!(matches!(err.kind, ProviderErrorKind::Config(_)), "{err}");
    err
}

#[tokio::test]
async fn factory_local_speech_reaches_the_local_server_and_is_shared() {
    let samples = waveform(500);
    let fake = tts_fake(|_| Reply::Ok, &samples, vec![]);
    let base = fake.serve().await;
    let providers = factory(&base, NoKeys);
    let a = agent(choice("local", None), choice("local", None), "rules", json!({}));

    let one = providers.for_call(a.tenant_id, &a).await.expect("local providers");
    let two = providers.for_call(a.tenant_id, &a).await.expect("local providers");

    assert!(
        Arc::ptr_eq(&one.stt, &two.stt) && Arc::ptr_eq(&one.tts, &two.tts),
        "adapters are cached"
    );
    assert!(one.telephony.is_none());
    let mut stream = one.tts.synthesize("Hi".to_owned(), a.voice.clone());
    let chunk = stream.next().await.expect("chunk").expect("ok");
    assert_eq!(chunk.sample_rate, 22_050);
    let (json, authorization) = fake.speech_requests.lock().expect("lock")[0].clone();
    assert_eq!(json["model"], "espeak-ng");
    assert_eq!(
        json["voice"], "en-us",
        "the agent's `default` voice maps to espeak's en-us"
    );
    assert_eq!(authorization, None);
}

#[tokio::test]
async fn factory_openai_needs_the_tenant_key_and_sends_it() {
    let fake = Fake::new(|_| Reply::Ok);
    let base = fake.serve().await;
    let a = agent(choice("openai", Some(&base)), choice("local", None), "rules", json!({}));

    let err = config_error(factory(&base, NoKeys).for_call(a.tenant_id, &a).await);
    assert_eq!(err.provider, "openai");

    let keyed = factory(
        &base,
        Keys {
            openai: Some("sk-tenant"),
            compatible: None,
        },
    );
    let providers = keyed.for_call(a.tenant_id, &a).await.expect("keyed");
    let mut stream = providers.stt.start(stream_config(8_000)).await.expect("start");
    stream.push_audio(&waveform(800)).await.expect("push");
    stream.finish().await.expect("finish");
    let up = fake.uploads.lock().expect("lock")[0].clone();
    assert_eq!(up.authorization.as_deref(), Some("Bearer sk-tenant"));
    assert_eq!(up.model, "whisper-1");
}

#[tokio::test]
async fn factory_openai_compatible_needs_a_base_url_and_never_gets_the_openai_key() {
    let samples = waveform(100);
    let fake = tts_fake(|_| Reply::Ok, &samples, vec![]);
    let base = fake.serve().await;
    let keys = || Keys {
        openai: Some("sk-openai"),
        compatible: None,
    };

    let no_base = agent(
        choice("local", None),
        choice("openai_compatible", None),
        "rules",
        json!({}),
    );
    config_error(factory(&base, keys()).for_call(no_base.tenant_id, &no_base).await);

    let a = agent(
        choice("local", None),
        choice("openai_compatible", Some(&base)),
        "rules",
        json!({}),
    );
    let providers = factory(&base, keys())
        .for_call(a.tenant_id, &a)
        .await
        .expect("compatible");
    let (chunks, err) = synthesize_dyn(providers.tts.as_ref()).await;
    assert!(err.is_none() && !chunks.is_empty());
    let (json, authorization) = fake.speech_requests.lock().expect("lock")[0].clone();
    assert_eq!(
        authorization, None,
        "the tenant's OpenAI key must not go to a third-party server"
    );
    assert_eq!(json["model"], "tts-1");

    let with_key = factory(
        &base,
        Keys {
            openai: None,
            compatible: Some("sk-compat"),
        },
    );
    let providers = with_key.for_call(a.tenant_id, &a).await.expect("compatible");
    synthesize_dyn(providers.tts.as_ref()).await;
    let (_, authorization) = fake.speech_requests.lock().expect("lock")[1].clone();
    assert_eq!(authorization.as_deref(), Some("Bearer sk-compat"));
}

async fn synthesize_dyn(tts: &dyn TextToSpeech) -> (Vec<PcmChunk>, Option<ProviderError>) {
    let mut stream = tts.synthesize("Hi".to_owned(), "alloy".to_owned());
    let mut chunks = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(c) => chunks.push(c),
            Err(e) => return (chunks, Some(e)),
        }
    }
    (chunks, None)
}

#[tokio::test]
async fn factory_rejects_unknown_providers_and_bad_rules() {
    let providers = factory("http://127.0.0.1:9/v1", NoKeys);
    let local = || choice("local", None);

    let a = agent(choice("acme", None), local(), "rules", json!({}));
    let err = config_error(providers.for_call(a.tenant_id, &a).await);
    assert_eq!(err.provider, "stt");
    assert!(err.to_string().contains("acme"), "{err}");

    // Google speech needs the tenant's Google key; NoKeys has none.
    let a = agent(choice("google", None), local(), "rules", json!({}));
    let err = config_error(providers.for_call(a.tenant_id, &a).await);
    assert_eq!(err.provider, "google_stt");
    assert!(err.to_string().contains("Google API key"), "{err}");

    let a = agent(local(), choice("acme", None), "rules", json!({}));
    assert_eq!(config_error(providers.for_call(a.tenant_id, &a).await).provider, "tts");

    let a = agent(local(), local(), "gpt-9", json!({}));
    assert_eq!(config_error(providers.for_call(a.tenant_id, &a).await).provider, "llm");

    let a = agent(local(), local(), "rules", json!({"rules": "not an array"}));
    assert_eq!(
        config_error(providers.for_call(a.tenant_id, &a).await).provider,
        "rules"
    );

    for llm in ["rules", "local"] {
        let a = agent(local(), local(), llm, json!({"fallback": "Sorry?"}));
        providers.for_call(a.tenant_id, &a).await.expect("rule agent");
    }
}
