//! The OpenAI-compatible speech adapter: [`OpenAiStt`] over
//! `POST {base}/audio/transcriptions` and [`OpenAiTts`] over
//! `POST {base}/audio/speech`.
//!
//! One adapter serves OpenAI itself, any OpenAI-compatible server, and
//! Switchboard's bundled offline speech server (`speech/server.py`, Whisper
//! tiny.en + espeak-ng); only the [`OpenAiSpeechConfig`] differs.
//!
//! Guarantees:
//! - **STT is segment-based.** The REST endpoint has no partial results: an
//!   [`SttStream`] buffers the pushed PCM (capped at [`MAX_STT_SECONDS`]), and
//!   [`SttStream::finish`] sends it as one 16-bit mono WAV. `next_event` then
//!   yields one [`SttEvent::Final`] (none when nothing was recognised) and
//!   `None`. Feed it one caller turn at a time.
//! - **TTS streams.** `synthesize` asks for headerless `pcm` and yields
//!   [`PcmChunk`]s (at most 100 ms each) as the body arrives, so playback can
//!   start before synthesis ends. An odd byte split across network chunks is
//!   carried over, never dropped or misaligned.
//! - **Time is bounded.** The shared client has a connect timeout; STT bounds
//!   each whole exchange (retries and waits included) by `timeout`; TTS bounds
//!   the wait for the first audio (retries included) and every later gap
//!   between body chunks by `timeout`, so a stalled stream ends in `Timeout`.
//! - **Retries are bounded and safe** ([`crate::retry`]). Connection failures,
//!   429 and 5xx are retried up to `max_retries` times with jittered doubling
//!   backoff (a server's `Retry-After` is honoured up to `max_backoff`). STT
//!   requests are idempotent and retried whole; TTS is retried only before any
//!   audio was handed to the caller, never mid-utterance. 4xx is not retried,
//!   and a timeout uses up the exchange's whole budget, so it is final.
//! - **Bodies are capped**: a transcription over 1 MiB is `Malformed`.
//! - **The key never leaks.** It is a [`SecretString`], sent only as
//!   `Authorization: Bearer`, and never logged or printed by `Debug`.
//! - Errors are [`ProviderError`]s naming the configured provider
//!   (`openai`, `local`, ...) and the HTTP status; the server's OpenAI-style
//!   error message is logged at `warn` with the status.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{self, BoxStream, StreamExt};
use reqwest::{Url, header};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use crate::capability::{PcmChunk, SpeechToText, StreamConfig, SttEvent, SttStream, TextToSpeech};
use crate::error::{ProviderError, ProviderErrorKind};
use crate::retry::{self, Failure, RetryPolicy};
use crate::segment::Segment;

/// Longest audio one STT segment may buffer before `push_audio` refuses more.
pub const MAX_STT_SECONDS: u32 = 60;
/// Largest error body read from a failed response, to log its message.
const MAX_ERROR_BODY: usize = 16 * 1024;
/// Largest successful transcription body accepted.
const MAX_TRANSCRIPT_BODY: usize = 1024 * 1024;
/// Default upper bound of one retry's wait, whatever `max_retries` is.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Where and how to reach an OpenAI-compatible speech API.
#[derive(Clone)]
pub struct OpenAiSpeechConfig {
    /// Names the provider in errors and logs: `openai`, `local`, `openai_compatible`.
    pub provider: &'static str,
    /// API root including the version, e.g. `https://api.openai.com/v1` or
    /// `http://127.0.0.1:8790/v1`; the adapter appends `/audio/...`.
    pub base_url: String,
    /// Bearer token; `None` sends no `Authorization` header.
    pub api_key: Option<SecretString>,
    /// `model` of transcription requests (`whisper-1`, `tiny.en`, ...).
    pub stt_model: String,
    /// `model` of speech requests (`tts-1`, `espeak-ng`, ...).
    pub tts_model: String,
    /// Sample rate of the server's `pcm` output: 24000 for OpenAI, 22050 for
    /// the local server. A `X-Sample-Rate` response header overrides it.
    pub tts_sample_rate: u32,
    /// Voice used when `synthesize` is called with an empty voice or `default`.
    pub default_voice: String,
    /// ISO-639-1 language sent with transcriptions; `None` derives it from
    /// [`StreamConfig::language`] (`en-US` → `en`).
    pub language: Option<String>,
    /// STT: the whole exchange, retries included. TTS: until the first audio,
    /// retries included, then every gap between body chunks.
    pub timeout: Duration,
    /// Retries after the first attempt, for connection errors, 429 and 5xx.
    pub max_retries: u32,
    /// Backoff before the first retry; doubles per retry (jittered), capped
    /// at `max_backoff`.
    pub retry_backoff: Duration,
    /// Longest single wait between attempts, a server's `Retry-After`
    /// included; a longer `Retry-After` ends the retries. Default 5 s.
    pub max_backoff: Duration,
}

impl OpenAiSpeechConfig {
    /// OpenAI itself: `whisper-1` / `tts-1`, 24 kHz `pcm`, voice `alloy`.
    pub fn openai(api_key: SecretString) -> Self {
        Self {
            provider: "openai",
            ..Self::openai_compatible("https://api.openai.com/v1", Some(api_key))
        }
    }

    /// Another server speaking OpenAI's API at `base_url` (with the version,
    /// e.g. `http://host/v1`), with OpenAI's defaults: `whisper-1` / `tts-1`,
    /// 24 kHz `pcm` (a `X-Sample-Rate` header overrides), voice `alloy`.
    pub fn openai_compatible(base_url: &str, api_key: Option<SecretString>) -> Self {
        Self {
            provider: "openai_compatible",
            base_url: base_url.to_owned(),
            api_key,
            stt_model: "whisper-1".to_owned(),
            tts_model: "tts-1".to_owned(),
            tts_sample_rate: 24_000,
            default_voice: "alloy".to_owned(),
            language: None,
            timeout: Duration::from_secs(30),
            max_retries: 2,
            retry_backoff: Duration::from_millis(200),
            max_backoff: DEFAULT_MAX_BACKOFF,
        }
    }

    /// The bundled local speech server at `server_url` (e.g. `speech.base_url`,
    /// `http://127.0.0.1:8790`; `/v1` is appended): Whisper `tiny.en` and
    /// `espeak-ng` at `tts_sample_rate` (`speech.tts_sample_rate`), no key.
    pub fn local(server_url: &str, tts_sample_rate: u32) -> Self {
        Self {
            provider: "local",
            base_url: format!("{}/v1", server_url.trim_end_matches('/')),
            api_key: None,
            stt_model: "tiny.en".to_owned(),
            tts_model: "espeak-ng".to_owned(),
            tts_sample_rate,
            default_voice: "en-us".to_owned(),
            language: None,
            timeout: Duration::from_secs(30),
            max_retries: 2,
            retry_backoff: Duration::from_millis(200),
            max_backoff: DEFAULT_MAX_BACKOFF,
        }
    }
}

impl std::fmt::Debug for OpenAiSpeechConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiSpeechConfig")
            .field("provider", &self.provider)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("stt_model", &self.stt_model)
            .field("tts_model", &self.tts_model)
            .field("tts_sample_rate", &self.tts_sample_rate)
            .field("default_voice", &self.default_voice)
            .field("language", &self.language)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("retry_backoff", &self.retry_backoff)
            .field("max_backoff", &self.max_backoff)
            .finish()
    }
}

/// An HTTP client for the speech adapters: rustls, connection pooling, and
/// `connect_timeout` on every connection. Share one between adapters.
pub fn speech_http_client(connect_timeout: Duration) -> Result<reqwest::Client, ProviderError> {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .build()
        .map_err(|e| {
            ProviderError::new(
                "http",
                ProviderErrorKind::Config(format!("cannot build HTTP client: {e}")),
            )
        })
}

/// What both adapters share: config, client and the two endpoint URLs.
struct Shared {
    config: OpenAiSpeechConfig,
    client: reqwest::Client,
    transcriptions_url: Url,
    speech_url: Url,
}

impl Shared {
    fn new(config: OpenAiSpeechConfig, client: reqwest::Client) -> Result<Arc<Self>, ProviderError> {
        let provider = config.provider;
        let bad = |why: String| ProviderError::new(provider, ProviderErrorKind::Config(why));
        let base = config.base_url.trim_end_matches('/');
        let parse = |path: &str| {
            let url = Url::parse(&format!("{base}{path}")).map_err(|e| bad(format!("base_url {base:?}: {e}")))?;
            match url.scheme() {
                "http" | "https" => Ok(url),
                other => Err(bad(format!("base_url scheme must be http or https, not {other}"))),
            }
        };
        if config.tts_sample_rate == 0 {
            return Err(bad("tts_sample_rate must be positive".to_owned()));
        }
        Ok(Arc::new(Self {
            transcriptions_url: parse("/audio/transcriptions")?,
            speech_url: parse("/audio/speech")?,
            config,
            client,
        }))
    }

    fn err(&self, kind: ProviderErrorKind) -> ProviderError {
        ProviderError::new(self.config.provider, kind)
    }

    fn authorize(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.config.api_key {
            Some(key) => req.bearer_auth(key.expose_secret()),
            None => req,
        }
    }

    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.config.max_retries.saturating_add(1),
            base_delay: self.config.retry_backoff,
            max_delay: self.config.max_backoff,
        }
    }

    /// One attempt: sends the request and returns a successful response head,
    /// or the typed failure (with the server's `Retry-After`) for a refusal.
    async fn send_once(&self, what: &'static str, req: reqwest::RequestBuilder) -> Result<reqwest::Response, Failure> {
        let provider = self.config.provider;
        let resp = self
            .authorize(req)
            .send()
            .await
            .map_err(|e| retry::transport_error(provider, e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let failure = retry::status_failure(provider, status, resp.headers());
        let body = retry::read_body_capped(provider, resp, MAX_ERROR_BODY, self.config.timeout)
            .await
            .unwrap_or_default();
        let message = error_message(&body);
        warn!(provider, what, status = status.as_u16(), message = %message, "speech request refused");
        Err(failure)
    }
}

/// The `error.message` of an OpenAI-style error body, else the body as text.
fn error_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Envelope {
        error: ErrorBody,
    }
    #[derive(Deserialize)]
    struct ErrorBody {
        message: Option<String>,
    }
    match serde_json::from_slice::<Envelope>(body) {
        Ok(Envelope {
            error: ErrorBody { message: Some(m) },
        }) => m,
        _ => String::from_utf8_lossy(body).chars().take(300).collect(),
    }
}

/// `en-US` → `en`; `None` for an empty tag.
fn iso_639_1(tag: &str) -> Option<String> {
    let primary = tag.split(['-', '_']).next()?.trim().to_ascii_lowercase();
    (!primary.is_empty()).then_some(primary)
}

// ------------------------------------------------------------------ STT

/// Speech-to-text over `POST {base}/audio/transcriptions` (segment-based, see
/// the module docs). Cheap to clone: clones share the client and config.
#[derive(Clone)]
pub struct OpenAiStt {
    shared: Arc<Shared>,
}

impl OpenAiStt {
    /// Checks the base URL; fails with a `Config` error naming the provider.
    pub fn new(config: OpenAiSpeechConfig, client: reqwest::Client) -> Result<Self, ProviderError> {
        Ok(Self {
            shared: Shared::new(config, client)?,
        })
    }
}

impl std::fmt::Debug for OpenAiStt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiStt")
            .field("config", &self.shared.config)
            .finish()
    }
}

impl SpeechToText for OpenAiStt {
    fn start(&self, config: StreamConfig) -> BoxFuture<'_, Result<Box<dyn SttStream>, ProviderError>> {
        let shared = self.shared.clone();
        Box::pin(async move {
            if config.sample_rate == 0 {
                return Err(shared.err(ProviderErrorKind::Config("stream sample_rate must be positive".into())));
            }
            let language = shared.config.language.clone().or_else(|| iso_639_1(&config.language));
            Ok(Box::new(OpenAiSttStream {
                shared,
                language,
                segment: Segment::new(config.sample_rate, MAX_STT_SECONDS),
            }) as Box<dyn SttStream>)
        })
    }
}

/// One buffered STT segment.
struct OpenAiSttStream {
    shared: Arc<Shared>,
    language: Option<String>,
    segment: Segment,
}

#[derive(Deserialize)]
struct TranscriptionJson {
    text: String,
}

impl OpenAiSttStream {
    async fn transcribe(&self) -> Result<String, ProviderError> {
        let shared = &self.shared;
        let samples = self.segment.samples();
        let mut wav = Vec::with_capacity(44 + samples.len() * 2);
        switchboard_media::wav::write_mono(&mut wav, self.segment.sample_rate(), samples)
            .map_err(|e| shared.err(ProviderErrorKind::Config(format!("cannot encode WAV: {e}"))))?;
        let build = || {
            let mut form = reqwest::multipart::Form::new()
                .text("model", shared.config.stt_model.clone())
                .text("response_format", "json");
            if let Some(language) = &self.language {
                form = form.text("language", language.clone());
            }
            let file = reqwest::multipart::Part::bytes(wav.clone())
                .file_name("audio.wav")
                .mime_str("audio/wav")
                .unwrap_or_else(|_| reqwest::multipart::Part::bytes(wav.clone()).file_name("audio.wav"));
            form = form.part("file", file);
            shared.client.post(shared.transcriptions_url.clone()).multipart(form)
        };
        let provider = shared.config.provider;
        // The request is idempotent: each attempt re-sends the whole WAV and
        // reads the whole answer, so a body cut mid-way is retried too.
        let build = &build;
        let attempt = move |_| async move {
            let resp = shared.send_once("transcription", build()).await?;
            let body = retry::read_body_capped(provider, resp, MAX_TRANSCRIPT_BODY, shared.config.timeout).await?;
            serde_json::from_slice::<TranscriptionJson>(&body)
                .map(|t| t.text)
                .map_err(|e| {
                    Failure::from(shared.err(ProviderErrorKind::Malformed(format!("transcription JSON: {e}"))))
                })
        };
        // One deadline for the whole exchange, retries and waits included.
        let exchange = retry::with_retries(shared.retry_policy(), provider, attempt);
        tokio::time::timeout(shared.config.timeout, exchange)
            .await
            .unwrap_or_else(|_| Err(shared.err(ProviderErrorKind::Timeout)))
    }
}

impl SttStream for OpenAiSttStream {
    /// Buffers the samples; refuses audio once the segment is finished or would
    /// pass [`MAX_STT_SECONDS`].
    fn push_audio<'a>(&'a mut self, samples: &'a [i16]) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move { self.segment.push(samples).map_err(|kind| self.shared.err(kind)) })
    }

    /// Sends the buffered audio for transcription (nothing is sent for an empty
    /// segment). Calling it again is a no-op.
    fn finish(&mut self) -> BoxFuture<'_, Result<(), ProviderError>> {
        Box::pin(async move {
            let Some(end_ms) = self.segment.finish() else {
                return Ok(());
            };
            let text = self.transcribe().await?;
            let text = text.trim();
            debug!(
                provider = self.shared.config.provider,
                audio_ms = end_ms,
                chars = text.len(),
                "transcribed segment"
            );
            self.segment.recognized(text, end_ms);
            Ok(())
        })
    }

    /// After `finish`: the segment's final (if any), then `None`. Before
    /// `finish` there is nothing to report and the future stays pending, as a
    /// streaming recognizer's would while the caller is still speaking.
    fn next_event(&mut self) -> BoxFuture<'_, Result<Option<SttEvent>, ProviderError>> {
        Box::pin(async move {
            match self.segment.next_event() {
                Some(event) => Ok(event),
                None => std::future::pending().await,
            }
        })
    }
}

// ------------------------------------------------------------------ TTS

/// Text-to-speech over `POST {base}/audio/speech` with `response_format: pcm`,
/// streamed (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct OpenAiTts {
    shared: Arc<Shared>,
}

impl OpenAiTts {
    /// Checks the base URL; fails with a `Config` error naming the provider.
    pub fn new(config: OpenAiSpeechConfig, client: reqwest::Client) -> Result<Self, ProviderError> {
        Ok(Self {
            shared: Shared::new(config, client)?,
        })
    }
}

impl std::fmt::Debug for OpenAiTts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiTts")
            .field("config", &self.shared.config)
            .finish()
    }
}

#[derive(Serialize)]
struct SpeechRequest<'a> {
    model: &'a str,
    input: &'a str,
    voice: &'a str,
    response_format: &'static str,
}

/// Where a synthesis stream is.
enum TtsState {
    Request { text: String, voice: String },
    Body(TtsBody),
    Done,
}

struct TtsBody {
    resp: reqwest::Response,
    sample_rate: u32,
    /// An odd byte left from the previous network chunk.
    carry: Option<u8>,
    /// Decoded samples not yet handed out (a network chunk above 100 ms is split).
    pending: VecDeque<i16>,
    max_chunk: usize,
}

impl TextToSpeech for OpenAiTts {
    /// Streams `text` as 16-bit mono PCM. Empty text yields an empty stream;
    /// an empty or `default` voice uses the configured default voice.
    fn synthesize(&self, text: String, voice: String) -> BoxStream<'static, Result<PcmChunk, ProviderError>> {
        if text.trim().is_empty() {
            return stream::empty().boxed();
        }
        let voice = if voice.trim().is_empty() || voice == "default" {
            self.shared.config.default_voice.clone()
        } else {
            voice
        };
        let shared = self.shared.clone();
        stream::unfold(TtsState::Request { text, voice }, move |state| {
            let shared = shared.clone();
            async move {
                let mut state = state;
                loop {
                    match state {
                        TtsState::Done => return None,
                        TtsState::Request { text, voice } => match open_speech(&shared, &text, &voice).await {
                            Ok(body) => state = TtsState::Body(body),
                            Err(e) => return Some((Err(e), TtsState::Done)),
                        },
                        TtsState::Body(mut body) => match next_pcm(&shared, &mut body).await {
                            Ok(Some(chunk)) => return Some((Ok(chunk), TtsState::Body(body))),
                            Ok(None) => return None,
                            Err(e) => return Some((Err(e), TtsState::Done)),
                        },
                    }
                }
            }
        })
        .boxed()
    }
}

/// Sends the speech request and reads until the first audio, retrying
/// refusals and failures up to that point: nothing has reached the caller
/// yet, so a retry cannot repeat or skip audio. The whole opening, retries
/// included, is bounded by `timeout`.
async fn open_speech(shared: &Shared, text: &str, voice: &str) -> Result<TtsBody, ProviderError> {
    let provider = shared.config.provider;
    let request = SpeechRequest {
        model: &shared.config.tts_model,
        input: text,
        voice,
        response_format: "pcm",
    };
    let request = &request;
    let attempt = move |_| async move {
        let req = shared.client.post(shared.speech_url.clone()).json(request);
        let resp = shared.send_once("speech", req).await?;
        let mut body = speech_body(shared, resp)?;
        while body.pending.is_empty() && fill(shared, &mut body).await? {}
        Ok(body)
    };
    let open = retry::with_retries(shared.retry_policy(), provider, attempt);
    tokio::time::timeout(shared.config.timeout, open)
        .await
        .unwrap_or_else(|_| Err(shared.err(ProviderErrorKind::Timeout)))
}

/// Checks a successful response head and picks the sample rate.
fn speech_body(shared: &Shared, resp: reqwest::Response) -> Result<TtsBody, ProviderError> {
    let configured = shared.config.tts_sample_rate;
    let header_rate = resp
        .headers()
        .get("x-sample-rate")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|&r| r > 0);
    let sample_rate = match header_rate {
        Some(rate) if rate != configured => {
            warn!(
                provider = shared.config.provider,
                configured,
                announced = rate,
                "speech server announces a different sample rate; using its"
            );
            rate
        }
        _ => configured,
    };
    if let Some(ct) = resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok())
        && (ct.starts_with("application/json") || ct.starts_with("text/"))
    {
        return Err(shared.err(ProviderErrorKind::Malformed(format!(
            "expected pcm audio, got content-type {ct}"
        ))));
    }
    Ok(TtsBody {
        resp,
        sample_rate,
        carry: None,
        pending: VecDeque::new(),
        max_chunk: (sample_rate / 10).max(1) as usize,
    })
}

/// The next chunk of at most 100 ms, or `None` at the end of the body.
async fn next_pcm(shared: &Shared, body: &mut TtsBody) -> Result<Option<PcmChunk>, ProviderError> {
    loop {
        if !body.pending.is_empty() {
            let n = body.pending.len().min(body.max_chunk);
            let samples: Vec<i16> = body.pending.drain(..n).collect();
            return Ok(Some(PcmChunk {
                sample_rate: body.sample_rate,
                samples,
            }));
        }
        if !fill(shared, body).await? {
            return Ok(None);
        }
    }
}

/// Reads one network chunk (waiting at most `timeout`) into `pending`;
/// `false` at the end of the body.
async fn fill(shared: &Shared, body: &mut TtsBody) -> Result<bool, ProviderError> {
    let chunk = match tokio::time::timeout(shared.config.timeout, body.resp.chunk()).await {
        Err(_) => return Err(shared.err(ProviderErrorKind::Timeout)),
        Ok(Err(e)) => return Err(retry::transport_error(shared.config.provider, e)),
        Ok(Ok(None)) => {
            if body.carry.take().is_some() {
                warn!(
                    provider = shared.config.provider,
                    "speech body ended on an odd byte; dropped it"
                );
            }
            return Ok(false);
        }
        Ok(Ok(Some(chunk))) => chunk,
    };
    let mut bytes: &[u8] = &chunk;
    if let Some(low) = body.carry.take() {
        match bytes.split_first() {
            Some((&high, rest)) => {
                body.pending.push_back(i16::from_le_bytes([low, high]));
                bytes = rest;
            }
            None => body.carry = Some(low),
        }
    }
    let pairs = bytes.chunks_exact(2);
    if let [odd] = pairs.remainder() {
        body.carry = Some(*odd);
    }
    body.pending.extend(pairs.map(|p| i16::from_le_bytes([p[0], p[1]])));
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_tags_become_iso_639_1() {
        assert_eq!(iso_639_1("en-US").as_deref(), Some("en"));
        assert_eq!(iso_639_1("pt_BR").as_deref(), Some("pt"));
        assert_eq!(iso_639_1("FR").as_deref(), Some("fr"));
        assert_eq!(iso_639_1(""), None);
    }

    #[test]
    fn error_message_reads_openai_errors_and_falls_back_to_text() {
        let body = br#"{"error":{"message":"Invalid file format.","type":"invalid_request_error","code":null}}"#;
        assert_eq!(error_message(body), "Invalid file format.");
        assert_eq!(error_message(b"upstream down"), "upstream down");
    }

    #[test]
    fn debug_never_prints_the_key() {
        let config = OpenAiSpeechConfig::openai(SecretString::from("sk-very-secret"));
        let printed = format!("{config:?}");
        assert!(!printed.contains("sk-very-secret"), "{printed}");
        assert!(printed.contains("[redacted]"), "{printed}");
    }

    #[test]
    fn retry_policy_follows_the_config() {
        let mut config = OpenAiSpeechConfig::local("http://127.0.0.1:1", 22_050);
        config.max_retries = 2;
        config.retry_backoff = Duration::from_millis(100);
        let shared = Shared::new(config, reqwest::Client::new()).expect("valid config");
        let policy = shared.retry_policy();
        assert_eq!(policy.max_attempts, 3);
        assert_eq!(policy.ceiling(1), Duration::from_millis(200));
        assert_eq!(policy.ceiling(40), DEFAULT_MAX_BACKOFF);
    }

    #[test]
    fn bad_base_urls_are_config_errors() {
        for base in ["not a url", "ftp://example.com/v1"] {
            let mut config = OpenAiSpeechConfig::local("http://x", 22_050);
            config.base_url = base.to_owned();
            let err = OpenAiStt::new(config, reqwest::Client::new()).expect_err(base);
            assert_eq!(err.provider, "local");
            assert!(matches!(err.kind, ProviderErrorKind::Config(_)), "{err}");
        }
    }

    #[test]
    fn local_config_appends_v1() {
        let c = OpenAiSpeechConfig::local("http://127.0.0.1:8790/", 22_050);
        assert_eq!(c.base_url, "http://127.0.0.1:8790/v1");
    }
}
