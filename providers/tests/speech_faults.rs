//! The fault matrix for every HTTP speech adapter (OpenAI STT and TTS,
//! Google STT and TTS), each driven through its production client against a
//! local fake: a silent server, 5xx then success, 5xx until retries run out,
//! 429 (with and without `Retry-After`), malformed JSON, and a body that
//! stalls half-way. Plus the TTS rule: retry before any audio was yielded,
//! never after.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::StreamExt;
use serde_json::json;
use switchboard_fakes::google_speech::{FakeGoogleSpeech, GoogleReply};
use switchboard_providers::google_speech::{GoogleAudioEncoding, GoogleSpeechConfig, GoogleStt, GoogleTts};
use switchboard_providers::retry::RetryPolicy;
use switchboard_providers::{
    OpenAiSpeechConfig, OpenAiStt, OpenAiTts, ProviderError, ProviderErrorKind, SecretString, SpeechToText,
    StreamConfig, SttEvent, TextToSpeech,
};

/// The exchange budget (retries included) where the outcome is not a
/// timeout: generous, so a stalled test machine cannot turn a retried
/// success or a typed error into a `Timeout`, nor cut off an attempt.
const BUDGET: Duration = Duration::from_secs(10);
/// The budget where the test's point is a timeout: the fake then stays
/// silent forever, so the margin on its side is unbounded, and short enough
/// to keep those tests quick.
const TIMEOUT_BUDGET: Duration = Duration::from_secs(1);
/// How long to wait for a request the fake has not seen yet.
const SEEN_WITHIN: Duration = Duration::from_secs(10);

/// What the fake does with one request.
#[derive(Debug, Clone)]
enum Fault {
    /// A normal success.
    Ok,
    Hang,
    Status(u16, Option<u64>),
    /// 200 with a JSON body the adapter cannot use.
    Malformed,
    /// 200 head and part of the body, then silence.
    StallMidBody,
    /// OpenAI TTS only: 200 head, then the connection is cut before any audio.
    CutBeforeAudio,
    /// OpenAI TTS only: the first audio, then the connection is cut.
    CutAfterAudio,
}

/// 200 ms of audio at 8 kHz.
fn tts_samples() -> Vec<i16> {
    (0..1_600).map(|i| ((i * 37) % 2_000 - 1_000) as i16).collect()
}

// ------------------------------------------------------- OpenAI fake

#[derive(Clone, Default)]
struct OpenAiFake {
    faults: Arc<Mutex<VecDeque<Fault>>>,
    hits: Arc<AtomicUsize>,
}

async fn openai_stt(State(fake): State<OpenAiFake>, _body: Bytes) -> Response {
    fake.hits.fetch_add(1, Ordering::SeqCst);
    let fault = fake.faults.lock().expect("lock").pop_front().unwrap_or(Fault::Ok);
    match fault {
        Fault::Ok => axum::Json(json!({"text": " ok "})).into_response(),
        Fault::StallMidBody => stall_after(Bytes::from_static(br#"{"text": "o"#), "application/json"),
        other => common_fault(other).await,
    }
}

async fn openai_tts(State(fake): State<OpenAiFake>, _body: Bytes) -> Response {
    fake.hits.fetch_add(1, Ordering::SeqCst);
    let fault = fake.faults.lock().expect("lock").pop_front().unwrap_or(Fault::Ok);
    let pcm: Vec<u8> = tts_samples().iter().flat_map(|s| s.to_le_bytes()).collect();
    let first = Bytes::copy_from_slice(&pcm[..800]);
    let rest = Bytes::copy_from_slice(&pcm[800..]);
    let cut = || Err::<Bytes, _>(std::io::Error::other("cut"));
    let body = match fault {
        Fault::Ok => Body::from(pcm),
        Fault::StallMidBody => return stall_after(first, "application/octet-stream"),
        Fault::CutBeforeAudio => Body::from_stream(futures::stream::iter([cut()])),
        Fault::CutAfterAudio => Body::from_stream(
            futures::stream::iter([Ok(first)])
                .chain(futures::stream::once(async move {
                    // Let the first piece reach the client as its own chunk.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    cut()
                }))
                .chain(futures::stream::iter([Ok(rest)])),
        ),
        other => return common_fault(other).await,
    };
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header("x-sample-rate", "8000")
        .body(body)
        .expect("response")
}

/// 200 with `first`, then a body that never ends.
fn stall_after(first: Bytes, content_type: &str) -> Response {
    let body = futures::stream::iter([Ok::<_, std::io::Error>(first)]).chain(futures::stream::pending());
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from_stream(body))
        .expect("response")
}

async fn common_fault(fault: Fault) -> Response {
    match fault {
        Fault::Hang => std::future::pending().await,
        Fault::Status(code, retry_after) => {
            let body = json!({"error": {"message": "scripted", "type": "server_error", "code": null}});
            let mut resp = (StatusCode::from_u16(code).expect("status"), axum::Json(body)).into_response();
            if let Some(seconds) = retry_after {
                resp.headers_mut().insert(header::RETRY_AFTER, seconds.into());
            }
            resp
        }
        Fault::Malformed => ([(header::CONTENT_TYPE, "application/json")], r#"{"text": 42"#).into_response(),
        other => panic!("{other:?} is endpoint-specific"),
    }
}

impl OpenAiFake {
    async fn start(faults: &[Fault]) -> (Self, String) {
        let fake = Self::default();
        fake.faults.lock().expect("lock").extend(faults.iter().cloned());
        let app = Router::new()
            .route("/v1/audio/transcriptions", post(openai_stt))
            .route("/v1/audio/speech", post(openai_tts))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (fake, format!("http://{addr}/v1"))
    }
}

// ------------------------------------------------------- adapters

#[derive(Debug, Clone, Copy, PartialEq)]
enum Adapter {
    OpenAiStt,
    OpenAiTts,
    GoogleStt,
    GoogleTts,
}

const ALL: [Adapter; 4] = [
    Adapter::OpenAiStt,
    Adapter::OpenAiTts,
    Adapter::GoogleStt,
    Adapter::GoogleTts,
];

/// What one run produced: the outcome, audio samples yielded before it, and
/// how many requests reached the server.
#[derive(Debug)]
struct Run {
    result: Result<(), ProviderError>,
    audio_before_end: usize,
    requests: usize,
}

fn openai_config(base: &str, max_attempts: u32, budget: Duration) -> OpenAiSpeechConfig {
    let mut c = OpenAiSpeechConfig::openai_compatible(base, Some(SecretString::from("sk-test")));
    c.tts_sample_rate = 8_000;
    c.timeout = budget;
    c.max_retries = max_attempts - 1;
    c.retry_backoff = Duration::from_millis(1);
    c.max_backoff = Duration::from_millis(50);
    c
}

fn google_config(fake: &FakeGoogleSpeech, max_attempts: u32, budget: Duration) -> GoogleSpeechConfig {
    let mut c = GoogleSpeechConfig::text_to_speech(SecretString::from("AIza-test"));
    c.base_url = fake.base_url();
    c.encoding = GoogleAudioEncoding::Linear16;
    c.sample_rate = 8_000;
    c.timeout = budget;
    c.retry = RetryPolicy {
        max_attempts,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(50),
    };
    c
}

fn google_reply(adapter: Adapter, fault: &Fault) -> GoogleReply {
    match fault {
        Fault::Ok if adapter == Adapter::GoogleStt => GoogleReply::transcript("ok"),
        Fault::Ok => GoogleReply::audio(tts_samples()),
        Fault::Hang => GoogleReply::Hang,
        Fault::Status(code, retry_after) => GoogleReply::Status {
            code: *code,
            retry_after: *retry_after,
        },
        Fault::Malformed => GoogleReply::Malformed(r#"{"results": 7, "audioContent": 7}"#.to_owned()),
        Fault::StallMidBody => GoogleReply::StallMidBody,
        other => panic!("{other:?} is OpenAI-only"),
    }
}

async fn stt_once(stt: &dyn SpeechToText) -> Result<(), ProviderError> {
    let mut stream = stt
        .start(StreamConfig {
            sample_rate: 8_000,
            language: "en-US".to_owned(),
            interim_results: false,
        })
        .await?;
    stream.push_audio(&[100; 800]).await?;
    stream.finish().await?;
    match stream.next_event().await? {
        Some(SttEvent::Final { text, .. }) if text == "ok" => Ok(()),
        other => panic!("unexpected event {other:?}"),
    }
}

/// Ok only when the whole utterance came out; counts the samples yielded.
async fn tts_once(tts: &dyn TextToSpeech) -> (Result<(), ProviderError>, usize) {
    let mut stream = tts.synthesize("Hello there.".to_owned(), String::new());
    let mut samples = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(chunk) => samples.extend(chunk.samples),
            Err(e) => return (Err(e), samples.len()),
        }
    }
    assert_eq!(
        samples,
        tts_samples(),
        "a successful stream carries the whole utterance"
    );
    (Ok(()), samples.len())
}

impl Adapter {
    fn provider(self) -> &'static str {
        match self {
            Adapter::OpenAiStt | Adapter::OpenAiTts => "openai_compatible",
            Adapter::GoogleStt => "google_stt",
            Adapter::GoogleTts => "google_tts",
        }
    }

    /// Scripts the fake with `faults` (one per request), runs one STT segment
    /// or one synthesis through the adapter within [`BUDGET`], and reports.
    async fn run(self, faults: &[Fault], max_attempts: u32) -> Run {
        self.run_within(faults, max_attempts, BUDGET).await
    }

    /// [`Adapter::run`] for a fault that must end in a timeout: within
    /// [`TIMEOUT_BUDGET`].
    async fn run_to_timeout(self, faults: &[Fault], max_attempts: u32) -> Run {
        self.run_within(faults, max_attempts, TIMEOUT_BUDGET).await
    }

    async fn run_within(self, faults: &[Fault], max_attempts: u32, budget: Duration) -> Run {
        let client = reqwest::Client::new();
        match self {
            Adapter::OpenAiStt | Adapter::OpenAiTts => {
                let (fake, base) = OpenAiFake::start(faults).await;
                let config = openai_config(&base, max_attempts, budget);
                let (result, audio) = if self == Adapter::OpenAiStt {
                    (stt_once(&OpenAiStt::new(config, client).expect("stt")).await, 0)
                } else {
                    tts_once(&OpenAiTts::new(config, client).expect("tts")).await
                };
                Run {
                    result,
                    audio_before_end: audio,
                    requests: seen_requests(|| fake.hits.load(Ordering::SeqCst)).await,
                }
            }
            Adapter::GoogleStt | Adapter::GoogleTts => {
                let fake = FakeGoogleSpeech::start().await;
                let config = google_config(&fake, max_attempts, budget);
                let (result, audio, requests) = if self == Adapter::GoogleStt {
                    for fault in faults {
                        fake.push_recognize(google_reply(self, fault));
                    }
                    let result = stt_once(&GoogleStt::new(config, client).expect("stt")).await;
                    (result, 0, seen_requests(|| fake.recognize_requests().len()).await)
                } else {
                    for fault in faults {
                        fake.push_synthesize(google_reply(self, fault));
                    }
                    let (result, audio) = tts_once(&GoogleTts::new(config, client).expect("tts")).await;
                    (result, audio, seen_requests(|| fake.synthesize_requests().len()).await)
                };
                Run {
                    result,
                    audio_before_end: audio,
                    requests,
                }
            }
        }
    }

    fn error(self, kind: ProviderErrorKind) -> Result<(), ProviderError> {
        Err(ProviderError::new(self.provider(), kind))
    }
}

/// The requests the fake has seen, once it has seen the first one (every run
/// sends at least one). A client that timed out may have done so before the
/// fake's handler ran on a stalled machine; retries, if any, were all sent
/// before the run returned.
async fn seen_requests(count: impl Fn() -> usize) -> usize {
    let deadline = tokio::time::Instant::now() + SEEN_WITHIN;
    while count() == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    count()
}

// ------------------------------------------------------- the matrix

#[tokio::test]
async fn a_silent_server_is_a_timeout_and_not_retried() {
    for adapter in ALL {
        let run = adapter.run_to_timeout(&[Fault::Hang, Fault::Ok], 3).await;
        assert_eq!(run.result, adapter.error(ProviderErrorKind::Timeout), "{adapter:?}");
        assert_eq!(run.requests, 1, "{adapter:?}: the exchange's budget is spent");
    }
}

#[tokio::test]
async fn a_server_error_is_retried_then_succeeds() {
    for adapter in ALL {
        let run = adapter
            .run(&[Fault::Status(503, None), Fault::Status(500, None), Fault::Ok], 3)
            .await;
        assert_eq!(run.result, Ok(()), "{adapter:?}");
        assert_eq!(run.requests, 3, "{adapter:?}");
    }
}

#[tokio::test]
async fn server_errors_past_the_attempt_limit_are_a_status() {
    for adapter in ALL {
        let faults = [
            Fault::Status(502, None),
            Fault::Status(503, None),
            Fault::Status(500, None),
            Fault::Ok,
        ];
        let run = adapter.run(&faults, 3).await;
        assert_eq!(run.result, adapter.error(ProviderErrorKind::Status(500)), "{adapter:?}");
        assert_eq!(run.requests, 3, "{adapter:?}: bounded by max_attempts");
    }
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    for adapter in ALL {
        let run = adapter.run(&[Fault::Status(400, None), Fault::Ok], 3).await;
        assert_eq!(run.result, adapter.error(ProviderErrorKind::Status(400)), "{adapter:?}");
        assert_eq!(run.requests, 1, "{adapter:?}");
    }
}

#[tokio::test]
async fn rate_limits_are_typed_retried_and_honour_retry_after() {
    for adapter in ALL {
        // Throttled on every attempt: RateLimited once attempts run out.
        let run = adapter
            .run(&[Fault::Status(429, None), Fault::Status(429, None)], 2)
            .await;
        assert_eq!(run.result, adapter.error(ProviderErrorKind::RateLimited), "{adapter:?}");
        assert_eq!(run.requests, 2, "{adapter:?}");

        // A short Retry-After is waited out and the retry succeeds.
        let run = adapter.run(&[Fault::Status(429, Some(0)), Fault::Ok], 2).await;
        assert_eq!(run.result, Ok(()), "{adapter:?}");
        assert_eq!(run.requests, 2, "{adapter:?}");

        // A Retry-After past max_backoff is not waited out on a live call.
        let run = adapter.run(&[Fault::Status(429, Some(3_600)), Fault::Ok], 3).await;
        assert_eq!(run.result, adapter.error(ProviderErrorKind::RateLimited), "{adapter:?}");
        assert_eq!(run.requests, 1, "{adapter:?}");
    }
}

#[tokio::test]
async fn malformed_json_is_malformed_and_not_retried() {
    for adapter in ALL {
        let run = adapter.run(&[Fault::Malformed, Fault::Ok], 3).await;
        let err = run.result.expect_err("malformed");
        assert_eq!(err.provider, adapter.provider());
        assert!(
            matches!(err.kind, ProviderErrorKind::Malformed(_)),
            "{adapter:?}: {err}"
        );
        assert_eq!(run.requests, 1, "{adapter:?}");
    }
}

#[tokio::test]
async fn a_body_that_stalls_half_way_is_a_timeout() {
    for adapter in ALL {
        let run = adapter.run_to_timeout(&[Fault::StallMidBody, Fault::Ok], 3).await;
        assert_eq!(run.result, adapter.error(ProviderErrorKind::Timeout), "{adapter:?}");
        assert_eq!(run.requests, 1, "{adapter:?}");
    }
    // OpenAI TTS streams: the audio before the stall was already played out.
    let run = Adapter::OpenAiTts.run_to_timeout(&[Fault::StallMidBody], 3).await;
    assert_eq!(run.audio_before_end, 400);
    // Google TTS answers in one piece: nothing half-decoded comes out.
    let run = Adapter::GoogleTts.run_to_timeout(&[Fault::StallMidBody], 3).await;
    assert_eq!(run.audio_before_end, 0);
}

#[tokio::test]
async fn tts_retries_a_cut_before_audio_but_never_after() {
    let run = Adapter::OpenAiTts.run(&[Fault::CutBeforeAudio, Fault::Ok], 3).await;
    assert_eq!(run.result, Ok(()), "nothing was yielded yet, so the retry is safe");
    assert_eq!(run.requests, 2);

    let run = Adapter::OpenAiTts.run(&[Fault::CutAfterAudio, Fault::Ok], 3).await;
    let err = run.result.expect_err("cut mid-utterance");
    assert!(matches!(err.kind, ProviderErrorKind::Transport(_)), "{err}");
    assert_eq!(run.audio_before_end, 400, "the first 50 ms were yielded before the cut");
    assert_eq!(run.requests, 1, "a retry would replay audio the caller already heard");
}
