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
//! - [`rules`]: [`RuleAgent`], the deterministic rule-based conversation agent.

pub mod capability;
pub mod error;
pub mod rules;
pub mod twilio;

pub use capability::{
    AgentAction, AgentOutput, AgentTurn, ConversationAgent, HistoryEntry, PcmChunk, Speaker, SpeechToText,
    StreamConfig, SttEvent, SttStream, Telephony, TextToSpeech, TurnInput,
};
pub use error::{ProviderError, ProviderErrorKind};
pub use rules::{RuleAgent, RulesError};
