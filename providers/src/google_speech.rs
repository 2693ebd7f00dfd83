//! Google Cloud speech over REST: [`GoogleStt`] (Speech-to-Text v1
//! `POST {base}/v1/speech:recognize`) and [`GoogleTts`] (Text-to-Speech v1
//! `POST {base}/v1/text:synthesize`).
//!
//! Guarantees:
//! - **STT is segment-based**, like [`crate::OpenAiStt`]: streaming
//!   recognition is gRPC-only, so an [`SttStream`] buffers the pushed PCM
//!   (at most [`MAX_STT_SECONDS`], the sync endpoint's limit) and
//!   [`SttStream::finish`] sends it in one `recognize`. `next_event` then
//!   yields one [`SttEvent::Final`] with the best alternatives of all results
//!   joined by spaces (none when nothing was recognised), then `None`.
//! - **Telephone audio is sent as-is.** At 8 kHz the PCM is μ-law encoded and
//!   sent as `MULAW` 8000 Hz without resampling (the call's own codec, half
//!   the bytes); any other rate is sent as `LINEAR16` at that rate.
//! - **TTS yields PCM at the rate Google produced.** `audioContent` is
//!   decoded from base64; a RIFF header (Google adds one to `LINEAR16` and
//!   `MULAW`) is parsed chunk by chunk, never assumed to be 44 bytes, and its
//!   format and rate are checked; `MULAW` is decoded to 16-bit. The audio is
//!   handed out in [`PcmChunk`]s of at most 100 ms.
//! - **Time, size and retries are bounded.** Each exchange (retries and waits
//!   included) is bounded by `timeout`; a body that stops arriving is a
//!   `Timeout`; bodies are capped ([`MAX_RESPONSE_BODY`]). Both requests are
//!   idempotent and nothing is handed out before the whole answer arrived, so
//!   connection failures, 429 and 5xx are retried per [`RetryPolicy`]
//!   (honouring `Retry-After`); 4xx and unreadable answers are not.
//! - **The key never leaks.** It is a [`SecretString`], sent as the
//!   `X-Goog-Api-Key` header (not `?key=`, so it is never part of a URL that an
//!   error or proxy log could print), or as `Authorization: Bearer` for an
//!   OAuth access token, and never printed by `Debug`.
//! - Errors are [`ProviderError`]s naming `google_stt` or `google_tts`; a
//!   refusal's Google error body (`{error:{code,message,status}}`) is logged
//!   at `warn` with the HTTP status.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures::future::BoxFuture;
use futures::stream::{self, BoxStream, StreamExt};
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use crate::capability::{PcmChunk, SpeechToText, StreamConfig, SttEvent, SttStream, TextToSpeech};
use crate::error::{ProviderError, ProviderErrorKind};
use crate::retry::{self, Failure, RetryPolicy};
use crate::segment::Segment;

/// Default Speech-to-Text API root.
pub const STT_BASE_URL: &str = "https://speech.googleapis.com";
/// Default Text-to-Speech API root.
pub const TTS_BASE_URL: &str = "https://texttospeech.googleapis.com";
/// Longest audio one STT segment may buffer (sync `recognize` takes about a minute).
pub const MAX_STT_SECONDS: u32 = 60;
/// Largest response body accepted (base64 audio of a 5000-byte text at 24 kHz fits).
pub const MAX_RESPONSE_BODY: usize = 32 * 1024 * 1024;
/// Largest `input.text` Text-to-Speech accepts, in bytes.
pub const MAX_TTS_TEXT_BYTES: usize = 5000;
/// Largest error body read from a refusal, to log its message.
const MAX_ERROR_BODY: usize = 16 * 1024;

const STT_PROVIDER: &str = "google_stt";
const TTS_PROVIDER: &str = "google_tts";

/// How requests prove who we are.
#[derive(Clone)]
pub enum GoogleCredential {
    /// An API key, sent as `X-Goog-Api-Key`.
    ApiKey(SecretString),
    /// An OAuth 2 access token (scope `cloud-platform`), sent as `Bearer`.
    AccessToken(SecretString),
}

impl std::fmt::Debug for GoogleCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ApiKey(_) => f.write_str("ApiKey([redacted])"),
            Self::AccessToken(_) => f.write_str("AccessToken([redacted])"),
        }
    }
}

/// Audio encodings both APIs share that we can turn into PCM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoogleAudioEncoding {
    /// G.711 μ-law, 8 bits per sample.
    Mulaw,
    /// 16-bit signed little-endian PCM.
    Linear16,
}

impl GoogleAudioEncoding {
    /// The enum name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mulaw => "MULAW",
            Self::Linear16 => "LINEAR16",
        }
    }
}

/// Where and how to reach one of Google's speech APIs.
#[derive(Debug, Clone)]
pub struct GoogleSpeechConfig {
    /// API root without the version: [`STT_BASE_URL`] or [`TTS_BASE_URL`]
    /// (or a test server); the adapter appends `/v1/...`.
    pub base_url: String,
    pub credential: GoogleCredential,
    /// BCP-47 tag: STT uses it when [`StreamConfig::language`] is empty; TTS
    /// when the voice name does not start with one.
    pub language: String,
    /// TTS voice used when `synthesize` gets an empty or `default` voice,
    /// e.g. `en-US-Standard-C`; empty lets Google pick by language.
    pub voice: String,
    /// TTS output encoding; `Mulaw` at 8000 Hz is the telephone's own format.
    pub encoding: GoogleAudioEncoding,
    /// TTS output rate in Hz.
    pub sample_rate: u32,
    /// STT `config.model` (e.g. `phone_call`); `None` leaves Google's default.
    pub stt_model: Option<String>,
    /// Bound of one whole exchange, retries included, and of every gap
    /// while a body arrives.
    pub timeout: Duration,
    pub retry: RetryPolicy,
}

impl GoogleSpeechConfig {
    /// Speech-to-Text at [`STT_BASE_URL`] with an API key, `en-US`.
    pub fn speech_to_text(api_key: SecretString) -> Self {
        Self::with_base(STT_BASE_URL, GoogleCredential::ApiKey(api_key))
    }

    /// Text-to-Speech at [`TTS_BASE_URL`] with an API key: `en-US`, Google's
    /// default voice, `MULAW` 8000 Hz.
    pub fn text_to_speech(api_key: SecretString) -> Self {
        Self::with_base(TTS_BASE_URL, GoogleCredential::ApiKey(api_key))
    }

    fn with_base(base_url: &str, credential: GoogleCredential) -> Self {
        Self {
            base_url: base_url.to_owned(),
            credential,
            language: "en-US".to_owned(),
            voice: String::new(),
            encoding: GoogleAudioEncoding::Mulaw,
            sample_rate: 8_000,
            stt_model: None,
            timeout: Duration::from_secs(15),
            retry: RetryPolicy::default(),
        }
    }
}

/// What a Google adapter needs per request: config, client, endpoint, name.
struct Endpoint {
    provider: &'static str,
    config: GoogleSpeechConfig,
    client: reqwest::Client,
    url: Url,
}

impl Endpoint {
    fn new(
        provider: &'static str,
        path: &str,
        config: GoogleSpeechConfig,
        client: reqwest::Client,
    ) -> Result<Arc<Self>, ProviderError> {
        let bad = |why: String| ProviderError::new(provider, ProviderErrorKind::Config(why));
        let base = config.base_url.trim_end_matches('/');
        let url = Url::parse(&format!("{base}{path}")).map_err(|e| bad(format!("base_url {base:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad(format!(
                "base_url scheme must be http or https, not {}",
                url.scheme()
            )));
        }
        Ok(Arc::new(Self {
            provider,
            config,
            client,
            url,
        }))
    }

    fn err(&self, kind: ProviderErrorKind) -> ProviderError {
        ProviderError::new(self.provider, kind)
    }

    /// POSTs `body` and returns the parsed answer, retrying per the policy,
    /// the whole exchange bounded by `timeout`.
    async fn call<Req: Serialize + Sync, Resp: for<'de> Deserialize<'de> + Send>(
        &self,
        body: &Req,
    ) -> Result<Resp, ProviderError> {
        let attempt = move |_| async move {
            let req = self.client.post(self.url.clone()).json(body);
            let req = match &self.config.credential {
                GoogleCredential::ApiKey(key) => req.header("x-goog-api-key", key.expose_secret()),
                GoogleCredential::AccessToken(token) => req.bearer_auth(token.expose_secret()),
            };
            let resp = req.send().await.map_err(|e| retry::transport_error(self.provider, e))?;
            let status = resp.status();
            if !status.is_success() {
                let failure = retry::status_failure(self.provider, status, resp.headers());
                let body = retry::read_body_capped(self.provider, resp, MAX_ERROR_BODY, self.config.timeout)
                    .await
                    .unwrap_or_default();
                warn!(provider = self.provider, status = status.as_u16(), message = %google_error_message(&body), "Google speech request refused");
                return Err(failure);
            }
            let bytes = retry::read_body_capped(self.provider, resp, MAX_RESPONSE_BODY, self.config.timeout).await?;
            serde_json::from_slice::<Resp>(&bytes)
                .map_err(|e| Failure::from(self.err(ProviderErrorKind::Malformed(format!("response JSON: {e}")))))
        };
        let exchange = retry::with_retries(self.config.retry, self.provider, attempt);
        tokio::time::timeout(self.config.timeout, exchange)
            .await
            .unwrap_or_else(|_| Err(self.err(ProviderErrorKind::Timeout)))
    }
}

/// `STATUS: message` of a Google error body, else the body as text.
pub fn google_error_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Envelope {
        error: ErrorBody,
    }
    #[derive(Deserialize)]
    struct ErrorBody {
        message: Option<String>,
        status: Option<String>,
    }
    match serde_json::from_slice::<Envelope>(body) {
        Ok(Envelope { error }) => match (error.status, error.message) {
            (Some(status), Some(message)) => format!("{status}: {message}"),
            (status, message) => status.or(message).unwrap_or_default(),
        },
        Err(_) => String::from_utf8_lossy(body).chars().take(300).collect(),
    }
}

// ------------------------------------------------------------------ STT

/// Speech-to-text over `speech:recognize` (segment-based, see the module
/// docs). Cheap to clone.
#[derive(Clone)]
pub struct GoogleStt {
    endpoint: Arc<Endpoint>,
}

impl GoogleStt {
    /// Checks the base URL; fails with a `Config` error naming `google_stt`.
    pub fn new(config: GoogleSpeechConfig, client: reqwest::Client) -> Result<Self, ProviderError> {
        Ok(Self {
            endpoint: Endpoint::new(STT_PROVIDER, "/v1/speech:recognize", config, client)?,
        })
    }
}

impl std::fmt::Debug for GoogleStt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoogleStt")
            .field("config", &self.endpoint.config)
            .finish()
    }
}

impl SpeechToText for GoogleStt {
    fn start(&self, config: StreamConfig) -> BoxFuture<'_, Result<Box<dyn SttStream>, ProviderError>> {
        let endpoint = self.endpoint.clone();
        Box::pin(async move {
            if !(8_000..=48_000).contains(&config.sample_rate) {
                return Err(endpoint.err(ProviderErrorKind::Config(format!(
                    "sample rate {} Hz outside Google's 8000-48000",
                    config.sample_rate
                ))));
            }
            let language = if config.language.trim().is_empty() {
                endpoint.config.language.clone()
            } else {
                config.language
            };
            Ok(Box::new(GoogleSttStream {
                endpoint,
                language,
                segment: Segment::new(config.sample_rate, MAX_STT_SECONDS),
            }) as Box<dyn SttStream>)
        })
    }
}

/// One buffered STT segment.
struct GoogleSttStream {
    endpoint: Arc<Endpoint>,
    language: String,
    segment: Segment,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RecognizeRequest<'a> {
    config: RecognitionConfig<'a>,
    audio: RecognitionAudio,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RecognitionConfig<'a> {
    encoding: &'static str,
    sample_rate_hertz: u32,
    language_code: &'a str,
    max_alternatives: u32,
    enable_automatic_punctuation: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a str>,
}

#[derive(Serialize)]
struct RecognitionAudio {
    content: String,
}

#[derive(Deserialize)]
struct RecognizeResponse {
    #[serde(default)]
    results: Vec<RecognitionResult>,
}

#[derive(Deserialize)]
struct RecognitionResult {
    #[serde(default)]
    alternatives: Vec<RecognitionAlternative>,
}

#[derive(Deserialize)]
struct RecognitionAlternative {
    #[serde(default)]
    transcript: String,
}

/// The best alternative of each result, trimmed and joined by single spaces.
fn join_transcripts(response: &RecognizeResponse) -> String {
    response
        .results
        .iter()
        .filter_map(|r| r.alternatives.first())
        .map(|a| a.transcript.trim())
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The wire encoding and bytes for a segment: μ-law at 8 kHz, else LINEAR16.
fn encode_segment(sample_rate: u32, samples: &[i16]) -> (GoogleAudioEncoding, Vec<u8>) {
    if sample_rate == 8_000 {
        let mut bytes = vec![0u8; samples.len()];
        switchboard_media::ulaw::encode_into(samples, &mut bytes);
        (GoogleAudioEncoding::Mulaw, bytes)
    } else {
        let bytes = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        (GoogleAudioEncoding::Linear16, bytes)
    }
}

impl GoogleSttStream {
    async fn recognize(&self) -> Result<String, ProviderError> {
        let sample_rate = self.segment.sample_rate();
        let (encoding, bytes) = encode_segment(sample_rate, self.segment.samples());
        let request = RecognizeRequest {
            config: RecognitionConfig {
                encoding: encoding.as_str(),
                sample_rate_hertz: sample_rate,
                language_code: &self.language,
                max_alternatives: 1,
                enable_automatic_punctuation: true,
                model: self.endpoint.config.stt_model.as_deref(),
            },
            audio: RecognitionAudio {
                content: BASE64.encode(&bytes),
            },
        };
        let response: RecognizeResponse = self.endpoint.call(&request).await?;
        Ok(join_transcripts(&response))
    }
}

impl SttStream for GoogleSttStream {
    /// Buffers the samples; refuses audio once the segment is finished or would
    /// pass [`MAX_STT_SECONDS`].
    fn push_audio<'a>(&'a mut self, samples: &'a [i16]) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move { self.segment.push(samples).map_err(|kind| self.endpoint.err(kind)) })
    }

    /// Sends the buffered audio (nothing for an empty segment). Calling it
    /// again is a no-op.
    fn finish(&mut self) -> BoxFuture<'_, Result<(), ProviderError>> {
        Box::pin(async move {
            let Some(end_ms) = self.segment.finish() else {
                return Ok(());
            };
            let text = self.recognize().await?;
            debug!(
                provider = STT_PROVIDER,
                audio_ms = end_ms,
                chars = text.len(),
                "recognized segment"
            );
            self.segment.recognized(&text, end_ms);
            Ok(())
        })
    }

    /// After `finish`: the segment's final (if any), then `None`. Before
    /// `finish` the future stays pending, as a streaming recognizer's would.
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

/// Text-to-speech over `text:synthesize` (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct GoogleTts {
    endpoint: Arc<Endpoint>,
}

impl GoogleTts {
    /// Checks the base URL and rate; fails with a `Config` error naming `google_tts`.
    pub fn new(config: GoogleSpeechConfig, client: reqwest::Client) -> Result<Self, ProviderError> {
        if config.sample_rate == 0 {
            return Err(ProviderError::new(
                TTS_PROVIDER,
                ProviderErrorKind::Config("sample_rate must be positive".to_owned()),
            ));
        }
        Ok(Self {
            endpoint: Endpoint::new(TTS_PROVIDER, "/v1/text:synthesize", config, client)?,
        })
    }
}

impl std::fmt::Debug for GoogleTts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoogleTts")
            .field("config", &self.endpoint.config)
            .finish()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SynthesizeRequest<'a> {
    input: SynthesisInput<'a>,
    voice: VoiceSelection<'a>,
    audio_config: AudioConfig,
}

#[derive(Serialize)]
struct SynthesisInput<'a> {
    text: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct VoiceSelection<'a> {
    language_code: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AudioConfig {
    audio_encoding: &'static str,
    sample_rate_hertz: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SynthesizeResponse {
    audio_content: String,
}

/// `en-US` from `en-US-Standard-C`; `None` for names without a language part.
fn voice_language(voice: &str) -> Option<&str> {
    let mut dashes = voice.match_indices('-').map(|(i, _)| i);
    let (_, second) = (dashes.next()?, dashes.next()?);
    Some(&voice[..second])
}

/// Where the samples are and how they are coded, from a RIFF/WAVE file.
struct WavData<'a> {
    format_tag: u16,
    sample_rate: u32,
    data: &'a [u8],
}

/// Walks the RIFF chunks of a mono WAV for `fmt ` and `data`. The `data` size
/// may overrun the file (streaming writers leave a placeholder): it is clamped.
fn parse_wav(bytes: &[u8]) -> Result<WavData<'_>, String> {
    let u16_at = |at: usize| bytes.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    if bytes.len() < 12 || &bytes[8..12] != b"WAVE" {
        return Err("RIFF without WAVE".to_owned());
    }
    let mut pos = 12;
    let mut format = None;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let size = u32_at(pos + 4).ok_or("truncated chunk header")? as usize;
        let body = pos + 8;
        match id {
            b"fmt " => {
                let tag = u16_at(body).ok_or("truncated fmt chunk")?;
                let channels = u16_at(body + 2).ok_or("truncated fmt chunk")?;
                let rate = u32_at(body + 4).ok_or("truncated fmt chunk")?;
                if channels != 1 {
                    return Err(format!("{channels} channels, expected mono"));
                }
                format = Some((tag, rate));
            }
            b"data" => {
                let (format_tag, sample_rate) = format.ok_or("data chunk before fmt chunk")?;
                let end = body.saturating_add(size).min(bytes.len());
                return Ok(WavData {
                    format_tag,
                    sample_rate,
                    data: &bytes[body..end],
                });
            }
            _ => {}
        }
        // Chunks are padded to an even size.
        pos = body.saturating_add(size).saturating_add(size & 1);
    }
    Err("no data chunk".to_owned())
}

/// Turns `audioContent` bytes into PCM at its real rate, checking a WAV
/// header against what we asked for.
fn decode_audio(encoding: GoogleAudioEncoding, requested_rate: u32, bytes: &[u8]) -> Result<(u32, Vec<i16>), String> {
    let (rate, data) = if bytes.starts_with(b"RIFF") {
        let wav = parse_wav(bytes)?;
        let expected_tag = match encoding {
            GoogleAudioEncoding::Linear16 => 1,
            GoogleAudioEncoding::Mulaw => 7,
        };
        if wav.format_tag != expected_tag {
            return Err(format!(
                "WAV format tag {} for {} audio",
                wav.format_tag,
                encoding.as_str()
            ));
        }
        if wav.sample_rate == 0 {
            return Err("WAV sample rate 0".to_owned());
        }
        (wav.sample_rate, wav.data)
    } else {
        (requested_rate, bytes)
    };
    let samples = match encoding {
        GoogleAudioEncoding::Mulaw => data.iter().map(|&b| switchboard_media::ulaw::decode(b)).collect(),
        GoogleAudioEncoding::Linear16 => {
            if data.len() % 2 != 0 {
                return Err("LINEAR16 audio with an odd byte count".to_owned());
            }
            data.chunks_exact(2).map(|p| i16::from_le_bytes([p[0], p[1]])).collect()
        }
    };
    Ok((rate, samples))
}

impl GoogleTts {
    async fn fetch(&self, text: &str, voice: &str) -> Result<(u32, Vec<i16>), ProviderError> {
        let endpoint = &self.endpoint;
        let config = &endpoint.config;
        if text.len() > MAX_TTS_TEXT_BYTES {
            return Err(endpoint.err(ProviderErrorKind::Config(format!(
                "text of {} bytes is over Google's {MAX_TTS_TEXT_BYTES}",
                text.len()
            ))));
        }
        let request = SynthesizeRequest {
            input: SynthesisInput { text },
            voice: VoiceSelection {
                language_code: voice_language(voice).unwrap_or(&config.language),
                name: voice,
            },
            audio_config: AudioConfig {
                audio_encoding: config.encoding.as_str(),
                sample_rate_hertz: config.sample_rate,
            },
        };
        let response: SynthesizeResponse = endpoint.call(&request).await?;
        let bytes = BASE64
            .decode(response.audio_content.trim())
            .map_err(|e| endpoint.err(ProviderErrorKind::Malformed(format!("audioContent base64: {e}"))))?;
        let (rate, samples) = decode_audio(config.encoding, config.sample_rate, &bytes)
            .map_err(|why| endpoint.err(ProviderErrorKind::Malformed(format!("audioContent: {why}"))))?;
        if rate != config.sample_rate {
            warn!(
                provider = TTS_PROVIDER,
                requested = config.sample_rate,
                got = rate,
                "Google synthesized at another rate; using its"
            );
        }
        Ok((rate, samples))
    }
}

impl TextToSpeech for GoogleTts {
    /// Synthesizes `text` and yields it in chunks of at most 100 ms. Empty
    /// text yields an empty stream; an empty or `default` voice uses the
    /// configured one.
    fn synthesize(&self, text: String, voice: String) -> BoxStream<'static, Result<PcmChunk, ProviderError>> {
        if text.trim().is_empty() {
            return stream::empty().boxed();
        }
        let voice = if voice.trim().is_empty() || voice == "default" {
            self.endpoint.config.voice.clone()
        } else {
            voice
        };
        let tts = self.clone();
        stream::once(async move { tts.fetch(&text, &voice).await })
            .flat_map(|result| {
                let chunks: Vec<Result<PcmChunk, ProviderError>> = match result {
                    Ok((sample_rate, samples)) => {
                        let max_chunk = (sample_rate / 10).max(1) as usize;
                        samples
                            .chunks(max_chunk)
                            .map(|piece| {
                                Ok(PcmChunk {
                                    sample_rate,
                                    samples: piece.to_vec(),
                                })
                            })
                            .collect()
                    }
                    Err(e) => vec![Err(e)],
                };
                stream::iter(chunks)
            })
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(tag: u16, rate: u32, extra_chunk: bool, data: &[u8]) -> Vec<u8> {
        let mut out = b"RIFF\0\0\0\0WAVE".to_vec();
        out.extend_from_slice(b"fmt \x10\0\0\0");
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&rate.to_le_bytes());
        out.extend_from_slice(&rate.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&8u16.to_le_bytes());
        if extra_chunk {
            // An odd-sized chunk: its pad byte must be skipped too.
            out.extend_from_slice(b"LIST\x03\0\0\0abc\0");
        }
        out.extend_from_slice(b"data");
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn wav_headers_are_walked_not_skipped() {
        let (rate, samples) = decode_audio(
            GoogleAudioEncoding::Mulaw,
            8_000,
            &wav(7, 16_000, true, &[0xFF, 0x80, 0x00]),
        )
        .expect("mulaw wav");
        assert_eq!(rate, 16_000);
        assert_eq!(samples, [0, 32124, -32124]);
        let (rate, samples) = decode_audio(
            GoogleAudioEncoding::Linear16,
            24_000,
            &wav(1, 24_000, false, &[1, 0, 0xFF, 0xFF]),
        )
        .expect("pcm");
        assert_eq!((rate, samples), (24_000, vec![1, -1]));
    }

    #[test]
    fn headerless_audio_uses_the_requested_rate() {
        let (rate, samples) = decode_audio(GoogleAudioEncoding::Linear16, 22_050, &[2, 0, 3, 0]).expect("raw");
        assert_eq!((rate, samples), (22_050, vec![2, 3]));
    }

    #[test]
    fn bad_audio_is_refused() {
        assert!(decode_audio(GoogleAudioEncoding::Linear16, 8_000, &[1, 2, 3]).is_err());
        assert!(decode_audio(GoogleAudioEncoding::Linear16, 8_000, &wav(7, 8_000, false, &[1, 2])).is_err());
        assert!(decode_audio(GoogleAudioEncoding::Mulaw, 8_000, b"RIFF\0\0\0\0WAVE").is_err());
        assert!(decode_audio(GoogleAudioEncoding::Mulaw, 8_000, b"RIFFxx").is_err());
    }

    #[test]
    fn voice_names_give_their_language() {
        assert_eq!(voice_language("en-US-Standard-C"), Some("en-US"));
        assert_eq!(voice_language("cmn-CN-Wavenet-A"), Some("cmn-CN"));
        assert_eq!(voice_language("alloy"), None);
        assert_eq!(voice_language(""), None);
    }

    #[test]
    fn google_errors_are_read() {
        let body = br#"{"error":{"code":400,"message":"Invalid sample rate.","status":"INVALID_ARGUMENT"}}"#;
        assert_eq!(google_error_message(body), "INVALID_ARGUMENT: Invalid sample rate.");
        assert_eq!(
            google_error_message(b"<html>bad gateway</html>"),
            "<html>bad gateway</html>"
        );
    }

    #[test]
    fn transcripts_join_best_alternatives() {
        let response: RecognizeResponse = serde_json::from_str(
            r#"{"results":[{"alternatives":[{"transcript":"table for two","confidence":0.9},{"transcript":"able"}]},
                           {"alternatives":[{"transcript":" at seven"}]},{"alternatives":[]}]}"#,
        )
        .expect("json");
        assert_eq!(join_transcripts(&response), "table for two at seven");
        let empty: RecognizeResponse = serde_json::from_str("{}").expect("json");
        assert_eq!(join_transcripts(&empty), "");
    }

    #[test]
    fn debug_never_prints_the_key() {
        let config = GoogleSpeechConfig::speech_to_text(SecretString::from("AIza-very-secret"));
        let printed = format!("{config:?}");
        assert!(!printed.contains("very-secret"), "{printed}");
        assert!(printed.contains("[redacted]"), "{printed}");
    }
}
