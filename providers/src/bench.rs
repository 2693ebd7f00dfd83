//! The **bench profile**: providers that make the engine's own cost
//! measurable without external services. Not real providers: an agent uses
//! them only when its STT, TTS or LLM provider is set to `bench`.
//!
//! - [`BenchStt`] "recognizes" a fixed phrase once a speech segment ends (any
//!   segment with audio), after consuming the audio like a real session.
//! - [`BenchAgent`] answers every turn with a fixed reply.
//! - [`BenchTts`] plays speech-like audio rendered once per distinct text and
//!   kept in a cache, streamed in 100 ms chunks at 24 kHz like OpenAI's `pcm`.
//!
//! The phrase and reply come from the agent's `settings.bench.phrase` and
//! `settings.bench.reply` (defaults below). The rest of the call path (VAD,
//! turn-taking, the player, marks, transcripts, events) is the production one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use futures::stream::BoxStream;

use crate::capability::{
    AgentOutput, AgentTurn, ConversationAgent, PcmChunk, SpeechToText, StreamConfig, SttEvent, SttStream, TextToSpeech,
};
use crate::error::ProviderError;

pub const DEFAULT_PHRASE: &str = "I would like to book an appointment for tomorrow at three";
pub const DEFAULT_REPLY: &str = "Sure, I have booked you for tomorrow at three. Is there anything else?";
/// Rate of the cached audio (OpenAI's `pcm` rate).
pub const BENCH_TTS_RATE: u32 = 24_000;
/// Rendered speech per word of text.
const MS_PER_WORD: u64 = 280;
const CHUNK: usize = (BENCH_TTS_RATE / 10) as usize;
/// Distinct texts kept; beyond it the cache starts over (bench agents say few things).
const CACHE_LIMIT: usize = 64;

/// Reads `settings.bench.{key}` or the default.
pub fn bench_setting(settings: &serde_json::Value, key: &str, default: &str) -> String {
    settings
        .get("bench")
        .and_then(|b| b.get(key))
        .and_then(|v| v.as_str())
        .filter(|s| !s.trim().is_empty())
        .unwrap_or(default)
        .to_owned()
}

/// STT that hears `phrase` in every segment that carried audio.
#[derive(Debug, Clone)]
pub struct BenchStt {
    phrase: Arc<str>,
}

impl BenchStt {
    pub fn new(phrase: &str) -> Self {
        Self { phrase: phrase.into() }
    }
}

struct BenchSttStream {
    phrase: Arc<str>,
    rate: u32,
    samples: u64,
    finished: bool,
    emitted: bool,
}

impl SpeechToText for BenchStt {
    fn start(&self, config: StreamConfig) -> BoxFuture<'_, Result<Box<dyn SttStream>, ProviderError>> {
        let stream = BenchSttStream {
            phrase: Arc::clone(&self.phrase),
            rate: config.sample_rate.max(1),
            samples: 0,
            finished: false,
            emitted: false,
        };
        Box::pin(async move { Ok(Box::new(stream) as Box<dyn SttStream>) })
    }
}

impl SttStream for BenchSttStream {
    fn push_audio<'a>(&'a mut self, samples: &'a [i16]) -> BoxFuture<'a, Result<(), ProviderError>> {
        self.samples += samples.len() as u64;
        Box::pin(async { Ok(()) })
    }

    fn finish(&mut self) -> BoxFuture<'_, Result<(), ProviderError>> {
        self.finished = true;
        Box::pin(async { Ok(()) })
    }

    fn next_event(&mut self) -> BoxFuture<'_, Result<Option<SttEvent>, ProviderError>> {
        let event = (self.finished && !self.emitted && self.samples > 0).then(|| {
            self.emitted = true;
            SttEvent::Final {
                text: self.phrase.to_string(),
                start_ms: 0,
                end_ms: self.samples * 1000 / u64::from(self.rate),
            }
        });
        Box::pin(async move { Ok(event) })
    }
}

/// An agent with one fixed reply.
#[derive(Debug, Clone)]
pub struct BenchAgent {
    reply: Arc<str>,
}

impl BenchAgent {
    pub fn new(reply: &str) -> Self {
        Self { reply: reply.into() }
    }
}

impl ConversationAgent for BenchAgent {
    fn respond(&self, _turn: AgentTurn) -> BoxStream<'static, Result<AgentOutput, ProviderError>> {
        let reply = self.reply.to_string();
        Box::pin(futures::stream::iter([Ok(AgentOutput::Text(reply))]))
    }
}

/// TTS from a cache of pre-rendered audio.
#[derive(Debug, Default)]
pub struct BenchTts {
    cache: Mutex<HashMap<String, Arc<[i16]>>>,
}

impl BenchTts {
    pub fn new() -> Self {
        Self::default()
    }

    fn audio(&self, text: &str) -> Arc<[i16]> {
        // A poisoned lock only means another synthesis panicked; the map is still valid.
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(hit) = cache.get(text) {
            return Arc::clone(hit);
        }
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        let rendered = render(text);
        cache.insert(text.to_owned(), Arc::clone(&rendered));
        rendered
    }
}

impl TextToSpeech for BenchTts {
    fn synthesize(&self, text: String, _voice: String) -> BoxStream<'static, Result<PcmChunk, ProviderError>> {
        let audio = self.audio(&text);
        let chunks = (0..audio.len().div_ceil(CHUNK)).map(move |i| {
            let end = ((i + 1) * CHUNK).min(audio.len());
            Ok(PcmChunk {
                sample_rate: BENCH_TTS_RATE,
                samples: audio[i * CHUNK..end].to_vec(),
            })
        });
        Box::pin(futures::stream::iter(chunks))
    }
}

/// Speech-like audio: a 140 Hz buzz through a vowel-ish resonance with a
/// syllable envelope, `MS_PER_WORD` per word.
fn render(text: &str) -> Arc<[i16]> {
    let words = text.split_whitespace().count().max(1) as u64;
    let n = (words * MS_PER_WORD * u64::from(BENCH_TTS_RATE) / 1000) as usize;
    let rate = f64::from(BENCH_TTS_RATE);
    (0..n)
        .map(|i| {
            let t = i as f64 / rate;
            let syllable = (std::f64::consts::PI * t * 4.0).sin().abs();
            let voice = (2.0 * std::f64::consts::PI * 140.0 * t).sin() * 0.6
                + (2.0 * std::f64::consts::PI * 700.0 * t).sin() * 0.3
                + (2.0 * std::f64::consts::PI * 1200.0 * t).sin() * 0.1;
            (voice * syllable * 9000.0) as i16
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn stt_hears_the_phrase_only_for_segments_with_audio() {
        let stt = BenchStt::new("hello there");
        let config = StreamConfig {
            sample_rate: 16_000,
            language: "en-US".into(),
            interim_results: false,
        };
        let mut empty = stt.start(config.clone()).await.expect("start");
        empty.finish().await.expect("finish");
        assert_eq!(empty.next_event().await.expect("event"), None);

        let mut s = stt.start(config).await.expect("start");
        s.push_audio(&[1; 16_000]).await.expect("push");
        assert_eq!(
            s.next_event().await.expect("event"),
            None,
            "nothing before the segment ends"
        );
        s.finish().await.expect("finish");
        assert_eq!(
            s.next_event().await.expect("event"),
            Some(SttEvent::Final {
                text: "hello there".into(),
                start_ms: 0,
                end_ms: 1000
            })
        );
        assert_eq!(s.next_event().await.expect("event"), None);
    }

    #[tokio::test]
    async fn tts_streams_cached_audio_by_word_count() {
        let tts = BenchTts::new();
        let chunks: Vec<PcmChunk> = tts
            .synthesize("one two three".into(), "v".into())
            .map(|c| c.expect("chunk"))
            .collect()
            .await;
        let total: usize = chunks.iter().map(|c| c.samples.len()).sum();
        assert_eq!(total, 3 * 280 * 24);
        assert!(
            chunks
                .iter()
                .all(|c| c.sample_rate == BENCH_TTS_RATE && c.samples.len() <= CHUNK)
        );
        assert!(chunks.iter().flat_map(|c| &c.samples).any(|s| s.abs() > 3000));
        // Served from the cache the second time: the same samples.
        let again: Vec<i16> = tts
            .synthesize("one two three".into(), "v".into())
            .flat_map(|c| futures::stream::iter(c.expect("chunk").samples))
            .collect()
            .await;
        assert_eq!(again, chunks.iter().flat_map(|c| c.samples.clone()).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn agent_and_settings() {
        let settings = serde_json::json!({"bench": {"reply": "Fixed."}});
        assert_eq!(bench_setting(&settings, "reply", DEFAULT_REPLY), "Fixed.");
        assert_eq!(bench_setting(&settings, "phrase", DEFAULT_PHRASE), DEFAULT_PHRASE);
        let agent = BenchAgent::new("Fixed.");
        let out: Vec<_> = agent
            .respond(AgentTurn {
                input: crate::TurnInput::UserText("hi".into()),
                history: vec![],
                context: Default::default(),
            })
            .collect()
            .await;
        assert_eq!(out, vec![Ok(AgentOutput::Text("Fixed.".into()))]);
    }
}
