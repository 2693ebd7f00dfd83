//! Provider capabilities as traits and the adapters behind them.
//!
//! Guarantees: every capability is an object-safe `Send + Sync + 'static`
//! trait returning the typed [`ProviderError`]; wire formats (Twilio
//! signatures, webhook forms, TwiML) are parsed and written here, once, with
//! no I/O, so the API layer and our test clients share one implementation.
//!
//! # Layout
//! - [`error`]: [`ProviderError`] and its [`ProviderErrorKind`].
//! - [`capability`]: the traits [`SpeechToText`]/[`SttStream`], [`TextToSpeech`],
//!   [`ConversationAgent`] and [`Telephony`], and the values they exchange.
//! - [`twilio::signature`]: `X-Twilio-Signature` signing and validation.
//! - [`twilio::webhook`]: typed voice, status and recording webhooks.
//! - [`twilio::twiml`]: the escaping TwiML writer.
//! - [`llm`]: [`LlmAgent`], the chat-completions agent with tools (OpenAI, Gemini, compatible servers).
//! - [`tools`]: [`ToolHost`], the tools an agent may call.
//! - [`realtime`]: the OpenAI Realtime speech-to-speech client (beta and GA).
//! - [`retry`]: bounded jittered retries, `Retry-After`, capped body reads.
//! - [`google_speech`]: [`GoogleStt`]/[`GoogleTts`] over Google's REST speech APIs.
//! - [`twilio::rest`]: [`TwilioRest`], call updates and hangup over Twilio's REST API.
//! - [`rules`]: [`RuleAgent`], the deterministic rule-based conversation agent.
//! - [`openai_speech`]: [`OpenAiStt`]/[`OpenAiTts`], the OpenAI-compatible speech
//!   adapter (OpenAI, compatible servers, the bundled offline speech server).
//! - [`standard`]: [`StandardProviders`], the default [`ProviderFactory`].

pub mod bench;
pub mod capability;
pub mod email;
pub mod error;
pub mod factory;
pub mod google_speech;
pub mod llm;
pub mod openai_speech;
pub mod realtime;
pub mod retry;
pub mod rules;
mod segment;
pub mod standard;
pub mod tools;
pub mod twilio;

pub use capability::{
    AgentAction, AgentOutput, AgentTurn, ConversationAgent, HistoryEntry, PcmChunk, Speaker, SpeechToText,
    StreamConfig, SttEvent, SttStream, Telephony, TextToSpeech, TurnInput,
};
pub use error::{ProviderError, ProviderErrorKind};
pub use factory::{BackupProviders, CallProviders, ProviderFactory};
pub use google_speech::{GoogleAudioEncoding, GoogleCredential, GoogleSpeechConfig, GoogleStt, GoogleTts};
pub use llm::{LlmAgent, LlmConfig};
pub use openai_speech::{OpenAiSpeechConfig, OpenAiStt, OpenAiTts, speech_http_client};
pub use realtime::{RealtimeConfig, RealtimeEvent, RealtimeReceiver, RealtimeSender, RealtimeSession};
pub use retry::RetryPolicy;
pub use rules::{RuleAgent, RulesError};
/// Provider keys are handed around as secrets that never print.
pub use secrecy::SecretString;
pub use standard::{KeySource, NoKeys, StandardConfig, StandardProviders};
pub use tools::{ToolHost, ToolResult, ToolSpec, TurnContext};
pub use twilio::rest::{TwilioRest, TwilioRestConfig};
