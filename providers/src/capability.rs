//! Provider capabilities as object-safe traits.
//!
//! Each trait is `Send + Sync + 'static` so it can sit behind an
//! `Arc<dyn Trait>` shared by many call actors. Async methods return
//! [`BoxFuture`]/[`BoxStream`] rather than using `async fn` in traits, because
//! the engine picks adapters at runtime from the agent's configuration and
//! therefore needs `dyn` dispatch. Streams are `'static`: adapters clone what
//! they need (HTTP client, key) into the stream, so a caller can move the
//! stream into its own task without borrowing the adapter.

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use switchboard_domain::{E164, ProviderCallId};

use crate::error::ProviderError;
use crate::tools::TurnContext;
use crate::twilio::twiml::Twiml;

/// How a speech-to-text session should listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConfig {
    /// Sample rate of the PCM pushed with [`SttStream::push_audio`], in Hz.
    pub sample_rate: u32,
    /// BCP-47 language tag, e.g. `en-US`.
    pub language: String,
    /// Whether the caller wants [`SttEvent::Partial`] results at all.
    pub interim_results: bool,
}

/// A recognition result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SttEvent {
    /// A hypothesis that may still change; useful for barge-in.
    Partial(String),
    /// A settled utterance; times are relative to the start of the session.
    Final { text: String, start_ms: u64, end_ms: u64 },
}

/// Streaming speech recognition.
pub trait SpeechToText: Send + Sync + 'static {
    /// Opens a recognition session.
    fn start(&self, config: StreamConfig) -> BoxFuture<'_, Result<Box<dyn SttStream>, ProviderError>>;
}

/// One open recognition session. Audio goes in, events come out; both ends
/// are driven by the owning actor.
pub trait SttStream: Send {
    /// Sends 16-bit mono PCM at the configured sample rate.
    fn push_audio<'a>(&'a mut self, samples: &'a [i16]) -> BoxFuture<'a, Result<(), ProviderError>>;
    /// Signals end of audio; remaining finals still arrive via `next_event`.
    fn finish(&mut self) -> BoxFuture<'_, Result<(), ProviderError>>;
    /// The next event, or `None` once the session has ended.
    fn next_event(&mut self) -> BoxFuture<'_, Result<Option<SttEvent>, ProviderError>>;
}

/// A slice of synthesized audio: 16-bit mono PCM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcmChunk {
    pub sample_rate: u32,
    pub samples: Vec<i16>,
}

/// Streaming speech synthesis.
pub trait TextToSpeech: Send + Sync + 'static {
    /// Synthesizes `text` with the provider-specific `voice`, yielding audio as
    /// it becomes available so playback can start before synthesis ends.
    fn synthesize(&self, text: String, voice: String) -> BoxStream<'static, Result<PcmChunk, ProviderError>>;
}

/// Who said a line of the conversation so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaker {
    Caller,
    Agent,
    /// A tool call the agent made and its result, as `name(arguments) -> result`.
    Tool,
}

/// One earlier line of the conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub speaker: Speaker,
    pub text: String,
}

/// What the caller just did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnInput {
    /// A final transcript of what the caller said.
    UserText(String),
    /// Keypad digits (`0-9`, `*`, `#`), in the order pressed.
    Dtmf(String),
}

/// Everything an agent needs to produce its next reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentTurn {
    pub input: TurnInput,
    /// Earlier lines, oldest first; does not include `input`.
    pub history: Vec<HistoryEntry>,
    /// Tools and contact facts; empty for agents without them.
    pub context: TurnContext,
}

/// Something the agent wants done to the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentAction {
    /// Say the reply, then hang up.
    Hangup,
    /// Say the reply, then transfer the caller to this number.
    Transfer(E164),
    /// End the conversation without hanging up (e.g. hand back to a flow).
    End,
}

/// One piece of an agent's reply, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentOutput {
    /// Text to speak; deltas are concatenated by the caller.
    Text(String),
    /// An action, always after the text it belongs to.
    Action(AgentAction),
    /// A tool call the agent made, reported once it finished so the owner can
    /// keep it in the conversation's history.
    ToolCall {
        name: String,
        arguments: String,
        result: String,
    },
}

/// The brain of a conversation: turns caller input into a reply.
pub trait ConversationAgent: Send + Sync + 'static {
    fn respond(&self, turn: AgentTurn) -> BoxStream<'static, Result<AgentOutput, ProviderError>>;
}

/// Control of a live phone call at the carrier.
pub trait Telephony: Send + Sync + 'static {
    /// Ends the call. Ending a call that is already gone is not an error.
    fn hangup<'a>(&'a self, call: &'a ProviderCallId) -> BoxFuture<'a, Result<(), ProviderError>>;
    /// Makes the call leave its current TwiML and run `twiml` instead.
    fn update_twiml<'a>(
        &'a self,
        call: &'a ProviderCallId,
        twiml: &'a Twiml,
    ) -> BoxFuture<'a, Result<(), ProviderError>>;
}
